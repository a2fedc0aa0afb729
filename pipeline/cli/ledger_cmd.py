"""``leadpipe ledger migrate --to URL``: move the SQLite ledger into PostgreSQL.

A thin shell over :func:`pipeline.ledger.migrate.migrate_ledger` (docs/architecture.md, "The
ledger on PostgreSQL"): it prints each table's counts and checksums on both sides and exits
non-zero when they differ (nothing kept) or the move is refused. The URL is printed without a
password, as ``leadpipe config`` prints it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.app import app, console, escape, fail, run, settings

ledger_app = typer.Typer(
    help="The ledger: move it from SQLite to PostgreSQL.", no_args_is_help=True
)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("migrate")
def migrate_cmd(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="The empty PostgreSQL ledger, postgresql://user@host:port/db (the password "
            "only from LEADPIPE_LEDGER_PASSWORD, PGPASSWORD or ~/.pgpass).",
        ),
    ],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Copy and check, then roll back: nothing is kept."),
    ] = False,
) -> None:
    """Copy the state folder's SQLite ledger into an empty PostgreSQL ledger, check it (counts
    and checksums per table) and switch the state folder over (ledger.sqlite is renamed, not
    deleted). Stop `leadpipe run` first."""
    from pipeline.errors import StateError
    from pipeline.ledger.migrate import migrate_ledger

    s = settings(ctx)
    result = run(lambda: migrate_ledger(s, to, dry_run=dry_run))
    out = console()
    out.print(
        escape(f"from {result.source}\nto   {result.target}"), highlight=False, soft_wrap=True
    )
    for t in result.tables:
        mark = "same" if t.matches else "DIFFERENT"
        out.print(
            f"{t.table:9} SQLite     {t.source_rows:>9} rows  sha256 {t.source_sha256}\n"
            f"{'':9} PostgreSQL {t.target_rows:>9} rows  sha256 {t.target_sha256}  {mark}",
            highlight=False,
            markup=False,
        )
    if result.nul_replaced:
        out.print(
            f"{result.nul_replaced} text value(s) held a NUL character, which PostgreSQL "
            "cannot store: copied (and checksummed) with U+FFFD instead.",
            highlight=False,
            markup=False,
        )
    if not result.matches:
        fail(
            StateError(
                "the copy does not match the SQLite ledger (see the tables above); it was "
                f"rolled back: {result.target} is as it was and {result.source.name} is "
                "unchanged. Keep using the SQLite ledger and report this."
            )
        )
    if result.dry_run:
        out.print(
            "dry run: the copy matched and was rolled back; nothing changed.",
            highlight=False,
            markup=False,
        )
        return
    moved = result.renamed_to.name if result.renamed_to else "?"
    then = (
        "[state] ledger names it already: start leadpipe again."
        if s.state.ledger
        else f'Set [state] ledger = "{result.target}" in the configuration, then start '
        "leadpipe again."
    )
    out.print(
        escape(
            f"copied and checked. {result.source.name} is now {moved} (kept; nothing "
            f"deleted). {then}"
        ),
        highlight=False,
        soft_wrap=True,
    )
