"""reading.py + filecheck.py: encodings, delimiters, header rows, row numbers, XLSX, bombs."""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import xlsxwriter

from pipeline.config import CampaignSettings
from pipeline.errors import FileUnreadable
from pipeline.ingest.read import guard as filecheck
from pipeline.ingest.read.open import open_table
from tests.ingest.stage_helpers import OPTIONS, SPECS

FIELDS = [f.name for f in SPECS]


def read(path: Path, options: CampaignSettings = OPTIONS, **kw: int) -> tuple[object, list[dict]]:
    table = open_table(path, options=options, expected_fields=FIELDS, **kw)
    rows = [r for chunk in table.chunks() for r in chunk.to_dict("records")]
    return table, rows


def test_windows_1252_semicolon_title_row_quoted_newlines_blank_and_short_rows(
    tmp_path: Path,
) -> None:
    text = (
        "Leads til forårskampagnen;;\n"
        "\n"
        "Navn;Tlf.;By\n"
        "Søren Ærø;00451234;Århus\n"
        '"Multi\nline ; name";12345678;"Øl;stykke"\n'
        ";;\n"
        "  ; ;\n"
        "Ann;1;2;3\n"
        "Bo;5\n"
        "Åse;99999999;Kø\n"
    )
    path = tmp_path / "leads.csv"
    path.write_bytes(text.encode("cp1252"))
    table, rows = read(path)
    assert table.describe() == "CSV (windows-1252, ';' separated), header on row 3"
    assert table.headers == ["Navn", "Tlf.", "By"]
    assert [(r["_row"], r["Navn"], r["Tlf."], r["By"]) for r in rows] == [
        (4, "Søren Ærø", "00451234", "Århus"),
        (5, "Multi\nline ; name", "12345678", "Øl;stykke"),
        (10, "Åse", "99999999", "Kø"),
        (8, "Ann", "1", "2"),
        (9, "Bo", "5", ""),
    ]
    assert table.blank_rows == 2
    assert table.rows_read == 5


def test_malformed_rows_are_listed_for_validation(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("name,phone\nA,1,2\nB,12345\n", encoding="utf-8")
    table = open_table(path, options=OPTIONS, expected_fields=FIELDS)
    chunks = list(table.chunks())
    malformed = {k: v for c in chunks for k, v in c.attrs.get("malformed", {}).items()}
    assert malformed == {
        2: "the row has 3 values but the header has 2 columns (a missing or extra separator)"
    }


def test_a_file_of_only_malformed_rows_names_each_row(tmp_path: Path) -> None:
    """Every data row has a separator too many: each is listed under its own sheet row (no
    record is read, so nothing else could say where they were)."""
    path = tmp_path / "all_bad.csv"
    path.write_text("name,phone\nA,1,2\nB,2,3\nC,3,4\n", encoding="utf-8")
    table = open_table(path, options=OPTIONS, expected_fields=FIELDS)
    malformed = {k: v for c in table.chunks() for k, v in c.attrs.get("malformed", {}).items()}
    assert sorted(malformed) == [2, 3, 4]


def test_malformed_row_deep_in_a_big_file_keeps_every_row_once(tmp_path: Path) -> None:
    lines = ["name,phone"] + [f"n{i},{i:08d}" for i in range(300_000)]
    lines[250_001] = "broken,1,2"  # the record on sheet row 250002
    lines[7] = '"multi\nline",00000006'
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = open_table(path, options=OPTIONS, expected_fields=FIELDS, chunk_rows=70_000)
    got: list[int] = []
    malformed: dict[int, str] = {}
    for chunk in table.chunks():
        got += chunk["_row"].tolist()
        malformed.update(chunk.attrs.get("malformed", {}))
    assert sorted(got) == list(range(2, 300_002))
    assert list(malformed) == [250_002]
    assert table.rows_read == 300_000


@pytest.mark.parametrize(
    ("raw", "encoding", "delimiter"),
    [
        (b"\xef\xbb\xbfname,phone\nS\xc3\xb8ren,0012\n", "utf-8", ","),
        (b"name\tphone\nS\xc3\xb8ren\t0012\n", "utf-8", "\t"),
        (b"name|phone\nS\xc3\xb8ren|0012\n", "utf-8", "|"),
        ("name;phone\r\nSøren;0012\r\n".encode("utf-16"), "utf-16-le", ";"),
    ],
)
def test_bom_tab_pipe_utf16(tmp_path: Path, raw: bytes, encoding: str, delimiter: str) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(raw)
    table, rows = read(path)
    assert (table.encoding, table.delimiter) == (encoding, delimiter)  # type: ignore[attr-defined]
    assert rows == [{"name": "Søren", "phone": "0012", "_row": 2}]


def test_overrides_encoding_delimiter_header_row(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes("junk,junk\nname,phone\nSøren,0012\n".encode("cp1252"))
    opts = CampaignSettings(encoding="latin-1", delimiter=",", header_row=2)
    table, rows = read(path, opts)
    assert table.header_row == 2  # type: ignore[attr-defined]
    assert rows == [{"name": "Søren", "phone": "0012", "_row": 3}]


def test_header_only_is_zero_rows_and_empty_file_is_refused(tmp_path: Path) -> None:
    for body in (b"name,phone\n", b"name,phone"):
        path = tmp_path / "h.csv"
        path.write_bytes(body)
        table, rows = read(path)
        assert rows == []
        assert table.headers == ["name", "phone"]  # type: ignore[attr-defined]
    empty = tmp_path / "e.csv"
    empty.write_bytes(b"")
    with pytest.raises(FileUnreadable, match="the file is empty"):
        read(empty)


def test_chunks_keep_numbering_and_10000_columns(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text("name,phone\n" + "".join(f"n{i},{i:08d}\n" for i in range(2500)))
    _table, rows = read(path, chunk_rows=1000)
    assert [r["_row"] for r in rows] == list(range(2, 2502))
    assert rows[-1]["phone"] == "00002499"

    headers = [f"col{i}" for i in range(10_000)]
    headers[7], headers[9000] = "name", "phone"
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(headers) + "\n" + ",".join(str(i) for i in range(10_000)) + "\n")
    table, rows = read(wide, max_columns=10_000)
    assert len(table.headers) == 10_000  # type: ignore[attr-defined]
    assert (rows[0]["name"], rows[0]["phone"], rows[0]["_row"]) == ("7", "9000", 2)


def test_wide_rows_make_smaller_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk ends after CHUNK_BYTES of text even when chunk_rows is far away (flat memory)."""
    from pipeline.ingest.read import csvfile as reading_csv

    path = tmp_path / "notes.csv"
    note = "x" * 2000
    path.write_text("name,phone,notes\n" + "".join(f"n{i},{i:08d},{note}\n" for i in range(3000)))
    monkeypatch.setattr(reading_csv, "CHUNK_BYTES", 1 << 20)
    table = open_table(path, options=OPTIONS, expected_fields=FIELDS, chunk_rows=1_000_000)
    sizes = [len(c) for c in table.chunks()]
    assert len(sizes) >= 4  # 6 MB of text in chunks of about 1 MB
    assert sum(sizes) == 3000
    assert max(sizes) < 1000
    _table, rows = read(path, chunk_rows=1_000_000)
    assert [r["_row"] for r in rows] == list(range(2, 3002))


def test_duplicate_and_empty_headers_get_usable_names(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("name,phone,,phone\na,1,x,2\n")
    table, rows = read(path)
    assert table.headers == ["name", "phone", "Column C", "phone (2)"]  # type: ignore[attr-defined]
    assert rows[0]["phone (2)"] == "2"


def test_invalid_utf8_after_the_sample_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    body = "name,phone\n" + "abc,12345\n" * 120_000
    path.write_bytes(body.encode() + "Søren,12345\n".encode("cp1252"))
    table = open_table(path, options=OPTIONS, expected_fields=FIELDS)
    with pytest.raises(FileUnreadable, match="set the campaign's encoding"):
        list(table.chunks())


# ------------------------------------------------------------------------------------- XLSX


def make_xlsx(path: Path) -> Path:
    wb = xlsxwriter.Workbook(str(path))
    hidden = wb.add_worksheet("Old")
    hidden.write(0, 0, "ignore me")
    hidden.hide()
    ws = wb.add_worksheet("Leads")
    ws.activate()
    date_fmt = wb.add_format({"num_format": "dd-mm-yyyy"})
    ws.write(0, 0, "Leads spring 2026")
    ws.write_row(1, 0, ["Navn", "Tlf.", "Født", "Postnr"])
    ws.write_row(2, 0, ["Søren", 4512345678.0, None, 800.0])
    ws.write_datetime(2, 2, dt.datetime(1990, 5, 17), date_fmt)
    ws.write_row(4, 0, ["Bo", None, None, "0800"])
    ws.write_datetime(4, 1, dt.datetime(2045, 3, 12), date_fmt)
    ws.write_row(5, 0, ["Å", 0.5, 1.25, 1e20])
    wb.close()
    return path


def test_xlsx_first_visible_sheet_title_row_numbers_as_text_dates_flagged(
    tmp_path: Path,
) -> None:
    table = open_table(make_xlsx(tmp_path / "x.xlsx"), options=OPTIONS, expected_fields=FIELDS)
    assert table.describe() == "XLSX, sheet 'Leads', header on row 2"
    chunks = list(table.chunks())
    rows = [r for c in chunks for r in c.to_dict("records")]
    assert rows == [
        {"Navn": "Søren", "Tlf.": "4512345678", "Født": "1990-05-17", "Postnr": "800", "_row": 3},
        {"Navn": "Bo", "Tlf.": "2045-03-12", "Født": "", "Postnr": "0800", "_row": 5},
        {"Navn": "Å", "Tlf.": "0.5", "Født": "1.25", "Postnr": "100000000000000000000", "_row": 6},
    ]
    assert table.blank_rows == 1
    dates = chunks[0].attrs["date_cells"]
    assert dates["Tlf."].tolist() == [False, True, False]
    assert dates["Født"].tolist() == [True, False, False]


def test_xlsx_date_times_are_found_beside_text_of_the_same_length(tmp_path: Path) -> None:
    path = tmp_path / "d.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Leads")
    ws.write_row(0, 0, ["Navn", "Firma", "Møde"])
    ws.write_row(1, 0, ["Bo", "Firma ApS nr. 12345", "snart"])  # 19 bytes, not a date
    ws.write_row(2, 0, ["Al", "Kø ApS nr. 1234567", ""])  # 19 bytes (ø is two), not a date
    ws.write_datetime(2, 2, dt.datetime(2026, 3, 1, 14, 30), wb.add_format({"num_format": "h:mm"}))
    wb.close()
    chunks = list(open_table(path, options=OPTIONS, expected_fields=FIELDS).chunks())
    rows = [(r["Firma"], r["Møde"]) for r in chunks[0].to_dict("records")]
    assert rows == [("Firma ApS nr. 12345", "snart"), ("Kø ApS nr. 1234567", "2026-03-01 14:30:00")]
    dates = chunks[0].attrs["date_cells"]
    assert set(dates) == {"Møde"}
    assert dates["Møde"].tolist() == [False, True]


def test_xlsx_configured_sheet_and_missing_sheet(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "x.xlsx")
    table = open_table(path, options=CampaignSettings(sheet="Old"), expected_fields=FIELDS)
    assert table.sheet == "Old"
    with pytest.raises(FileUnreadable, match=r"no sheet named 'Nope' \(sheets: 'Old', 'Leads'\)"):
        open_table(path, options=CampaignSettings(sheet="Nope"), expected_fields=FIELDS)


def _rezip(src: Path, dest: Path, replace: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = replace.pop(item.filename, None)
            zout.writestr(item.filename, data if data is not None else zin.read(item))
        for name, data in replace.items():
            zout.writestr(name, data)
    return dest


def test_zip_bomb_refused(tmp_path: Path) -> None:
    src = make_xlsx(tmp_path / "x.xlsx")
    bomb = _rezip(src, tmp_path / "bomb.xlsx", {"xl/media/pad.bin": b"\0" * 50_000_000})
    with pytest.raises(FileUnreadable, match="possible 'zip bomb'"):
        open_table(bomb, options=OPTIONS, expected_fields=FIELDS)


def test_zip_total_size_and_entry_count_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_xlsx(tmp_path / "x.xlsx")
    monkeypatch.setattr(filecheck, "MAX_UNCOMPRESSED", 1000)
    with pytest.raises(FileUnreadable, match=r"would unpack to .* GB"):
        open_table(src, options=OPTIONS, expected_fields=FIELDS)
    monkeypatch.setattr(filecheck, "MAX_UNCOMPRESSED", 10**9)
    monkeypatch.setattr(filecheck, "MAX_ENTRIES", 3)
    with pytest.raises(FileUnreadable, match=r"it holds \d+ parts"):
        open_table(src, options=OPTIONS, expected_fields=FIELDS)


def test_entity_bomb_refused_before_parsing(tmp_path: Path) -> None:
    src = make_xlsx(tmp_path / "x.xlsx")
    evil = (
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n'
        b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>&lol2;'
        b"</t></si></sst>"
    )
    bomb = _rezip(src, tmp_path / "ent.xlsx", {"xl/sharedStrings.xml": evil})
    with pytest.raises(FileUnreadable, match="declares a DOCTYPE or entities"):
        open_table(bomb, options=OPTIONS, expected_fields=FIELDS)


def test_encrypted_legacy_pdf_binary_and_oversize_refused(tmp_path: Path) -> None:
    ole = filecheck.OLE_MAGIC + b"\0" * 504
    cases = {
        "locked.xlsx": (ole + "EncryptedPackage".encode("utf-16-le"), "password-protected"),
        "old.xls": (ole + b"\0" * 512, r"old-style Excel file \(.xls\)"),
        "scan.csv": (b"%PDF-1.7\n...", "this is a PDF"),
        "blob.csv": (b"\x00\x01\x02binary", "not a text \\(CSV\\) file"),
        "fake.xlsx": (b"name,phone\n", "named .xlsx but is not a workbook"),
        "broken.xlsx": (b"PK\x03\x04garbage", "the workbook is damaged"),
    }
    for name, (body, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(body)
        with pytest.raises(FileUnreadable, match=message):
            open_table(path, options=OPTIONS, expected_fields=FIELDS)
    big = tmp_path / "big.csv"
    big.write_bytes(b"name,phone\n" + b"a,12345\n" * 2000)
    with pytest.raises(FileUnreadable, match="over the 0 MB limit"):
        open_table(big, options=OPTIONS, expected_fields=FIELDS, max_bytes=1000)


def test_refusal_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "scan.csv"
    path.write_bytes(b"%PDF-1.4")
    with pytest.raises(FileUnreadable) as info:
        open_table(path, options=OPTIONS, expected_fields=FIELDS)
    assert str(info.value).startswith("scan.csv: this is a PDF, not a spreadsheet.")


def test_a_sheet_wider_than_the_column_limit_is_refused_before_its_rows(tmp_path: Path) -> None:
    wide = tmp_path / "wide.csv"
    wide.write_text("name,phone," + ",".join(f"c{i}" for i in range(100_000)) + "\n")
    with wide.open("a") as fh:
        for _ in range(50):
            fh.write("Bo,+4512345678" + ",x" * 100_000 + "\n")
    with pytest.raises(FileUnreadable, match=r"the sheet has 100,002 columns; .* at most 1,000"):
        read(wide)
    book = tmp_path / "wide.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["name", "phone", *[f"c{i}" for i in range(1200)]])
    ws.append(["Bo", "+4512345678"])
    wb.save(book)
    with pytest.raises(FileUnreadable, match=r"the sheet has 1,202 columns"):
        read(book)


def test_utf16_big_endian_with_a_bom_reads_its_headers(tmp_path: Path) -> None:
    import codecs

    for bom, enc in ((codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF16_LE, "utf-16-le")):
        path = tmp_path / f"{enc}.csv"
        path.write_bytes(bom + "name,phone\nÅse,+4512345678\n".encode(enc))
        table, rows = read(path)
        assert list(table.headers) == ["name", "phone"]  # type: ignore[attr-defined]
        assert (rows[0]["name"], rows[0]["phone"]) == ("Åse", "+4512345678")


def test_a_value_over_128_kb_is_a_plain_refusal_naming_the_line(tmp_path: Path) -> None:
    early = tmp_path / "early.csv"  # in the first megabyte (the header sample)
    early.write_text('name,phone\nBo,+4511111111\n"' + "x" * 200_000 + '",+4512345678\n')
    with pytest.raises(FileUnreadable, match=r"a value around line 3 is longer than .* quote"):
        read(early)
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text('name,phone\n"Bo,+4512345678\n' + "Al,+4587654321\n" * 20_000)
    with pytest.raises(FileUnreadable, match=r"quote character .* never closed"):
        read(unclosed)
    after_header_search = tmp_path / "row80.csv"  # in the sample, past the rows searched
    after_header_search.write_text(
        "name,phone\n" + "Al,+4587654321\n" * 78 + '"' + "z" * 200_000 + '",+45123\n'
    )
    with pytest.raises(FileUnreadable, match=r"a value around line 80 is longer than"):
        read(after_header_search)
    past_sample = tmp_path / "past.csv"  # past the sample, under the parser's block size
    past_sample.write_text(
        "name,phone\n" + "Al,+4587654321\n" * 90_000 + '"' + "w" * 300_000 + '",+45123\n'
    )
    with pytest.raises(FileUnreadable, match=r"a value around line 90002 is longer than"):
        read(past_sample)
    late = tmp_path / "late.csv"  # far past the sample: the row reader finds it
    late.write_text(
        "name,phone\n" + "Al,+4587654321\n" * 80_000 + '"' + "y" * 3_000_000 + '",+45123\n'
    )
    with pytest.raises(FileUnreadable, match=r"longer than any lead field can be"):
        read(late)


def _workbook(path: Path, rows: int = 2000) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["name", "phone"])
    for i in range(rows):
        ws.append([f"n{i}", f"+45{10_000_000 + i}"])
    wb.save(path)


def _part_offset(path: Path, name: str) -> tuple[int, zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    return info.header_offset + 30 + len(info.filename.encode()) + len(info.extra), info


def test_a_corrupted_deflate_stream_is_a_damaged_workbook(tmp_path: Path) -> None:
    good = tmp_path / "good.xlsx"
    _workbook(good)
    raw = bytearray(good.read_bytes())
    start, _ = _part_offset(good, "xl/worksheets/sheet1.xml")
    for i in range(start + 50, start + 300):
        raw[i] ^= 0x5A
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(bytes(raw))
    with pytest.raises(FileUnreadable, match=r"the workbook is damaged .* save it as \.xlsx"):
        read(bad)


def _forged_bomb(tmp_path: Path) -> Path:
    """A workbook whose sheet inflates to 250 MB while its ZIP entries declare 2 MB."""
    import io
    import struct

    good = tmp_path / "good.xlsx"
    _workbook(good, rows=10)
    row = b'<row r="3"><c r="A3" t="inlineStr"><is><t>x</t></is></c></row>'
    out = io.BytesIO()
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"</sheetData>", row * 4_000_000 + b"</sheetData>")
            zout.writestr(info.filename, data)
    raw = bytearray(out.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as z:
        info = z.getinfo("xl/worksheets/sheet1.xml")
    struct.pack_into("<L", raw, info.header_offset + 22, 2_000_000)  # local header
    at = raw.find(b"PK\x01\x02")
    while at != -1:  # the central directory entry of the sheet
        n = struct.unpack_from("<H", raw, at + 28)[0]
        if bytes(raw[at + 46 : at + 46 + n]) == b"xl/worksheets/sheet1.xml":
            struct.pack_into("<L", raw, at + 24, 2_000_000)
        at = raw.find(b"PK\x01\x02", at + 4)
    bomb = tmp_path / "bomb.xlsx"
    bomb.write_bytes(bytes(raw))
    assert bomb.stat().st_size < 1_000_000
    return bomb


def test_a_workbook_with_forged_part_sizes_is_refused_while_inflating(tmp_path: Path) -> None:
    """Refused without inflating it all."""
    with pytest.raises(FileUnreadable, match=r"unpacks to more than the size it declares"):
        read(_forged_bomb(tmp_path))


def test_the_forged_size_bomb_is_refused_in_bounded_memory_before_fastexcel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tracemalloc

    import fastexcel

    def touched(*_: object, **__: object) -> None:
        raise AssertionError("fastexcel opened a workbook the guard refuses")

    monkeypatch.setattr(fastexcel, "read_excel", touched)
    bomb = _forged_bomb(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(FileUnreadable, match=r"unpacks to more than the size it declares"):
            read(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20  # a few 1 MB steps, not the 250 MB the sheet inflates to


def test_the_inflate_pass_takes_bounded_steps_and_drains_the_last_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With small steps the inflater has taken all input while output is still due (ISA-L
    reads ahead): a valid part must come out whole, never in a step larger than the bound."""
    book = tmp_path / "book.xlsx"
    _workbook(book, rows=2000)
    monkeypatch.setattr(filecheck, "_CHUNK", 4096)
    steps: list[int] = []
    inflated = filecheck._inflated

    def spy(*args: Any) -> Iterator[bytes]:
        for data in inflated(*args):
            steps.append(len(data))
            yield data

    monkeypatch.setattr(filecheck, "_inflated", spy)
    _, rows = read(book)
    assert len(rows) == 2000
    assert rows[-1]["phone"] == "+4510001999"
    with zipfile.ZipFile(book) as zf:
        assert sum(steps) == sum(i.file_size for i in zf.infolist())
    assert max(steps) <= 4096


def test_a_workbook_with_more_cells_than_allowed_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filecheck, "MAX_CELLS", 100)  # 50 million, scaled down
    book = tmp_path / "cells.xlsx"
    _workbook(book, rows=150)  # 302 cells
    with pytest.raises(FileUnreadable, match=r"its sheets hold more than 100 cells"):
        read(book)


def test_a_file_starts_with_small_chunks_that_grow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first chunks are small (the checks, delivery and reject files start early), then
    twice as big each time up to chunk_rows; every row arrives once, in order, numbered."""
    from pipeline.ingest.read import table as tables

    monkeypatch.setattr(tables, "FIRST_CHUNK_ROWS", 4)
    assert list(zip(range(5), tables.chunk_sizes(16), strict=False)) == [
        (0, 4), (1, 8), (2, 16), (3, 16), (4, 16)
    ]  # fmt: skip
    assert next(tables.chunk_sizes(3)) == 3  # never more than chunk_rows

    wb = xlsxwriter.Workbook(str(tmp_path / "grow.xlsx"))
    ws = wb.add_worksheet("Leads")
    ws.write_row(0, 0, ["Navn", "Tlf."])
    for i in range(40):
        ws.write_row(i + 1, 0, [f"n{i}", f"{i:08d}"])
    wb.close()
    table = open_table(
        tmp_path / "grow.xlsx", options=OPTIONS, expected_fields=FIELDS, chunk_rows=16
    )
    chunks = list(table.chunks())
    assert [len(c) for c in chunks] == [4, 8, 16, 12]
    assert [r for c in chunks for r in c["_row"].tolist()] == list(range(2, 42))

    path = tmp_path / "grow.csv"  # a CSV chunk ends on one of the parser's 1 MB blocks
    note = "x" * 150  # about 5,600 rows a block
    path.write_text(
        "name,phone,notes\n" + "".join(f"n{i},{i:08d},{note}\n" for i in range(100_000))
    )
    monkeypatch.setattr(tables, "FIRST_CHUNK_ROWS", 10_000)
    table = open_table(path, options=OPTIONS, expected_fields=FIELDS, chunk_rows=100_000)
    sizes = [len(c) for c in table.chunks()]
    assert sizes[0] <= 15_000 < sizes[1] < sizes[2]
    assert sum(sizes) == 100_000


def test_the_header_is_found_after_many_blank_lines(tmp_path: Path) -> None:
    """Only the first rows are parsed to find the header; when they are all blank, the first
    row with text is taken, however far down the sample it is."""
    path = tmp_path / "blank-top.csv"
    path.write_text("\n" * 80 + "Customer,Contact\nSøren,12345678\n", encoding="utf-8")
    table, rows = read(path)
    assert table.header_row == 81  # type: ignore[attr-defined]
    assert table.headers == ["Customer", "Contact"]  # type: ignore[attr-defined]
    assert rows == [{"Customer": "Søren", "Contact": "12345678", "_row": 82}]
