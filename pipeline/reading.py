"""CSV/XLSX -> frames of text, in chunks: encoding, delimiter, sheet, header row, row numbers.

Every value is text (leading zeros and long numbers survive). Each chunk has the file's columns
(original header names; an empty header becomes ``Column C``, a repeated one ``Phone (2)``)
plus an int column ``_row``: the row number the person sees.

**What "row" means.** XLSX: the Excel row number. CSV: the record number as Excel shows the
file when it opens it, counting every line above the header (title rows, blank lines) and the
header itself; a quoted value spanning several lines is one row, as in Excel.

Blank rows (every cell empty or whitespace) are skipped and counted (:attr:`Table.blank_rows`,
known after iterating). CSV rows with the wrong number of values are kept, padded or cut to
the header, and listed in ``frame.attrs["malformed"]`` (row -> message) for validation to flag.
XLSX cells Excel stored as dates become ISO text (``2024-03-01``); their positions are in
``frame.attrs["date_cells"]`` (header -> boolean array) so validation can flag dates where
none belong.

Untrusted files pass :mod:`pipeline.filecheck` (size, type, zip/entity bombs) first.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pcsv  # type: ignore[import-untyped]

from pipeline.config import CampaignSettings
from pipeline.errors import FileUnreadable
from pipeline.filecheck import check_size, check_xlsx, detect_kind
from pipeline.mapping import header_score

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
SAMPLE_BYTES = 1024 * 1024
HEADER_SEARCH_ROWS = 50
DELIMITERS = (",", ";", "\t", "|")


@dataclass
class Table:
    """An opened file: its header, where it is, and its rows as text chunks."""

    path: Path
    kind: str
    headers: list[str]
    header_row: int
    _iter: Callable[[Table], Iterator[pd.DataFrame]] = field(repr=False)
    encoding: str = ""
    delimiter: str = ""
    sheet: str = ""
    blank_rows: int = 0
    rows_read: int = 0

    def chunks(self) -> Iterator[pd.DataFrame]:
        """The data rows as frames of text plus ``_row`` (blank rows skipped and counted)."""
        self.blank_rows = 0
        self.rows_read = 0
        yield from self._iter(self)

    def describe(self) -> str:
        """Plain words, e.g. ``CSV (windows-1252, ';' separated), header on row 2``."""
        if self.kind == "xlsx":
            where = f"XLSX, sheet '{self.sheet}'"
        else:
            delim = "tab" if self.delimiter == "\t" else repr(self.delimiter)
            where = f"CSV ({self.encoding}, {delim} separated)"
        return f"{where}, header on row {self.header_row}"


def open_table(
    path: Path,
    *,
    options: CampaignSettings,
    expected_fields: Sequence[str],
    chunk_rows: int = 100_000,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Table:
    """Open ``path`` (CSV or XLSX) and find its header; raise FileUnreadable when impossible."""
    path = Path(path)
    size = check_size(path, max_bytes)
    if size == 0:
        raise FileUnreadable("the file is empty. Export it again and drop it again.", path=path)
    with path.open("rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    expected = [*expected_fields, *options.columns.keys()]
    if detect_kind(path, head) == "xlsx":
        return _open_xlsx(path, options, expected, chunk_rows)
    return _open_csv(path, head, options, expected, chunk_rows)


# --------------------------------------------------------------------------------------- shared


def unique_headers(cells: Sequence[str]) -> list[str]:
    """Header names made usable: empty -> ``Column C``, repeats -> ``Phone (2)``."""
    out: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(cells):
        name = (raw or "").strip() or f"Column {_letters(i)}"
        base, n = name, 2
        while name in seen:
            name, n = f"{base} ({n})", n + 1
        seen.add(name)
        out.append(name)
    return out


def _letters(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


def _find_header(rows: Sequence[Sequence[str]], expected: Sequence[str], configured: int) -> int:
    """0-based index of the header among ``rows``: configured, else best field match."""
    if configured > 0:
        return configured - 1
    best, best_i = 0, -1
    for i, cells in enumerate(rows[:HEADER_SEARCH_ROWS]):
        score = header_score(cells, expected)
        if score > best:
            best, best_i = score, i
    if best_i >= 0:
        return best_i
    return next((i for i, r in enumerate(rows) if any(c.strip() for c in r)), 0)


def _blank_mask(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """Rows whose every cell is empty or whitespace (lengths first; trimming only if needed)."""
    if batch.num_columns == 0:
        return np.zeros(batch.num_rows, dtype=bool)
    total = np.zeros(batch.num_rows, dtype=np.int64)
    for col in batch.columns:
        lengths = pc.fill_null(pc.utf8_length(col), 0)
        total += np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64)
    blank = total == 0
    maybe = np.flatnonzero(~blank & (total <= 16 * batch.num_columns))
    if len(maybe):
        sub = batch.take(pa.array(maybe))
        all_space = np.ones(len(maybe), dtype=bool)
        for col in sub.columns:
            trimmed = pc.utf8_length(pc.utf8_trim_whitespace(pc.fill_null(col, "")))
            all_space &= np.asarray(trimmed.to_numpy(zero_copy_only=False)) == 0
        blank[maybe[all_space]] = True
    return np.asarray(blank, dtype=bool)


def _to_frame(data: pa.Table, headers: list[str], rows: np.ndarray) -> pd.DataFrame:
    frame: pd.DataFrame = data.rename_columns(headers).to_pandas()
    for h in [h for h, d in frame.dtypes.items() if d != "str"]:
        frame[h] = frame[h].astype("str")
    frame["_row"] = rows.astype(np.int64)
    return frame


# ------------------------------------------------------------------------------------------ CSV


def _detect_encoding(head: bytes, configured: str) -> tuple[str, int]:
    """(encoding, BOM length)."""
    if configured:
        return configured, 0
    for bom, enc in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16")):
        if head.startswith(bom):
            return enc, len(bom)
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16", 2
    try:
        head.decode("utf-8")
        return "utf-8", 0
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4 and len(head) >= SAMPLE_BYTES:
            return "utf-8", 0  # cut in the middle of a character at the sample's end
    from charset_normalizer import from_bytes

    best = from_bytes(head, cp_isolation=["cp1252", "latin_1", "cp865", "utf_8"]).best()
    enc = best.encoding if best is not None else "cp1252"
    return ("windows-1252" if enc in ("cp1252", "latin_1") else enc), 0


def _sniff_delimiter(lines: Sequence[str], configured: str) -> str:
    if configured:
        return "\t" if configured in ("\\t", "tab") else configured
    best, best_score = ",", (0, 0)
    for d in DELIMITERS:
        counts = [c for c in (_count_outside_quotes(line, d) for line in lines) if c > 0]
        if not counts:
            continue
        mode = max(set(counts), key=counts.count)
        score = (counts.count(mode), mode)
        if score > best_score:
            best, best_score = d, score
    return best


def _count_outside_quotes(line: str, delim: str) -> int:
    n, quoted = 0, False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == delim and not quoted:
            n += 1
    return n


def _open_csv(
    path: Path, head: bytes, options: CampaignSettings, expected: Sequence[str], chunk_rows: int
) -> Table:
    encoding, bom = _detect_encoding(head, options.encoding)
    try:
        text = head[bom:].decode(encoding, errors="replace")
    except LookupError as exc:
        raise FileUnreadable(
            f"unknown encoding '{options.encoding}' in the campaign's config", path=path
        ) from exc
    if len(head) >= SAMPLE_BYTES:  # drop the last, probably cut, line
        text = text[: text.rfind("\n") + 1] or text
    delimiter = _sniff_delimiter(text.splitlines()[:HEADER_SEARCH_ROWS], options.delimiter)
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    records = [r if r else [""] for r in records]
    if not records:
        raise FileUnreadable("the file is empty. Export it again and drop it again.", path=path)
    h = _find_header(records, expected, options.header_row)
    if h >= len(records):
        raise FileUnreadable(
            f"the configured header row {h + 1} is past the end of the file", path=path
        )
    headers = unique_headers(records[h])
    table = Table(
        path=path,
        kind="csv",
        headers=headers,
        header_row=h + 1,
        _iter=lambda t: _iter_csv(t, h, chunk_rows),
        encoding=encoding,
        delimiter=delimiter,
    )
    return table


def _iter_csv(table: Table, h: int, chunk_rows: int) -> Iterator[pd.DataFrame]:
    headers = table.headers
    for data, rows, bad in _record_batches(table, h, chunk_rows):
        if data is None:
            empty = pd.DataFrame({name: pd.Series([], dtype="str") for name in headers})
            empty["_row"] = pd.Series([], dtype="int64")
            yield _with_malformed(empty, bad, table)
            continue
        blank = _blank_mask(data)
        n_blank = int(blank.sum())
        if n_blank:
            data = data.filter(pa.array(~blank))
            rows = rows[~blank]
        table.blank_rows += n_blank
        table.rows_read += data.num_rows
        frame = _to_frame(data, headers, rows)
        if bad:
            frame = _with_malformed(frame, bad, table)
        yield frame


def _record_batches(
    table: Table, h: int, chunk_rows: int
) -> Iterator[tuple[pa.Table | None, np.ndarray, list[tuple[int, str, int]]]]:
    """(records, their row numbers, malformed rows found meanwhile), about ``chunk_rows`` each.

    Parsing is multi-threaded; threads cannot say where a malformed row was, so on the first
    one the file is read again sequentially from the first record not yet delivered.
    """
    names = [f"c{i}" for i in range(len(table.headers))]
    first = h + 2  # the row number of the first data record
    delivered = 0  # data records handed out so far
    bad: list[tuple[int, str, int]] = []
    threaded = True
    while True:
        bad.clear()
        reader = _open_reader(table, h, names, bad, threaded, first)
        if reader is None:
            return
        index, pending, restart, reported = 0, [], False, 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise _not_text(table, first + index, exc) from exc
            if threaded and bad:
                threaded, restart = False, True
                break
            n = batch.num_rows
            if index + n <= delivered:
                index += n
                continue
            if index < delivered:
                batch, index = batch.slice(delivered - index), delivered
                n = batch.num_rows
            pending.append(batch)
            index += n
            if index - delivered >= chunk_rows:
                yield _take(pending, delivered, index, first, bad, reported)
                pending, delivered, reported = [], index, len(bad)
        if restart:
            continue
        if pending or len(bad) > reported:
            yield _take(pending, delivered, index, first, bad, reported)
        return


def _take(
    batches: list[pa.RecordBatch],
    start: int,
    stop: int,
    first: int,
    bad: list[tuple[int, str, int]],
    reported: int,
) -> tuple[pa.Table | None, np.ndarray, list[tuple[int, str, int]]]:
    rows = first + np.arange(start, stop, dtype=np.int64)
    for number, _text, _n in sorted(bad):  # records the parser skipped shift the numbering
        rows[rows >= number] += 1
    data = pa.Table.from_batches(batches) if batches else None
    return data, rows, bad[reported:]


def _open_reader(
    table: Table,
    h: int,
    names: list[str],
    bad: list[tuple[int, str, int]],
    threaded: bool,
    first: int,
) -> Any:
    def on_bad_row(row: Any) -> str:
        bad.append((int(row.number or 0), str(row.text), int(row.actual_columns)))
        return "skip"

    enc = table.encoding.lower().replace("_", "-")
    try:
        return pcsv.open_csv(
            table.path,
            read_options=pcsv.ReadOptions(
                use_threads=threaded,
                block_size=1024 * 1024,  # bigger blocks: more read-ahead memory, no speed
                skip_rows=h + 1,
                column_names=names,
                encoding="utf8" if enc in ("utf-8", "utf8") else table.encoding,
            ),
            parse_options=pcsv.ParseOptions(
                delimiter=table.delimiter,
                newlines_in_values=True,
                ignore_empty_lines=False,
                invalid_row_handler=on_bad_row,
            ),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.large_string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        if "Could not skip" in str(exc):  # the header is the last line: no data rows
            return None
        raise _not_text(table, first, exc) from exc


def _not_text(table: Table, row: int, exc: Exception) -> FileUnreadable:
    return FileUnreadable(
        f"the file cannot be read as {table.encoding} text from about row {row} ({exc}). "
        "Save it as CSV UTF-8, or set the campaign's encoding in the config, then drop it "
        "again.",
        path=table.path,
    )


def _with_malformed(
    frame: pd.DataFrame, bad: list[tuple[int, str, int]], table: Table
) -> pd.DataFrame:
    width = len(table.headers)
    extra = []
    messages: dict[int, str] = {}
    for number, text, n in bad:
        values = next(csv.reader([text], delimiter=table.delimiter), [])
        values = (values + [""] * width)[:width]
        extra.append([*values, number])
        messages[number] = (
            f"the row has {n} values but the header has {width} columns "
            "(a missing or extra separator)"
        )
    table.rows_read += len(extra)
    more = pd.DataFrame(extra, columns=[*table.headers, "_row"])
    for h in table.headers:
        more[h] = more[h].astype("str")
    out = pd.concat([frame, more], ignore_index=True)
    out["_row"] = out["_row"].astype(np.int64)
    out.attrs = {**frame.attrs, "malformed": messages}
    return out


# ----------------------------------------------------------------------------------------- XLSX


def _open_xlsx(
    path: Path, options: CampaignSettings, expected: Sequence[str], chunk_rows: int
) -> Table:
    import fastexcel

    info = check_xlsx(path)
    if options.sheet:
        match = [s for s in info.sheets if s[0] == options.sheet]
        if not match:
            names = ", ".join(f"'{s[0]}'" for s in info.sheets)
            raise FileUnreadable(
                f"there is no sheet named '{options.sheet}' (sheets: {names}). Rename the "
                "sheet or change the campaign's sheet setting.",
                path=path,
            )
        sheet = match[0]
    else:
        visible = [s for s in info.sheets if s[1]]
        if not visible:
            raise FileUnreadable("the workbook has no visible sheet.", path=path)
        sheet = visible[0]
    try:
        reader = fastexcel.read_excel(str(path))
        data = reader.load_sheet(sheet[0], header_row=None, dtypes="string").to_arrow()
    except Exception as exc:  # fastexcel raises its own tree
        raise FileUnreadable(
            f"the workbook cannot be read ({exc}). Save it again from Excel and drop it again.",
            path=path,
        ) from exc
    offset = info.first_row.get(sheet[2], 1)  # Excel row of the first row fastexcel returns
    if data.num_rows == 0:
        raise FileUnreadable(f"the sheet '{sheet[0]}' is empty.", path=path)
    data = pa.table([pc.fill_null(c, "") for c in data.columns], names=data.column_names)
    top = data.slice(0, HEADER_SEARCH_ROWS).to_pylist()
    top_rows = [[str(v) for v in r.values()] for r in top]
    h = _find_header(
        top_rows, expected, max(1, options.header_row - offset + 1) if options.header_row else 0
    )
    headers = unique_headers(top_rows[h] if h < len(top_rows) else [])
    body = data.slice(h + 1)
    return Table(
        path=path,
        kind="xlsx",
        headers=headers,
        header_row=offset + h,
        _iter=lambda t: _iter_xlsx(t, body, offset + h + 1, chunk_rows),
        sheet=sheet[0],
    )


_DATE_TIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"


def _iter_xlsx(table: Table, body: pa.Table, first: int, chunk_rows: int) -> Iterator[pd.DataFrame]:
    for start in range(0, body.num_rows, chunk_rows):
        part = body.slice(start, chunk_rows)
        rows = first + start + np.arange(part.num_rows, dtype=np.int64)
        cols, dates = [], {}
        for name, col in zip(table.headers, part.columns, strict=False):
            is_dt = pc.match_substring_regex(col, _DATE_TIME)
            if pc.any(is_dt).as_py():
                midnight = pc.and_(is_dt, pc.ends_with(col, " 00:00:00"))
                col = pc.if_else(midnight, pc.utf8_slice_codeunits(col, 0, 10), col)
                dates[name] = np.asarray(is_dt.to_numpy(zero_copy_only=False), dtype=bool)
            cols.append(col)
        part = pa.table(cols[: len(table.headers)], names=[f"c{i}" for i in range(len(cols))])
        blank = _blank_mask(part)
        if blank.any():
            part = part.filter(pa.array(~blank))
            rows = rows[~blank]
            dates = {k: v[~blank] for k, v in dates.items()}
        table.blank_rows += int(blank.sum())
        table.rows_read += part.num_rows
        frame = _to_frame(part, table.headers[: part.num_columns], rows)
        for missing in table.headers[part.num_columns :]:
            frame[missing] = pd.Series([""] * len(frame), dtype="str")
        if dates:
            frame.attrs["date_cells"] = dates
        yield frame
