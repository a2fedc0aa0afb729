"""``leadpipe purge`` and ``leadpipe forget``: data kept, and for how long (docs/retention.md)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pipeline.cli.app import app, console, err_console, escape, settings
from pipeline.cli.trace_cmd import with_ledger


def _print(text: str) -> None:
    console().print(escape(text), highlight=False)


@app.command("purge")
def purge_now(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would go; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
) -> None:
    """Apply [retention] now: delete files past their period, remove old row values."""
    from datetime import UTC, datetime

    from pipeline.retention.purge import apply_purge, plan_purge

    s = settings(ctx)
    now = datetime.now(UTC)
    plan = with_ledger(s, lambda ledger: plan_purge(s, ledger, now))
    if as_json and dry_run:
        typer.echo(json.dumps({**plan.to_json(), "dry_run": True}, indent=2, ensure_ascii=False))
        return
    if not dry_run:
        report = with_ledger(s, lambda ledger: apply_purge(plan, ledger))
        if as_json:
            data = {**plan.to_json(), "dry_run": False, "problems": list(report.problems)}
            typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
            return
        for p in report.problems:
            _print(f"could not delete {p}")
    verb = "would be" if dry_run else "were"
    if plan.empty:
        _print("Nothing is past its retention period.")
        return
    for f in plan.files:
        _print(f"{f.kind.value:9} {f.path}")
    for r in plan.ledger:
        _print(f"ledger    {r.name} for {r.key.campaign} ({r.key.sha256[:16]}...): row values")
    counts = ", ".join(f"{n} {k}" for k, n in plan.counts().items() if n)
    _print(f"{len(plan.files)} file(s) {verb} deleted; {len(plan.ledger)} ledger record(s) {verb}"
           f" cleared of values ({counts}).")  # fmt: skip


@app.command("forget")
def forget_value(
    ctx: typer.Context,
    value: Annotated[str, typer.Argument(help="A phone number or e-mail (normalised).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would change; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
) -> None:
    """Remove a person's value from every kept file and the ledger (never the API)."""
    from pipeline.retention.forget import forget

    s = settings(ctx)
    try:
        report = with_ledger(s, lambda ledger: forget(s, ledger, value, dry_run=dry_run))
    except ValueError as exc:  # a value too short to name one person
        err_console().print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        return
    would = "would be " if dry_run else ""
    for c in report.changes:
        rows = f" ({c.rows} row(s))" if c.rows else ""
        _print(f"{would}{c.action:9} {c.path}{rows}")
    if not report.changes:
        _print(f"The {report.value_kind} appears in no kept file.")
    if not dry_run:
        _print(f"Ledger: {report.ledger_records} record(s) cleared of it.")
    for u in report.unreadable:
        _print(f"could not search {u}")
    for n in report.notes:
        _print(n)
