"""The ``leadpipe`` command: a thin shell over the library (one module per command group)."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import typer.main

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


#: What OpenBLAS reads for its thread count, in the order it reads them.
_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def process_defaults() -> None:
    """Settings of this process that must be made before numpy loads; where the environment
    already says something, it is kept.

    numpy's OpenBLAS starts a worker thread per core when numpy loads, and those threads spin
    for a while waiting for matrix work leadpipe never gives them. On a machine with few cores
    that spinning takes a core from leadpipe's own workers (the checks' helper thread, the
    reject files' process): 6 % of a 100,000-row preview's time on two cores
    (bench/RESULTS.md). One BLAS thread starts none.
    """
    if not any(os.environ.get(name) for name in _BLAS_THREADS):
        os.environ["OPENBLAS_NUM_THREADS"] = "1"


def main() -> None:
    """Run the command line (raises SystemExit when the command is done, as typer does).

    typer builds every command (its options, their types and help) before it runs one: about
    10 ms for leadpipe's 18, paid by every run. When the command line names a command, only
    that one is built; anything else (no command, ``--help`` before one, an unknown option or
    command) gets the whole command line, so help and error messages are typer's own.
    """
    process_defaults()
    name = _command_named(sys.argv[1:])
    commands = [c for c in app.registered_commands if c.name == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if name is None or not (commands or groups):
        app()
        return
    with _only(commands, groups):
        app()


@contextlib.contextmanager
def _only(commands: list[Any], groups: list[Any]) -> Iterator[None]:
    """Inside, the app has only these commands and groups; every one is back after."""
    every = app.registered_commands, app.registered_groups
    app.registered_commands, app.registered_groups = commands, groups
    try:
        yield
    finally:
        app.registered_commands, app.registered_groups = every


def _command_named(args: list[str]) -> str | None:
    """The command ``args`` name after the top-level options; None when there is none, or
    before it ``--help`` or an option leadpipe does not have."""
    with _only([], []):
        options = typer.main.get_group(app).params  # the top-level options alone
    flags = {o for p in options if getattr(p, "is_flag", False) for o in p.opts}
    valued = {o for p in options if not getattr(p, "is_flag", False) for o in p.opts}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            return arg
        option = arg.split("=", 1)[0]
        if option in valued:
            i += 1 if "=" in arg else 2
        elif option in flags and "=" not in arg:
            i += 1
        else:
            return None
    return None


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


__all__ = ["app", "console", "main", "process_defaults"]
