"""The verification pass: after a file is done, compare what the tenant holds with the ledger.

HeroBase has no idempotency key, so one case can only be narrowed, not ruled out: a request
the server commits later than the wait before the lookup (a very slow server) is judged absent,
sent again, and the lead exists twice. The verification pass makes that visible. Some minutes
after a file finishes (``intake.verify_after_minutes``) and on demand (``leadpipe verify
FILE``), it reads the file again, looks the campaign's leads up since the file's first attempt,
and for each row the ledger says was accepted (or left uncertain) counts the leads of this
account with the same data:

- two or more: **possible duplicates**, reported with their uniqueIds so a person can remove
  the extra one in HeroBase (leadpipe never deletes);
- exactly one for a row accepted without an id in the answer: the id is filled in (audit);
- exactly one for a row left uncertain: it is recorded as accepted (found);

The result is added to the file's receipt (text and JSON), the status page and ``leadpipe
status``. When the lookup cannot be shown to see this account's leads, the verification says
so instead of guessing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.api import HeroBaseClient
from pipeline.clock import shown_time
from pipeline.config import Settings
from pipeline.dropfolder.layout import DropFolder
from pipeline.errors import ApiError, InputError
from pipeline.ingest.deliver.tenantproof import ProofStore, is_ours
from pipeline.ingest.deliver.upload import (
    UploadRow,
    campaign_id,
    campaign_leads_since,
    data_key,
    filled,
    normalise,
)
from pipeline.ingest.report.place import ReceiptWriter
from pipeline.ingest.report.receipt import Receipt
from pipeline.ledger import FileKey, Ledger, RowState

MARGIN = timedelta(minutes=5)


@dataclass
class Verification:
    """What one verification pass found (also stored in the receipt JSON as ``verification``)."""

    file: str
    campaign: str
    checked_at: str = ""  #: ISO 8601, UTC
    rows_checked: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)  #: {"row", "unique_ids"}
    ids_filled: int = 0
    found_uncertain: int = 0
    blind: str = ""  #: why nothing could be verified ("" when it could)
    #: the tenant's zone (``timezone``): the message shows ``checked_at`` in it, with its offset
    timezone: str = ""

    @property
    def message(self) -> str:
        """The finding in plain words, for the receipt and the status page."""
        when = shown_time(self.checked_at, self.timezone or None)
        if self.blind:
            return f"Verification ({when}) could not run: {self.blind}."
        if not self.duplicates:
            return (
                f"Verification ({when}): each of the {self.rows_checked} uploaded row(s) is "
                "in HeroBase once."
            )
        parts = "; ".join(
            f"row {d['row']}: {', '.join(d['unique_ids'])}" for d in self.duplicates[:20]
        )
        more = f" (and {len(self.duplicates) - 20} more)" if len(self.duplicates) > 20 else ""
        return (
            f"Verification ({when}): {len(self.duplicates)} row(s) are in HeroBase more "
            f"than once, possible duplicates: {parts}{more}. Keep one lead of each and remove "
            "the others in HeroBase."
        )


#: What the service calls to verify one processed file (``verify_file`` with its wiring).
Verifier = Callable[[Path], Verification]


def receipt_for(path: Path) -> Path:
    """The ``.receipt.json`` of a processed file (or the receipt itself)."""
    path = Path(path)
    if path.name.endswith(".receipt.json"):
        return path
    if path.name.endswith(".receipt.txt"):
        return path.with_name(path.name.removesuffix(".txt") + ".json")
    return path.with_name(path.name + ".receipt.json")


def verify_file(
    path: Path, settings: Settings, *, client: HeroBaseClient, ledger: Ledger
) -> Verification:
    """Verify one processed file (its original in ``processed/``) and amend its receipt."""
    receipt_path = receipt_for(path)
    try:
        receipt = Receipt.from_json(json.loads(receipt_path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"has no readable receipt beside it ({receipt_path.name}); give the file as it is "
            "in processed/",
            path=path,
        ) from exc
    original = receipt_path.with_name(receipt_path.name.removesuffix(".receipt.json"))
    inbox = settings.paths.inbox.resolve()
    # temp files in the inbox's hidden work area, not a visible folder beside the receipt
    tmp = DropFolder(inbox).tmp if inbox in receipt_path.resolve().parents else None
    key = FileKey(receipt.sha256, receipt.campaign)
    result = Verification(str(original), receipt.campaign, timezone=settings.timezone)
    result.checked_at = datetime.now(UTC).isoformat(timespec="seconds")
    records = {r.row: r for r in ledger.rows(key, [RowState.ACCEPTED, RowState.UNCERTAIN])}
    if not records:
        result.blind = "the ledger holds no uploaded row of this file"
        return _amend(receipt_path, receipt, result, tmp)
    rows = _rows(original, receipt.campaign, settings, client, set(records))
    starts = [datetime.fromisoformat(r.attempt_utc) for r in records.values() if r.attempt_utc]
    since = (min(starts) if starts else datetime.now(UTC)) - MARGIN
    try:
        since_local = since.astimezone(ZoneInfo(settings.timezone)).replace(tzinfo=None)
        leads = campaign_leads_since(client, campaign_id(client, receipt.campaign), since_local)
    except ApiError as exc:
        result.blind = f"the lookup failed ({exc})"
        return _amend(receipt_path, receipt, result, tmp)
    seen = {lead.unique_id: lead for lead in leads}
    ids = {r.unique_id for r in records.values() if r.unique_id}
    missing = ids - seen.keys()
    if ids and missing:
        result.blind = (
            f"the lookup did not return {len(missing)} of the {len(ids)} lead(s) this file "
            "created (deleted since, or the lookup does not see them)"
        )
        return _amend(receipt_path, receipt, result, tmp)
    recorded = ProofStore.for_settings(settings).load()
    identity = recorded.identity if recorded is not None else None
    ours = [lead for lead in leads if is_ours(lead.raw, identity)]
    if ours and not any(any(normalise(v) for v in x.data.values()) for x in ours):
        result.blind = "the lookup's answers carry no lead data"
        return _amend(receipt_path, receipt, result, tmp)
    known = ledger.accepted_unique_ids(receipt.campaign)
    for row, rec in sorted(records.items()):
        data = rows.get(row)
        if data is None:
            continue
        others = known - {rec.unique_id}  # leads the ledger gives to other rows
        fields = filled(data.data)
        want = data_key(data.data, fields)
        matches = [
            x.unique_id
            for x in ours
            if x.unique_id not in others and data_key(x.data, fields) == want
        ]
        result.rows_checked += 1
        if len(matches) > 1:
            result.duplicates.append({"row": row, "unique_ids": sorted(matches)})
        elif len(matches) == 1 and rec.state == RowState.ACCEPTED and not rec.unique_id:
            ledger.fill_unique_id(key, row, matches[0])
            result.ids_filled += 1
        elif len(matches) == 1 and rec.state == RowState.UNCERTAIN:
            ledger.record_accepted(key, row, matches[0], "found by verification")
            result.found_uncertain += 1
    return _amend(receipt_path, receipt, result, tmp)


def _rows(
    original: Path, campaign: str, settings: Settings, client: HeroBaseClient, wanted: set[int]
) -> dict[int, UploadRow]:
    """The valid rows of the file as they were sent (read, mapped and validated again)."""
    from pipeline.ingest.fields import load_campaign_schema
    from pipeline.ingest.map import map_columns
    from pipeline.ingest.opening import open_for
    from pipeline.ingest.rows import upload_rows
    from pipeline.ingest.validate.checks import Validator

    schema = load_campaign_schema(client, campaign, settings.paths.schemas)
    table = open_for(original, schema, settings, campaign, chunk_rows=100_000)
    columns = settings.campaign(campaign).columns
    mapping = map_columns(table.headers, schema.fields, columns, path=original)
    out: dict[int, UploadRow] = {}
    semantics = settings.validation.regex_match
    with Validator(
        schema, mapping, semantics=semantics, expected_rows=table.expected_rows
    ) as validator:
        for _chunk, result in validator.validate_all(table.chunks()):
            for r in upload_rows(result.valid, campaign):
                if r.row in wanted:
                    out[r.row] = r
    return out


def _amend(
    receipt_path: Path, receipt: Receipt, result: Verification, tmp: Path | None = None
) -> Verification:
    """Add the verification to the receipt (JSON and text), replacing an earlier one."""
    receipt.verification = {**asdict(result), "message": result.message}
    receipt.messages = [m for m in receipt.messages if not m.startswith("Verification (")]
    receipt.messages.append(result.message)
    ReceiptWriter.amend(receipt, receipt_path, tmp)
    return result
