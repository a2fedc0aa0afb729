"""Where a file's results belong, and the one owner that puts them there: :class:`ReceiptWriter`.

Ingest (:func:`pipeline.ingest.run.ingest_file`) returns a receipt without writing it, and the
reject files it wrote into a results folder. ``leadpipe ingest`` and the drop-folder service
(:class:`pipeline.dropfolder.processing.IngestProcessor`) both hand them to
:meth:`ReceiptWriter.place`, which is the only code that writes a receipt where a person reads
it and the only code that records a file as done in the ledger. The receipt names the reject
files and itself where they really are (``docs/architecture.md``, "The drop folder").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.config import Settings
from pipeline.crashpoints import crash_point
from pipeline.dropfolder.layout import PREVIEW, DropFolder
from pipeline.files import WORK_DIR_NAME, atomic_move, free_name
from pipeline.ingest.report.receipt import Receipt, write_receipt
from pipeline.ledger import FileKey, FileState, Ledger
from pipeline.outcome import FileOutcome

#: ``leadpipe ingest`` of a file outside the inbox, without ``--out``: results go here.
RESULTS_DIR = Path("leadpipe-results")


@dataclass(frozen=True)
class ResultPlaces:
    """Where one file's results belong: its receipt, its reject files, and temporary files."""

    receipts: Path  #: the folder of ``<base>.receipt.txt`` and ``.receipt.json``
    rejects: Path  #: the folder of the reject files
    tmp: Path  #: temporary files of the atomic writes (same volume, never a visible folder)

    @classmethod
    def in_drop_folder(cls, inbox: Path, folder: Path, preview: bool) -> ResultPlaces:
        """A file dropped into ``folder`` (``inbox/<campaign>`` or its ``preview/``)."""
        return cls(
            receipts=DropFolder.originals(folder, preview),
            rejects=DropFolder.rejects(folder, preview),
            tmp=DropFolder(inbox).tmp,
        )

    @classmethod
    def for_ingest(
        cls, path: Path, campaign: str, settings: Settings, out_dir: Path | None
    ) -> ResultPlaces:
        """``leadpipe ingest``: ``out_dir`` (flat) when given; else the drop folder's result
        folders for a file in ``inbox/<campaign>/`` (or its ``preview/``); else
        ``./leadpipe-results/``."""
        if out_dir is None:
            home = (settings.paths.inbox / campaign).resolve()
            folder = path.resolve().parent
            if folder == home or (folder.name == PREVIEW and folder.parent == home):
                return cls.in_drop_folder(settings.paths.inbox, folder, folder != home)
        flat = Path(out_dir) if out_dir is not None else Path.cwd() / RESULTS_DIR
        return cls(receipts=flat, rejects=flat, tmp=flat / WORK_DIR_NAME / "tmp")

    def receipt_txt(self, base: str) -> Path:
        """The receipt of results named ``base`` (``<stamp>_<file name>``)."""
        return self.receipts / f"{base}.receipt.txt"


@dataclass(frozen=True)
class Placed:
    """A file's results in their place."""

    receipt: Receipt  #: as written
    txt: Path  #: the ``.receipt.txt`` (the ``.json`` is beside it)
    rejects: list[Path]  #: the reject files, the spreadsheet first


class ReceiptWriter:
    """The one writer of receipts, and the one place a file is recorded as done in the ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def place(
        self, receipt: Receipt, rejects: Sequence[Path], places: ResultPlaces, base: str
    ) -> Placed:
        """Put a file's results where they belong; a processed file is then done.

        In this order, so that an interruption anywhere leaves a state a rerun completes:

        1. the reject files' final names in ``places.rejects`` (a reject file already there,
           renamed by an interrupted earlier pass, stays where it is);
        2. a processed file is recorded as done in the ledger, with the receipt it gets (a claim
           interrupted after this delivers that receipt when it is resumed);
        3. the reject files are renamed into place;
        4. the receipt is written (JSON, then text) as ``<base>.receipt.txt``: last, so that it
           only ever names complete files.
        """
        moves: list[tuple[Path, Path]] = []
        final: list[Path] = []
        for f in rejects:
            dest = places.rejects / f.name
            if f != dest and f.is_file():
                dest = free_name(dest)
                moves.append((f, dest))
            elif not dest.is_file():
                continue  # gone: not named
            final.append(dest)
        final.sort(key=lambda p: (p.suffix != ".xlsx", p.name))  # the spreadsheet first
        txt = places.receipt_txt(base)
        placed = replace(receipt, reject_files=[str(p) for p in final], receipt_file=str(txt))
        if placed.outcome is FileOutcome.PROCESSED:
            as_json = json.dumps(placed.to_json(), ensure_ascii=False)
            key = FileKey(placed.sha256, placed.campaign)
            self.ledger.finish_file(key, FileState.DONE, str(txt), as_json)
        crash_point("done_recorded")
        for src, dest in moves:
            atomic_move(src, dest)
        self._write(placed, txt, places.tmp)
        return Placed(placed, txt, final)

    @classmethod
    def amend(cls, receipt: Receipt, json_path: Path, tmp: Path | None = None) -> None:
        """Rewrite a placed receipt in place (the verification pass adds what it found)."""
        txt = json_path.with_name(json_path.name.removesuffix(".json") + ".txt")
        cls._write(receipt, txt, tmp)

    @staticmethod
    def _write(receipt: Receipt, txt: Path, tmp: Path | None) -> None:
        json_path = txt.with_name(txt.name.removesuffix(".txt") + ".json")
        write_receipt(receipt, txt, json_path, tmp_dir=tmp)
