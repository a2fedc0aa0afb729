"""Every record of a kept CSV/XLSX as the spreadsheet shows it, and the same file without some.

Ingest reads one sheet from its header on (:mod:`pipeline.ingest.read.open`). ``leadpipe trace
--find`` and ``leadpipe forget`` (docs/retention.md) need every cell of a file leadpipe kept
(an original, a reject file, an export), title rows and every sheet included, and ``forget``
needs the file again without the records that hold a value. Rows are numbered as the
spreadsheet shows them: the CSV record number as Excel counts it (a quoted value spanning
several lines is one row), the Excel row number. The same guards as ingest run first (size,
type, zip and entity bombs).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import CampaignSettings
from pipeline.errors import FileUnreadable
from pipeline.files import atomic_open, atomic_path
from pipeline.ingest.read.guard import check_size, check_xlsx, detect_kind
from pipeline.ingest.read.open import DEFAULT_MAX_BYTES, open_table
from pipeline.ingest.read.table import SAMPLE_BYTES


@dataclass(frozen=True)
class Record:
    """One record of a file: its sheet ("" for a CSV), row number as shown, and cells as text."""

    sheet: str
    row: int
    cells: tuple[str, ...]


@dataclass(frozen=True)
class _CsvFormat:
    encoding: str
    delimiter: str
    newline: str


def _csv_format(path: Path, options: CampaignSettings) -> _CsvFormat:
    table = open_table(path, options=options, expected_fields=[])
    with path.open("rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    encoding = table.encoding or "utf-8"
    newline = "\r\n" if b"\r\n" in head or b"\r\x00\n" in head else "\n"
    return _CsvFormat(encoding, table.delimiter or ",", newline)


def _kind(path: Path, max_bytes: int) -> str:
    size = check_size(path, max_bytes)
    if size == 0:
        return "empty"
    with path.open("rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    return detect_kind(path, head)


def records(
    path: Path,
    options: CampaignSettings | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[Record]:
    """Every non-empty record of ``path`` (CSV or XLSX, every sheet). Raises FileUnreadable."""
    options = options or CampaignSettings()
    kind = _kind(path, max_bytes)
    if kind == "empty":
        return
    if kind == "xlsx":
        yield from _xlsx_records(path)
        return
    fmt = _csv_format(path, options)
    with path.open(encoding=fmt.encoding, errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=fmt.delimiter)
        try:
            for n, cells in enumerate(reader, start=1):
                if any(c.strip() for c in cells):
                    yield Record("", n, _shown(n, cells))
        except csv.Error as exc:
            raise FileUnreadable(f"cannot be read past row {reader.line_num}", path=path) from exc


def _shown(n: int, cells: list[str]) -> tuple[str, ...]:
    """A record's cells as shown: the first one without a byte order mark."""
    if n == 1 and cells and cells[0].startswith("\ufeff"):
        return (cells[0][1:], *cells[1:])
    return tuple(cells)


def _xlsx_records(path: Path) -> Iterator[Record]:
    from python_calamine import CalamineError, CalamineWorkbook

    check_xlsx(path)  # bombs and forged workbooks never reach the parser
    try:
        book = CalamineWorkbook.from_path(str(path))
        for name in book.sheet_names:
            sheet = book.get_sheet_by_name(name)
            top, left = sheet.start or (0, 0)
            for i, row in enumerate(sheet.to_python(skip_empty_area=True)):
                cells = ("",) * left + tuple(_text(v) for v in row)  # columns stay in place
                if any(c.strip() for c in cells):
                    yield Record(name, top + 1 + i, cells)
    except CalamineError as exc:
        raise FileUnreadable(f"the workbook cannot be read ({exc})", path=path) from exc


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def rewrite_without(
    path: Path,
    drop: Callable[[tuple[str, ...]], bool],
    *,
    options: CampaignSettings | None = None,
    tmp_dir: Path | None = None,
) -> int:
    """Write ``path`` again (temp, then rename) without the records ``drop`` picks.

    A CSV keeps its encoding, separator and line ends; a workbook keeps its sheets and cells
    as text (formatting and comments are not kept). Returns how many records went; 0 leaves
    the file untouched.
    """
    options = options or CampaignSettings()
    kind = _kind(path, DEFAULT_MAX_BYTES)
    if kind == "empty":
        return 0
    if kind == "xlsx":
        return _rewrite_xlsx(path, drop, tmp_dir)
    fmt = _csv_format(path, options)
    with path.open(encoding=fmt.encoding, errors="replace", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=fmt.delimiter))
    # the rows are written back as read (a byte order mark included); ``drop`` sees them shown
    kept = [
        r for n, r in enumerate(rows, 1) if not (any(c.strip() for c in r) and drop(_shown(n, r)))
    ]
    gone = len(rows) - len(kept)
    if gone:
        with atomic_open(path, "w", tmp_dir=tmp_dir, encoding=fmt.encoding, newline="") as out:
            writer = csv.writer(out, delimiter=fmt.delimiter, lineterminator=fmt.newline)  # type: ignore[arg-type]
            writer.writerows(kept)
    return gone


def _rewrite_xlsx(path: Path, drop: Callable[[tuple[str, ...]], bool], tmp_dir: Path | None) -> int:
    import xlsxwriter
    from python_calamine import CalamineWorkbook

    sheets: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
    gone: dict[str, list[int]] = {}
    for rec in _xlsx_records(path):
        if drop(rec.cells):
            gone.setdefault(rec.sheet, []).append(rec.row)
        else:
            sheets.setdefault(rec.sheet, []).append((rec.row, rec.cells))
    if not gone:
        return 0
    names = list(CalamineWorkbook.from_path(str(path)).sheet_names)
    with atomic_path(path, tmp_dir=tmp_dir) as tmp:
        # text cells only (write_string): nothing written runs as a formula
        book = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False})
        try:
            for name in names:
                ws = book.add_worksheet(name)
                removed = sorted(gone.get(name, []))
                for row, cells in sheets.get(name, []):
                    shown = row - sum(1 for r in removed if r < row)  # rows below move up
                    for col, value in enumerate(cells):
                        if value:
                            ws.write_string(shown - 1, col, value)
        finally:
            book.close()
    return sum(len(v) for v in gone.values())
