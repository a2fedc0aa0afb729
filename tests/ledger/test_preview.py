"""``has_accepted`` and the preview that uses it: no fingerprints when none can match."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from pipeline.ingest.deliver import delivery
from pipeline.ingest.deliver.delivery import PreviewDelivery
from pipeline.ingest.rows import valid_fingerprints
from pipeline.ledger import FileKey, Ledger
from tests.postgres import LedgerBackend

T = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
KEY = FileKey("a" * 64, "C1")


def _valid() -> pd.DataFrame:
    return pd.DataFrame(
        {"_row": [2, 3], "name": ["Anne", 'Jens "J"\n'], "phone": ["+45 1", None]},
    ).astype({"name": "str", "phone": "str"})


def _accept(ledger: Ledger, prints: list[str], campaign: str = "C1") -> None:
    key = FileKey("b" * 64, campaign)
    ledger.begin_file(key, "earlier.csv")
    ledger.add_rows(key, enumerate(prints, start=2))
    rows = list(range(2, 2 + len(prints)))
    claim = ledger.claim_for_sending(
        key, rows, skip_duplicates=True, attempt_utc=T, attempt_local=T
    )
    for row in claim.sending:
        ledger.record_accepted(key, row, f"id{row}")


def test_has_accepted_is_per_campaign_and_only_accepted(
    tmp_path: Path, ledger_backend: LedgerBackend
) -> None:
    led = ledger_backend.open(tmp_path)
    assert not led.has_accepted("C1")
    led.begin_file(KEY, "leads.csv")
    led.add_rows(KEY, [(2, "f2")])
    assert not led.has_accepted("C1")  # pending is not accepted
    _accept(led, ["f9"], campaign="C2")
    assert not led.has_accepted("C1")
    assert led.has_accepted("C2")


def test_a_preview_of_a_campaign_with_nothing_accepted_computes_no_fingerprints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger_backend: LedgerBackend
) -> None:
    def no_prints(*_args: object) -> list[str]:
        raise AssertionError("fingerprints computed although nothing is accepted")

    monkeypatch.setattr(delivery, "valid_fingerprints", no_prints)
    led = ledger_backend.open(tmp_path)
    _accept(led, ["f9"], campaign="OTHER")
    preview = PreviewDelivery(led, "C1", skip_duplicates=True)
    assert preview.deliver(_Rows(_valid())) == {}
    result = preview.result()
    assert (result.accepted, result.duplicates) == (2, 0)


def test_a_preview_counts_the_rows_already_accepted(
    tmp_path: Path, ledger_backend: LedgerBackend
) -> None:
    led = ledger_backend.open(tmp_path)
    valid = _valid()
    _accept(led, valid_fingerprints(valid, "C1")[1:])  # the row with a quote and a line break
    preview = PreviewDelivery(led, "C1", skip_duplicates=True)
    preview.deliver(_Rows(valid))
    result = preview.result()
    assert (result.accepted, result.duplicates) == (1, 1)
    # duplicates uploaded anyway: nothing is looked up
    assert PreviewDelivery(led, "C1", skip_duplicates=False).skip_duplicates is False


def test_compact_says_so_when_another_reader_keeps_the_log(tmp_path: Path) -> None:
    import sqlite3

    import pytest

    from pipeline.errors import StateError
    from pipeline.ledger.sqlite import open_ledger

    ledger = open_ledger(tmp_path)
    try:
        key = FileKey("b" * 64, "C")
        ledger.begin_file(key, "x.csv")
        reader = sqlite3.connect(tmp_path / "ledger.sqlite")
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM files").fetchone()  # a read snapshot stays open
        ledger.add_rows(key, [(2, "fp2")])
        with pytest.raises(StateError, match="another process"):
            ledger.compact(vacuum=False)
        reader.rollback()
        reader.close()
        ledger.compact(vacuum=False)  # nobody reads now: done
    finally:
        ledger.close()


@dataclass(frozen=True)
class _Rows:
    """A chunk's valid rows given as a frame (what a delivery takes)."""

    valid: pd.DataFrame

    @property
    def valid_rows(self) -> int:
        return len(self.valid)
