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
