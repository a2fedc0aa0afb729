"""Named crash points: the test hook that kills the process like ``kill -9`` at a chosen moment.

``LEADPIPE_CRASH_AT=<name>[:<n>]`` makes the ``n``-th call of :func:`crash_point` with that
name (the first when ``n`` is left out) send SIGKILL to this process. Without the variable every
call is a no-op. Points: ``before_post``, ``after_response`` (before the ledger commit),
``rejects`` (once per reject row, after its chunk's rows went to the reject writer),
``done_recorded`` (a processed file is done in the ledger, its reject files and receipt not yet
in place), ``export_midstream``, ``export_before_manifest``, ``export_before_state`` and the
objects-CSV writer's points.
"""

from __future__ import annotations

import os
import signal
import threading

CRASH_ENV = "LEADPIPE_CRASH_AT"
_lock = threading.Lock()
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here (SIGKILL) when ``$LEADPIPE_CRASH_AT`` names this point and its count is due."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    want, _, nth = spec.partition(":")
    if want != name or not (nth or "1").isdigit():
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        hit = _hits[name]
    if hit == int(nth or "1"):
        os.kill(os.getpid(), signal.SIGKILL)
