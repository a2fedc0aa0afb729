"""``leadpipe trace``: where a lead came from, what became of a file, where a value appears
(docs/retention.md, "Tracing a lead")."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from pipeline.cli.app import app, console, err_console, escape, run, settings

if TYPE_CHECKING:  # imported when the command runs: `leadpipe --help` does not load them
    from pipeline.config import Settings
    from pipeline.ledger import Ledger
    from pipeline.trace.queries import FileTrace, FindResult, LeadOrigin

#: Exit code when the ledger and the kept files know nothing of what was asked.
EXIT_NOT_FOUND = 4

T = TypeVar("T")


def with_ledger(s: Settings, fn: Callable[[Ledger], T]) -> T:
    """Call ``fn`` with the ledger open (an existing one: never created here)."""
    from pipeline.ledger.connect import open_ledger_for

    def work() -> T:
        ledger = open_ledger_for(s, create=False)
        try:
            return fn(ledger)
        finally:
            ledger.close()

    return run(work)


def _print(text: str) -> None:
    console().print(escape(text), highlight=False)


def _not_found(what: str) -> None:
    err_console().print(f"[bold red]error:[/] {escape(what)}", highlight=False)
    raise typer.Exit(EXIT_NOT_FOUND)


def _when(text: str, timezone: str) -> str:
    """A recorded time in the tenant's zone with its offset ("-" when there is none)."""
    from pipeline.clock import shown_time

    return shown_time(text, timezone) if text else "-"


def _show_lead(o: LeadOrigin, tz: str) -> None:
    _print(f"lead {o.unique_id}")
    _print(f"  file      {o.file} (SHA-256 {o.sha256[:16]}...), row {o.row}")
    _print(f"  campaign  {o.campaign}")
    _print(f"  claimed   {_when(o.claimed_at, tz)}")
    _print(f"  uploaded  {_when(o.uploaded_at, tz)} by {o.account}")
    _print(f"  outcome   {o.outcome} (file: {o.file_outcome or '-'})")
    _print(f"  receipt   {o.receipt or '-'}")
    kept = "kept" if o.original_kept else "no longer kept"
    _print(f"  original  {o.original or '-'} ({kept})")


def _show_file(t: FileTrace, tz: str) -> None:
    _print(f"file {t.file} for campaign {t.campaign}: {t.state}")
    _print(f"  SHA-256   {t.sha256}")
    _print(f"  first seen {_when(t.first_seen_utc, tz)}; finished {_when(t.finished_at, tz)}")
    _print(f"  receipt   {t.receipt or '-'}")
    kept = "kept" if t.original_kept else "no longer kept"
    _print(f"  original  {t.original or '-'} ({kept})")
    rows = ", ".join(f"{n} {s}" for s, n in t.rows.items()) or "none recorded"
    _print(f"  rows      {rows}")
    _print(f"  leads     {len(t.leads)} created" + (":" if t.leads else ""))
    for row, uid in t.leads:
        _print(f"    row {row}: {uid or '(id not known)'}")


def _show_find(r: FindResult) -> None:
    if r.appearances:
        _print(f"The {r.value_kind} appears in {len(r.appearances)} row(s) of kept files:")
    for a in r.appearances:
        sheet = f" (sheet {a.sheet})" if a.sheet else ""
        state = f": {a.outcome}" if a.outcome else ""
        uid = f", lead {a.unique_id}" if a.unique_id else ""
        _print(f"  {a.path}{sheet}, row {a.row}{state}{uid}")
    if r.leads:
        _print(f"{len(r.leads)} lead(s) created from it:")
        for lead in r.leads:
            _print(f"  {lead.unique_id}: {lead.campaign}, {lead.file} row {lead.row}")
    for u in r.unreadable:
        _print(f"  could not search {u}")


@app.command("trace")
def trace(
    ctx: typer.Context,
    what: Annotated[
        str,
        typer.Argument(help="A lead's uniqueId, or with --file a file (path, name or SHA-256)."),
    ],
    file: Annotated[
        bool, typer.Option("--file", help="WHAT is a file: its outcomes and leads.")
    ] = False,
    find: Annotated[
        bool,
        typer.Option("--find", help="WHAT is a phone number or e-mail: where it appears."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
) -> None:
    """Where a lead came from; what became of a file; where a value appears (kept files)."""
    from pipeline.trace.queries import account_of, find_value, trace_file, trace_lead

    s = settings(ctx)
    if find:
        result = with_ledger(s, lambda ledger: find_value(s, ledger, what))
        if as_json:
            typer.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        else:
            _show_find(result)
        if not result.appearances:
            _not_found("the value appears in no kept file (and so in no lead leadpipe can trace)")
        return
    if not (file or "/" in what or "." in what):  # a uniqueId first, then a file
        leads = with_ledger(s, lambda ledger: trace_lead(ledger, what, account_of(s)))
        if leads:
            if as_json:
                typer.echo(json.dumps([o.to_json() for o in leads], indent=2))
            for o in [] if as_json else leads:
                _show_lead(o, s.timezone)
            return
    files = with_ledger(s, lambda ledger: trace_file(ledger, what))
    if as_json:
        typer.echo(json.dumps([t.to_json() for t in files], indent=2, ensure_ascii=False))
    else:
        for t in files:
            _show_file(t, s.timezone)
    if not files:
        _not_found(f"the ledger knows no lead and no file {what!r}")
