"""``leadpipe ingest PATH --campaign CODE``: process one file now (the watcher's library call)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pipeline.cli.app import app, console, err_console, is_terminal, run, settings
from pipeline.ingest.report.receipt import Receipt, render_receipt
from pipeline.outcome import FileOutcome

#: Exit code when the file was read but its upload stopped (API down, 401/403, asked to stop).
EXIT_UPLOAD_STOPPED = 5
#: Outcomes of ``leadpipe ingest`` that exit 0: nothing is left to do for the file.
_FINISHED = (FileOutcome.PROCESSED, FileOutcome.PREVIEWED, FileOutcome.ALREADY)


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The CSV or XLSX file to process.")],
    campaign: Annotated[str, typer.Option("--campaign", help="Campaign code, e.g. B2B-DK-SPRING.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read, map and validate; upload nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the receipt as JSON.")] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Results folder for files outside the inbox.", dir_okay=True),
    ] = None,
) -> None:
    """Process one file: validate, upload each valid row exactly once, write rejects and receipt."""
    from pipeline.api.connect import open_client
    from pipeline.ingest.report.place import ReceiptWriter, ResultPlaces
    from pipeline.ingest.run import IngestContext, IngestRequest, ingest_file
    from pipeline.ledger.sqlite import open_ledger

    s = settings(ctx)

    def work() -> Receipt:
        with ExitStack() as stack:
            ledger = open_ledger(s.paths.state)
            stack.callback(ledger.close)
            client = stack.enter_context(open_client(s))
            progress = None
            if is_terminal() and not as_json:
                from rich.progress import Progress

                bar = stack.enter_context(Progress(console=console, transient=True))
                task = bar.add_task("reading", total=None)

                def progress(stage: str, done: int, total: int | None) -> None:
                    bar.update(task, description=stage, completed=done, total=total)

            places = ResultPlaces.for_ingest(path, campaign, s, out)
            request = IngestRequest(
                path, campaign, results=places.rejects, tmp=places.tmp, dry_run=dry_run
            )
            result = ingest_file(request, IngestContext(s, client, ledger, progress=progress))
            placed = ReceiptWriter(ledger).place(
                result.receipt, result.rejects, places, result.base
            )
            return placed.receipt

    receipt = run(work)
    if as_json:
        typer.echo(json.dumps(receipt.to_json(), indent=2, ensure_ascii=False))
    else:
        console.print(render_receipt(receipt), highlight=False, markup=False)
    if receipt.outcome not in _FINISHED:
        reason = receipt.halt_reason or receipt.status
        err_console.print(f"[bold red]upload stopped:[/] {escape(reason)}", highlight=False)
        raise typer.Exit(EXIT_UPLOAD_STOPPED)


@app.command("verify")
def verify(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A processed file (in processed/) or its receipt.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check HeroBase for the leads of a processed file: each once? (adds to its receipt)."""
    from dataclasses import asdict

    from pipeline.api.connect import open_client
    from pipeline.ingest.deliver.verify import Verification, verify_file
    from pipeline.ledger.sqlite import open_ledger

    s = settings(ctx)

    def work() -> Verification:
        with ExitStack() as stack:
            ledger = open_ledger(s.paths.state, create=False)
            stack.callback(ledger.close)
            # the embedded demo tenant the service uploaded to (kept in the state folder)
            db = s.paths.state / "sandbox.sqlite" if s.api.embedded else None
            client = stack.enter_context(open_client(s, sandbox_db=db))
            return verify_file(path, s, client=client, ledger=ledger)

    result = run(work)
    if as_json:
        typer.echo(json.dumps({**asdict(result), "message": result.message}, indent=2))
    else:
        console.print(result.message, highlight=False, markup=False)
    if result.duplicates or result.blind:
        raise typer.Exit(1)
