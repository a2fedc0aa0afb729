"""The typer application and the helpers every command shares. No logic lives here.

Which config file a command reads (:func:`settings`): ``--config``, else ``$LEADPIPE_CONFIG``,
else ``config/leadpipe.toml`` in the current folder (the repository's own, so ``make run``
works). Finding none is an error naming where it looked (exit 3), unless the built-in demo is
asked for explicitly (``--demo`` or ``LEADPIPE_DEMO=1``): a service started from the wrong folder
must not quietly make inbox and state folders there (README, "Running as a service").

Imports are kept for the commands that use them (each ``*_cmd`` module imports its library
calls inside the command): ``leadpipe --help`` loads typer, the config and the error tree, not
pandas, polars, requests or the sandbox server. Help is plain text (typer's rich markup mode
off, which would load rich's markdown, syntax and traceback modules), and rich itself is loaded
when a command first prints (:func:`console`, :func:`escape`). A command loads its heavy
modules inside :func:`loading`.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from pipeline.config import CONFIG_ENV, DEFAULT_CONFIG, Settings, find_config, load_settings
from pipeline.errors import ConfigError, LeadpipeError, exit_code

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    name="leadpipe",
    help="Move leads between spreadsheets on a shared drive and a HeroBase dialer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich's help panels would cost every --help ~70 ms
)


def _console(stderr: bool = False) -> Console:
    """A console that wraps for a person at a terminal and never for a program: piped output
    keeps each message and path on one line, and tables are not cut to 80 columns."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, soft_wrap=True, width=10_000)


@cache
def console() -> Console:
    """The console for results (stdout), made when a command first prints."""
    return _console()


@cache
def err_console() -> Console:
    """The console for errors (stderr), made when a command first prints one."""
    return _console(stderr=True)


def escape(text: str) -> str:
    """``text`` as rich markup that prints as written (rich's escape, loaded when used)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


T = TypeVar("T")


def _version(value: bool) -> None:
    if value:
        from pipeline import __version__  # read from the package metadata: only when asked

        typer.echo(f"leadpipe {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Config file (default: $LEADPIPE_CONFIG, else config/leadpipe.toml).",
            envvar=None,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Without a config file, run the built-in demo (folders in the current "
            "folder; also LEADPIPE_DEMO=1).",
        ),
    ] = False,
) -> None:
    """leadpipe: intake of lead spreadsheets into HeroBase, and scheduled exports."""
    ctx.obj = {"config": config, "demo": demo}


#: ``LEADPIPE_DEMO`` values that ask for the built-in demo
DEMO_ENV = "LEADPIPE_DEMO"
_YES = ("1", "true", "yes", "on")


def no_config_found() -> ConfigError:
    """The error when no config file is found: where leadpipe looked, and what to do."""
    here = Path.cwd() / DEFAULT_CONFIG
    return ConfigError(
        "no configuration file found. leadpipe looked for: --config (not given); "
        f"${CONFIG_ENV} (not set); {here} (not there). Pass --config "
        f"/etc/leadpipe/leadpipe.toml, set {CONFIG_ENV}, or run from the folder that holds "
        f"config/leadpipe.toml. To try the built-in demo without a config, add --demo (or set "
        f"{DEMO_ENV}=1)."
    )


def load_for_cli(config: Path | None, *, demo: bool) -> Settings:
    """The settings a command uses; no config file and no explicit demo is an error."""
    demo = demo or os.environ.get(DEMO_ENV, "").strip().lower() in _YES
    if find_config(config, os.environ) is None and not demo:
        raise no_config_found()
    return load_settings(config)


def settings(ctx: typer.Context) -> Settings:
    """Load the settings once per invocation (errors become one clear message)."""
    obj = ctx.find_root().obj or {}
    if "settings" not in obj:
        obj["settings"] = run(lambda: load_for_cli(obj.get("config"), demo=bool(obj.get("demo"))))
        ctx.find_root().obj = obj
    result: Settings = obj["settings"]
    return result


def fail(exc: LeadpipeError) -> NoReturn:
    """Print a library error as a message for people and exit with its code."""
    # the message is text, never markup: "[status]" in it stays as written
    err_console().print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(exit_code(exc))


def run(fn: Callable[[], T]) -> T:
    """Call a library function, turning a :class:`LeadpipeError` into a clean exit."""
    try:
        return fn()
    except LeadpipeError as exc:
        fail(exc)


@contextlib.contextmanager
def loading(*first: str) -> Iterator[None]:
    """Load a command's heavy modules (pandas, pandera, polars, requests, the sandbox) inside;
    the modules named in ``first`` are imported on entry, in this order, on a fresh stack.

    Imports create a few hundred thousand objects that live as long as the process; Python's
    cyclic garbage collector would walk all of them over and over while they are made (and at
    every full collection after). So collection is paused while they load, and what they made
    is then frozen (``gc.freeze``): left out of every later collection. A tenth to a fifth of
    a second of each data command (bench/RESULTS.md).

    Where they load matters too: see docs/architecture.md, "The rest of a small or mid-sized
    file's time".
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        if first:
            _import_on_fresh_stack(first)
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _import_on_fresh_stack(names: Sequence[str]) -> None:
    """Import ``names`` in order in a new thread, whose stack starts empty; its error, if any,
    is raised here."""
    failed: list[BaseException] = []

    def load() -> None:
        try:
            for name in names:
                __import__(name)
        except BaseException as exc:  # (raised again in the waiting thread)
            failed.append(exc)

    thread = threading.Thread(target=load, name="leadpipe-load", daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


def is_terminal() -> bool:
    """True when stdout is a terminal (progress bars and colour allowed)."""
    return sys.stdout.isatty()
