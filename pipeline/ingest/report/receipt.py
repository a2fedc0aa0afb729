"""Receipts: what happened to a dropped file, in plain words (``.receipt.txt``) and as JSON.

The JSON twin carries the ``leadpipe ingest --json`` fields  plus details.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.files import atomic_write_text

#: Receipt.status values.
PROCESSED = "processed"
PREVIEW = "preview (nothing uploaded)"
WAITING = "waiting for the API"
STOPPED = "stopped"
FAILED = "failed"
#: the same content was processed for the campaign before: nothing read or sent now
ALREADY = "already processed (nothing sent again)"


@dataclass
class Receipt:
    """The outcome of one file. Counts are rows; ``duration_s`` covers the whole ingest."""

    file: str
    sha256: str
    campaign: str
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    refused_by_api: int = 0
    duplicates: int = 0
    uncertain: int = 0
    blank_skipped: int = 0
    reject_files: list[str] = field(default_factory=list)
    receipt_file: str = ""
    schema_source: str = "live"
    duration_s: float = 0.0
    status: str = PROCESSED
    dry_run: bool = False
    waiting: int = 0
    started_at: str = ""
    finished_at: str = ""
    source: str = ""  # e.g. "CSV (utf-8, ';' separated), header on row 2"
    mapping: dict[str, str] = field(default_factory=dict)
    unmapped_columns: list[str] = field(default_factory=list)
    schema_drift: str = ""
    messages: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    problems_sample: list[str] = field(default_factory=list)
    #: Why the upload halted, when it did: "unavailable", "not_permitted", "not_found" or
    #: "stopped" (None when it ran to the end); ``halt_reason`` says it in plain words.
    halt: str | None = None
    halt_reason: str = ""
    #: a re-drop of content already processed for the campaign: that run's counts, its time
    #: (``finished_utc``) and receipt. Every count above is this run's (0 for a re-drop).
    earlier: dict[str, Any] | None = None
    #: the verification pass's findings (possible duplicates in HeroBase), once it ran
    verification: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (every field)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Receipt:
        """Rebuild from :meth:`to_json` output (unknown keys ignored)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def _n(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def default_next_steps(r: Receipt) -> list[str]:
    """What the person should do next, from the counts."""
    steps: list[str] = []
    if r.rejected or r.refused_by_api:
        where = r.reject_files[0] if r.reject_files else "the reject file"
        steps.append(
            f"Open {where}, fix the highlighted cells (each has a comment), and drop the fixed "
            "file into the same inbox folder. Rows already sent are not sent again."
        )
    if r.uncertain:
        steps.append(
            f"{_n(r.uncertain, 'row')} may or may not have reached HeroBase; leadpipe could "
            "not check. Look them up in HeroBase before sending them again by hand."
        )
    if r.status == WAITING:
        steps.append("Nothing to do: the file is sent automatically when the API is back.")
    if r.unmapped_columns:
        cols = ", ".join(f"'{c}'" for c in r.unmapped_columns)
        steps.append(
            f"Columns not sent: {cols}. If one of them should be, rename it to the field name "
            "or map it under [campaigns.<code>.columns] in the config."
        )
    if r.dry_run:
        steps.append("This was a preview: drop the file into the inbox folder to upload it.")
    if not steps:
        steps.append("Nothing to do.")
    return steps


def render_receipt(r: Receipt) -> str:
    """The receipt in plain words for an ops person."""
    name = Path(r.file).name
    lines = [f"leadpipe receipt for {name} (campaign {r.campaign})", ""]
    verb = "would be uploaded" if r.dry_run else "uploaded"
    lines.append(f"Status: {r.status}.")
    if r.earlier is not None:
        e = r.earlier
        when = str(e.get("finished_utc", ""))[:16].replace("T", " ")
        where = f" ({e['receipt']})" if e.get("receipt") else ""
        then = int(e.get("rejected", 0)) + int(e.get("refused_by_api", 0))
        lines.append(
            f"{r.accepted} uploaded now; {e.get('accepted', 0)} uploaded on {when} UTC{where}"
            + (f"; {then} rejected then" if then else "")
            + "."
        )
    else:
        lines.append(
            f"Read {_n(r.rows_read, 'row')}"
            + (f" ({_n(r.blank_skipped, 'blank row')} skipped)" if r.blank_skipped else "")
            + f": {r.accepted} {verb}, {r.rejected} rejected here, {r.refused_by_api} refused by "
            f"the API, {r.duplicates} duplicate(s) not sent again, {r.uncertain} uncertain"
            + (f", {r.waiting} waiting" if r.waiting else "")
            + "."
        )
    if r.source:
        lines.append(f"Read as: {r.source}.")
    if r.mapping:
        lines.append("Columns: " + ", ".join(f"'{h}' -> {f}" for h, f in r.mapping.items()) + ".")
    if r.schema_source == "snapshot":
        lines.append(
            "The API could not be reached: the rows were checked against the last saved "
            "copy of the campaign's fields."
        )
    if r.schema_drift:
        lines.append(f"The campaign's fields changed since last time: {r.schema_drift}.")
    lines.extend(r.messages)
    if r.reject_files:
        lines += ["", "Rows to fix are in:"] + [f"  {p}" for p in r.reject_files]
    if r.problems_sample:
        lines += ["", "First problems:"] + [f"  - {m}" for m in r.problems_sample]
    steps = r.next_steps or default_next_steps(r)
    lines += ["", "What to do next:"] + [f"  - {s}" for s in steps]
    lines += ["", f"File SHA-256: {r.sha256}", f"Took {r.duration_s:.1f} s."]
    return "\n".join(lines) + "\n"


def write_receipt(receipt: Receipt, txt_path: Path, json_path: Path) -> None:
    """Write ``.receipt.txt`` and ``.receipt.json`` atomically (``receipt_file`` = the txt)."""
    if not receipt.receipt_file:
        receipt.receipt_file = str(txt_path)
    atomic_write_text(
        Path(json_path), json.dumps(receipt.to_json(), indent=2, ensure_ascii=False) + "\n"
    )
    atomic_write_text(Path(txt_path), render_receipt(receipt))
