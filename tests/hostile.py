"""A corpus of hostile and unlucky input files, generated (never checked in).

:func:`build` writes every file into a folder and returns what should become of each: the
outcome (``processed`` or ``failed``) and a phrase its receipt or error text must contain. Used
by the service test of hostile files and by ``bench/hostile.py`` (time and memory per file).
The files are for the demo campaign ``B2B-DK-SPRING`` (fields name, phone, email, segment, note).
"""

from __future__ import annotations

import codecs
import io
import os
import struct
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import openpyxl

CAMPAIGN = "B2B-DK-SPRING"
HEADER = "Name,Phone,Email,Segment\n"


@dataclass(frozen=True)
class Expected:
    """What must become of one hostile file."""

    outcome: str  #: "processed" or "failed"
    says: str  #: a phrase its receipt (processed) or error text (failed) contains


def _rows(tag: str, n: int) -> str:
    return "".join(f"{tag} {i:03d},+45{60000000 + i:08d},,SMB\n" for i in range(n))


def _workbook(rows: int = 50) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["Name", "Phone", "Email", "Segment"])
    for i in range(rows):
        ws.append([f"Book {i:03d}", f"+45{61000000 + i:08d}", "", "SMB"])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _rezip(book: bytes, sheet: bytes | None = None, extra: dict[str, bytes] | None = None) -> bytes:
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(book)) as zin,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout,
    ):
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "xl/worksheets/sheet1.xml" and sheet is not None:
                data = sheet
            zout.writestr(info.filename, data)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return out.getvalue()


def _forged_bomb(book: bytes) -> bytes:
    """A sheet that inflates to ~60 MB while its ZIP entries declare 2 MB (CRCs untouched)."""
    with zipfile.ZipFile(io.BytesIO(book)) as z:
        sheet = z.read("xl/worksheets/sheet1.xml")
    row = b'<row r="9"><c r="A9" t="inlineStr"><is><t>x</t></is></c></row>'
    raw = bytearray(_rezip(book, sheet.replace(b"</sheetData>", row * 1_000_000 + b"</sheetData>")))
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as z:
        info = z.getinfo("xl/worksheets/sheet1.xml")
    struct.pack_into("<L", raw, info.header_offset + 22, 2_000_000)
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        n = struct.unpack_from("<H", raw, at + 28)[0]
        if bytes(raw[at + 46 : at + 46 + n]) == b"xl/worksheets/sheet1.xml":
            struct.pack_into("<L", raw, at + 24, 2_000_000)
        at = raw.find(b"PK\x01\x02", at + 4)
    return bytes(raw)


def _corrupt_deflate(book: bytes) -> bytes:
    raw = bytearray(book)
    with zipfile.ZipFile(io.BytesIO(book)) as z:
        info = z.getinfo("xl/worksheets/sheet1.xml")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 40, start + 240):
        raw[i] ^= 0x5A
    return bytes(raw)


def _ole(encrypted: bool) -> bytes:
    body = b"\x00" * 512 + ("EncryptedPackage".encode("utf-16-le") if encrypted else b"Workbook")
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + body + b"\x00" * 4096


def build(folder: Path) -> dict[str, Expected]:
    """Write the corpus into ``folder``; file name -> what must become of it."""
    folder.mkdir(parents=True, exist_ok=True)
    book = _workbook()
    files: dict[str, tuple[bytes, Expected]] = {
        "forged-sizes.xlsx": (_forged_bomb(book), Expected("failed", "zip bomb")),
        "ratio-bomb.xlsx": (
            _rezip(book, extra={"xl/media/blank.xml": b" " * 60_000_000}),
            Expected("failed", "zip bomb"),
        ),
        "entity-bomb.xlsx": (
            _rezip(
                book,
                b'<?xml version="1.0"?><!DOCTYPE z [<!ENTITY a "aaaaaaaaaa">]><worksheet/>',
            ),
            Expected("failed", "entities"),
        ),
        "corrupt-deflate.xlsx": (_corrupt_deflate(book), Expected("failed", "damaged")),
        "cut-short.xlsx": (book[: len(book) // 2], Expected("failed", "damaged")),
        "encrypted.xlsx": (_ole(encrypted=True), Expected("failed", "password")),
        "old-style.xls": (_ole(encrypted=False), Expected("failed", "old-style")),
        "report.csv": (
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + os.urandom(4000),
            Expected("failed", "PDF"),
        ),
        "archive.zip": (
            _rezip(_workbook(2), extra={}).replace(b"xl/workbook.xml", b"xl/notebook.xml"),
            Expected("failed", "ZIP archive"),
        ),
        "binary.csv": (os.urandom(20_000), Expected("failed", "not a text (CSV) file")),
        "empty.csv": (b"", Expected("failed", "empty")),
        "header-only.csv": (HEADER.encode(), Expected("processed", "Read 0 rows")),
        "wide.csv": (
            (
                "Name,Phone," + ",".join(f"c{i}" for i in range(100_000)) + "\n"
                "Bo,+4512345678" + ",x" * 100_000 + "\n"
            ).encode(),
            Expected("failed", "100,002 columns"),
        ),
        "huge-value.csv": (
            (HEADER + _rows("Huge", 3) + '"' + "x" * 200_000 + '",+4512345678,,SMB\n').encode(),
            Expected("failed", "longer than any lead field"),
        ),
        "unclosed-quote.csv": (
            (HEADER + '"Open,+4512345678,,SMB\n' + _rows("Quote", 12_000)).encode(),
            Expected("failed", "never closed"),
        ),
        "utf16-be.csv": (
            codecs.BOM_UTF16_BE + (HEADER + _rows("Sixteen", 5)).encode("utf-16-be"),
            Expected("processed", "5 uploaded"),
        ),
        "repeated-header.csv": (
            ("Name,Phone,Segment,Phone\n" + "Repeat 001,+4562000001,SMB,+4599999999\n").encode(),
            Expected("processed", "column B was sent, column D was not"),
        ),
        "formulas.csv": (
            (
                HEADER + '=HYPERLINK("http://x"),+4563000001,,SMB\n@SUM(1),+4563000002,,SMB\n'
            ).encode(),
            Expected("processed", "2 uploaded"),
        ),
        "k" + "æ" * 120 + ".csv": (
            (HEADER + _rows("Longname", 2)).encode(),
            Expected("processed", "was dropped as"),
        ),
    }
    old = time.time() - 3600  # not a copy still under way: verdicts at once
    for name, (data, _) in files.items():
        path = folder / name
        path.write_bytes(data)
        os.utime(path, (old, old))
    odd = os.fsencode(folder) + b"/odd-\xff\xfe.csv"
    with open(odd, "wb") as fh:
        fh.write((HEADER + _rows("Oddbytes", 2)).encode())
    os.utime(odd, (old, old))
    expected = {name: exp for name, (_, exp) in files.items()}
    expected[os.fsdecode(b"odd-\xff\xfe.csv")] = Expected("processed", "was dropped as")
    return expected
