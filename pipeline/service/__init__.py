"""``leadpipe run``: the loop, the instance lock, the status page, metrics and health."""
