"""rejects.py + receipt.py: exact reject cells, no live formula, round trip, receipts."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import openpyxl
import pytest

from pipeline.cells import is_risky
from pipeline.ingest.problems import RowProblem
from pipeline.ingest.report.receipt import Receipt, render_receipt, write_receipt
from pipeline.ingest.report.rejects import RejectWriter
from pipeline.outcome import FileOutcome
from tests.ingest.stage_helpers import run
from tests.ingest.validate.test_checks import (
    FORMULA_CITY,
    FORMULA_NAME,
    FORMULA_NOTE,
    HEADER,
    write_messy,
)


def write_rejects(tmp_path: Path) -> tuple[list[Path], object]:
    result = run(write_messy(tmp_path / "messy.csv"))
    by_row: dict[int, list[RowProblem]] = {}
    for p in result.problems:
        by_row.setdefault(p.row, []).append(p)
    writer = RejectWriter(
        tmp_path / "out" / "x.rejects.xlsx",
        tmp_path / "out" / "x.rejects.csv",
        HEADER,
        tmp_dir=tmp_path / "tmp",
    )
    records = result.rejected.to_dict("records")
    for rec in reversed(records):  # out of order on purpose
        writer.add(int(rec["_row"]), [rec[h] for h in HEADER], by_row[int(rec["_row"])])
    # an API refusal arriving later for a row that is already there, and a new one
    writer.add(
        10, [], [RowProblem(10, "Navn", "", "api_refused", "Row 10: the API refused the lead.")]
    )
    assert writer.count == 100
    paths = writer.close()
    assert list((tmp_path / "tmp").iterdir()) == []  # spool removed
    return paths, result


def test_reject_xlsx_cells_text_highlighted_commented_no_formula(tmp_path: Path) -> None:
    paths, _result = write_rejects(tmp_path)
    assert [p.name for p in paths] == ["x.rejects.xlsx", "x.rejects.csv"]
    wb = openpyxl.load_workbook(paths[0])
    ws = wb.active
    rows = list(ws.iter_rows())
    assert [c.value for c in rows[0]] == [*HEADER, "_row", "_problems"]
    assert [int(r[6].value) for r in rows[1:]] == sorted(int(r[6].value) for r in rows[1:])
    assert len(rows) == 101
    for row in rows:
        for cell in row:
            assert cell.data_type == "s", cell.coordinate
            if cell.value and is_risky(cell.value):
                assert cell.quotePrefix, cell.coordinate
    by_row = {int(r[6].value): r for r in rows[1:]}
    r10 = by_row[10]  # phone '12ab' and the later API refusal on Navn
    assert r10[1].value == "12ab"
    assert r10[1].comment.text.startswith(
        "Row 10, column 'Tlf.': '12ab' is not a phone number like +45 12345678"
    )
    assert r10[1].fill.fgColor.rgb.endswith("FFEB9C")
    assert r10[0].comment.text == "Row 10: the API refused the lead."
    assert r10[2].comment is None
    assert r10[2].fill.fgColor.rgb in (None, "00000000")
    assert r10[7].value.splitlines()[1] == "Row 10: the API refused the lead."
    r78 = by_row[78]  # formula city
    assert r78[4].value == FORMULA_CITY
    assert r78[4].quotePrefix
    assert r78[4].comment is not None
    r79 = by_row[79]  # formula name on a row rejected for its phone
    assert r79[0].value == FORMULA_NAME
    assert r79[0].quotePrefix
    assert r79[0].comment is None
    r80 = by_row[80]
    assert r80[5].value == FORMULA_NOTE
    assert r80[5].quotePrefix
    assert not any(
        isinstance(c.value, str) and c.value.startswith("=") and not c.quotePrefix
        for row in rows
        for c in row
    )


def test_reject_csv_same_rows_bom_neutralised(tmp_path: Path) -> None:
    paths, result = write_rejects(tmp_path)
    raw = paths[1].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines(True)))
    assert rows[0] == [*HEADER, "_row", "_problems"]
    assert len(rows) == 101
    by_row = {int(r[6]): r for r in rows[1:]}
    assert by_row[78][4] == "'" + FORMULA_CITY
    assert by_row[79][0] == "'" + FORMULA_NAME
    assert by_row[80][5] == "'" + FORMULA_NOTE
    assert by_row[10][1] == "12ab"
    assert by_row[24][1] == "4,5123E+11"
    assert by_row[16][7] == (
        "Row 16, column 'Navn': the value is empty, but field name is required. "
        "Fill it in and drop the file again."
    )
    assert not any(c.startswith(("=", "@", "+", "-")) and is_risky(c) for r in rows for c in r)
    assert [int(r[6]) for r in rows[1:]] == sorted(result.rejected["_row"].tolist())


def test_fixed_reject_file_is_valid_input(tmp_path: Path) -> None:
    paths, _ = write_rejects(tmp_path)
    wb = openpyxl.load_workbook(paths[0])
    ws = wb.active
    for row in ws.iter_rows(min_row=2):
        name, phone, zip_, born, city = row[0], row[1], row[2], row[3], row[4]
        if not name.value or is_risky(name.value):
            name.value = "Fixed Name"
        if not phone.value or not phone.value.startswith("+45 2"):
            phone.value = f"+45 1234{int(row[6].value):04d}"
        zip_.value = "0800" if zip_.value == "800" else zip_.value
        born.value = "1990-02-03" if born.value == "45123" else born.value
        city.value = "Aarhus" if city.value == FORMULA_CITY else city.value
    fixed = tmp_path / "fixed.xlsx"
    wb.save(fixed)
    result = run(fixed)
    assert result.mapping.ignored == ["_row", "_problems"]
    assert result.mapping.unmapped == ["Notes"]
    assert list(result.problems) == []
    assert len(result.valid) == 100
    assert set(result.valid.columns) == {"name", "phone", "zip", "born", "city", "_row"}


def test_no_rows_writes_no_files_and_close_is_atomic(tmp_path: Path) -> None:
    writer = RejectWriter(tmp_path / "a.xlsx", tmp_path / "a.csv", ["x"], tmp_dir=tmp_path / "t")
    assert writer.close() == []
    assert not (tmp_path / "a.xlsx").exists()
    writer = RejectWriter(tmp_path / "b.xlsx", tmp_path / "b.csv", ["x"], tmp_dir=tmp_path / "t")
    writer.add(2, ["v"], [RowProblem(2, "x", "v", "pattern", "bad")])
    writer.abort()
    assert not (tmp_path / "b.xlsx").exists()
    assert list((tmp_path / "t").iterdir()) == []


@pytest.fixture
def receipt() -> Receipt:
    return Receipt(
        file="/in/B2B/leads.xlsx",
        sha256="ab" * 32,
        campaign="B2B-DK-SPRING",
        rows_read=1000,
        accepted=890,
        rejected=100,
        refused_by_api=6,
        duplicates=4,
        blank_skipped=1,
        reject_files=[
            "/in/B2B/rejected/s_leads.rejects.xlsx",
            "/in/B2B/rejected/s_leads.rejects.csv",
        ],
        schema_source="snapshot",
        duration_s=3.25,
        source="XLSX, sheet 'Leads', header on row 2",
        mapping={"Navn": "name", "Tlf.": "phone"},
        unmapped_columns=["Notes"],
        schema_drift="fields added: email",
        problems_sample=["Row 10, column 'Tlf.': '12ab' is not a valid phone."],
    )


def test_render_receipt_plain_words(receipt: Receipt) -> None:
    assert render_receipt(receipt) == (
        "leadpipe receipt for leads.xlsx (campaign B2B-DK-SPRING)\n"
        "\n"
        "Status: processed.\n"
        "Read 1000 rows (1 blank row skipped): 890 uploaded, 100 rejected here, 6 refused by "
        "the API, 4 duplicate(s) not sent again, 0 uncertain.\n"
        "Read as: XLSX, sheet 'Leads', header on row 2.\n"
        "Columns: 'Navn' -> name, 'Tlf.' -> phone.\n"
        "The API could not be reached: the rows were checked against the last saved copy of "
        "the campaign's fields.\n"
        "The campaign's fields changed since last time: fields added: email.\n"
        "\n"
        "Rows to fix are in (in the folder B2B):\n"
        "  rejected/s_leads.rejects.xlsx\n"
        "  rejected/s_leads.rejects.csv\n"
        "\n"
        "First problems:\n"
        "  - Row 10, column 'Tlf.': '12ab' is not a valid phone.\n"
        "\n"
        "What to do next:\n"
        "  - Open rejected/s_leads.rejects.xlsx, fix the highlighted cells (each has a "
        "comment), and drop the fixed file into the same inbox folder. Rows already sent are "
        "not sent again.\n"
        "  - Columns not sent: 'Notes'. If one of them should be, rename it to the field name "
        "or map it under [campaigns.<code>.columns] in the config.\n"
        "\n"
        f"File SHA-256: {'ab' * 32}\n"
        "Took 3.2 s.\n"
    )


def test_write_receipt_txt_and_json(tmp_path: Path, receipt: Receipt) -> None:
    txt, js = tmp_path / "r" / "x.receipt.txt", tmp_path / "r" / "x.receipt.json"
    write_receipt(receipt, txt, js)
    data = json.loads(js.read_text(encoding="utf-8"))
    for key in (
        "file", "sha256", "campaign", "rows_read", "accepted", "rejected", "refused_by_api",
        "duplicates", "uncertain", "blank_skipped", "reject_files", "receipt_file",
        "schema_source", "duration_s",
    ):  # fmt: skip
        assert key in data
    assert data["receipt_file"] == str(txt)
    assert Receipt.from_json(data) == receipt
    assert txt.read_text(encoding="utf-8") == render_receipt(receipt)


def test_receipt_json_carries_the_outcome_and_its_sentence_and_reads_older_receipts(
    receipt: Receipt,
) -> None:
    waiting = replace(receipt, outcome=FileOutcome.WAITING)
    data = waiting.to_json()
    assert (data["outcome"], data["status"]) == ("waiting", "waiting for the API")
    assert "Status: waiting for the API." in render_receipt(waiting)
    assert Receipt.from_json(json.loads(json.dumps(data))) == waiting
    older = {k: v for k, v in data.items() if k != "outcome"}  # written before "outcome"
    assert Receipt.from_json(older).outcome is FileOutcome.WAITING
    for sentence, outcome in [
        ("preview (nothing uploaded)", FileOutcome.PREVIEWED),
        ("already processed (nothing sent again)", FileOutcome.ALREADY),
        ("stopped", FileOutcome.STOPPED),
        ("processed", FileOutcome.PROCESSED),
    ]:
        assert Receipt.from_json({**older, "status": sentence}).outcome is outcome


def test_comments_are_capped_but_every_bad_cell_is_highlighted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.ingest.report import rejects

    monkeypatch.setattr(rejects, "MAX_COMMENTS", 3)
    writer = RejectWriter(tmp_path / "c.xlsx", tmp_path / "c.csv", ["a"], tmp_dir=tmp_path / "t")
    for row in range(2, 8):
        writer.add(row, ["x"], [RowProblem(row, "a", "x", "pattern", f"Row {row}: bad")])
    writer.close()
    ws = openpyxl.load_workbook(tmp_path / "c.xlsx").active
    cells = [r[0] for r in ws.iter_rows(min_row=2)]
    assert [c.comment is not None for c in cells] == [True, True, True, False, False, False]
    assert all(c.fill.fgColor.rgb.endswith("FFEB9C") for c in cells)


def test_rejects_beyond_one_sheet_continue_on_the_next_and_the_receipt_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.ingest.accounting import sheets_note
    from pipeline.ingest.report import rejects

    monkeypatch.setattr(rejects, "SHEET_ROWS", 5)  # Excel's 1,048,576, scaled down
    writer = RejectWriter(tmp_path / "s.xlsx", tmp_path / "s.csv", ["a"], tmp_dir=tmp_path / "t")
    for row in range(2, 14):  # 12 rows: 4 per sheet, header on each
        writer.add(row, [f"v{row}"], [RowProblem(row, "a", "x", "pattern", f"Row {row}: bad")])
    writer.close()
    assert writer.sheets == 3
    wb = openpyxl.load_workbook(tmp_path / "s.xlsx")
    assert wb.sheetnames == ["Rejects", "Rejects (2)", "Rejects (3)"]
    seen = []
    for ws in wb.worksheets:
        rows = list(ws.iter_rows(values_only=True))
        assert rows[0][:2] == ("a", "_row")
        seen += [int(r[1]) for r in rows[1:]]
    assert seen == list(range(2, 14))  # every row, in order, none cut
    with (tmp_path / "s.csv").open(encoding="utf-8-sig", newline="") as fh:
        assert len(list(csv.reader(fh))) == 13
    (note,) = sheets_note(writer.sheets, writer.count)
    assert "continues on 2 more sheet(s)" in note
    assert "CSV has all of them" in note


def test_reject_columns_fit_their_text_within_limits_and_the_header_has_a_filter(
    tmp_path: Path,
) -> None:
    writer = RejectWriter(
        tmp_path / "x.rejects.xlsx",
        tmp_path / "x.rejects.csv",
        ["Id", "E-mail", "Note"],
        tmp_dir=tmp_path / "tmp",
    )
    email = "maren.kristensen-hoejgaard@example-company.dk"  # 46 characters
    problem = RowProblem(2, "E-mail", email, "pattern", "x" * 300)
    writer.add(2, ["7", email, "n" * 500], [problem])
    writer.add(3, ["8", "a@b.dk", ""], [RowProblem(3, "Id", "8", "required", "short")])
    xlsx = writer.close()[0]
    ws = openpyxl.load_workbook(xlsx).active
    width = {col: ws.column_dimensions[col].width for col in "ABCDE"}
    assert width["A"] < 12  # a short column stays narrow
    assert len(email) <= width["B"] < len(email) + 5  # the whole e-mail shows
    assert 50 <= width["C"] < 53  # a 500-character note is capped
    assert 100 <= width["E"] < 103  # the problem text gets more room, also capped
    assert ws.auto_filter.ref == "A1:E3"
