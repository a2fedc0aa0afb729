"""``ingest_file`` end to end over real HTTP: the messy file, reruns, fixed rejects, dry run."""

from __future__ import annotations

import csv
import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import openpyxl
import pytest

from pipeline.api import HeroBaseClient
from pipeline.cells import is_risky
from pipeline.clock import shown_time
from pipeline.config import CampaignSettings, Settings
from pipeline.dropfolder.identity import FileIdentity
from pipeline.ingest.chunks import IngestProgress
from pipeline.ingest.fields import load_campaign_schema
from pipeline.ingest.report.place import ReceiptWriter, ResultPlaces
from pipeline.ingest.report.receipt import Receipt
from pipeline.ingest.run import IngestContext, IngestRequest, ingest_file
from pipeline.ledger import FileKey, FileState, Ledger, RowState
from pipeline.ledger.connect import open_ledger_for
from pipeline.outcome import FileOutcome
from pipeline.sandbox import Fault, Sandbox
from tests.ingest import messy
from tests.ingest.conftest import CAMPAIGN, make_settings
from tests.postgres import LedgerBackend

OURS = re.compile(r"\+45 [23]0 \d{6}")  # the demo tenant's own leads look different


@dataclass
class Env:
    sb: Sandbox
    settings: Settings
    client: HeroBaseClient
    ledger: Ledger
    tmp: Path

    def ingest(
        self,
        path: Path,
        *,
        dry_run: bool = False,
        chunk_rows: int = 100_000,
        stop: threading.Event | None = None,
        progress: IngestProgress | None = None,
    ) -> Receipt:
        """As ``leadpipe ingest --out results``: ingest, then the receipt written in place."""
        places = ResultPlaces.for_ingest(path, CAMPAIGN, self.settings, self.tmp / "results")
        request = IngestRequest(
            path,
            CAMPAIGN,
            results=places.rejects,
            tmp=places.tmp,
            dry_run=dry_run,
            chunk_rows=chunk_rows,
        )
        context = IngestContext(
            self.settings, self.client, self.ledger, stop=stop, progress=progress
        )
        result = ingest_file(request, context)
        return (
            ReceiptWriter(self.ledger)
            .place(result.receipt, result.rejects, places, result.base)
            .receipt
        )

    def stored(self) -> Counter[str]:
        """Our leads in the sandbox, counted by phone (each valid row has its own phone)."""
        return Counter(
            lead["data"]["phone"]
            for lead in self.sb.leads(CAMPAIGN)
            if OURS.fullmatch(lead["data"].get("phone", ""))
        )


@pytest.fixture
def env(sb: Sandbox, tmp_path: Path, ledger_backend: LedgerBackend) -> Iterator[Env]:
    settings = make_settings(tmp_path, sb, concurrency=4)
    settings = replace(
        settings,
        campaigns={CAMPAIGN: CampaignSettings(columns=dict(messy.SYNONYMS))},
        state=ledger_backend.state(),
    )
    client = HeroBaseClient(settings.api, timezone=settings.timezone)
    ledger = open_ledger_for(settings)
    e = Env(sb, settings, client, ledger, tmp_path)
    try:
        yield e
    finally:
        ledger.close()
        e.client.close()


def regexes(env: Env) -> dict[str, str]:
    schema = load_campaign_schema(env.client, CAMPAIGN, env.tmp / "regex-schemas")
    return {f.name: f.regex for f in schema.fields}


def read_reject_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def test_messy_file_exact_counts_rejects_and_no_formula(env: Env) -> None:
    src = env.tmp / "kunder.csv"
    exp = messy.build(src, 1000)
    receipt = env.ingest(src)

    assert (receipt.rows_read, receipt.blank_skipped) == (1000, 10)
    assert (receipt.accepted, receipt.rejected, receipt.refused_by_api) == (869, 120, 0)
    assert (receipt.duplicates, receipt.uncertain, receipt.waiting) == (1, 0, 0)
    assert receipt.outcome is FileOutcome.PROCESSED
    assert receipt.source == "CSV (windows-1252, ';' separated), header on row 2"
    assert receipt.unmapped_columns == ["Kilde"]
    assert exp.repeats == {503: 501}
    assert "Row 503 repeats row 501 (the same values in every field)" in receipt.messages[0]
    assert len(exp.valid) == 869
    assert len(exp.bad) == 120

    # every valid row is in HeroBase exactly once, with its Danish letters intact
    stored = env.stored()
    assert stored == Counter(d["phone"] for d in exp.valid.values())
    by_phone = {lead["data"]["phone"]: lead["data"] for lead in env.sb.leads(CAMPAIGN)}
    assert all(by_phone[d["phone"]]["name"] == d["name"] for d in exp.valid.values())

    # the reject CSV: exactly the bad rows, original cells, exact messages, no live formula
    xlsx_path, csv_path = (Path(p) for p in receipt.reject_files)
    rows = read_reject_csv(csv_path)
    assert [int(r["_row"]) for r in rows] == sorted(exp.bad)
    rx = regexes(env)
    # the regexes are in the JSON receipt, for whoever needs them, never in the words
    written = json.loads(Path(receipt.receipt_file).with_suffix(".json").read_text("utf-8"))
    assert {f: r["regex"] for f, r in written["field_rules"].items()} == rx
    assert rx["phone"] not in Path(receipt.receipt_file).read_text("utf-8")
    for r in rows:
        row = int(r["_row"])
        want = [messy.expected_message(row, c, v, k, rx) for c, v, k in exp.bad[row]]
        assert r["_problems"].split("\n") == want
        original = exp.cells[row]
        got = [r[h] for h in messy.HEADERS]
        assert [
            g.removeprefix("'") if is_risky(o) else g for g, o in zip(got, original, strict=True)
        ] == original
    with csv_path.open(encoding="utf-8-sig", newline="") as fh:
        for cells in csv.reader(fh):
            assert not any(is_risky(c) for c in cells), cells

    # the reject XLSX: text cells only, risky ones quote-prefixed, bad cells commented
    wb = openpyxl.load_workbook(xlsx_path)
    ws = wb.active
    assert ws is not None
    header = [c.value for c in ws[1]]
    assert header == [*messy.HEADERS, "_row", "_problems"]
    commented = set()
    for line in ws.iter_rows(min_row=2):
        row = int(str(line[len(messy.HEADERS)].value))
        for cell in line:
            assert cell.data_type == "s"
            if is_risky(str(cell.value or "")):
                assert cell.quotePrefix, (row, cell.value)
            if cell.comment is not None:
                commented.add((row, header[cell.column - 1]))
    assert commented == {(row, c) for row, bad in exp.bad.items() for c, _v, _k in bad}
    wb.close()
    # the receipt twin carries the --json fields
    data = json.loads(Path(receipt.receipt_file).with_suffix(".json").read_text("utf-8"))
    assert data["accepted"] == 869
    assert data["schema_source"] == "live"


def test_same_file_twice_creates_nothing_the_second_time(env: Env) -> None:
    src = env.tmp / "kunder.csv"
    exp = messy.build(src, 120)
    first = env.ingest(src)
    posts = len([r for r in env.sb.requests() if r["method"] == "POST"])
    second = env.ingest(src)
    assert len([r for r in env.sb.requests() if r["method"] == "POST"]) == posts
    # every count is this run's: nothing was read or sent; the earlier run's counts are apart
    assert (second.rows_read, second.accepted, second.rejected, second.duplicates) == (0, 0, 0, 0)
    assert second.outcome is FileOutcome.ALREADY
    assert second.earlier is not None
    assert (second.earlier["accepted"], second.earlier["rejected"]) == (
        first.accepted,
        first.rejected,
    )
    assert second.earlier["receipt"] == first.receipt_file
    assert second.earlier["reject_files"] == first.reject_files
    assert second.reject_files == []
    assert second.messages[0].startswith(
        f"This file (the same content) was already processed for campaign {CAMPAIGN} on "
    )
    # in the tenant's zone with its offset (the JSON keeps the UTC time)
    assert f"on {shown_time(first.finished_at)};" in second.messages[0]
    assert " UTC;" not in second.messages[0]
    text = Path(second.receipt_file).read_text("utf-8")
    assert f"0 uploaded now; {first.accepted} uploaded on " in text
    assert Path(first.receipt_file).name in text  # the earlier receipt, named
    on_disk = json.loads(Path(second.receipt_file).with_suffix(".json").read_text("utf-8"))
    assert (on_disk["accepted"], on_disk["earlier"]["accepted"]) == (0, first.accepted)
    assert env.stored() == Counter(d["phone"] for d in exp.valid.values())


def test_fixed_reject_file_creates_only_the_fixed_rows(env: Env) -> None:
    src = env.tmp / "kunder.csv"
    exp = messy.build(src, 200)
    first = env.ingest(src)
    rejects = Path(next(p for p in first.reject_files if p.endswith(".csv")))
    rows = read_reject_csv(rejects)
    fixed = env.tmp / "kunder_rettet.csv"
    with fixed.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for n, r in enumerate(rows):
            r = dict(r)
            r["Navn"] = f"Rettet {n}"
            r["Telefon"] = f"+45 30 {n:06d}"
            r["E-mail"] = f"rettet{n}@firma.dk"
            r["Segment"] = "Enterprise"
            r["Note"] = ""
            w.writerow(r)
        # one row already accepted from the first file is dropped again: not sent twice
        row, data = next(iter(exp.valid.items()))
        w.writerow({**dict.fromkeys(rows[0], ""), "Navn": data["name"], "Telefon": data["phone"],
                    "E-mail": data["email"], "Segment": data["segment"], "Note": data["note"],
                    "_row": str(row)})  # fmt: skip
    before = Counter(env.stored())
    second = env.ingest(fixed)
    assert (second.accepted, second.rejected, second.duplicates) == (len(rows), 0, 1)
    assert second.reject_files == []
    assert list((env.tmp / "results" / ".leadpipe" / "tmp").iterdir()) == []  # no spool left
    assert second.unmapped_columns == ["Kilde"]
    after = env.stored()
    assert after - before == Counter(f"+45 30 {n:06d}" for n in range(len(rows)))
    assert max(after.values()) == 1


def key_of(path: Path) -> FileKey:
    """The ledger key of a file dropped for the test campaign."""
    return FileKey(FileIdentity.of(path).sha256, CAMPAIGN)


def test_dry_run_uploads_nothing_and_marks_nothing(env: Env) -> None:
    src = env.tmp / "kunder.csv"
    messy.build(src, 100)
    receipt = env.ingest(src, dry_run=True)
    assert receipt.outcome is FileOutcome.PREVIEWED
    assert receipt.dry_run is True
    assert (receipt.accepted, receipt.rejected, receipt.blank_skipped) == (86, 12, 1)
    assert receipt.duplicates == 1  # row 53 repeats row 52
    assert [r for r in env.sb.requests() if r["method"] == "POST"] == []
    assert env.ledger.file(key_of(src)) is None
    assert len(receipt.reject_files) == 2


def test_a_dry_run_takes_no_valid_row_out_of_its_chunk(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A preview counts the valid rows; with nothing accepted for the campaign it needs none of
    their values, so they are never copied out of the chunk (the same counts)."""
    from pipeline.ingest.validate.checks import ChunkResult

    def taken(_self: ChunkResult) -> None:
        raise AssertionError("the valid rows were taken out of the chunk")

    src = env.tmp / "kunder.csv"
    messy.build(src, 100)
    with monkeypatch.context() as mp:
        mp.setattr(ChunkResult, "valid", property(taken))
        receipt = env.ingest(src, dry_run=True)
    assert (receipt.accepted, receipt.rejected, receipt.duplicates) == (86, 12, 1)


def test_401_mid_file_stops_says_why_and_a_retry_finishes(env: Env) -> None:
    src = env.tmp / "kunder.csv"
    exp = messy.build(src, 300)
    env.sb.add_fault(Fault("status", route="POST /leads", status=401, after=100, times=0))
    first = env.ingest(src)
    # the API refused the credentials: the file waits (the service puts it back in the inbox)
    assert first.outcome is FileOutcome.WAITING
    assert first.status == "waiting for the API"
    assert first.accepted == 100
    assert first.waiting == len(exp.valid) - 100
    assert "The upload stopped: the API refused the credentials (401)" in first.messages[0]
    assert first.halt == "not_permitted"
    assert first.halt_reason.startswith("the API refused the credentials (401): check ")
    on_disk = json.loads(Path(first.receipt_file).with_suffix(".json").read_text("utf-8"))
    assert (on_disk["halt"], on_disk["halt_reason"]) == (first.halt, first.halt_reason)
    sha = key_of(src)
    record = env.ledger.file(sha)
    assert record is not None
    assert record.state == FileState.WAITING
    assert env.ledger.row_counts(sha)[RowState.ACCEPTED] == sum(env.stored().values()) == 100

    env.sb.clear_faults()
    second = env.ingest(src)
    assert second.outcome is FileOutcome.PROCESSED
    assert (second.halt, second.halt_reason) == (None, "")
    assert (second.accepted, second.waiting) == (len(exp.valid), 0)
    assert env.stored() == Counter(d["phone"] for d in exp.valid.values())


def test_snapshot_schema_validates_but_holds_the_upload(env: Env) -> None:
    src = env.tmp / "kunder.csv"
    exp = messy.build(src, 60)
    load_campaign_schema(env.client, CAMPAIGN, env.settings.paths.schemas)  # writes the snapshot
    env.sb.add_fault(Fault("status", route="GET /leads/example", status=503, times=0))
    env.client.close()
    env.client = HeroBaseClient(replace(env.settings.api, max_retries=0), timezone="UTC")
    receipt = env.ingest(src)
    assert receipt.outcome is FileOutcome.WAITING
    assert "saved snapshot" in receipt.messages[0]
    assert receipt.schema_source == "snapshot"
    assert receipt.accepted == 0
    assert receipt.waiting == len(exp.valid)
    assert [r for r in env.sb.requests() if r["method"] == "POST"] == []


def test_api_refusals_flow_into_the_reject_file_and_are_not_resent(env: Env) -> None:
    src = env.tmp / "kunder.csv"
    exp = messy.build(src, 60)
    env.sb.add_fault(Fault("status", route="POST /leads", status=400, after=10, times=2))
    env.settings = replace(env.settings, intake=replace(env.settings.intake, concurrency=1))
    receipt = env.ingest(src)
    assert (receipt.accepted, receipt.refused_by_api) == (len(exp.valid) - 2, 2)
    assert receipt.outcome is FileOutcome.PROCESSED
    rows = read_reject_csv(Path(next(p for p in receipt.reject_files if p.endswith(".csv"))))
    refused = [r for r in rows if "refused by HeroBase" in r["_problems"]]
    valid_rows = sorted(exp.valid)
    assert [int(r["_row"]) for r in refused] == valid_rows[10:12]
    assert refused[0]["_problems"] == (
        f"Row {valid_rows[10]}: refused by HeroBase: the API refused the request as invalid: "
        "injected fault: HTTP 400. Fix the row and drop the file again."
    )
    assert refused[0]["Navn"] == exp.cells[valid_rows[10]][0]
    # the validation rejects are still there, in row order with the refusals
    assert [int(r["_row"]) for r in rows] == sorted([*exp.bad, *valid_rows[10:12]])
    env.sb.clear_faults()
    posts = len([r for r in env.sb.requests() if r["method"] == "POST"])
    env.ledger.set_file_state(key_of(src), FileState.WAITING)  # force a rerun
    again = env.ingest(src)
    assert len([r for r in env.sb.requests() if r["method"] == "POST"]) == posts
    assert again.refused_by_api == 2


def test_uncertain_row_without_leads_get_is_left_for_a_person(env: Env) -> None:
    from pipeline.sandbox import RESTRICTED_PASSWORD, RESTRICTED_USER

    src = env.tmp / "kunder.csv"
    exp = messy.build(src, 30)
    env.client.close()
    api = replace(env.settings.api, user=RESTRICTED_USER, password=RESTRICTED_PASSWORD)
    env.client = HeroBaseClient(api, timezone=env.settings.timezone)
    env.settings = replace(env.settings, intake=replace(env.settings.intake, concurrency=1))
    env.sb.add_fault(Fault("status_after", route="POST /leads", status=500, after=4, times=1))
    receipt = env.ingest(src)
    row = sorted(exp.valid)[4]
    assert (receipt.accepted, receipt.uncertain) == (len(exp.valid) - 1, 1)
    assert receipt.outcome is FileOutcome.PROCESSED
    assert f"Row {row} is uncertain: the API account lacks Leads: GET" in receipt.messages[0]
    text = Path(receipt.receipt_file).read_text("utf-8")
    assert "may or may not have reached HeroBase" in text
    posts = len([r for r in env.sb.requests() if r["method"] == "POST"])
    assert posts == len(exp.valid)
    again = env.ingest(src)  # the file is done: the uncertain row is never resent
    assert again.earlier is not None
    assert (again.uncertain, again.earlier["uncertain"]) == (0, 1)
    assert len([r for r in env.sb.requests() if r["method"] == "POST"]) == posts


def test_many_small_chunks_give_the_same_result_as_one(env: Env, tmp_path: Path) -> None:
    src = env.tmp / "kunder.csv"
    exp = messy.build(src, 200)
    one = env.ingest(src, dry_run=True)
    many = env.ingest(src, chunk_rows=50)  # row 103 repeats row 101 across a chunk boundary
    assert exp.repeats == {103: 101}
    assert (many.accepted, many.rejected, many.duplicates, many.blank_skipped) == (
        one.accepted,
        one.rejected,
        one.duplicates,
        one.blank_skipped,
    )
    assert "Row 103 repeats row 101" in many.messages[0]
    a, b = (read_reject_csv(Path(r.reject_files[1])) for r in (one, many))
    assert a == b
    assert env.stored() == Counter(d["phone"] for d in exp.valid.values())


class StopWatch:
    """A progress callback: counts the chunks read and sets ``stop`` at a chosen moment."""

    def __init__(self, *, after_chunks: int = 0, on_upload: bool = False) -> None:
        self.stop = threading.Event()
        self.after_chunks, self.on_upload = after_chunks, on_upload
        self.read: list[int] = []  # data rows read so far, one entry per chunk

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage == "reading":
            self.read.append(done)
            if len(self.read) == self.after_chunks:
                self.stop.set()
        elif self.on_upload:
            self.stop.set()


def test_stop_during_the_upload_reads_no_further_chunks_of_a_huge_file(env: Env) -> None:
    src = env.tmp / "kunder.csv"
    messy.build(src, 200_000)
    watch = StopWatch(on_upload=True)  # as SIGTERM would, while the first chunk is sent
    first = env.ingest(src, chunk_rows=1000, stop=watch.stop, progress=watch)
    assert len(watch.read) == 1  # the first chunk only: the rest of the file is not read
    assert first.rows_read == watch.read[0] + first.blank_skipped < 20_000
    assert (first.outcome, first.halt) == (FileOutcome.INTERRUPTED, "stopped")
    assert first.messages[0].startswith(
        f"Interrupted: leadpipe was asked to stop after reading {watch.read[0]} data row(s); "
        "the rest of the file was not read. The file will be resumed"
    )
    assert first.reject_files == []  # the rerun writes the whole reject file
    record = env.ledger.file(key_of(src))
    assert record is not None
    assert record.state == FileState.WAITING
    assert sum(env.stored().values()) < watch.read[0]


def test_a_rerun_after_a_stop_between_chunks_creates_every_valid_row_once(env: Env) -> None:
    src = env.tmp / "kunder.csv"
    exp = messy.build(src, 5000)
    # a wide unsent column makes the reader's 1 MB blocks hold few rows: several chunks
    text = (
        src.read_bytes().decode("windows-1252").replace(";messe\r\n", ";messe" + "x" * 500 + "\r\n")
    )
    src.write_bytes(text.encode("windows-1252"))
    watch = StopWatch(after_chunks=1)
    first = env.ingest(src, chunk_rows=500, stop=watch.stop, progress=watch)
    assert len(watch.read) == 1
    assert (first.rows_read < 5000, first.outcome, first.halt) == (
        True,
        FileOutcome.INTERRUPTED,
        "stopped",
    )
    sent_before = sum(env.stored().values())
    assert 0 < sent_before < len(exp.valid)

    second = env.ingest(src, chunk_rows=500)
    assert (second.outcome, second.halt) == (FileOutcome.PROCESSED, None)
    assert (second.rows_read, second.accepted, second.waiting) == (5000, len(exp.valid), 0)
    assert env.stored() == Counter(d["phone"] for d in exp.valid.values())
    assert len(second.reject_files) == 2


def test_a_repeated_header_says_which_column_was_sent_and_which_was_not(env: Env) -> None:
    src = env.tmp / "twice.csv"
    src.write_text(
        "Name,Phone,Segment,Phone\nFirma Dup,+45 20 11 22 33,SMB,+45 99 99 99 99\n",
        encoding="utf-8",
    )
    receipt = env.ingest(src)
    assert receipt.accepted == 1
    assert receipt.mapping == {"Name": "name", "Phone": "phone", "Segment": "segment"}
    assert receipt.unmapped_columns == ["Phone (2)"]
    note = next(m for m in receipt.messages if "both fit field phone" in m)
    assert note.startswith(
        "Columns B 'Phone' and D 'Phone' (shown as 'Phone (2)') both fit field phone: "
        "column B was sent, column D was not."
    )
    text = Path(receipt.receipt_file).read_text("utf-8")
    assert "column B was sent, column D was not" in text
    (lead,) = [x for x in env.sb.leads(CAMPAIGN) if x["data"].get("name") == "Firma Dup"]
    assert lead["data"]["phone"] == "+45 20 11 22 33"  # column B's value, not D's


def test_more_than_20_repeated_rows_are_counted_in_the_receipt(env: Env) -> None:
    src = env.tmp / "repeats.csv"
    lines = ["Name,Phone,Segment", "Firma Gentag,+45 20 55 00 00,SMB"]
    lines += ["Firma Gentag,+45 20 55 00 00,SMB"] * 25  # 25 repeats of one row
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    receipt = env.ingest(src)
    assert receipt.duplicates == 25
    repeated = [m for m in receipt.messages if "repeats row 2" in m or "same as row 2" in m]
    assert len(repeated) == 20  # the first 20 named one by one
    assert "... and 5 more repeated row(s)." in receipt.messages
