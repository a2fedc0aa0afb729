"""How a read ends: the outcome from what the pass read and where the delivery left the rows."""

from __future__ import annotations

import pytest

from pipeline.ingest.accounting import outcome_of
from pipeline.ingest.chunks import Tally
from pipeline.ingest.deliver.delivery import STOP_REASON, Delivered, Halt
from pipeline.outcome import FileOutcome

DOWN = Halt(FileOutcome.WAITING, "waiting for the API: 503", "unavailable")
REFUSED = Halt(FileOutcome.WAITING, "the API refused the credentials", "not_permitted", True)
GONE = Halt(FileOutcome.STOPPED, "campaign not found", "not_found")


@pytest.mark.parametrize(
    ("interrupted", "delivered", "outcome", "halt"),
    [
        (False, Delivered(FileOutcome.PROCESSED, accepted=5), FileOutcome.PROCESSED, None),
        (False, Delivered(FileOutcome.PREVIEWED, accepted=5), FileOutcome.PREVIEWED, None),
        (False, Delivered(FileOutcome.PROCESSED, pending=2), FileOutcome.WAITING, None),
        (False, Delivered(FileOutcome.PROCESSED, pending=2, halt=DOWN), FileOutcome.WAITING, DOWN),
        (False, Delivered(FileOutcome.PROCESSED, halt=REFUSED), FileOutcome.WAITING, REFUSED),
        (False, Delivered(FileOutcome.PROCESSED, halt=GONE), FileOutcome.STOPPED, GONE),
        (True, Delivered(FileOutcome.PROCESSED), FileOutcome.INTERRUPTED, Halt.asked_to_stop()),
        (True, Delivered(FileOutcome.PREVIEWED), FileOutcome.INTERRUPTED, Halt.asked_to_stop()),
        # interrupted while the API was down: resumed, and the receipt keeps why it halted
        (True, Delivered(FileOutcome.PROCESSED, halt=DOWN), FileOutcome.INTERRUPTED, DOWN),
    ],
)
def test_the_outcome_of_a_read(
    interrupted: bool, delivered: Delivered, outcome: FileOutcome, halt: Halt | None
) -> None:
    assert outcome_of(Tally(interrupted=interrupted), delivered) == (outcome, halt)


def test_asked_to_stop_keeps_the_receipts_halt_code() -> None:
    stop = Halt.asked_to_stop()
    assert (stop.outcome, stop.code, stop.reason) == (
        FileOutcome.INTERRUPTED,
        "stopped",
        STOP_REASON,
    )


def test_upload_estimate_says_the_time_at_the_minute_limit_and_the_daily_budget() -> None:
    from pipeline.ingest.accounting import UploadEstimate

    estimate = UploadEstimate(949_728, 600, 100_000)
    assert estimate.sentence() == (
        "Uploading 949,728 rows would take about 26 h 23 min at 600 requests/minute "
        "(and 10 days at the daily budget of 100,000)."
    )
    assert UploadEstimate(30, 600).sentence() == (
        "Uploading 30 rows would take about less than a minute at 600 requests/minute."
    )


def test_verification_is_shown_in_the_tenant_zone_and_kept_in_utc() -> None:
    from pipeline.ingest.deliver.verify import Verification

    v = Verification("f.csv", "C", checked_at="2026-07-01T12:05:00+00:00", rows_checked=2)
    v.timezone = "Europe/Copenhagen"
    assert v.message.startswith("Verification (2026-07-01 14:05 (UTC+02:00)): each of the 2")
    assert v.checked_at == "2026-07-01T12:05:00+00:00"
