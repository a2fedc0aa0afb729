"""After the pass: the counts, the file's outcome and the words of its receipt.

The last step of :func:`pipeline.ingest.run.ingest_file`: what was read (:class:`~pipeline.
ingest.chunks.Tally`) and where the valid rows stand (:class:`~pipeline.ingest.deliver.delivery.
Delivered`) become a :class:`~pipeline.ingest.report.receipt.Receipt` whose counts add up
(invariant 1 in ``docs/architecture.md``) and whose :class:`~pipeline.outcome.FileOutcome` says
how the file ended. A re-drop of content done for the campaign gets :func:`already_receipt`.
The receipt is not written here: see :class:`pipeline.ingest.report.place.ReceiptWriter`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.clock import shown_time
from pipeline.errors import AccountingError
from pipeline.ingest.chunks import NotSent, Tally
from pipeline.ingest.deliver.delivery import Delivered, Halt
from pipeline.ingest.opening import Identified, Opened
from pipeline.ingest.problems import RowProblem
from pipeline.ingest.report.receipt import Receipt, field_rules
from pipeline.ledger import FileRecord
from pipeline.outcome import FileOutcome

#: uncertain rows named one by one on the receipt (the rest are counted)
MAX_UNCERTAIN_NAMED = 50

#: What the person does after an interrupted run.
RESUME_STEP = (
    "Nothing to do: the file is taken up again when leadpipe runs next (run the same "
    "command again for `leadpipe ingest`). Rows already sent are not sent again."
)


@dataclass(frozen=True)
class Times:
    """When one ingest ran (local time of the configured zone, ISO 8601)."""

    started_at: str
    finished_at: str
    duration_s: float


@dataclass(frozen=True)
class UploadEstimate:
    """How long uploading ``rows`` rows would take at the account's limits (a dry run).

    One request per lead (docs/api-contract.md, "The daily quota"): at most ``per_minute``
    a minute, and at most ``daily_budget`` a day when a daily budget is known. Computed once;
    the receipt and the CLI show its :meth:`sentence`.
    """

    rows: int
    per_minute: int
    daily_budget: int | None = None  #: the day's usable requests (None: no daily limit known)

    @property
    def minutes(self) -> float:
        """Minutes at the minute limit alone."""
        return self.rows / self.per_minute if self.per_minute > 0 else 0.0

    @property
    def days(self) -> int | None:
        """Days the daily budget alone needs (None: no daily budget known)."""
        if not self.daily_budget:
            return None
        return max(1, math.ceil(self.rows / self.daily_budget))

    def sentence(self) -> str:
        """``Uploading 949,728 rows would take about 26 h 23 min at 600 requests/minute (and
        10 days at the daily budget of 100,000).``"""
        rows = f"{self.rows:,} row" + ("" if self.rows == 1 else "s")
        text = (
            f"Uploading {rows} would take about {spoken_duration(self.minutes * 60)} at "
            f"{self.per_minute:,} requests/minute"
        )
        days, budget = self.days, self.daily_budget
        if days is not None and budget is not None:
            if self.rows <= budget:
                text += f" (within one day's budget of {budget:,})"
            else:
                text += f" (and {days} days at the daily budget of {budget:,})"
        return text + "."


def spoken_duration(seconds: float) -> str:
    """A duration as people say it: ``less than a minute``, ``7 min``, ``26 h 23 min``."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "less than a minute"
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest} min"
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def with_estimate(receipt: Receipt, estimate: UploadEstimate) -> Receipt:
    """``receipt`` with the upload estimate's sentence among its messages."""
    receipt.messages.append(estimate.sentence())
    return receipt


def outcome_of(tally: Tally, delivered: Delivered) -> tuple[FileOutcome, Halt | None]:
    """How the file ended, and why delivery halted (if it did).

    Asked to stop: interrupted. Delivery halted: what its halt leads to (waiting for the API,
    or stopped for a person). Rows left unsent: waiting. Otherwise the delivery's own outcome
    (processed; previewed for a dry run).
    """
    halt = delivered.halt
    if tally.interrupted:
        if halt is None or halt.outcome is FileOutcome.INTERRUPTED:
            halt = Halt.asked_to_stop()
        return FileOutcome.INTERRUPTED, halt
    if halt is not None:
        return halt.outcome, halt
    if delivered.pending:
        return FileOutcome.WAITING, None
    return delivered.complete, None


def account(
    opened: Opened,
    tally: Tally,
    delivered: Delivered,
    *,
    dry_run: bool,
    times: Times,
) -> Receipt:
    """The receipt of one read of the file: this run's counts, its outcome, what to do next.

    Raises AccountingError when a complete read does not account for every row.
    """
    file, table, mapping = opened.file, opened.table, opened.mapping
    outcome, halt = outcome_of(tally, delivered)
    blank = int(table.blank_rows)
    receipt = Receipt(
        file=str(file.path.resolve()),
        sha256=file.identity.sha256,
        campaign=file.campaign,
        rows_read=tally.data_rows + blank,
        accepted=delivered.accepted,
        rejected=tally.rejected,
        refused_by_api=delivered.refused,
        duplicates=delivered.duplicates + tally.repeats,
        uncertain=delivered.uncertain,
        blank_skipped=blank,
        reject_files=[str(p) for p in tally.reject_files],
        schema_source=opened.schema.source,
        outcome=outcome,
        dry_run=dry_run,
        waiting=delivered.pending,
        started_at=times.started_at,
        finished_at=times.finished_at,
        source=table.describe(),
        mapping=dict(mapping.field_for),
        unmapped_columns=list(mapping.unmapped),
        schema_drift=opened.schema.drift.describe() if opened.schema.drift else "",
        field_rules=field_rules(opened.schema.fields),
        messages=blind_note(delivered, file.campaign)
        + _messages(tally, delivered, halt)
        + list(mapping.repeats)
        + sheets_note(tally.reject_sheets, tally.reject_rows)
        + elsewhere_note(file.elsewhere, file.campaign),
        problems_sample=list(tally.sample),
        halt=halt.code if halt is not None else None,
        halt_reason=halt.reason if halt is not None else "",
        duration_s=times.duration_s,
    )
    if tally.interrupted:
        receipt.next_steps = [RESUME_STEP]
    else:  # the ledger may hold rows of the part not read this time (an earlier, longer run)
        check_accounting(receipt)
    return receipt


def cancelled_receipt(
    opened: Opened, delivered: Delivered, not_sent: NotSent, text: str, *, times: Times
) -> Receipt:
    """The receipt of a file a person cancelled (docs/dropfolder.md, "Cancelling a file").

    Rows that reached HeroBase stay there and are counted as usual; every other row is in the
    not-sent file (``waiting`` counts them), to be dropped again later. The ledger keeps the
    file waiting, so a re-drop of the same content also sends only the rest.
    """
    file, table = opened.file, opened.table
    sent = delivered.accepted + delivered.duplicates + delivered.uncertain
    where = (
        f"they are in the not-sent file {Path(not_sent.files[0]).name} (in rejected/, same "
        "format as a reject file); drop it into the campaign folder again to send them"
        if not_sent.files
        else "none were left"
    )
    refused = (
        [
            f"{delivered.refused} row(s) were refused by HeroBase: they are in the not-sent "
            "file too, with HeroBase's reasons; fix them before dropping it."
        ]
        if delivered.refused
        else []
    )
    receipt = Receipt(
        file=str(file.path.resolve()),
        sha256=file.identity.sha256,
        campaign=file.campaign,
        rows_read=not_sent.data_rows + not_sent.blank_rows,
        accepted=delivered.accepted,
        refused_by_api=delivered.refused,
        duplicates=delivered.duplicates + not_sent.repeats,  # repeats: sent once, if at all
        uncertain=delivered.uncertain,
        blank_skipped=not_sent.blank_rows,
        waiting=not_sent.rows,
        reject_files=[str(p) for p in not_sent.files],
        schema_source=opened.schema.source,
        outcome=FileOutcome.CANCELLED,
        started_at=times.started_at,
        finished_at=times.finished_at,
        source=table.describe(),
        mapping=dict(opened.mapping.field_for),
        unmapped_columns=list(opened.mapping.unmapped),
        messages=[
            f"This file was {text}. {sent} row(s) had already reached HeroBase: they stay "
            f"there and are never sent again. {not_sent.rows} row(s) were NOT sent: {where}."
        ]
        + refused
        + blind_note(delivered, file.campaign)
        + [f"Row {row} is uncertain: {reason}." for row, reason in delivered.uncertain_rows],
        halt="cancelled",
        halt_reason=f"{text}; {not_sent.rows} row(s) not sent",
        duration_s=times.duration_s,
    )
    receipt.next_steps = [
        "To send the rows that were not sent, drop the not-sent file into the campaign "
        "folder (rows already sent are never sent twice)."
        if not_sent.rows or delivered.refused
        else "Nothing to do: every row had been sent before the cancel took effect."
    ]
    check_accounting(receipt)
    return receipt


def already_receipt(file: Identified, known: FileRecord, times: Times) -> Receipt:
    """The receipt of a re-drop: this run's counts (all 0) and the earlier run's, named so."""
    earlier = Receipt.from_json(json.loads(known.receipt_json or "{}"))
    # the earlier run's finish in the tenant's zone, with the offset it had then (its receipt
    # has it so); a record without one is shown in UTC, named so
    when = shown_time(earlier.finished_at or known.finished_utc or "")
    return Receipt(
        file=str(file.path.resolve()),
        sha256=known.sha256,
        campaign=known.campaign,
        outcome=FileOutcome.ALREADY,
        started_at=times.started_at,
        finished_at=times.started_at,
        earlier={
            "finished_utc": known.finished_utc or "",
            "finished_at": earlier.finished_at,
            "receipt": known.receipt_path or "",
            "rows_read": earlier.rows_read,
            "accepted": earlier.accepted,
            "rejected": earlier.rejected,
            "refused_by_api": earlier.refused_by_api,
            "duplicates": earlier.duplicates,
            "uncertain": earlier.uncertain,
            "reject_files": list(earlier.reject_files),
        },
        messages=[
            f"This file (the same content) was already processed for campaign {known.campaign} "
            f"on {when}; nothing was read or sent again now."
        ],
        next_steps=[
            "Nothing to do. To upload rows that were rejected then, fix them in that run's "
            "reject file and drop it."
            if earlier.rejected or earlier.refused_by_api
            else "Nothing to do."
        ],
        duration_s=times.duration_s,
    )


def _messages(tally: Tally, delivered: Delivered, halt: Halt | None) -> list[str]:
    """Why the file is not done (if it is not), the uncertain rows, the repeated rows."""
    out: list[str] = []
    pending = delivered.pending
    if tally.interrupted:
        out.append(
            f"Interrupted: leadpipe was asked to stop after reading {tally.data_rows} data "
            "row(s); the rest of the file was not read. The file will be resumed: it is read "
            "again from the top and rows already sent are not sent again. The counts are those "
            "known so far."
        )
    elif halt is not None and halt.reason:
        out.append(
            f"The upload stopped: {halt.reason}. {pending} row(s) were not sent yet; they are "
            "sent when the file is processed again (nothing is sent twice)."
        )
    elif pending:
        out.append(
            f"{pending} row(s) did not reach HeroBase after repeated tries (a lookup proved "
            "them absent); they are sent when the file is processed again."
        )
    uncertain = delivered.uncertain_rows
    for row, reason in uncertain[:MAX_UNCERTAIN_NAMED]:
        out.append(f"Row {row} is uncertain: {reason}.")
    if len(uncertain) > MAX_UNCERTAIN_NAMED:
        out.append(f"... and {len(uncertain) - MAX_UNCERTAIN_NAMED} more uncertain row(s).")
    named: Sequence[RowProblem] = tally.repeat_problems
    out.extend(p.message for p in named)
    if tally.repeats > len(named):  # only the first ones are named, the rest counted
        out.append(f"... and {tally.repeats - len(named)} more repeated row(s).")
    return out


def blind_note(delivered: Delivered, campaign: str) -> list[str]:
    """Why uncertain rows were left for a person when the lookup could not be trusted."""
    if not delivered.blind_reason:
        return []
    n = len(delivered.uncertain_rows)
    return [
        f"{n} row(s) may or may not have reached HeroBase and were NOT sent again: "
        f"{delivered.blind_reason}. Look for them in HeroBase (campaign {campaign}, the "
        "rows listed below) and add any that are missing by hand. To let leadpipe check such "
        "rows itself, run `leadpipe doctor --test-upload <a test campaign>` once."
    ]


def sheets_note(sheets: int, rows: int) -> list[str]:
    """Say so when the reject workbook needed more than one sheet."""
    if sheets <= 1:
        return []
    return [
        f"There are {rows:,} rows to fix, more than one Excel sheet holds: the reject workbook "
        f"continues on {sheets - 1} more sheet(s) ('Rejects (2)' ...). The reject CSV has all of "
        "them in one list."
    ]


def elsewhere_note(records: Sequence[FileRecord], campaign: str) -> list[str]:
    """A hint when the same content was dropped for other campaigns too."""
    if not records:
        return []
    where = ", ".join(
        f"{r.campaign} ({(r.finished_utc or r.updated_utc)[:10]})" for r in records[:5]
    )
    return [
        f"The same file content was also dropped for campaign(s) {where}. It was processed "
        f"for {campaign} here, because that is the folder it was dropped into; if it was meant "
        "for one campaign only, remove the leads from the other in HeroBase."
    ]


def check_accounting(r: Receipt) -> None:
    """Invariant 1 (docs/architecture.md): every row read ends in one state (or waits)."""
    total = (
        r.accepted
        + r.rejected
        + r.refused_by_api
        + r.duplicates
        + r.uncertain
        + r.blank_skipped
        + r.waiting
    )
    if total != r.rows_read:
        raise AccountingError(
            f"row accounting does not add up for {r.file}: read {r.rows_read}, "
            f"accounted for {total}"
        )
