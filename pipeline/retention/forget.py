"""``leadpipe forget VALUE``: remove one person's values from everything leadpipe keeps.

Reject files and exports are written again without the rows that hold the value; originals
that hold it are deleted, or written again without those rows (``[retention]
forget_originals``); receipts and error texts have each mention replaced by ``[removed]``; the
ledger's reasons and details that quote it are cleared and its stored receipts cleaned, and
the ledger file is compacted so the old text is gone from the disk too. The API is never
called: leads already in HeroBase are removed there (docs/retention.md, "Erasure on request").

What exactly-once needs stays: fingerprints are one-way hashes of a whole row, so a row
already sent is still recognised and never sent again.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.dropfolder.layout import DropFolder
from pipeline.errors import StateError
from pipeline.files import atomic_write_text
from pipeline.ingest.read.grid import rewrite_without
from pipeline.ledger import Ledger
from pipeline.retention.kept import Kept, KeptFile, list_kept
from pipeline.trace.queries import find_rows, reading_options, searchable
from pipeline.trace.values import Needle, ValueKind

#: Shorter values would match far more than one person's data.
MIN_LENGTH = 5
#: What a removed mention reads as in receipts and error texts.
REMOVED = "[removed]"
_PHONE_LIKE = re.compile(r"(?:\+|\b)\d[\d \-().\u00a0/]{4,}\d")
_EMAIL_LIKE = re.compile(r"[^\s'\"<>(),;:\[\]]+@[^\s'\"<>(),;:\[\]]+")


@dataclass(frozen=True)
class Change:
    """One kept file ``forget`` changed (or would change)."""

    path: str
    kind: str
    action: str  #: "deleted", "rewritten" (rows removed) or "edited" (mentions replaced)
    rows: int  #: rows removed (0 for an edit or a deletion of a text file)


@dataclass(frozen=True)
class ForgetReport:
    """What ``forget`` changed: files, ledger records, and what it could not look into."""

    value_kind: str
    dry_run: bool
    changes: tuple[Change, ...]
    ledger_records: int
    unreadable: tuple[str, ...]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""
        data = asdict(self)
        data["changes"] = [asdict(c) for c in self.changes]
        return data


def mentions(text: str, needle: Needle) -> set[str]:
    """The spellings of the value in a free text (a receipt, an error text, a reason)."""
    found = {needle.given.strip()} if needle.given.strip().casefold() in text.casefold() else set()
    if needle.kind is ValueKind.PHONE:
        found.update(m.strip() for m in _PHONE_LIKE.findall(text) if needle.matches(m))
    elif needle.kind is ValueKind.EMAIL:
        found.update(m for m in _EMAIL_LIKE.findall(text) if needle.matches(m))
    return {f for f in found if f}


def _replace(text: str, spellings: set[str], *, as_json: bool) -> str:
    for s in sorted(spellings, key=len, reverse=True):
        # JSON text may hold the value as written or with non-ASCII letters escaped
        forms = {json.dumps(s, ensure_ascii=False)[1:-1], json.dumps(s)[1:-1]} if as_json else {s}
        for shown in forms:
            text = re.sub(re.escape(shown), REMOVED, text, flags=re.IGNORECASE)
    return text


def _ledger_mentions(ledger: Ledger, needle: Needle) -> set[str]:
    """The value's spellings in the ledger's own texts: file and row reasons, HeroBase's
    refusal details and stored receipts, read back and searched as text (a spelling no kept
    file has any more is found too), each also in the form JSON stores it (non-ASCII letters
    escaped), so the ledger's search finds the stored text."""
    found: set[str] = set()
    for record in ledger.every_file():
        texts = [record.reason]
        if record.receipt_json:
            texts.append(_readable_json(record.receipt_json))
        for row in ledger.rows(record.key):
            texts.append(row.reason)
            if row.details:
                texts.append(json.dumps(row.details, ensure_ascii=False))
        for text in texts:
            if text:
                found |= mentions(text, needle)
    return found | {json.dumps(s)[1:-1] for s in found}


def _readable_json(text: str) -> str:
    """A JSON text with its escapes undone (as people would read its values)."""
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except ValueError:
        return text


def _is_text(f: KeptFile) -> bool:
    return f.kind is Kept.RECEIPTS or (f.kind is Kept.FAILED and not searchable(f.path))


def forget(
    settings: Settings, ledger: Ledger, value: str, *, dry_run: bool = False
) -> ForgetReport:
    """Remove ``value`` from every kept file and the ledger; returns what changed."""
    needle = Needle.of(value)
    if len(needle.given.strip()) < MIN_LENGTH:
        raise ValueError(
            f"{value!r} is too short to name one person (at least {MIN_LENGTH} characters): "
            "give the whole phone number or e-mail address"
        )
    if not dry_run:
        from pipeline.service.instance import service_running

        pid = service_running(settings.paths.state)
        if pid is not None:
            raise StateError(
                f"leadpipe run (pid {pid}) is using the state folder {settings.paths.state}: "
                "forget rewrites files it may be moving and compacts the ledger it writes. "
                "Stop it (e.g. `systemctl stop leadpipe`), run forget, then start it again."
            )
    layout = DropFolder(settings.paths.inbox)
    kept = list_kept(settings)
    found, unreadable = find_rows(kept, needle, settings)
    spellings = {needle.given.strip()}
    changes: list[Change] = []
    for f, rows, cells in found:
        spellings.update(cells)
        delete = f.kind in (Kept.ORIGINALS, Kept.FAILED)
        delete = delete and settings.retention.forget_originals == "delete"
        if delete:
            if not dry_run:
                f.path.unlink(missing_ok=True)
            changes.append(Change(str(f.path), f.kind.value, "deleted", len(rows)))
            continue
        gone = len(rows)
        if not dry_run:
            tmp = layout.tmp if f.kind is not Kept.EXPORTS else None
            options = reading_options(f, settings)
            gone = rewrite_without(f.path, needle.in_any, options=options, tmp_dir=tmp)
            for manifest in f.companions:  # an export's manifest names its rows and hash
                _amend_manifest(manifest, f.path, gone)
        changes.append(Change(str(f.path), f.kind.value, "rewritten", gone))
    for f in kept:
        if not _is_text(f):
            continue
        try:
            text = f.path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            unreadable.append(f"{f.path}: {exc.strerror or exc}")
            continue
        said = mentions(text, needle) | {s for s in spellings if s.casefold() in text.casefold()}
        if not said:
            continue
        spellings.update(said)
        if not dry_run:
            as_json = f.path.name.lower().endswith(".json")
            atomic_write_text(
                f.path,
                _replace(text, said, as_json=as_json),
                tmp_dir=layout.tmp,
            )
        changes.append(Change(str(f.path), f.kind.value, "edited", 0))
    records = 0
    spellings |= _ledger_mentions(ledger, needle)
    if not dry_run:
        records = ledger.scrub_mentions(
            sorted(spellings), lambda old: _replace(old, spellings, as_json=True)
        )
        ledger.compact(vacuum=True)
    return ForgetReport(
        needle.kind.value,
        dry_run,
        tuple(changes),
        records,
        tuple(unreadable),
        _notes(layout, settings.paths.state),
    )


def _amend_manifest(manifest: Path, data: Path, gone: int) -> None:
    """An export's manifest, made true again after rows were removed from its file."""
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
        content = data.read_bytes()
    except (OSError, ValueError):
        return
    if not isinstance(info, dict) or not gone:
        return
    if isinstance(info.get("rows"), int):
        info["rows"] = max(info["rows"] - gone, 0)
    info["bytes"] = len(content)
    info["sha256"] = hashlib.sha256(content).hexdigest()
    info["rows_removed_on_request"] = int(info.get("rows_removed_on_request") or 0) + gone
    atomic_write_text(manifest, json.dumps(info, indent=2, ensure_ascii=False) + "\n")


def _notes(layout: DropFolder, state: Path) -> tuple[str, ...]:
    notes = [
        "Leads already in HeroBase are not changed: remove them there (leadpipe never "
        "calls the API to forget).",
    ]
    if any(p.is_dir() for p in layout.work.glob("*/*")):
        notes.append(
            f"Files being processed now ({layout.work}) were not searched: run forget again "
            "once they are done."
        )
    # copies of an older ledger (before a move to PostgreSQL, before an upgrade) hold every
    # value they held then: leadpipe does not change them, a person deletes them
    for old in sorted([*state.glob("ledger.sqlite.migrated-*"), *state.glob("ledger.v1-backup*")]):
        notes.append(
            f"{old} is a copy of an earlier ledger and may still hold the value: delete it "
            "once it is no longer needed."
        )
    return tuple(notes)
