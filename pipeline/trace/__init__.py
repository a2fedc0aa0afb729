"""Where a lead came from (docs/retention.md, "Tracing a lead").

``values.py`` normalises a value a person asks about; ``queries.py`` answers ``leadpipe
trace``: by uniqueId, by file, and by value (``--find``), as typed records.
"""
