"""The typer application and the helpers every command shares. No logic lives here."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from pipeline import __version__
from pipeline.config import Settings, load_settings
from pipeline.errors import LeadpipeError, exit_code

app = typer.Typer(
    name="leadpipe",
    help="Move leads between spreadsheets on a shared drive and a HeroBase dialer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console(stderr: bool = False) -> Console:
    """A console that wraps for a person at a terminal and never for a program: piped output
    keeps each message and path on one line, and tables are not cut to 80 columns."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, soft_wrap=True, width=10_000)


console = _console()
err_console = _console(stderr=True)

T = TypeVar("T")


def _version(value: bool) -> None:
    if value:
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
) -> None:
    """leadpipe: intake of lead spreadsheets into HeroBase, and scheduled exports."""
    ctx.obj = {"config": config}


def settings(ctx: typer.Context) -> Settings:
    """Load the settings once per invocation (errors become one clear message)."""
    obj = ctx.find_root().obj or {}
    if "settings" not in obj:
        obj["settings"] = run(lambda: load_settings(obj.get("config")))
        ctx.find_root().obj = obj
    result: Settings = obj["settings"]
    return result


def fail(exc: LeadpipeError) -> NoReturn:
    """Print a library error as a message for people and exit with its code."""
    # the message is text, never markup: "[status]" in it stays as written
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(exit_code(exc))


def run(fn: Callable[[], T]) -> T:
    """Call a library function, turning a :class:`LeadpipeError` into a clean exit."""
    try:
        return fn()
    except LeadpipeError as exc:
        fail(exc)


def is_terminal() -> bool:
    """True when stdout is a terminal (progress bars and colour allowed)."""
    return sys.stdout.isatty()
