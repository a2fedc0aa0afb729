"""``leadpipe ingest PATH --campaign CODE``: process one file now (the watcher's library call)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.app import (
    app,
    console,
    err_console,
    escape,
    is_terminal,
    loading,
    run,
    settings,
)
from pipeline.outcome import FileOutcome

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from pipeline.api.client import HeroBaseClient
    from pipeline.clock import Clock
    from pipeline.config import Settings
    from pipeline.dropfolder.progress import FileRun
    from pipeline.ingest.accounting import UploadEstimate
    from pipeline.ingest.report.receipt import Receipt

#: Exit code when the file was read but its upload stopped (API down, 401/403, asked to stop).
EXIT_UPLOAD_STOPPED = 5
#: Outcomes of ``leadpipe ingest`` that exit 0: nothing is left to do for the file.
_FINISHED = (FileOutcome.PROCESSED, FileOutcome.PREVIEWED, FileOutcome.ALREADY)


class _Bar:
    """Ingest's progress callback drawn as a bar: rows sent of the total (estimated until the
    file was read to the end), the rate and the likely finish. The numbers are the service's
    own (:class:`~pipeline.dropfolder.progress.FileRun`, docs/dropfolder.md, "Progress, rate
    and finish"); the uploader reports rows per chunk, summed here."""

    def __init__(
        self, bar: Progress, task: TaskID, run: FileRun, clock: Clock, timezone: str
    ) -> None:
        from zoneinfo import ZoneInfo

        self.bar, self.task, self.run, self.clock = bar, task, run, clock
        self.tz = ZoneInfo(timezone)
        self.done_before = 0  #: rows finished in the chunks delivered before this one
        self.done_here = 0  #: rows finished in the chunk at hand

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        run = self.run
        if stage in ("reading", "read"):  # a chunk was delivered (its rows are finished)
            self.done_before, self.done_here = self.done_before + self.done_here, 0
            run.reading(done, total=total if stage == "read" else None)
        elif stage == "rejected":
            run.rejected(done)
        elif stage == "uploading":
            self.done_here = done
            run.sent({"accepted": self.done_before + done}, self.clock.monotonic())
        self.draw()

    def draw(self) -> None:
        """Redraw the bar from the run's snapshot."""
        from pipeline.ingest.accounting import spoken_duration

        p = self.run.snapshot(self.clock.monotonic(), self.clock.now().astimezone(self.tz))
        total = "?" if p.rows_total is None else f"{'' if p.total_exact else '~'}{p.rows_total:,}"
        parts = [f"{p.rows_sent:,} of {total} sent"]
        if p.rows_rejected:
            parts.append(f"{p.rows_rejected:,} rejected")
        if p.rate is not None:
            parts.append(f"{p.rate:,.1f} rows/s")
        if p.eta_seconds is not None:
            parts.append(f"ETA {spoken_duration(p.eta_seconds)}")
        line = " · ".join(parts)
        done = p.rows_sent + p.rows_rejected if p.stage == "uploading" else p.rows_read
        self.bar.update(self.task, completed=done, total=p.rows_total, line=line)


def _upload_estimate(client: HeroBaseClient, settings: Settings, rows: int) -> UploadEstimate:
    """How long ``rows`` rows would take at the account's limits: the rate limiter's minute
    limit and the daily budget, if one is known (docs/api-contract.md, "The daily quota")."""
    from pipeline.api.quota import DailyPolicy, budget_of
    from pipeline.errors import ApiError
    from pipeline.ingest.accounting import UploadEstimate

    limiter = client.limiter
    quota = limiter.quota()
    if quota is not None:
        budget = quota.budget
    else:  # no daily budget kept (the embedded sandbox): the tenant's and the config's figure
        policy = DailyPolicy.from_settings(settings)
        try:
            tenant = client.limits().per_day
        except ApiError:
            tenant = None
        known = [n for n in (tenant, policy.per_day) if n]
        budget = budget_of(min(known), policy.reserve) if known else None
    return UploadEstimate(rows, limiter.limit, budget)


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
    s = settings(ctx)
    from pipeline.dropfolder.identity import hash_ahead
    from pipeline.ingest.report.sink_process import start_spare, stop_spare

    start_spare()  # the reject files' process loads while this one does
    ctx.call_on_close(stop_spare)  # (if the file never got as far as its reject files)
    hash_ahead(path)  # and the file is hashed on another core meanwhile
    # each library from the bottom of a stack, as a script imports it (requests and pandera
    # through the modules that load them: the API package, which is leadpipe's client, and
    # ingest.fields), then leadpipe's modules: see loading()
    first = ["pandas", "pipeline.api", "pipeline.ingest.fields", "pipeline.ingest.run"]
    first += ["uvicorn", "pipeline.sandbox.server"] if s.api.embedded else []
    with loading(*first):
        from pipeline.api.connect import open_client
        from pipeline.clock import SystemClock
        from pipeline.ingest.accounting import with_estimate
        from pipeline.ingest.report.place import ReceiptWriter, ResultPlaces
        from pipeline.ingest.report.receipt import render_receipt
        from pipeline.ingest.run import IngestContext, IngestRequest, ingest_file
        from pipeline.ledger.connect import open_ledger_for

    clock = SystemClock()

    def work() -> Receipt:
        with ExitStack() as stack:
            ledger = open_ledger_for(s)
            stack.callback(ledger.close)
            client = stack.enter_context(open_client(s))
            progress = None
            if is_terminal() and not as_json:
                progress = _progress_bar(stack, path, clock, s.timezone, dry_run=dry_run)
            places = ResultPlaces.for_ingest(path, campaign, s, out)
            request = IngestRequest(
                path, campaign, results=places.rejects, tmp=places.tmp, dry_run=dry_run
            )
            context = IngestContext(s, client, ledger, clock=clock, progress=progress)
            result = ingest_file(request, context)
            receipt = result.receipt
            if dry_run and receipt.outcome is FileOutcome.PREVIEWED:
                with_estimate(receipt, _upload_estimate(client, s, receipt.accepted))
            placed = ReceiptWriter(ledger).place(receipt, result.rejects, places, result.base)
            return placed.receipt

    receipt = run(work)
    if as_json:
        typer.echo(json.dumps(receipt.to_json(), indent=2, ensure_ascii=False))
    else:
        console().print(render_receipt(receipt), highlight=False, markup=False)
    if receipt.outcome is FileOutcome.CANCELLED:  # a person's decision: not an error (README)
        reason = receipt.halt_reason or receipt.status
        err_console().print(f"cancelled: {reason}", highlight=False, markup=False)
        return
    if receipt.outcome not in _FINISHED:
        reason = receipt.halt_reason or receipt.status
        err_console().print(f"[bold red]upload stopped:[/] {escape(reason)}", highlight=False)
        raise typer.Exit(EXIT_UPLOAD_STOPPED)


def _progress_bar(
    stack: ExitStack, path: Path, clock: Clock, timezone: str, *, dry_run: bool
) -> _Bar:
    """A bar on the terminal (gone when the receipt is printed), fed by ingest's progress."""
    from rich.progress import BarColumn, Progress, TextColumn

    from pipeline.dropfolder.processing import estimate_total
    from pipeline.dropfolder.progress import FileRun

    bar = stack.enter_context(
        Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[line]}", markup=False),
            console=console(),
            transient=True,
        )
    )
    task = bar.add_task(escape(path.name), total=None, line="starting")
    run_ = FileRun(path.name, "", preview=dry_run, started=clock.now(), mono=clock.monotonic())
    run_.estimate(estimate_total(path))
    reporter = _Bar(bar, task, run_, clock, timezone)
    reporter.draw()
    return reporter


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
    from pipeline.ledger.connect import open_ledger_for

    s = settings(ctx)

    def work() -> Verification:
        with ExitStack() as stack:
            ledger = open_ledger_for(s, create=False)
            stack.callback(ledger.close)
            # the embedded demo tenant the service uploaded to (kept in the state folder)
            db = s.paths.state / "sandbox.sqlite" if s.api.embedded else None
            client = stack.enter_context(open_client(s, sandbox_db=db))
            return verify_file(path, s, client=client, ledger=ledger)

    result = run(work)
    if as_json:
        typer.echo(json.dumps({**asdict(result), "message": result.message}, indent=2))
    else:
        console().print(result.message, highlight=False, markup=False)
    if result.duplicates or result.blind:
        raise typer.Exit(1)
