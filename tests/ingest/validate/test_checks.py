"""validation.py + excel_damage.py: a messy 1,000-row file gives exactly the expected problems."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from pipeline.ingest.fields import CampaignSchema, parse_example
from pipeline.ingest.validate.checks import Validator, dropdown_choices
from tests.ingest.stage_helpers import PHONE_RE, run

HEADER = ["Navn", "Tlf.", "Postnr", "Født", "By", "Notes"]
FORMULA_CITY = '=HYPERLINK("http://evil.example/?x","click")'
FORMULA_NAME = "=cmd|' /C calc'!A0"
FORMULA_NOTE = "@SUM(1+1)*cmd|' /C calc'!A0"


def messy_row(i: int) -> list[str]:
    """Data row ``i`` (0-based) of the messy file; the rules the expectations mirror."""
    name, phone, zip_, born, city, note = (
        f"Søren Ærø {i}",
        f"+45 {20000000 + i}",
        "2100",
        "1990-01-01",
        "Århus",
        "note",
    )
    if i == 10:
        name, note = "Smith; Jane", "two\nlines"
    if i % 50 == 7:
        phone = "12ab"
    if i % 50 == 13:
        name = ""
    if i % 100 == 21:
        phone = "4,5123E+11"
    if i % 100 == 45:
        zip_ = "800"
    if i % 100 == 60:
        born = "45123"
    if i % 100 == 75:
        city = FORMULA_CITY
    if i % 100 == 76:
        name, phone = FORMULA_NAME, "+45 12x"
    if i % 100 == 77:
        phone, note = "", FORMULA_NOTE
    return [name, f" {phone} " if i == 3 else phone, zip_, born, city, note]


def sheet_row(i: int) -> int:
    """Title row 1, header row 2, a blank line after data row 500."""
    return i + 3 + (1 if i > 500 else 0)


def write_messy(path: Path) -> Path:
    lines = ["Leadliste forår 2026 — må ikke deles;;;;;", ";".join(HEADER)]
    for i in range(1000):
        cells = messy_row(i - 1 if i % 250 == 99 else i)
        lines.append(";".join(f'"{c}"' if ("\n" in c or ";" in c) else c for c in cells))
        if i == 500:
            lines.append(";;;;;")
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    return path


def expected_problems() -> list[tuple[int, str, str]]:
    out = []
    for i in range(1000):
        if i % 250 == 99:
            continue
        r = sheet_row(i)
        if i % 50 == 13:
            out.append((r, "Navn", "required"))
        if i % 50 == 7 or i % 100 == 76:
            out.append((r, "Tlf.", "pattern"))
        if i % 100 == 21:
            out.append((r, "Tlf.", "excel_damage"))
        if i % 100 == 77:
            out.append((r, "Tlf.", "required"))
        if i % 100 == 45:
            out.append((r, "Postnr", "excel_damage"))
        if i % 100 == 60:
            out.append((r, "Født", "excel_damage"))
        if i % 100 == 75:
            out.append((r, "By", "pattern"))
    return out


def test_messy_file_exact_counts_and_problems(tmp_path: Path) -> None:
    result = run(write_messy(tmp_path / "messy.csv"), chunk_rows=300)
    assert result.table.header_row == 2
    assert result.table.blank_rows == 1
    assert result.table.rows_read == 1000
    assert result.mapping.unmapped == ["Notes"]
    assert result.triples() == expected_problems()
    assert len(result.rejected) == 100
    assert [(p.row, p.rule) for p in result.duplicates] == [
        (sheet_row(i), "duplicate") for i in (99, 349, 599, 849)
    ]
    assert result.duplicates[0].message == (
        "Row 102 repeats row 101 (the same values in every field); it is not sent twice. "
        "Nothing to do, unless it should differ."
    )
    assert len(result.valid) == 896
    assert list(result.valid.columns) == ["name", "phone", "zip", "born", "city", "_row"]
    # values are stripped before validation and sending; quoted separators survive
    first = result.valid.set_index("_row")
    assert first.loc[6, "phone"] == "+45 20000003"
    assert first.loc[13, "name"] == "Smith; Jane"
    assert first.loc[3, "name"] == "Søren Ærø 0"
    # rejected rows keep the original columns and values
    assert list(result.rejected.columns) == [*HEADER, "_row"]


def test_messages_are_for_people(tmp_path: Path) -> None:
    result = run(write_messy(tmp_path / "messy.csv"))
    by_key = {(p.row, p.column): p for p in result.problems}
    assert by_key[(10, "Tlf.")].message == (
        "Row 10, column 'Tlf.': '12ab' is not a phone number like +45 12345678 (field "
        "phone). Fix the value and drop the file again."
    )
    assert by_key[(16, "Navn")].message == (
        "Row 16, column 'Navn': the value is empty, but field name is required. "
        "Fill it in and drop the file again."
    )
    assert by_key[(24, "Tlf.")].message == (
        "Row 24, column 'Tlf.': '4,5123E+11' looks like a number Excel showed in scientific "
        "notation, so digits are lost. Format the column as Text in Excel and re-enter the "
        "values, then drop the file again."
    )
    assert by_key[(48, "Postnr")].message == (
        "Row 48, column 'Postnr': '800' looks like a number that lost its leading zeros in "
        "Excel (it would be valid as '0800'). Format the column as Text in Excel and re-enter "
        "the values, then drop the file again."
    )
    assert by_key[(63, "Født")].message == (
        "Row 63, column 'Født': '45123' looks like an Excel date serial number, not a date. "
        "Format the column as Text in Excel and re-enter the dates, then drop the file again."
    )
    assert by_key[(10, "Tlf.")].value == "12ab"


def test_date_cell_in_a_phone_column_and_malformed_row() -> None:
    specs = parse_example(
        {"phone": f"example phone, type is phone, regex used for validation {PHONE_RE}"},
        {"phone": f"example phone, type is phone, regex used for validation {PHONE_RE}"},
    )
    from pipeline.ingest.map import map_columns

    schema = CampaignSchema("C", specs, "live", "", "h")
    validator = Validator(schema, map_columns(["Tlf"], specs, {"Tlf": "phone"}))
    chunk = pd.DataFrame({"Tlf": ["2045-03-12", "12345678", "12345678"]}, dtype="str")
    chunk["_row"] = [5, 6, 9]
    chunk.attrs = {
        "date_cells": {"Tlf": [True, False, False]},
        "malformed": {9: "the row has 3 values but the header has 1 columns"},
    }
    res = validator.validate(chunk)
    assert [(p.row, p.column, p.rule) for p in res.problems] == [
        (5, "Tlf", "excel_damage"),
        (9, "", "malformed"),
    ]
    assert res.problems[0].message.startswith(
        "Row 5, column 'Tlf': '2045-03-12' was stored by Excel as a date, but field phone is "
        "not a date."
    )
    assert res.valid["_row"].tolist() == [6]
    assert res.duplicates == []
    # frames built by hand with object columns work the same
    plain = pd.DataFrame({"Tlf": ["12345678", "12ab", "12345678"], "_row": [2, 3, 4]})
    fresh = Validator(schema, map_columns(["Tlf"], specs, {"Tlf": "phone"}))
    res = fresh.validate(plain.astype({"Tlf": object}))
    assert [(p.row, p.rule) for p in res.problems] == [(3, "pattern")]
    assert [(p.row, p.rule) for p in res.duplicates] == [(4, "duplicate")]
    assert res.duplicates[0].message.startswith("Row 4 repeats row 2 ")


def test_a_valid_row_equal_to_a_malformed_rows_cut_cells_is_not_a_repeat() -> None:
    """A malformed row's cells are cut to the header, so they may equal a valid row's: the
    valid row is still sent, also when the reader hands the malformed row over a chunk early
    (before rows that come ahead of it in the file), and a real repeat is still found."""
    specs = parse_example(
        {"phone": f"example phone, type is phone, regex used for validation {PHONE_RE}"}, {}
    )
    from pipeline.ingest.map import map_columns

    schema = CampaignSchema("C", specs, "live", "", "h")
    validator = Validator(schema, map_columns(["Tlf"], specs, {"Tlf": "phone"}))
    first = pd.DataFrame({"Tlf": ["11111111", "12345678"]}, dtype="str")
    first["_row"] = [2, 9]  # row 9: "12345678;extra", cut to the header's one column
    first.attrs = {"malformed": {9: "the row has 2 values but the header has 1 columns"}}
    second = pd.DataFrame({"Tlf": ["12345678", "12345678", "11111111"]}, dtype="str")
    second["_row"] = [5, 6, 7]
    one, two = validator.validate(first), validator.validate(second)
    assert [(p.row, p.rule) for p in one.problems] == [(9, "malformed")]
    assert one.duplicates == []
    assert [(p.row, p.rule) for p in two.duplicates] == [(6, "duplicate"), (7, "duplicate")]
    assert two.duplicates[0].message.startswith("Row 6 repeats row 5 ")
    assert two.duplicates[1].message.startswith("Row 7 repeats row 2 ")
    assert two.valid["_row"].tolist() == [5]  # sent: it repeats no row the person wrote


def test_duplicates_across_chunks_point_at_the_first_row() -> None:
    specs = parse_example(
        {"name": "example name, type is varchar, regex used for validation .+"}, {}
    )
    from pipeline.ingest.map import map_columns

    validator = Validator(
        CampaignSchema("C", specs, "live", "", "h"), map_columns(["name"], specs, {})
    )
    rows_seen = []
    for start in range(0, 3000, 500):
        chunk = pd.DataFrame({"name": [f"n{i % 1200}" for i in range(start, start + 500)]})
        chunk["name"] = chunk["name"].astype("str")
        chunk["_row"] = list(range(start + 2, start + 502))
        res = validator.validate(chunk)
        rows_seen += [
            (p.row, p.message.split(" repeats row ")[1].split(" ")[0]) for p in res.duplicates
        ]
    assert validator.duplicates == 1800
    assert rows_seen[0] == (1202, "2")
    assert rows_seen[-1] == (3001, str(2999 % 1200 + 2))


def test_pipelined_validation_gives_the_same_results_and_stops_cleanly(tmp_path: Path) -> None:
    """validate_all (checks of the next chunk in a helper thread) == validate chunk by chunk."""
    from pipeline.ingest.map import map_columns
    from pipeline.ingest.read.open import open_table
    from tests.ingest.stage_helpers import OPTIONS, SCHEMA, SPECS

    path = write_messy(tmp_path / "messy.csv")
    with path.open("ab") as f:  # repeat a few rows so duplicates cross chunk borders
        f.write(b"".join(";".join(messy_row(i)).encode("cp1252") + b"\r\n" for i in range(3)))
    table = open_table(path, options=OPTIONS, expected_fields=[f.name for f in SPECS])
    (whole,) = list(table.chunks())
    mapping = map_columns(table.headers, SPECS, OPTIONS.columns)
    closed: list[bool] = []

    def chunks() -> Iterator[pd.DataFrame]:
        try:
            for start in range(0, len(whole), 97):
                yield whole.iloc[start : start + 97].copy()
        finally:
            closed.append(True)

    def results(pipelined: bool) -> list[tuple[object, ...]]:
        validator = Validator(SCHEMA, mapping, semantics="whole")
        pairs = (
            validator.validate_all(chunks())
            if pipelined
            else ((c, validator.validate(c)) for c in chunks())
        )
        return [
            (len(c), r.valid.to_dict("list"), r.rejected["_row"].tolist(), r.problems, r.duplicates)
            for c, r in pairs
        ]

    plain, piped = results(False), results(True)
    assert len(plain) == 11
    assert piped == plain
    assert sum(len(r[4]) for r in piped) == 4 + 3  # the file's repeats + the 3 appended
    assert sum(len(r[3]) for r in piped) == len(expected_problems())

    closed.clear()
    before = threading.active_count()
    gen = Validator(SCHEMA, mapping, semantics="whole").validate_all(chunks())
    next(gen)
    gen.close()  # a stop after the first chunk: the helper ends and the source is closed
    assert closed == [True]
    assert threading.active_count() == before


def test_xlsx_numbers_and_dates_flagged_not_repaired(tmp_path: Path) -> None:
    from tests.ingest.read.test_reading import make_xlsx

    result = run(make_xlsx(tmp_path / "x.xlsx"))
    assert result.triples() == [
        (3, "Postnr", "excel_damage"),
        (5, "Tlf.", "excel_damage"),
        (6, "Tlf.", "pattern"),
        (6, "Født", "pattern"),
        (6, "Postnr", "pattern"),
    ]
    assert result.problems[0].message == (
        "Row 3, column 'Postnr': '800' looks like a number that lost its leading zeros in "
        "Excel (it would be valid as '0800'). Format the column as Text in Excel and re-enter "
        "the values, then drop the file again."
    )
    assert result.problems[1].message.startswith(
        "Row 5, column 'Tlf.': '2045-03-12' was stored by Excel as a date, but field phone is "
        "not a date."
    )
    assert result.rejected["Tlf."].tolist() == ["4512345678", "2045-03-12", "0.5"]
    assert len(result.valid) == 0


@pytest.mark.parametrize(
    ("regex", "choices"),
    [
        ("^(SMB|Enterprise)$", ["SMB", "Enterprise"]),
        ("^(?:S|M\\+L)$", ["S", "M+L"]),
        ("^(Ja|Nej|Måske)$", ["Ja", "Nej", "Måske"]),
        ("^(a|b+)$", None),  # not a plain list of values
        (".*", None),
    ],
)
def test_dropdown_choices_are_read_from_the_regex(regex: str, choices: list[str] | None) -> None:
    assert dropdown_choices(regex) == choices


def test_a_small_file_is_checked_without_polars_with_the_same_results(tmp_path: Path) -> None:
    """The fast engines (polars' regex and row hashes) and the Python path give the same valid
    rows, rejected rows, problems and repeats; the first chunk decides for the whole file."""
    from pipeline.ingest.map import map_columns
    from pipeline.ingest.read.open import open_table
    from tests.ingest.stage_helpers import OPTIONS, SCHEMA, SPECS

    path = write_messy(tmp_path / "messy.csv")
    with path.open("ab") as f:  # repeats of earlier rows, in later chunks
        f.write(b"".join(";".join(messy_row(i)).encode("cp1252") + b"\r\n" for i in range(5)))
        f.write("Åse;+٤٥ ١٢٣٤٥٦٧٨;2100;2024-01-31;Köge\r\n".encode("utf-8", "replace"))
    table = open_table(path, options=OPTIONS, expected_fields=[f.name for f in SPECS])
    (whole,) = list(table.chunks())
    mapping = map_columns(table.headers, SPECS, OPTIONS.columns)

    def results(fast: bool) -> list[tuple[object, ...]]:
        validator = Validator(SCHEMA, mapping, semantics="whole")
        validator.fast = fast
        chunks = (whole.iloc[start : start + 40].copy() for start in range(0, len(whole), 40))
        out = [
            (r.valid.to_dict("list"), r.rejected["_row"].tolist(), r.problems, r.duplicates)
            for _c, r in validator.validate_all(chunks)
        ]
        assert validator.fast is fast  # kept for every chunk
        return out

    fast, python = results(True), results(False)
    assert python == fast
    assert sum(len(r[3]) for r in python) >= 5
    assert sum(len(r[2]) for r in python) > 0


def test_the_first_chunk_decides_which_engines_check_the_file() -> None:
    from pipeline.ingest.map import map_columns
    from pipeline.ingest.validate.checks import SMALL_ROWS
    from tests.ingest.stage_helpers import SCHEMA, SPECS

    def chunk(rows: int, name: str = "Anne") -> pd.DataFrame:
        frame = pd.DataFrame({"Navn": [name] * rows, "Tlf.": ["+45 12345678"] * rows})
        frame = frame.astype("str")
        frame["_row"] = range(2, rows + 2)
        return frame

    mapping = map_columns(["Navn", "Tlf."], SPECS, {"Navn": "name", "Tlf.": "phone"})
    wide = "x" * 20_000  # few rows, but a chunk ends at its bytes: more chunks may follow
    for first, fast in ((chunk(SMALL_ROWS), False), (chunk(SMALL_ROWS + 1), True)):
        validator = Validator(SCHEMA, mapping)
        validator.validate(first)
        validator.validate(chunk(5))
        assert validator.fast is fast
    validator = Validator(SCHEMA, mapping)
    validator.validate(chunk(100, wide))
    assert validator.fast is True


def test_a_file_expected_to_hold_few_cells_is_checked_without_polars() -> None:
    """Past the small file, polars is loaded only when the reader expects more than
    POLARS_FROM_CELLS mapped cells (or cannot say how many rows follow)."""
    from pipeline.ingest.map import map_columns
    from pipeline.ingest.validate.checks import POLARS_FROM_CELLS, SMALL_ROWS
    from tests.ingest.stage_helpers import SCHEMA, SPECS

    rows = SMALL_ROWS + 1
    first = pd.DataFrame({"Navn": ["Anne"] * rows, "Tlf.": ["+45 12345678"] * rows})
    first = first.astype("str")
    first["_row"] = range(2, rows + 2)
    mapping = map_columns(["Navn", "Tlf."], SPECS, {"Navn": "name", "Tlf.": "phone"})
    at_most = POLARS_FROM_CELLS // 2  # rows of two mapped fields
    for expected, fast in ((at_most, False), (at_most + 1, True), (None, True)):
        validator = Validator(SCHEMA, mapping, expected_rows=expected)
        validator.validate(first)
        assert validator.fast is fast, expected


def test_the_readers_say_about_how_many_rows_follow_the_header(tmp_path: Path) -> None:
    from pipeline.ingest.read.open import open_table
    from pipeline.ingest.read.table import SAMPLE_BYTES
    from tests.ingest.stage_helpers import OPTIONS, SPECS

    expected = [f.name for f in SPECS]
    small = tmp_path / "small.csv"
    small.write_text("Navn;Tlf.\n" + "".join(f"Anne {i};+45 1234567{i % 10}\n" for i in range(7)))
    assert open_table(small, options=OPTIONS, expected_fields=expected).expected_rows == 7
    big = tmp_path / "big.csv"
    line = "Anne Andersen;+45 12345678;anne@example.dk\n"
    rows = 3 * SAMPLE_BYTES // len(line)
    big.write_text("Navn;Tlf.;Email\n" + line * rows)
    got = open_table(big, options=OPTIONS, expected_fields=expected).expected_rows
    assert got is not None
    assert abs(got - rows) <= rows // 100  # from the sample: about right
    old_mac = tmp_path / "old_mac.csv"  # lines that end at CR alone
    old_mac.write_bytes(big.read_bytes().replace(b"\n", b"\r"))
    got = open_table(old_mac, options=OPTIONS, expected_fields=expected).expected_rows
    assert got is not None
    assert abs(got - rows) <= rows // 100
    import xlsxwriter

    book_path = tmp_path / "sheet.xlsx"
    book = xlsxwriter.Workbook(str(book_path))
    sheet = book.add_worksheet()
    for r, values in enumerate([["Navn", "Tlf."], *(["Bo", "+45 12345678"] for _ in range(12))]):
        sheet.write_row(r + 2, 0, values)  # the header on row 3
    book.close()
    assert open_table(book_path, options=OPTIONS, expected_fields=expected).expected_rows == 12
