"""CSV -> text chunks: encoding, delimiter, header row, row numbers (see
pipeline.ingest.read.open)."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

from pipeline.config import CampaignSettings
from pipeline.errors import FileUnreadable
from pipeline.ingest.read.table import (
    HEADER_SEARCH_ROWS,
    SAMPLE_BYTES,
    Table,
    blank_mask,
    chunk_sizes,
    find_header,
    to_frame,
    unique_headers,
    value_lengths,
)
from pipeline.prefetch import read_ahead

#: Arrow's freed pages go back to the OS at most this often (seconds), after a chunk is done.
#: After every chunk, the next chunk's buffers fault fresh pages in again: on a quiet machine a
#: quarter of the checks' CPU time went to page faults. In between, the pages are reused;
#: memory stays as flat (bench/ingest.py: the same peak for 1M rows as for 5M), about 30 MB
#: higher (bench/RESULTS.md).
RELEASE_EVERY = 0.25


def _released(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``chunks``, then Arrow's freed pages handed back once reading ends (a service holds
    them until its next file otherwise)."""
    try:
        yield from chunks
    finally:
        pa.default_memory_pool().release_unused()


class _ArrowRelease:
    """Hands Arrow's freed pages back to the OS, at most every :data:`RELEASE_EVERY` s."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= RELEASE_EVERY:
            self._last = now
            pa.default_memory_pool().release_unused()


DELIMITERS = (",", ";", "\t", "|")
#: A value longer than this (bytes) refuses the file: no lead field holds as much, and it is
#: nearly always a quote never closed, which made the rest of the file one value (its rows
#: would otherwise vanish into that one cell).
MAX_VALUE_BYTES = 128 * 1024
#: A chunk ends after this many bytes of text (or ``chunk_rows`` rows, whichever comes first).
CHUNK_BYTES = 12 << 20


def _detect_encoding(head: bytes, configured: str) -> tuple[str, int]:
    """(encoding, BOM length)."""
    if configured:
        return configured, 0
    boms = (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),  # the byte order is named: the BOM itself is
        (codecs.BOM_UTF16_BE, "utf-16-be"),  # skipped, and "utf-16" alone would guess LE
    )
    for bom, enc in boms:
        if head.startswith(bom):
            return enc, len(bom)
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


def open_csv(
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
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    # only the records the header can be in (the rest of the sample is pyarrow's to read)
    wanted = max(HEADER_SEARCH_ROWS, options.header_row)
    try:
        records = list(itertools.islice(reader, wanted))
        if not any(any(c.strip() for c in r) for r in records):  # blank so far: on to a row
            for r in reader:  # with text (the header when nothing looks like one)
                records.append(r)
                if any(c.strip() for c in r):
                    break
    except csv.Error as exc:  # a value over the csv module's 128 KB limit
        raise _too_long(path, reader.line_num) from exc
    records = [r if r else [""] for r in records]
    if not records:
        raise FileUnreadable("the file is empty. Export it again and drop it again.", path=path)
    h = find_header(records, expected, options.header_row)
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
        _iter=lambda t: _released(
            read_ahead(lambda: _iter_csv(t, h, chunk_rows), after_item=_ArrowRelease())
        ),
        encoding=encoding,
        delimiter=delimiter,
        expected_rows=_expected_rows(path, head, h),
    )
    return table


def _expected_rows(path: Path, head: bytes, header_index: int) -> int | None:
    """About how many rows follow the header: the file's size over the sample's average line
    (exact when the sample is the whole file, a quoted line break apart). Lines end at LF,
    else (old Mac files) at CR; None when the sample shows no line end at all."""
    breaks = head.count(b"\n") or head.count(b"\r")
    if not breaks and len(head) >= SAMPLE_BYTES:
        return None
    lines = breaks + (not head.endswith((b"\n", b"\r")))
    if len(head) < SAMPLE_BYTES:
        return max(0, lines - header_index - 1)
    try:
        size = path.stat().st_size
    except OSError:
        size = len(head)
    return max(0, round(size * lines / len(head)) - header_index - 1)


def _iter_csv(table: Table, h: int, chunk_rows: int) -> Iterator[pd.DataFrame]:
    headers = table.headers
    for data, rows, bad in _record_batches(table, h, chunk_rows):
        if data is None:
            empty = pd.DataFrame({name: pd.Series([], dtype="str") for name in headers})
            empty["_row"] = pd.Series([], dtype="int64")
            yield _with_malformed(empty, bad, table)
            continue
        lengths = value_lengths(data)
        _refuse_too_long(table, lengths, rows)
        blank = blank_mask(data, lengths)
        n_blank = int(blank.sum())
        if n_blank:
            data = data.filter(pa.array(~blank))
            rows = rows[~blank]
        table.blank_rows += n_blank
        table.rows_read += data.num_rows
        frame = to_frame(data, headers, rows)
        if bad:
            frame = _with_malformed(frame, bad, table)
        yield frame


def _record_batches(
    table: Table, h: int, chunk_rows: int
) -> Iterator[tuple[pa.Table | None, np.ndarray, list[tuple[int, str, int]]]]:
    """(records, their row numbers, malformed rows found meanwhile), about ``chunk_rows`` or
    :data:`CHUNK_BYTES` each, whichever comes first (wide rows make smaller chunks, so memory
    stays flat however wide the sheet).

    The file is parsed in the calling thread (a helper of the reading, :mod:`pipeline.prefetch`;
    Arrow lets go of the interpreter lock while it parses), not by Arrow's own threads: the
    checks keep the other cores busy, and on two cores Arrow's threads only took turns with
    them (docs/architecture.md). One parser also says where each malformed row was.
    """
    names = [f"c{i}" for i in range(len(table.headers))]
    first = h + 2  # the row number of the first data record
    bad: list[tuple[int, str, int]] = []
    reader = _open_reader(table, h, names, bad, first)
    if reader is None:
        return
    sizes = chunk_sizes(chunk_rows)
    pending: list[pa.RecordBatch] = []
    delivered, index, reported, size = 0, 0, 0, 0  # records handed out, read; bad rows told
    limit = next(sizes)
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as exc:
            raise _not_text(table, first + index, exc) from exc
        pending.append(batch)
        index += batch.num_rows
        size += batch.nbytes
        if index - delivered >= limit or size >= CHUNK_BYTES:
            yield _take(pending, delivered, index, first, bad, reported)
            pending, delivered, reported, size = [], index, len(bad), 0
            limit = next(sizes)
    if pending or len(bad) > reported:
        yield _take(pending, delivered, index, first, bad, reported)


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
    # one contiguous array per column: later kernels (take, filter, regex) run on one piece
    data = pa.Table.from_batches(batches).combine_chunks() if batches else None
    return data, rows, bad[reported:]


def _open_reader(
    table: Table,
    h: int,
    names: list[str],
    bad: list[tuple[int, str, int]],
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
                use_threads=False,  # (see _record_batches)
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


def _refuse_too_long(table: Table, lengths: Sequence[np.ndarray], rows: np.ndarray) -> None:
    """Raise :func:`_too_long` naming the row of a value over :data:`MAX_VALUE_BYTES` (the
    parser reads values up to its block size; the header search reads only the first rows).
    ``lengths``: each column's values' byte lengths."""
    for column_lengths in lengths:
        if len(column_lengths) and column_lengths.max() > MAX_VALUE_BYTES:
            raise _too_long(table.path, int(rows[int(np.argmax(column_lengths))]))


def _too_long(path: Path, line: int) -> FileUnreadable:
    return FileUnreadable(
        f"a value around line {line} is longer than any lead field can be (over "
        '128 KB). Usually a quote character (") that is never closed turns the rest of the '
        "file into one value. Check the quotes around that line, save the file and drop it "
        "again.",
        path=path,
    )


def _not_text(table: Table, row: int, exc: Exception) -> FileUnreadable:
    if "straddling" in str(exc):  # one record larger than a whole parse block
        return _too_long(table.path, row)
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
        try:
            values = next(csv.reader([text], delimiter=table.delimiter), [])
        except csv.Error as exc:
            raise _too_long(table.path, number) from exc
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
