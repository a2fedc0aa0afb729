"""The ``leadpipe`` command: a thin shell over the library (one module per command group)."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading

from pipeline.cli import (
    alerts_cmd,  # noqa: F401
    api_cmd,  # noqa: F401  (registers commands)
    cancel_cmd,  # noqa: F401
    config_cmd,  # noqa: F401  (registers commands)
    export_cmd,  # noqa: F401
    ingest_cmd,  # noqa: F401
    ledger_cmd,  # noqa: F401
    retention_cmd,  # noqa: F401
    sandbox_cmd,  # noqa: F401
    service_cmd,  # noqa: F401
    trace_cmd,  # noqa: F401
)
from pipeline.cli.app import app

_MAIN = threading.main_thread()


def main() -> None:
    """Run the command line (raises SystemExit when the command is done, as typer does)."""
    app()


def console() -> None:
    """The ``leadpipe`` console script: :func:`main`, then the quickest clean end.

    A command that has finished ends the process without tearing the interpreter down: after
    a data command, freeing every module and object takes about a quarter of a second, which
    a person waits for and nothing needs. Exit handlers still run and output is flushed first.
    While a thread that is not a daemon still runs, the ordinary exit (which waits for it) is
    kept, and so it is under a profiler or a coverage tracer (they report at exit).
    """
    try:
        main()
    except SystemExit as done:
        code = done.code
    else:  # (typer always exits with SystemExit)
        code = 0
    if sys.getprofile() or sys.gettrace():  # a profiler or coverage writes its report at exit
        sys.exit(code)
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not _MAIN):
        sys.exit(code)
    if isinstance(code, str):  # what sys.exit(message) does
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


__all__ = ["app", "console", "main"]
