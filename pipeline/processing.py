"""The intake's processor for real files: :func:`pipeline.ingest.ingest_file`, adapted.

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
from typing import Any

from pipeline.clock import Clock
from pipeline.config import Settings
from pipeline.errors import InputError, NotPermitted, Unavailable, Uncertain
from pipeline.fsutil import atomic_move, atomic_write_text
from pipeline.intake import Job, Outcome
from pipeline.receipt import Receipt, render_receipt
from pipeline.schema_cache import SchemaCache


class IngestProcessor:
    """Adapts :func:`pipeline.ingest.ingest_file` to the intake's ``Processor``.

    Ingest writes its receipt and reject files into a results folder inside the claim (the
    work folder, same volume); this adapter then renames them into ``rejected/`` and
    ``processed/`` (or beside a ``preview/`` file), rejects first, receipt last, so every file a
    person sees is complete. Moving the original is the intake's job.
    """

    def __init__(
        self,
        settings: Settings,
        client: Any,
        ledger: Any,
        *,
        stop: threading.Event,
        clock: Clock | None = None,
        schemas: SchemaCache | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.ledger = ledger
        self.stop = stop
        self.clock = clock
        #: live campaign schemas, reused for ``intake.schema_ttl_seconds`` across files
        self.schemas = schemas or SchemaCache(settings.intake.schema_ttl_seconds, clock=clock)

    def __call__(self, job: Job) -> Outcome:
        from pipeline.ingest import ingest_file

        results = job.path.parent / "results"
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
            )
        except InputError as exc:
            shutil.rmtree(results, ignore_errors=True)
            return Outcome("failed", message=exc.reason)
        except NotPermitted as exc:
            return Outcome("wait", message=str(exc), not_permitted=True)
        except (Unavailable, Uncertain) as exc:
            return Outcome("wait", message=f"the API is not answering: {exc}", uncertain=1)
        counts = _receipt_counts(receipt)
        halt = receipt.halt or ""
        reason = receipt.halt_reason
        if not job.preview:
            record = self.ledger.file(job.sha256)
            if record is not None and str(record.state) == "waiting":
                reason = reason or record.reason
                halt = halt or ("stopped" if self.stop.is_set() else "unavailable")
        if halt == "stopped" or (halt and self.stop.is_set()):
            return Outcome("interrupted", message=reason)
        if halt in ("unavailable", "not_permitted"):
            shutil.rmtree(results, ignore_errors=True)
            return Outcome(
                "wait",
                message=reason or "the API is not answering",
                not_permitted=halt == "not_permitted",
            )
        placed = self._place(results, job, receipt)
        stamp = placed.original.name.split("_", 1)[0]
        return Outcome(
            "processed",
            message=reason,
            receipt=placed.receipt,
            rejects=placed.rejects,
            counts=counts,
            stamp=stamp,
            destination=placed.original,
            uncertain=int(counts.get("uncertain", 0)),
        )

    def _place(self, results: Path, job: Job, receipt: Receipt) -> _Placed:
        """Rename the reject files to their final place; write the receipt there, naming them.

        The receipt ingest wrote inside the work folder names work-folder paths; the one a
        person reads names where the files really are.
        """
        files = sorted(f for f in results.iterdir() if f.is_file()) if results.is_dir() else []
        stamp = next(
            (f.name.split("_", 1)[0] for f in files if f.name.endswith(".receipt.txt")), job.stamp
        )
        originals = job.folder if job.preview else job.folder / "processed"
        rejects: list[Path] = []
        reject_dir = job.folder if job.preview else job.folder / "rejected"
        for f in files:
            if ".rejects." in f.name:
                rejects.append(atomic_move(f, reject_dir / f.name))
        if not rejects:
            # a rerun after an interruption between our renames: ingest reports the earlier
            # run's reject files, which already reached their place
            earlier = [reject_dir / Path(p).name for p in receipt.reject_files]
            rejects = [p for p in earlier if p.is_file()]
        base = f"{stamp}_{job.name}"
        original = _free_name(originals / base)
        txt = originals / f"{original.name}.receipt.txt"
        rejects.sort(key=lambda p: (p.suffix != ".xlsx", p.name))  # the spreadsheet first
        receipt.file = str(job.folder / job.name)  # the name the person dropped
        receipt.reject_files = [str(p) for p in rejects]
        receipt.receipt_file = str(txt)
        # like receipt.write_receipt, with the temp files in the hidden work area of the inbox
        # rather than a ``.leadpipe`` folder inside processed/ (visible on Windows shares)
        tmp = job.path.parent.parent.parent.parent / "tmp"
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


def _free_name(dest: Path) -> Path:
    """The name :func:`atomic_move` will choose for ``dest`` (a suffix when taken)."""
    candidate, n = dest, 1
    while candidate.exists():
        candidate = dest.with_name(f"{dest.stem}.{n}{dest.suffix}")
        n += 1
    return candidate


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
