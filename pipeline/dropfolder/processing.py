"""The intake's processor for real files: :func:`pipeline.ingest.run.ingest_file`, adapted.

Ingest writes its reject files into a results folder inside the claim (the work folder, same
volume) and returns the receipt unwritten. :class:`IngestProcessor` decides from the receipt's
:class:`~pipeline.outcome.FileOutcome` what becomes of the file and, for a file that reaches its
final place, has :class:`~pipeline.ingest.report.place.ReceiptWriter` rename the reject files
into ``rejected/`` (or beside a ``preview/`` file) and write the receipt into ``processed/``.
Moving the original is the intake's job.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

from pipeline.api import HeroBaseClient
from pipeline.api.quota import QuotaExhausted
from pipeline.api.ratelimit import Stopping
from pipeline.clock import Clock, SystemClock
from pipeline.config import Settings
from pipeline.dropfolder.eta import estimate_rows
from pipeline.dropfolder.identity import open_for_writing
from pipeline.dropfolder.jobs import Job, LeaseHold, Outcome
from pipeline.dropfolder.layout import DropFolder
from pipeline.errors import (
    FileChanged,
    FileUnreadable,
    InputError,
    NotPermitted,
    Unavailable,
    Uncertain,
)
from pipeline.files import WORK_DIR_NAME, free_name
from pipeline.ingest.report.place import ReceiptWriter, ResultPlaces
from pipeline.ingest.report.receipt import Receipt
from pipeline.ingest.schema_cache import SchemaCache
from pipeline.ledger import (
    Claim,
    FileKey,
    FileRecord,
    FileState,
    Ledger,
    RowState,
    mark_changed,
)
from pipeline.outcome import FileOutcome
from pipeline.service.health import Heartbeats

if TYPE_CHECKING:
    from pipeline.ingest.run import IngestResult

log = logging.getLogger("leadpipe.intake")

#: rows sent are counted from the ledger at most this often (s) while a file uploads
COUNT_EVERY = 0.5
#: ``<stamp>_``: the prefix of a result's name
_STAMP = re.compile(r"^(\d{8}-\d{6})_")


class IngestProcessor:
    """Adapts :func:`pipeline.ingest.run.ingest_file` to the intake's ``Processor``.

    The outcome comes from the receipt ingest returns: waiting and interrupted files are not
    placed (back to the inbox; left claimed); for the others the reject files and the receipt
    are put in place by :class:`~pipeline.ingest.report.place.ReceiptWriter`, rejects first,
    receipt last, so every file a person sees is complete. Moving the original is the intake's
    job.
    """

    def __init__(
        self,
        settings: Settings,
        client: HeroBaseClient,
        ledger: Ledger,
        *,
        stop: threading.Event,
        clock: Clock | None = None,
        schemas: SchemaCache | None = None,
        beats: Heartbeats | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.ledger = ledger
        self.stop = stop
        self.clock = clock
        self.beats = beats  # each chunk read and row sent is a sign of progress
        #: live campaign schemas, reused for ``intake.schema_ttl_seconds`` across files
        self.schemas = schemas or SchemaCache(settings.intake.schema_ttl_seconds, clock=clock)
        self.writer = ReceiptWriter(ledger)

    def __call__(self, job: Job) -> Outcome:
        from pipeline.ingest.run import IngestContext, IngestRequest, ingest_file

        # Left from an interrupted run of this claim, the folder may hold reject files that
        # run recorded in the ledger but did not put in place yet: kept until the claim ends.
        results = DropFolder.results(job.path.parent)
        request = IngestRequest(
            job.path,
            job.campaign,
            results=results,
            tmp=results / WORK_DIR_NAME / "tmp",
            dry_run=job.preview,
            expect=job.identity,
        )
        if job.cancel.requested and not job.resumed:  # cancelled while it waited: not read
            return self._cancelled_unread(job)
        if job.lease is not None and not job.lease.check():
            # lost while it waited in the queue: reading it would turn rows the node that holds
            # it now is sending into "uncertain" (docs/cluster.md, "Leases and fencing")
            return Outcome(FileOutcome.INTERRUPTED, message="the claim's lease was lost")
        report = _Reporter(self, job)
        stops: list[threading.Event] = [self.stop, job.cancel.event]
        ledger, client = self.ledger, self.client
        if job.lease is not None:  # a cluster: sends only under the claim's lease
            stops.append(LeaseFence(job.lease))
            ledger = cast(Ledger, FencedLedger(self.ledger, job.lease))
            client = cast(HeroBaseClient, FencedClient(self.client, job.lease))
        context = IngestContext(
            self.settings,
            client,
            ledger,
            clock=self.clock or SystemClock(),
            # a cancel stops the upload like a stop does, for this file only; so does the
            # loss of the claim's lease (docs/cluster.md, "Leases and fencing")
            stop=StopOrCancel(*stops),
            progress=report,
            schemas=self.schemas,
            cancel=job.cancel,
        )
        try:
            result = ingest_file(request, context)
            report.final(result.receipt.rejected)
        except FileChanged as exc:
            shutil.rmtree(results, ignore_errors=True)
            return Outcome(FileOutcome.CHANGED, message=exc.reason)
        except FileUnreadable as exc:
            shutil.rmtree(results, ignore_errors=True)
            return self._unreadable(job, exc)
        except InputError as exc:
            shutil.rmtree(results, ignore_errors=True)
            return Outcome(FileOutcome.FAILED, message=exc.reason)
        except NotPermitted as exc:
            return Outcome(FileOutcome.WAITING, message=str(exc), not_permitted=True)
        except QuotaExhausted as exc:  # e.g. the schema could not be fetched: nothing sent
            return Outcome(FileOutcome.WAITING, message=str(exc), resume_at=exc.resume_at)
        except (Unavailable, Uncertain) as exc:
            return Outcome(
                FileOutcome.WAITING, message=f"the API is not answering: {exc}", uncertain=1
            )
        return self._finish(job, result, results)

    def _budget_resets_at(self) -> datetime | None:
        """When the day's request budget resets, if it is spent (docs/dropfolder.md)."""
        limiter = getattr(self.client, "limiter", None)
        quota = limiter.quota() if limiter is not None else None
        if quota is None or not quota.spent or not quota.resets_at:
            return None
        return datetime.fromisoformat(quota.resets_at)

    def _finish(self, job: Job, result: IngestResult, results: Path) -> Outcome:
        """Decide from the receipt's outcome; put the results of a file that is done in place."""
        outcome = result.outcome
        stopping = self.stop.is_set() and outcome in (FileOutcome.WAITING, FileOutcome.STOPPED)
        if job.lease is not None and (job.lease.lost.is_set() or not job.lease.check()):
            # another node took the claim over (or may by now): it is that node's to place
            return Outcome(FileOutcome.INTERRUPTED, message="the claim's lease was lost")
        if outcome is FileOutcome.INTERRUPTED or stopping:
            return Outcome(FileOutcome.INTERRUPTED, message=result.reason)  # stays claimed
        # from here on, a lease lost meanwhile leaves the file's record to its new holder
        ledger = (
            self.ledger if job.lease is None else cast(Ledger, FencedLedger(self.ledger, job.lease))
        )
        if outcome is FileOutcome.WAITING:
            shutil.rmtree(results, ignore_errors=True)
            return Outcome(
                FileOutcome.WAITING,
                message=result.reason or "the API is not answering",
                not_permitted=result.not_permitted,
                resume_at=self._budget_resets_at(),
            )
        receipt, rejects, stamp = result.receipt, result.rejects, result.stamp
        if outcome is FileOutcome.ALREADY and job.resumed:
            # Not a re-drop: this claim's own run finished in the ledger and was interrupted
            # before its receipt reached processed/. Deliver that run's receipt, once.
            delivered = self._delivered_receipt(job, receipt.sha256)
            if delivered is not None:
                shutil.rmtree(results, ignore_errors=True)
                data = json.loads(delivered.with_suffix(".json").read_text("utf-8"))
                earlier = Receipt.from_json(data)
                return Outcome(
                    earlier.outcome,
                    receipt=delivered,
                    counts=_receipt_counts(earlier),
                    destination=delivered.with_name(delivered.name.removesuffix(".receipt.txt")),
                )
            record = self.ledger.file(result.key)
            if record is not None and record.receipt_json:
                # the receipt recorded with the ledger's "done"; its reject files are in place
                # or still in the results folder
                receipt = Receipt.from_json(json.loads(record.receipt_json))
                rejects = [results / Path(p).name for p in receipt.reject_files]
                found = _STAMP.match(Path(receipt.receipt_file).name)
                stamp = found.group(1) if found else stamp
        if job.identity is not None and (
            not job.identity.stat_matches(job.path) or open_for_writing(job.path)
        ):  # written to again since ingest's last look: not done, take it again
            shutil.rmtree(results, ignore_errors=True)
            if outcome is not FileOutcome.ALREADY:  # a re-drop read nothing: its record stays
                mark_changed(ledger, result.key, job.preview, "still being written")
            return Outcome(
                FileOutcome.CHANGED, message=FileChanged("it changed after it was read").reason
            )
        places = ResultPlaces.in_drop_folder(self.settings.paths.inbox, job.folder, job.preview)
        original = free_name(places.receipts / DropFolder.result_name(stamp, job.name))
        writer = self.writer if job.lease is None else ReceiptWriter(ledger)
        placed = writer.place(self._as_dropped(job, receipt), rejects, places, original.name)
        shutil.rmtree(results, ignore_errors=True)
        done = placed.receipt
        counts = _receipt_counts(done)
        message = done.halt_reason
        if done.outcome is FileOutcome.ALREADY:  # say so where the counts (all 0) are shown
            message = message or done.messages[0]
        return Outcome(
            done.outcome,
            message=message,
            receipt=placed.txt,
            rejects=placed.rejects,
            counts=counts,
            stamp=stamp,
            destination=original,
            uncertain=int(counts.get("uncertain", 0)),
        )

    @staticmethod
    def _as_dropped(job: Job, receipt: Receipt) -> Receipt:
        """The receipt naming the file as the person dropped it (not its claimed copy)."""
        messages = list(receipt.messages)
        if job.dropped_as and not any("was dropped as" in m for m in messages):
            messages.append(
                f"The file was dropped as '{job.dropped_as}'. That name has bytes that are not "
                "text or is too long to add a date stamp to, so leadpipe processed it as "
                f"'{job.name}'."
            )
        return replace(receipt, file=str(job.folder / job.name), messages=messages)

    def _cancelled_unread(self, job: Job) -> Outcome:
        """A file cancelled while it waited: a receipt saying so, 0 sent; nothing recorded."""
        clock = self.clock or SystemClock()
        tz = ZoneInfo(self.settings.timezone)
        now = clock.now().astimezone(tz)
        stamp = now.strftime("%Y%m%d-%H%M%S")
        at = now.isoformat(timespec="seconds")
        receipt = Receipt(
            file=str(job.folder / job.name),
            sha256=job.sha256,
            campaign=job.campaign,
            outcome=FileOutcome.CANCELLED,
            started_at=at,
            finished_at=at,
            halt="cancelled",
            halt_reason=f"{job.cancel.text} before it was read",
            messages=[
                f"This file was {job.cancel.text}, before it was read: nothing was read or "
                "sent (0 rows uploaded). To upload it after all, drop it into the campaign "
                "folder again."
            ],
            next_steps=["To upload it after all, drop the file again."],
        )
        places = ResultPlaces.in_drop_folder(self.settings.paths.inbox, job.folder, job.preview)
        original = free_name(places.receipts / DropFolder.result_name(stamp, job.name))
        placed = self.writer.place(receipt, [], places, original.name)
        shutil.rmtree(DropFolder.results(job.path.parent), ignore_errors=True)
        return Outcome(
            FileOutcome.CANCELLED,
            message=receipt.halt_reason,
            receipt=placed.txt,
            counts=_receipt_counts(placed.receipt),
            stamp=stamp,
            destination=original,
        )

    def _unreadable(self, job: Job, exc: FileUnreadable) -> Outcome:
        """A refusal a paused copy also causes is final only once the file is not fresh.

        A workbook whose copy is paused (by a writer this machine cannot see) looks damaged, and
        its modification time is that of its last write: recent. Copy tools set a preserved
        time only once the copy is complete. So a file written to within the last
        ``intake.unreadable_grace_seconds`` goes back to the inbox and is tried again after it
        settles; one that stays unreadable after that goes to failed/.
        """
        grace = self.settings.intake.unreadable_grace_seconds
        now = (self.clock or SystemClock()).now().timestamp()
        try:
            age = now - job.path.stat().st_mtime
        except OSError:
            age = grace
        if not exc.incomplete or age >= grace:
            return Outcome(FileOutcome.FAILED, message=exc.reason)
        left = max(1, round(grace - age))
        return Outcome(
            FileOutcome.CHANGED,
            message=(
                f"the file could not be opened ({exc.reason.rstrip('.')}). It was written to "
                f"{max(0, round(age))} s ago: if it is still being copied, it is taken again "
                f"once complete; if it is still unreadable in {left} s it goes to failed/."
            ),
            retry_after=grace - age + 0.5,
        )

    def _delivered_receipt(self, job: Job, sha256: str) -> Path | None:
        """The receipt an interrupted run of this claim already placed, if it got that far."""
        originals = DropFolder.originals(job.folder, job.preview)
        for found in sorted(originals.glob(f"*_{job.name}.receipt.json"), reverse=True):
            try:
                data = json.loads(found.read_text("utf-8"))
            except (OSError, ValueError):
                continue
            if data.get("sha256") == sha256 and data.get("earlier") is None:
                txt = found.with_name(found.name.removesuffix(".json") + ".txt")
                if txt.is_file():
                    return txt
        return None


class StopOrCancel(threading.Event):
    """Set when the service stops or the file is cancelled (what the upload watches)."""

    def __init__(self, *events: threading.Event) -> None:
        super().__init__()
        self.events = events

    def is_set(self) -> bool:
        return super().is_set() or any(e.is_set() for e in self.events)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until any is set (or ``timeout`` s): polled, in short slices."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                return False
            super().wait(left)
        return True


class LeaseFence(threading.Event):
    """Set once the claim's lease is lost or too old to send under (a local look, polled by
    the upload like a stop; docs/cluster.md, "Leases and fencing")."""

    def __init__(self, lease: LeaseHold) -> None:
        super().__init__()
        self.lease = lease

    def is_set(self) -> bool:
        return self.lease.fenced()


class FencedLedger:
    """The ledger, with the claim's lease checked before each batch of sends and before any
    write about the file as a whole (docs/cluster.md, "Leases and fencing").

    :meth:`Ledger.claim_for_sending` records the intent before any POST of a batch: refused
    here when the lease is not this node's any more (or cannot be vouched for), so no row goes
    ``sending`` without it. Once the lease is lost or fenced, the file is the new holder's:
    the file's state (waiting, changed, done), its rows left ``sending`` and its new rows are
    not touched any more (a paused node waking up must not set the file another node finished
    back to waiting, nor turn its rows uncertain); those calls do nothing, so the run ends as
    it would and the intake leaves the claim to its holder. What this node's own requests got
    back (accepted, refused, uncertain, a unique id) is true whoever holds the lease: recorded.
    Every other call goes to the ledger unchanged.
    """

    def __init__(self, ledger: Ledger, lease: LeaseHold) -> None:
        self._ledger = ledger
        self._lease = lease

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def _gone(self, what: str, key: FileKey) -> bool:
        if not self._lease.fenced():
            return False
        log.info("lease lost: the ledger's %s of a file left to its holder", what)
        return True

    def claim_for_sending(self, key: FileKey, rows: Any, **kwargs: Any) -> Claim:
        if not self._lease.check():
            return Claim([], {})  # nothing flipped: the rows stay pending; the upload halts
        return self._ledger.claim_for_sending(key, rows, **kwargs)

    def record_unsent(self, key: FileKey, rows: Any, reason: str = "") -> None:
        """Rows this node flipped to ``sending`` and did not send: back to pending, unless
        the lease is lost. Then they are the new holder's, which found them ``sending`` and
        made them ``uncertain`` (and may be sending them now): not touched."""
        if self._lease.fenced():
            return
        self._ledger.record_unsent(key, rows, reason)

    def begin_file(self, key: FileKey, name: str) -> FileRecord:
        """Recorded as being processed, unless the lease is lost and the record is there: it
        is the new holder's then (returned as it is)."""
        if self._lease.fenced() and (record := self._ledger.file(key)) is not None:
            return record
        return self._ledger.begin_file(key, name)

    def set_file_state(self, key: FileKey, state: FileState, reason: str = "") -> None:
        if not self._gone("state", key):
            self._ledger.set_file_state(key, state, reason)

    def finish_file(
        self, key: FileKey, state: FileState, receipt_path: str, receipt_json: str
    ) -> None:
        if not self._gone("end", key):
            self._ledger.finish_file(key, state, receipt_path, receipt_json)

    def add_rows(self, key: FileKey, rows: Iterable[tuple[int, str]]) -> int:
        if self._gone("new rows", key):
            return 0
        return self._ledger.add_rows(key, rows)

    def recover_sending(self, key: FileKey | None = None) -> int:
        """Rows left ``sending`` become uncertain: never under the new holder's feet (nor,
        without a key, for every file: only this claim's lease is known here)."""
        if key is None or self._gone("rows left sending", key):
            return 0
        return self._ledger.recover_sending(key)


class FencedClient:
    """The API client, with the claim's lease looked at right before each upload.

    Rows of a batch wait in the upload's threads for their turn; a node paused (or cut off)
    past its lease must not POST them when it wakes up: the lease's own age says so, no
    database needed (:meth:`LeaseHold.fenced`), here and once more in the service's HTTP
    session right before the request is sent (:mod:`pipeline.service.fencing`). Refused as
    :class:`Stopping` (certainly not sent). Every other call goes to the client unchanged.
    """

    def __init__(self, client: HeroBaseClient, lease: LeaseHold) -> None:
        self._client = client
        self._lease = lease

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create_lead(self, code: str, data: Any) -> Any:
        from pipeline.service.fencing import LeaseLost, sending_under

        if self._lease.fenced():
            raise Stopping("not sent: this node no longer holds the file's lease")
        try:
            # and again right before the bytes go out, after the rate limiter's wait
            with sending_under(self._lease):
                return self._client.create_lead(code, data)
        except LeaseLost as exc:
            raise Stopping(str(exc)) from exc


class _Reporter:
    """Ingest's progress callback for one job: heartbeats, and the job's progress record.

    Rows read and rejected come from the pass over the file; rows sent from the ledger's row
    counts (this run's: less those the file had when it started), at most every
    :data:`COUNT_EVERY` seconds (docs/dropfolder.md, "Progress, rate and finish").
    """

    def __init__(self, processor: IngestProcessor, job: Job) -> None:
        self.beats = processor.beats
        self.ledger = processor.ledger
        self.clock: Clock = processor.clock or SystemClock()
        self.run = job.progress
        self.key = FileKey(job.sha256, job.campaign)
        self.preview = job.preview
        self._last = -COUNT_EVERY
        self.baseline: dict[str, int] = {}
        if self.run is not None:
            self.run.estimate(estimate_total(job.path))
            if not self.preview:
                self.baseline = self._counts()

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if self.beats is not None:
            self.beats.beat()
        run = self.run
        if run is None:
            return
        if stage in ("reading", "read"):
            run.reading(done, total=total if stage == "read" else None)
        elif stage == "rejected":
            run.rejected(done)
        elif stage == "uploading":
            self._sent()

    def _sent(self, force: bool = False) -> None:
        now = self.clock.monotonic()
        if self.run is None or self.preview or (not force and now - self._last < COUNT_EVERY):
            return
        self._last = now
        counts = self._counts()
        mine = {k: max(0, n - self.baseline.get(k, 0)) for k, n in counts.items()}
        self.run.sent(mine, now)

    def final(self, rejected: int) -> None:
        """The run ended: its last counts."""
        if self.run is not None:
            self.run.rejected(rejected)
            self._sent(force=True)

    def _counts(self) -> dict[str, int]:
        c = self.ledger.row_counts(self.key)
        return {
            "accepted": c[RowState.ACCEPTED] + c[RowState.MOVED],
            "refused_by_api": c[RowState.REFUSED],
            "duplicates": c[RowState.DUPLICATE],
            "uncertain": c[RowState.UNCERTAIN],
        }


def estimate_total(path: Path) -> int | None:
    """The data rows of a file before it is read: its lines (CSV), else from its size.

    Cheap (one pass counting line ends, no parsing); quoted line breaks make it an estimate.
    """
    try:
        size = path.stat().st_size
        if path.suffix.lower() not in (".csv", ".txt"):
            return estimate_rows(path.name, size)
        lines, last = 0, b"\n"
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
        lines += last != b"\n"  # a last line without a line end
        return max(0, lines - 1)  # the header
    except OSError:
        return None


def _receipt_counts(r: Receipt) -> dict[str, int]:
    """The receipt's row counts (the status page and ``/metrics`` show them)."""
    return {
        "rows_read": r.rows_read,
        "accepted": r.accepted,
        "rejected": r.rejected,
        "refused_by_api": r.refused_by_api,
        "duplicates": r.duplicates,
        "uncertain": r.uncertain,
        "blank_skipped": r.blank_skipped,
    }
