"""The drop folder's conventions: what is input, what is ignored, how claims and results are named.

Ops staff see (docs/architecture.md)::

    inbox/<campaign>/<file>                      drop here (or into preview/: check only)
    inbox/<campaign>/processed/<stamp>_<file>    the original once done, with its receipt
    inbox/<campaign>/rejected/...rejects.xlsx    rows to fix
    inbox/<campaign>/failed/<stamp>_<file>       could not be read, with .error.txt
    inbox/.leadpipe/work/<folder>/<claim>/<file> claimed, being processed (hidden)

The state machine that moves files between these places is :mod:`pipeline.dropfolder.intake`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePath

from pipeline.files import WORK_DIR_NAME, atomic_move, atomic_write_text, fsync_dir, readable

PROCESSED, REJECTED, FAILED = "processed", "rejected", "failed"
PREVIEW = "preview"
#: Sub-folders of a campaign folder that belong to leadpipe (never scanned for input).
RESULT_FOLDERS = frozenset({PROCESSED, REJECTED, FAILED})
#: Files we write beside originals; in ``preview/`` they are never taken as input.
OUTPUT_SUFFIXES = (".receipt.txt", ".receipt.json", ".rejects.xlsx", ".rejects.csv", ".error.txt")
_IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", "icon\r"})
_IGNORED_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp")
#: ``<file>.cancel`` dropped beside a file asks the service to cancel it (docs/dropfolder.md)
CANCEL_SUFFIX = ".cancel"
#: Beside the reject files: the rows a cancelled file did not send (same format)
NOT_SENT_INFIX = ".not-sent"
#: Excel saves through an extension-less temp file with an 8-hex-digit name.
_EXCEL_TEMP = re.compile(r"^[0-9A-F]{8}$")

#: ``<stamp>_``: the local time a result's run started (:meth:`DropFolder.result_name`).
_STAMP = re.compile(r"^(\d{8}-\d{6})_")


class ResultKind(StrEnum):
    """What a kept file in a campaign's result folders is (docs/retention.md)."""

    ORIGINAL = "original"  #: a processed original (``processed/``, ``preview/``)
    RECEIPT = "receipt"  #: ``.receipt.txt`` / ``.receipt.json``
    REJECTS = "rejects"  #: ``.rejects.xlsx`` / ``.rejects.csv`` (not-sent files too)
    FAILED = "failed"  #: a file in ``failed/`` or an ``.error.txt``


#: Lists a folder (``os.scandir``; tests and other file systems may pass their own).
ScanDir = Callable[[Path], Iterable[os.DirEntry[str]]]
#: Written into each claim folder beside the file: the file as it was claimed.
CLAIM_RECORD = ".claim.json"


#: Longest file name (UTF-8 bytes) leadpipe works with: a stamp (16), a result suffix such as
#: ``.receipt.json`` (13) and a ``.N`` for a taken name must still fit the usual 255.
MAX_NAME_BYTES = 200


@dataclass(frozen=True)
class DropFolder:
    """The one owner of the drop folder's layout: every folder name, and where results go.

    ``folder`` arguments are where a file was dropped: ``inbox/<campaign>`` or its ``preview/``
    (whose results stay beside the file). Nothing else spells a folder name.
    """

    inbox: Path

    @property
    def hidden(self) -> Path:
        """``inbox/.leadpipe``: leadpipe's own area on the inbox's volume (renames are atomic)."""
        return self.inbox / WORK_DIR_NAME

    @property
    def work(self) -> Path:
        """Where claimed files wait while they are processed."""
        return self.hidden / "work"

    @property
    def tmp(self) -> Path:
        """Temporary files of atomic writes into the inbox (never a visible folder)."""
        return self.hidden / "tmp"

    @property
    def cancels(self) -> Path:
        """``inbox/.leadpipe/cancel/<campaign folder>/<file>.cancel``: ``leadpipe cancel``'s
        requests (the service polls them with the ``<file>.cancel`` files ops drop)."""
        return self.hidden / "cancel"

    @staticmethod
    def cancel_target(name: str) -> str | None:
        """The file a ``<file>.cancel`` request names (None: not a cancel request)."""
        if not name.lower().endswith(CANCEL_SUFFIX) or len(name) <= len(CANCEL_SUFFIX):
            return None
        return name[: -len(CANCEL_SUFFIX)]

    @staticmethod
    def cancel_name(name: str) -> str:
        """The request's name for a file: ``<file>.cancel``."""
        return name + CANCEL_SUFFIX

    @staticmethod
    def not_sent_base(base: str) -> str:
        """``<base>.not-sent``: a cancelled file's unsent rows, ``.xlsx`` and ``.csv``."""
        return base + NOT_SENT_INFIX

    def claim_dir(self, folder_name: str, seq: str, digest: str, preview: bool) -> Path:
        """The work-folder place of one claim."""
        return self.work / folder_name / claim_name(seq, digest, preview)

    @staticmethod
    def is_ours(name: str) -> bool:
        """True for a folder leadpipe writes (results, its hidden area): never input."""
        return name.lower() in RESULT_FOLDERS or name == WORK_DIR_NAME

    @staticmethod
    def holds_results(place: str) -> bool:
        """True for a campaign sub-folder that holds result files (``processed/``, ...,
        ``preview/``: a preview's results stay beside it)."""
        return place.lower() in RESULT_FOLDERS or place.lower() == PREVIEW

    @staticmethod
    def home_of(folder: PurePath) -> PurePath:
        """The campaign folder of the folder a file was dropped in (itself, or above its
        ``preview/``), told from the name alone."""
        return folder.parent if folder.name.lower() == PREVIEW else folder

    @staticmethod
    def campaign_folder(folder: Path, preview: bool) -> Path:
        """``inbox/<campaign>`` for a file dropped in ``folder`` (its ``preview/`` or itself)."""
        return folder.parent if preview else folder

    @staticmethod
    def drop_folder(campaign_folder: Path, preview: bool) -> Path:
        """Where a file of the campaign is dropped: the folder, or its ``preview/``."""
        return campaign_folder / PREVIEW if preview else campaign_folder

    @staticmethod
    def originals(folder: Path, preview: bool) -> Path:
        """Where a processed original and its receipt end (a preview's stay beside it)."""
        return folder if preview else folder / PROCESSED

    @staticmethod
    def rejects(folder: Path, preview: bool) -> Path:
        """Where the reject files go."""
        return folder if preview else folder / REJECTED

    @staticmethod
    def failures(folder: Path, preview: bool) -> Path:
        """Where a file that could not be read ends, with its ``.error.txt``."""
        return folder if preview else folder / FAILED

    @staticmethod
    def result_name(stamp: str, name: str) -> str:
        """``<stamp>_<name>``: the name of a file's results (and of the moved original)."""
        return f"{stamp}_{name}"

    # -- what is kept (docs/retention.md) ---------------------------------------------------------

    def campaign_folders(self) -> list[Path]:
        """The campaign folders under the inbox (``inbox/<campaign>``), by name."""
        try:
            found = [
                d
                for d in self.inbox.iterdir()
                if d.is_dir() and not is_ignored(d.name) and not self.is_ours(d.name)
            ]
        except OSError:
            return []
        return sorted(found)

    @staticmethod
    def result_folders(campaign_folder: Path) -> list[Path]:
        """The folders of a campaign that hold results and kept originals."""
        return [campaign_folder / n for n in (PROCESSED, REJECTED, FAILED, PREVIEW)]

    @staticmethod
    def kind_of_result(place: str, name: str) -> ResultKind | None:
        """What a file in a result folder is (None: not one of leadpipe's results)."""
        low = name.lower()
        if is_ignored(name) or low.endswith(CANCEL_SUFFIX):
            return None
        if place.lower() == PREVIEW and not _STAMP.match(name):
            return None  # a file dropped for a preview, not yet checked: input, not a result
        if low.endswith((".receipt.txt", ".receipt.json")):
            return ResultKind.RECEIPT
        if low.endswith((".rejects.xlsx", ".rejects.csv")):
            return ResultKind.REJECTS
        if low.endswith(".error.txt") or place.lower() == FAILED:
            return ResultKind.FAILED
        if place.lower() in (PROCESSED, PREVIEW):
            return ResultKind.ORIGINAL
        return None

    @staticmethod
    def stamp_of(name: str) -> str | None:
        """The ``YYYYMMDD-HHMMSS`` stamp a result name starts with (local time), if any."""
        found = _STAMP.match(name)
        return found.group(1) if found else None

    @staticmethod
    def original_beside(receipt_txt: Path) -> Path:
        """The moved original a ``<base>.receipt.txt`` belongs to: ``<base>`` beside it."""
        return receipt_txt.with_name(receipt_txt.name.removesuffix(".receipt.txt"))

    # -- the moves ------------------------------------------------------------------------------

    def claim(self, path: Path, claim: Path, name: str, record: str) -> Path:
        """Move a dropped file into its (new) claim folder, with its claim record, durably.

        The record is written first: a claim folder holding the file always says what was
        claimed. Returns the file's path in the work folder (named ``name``).
        """
        claim.mkdir(parents=True, exist_ok=False)
        atomic_write_text(claim / CLAIM_RECORD, record, tmp_dir=self.tmp)
        target = claim / name
        os.rename(path, target)
        fsync_dir(claim)
        return target

    @staticmethod
    def unclaim(claim: Path) -> None:
        """Remove a claim folder whose file never arrived (best effort)."""
        with contextlib.suppress(OSError):
            (claim / CLAIM_RECORD).unlink()
        with contextlib.suppress(OSError):
            claim.rmdir()

    def to_processed(
        self, path: Path, folder: Path, preview: bool, base: str, destination: Path | None = None
    ) -> Path:
        """The original, done, to ``processed/`` (a preview's stays beside its results)."""
        return atomic_move(path, destination or self.originals(folder, preview) / base)

    def to_failed(
        self, path: Path, folder: Path, preview: bool, base: str, message: str
    ) -> tuple[Path, Path]:
        """A file that could not be read to ``failed/``, its ``.error.txt`` written first."""
        where = self.failures(folder, preview)
        error = where / f"{base}.error.txt"
        atomic_write_text(error, message, tmp_dir=self.tmp)
        return atomic_move(path, where / base), error

    def to_rejected(self, files: Iterable[Path], folder: Path, preview: bool) -> list[Path]:
        """Reject files (already complete) to ``rejected/`` (a preview's stay beside it)."""
        where = self.rejects(folder, preview)
        return [atomic_move(f, where / f.name) for f in files]

    @staticmethod
    def back_to_inbox(path: Path, folder: Path, name: str) -> Path:
        """A claimed file back where it was dropped, to be taken again later."""
        return atomic_move(path, folder / name)

    @staticmethod
    def results(claim: Path) -> Path:
        """Where ingest writes a claimed file's receipt and rejects before they are placed."""
        return claim / "results"

    @staticmethod
    def release(claim: Path) -> None:
        """Drop a claim folder once its file has reached its place."""
        shutil.rmtree(claim, ignore_errors=True)


def safe_name(name: str) -> str:
    """The name a dropped file is processed under: valid UTF-8 and short enough for results.

    Bytes that are not UTF-8 become U+FFFD; a name over :data:`MAX_NAME_BYTES` keeps its
    extension and the start of its stem, plus ``~`` and 8 hex digits of the whole name's hash
    so that two long names with the same start stay apart.
    """
    shown = readable(name)
    if len(shown.encode("utf-8")) <= MAX_NAME_BYTES:
        return shown
    stem, dot, ext = shown.rpartition(".")
    if not dot or len(ext.encode("utf-8")) > 10:
        stem, ext = shown, ""
    tag = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:8] + (f".{ext}" if ext else "")
    room = MAX_NAME_BYTES - len(tag.encode("utf-8"))
    cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
    return cut + tag


def is_ignored(name: str) -> bool:
    """True for files a person did not mean to drop: lock, temp, partial and hidden files."""
    low = name.lower()
    return (
        name.startswith((".", "~$", "~"))
        or low in _IGNORED_NAMES
        or low.endswith(_IGNORED_SUFFIXES)
        or low.endswith(CANCEL_SUFFIX)  # a cancel request, never input
        or bool(_EXCEL_TEMP.match(name))
    )


def can_open(path: Path) -> bool:
    """True when the file can be opened for reading now (not locked by another program)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    os.close(fd)
    return True


def list_inputs(base: Path, scandir: ScanDir = os.scandir) -> list[tuple[Path, bool]]:
    """The entries of one campaign folder and its ``preview/``: (path, is_preview).

    Everything a person put there, except leadpipe's own folders and ignored names: entries
    that are not regular files (folders, symlinks, FIFOs) are listed too, so that the intake
    can show them as "ignored: not a regular file"; they are never opened.
    """
    out: list[tuple[Path, bool]] = []
    try:
        entries = list(scandir(base))
    except OSError:
        return out
    for e in entries:
        if is_ignored(e.name):
            continue
        if e.is_dir(follow_symlinks=False):
            low = e.name.lower()
            if low == PREVIEW:
                out.extend(_list_preview(Path(e.path), scandir))
            elif low not in RESULT_FOLDERS:
                out.append((Path(e.path), False))  # never opened: listed as ignored
            continue
        # symlinks, FIFOs and the like are listed too: the intake shows them as ignored
        out.append((Path(e.path), False))
    return out


def _list_preview(folder: Path, scandir: ScanDir) -> list[tuple[Path, bool]]:
    try:
        names = {e.name: e for e in scandir(folder)}
    except OSError:
        return []
    out = []
    for name, e in names.items():
        if is_ignored(name) or name.lower().endswith(OUTPUT_SUFFIXES):
            continue
        if e.is_dir(follow_symlinks=False):
            continue
        stem = name.rsplit(".", 1)[0]
        done = any(f"{n}{s}" in names for n in (name, stem) for s in (".receipt.txt", ".error.txt"))
        if not done:
            out.append((Path(e.path), True))
    return out


def claim_name(seq: str, digest: str, preview: bool) -> str:
    """The work-folder name of a claim: ``<seq>-<sha16>[-preview]`` (seq sorts by claim time)."""
    return f"{seq}-{digest[:16]}" + ("-preview" if preview else "")


def parse_claim(name: str) -> tuple[str, str, bool]:
    """``(stamp, sha256 prefix, preview)`` of a claim folder name (stamp "" if unreadable)."""
    parts = name.split("-")
    stamp = f"{parts[0][:8]}-{parts[0][8:14]}" if len(parts[0]) >= 14 else ""
    return stamp, parts[1] if len(parts) > 1 else "", name.endswith("-preview")


def unknown_folder_text(folder: str, file: str, known: Iterable[str]) -> str:
    """The explanation for a file dropped into a folder that is no reachable campaign."""
    names = ", ".join(sorted(known)) or "none"
    return (
        f"The folder '{folder}' is not a campaign this account can reach, so "
        f"'{file}' was not uploaded.\n\nCampaigns this account can reach: {names}.\n\n"
        "What to do: drop the file into the folder named after its campaign code, or ask an "
        "administrator to give the API account access to the campaign's project.\n"
    )


def error_text(name: str, campaign: str, message: str) -> str:
    """The ``.error.txt`` beside a file that went to ``failed/``."""
    return (
        f"leadpipe could not process '{name}' for campaign {campaign}.\n\n"
        f"{message.strip()}\n\n"
        "Nothing from this file was uploaded. Fix the file and drop it into the campaign folder "
        "again.\n"
    )


def clear_empty_work(inbox: Path) -> None:
    """Remove empty claim folders (tidy-up; claims with a file inside are never touched)."""
    work = DropFolder(inbox).work
    for d in sorted(work.glob("*/*"), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()
