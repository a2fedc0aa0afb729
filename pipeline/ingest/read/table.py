"""The opened-file shape shared by the CSV and XLSX readers: :class:`Table` and its helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.cells import column_letters
from pipeline.ingest.map import header_score

SAMPLE_BYTES = 1024 * 1024
HEADER_SEARCH_ROWS = 50
#: A file's first chunk has at most this many rows, each next one twice as many as the last, up
#: to the reader's ``chunk_rows``: a mid-sized file then flows through the checks, the delivery
#: and the reject files' process in overlapping steps instead of one after the other, and a big
#: file still goes in big chunks. More than the checks' small-file limit
#: (``pipeline.ingest.validate.checks.SMALL_ROWS``), so a first chunk that small is the whole
#: file.
FIRST_CHUNK_ROWS = 10_000


def chunk_sizes(chunk_rows: int) -> Iterator[int]:
    """The most rows of each chunk in turn: :data:`FIRST_CHUNK_ROWS`, doubling, up to
    ``chunk_rows``."""
    size = max(1, min(FIRST_CHUNK_ROWS, chunk_rows))
    while True:
        yield size
        size = min(size * 2, max(chunk_rows, 1))


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
    #: about how many rows follow the header (XLSX: the sheet's; CSV: the file's size over the
    #: first lines' average), for choosing how to check them; None when unknown
    expected_rows: int | None = None

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


def unique_headers(cells: Sequence[str]) -> list[str]:
    """Header names made usable: empty -> ``Column C``, repeats -> ``Phone (2)``."""
    out: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(cells):
        name = (raw or "").strip() or f"Column {column_letters(i)}"
        base, n = name, 2
        while name in seen:
            name, n = f"{base} ({n})", n + 1
        seen.add(name)
        out.append(name)
    return out


def find_header(rows: Sequence[Sequence[str]], expected: Sequence[str], configured: int) -> int:
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


def value_lengths(batch: pa.RecordBatch | pa.Table) -> list[np.ndarray]:
    """Each column's values' byte lengths (read from the offsets; a missing value is 0)."""
    return [
        np.asarray(
            pc.fill_null(pc.binary_length(col), 0).to_numpy(zero_copy_only=False), dtype=np.int64
        )
        for col in batch.columns
    ]


def blank_mask(
    batch: pa.RecordBatch | pa.Table, lengths: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """Rows whose every cell is empty or whitespace (byte lengths first, :func:`value_lengths`
    unless the caller has them; trimming only for short rows)."""
    if batch.num_columns == 0:
        return np.zeros(batch.num_rows, dtype=bool)
    total = np.zeros(batch.num_rows, dtype=np.int64)
    for column_lengths in value_lengths(batch) if lengths is None else lengths:
        total += column_lengths
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


def to_frame(data: pa.Table, headers: list[str], rows: np.ndarray) -> pd.DataFrame:
    frame: pd.DataFrame = data.rename_columns(headers).to_pandas()
    for h in [h for h, d in frame.dtypes.items() if d != "str"]:
        frame[h] = frame[h].astype("str")
    frame["_row"] = rows.astype(np.int64)
    return frame
