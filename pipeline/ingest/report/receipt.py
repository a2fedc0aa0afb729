"""Receipts: what happened to a dropped file, in plain words (``.receipt.txt``) and as JSON.

The JSON twin carries the ``leadpipe ingest --json`` fields plus details. How the file ended is
:attr:`Receipt.outcome` (a :class:`~pipeline.outcome.FileOutcome`); the ``Status:`` line and the
JSON's ``"status"`` are its sentence. Where a receipt is written, and when, is decided by one
owner: :class:`pipeline.ingest.report.place.ReceiptWriter`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from pipeline.clock import shown_time
from pipeline.dropfolder.layout import DropFolder
from pipeline.files import atomic_write_text
from pipeline.outcome import FileOutcome

if TYPE_CHECKING:
    from pipeline.ingest.fields import FieldSpec


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
    #: how the file ended; :attr:`status` says it in words
    outcome: FileOutcome = FileOutcome.PROCESSED
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
    #: the campaign's rules the rows were checked against: field -> ``{type, regex, example}``
    #: (the JSON only: the words people read never show a regex, docs/api-contract.md)
    field_rules: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """The outcome in the words the receipt shows (``Status:``)."""
        return self.outcome.sentence

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: every field, ``outcome`` as its value, plus ``status`` (words)."""
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["status"] = self.status  # what receipts of earlier versions carried
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Receipt:
        """Rebuild from :meth:`to_json` output (unknown keys ignored).

        A receipt written by an earlier version has no ``outcome``: its ``status`` sentence
        says it (:meth:`FileOutcome.parse`).
        """
        known = set(cls.__dataclass_fields__)
        fields = {k: v for k, v in data.items() if k in known}
        said = data.get("outcome") or data.get("status") or ""
        fields["outcome"] = FileOutcome.parse(str(said), FileOutcome.PROCESSED)
        return cls(**fields)


def field_rules(fields: Iterable[FieldSpec]) -> dict[str, dict[str, str]]:
    """:attr:`Receipt.field_rules` from the campaign's field specs."""
    return {f.name: {"type": f.type, "regex": f.regex, "example": f.example} for f in fields}


def _n(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def shown_path(r: Receipt, path: str) -> str:
    """``path`` as a person finds it: relative to the campaign folder the file was dropped in
    (``rejected/...``), as the share shows it on any machine; unchanged when outside it."""
    folder = DropFolder.home_of(PurePath(r.file).parent)
    try:
        return PurePath(path).relative_to(folder).as_posix()
    except ValueError:
        return path


def default_next_steps(r: Receipt) -> list[str]:
    """What the person should do next, from the counts."""
    steps: list[str] = []
    if r.rejected or r.refused_by_api:
        where = shown_path(r, r.reject_files[0]) if r.reject_files else "the reject file"
        steps.append(
            f"Open {where}, fix the highlighted cells (each has a comment), and drop the fixed "
            "file into the same inbox folder. Rows already sent are not sent again."
        )
    if r.uncertain:
        steps.append(
            f"{_n(r.uncertain, 'row')} may or may not have reached HeroBase; leadpipe could "
            "not check. Look them up in HeroBase before sending them again by hand."
        )
    if r.outcome is FileOutcome.WAITING:
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
        # the earlier run's own local finish time carries the tenant's offset of that day
        when = shown_time(str(e.get("finished_at") or e.get("finished_utc") or ""))
        where = f" ({shown_path(r, str(e['receipt']))})" if e.get("receipt") else ""
        then = int(e.get("rejected", 0)) + int(e.get("refused_by_api", 0))
        lines.append(
            f"{r.accepted} uploaded now; {e.get('accepted', 0)} uploaded on {when}{where}"
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
        home = DropFolder.home_of(PurePath(r.file).parent)
        lines += ["", f"Rows to fix are in (in the folder {home.name}):"]
        lines += [f"  {shown_path(r, p)}" for p in r.reject_files]
    if r.problems_sample:
        lines += ["", "First problems:"] + [f"  - {m}" for m in r.problems_sample]
    steps = r.next_steps or default_next_steps(r)
    lines += ["", "What to do next:"] + [f"  - {s}" for s in steps]
    lines += ["", f"File SHA-256: {r.sha256}", f"Took {r.duration_s:.1f} s."]
    return "\n".join(lines) + "\n"


def write_receipt(
    receipt: Receipt, txt_path: Path, json_path: Path, *, tmp_dir: Path | None = None
) -> None:
    """Write ``.receipt.json`` and then ``.receipt.txt`` atomically (``receipt_file`` = the txt).

    The low-level write; :class:`pipeline.ingest.report.place.ReceiptWriter` decides where.
    ``tmp_dir`` holds the temporary files (default: a hidden folder beside the receipt).
    """
    if not receipt.receipt_file:
        receipt.receipt_file = str(txt_path)
    atomic_write_text(
        Path(json_path),
        json.dumps(receipt.to_json(), indent=2, ensure_ascii=False) + "\n",
        tmp_dir=tmp_dir,
    )
    atomic_write_text(Path(txt_path), render_receipt(receipt), tmp_dir=tmp_dir)
