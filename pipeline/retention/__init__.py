"""Data kept, and for how long (docs/retention.md).

``kept.py`` lists what is kept (files in the result folders and the outbox, the ledger's file
records) as values; ``purge.py`` decides what is due at ``now`` under ``[retention]`` (a pure
function) and removes it; ``forget.py`` removes one person's values from everything kept.
"""
