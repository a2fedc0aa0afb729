"""The intake's processor for real files: :func:`pipeline.ingest.run.ingest_file`, adapted.

Ingest writes its receipt and reject files into a results folder inside the claim (the work
folder, same volume); :class:`IngestProcessor` renames the reject files into ``rejected/`` (or
beside a ``preview/`` file) and writes the receipt into ``processed/``, naming where the files
really are. Moving the original is the intake's job.
"""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from pipeline.api import HeroBaseClient
from pipeline.clock import Clock, SystemClock
from pipeline.config import Settings
from pipeline.dropfolder.identity import open_for_writing
from pipeline.dropfolder.intake import Job, Outcome
from pipeline.dropfolder.layout import DropFolder
from pipeline.errors import (
    FileChanged,
    FileUnreadable,
    InputError,
    NotPermitted,
    Unavailable,
    Uncertain,
)
from pipeline.files import atomic_write_text, free_name
from pipeline.ingest.report.receipt import Receipt, render_receipt
from pipeline.ingest.schema_cache import SchemaCache
from pipeline.ledger import FileKey, FileState, Ledger, mark_changed
from pipeline.outcome import FileOutcome
from pipeline.service.health import Heartbeats


class IngestProcessor:
    """Adapts :func:`pipeline.ingest.run.ingest_file` to the intake's ``Processor``.

    Ingest writes its receipt and reject files into a results folder inside the claim (the
    work folder, same volume); this adapter then renames them into ``rejected/`` and
    ``processed/`` (or beside a ``preview/`` file), rejects first, receipt last, so every file a
    person sees is complete. Moving the original is the intake's job.
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

    def __call__(self, job: Job) -> Outcome:
        from pipeline.ingest.run import ingest_file

        results = DropFolder.results(job.path.parent)
        shutil.rmtree(results, ignore_errors=True)  # leftovers of an interrupted run
        try:
            receipt = ingest_file(
                job.path,
                job.campaign,
                self.settings,
                client=self.client,
                ledger=self.ledger,
                dry_run=job.preview,
                out_dir=results,
                stop=self.stop,
                clock=self.clock,
                schemas=self.schemas,
                expect=job.identity,
                progress=self._progress if self.beats is not None else None,
            )
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
        except (Unavailable, Uncertain) as exc:
            return Outcome(
                FileOutcome.WAITING, message=f"the API is not answering: {exc}", uncertain=1
            )
        counts = _receipt_counts(receipt)
        halt = receipt.halt or ""
        reason = receipt.halt_reason
        key = FileKey(receipt.sha256, job.campaign)
        if not job.preview:
            record = self.ledger.file(key)
            if record is not None and str(record.state) == "waiting":
                reason = reason or record.reason
                halt = halt or ("stopped" if self.stop.is_set() else "unavailable")
        if halt == "stopped" or (halt and self.stop.is_set()):
            return Outcome(FileOutcome.INTERRUPTED, message=reason)
        if halt in ("unavailable", "not_permitted"):
            shutil.rmtree(results, ignore_errors=True)
            return Outcome(
                FileOutcome.WAITING,
                message=reason or "the API is not answering",
                not_permitted=halt == "not_permitted",
            )
        if receipt.earlier is not None and job.resumed:
            # Not a re-drop: this claim's own run finished in the ledger and was interrupted
            # before its receipt reached processed/. Deliver that run's receipt, once.
            delivered = self._delivered_receipt(job, receipt.sha256)
            if delivered is not None:
                shutil.rmtree(results, ignore_errors=True)
                data = json.loads(delivered.with_suffix(".json").read_text("utf-8"))
                return Outcome(
                    FileOutcome.PROCESSED,
                    receipt=delivered,
                    counts=_receipt_counts(Receipt.from_json(data)),
                    destination=delivered.with_name(delivered.name.removesuffix(".receipt.txt")),
                )
            record = self.ledger.file(key)
            if record is not None and record.receipt_json:
                receipt = Receipt.from_json(json.loads(record.receipt_json))
                counts = _receipt_counts(receipt)
        if job.identity is not None and (
            not job.identity.stat_matches(job.path) or open_for_writing(job.path)
        ):  # written to again since ingest's last look: not done, take it again
            shutil.rmtree(results, ignore_errors=True)
            if receipt.earlier is None:  # a re-drop read nothing: its record stays as it is
                mark_changed(self.ledger, key, job.preview, "still being written")
            return Outcome(
                FileOutcome.CHANGED, message=FileChanged("it changed after it was read").reason
            )
        placed = self._place(results, job, receipt)
        stamp = placed.original.name.split("_", 1)[0]
        if not job.preview and receipt.earlier is None:
            # the ledger names the receipt where a person finds it (a re-drop points there)
            as_json = json.dumps(receipt.to_json(), ensure_ascii=False)
            self.ledger.finish_file(key, FileState.DONE, str(placed.receipt), as_json)
        if receipt.earlier is not None:  # a re-drop: say so where the counts (all 0) are shown
            reason = reason or receipt.messages[0]
        return Outcome(
            FileOutcome.PROCESSED,
            message=reason,
            receipt=placed.receipt,
            rejects=placed.rejects,
            counts=counts,
            stamp=stamp,
            destination=placed.original,
            uncertain=int(counts.get("uncertain", 0)),
        )

    def _progress(self, stage: str, done: int, total: int | None) -> None:
        if self.beats is not None:
            self.beats.beat()

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

    def _place(self, results: Path, job: Job, receipt: Receipt) -> _Placed:
        """Rename the reject files to their final place; write the receipt there, naming them.

        The receipt ingest wrote inside the work folder names work-folder paths; the one a
        person reads names where the files really are.
        """
        files = sorted(f for f in results.iterdir() if f.is_file()) if results.is_dir() else []
        stamp = next(
            (f.name.split("_", 1)[0] for f in files if f.name.endswith(".receipt.txt")), job.stamp
        )
        originals = DropFolder.originals(job.folder, job.preview)
        layout = DropFolder(self.settings.paths.inbox)
        reject_dir = DropFolder.rejects(job.folder, job.preview)
        rejects = layout.to_rejected(
            [f for f in files if ".rejects." in f.name], job.folder, job.preview
        )
        if not rejects:
            # a rerun after an interruption between our renames: ingest reports the earlier
            # run's reject files, which already reached their place
            earlier = [reject_dir / Path(p).name for p in receipt.reject_files]
            rejects = [p for p in earlier if p.is_file()]
        base = f"{stamp}_{job.name}"
        original = free_name(originals / base)
        txt = originals / f"{original.name}.receipt.txt"
        rejects.sort(key=lambda p: (p.suffix != ".xlsx", p.name))  # the spreadsheet first
        receipt.file = str(job.folder / job.name)  # the name the person dropped
        if job.dropped_as and not any("was dropped as" in m for m in receipt.messages):
            receipt.messages.append(
                f"The file was dropped as '{job.dropped_as}'. That name has bytes that are not "
                "text or is too long to add a date stamp to, so leadpipe processed it as "
                f"'{job.name}'."
            )
        receipt.reject_files = [str(p) for p in rejects]
        receipt.receipt_file = str(txt)
        # like receipt.write_receipt, with the temp files in the hidden work area of the inbox
        # rather than a ``.leadpipe`` folder inside processed/ (visible on Windows shares)
        tmp = DropFolder(self.settings.paths.inbox).tmp
        as_json = json.dumps(receipt.to_json(), indent=2, ensure_ascii=False) + "\n"
        atomic_write_text(originals / f"{original.name}.receipt.json", as_json, tmp_dir=tmp)
        atomic_write_text(txt, render_receipt(receipt), tmp_dir=tmp)
        shutil.rmtree(results, ignore_errors=True)
        return _Placed(receipt=txt, rejects=rejects, original=original)


@dataclass
class _Placed:
    receipt: Path
    rejects: list[Path]
    original: Path


def _receipt_counts(receipt: Receipt) -> dict[str, int]:
    keys = (
        "rows_read",
        "accepted",
        "rejected",
        "refused_by_api",
        "duplicates",
        "uncertain",
        "blank_skipped",
    )
    out: dict[str, int] = {}
    for k in keys:
        v = getattr(receipt, k, None)
        if isinstance(v, int):
            out[k] = v
    return out
