"""ReceiptWriter: results in their place, the receipt naming them, a processed file done."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.config import Paths, Settings
from pipeline.ingest.report.place import ReceiptWriter, ResultPlaces
from pipeline.ingest.report.receipt import Receipt
from pipeline.ledger import FileKey, FileState, Ledger
from pipeline.outcome import FileOutcome
from tests.postgres import LedgerBackend

KEY = FileKey("cd" * 32, "B2B-DK-SPRING")
BASE = "20261127-120000_leads.csv"


@pytest.fixture
def ledger(tmp_path: Path, ledger_backend: LedgerBackend) -> Iterator[Ledger]:
    led = ledger_backend.open(tmp_path / "state")
    led.begin_file(KEY, "leads.csv")
    yield led
    led.close()


def staged(tmp_path: Path) -> tuple[Receipt, list[Path], ResultPlaces]:
    """A receipt and its reject files as ingest leaves them in a claim's results folder."""
    results = tmp_path / "claim" / "results"
    results.mkdir(parents=True)
    rejects = [results / f"{BASE}.rejects.csv", results / f"{BASE}.rejects.xlsx"]
    for f in rejects:
        f.write_text("rows to fix", encoding="utf-8")
    receipt = Receipt(
        file="/in/B2B/leads.csv",
        sha256=KEY.sha256,
        campaign=KEY.campaign,
        rows_read=3,
        accepted=2,
        rejected=1,
        reject_files=[str(f) for f in rejects],
    )
    drop = tmp_path / "inbox" / KEY.campaign
    return receipt, rejects, ResultPlaces.in_drop_folder(tmp_path / "inbox", drop, False)


def test_a_processed_file_is_done_and_its_receipt_names_where_the_files_are(
    tmp_path: Path, ledger: Ledger
) -> None:
    receipt, rejects, places = staged(tmp_path)
    placed = ReceiptWriter(ledger).place(receipt, rejects, places, BASE)
    final = [places.rejects / f"{BASE}.rejects.xlsx", places.rejects / f"{BASE}.rejects.csv"]
    assert placed.rejects == final  # the spreadsheet first
    assert all(p.is_file() for p in final)
    assert not any(p.exists() for p in rejects)
    assert placed.txt == places.receipts / f"{BASE}.receipt.txt"
    on_disk = json.loads(placed.txt.with_suffix(".json").read_text("utf-8"))
    assert on_disk["reject_files"] == [str(p) for p in final]
    assert on_disk["receipt_file"] == str(placed.txt)
    assert (on_disk["outcome"], on_disk["status"]) == ("processed", "processed")
    record = ledger.file(KEY)
    assert record is not None
    assert (record.state, record.receipt_path) == (FileState.DONE, str(placed.txt))
    assert json.loads(record.receipt_json or "{}") == on_disk
    assert not list(places.tmp.iterdir())  # temporary files renamed away


@pytest.mark.parametrize(
    "outcome", [FileOutcome.PREVIEWED, FileOutcome.ALREADY, FileOutcome.STOPPED]
)
def test_only_a_processed_file_is_recorded_as_done(
    tmp_path: Path, ledger: Ledger, outcome: FileOutcome
) -> None:
    receipt, rejects, places = staged(tmp_path)
    placed = ReceiptWriter(ledger).place(replace(receipt, outcome=outcome), rejects, places, BASE)
    assert placed.txt.is_file()
    record = ledger.file(KEY)
    assert record is not None
    assert (record.state, record.receipt_json) == (FileState.PROCESSING, None)


def test_a_second_pass_names_reject_files_already_in_place_and_drops_lost_ones(
    tmp_path: Path, ledger: Ledger
) -> None:
    receipt, rejects, places = staged(tmp_path)
    places.rejects.mkdir(parents=True)
    rejects[1].rename(places.rejects / rejects[1].name)  # renamed before an interruption
    rejects[0].unlink()  # and one that is gone
    placed = ReceiptWriter(ledger).place(receipt, rejects, places, BASE)
    assert placed.rejects == [places.rejects / f"{BASE}.rejects.xlsx"]
    assert placed.receipt.reject_files == [str(places.rejects / f"{BASE}.rejects.xlsx")]


def test_leadpipe_ingest_places_results_beside_or_in_the_drop_folder(tmp_path: Path) -> None:
    settings = Settings(paths=Paths(inbox=tmp_path / "inbox"))
    home = settings.paths.inbox / KEY.campaign
    inbox_file = ResultPlaces.for_ingest(home / "a.csv", KEY.campaign, settings, None)
    assert (inbox_file.receipts, inbox_file.rejects) == (home / "processed", home / "rejected")
    preview = ResultPlaces.for_ingest(home / "preview" / "a.csv", KEY.campaign, settings, None)
    assert (preview.receipts, preview.rejects) == (home / "preview", home / "preview")
    out = ResultPlaces.for_ingest(home / "a.csv", KEY.campaign, settings, tmp_path / "out")
    assert (out.receipts, out.rejects) == (tmp_path / "out", tmp_path / "out")
