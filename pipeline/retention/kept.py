"""What leadpipe keeps that holds lead data, as values: files in the drop folder's result
folders and the outbox, and the ledger's file records (docs/retention.md, "What is kept")."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.config import RetentionSettings, Settings
from pipeline.dropfolder.layout import DropFolder, ResultKind, is_ignored
from pipeline.export.writer import MANIFEST_SUFFIX, manifest_path
from pipeline.ledger import FileKey, FileRecord, FileState, Ledger

#: Written into a receipt JSON whose quoted values were removed (the ledger's copy).
VALUES_REMOVED = "values_removed_at"


class Kept(StrEnum):
    """The kinds of kept data, each with its own period (``[retention] <kind>_days``)."""

    ORIGINALS = "originals"
    REJECTS = "rejects"
    RECEIPTS = "receipts"
    FAILED = "failed"
    EXPORTS = "exports"
    LEDGER = "ledger"

    def days(self, policy: RetentionSettings) -> int:
        """The period of this kind (0: kept forever)."""
        return int(getattr(policy, f"{self.value}_days"))


_OF_RESULT = {
    ResultKind.ORIGINAL: Kept.ORIGINALS,
    ResultKind.RECEIPT: Kept.RECEIPTS,
    ResultKind.REJECTS: Kept.REJECTS,
    ResultKind.FAILED: Kept.FAILED,
}


@dataclass(frozen=True)
class KeptFile:
    """One kept file: where, what, for which campaign folder, and since when."""

    path: Path
    kind: Kept
    campaign: str  #: the campaign folder ("" for an export)
    at: datetime  #: when it was made (the stamp in its name, else its modification time)
    #: files that go with it (an export's manifest)
    companions: tuple[Path, ...] = ()


@dataclass(frozen=True)
class LedgerFile:
    """A file record of the ledger whose rows may quote values."""

    key: FileKey
    name: str
    state: FileState
    at: datetime  #: when the file finished (its receipt's time, else the ledger's)
    scrubbed: bool  #: its values were removed already

    @property
    def kind(self) -> Kept:
        """Always :attr:`Kept.LEDGER`."""
        return Kept.LEDGER


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _stamped(name: str, tz: ZoneInfo) -> datetime | None:
    stamp = DropFolder.stamp_of(name)
    if stamp is None:
        return None
    try:
        return datetime.strptime(stamp, "%Y%m%d-%H%M%S").replace(tzinfo=tz)
    except ValueError:
        return None


def list_kept(settings: Settings) -> list[KeptFile]:
    """Every kept file under the inbox's campaign folders and the outbox (a look, a value)."""
    tz = ZoneInfo(settings.timezone)
    out: list[KeptFile] = []
    for campaign in DropFolder(settings.paths.inbox).campaign_folders():
        for folder in DropFolder.result_folders(campaign):
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                continue
            for path in entries:
                what = DropFolder.kind_of_result(folder.name, path.name)
                if what is None or not path.is_file() or path.is_symlink():
                    continue
                try:
                    at = _stamped(path.name, tz) or _mtime(path)
                except OSError:
                    continue
                out.append(KeptFile(path, _OF_RESULT[what], campaign.name, at))
    out.extend(_exports(settings.paths.outbox))
    return out


def _exports(outbox: Path) -> list[KeptFile]:
    found: list[KeptFile] = []
    for root, dirs, names in os.walk(outbox):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(root) / name
            if is_ignored(name) or name.endswith(MANIFEST_SUFFIX) or path.is_symlink():
                continue
            manifest = manifest_path(path)
            try:
                at = _mtime(path)
            except OSError:
                continue
            extra = (manifest,) if manifest.is_file() else ()
            found.append(KeptFile(path, Kept.EXPORTS, "", at, extra))
    return found


#: Ledger records whose quoted values age: files that are over, and files that wait (a
#: cancelled file, rows left unsent) since their last change: their values must not outlive
#: the period however long the rest waits; states, fingerprints and uniqueIds stay.
AGEING_STATES = (FileState.DONE, FileState.FAILED, FileState.CHANGED, FileState.WAITING)


def ledger_files(ledger: Ledger) -> list[LedgerFile]:
    """The ledger's records whose values age (:data:`AGEING_STATES`)."""
    out: list[LedgerFile] = []
    for f in ledger.every_file():
        if f.state not in AGEING_STATES:
            continue  # being processed now: its rows are at work
        out.append(LedgerFile(f.key, f.name, f.state, finished_at(f), is_scrubbed(f)))
    return out


def _receipt(record: FileRecord) -> dict[str, object]:
    try:
        data = json.loads(record.receipt_json or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def finished_at(record: FileRecord) -> datetime:
    """When a file finished: its receipt's ``finished_at`` (the service's clock, with the
    offset of that day), else the ledger's own times."""
    for text in (_receipt(record).get("finished_at"), record.finished_utc, record.updated_utc):
        if isinstance(text, str) and text:
            try:
                when = datetime.fromisoformat(text)
            except ValueError:
                continue
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


def is_scrubbed(record: FileRecord) -> bool:
    """True when the record's values were removed already."""
    if record.receipt_json:
        return VALUES_REMOVED in _receipt(record)
    return not record.reason


def scrubbed_receipt(receipt_json: str | None, now: datetime) -> str | None:
    """The stored receipt without the values it quotes (its problem samples), marked so.

    Counts, outcome, times and file names stay: a re-drop's receipt is made from them
    (docs/dropfolder.md, "Re-drops").
    """
    if not receipt_json:
        return None
    try:
        data = json.loads(receipt_json)
    except ValueError:
        return json.dumps({VALUES_REMOVED: now.isoformat(timespec="seconds")})
    if not isinstance(data, dict):
        data = {}
    data["problems_sample"] = []
    data[VALUES_REMOVED] = now.isoformat(timespec="seconds")
    return json.dumps(data, ensure_ascii=False)
