"""``leadpipe alerts`` (the alert conditions that hold) and ``leadpipe alerts test`` (a test
message to every target): docs/alerts.md."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pipeline.cli.app import app, console, escape, run, settings

alerts_app = typer.Typer(
    help="Alerts: the conditions that hold now; `alerts test` sends a test message.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(alerts_app, name="alerts")


@alerts_app.callback()
def alerts_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
) -> None:
    """List the alert conditions that hold now (as the service last wrote them)."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.alerts.conditions import read_conditions
    from pipeline.clock import shown_time

    s = settings(ctx)
    found = read_conditions(s.paths.state)
    if as_json:
        typer.echo(json.dumps([c.to_json() for c in found], indent=2))
        return
    if not s.alerts.enabled:
        console().print(
            "Alerts are off: no [[alerts.targets]] in the configuration (docs/alerts.md).",
            highlight=False,
            markup=False,
        )
    if not found:
        console().print("No alert condition holds.", highlight=False, markup=False)
        return
    for c in found:
        console().print(
            f"[red]{escape(c.severity.value)}[/]: {escape(c.title)} "
            f"(since {escape(shown_time(c.since))})",
            highlight=False,
        )


@alerts_app.command("test")
def alerts_test(ctx: typer.Context) -> None:
    """Send a test message to every alert target and say how each went (exit 1: one failed)."""
    from pipeline.alerts.monitor import send_test
    from pipeline.clock import SystemClock

    s = settings(ctx)
    if not s.alerts.enabled:
        console().print(
            "No alert targets are configured: add [[alerts.targets]] to the configuration "
            '(docs/alerts.md, "Targets").',
            highlight=False,
            markup=False,
        )
        raise typer.Exit(3)
    results = run(lambda: send_test(s, clock=SystemClock()))
    for r in results:
        where = escape(r.target if r.target == r.shown else f"{r.target} ({r.shown})")
        if r.ok:
            console().print(f"[green]sent[/]   {where}", highlight=False)
        else:
            console().print(f"[red]failed[/] {where}: {escape(r.error)}", highlight=False)
    if not all(r.ok for r in results):
        raise typer.Exit(1)
