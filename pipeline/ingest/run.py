"""One file, end to end, in named steps: identify, open, check and deliver, account.

:func:`ingest_file` is the one call that both ``leadpipe ingest`` and the drop-folder service
make for a file::

    identify (opening.py)   hash, is it the claimed file?, the ledger's record (a re-drop?)
    open_file (opening.py)  the campaign's schema, the table, its columns mapped to fields
    read_and_deliver        each chunk validated; its valid rows to the chosen Delivery (upload
      (chunks.py)           exactly once, or a preview that sends nothing); rejects collected
    account (accounting.py) the counts -> a Receipt with its FileOutcome

It returns an :class:`IngestResult`: the receipt (not yet written) and the reject files it wrote
into the request's results folder. Writing the receipt where it belongs, and recording a done
file in the ledger, is the caller's next step, always through
:class:`pipeline.ingest.report.place.ReceiptWriter`. A rerun of the same content resumes from
the ledger; a finished file is not processed twice for the same campaign. A file that changes
while it is read raises :class:`~pipeline.errors.FileChanged`: nothing is reported as done, and
rows it already sent are handed over to its complete version (see ``docs/dropfolder.md``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.clock import Clock, SystemClock
from pipeline.config import Settings
from pipeline.dropfolder.cancel import CancelSignal
from pipeline.dropfolder.identity import FileIdentity
from pipeline.dropfolder.layout import DropFolder, safe_name
from pipeline.ingest.accounting import Times, account, already_receipt, cancelled_receipt
from pipeline.ingest.chunks import IngestProgress, RejectPlace, read_and_deliver, write_not_sent
from pipeline.ingest.deliver.delivery import Delivery, PreviewDelivery, UploadDelivery
from pipeline.ingest.deliver.tenantproof import ProofStore
from pipeline.ingest.deliver.upload import LeadApi, Uploader
from pipeline.ingest.opening import Opened, identify, open_file
from pipeline.ingest.report.receipt import Receipt
from pipeline.ingest.schema_cache import SchemaCache
from pipeline.ledger import FileKey, Ledger
from pipeline.outcome import FileOutcome

__all__ = [
    "IngestContext",
    "IngestRequest",
    "IngestResult",
    "ingest_file",
]

#: Why a file that is not done waits, when the upload did not halt (rows left unsent).
ROWS_WAIT = "rows wait to be sent"


@dataclass(frozen=True)
class IngestRequest:
    """One file to ingest, and how: the caller's choices."""

    path: Path
    campaign: str
    results: Path  #: the folder the reject files are written into
    tmp: Path  #: temporary files (the reject spool)
    dry_run: bool = False  #: check only: a :class:`PreviewDelivery`, nothing sent or recorded
    #: the file as it was claimed: if it is not that one any more, FileChanged
    expect: FileIdentity | None = None
    chunk_rows: int = 100_000


@dataclass(frozen=True)
class IngestContext:
    """What ingest works with: settings, the API, the ledger, time, and the caller's signals."""

    settings: Settings
    client: LeadApi
    ledger: Ledger
    clock: Clock = field(default_factory=SystemClock)
    stop: threading.Event | None = None  #: set: finish the chunk at hand, read no further
    progress: IngestProgress | None = None
    #: recently fetched live schemas (the service's); None: fetch the schema live
    schemas: SchemaCache | None = None
    #: set when a person cancels the file: the caller also sets ``stop`` (the upload stops
    #: before its next row) and the rows not sent go to a not-sent file (docs/dropfolder.md)
    cancel: CancelSignal | None = None


@dataclass(frozen=True)
class IngestResult:
    """One file's ingest: its receipt (not yet written) and the reject files it wrote."""

    receipt: Receipt  #: ``outcome`` says how the file ended
    rejects: list[Path]  #: in the request's results folder; none when no row was rejected
    stamp: str  #: when the run started (``YYYYMMDD-HHMMSS``, local): the results' name prefix
    base: str  #: ``<stamp>_<name>``: the reject files are ``<base>.rejects.xlsx`` / ``.csv``
    #: why the file is not done (outcome waiting, stopped or interrupted), in plain words
    reason: str = ""
    not_permitted: bool = False  #: halted because the API refused credentials or rights

    @property
    def outcome(self) -> FileOutcome:
        """How the file ended."""
        return self.receipt.outcome

    @property
    def key(self) -> FileKey:
        """The file's ledger key."""
        return FileKey(self.receipt.sha256, self.receipt.campaign)


def ingest_file(request: IngestRequest, context: IngestContext) -> IngestResult:
    """Process one file now; returns its receipt without writing it (see the module docstring).

    Raises :class:`~pipeline.errors.InputError` when the file cannot be processed at all
    (unreadable, missing required columns), :class:`~pipeline.errors.StateError` when the
    ledger cannot be trusted. Rejected rows, API refusals and an unavailable API are not
    exceptions: the receipt says what happened and what to do.
    """
    clock, ledger, settings = context.clock, context.ledger, context.settings
    t0 = clock.monotonic()
    tz = ZoneInfo(settings.timezone)
    started = clock.now().astimezone(tz)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    started_at = started.isoformat(timespec="seconds")
    path = Path(request.path)
    base = DropFolder.result_name(stamp, safe_name(path.name))

    def times() -> Times:
        finished = clock.now().astimezone(tz).isoformat(timespec="seconds")
        return Times(started_at, finished, round(clock.monotonic() - t0, 3))

    file = identify(path, request.campaign, ledger, dry_run=request.dry_run, expect=request.expect)
    done = file.done_before
    if done is not None and not request.dry_run:
        return IngestResult(already_receipt(file, done, times()), [], stamp, base)
    opened = open_file(
        file,
        settings,
        context.client,
        ledger,
        dry_run=request.dry_run,
        chunk_rows=request.chunk_rows,
        schemas=context.schemas,
    )
    delivery = _delivery(request, context, opened)
    tally = read_and_deliver(
        opened,
        delivery,
        RejectPlace(request.results, base, request.tmp),
        stop=context.stop,
        progress=context.progress,
    )
    delivered = delivery.result()
    cancel = context.cancel
    if (
        cancel is not None
        and cancel.requested
        and not request.dry_run
        and (tally.interrupted or delivered.pending or delivered.halt is not None)
    ):
        for f in tally.reject_files:  # their rows are in the not-sent file
            f.unlink(missing_ok=True)
        not_sent = write_not_sent(
            opened,
            ledger,
            FileKey(opened.file.identity.sha256, request.campaign),
            RejectPlace(request.results, DropFolder.not_sent_base(base), request.tmp),
            cancel.text,
        )
        receipt = cancelled_receipt(opened, delivered, not_sent, cancel.text, times=times())
        # not done: a re-drop of the same content sends only the rows not sent
        delivery.leave_waiting(receipt.halt_reason)
        return IngestResult(receipt, not_sent.files, stamp, base, reason=receipt.halt_reason)
    receipt = account(opened, tally, delivered, dry_run=request.dry_run, times=times())
    reason = ""
    if receipt.outcome is not delivered.complete:
        reason = receipt.halt_reason or ROWS_WAIT
        delivery.leave_waiting(reason)
    return IngestResult(
        receipt,
        list(tally.reject_files),
        stamp,
        base,
        reason=reason,
        not_permitted=delivered.halt is not None and delivered.halt.not_permitted,
    )


def _delivery(request: IngestRequest, context: IngestContext, opened: Opened) -> Delivery:
    """The delivery step for this run: a preview for a dry run, else the exactly-once upload."""
    settings, campaign = context.settings, request.campaign
    skip_duplicates = settings.campaign(campaign).duplicates != "upload"
    if request.dry_run:
        return PreviewDelivery(context.ledger, campaign, skip_duplicates=skip_duplicates)
    progress = context.progress
    uploader = Uploader(
        context.client,
        context.ledger,
        sha256=opened.file.identity.sha256,
        campaign=campaign,
        concurrency=settings.intake.concurrency,
        skip_duplicates=skip_duplicates,
        timezone=settings.timezone,
        reconcile_grace=max(2.0, 2 * settings.api.read_timeout),
        clock=context.clock,
        stop=context.stop,
        progress=(lambda d, t: progress("uploading", d, t)) if progress else None,
        proof=ProofStore.for_settings(settings),
    )
    hold = ""
    if opened.schema.source == "snapshot":  # the upload waits until the live schema is fetched
        hold = (
            "the campaign schema came from a saved snapshot (the API could not be reached);"
            " rows were validated but not uploaded"
        )
    return UploadDelivery.begin(uploader, request.path.name, opened.header_of, hold=hold)
