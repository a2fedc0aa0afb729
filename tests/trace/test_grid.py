"""Every record of a kept file as the spreadsheet shows it, and the file without some
(``pipeline/ingest/read/grid.py``, used by ``trace --find`` and ``forget``)."""

from __future__ import annotations

from pathlib import Path

import xlsxwriter

from pipeline.ingest.read.grid import records, rewrite_without


def test_csv_rows_as_excel_counts_them_and_a_rewrite_keeps_the_format(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    text = 'Leads export\r\n\r\nName;Phone\r\n"Jane\r\nDoe";+4520000001\r\nBob;+4520000002\r\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    rows = [(r.row, r.cells[-1]) for r in records(path)]
    assert rows == [(1, "Leads export"), (3, "Phone"), (4, "+4520000001"), (5, "+4520000002")]
    assert rewrite_without(path, lambda cells: "+4520000001" in cells) == 1
    kept = "Leads export\r\n\r\nName;Phone\r\nBob;+4520000002\r\n"
    assert path.read_bytes() == b"\xef\xbb\xbf" + kept.encode("utf-8")
    assert rewrite_without(path, lambda cells: "nobody" in cells) == 0


def test_workbook_rows_and_columns_stay_where_they_were(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Leads")
    for r, value in ((2, "Phone"), (3, "+4520000001"), (4, "+4520000002")):
        sheet.write_string(r, 1, value)
    book.add_worksheet("Notes").write_string(0, 0, "+4520000001")
    book.close()
    assert [(r.sheet, r.row, r.cells) for r in records(path)] == [
        ("Leads", 3, ("", "Phone")),
        ("Leads", 4, ("", "+4520000001")),
        ("Leads", 5, ("", "+4520000002")),
        ("Notes", 1, ("+4520000001",)),
    ]
    assert rewrite_without(path, lambda cells: "+4520000001" in cells, tmp_dir=tmp_path / "t") == 2
    assert [(r.sheet, r.row, r.cells) for r in records(path)] == [
        ("Leads", 3, ("", "Phone")),
        ("Leads", 4, ("", "+4520000002")),
    ]
