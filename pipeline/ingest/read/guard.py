"""Bounded checks on an untrusted file before any parser sees it.

What a file is (CSV, XLSX, legacy XLS, encrypted workbook, PDF, binary), whether it is within
the size limit, and for XLSX whether its ZIP is sane (entry count, total uncompressed size,
compression ratio, actually decompressed bytes) and its XML parts free of ``<!DOCTYPE``/
``<!ENTITY`` declarations (entity bombs). Every refusal is a :class:`FileUnreadable` saying in
plain words what to do.
"""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, cast

from isal import isal_zlib

from pipeline.errors import FileUnreadable

Kind = Literal["csv", "xlsx"]

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
MAX_ENTRIES = 10_000
MAX_UNCOMPRESSED = 2 * 1024**3
MAX_RATIO = 200
#: Entries smaller than this are not ratio-checked (tiny XML parts compress very well).
RATIO_FLOOR = 1024 * 1024
#: A DOCTYPE can only appear in the prolog; the scan reads this much of each XML part.
PROLOG_BYTES = 64 * 1024
#: Cells (``<c>`` elements) of all sheets together, counted while the parts are inflated.
MAX_CELLS = 50_000_000
#: The shortest XML a cell can take (``<c r="A1"/>``).
_MIN_CELL_BYTES = 11
#: Raw bytes read, and inflated bytes produced, per step of the inflate pass (bounds its memory).
_CHUNK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
#: What ISA-L raises for a broken deflate stream (its stubs type the class as an instance).
_ISAL_ERROR = cast("type[Exception]", isal_zlib.error)
_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\b[^>]*?\bref=\"([A-Z]+)?\d*(?::([A-Z]+)\d*)?\"")

_SAVE_AS = "Open it in Excel and save it as .xlsx (Excel Workbook) or CSV, then drop it again."


@dataclass(frozen=True)
class XlsxInfo:
    """What the guard learnt about a workbook: sheets in order and their first used row."""

    sheets: list[tuple[str, bool, str]]  # (name, visible, part path)
    first_row: dict[str, int]  # part path -> 1-based row of its first cell with a value
    #: part path -> columns its ``<dimension>`` declares (absent when it declares none)
    width: dict[str, int] = field(default_factory=dict)


def check_size(path: Path, max_bytes: int) -> int:
    """The file's size; FileUnreadable when it is over ``max_bytes`` or empty-handed."""
    size = path.stat().st_size
    if size > max_bytes:
        raise FileUnreadable(
            f"the file is {size / 2**20:.0f} MB, over the {max_bytes / 2**20:.0f} MB limit "
            "(intake.max_file_mb). Split it into smaller files and drop them again.",
            path=path,
        )
    return size


def check_width(path: Path, columns: int, max_columns: int) -> None:
    """Refuse a sheet with more columns than ``max_columns`` (before any row is read)."""
    if columns > max_columns:
        raise FileUnreadable(
            f"the sheet has {columns:,} columns; leadpipe reads at most {max_columns:,} "
            "(intake.max_columns), far more than any campaign has fields. Delete the columns "
            "that are not lead data, or check that the separator is right, then drop it again.",
            path=path,
        )


def detect_kind(path: Path, head: bytes) -> Kind:
    """CSV or XLSX from the first bytes (and the name); FileUnreadable for anything else."""
    suffix = path.suffix.lower()
    if head.startswith(OLE_MAGIC):
        if _is_encrypted_ole(path):
            raise FileUnreadable(
                "this is a password-protected workbook, which leadpipe cannot open. Remove the "
                "password (File > Info > Protect Workbook) and drop the file again.",
                path=path,
            )
        raise FileUnreadable(
            f"this is an old-style Excel file (.xls) or another Office file. {_SAVE_AS}",
            path=path,
        )
    if head.startswith(ZIP_MAGIC) or head.startswith(b"PK\x05\x06"):
        if suffix in (".xlsx", ".xlsm", "") or _looks_like_xlsx(path):
            return "xlsx"
        raise FileUnreadable(f"this is a ZIP archive, not a spreadsheet. {_SAVE_AS}", path=path)
    if head.startswith(b"%PDF"):
        raise FileUnreadable(f"this is a PDF, not a spreadsheet. {_SAVE_AS}", path=path)
    if suffix in (".xlsx", ".xlsm"):
        raise FileUnreadable(
            f"the file is named .xlsx but is not a workbook. {_SAVE_AS}", path=path, incomplete=True
        )
    if suffix == ".xls":
        raise FileUnreadable(f"old-style .xls files are not supported. {_SAVE_AS}", path=path)
    probe = head[:8192]
    utf16 = probe.startswith((b"\xff\xfe", b"\xfe\xff"))
    if not utf16 and b"\x00" in probe:
        raise FileUnreadable(f"this is not a text (CSV) file or a workbook. {_SAVE_AS}", path=path)
    return "csv"


def _is_encrypted_ole(path: Path) -> bool:
    with path.open("rb") as fh:
        data = fh.read(4 * 1024 * 1024)
    return "EncryptedPackage".encode("utf-16-le") in data or b"EncryptedPackage" in data


def _looks_like_xlsx(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return "xl/workbook.xml" in zf.namelist()
    except zipfile.BadZipFile:
        return False


_DECL = re.compile(rb"<!\s*(doctype|entity)", re.IGNORECASE)
_FIRST_CELL = re.compile(
    rb"<(?:\w+:)?c\b[^>]*?\br=\"[A-Z]+(\d+)\"[^>]*?>(?:(?!</(?:\w+:)?c>).)*?<(?:\w+:)?(?:v|is)\b",
    re.DOTALL,
)


def check_xlsx(path: Path) -> XlsxInfo:
    """Refuse zip bombs, entity bombs and broken workbooks; describe the sheets."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileUnreadable(
            f"the workbook is damaged ({exc}). {_SAVE_AS}", path=path, incomplete=True
        ) from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise _bomb(path, f"it holds {len(infos)} parts")
        total = sum(i.file_size for i in infos)
        if total > MAX_UNCOMPRESSED:
            raise _bomb(path, f"it would unpack to {total / 1e9:.1f} GB")
        names = {i.filename for i in infos}
        if "xl/workbook.xml" not in names:
            raise FileUnreadable(f"the file is not an Excel workbook. {_SAVE_AS}", path=path)
        first_row: dict[str, int] = {}
        width: dict[str, int] = {}
        for info in infos:
            if info.flag_bits & 0x1:
                raise FileUnreadable(
                    "the workbook is encrypted. Remove the password and drop it again.",
                    path=path,
                )
            if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(
                info.compress_size, 1
            ):
                raise _bomb(path, f"part {info.filename} unpacks {MAX_RATIO}x bigger than it is")
            if not info.filename.endswith((".xml", ".rels", ".vml")):
                continue
            head = _read_head(zf, info, path)
            text = head.decode("utf-16", "replace").encode() if b"\x00" in head[:4] else head
            if _DECL.search(text):
                raise FileUnreadable(
                    f"the workbook part {info.filename} declares a DOCTYPE or entities, which "
                    "real Excel files never do (a possible 'entity bomb'). Open it in Excel, "
                    "save it again as .xlsx and drop it again.",
                    path=path,
                )
            if info.filename.startswith("xl/worksheets/"):
                m = _FIRST_CELL.search(head)
                first_row[info.filename] = int(m.group(1)) if m else 1
                if d := _DIMENSION.search(head):
                    width[info.filename] = _column_number(d.group(2) or d.group(1) or b"A")
        sheets = _sheets(zf, path)
        _inflate_all(zf, path)
    return XlsxInfo(sheets=sheets, first_row=first_row, width=width)


def _column_number(letters: bytes) -> int:
    n = 0
    for ch in letters.decode("ascii"):
        n = n * 26 + (ord(ch) - 64)
    return n


def _inflate_all(zf: zipfile.ZipFile, path: Path) -> None:
    """Inflate every part, streamed, counting the bytes that really come out.

    The sizes in a ZIP directory are whatever its writer says: a forged workbook declares small
    parts that inflate to gigabytes. Each part's raw data is inflated here in bounded steps and
    must come out at exactly its declared size (which the checks above already bounded) and end
    its deflate stream where its compressed size says; all sheets together hold at most
    :data:`MAX_CELLS` cells. Nothing is kept in memory.
    """
    cells = 0
    fp = zf.fp
    if fp is None:  # pragma: no cover - the archive is open
        raise FileUnreadable(f"the workbook is damaged. {_SAVE_AS}", path=path)
    # a cell takes at least _MIN_CELL_BYTES of XML: sheets that (verifiably) are smaller than
    # MAX_CELLS of those cannot hold too many cells, and need no count
    sheets = [i for i in zf.infolist() if i.filename.startswith("xl/worksheets/")]
    count = sum(i.file_size for i in sheets) > MAX_CELLS * _MIN_CELL_BYTES
    for info in zf.infolist():
        if info.is_dir():
            continue
        sheet = count and info.filename.startswith("xl/worksheets/")
        try:
            fp.seek(info.header_offset)
            header = fp.read(_LOCAL_HEADER.size)
            if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
                raise ValueError("bad local header")
            name_len, extra_len = _LOCAL_HEADER.unpack(header)[-2:]
            fp.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
            out, tail = 0, b""
            for chunk in _inflated(fp, info, path):
                out += len(chunk)
                if out > info.file_size:
                    raise _bomb(
                        path, f"part {info.filename} unpacks to more than the size it declares"
                    )
                if sheet:
                    cells += _cells(tail + chunk) - _cells(tail)
                    tail = chunk[-2:]  # a "<c " cut between two chunks is counted once
            if out != info.file_size:
                raise ValueError(f"part {info.filename} is shorter than it declares")
        except (ValueError, _ISAL_ERROR, OSError, EOFError) as exc:
            raise FileUnreadable(
                f"the workbook is damaged ({exc}). {_SAVE_AS}", path=path, incomplete=True
            ) from exc
        if cells > MAX_CELLS:
            raise _bomb(path, f"its sheets hold more than {MAX_CELLS:,} cells")


def _cells(xml: bytes) -> int:
    """Cell elements in a piece of sheet XML, as Excel and most tools write them (``<c r=``).

    Other spellings are not counted; the verified inflated size still bounds those sheets.
    """
    return xml.count(b"<c ")


def _inflated(fp: IO[bytes], info: zipfile.ZipInfo, path: Path) -> Iterator[bytes]:
    """The inflated bytes of one part, in steps of at most :data:`_CHUNK`, from its raw data.

    Deflate is inflated with ISA-L (``isal``): the same raw-deflate format and the same
    ``decompressobj`` interface as :mod:`zlib`, about twice as fast, which is most of what this
    pass costs. ``max_length`` bounds every step's output, so a bomb never takes more than a few
    steps' memory. When a step stops at ``max_length``, the inflater may already hold the last
    input bits while output is still due: it is asked again with no input until it ends or
    gives nothing, so a valid part is never taken for a cut-short one.
    """
    left = info.compress_size
    if info.compress_type == zipfile.ZIP_STORED:
        while left > 0:
            raw = fp.read(min(_CHUNK, left))
            if not raw:
                raise EOFError(f"part {info.filename} is cut short")
            left -= len(raw)
            yield raw
        return
    if info.compress_type != zipfile.ZIP_DEFLATED:
        raise FileUnreadable(
            f"part {info.filename} uses a compression Excel does not write. {_SAVE_AS}",
            path=path,
        )
    inflater = isal_zlib.decompressobj(-15)
    raw = b""
    while not inflater.eof:
        if not raw and left > 0:
            raw = fp.read(min(_CHUNK, left))
            if not raw:
                raise EOFError(f"part {info.filename} is cut short")
            left -= len(raw)
        given = len(raw)
        data = inflater.decompress(raw, _CHUNK)
        raw = inflater.unconsumed_tail
        if data:
            yield data
        elif len(raw) == given and (raw or left == 0):
            break  # nothing taken, nothing given: the stream stops short of its end
    if not inflater.eof or left > 0:
        raise ValueError(f"part {info.filename} does not end where its sizes say")


def _read_head(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    try:
        with zf.open(info) as fh:
            return fh.read(PROLOG_BYTES)
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, zlib.error) as exc:
        raise FileUnreadable(
            f"the workbook is damaged ({exc}). {_SAVE_AS}", path=path, incomplete=True
        ) from exc


def _bomb(path: Path, why: str) -> FileUnreadable:
    return FileUnreadable(
        f"the workbook was refused because {why}, far beyond any real spreadsheet (a "
        "possible 'zip bomb'). Check where the file came from; if it is genuine, save it again "
        "from Excel or split it.",
        path=path,
    )


_NS_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _sheets(zf: zipfile.ZipFile, path: Path) -> list[tuple[str, bool, str]]:
    """(name, visible, part path) for each worksheet, in workbook order."""
    try:
        wb = ET.fromstring(zf.read("xl/workbook.xml"))  # noqa: S314 - DTD-free, checked above
        rels_raw = (
            zf.read("xl/_rels/workbook.xml.rels") if _has(zf, "xl/_rels/workbook.xml.rels") else b""
        )
        rels = ET.fromstring(rels_raw) if rels_raw else None  # noqa: S314
    except (ET.ParseError, KeyError) as exc:
        raise FileUnreadable(
            f"the workbook is damaged ({exc}). {_SAVE_AS}", path=path, incomplete=True
        ) from exc
    targets: dict[str, str] = {}
    if rels is not None:
        for rel in rels:
            target = rel.get("Target", "")
            target = target.lstrip("/") if target.startswith("/") else "xl/" + target
            targets[rel.get("Id", "")] = target
    out = []
    for el in wb.iter():
        if el.tag.rsplit("}", 1)[-1] != "sheet":
            continue
        state = el.get("state", "visible")
        part = targets.get(el.get(f"{{{_NS_R}}}id", ""), "")
        out.append((el.get("name", ""), state == "visible", part))
    return out


def _has(zf: zipfile.ZipFile, name: str) -> bool:
    try:
        zf.getinfo(name)
    except KeyError:
        return False
    return True
