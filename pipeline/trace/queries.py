"""``leadpipe trace``: where a lead came from, what became of a file, where a value appears.

Answers come from the ledger and the files still kept, as typed records; nothing is asked of
the API. No lead data is given beyond what the question named: a lead's origin is a file, a
row number and times, never the row's other values (docs/retention.md, "Tracing a lead").
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.config import CampaignSettings, Settings
from pipeline.dropfolder.layout import DropFolder
from pipeline.errors import InputError
from pipeline.ingest.read.grid import records
from pipeline.ledger import FileKey, FileRecord, Ledger, RowRecord, RowState
from pipeline.retention.kept import Kept, KeptFile, list_kept
from pipeline.trace.values import Needle

_SHA256 = re.compile(r"^[0-9a-fA-F]{8,64}$")


@dataclass(frozen=True)
class LeadOrigin:
    """Where one lead came from."""

    unique_id: str
    file: str  #: the file's name as dropped
    sha256: str
    campaign: str
    row: int  #: as the spreadsheet shows it
    outcome: str  #: the row's state (``accepted`` for a created lead)
    claimed_at: str  #: when the run that read it started (its receipt), else first seen
    uploaded_at: str  #: when it was sent ("" when it was not)
    file_outcome: str  #: the file's state in the ledger
    receipt: str  #: the receipt's path ("" when none was written)
    original: str  #: where the original was moved ("" when unknown)
    original_kept: bool  #: the original still exists
    account: str  #: the API account leadpipe uploads with (the ledger does not record it)

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return asdict(self)


@dataclass(frozen=True)
class FileTrace:
    """One file as the ledger knows it: its rows' outcomes and the leads created."""

    file: str
    sha256: str
    campaign: str
    state: str
    first_seen_utc: str
    finished_at: str
    receipt: str
    original: str
    original_kept: bool
    rows: dict[str, int]  #: row state -> how many
    leads: tuple[tuple[int, str], ...]  #: (row, uniqueId) of the leads created

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        data = asdict(self)
        data["leads"] = [{"row": r, "unique_id": u} for r, u in self.leads]
        return data


@dataclass(frozen=True)
class Appearance:
    """One row of a kept file where the value appears."""

    path: str
    kind: str  #: originals, rejects, failed or exports
    campaign: str
    sheet: str
    row: int
    #: for a kept original: the row's state in the ledger and its lead ("" when none)
    outcome: str = ""
    unique_id: str = ""


@dataclass(frozen=True)
class FindResult:
    """Every kept file and row where a value appears, and the leads created from them."""

    value_kind: str
    appearances: tuple[Appearance, ...]
    leads: tuple[LeadOrigin, ...]
    unreadable: tuple[str, ...]  #: kept files that could not be searched, with the reason

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "value_kind": self.value_kind,
            "appearances": [asdict(a) for a in self.appearances],
            "leads": [lead.to_json() for lead in self.leads],
            "unreadable": list(self.unreadable),
        }


def account_of(settings: Settings) -> str:
    """The account uploads go with: the configured user, or the embedded demo's."""
    return settings.api.user or "(embedded demo sandbox)"


def _receipt(record: FileRecord) -> dict[str, Any]:
    try:
        data = json.loads(record.receipt_json or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _original(record: FileRecord) -> tuple[str, bool]:
    if not record.receipt_path:
        return "", False
    original = DropFolder.original_beside(Path(record.receipt_path))
    return str(original), original.is_file()


def _origin(record: FileRecord | None, row: RowRecord, account: str) -> LeadOrigin:
    receipt = _receipt(record) if record is not None else {}
    original, kept = _original(record) if record is not None else ("", False)
    claimed = str(receipt.get("started_at") or (record.first_seen_utc if record else ""))
    return LeadOrigin(
        unique_id=row.unique_id or "",
        file=record.name if record is not None else "",
        sha256=row.file_sha256,
        campaign=row.campaign,
        row=row.row,
        outcome=row.state.value,
        claimed_at=claimed,
        uploaded_at=row.attempt_local or row.attempt_utc or "",
        file_outcome=record.state.value if record is not None else "",
        receipt=(record.receipt_path or "") if record is not None else "",
        original=original,
        original_kept=kept,
        account=account,
    )


def trace_lead(ledger: Ledger, unique_id: str, account: str) -> list[LeadOrigin]:
    """Where the lead ``unique_id`` came from (normally one row; none when unknown)."""
    return [
        _origin(ledger.file(FileKey(r.file_sha256, r.campaign)), r, account)
        for r in ledger.rows_with_unique_id(unique_id.strip())
    ]


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _records_for(ledger: Ledger, what: str) -> list[FileRecord]:
    text = what.strip()
    if _SHA256.match(text):
        low = text.lower()
        found = ledger.files_with_content(low) if len(low) == 64 else []
        found = found or [f for f in ledger.every_file() if f.sha256.startswith(low)]
        if found:
            return found
    path = Path(text)
    if path.is_file():
        found = ledger.files_with_content(_sha256_of(path))
        if found:
            return found
    name = path.name
    found = ledger.files_named(name)
    stamp = DropFolder.stamp_of(name)
    if not found and stamp is not None:  # ``<stamp>_<name>``: a moved original's name
        found = ledger.files_named(name[len(stamp) + 1 :])
    return found


def trace_file(ledger: Ledger, what: str) -> list[FileTrace]:
    """What became of a file named by its path, its name or its SHA-256 (or 8+ of its first
    hex digits): one answer per campaign it was dropped for, and per content."""
    out: list[FileTrace] = []
    for record in _records_for(ledger, what):
        counts = ledger.row_counts(record.key)
        accepted = ledger.rows(record.key, [RowState.ACCEPTED])
        original, kept = _original(record)
        receipt = _receipt(record)
        out.append(
            FileTrace(
                file=record.name,
                sha256=record.sha256,
                campaign=record.campaign,
                state=record.state.value,
                first_seen_utc=record.first_seen_utc,
                finished_at=str(receipt.get("finished_at") or record.finished_utc or ""),
                receipt=record.receipt_path or "",
                original=original,
                original_kept=kept,
                rows={s.value: n for s, n in counts.items() if n},
                leads=tuple((r.row, r.unique_id or "") for r in accepted),
            )
        )
    return out


#: The kept files a value is searched in (receipts quote values only in their samples).
SEARCHED = (Kept.ORIGINALS, Kept.FAILED, Kept.REJECTS, Kept.EXPORTS)


def searchable(path: Path) -> bool:
    """Spreadsheets (CSV, XLSX); a ``failed/`` file's ``.error.txt`` is not one."""
    return not path.name.lower().endswith((".error.txt", ".json"))


def reading_options(f: KeptFile, settings: Settings) -> CampaignSettings | None:
    """How to read a kept file: a dropped file (an original, a failed one) as its campaign's
    options say; leadpipe's own files (reject files, exports) as written."""
    if f.kind in (Kept.ORIGINALS, Kept.FAILED) and f.campaign:
        return settings.campaign(f.campaign)
    return None


def find_rows(
    kept: list[KeptFile], needle: Needle, settings: Settings
) -> tuple[list[tuple[KeptFile, list[tuple[str, int]], set[str]]], list[str]]:
    """Each kept spreadsheet holding the value: its rows and the cells as written there;
    and the files that could not be read (with the reason)."""
    found: list[tuple[KeptFile, list[tuple[str, int]], set[str]]] = []
    unreadable: list[str] = []
    for f in kept:
        if f.kind not in SEARCHED or not searchable(f.path):
            continue
        rows: list[tuple[str, int]] = []
        cells: set[str] = set()
        try:
            for rec in records(f.path, reading_options(f, settings)):
                hits = [c for c in rec.cells if needle.matches(c)]
                if hits:
                    rows.append((rec.sheet, rec.row))
                    cells.update(hits)
        except (InputError, OSError, UnicodeError) as exc:
            unreadable.append(f"{f.path}: {exc}")
            continue
        if rows:
            found.append((f, rows, cells))
    return found, unreadable


def find_value(settings: Settings, ledger: Ledger, value: str) -> FindResult:
    """Every kept file and row where ``value`` (a phone number, an e-mail, ...) appears, and
    every lead created from those rows."""
    needle = Needle.of(value)
    account = account_of(settings)
    found, unreadable = find_rows(list_kept(settings), needle, settings)
    appearances: list[Appearance] = []
    leads: list[LeadOrigin] = []
    for f, rows, _cells in found:
        ledger_rows: dict[int, RowRecord] = {}
        record: FileRecord | None = None
        if f.kind is Kept.ORIGINALS and f.campaign:
            key = FileKey(_sha256_of(f.path), f.campaign)
            record = ledger.file(key)
            if record is not None:
                ledger_rows = {r.row: r for r in ledger.rows(key)}
        for sheet, row in rows:
            known = ledger_rows.get(row)
            appearances.append(
                Appearance(
                    path=str(f.path),
                    kind=f.kind.value,
                    campaign=f.campaign,
                    sheet=sheet,
                    row=row,
                    outcome=known.state.value if known is not None else "",
                    unique_id=(known.unique_id or "") if known is not None else "",
                )
            )
            if known is not None and known.state is RowState.ACCEPTED:
                leads.append(_origin(record, known, account))
    return FindResult(needle.kind.value, tuple(appearances), tuple(leads), tuple(unreadable))
