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

Untrusted files pass :mod:`pipeline.ingest.read.guard` (size, type, zip/entity bombs) first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.config import CampaignSettings
from pipeline.errors import FileUnreadable
from pipeline.ingest.read.csvfile import open_csv
from pipeline.ingest.read.guard import check_size, check_width, detect_kind
from pipeline.ingest.read.table import SAMPLE_BYTES, Table
from pipeline.ingest.read.xlsxfile import open_xlsx

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
#: Campaigns have tens of fields; a sheet far wider than that is refused before rows are read.
DEFAULT_MAX_COLUMNS = 1000


def open_table(
    path: Path,
    *,
    options: CampaignSettings,
    expected_fields: Sequence[str],
    chunk_rows: int = 100_000,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_columns: int = DEFAULT_MAX_COLUMNS,
) -> Table:
    """Open ``path`` (CSV or XLSX) and find its header; raise FileUnreadable when impossible."""
    path = Path(path)
    size = check_size(path, max_bytes)
    if size == 0:
        raise FileUnreadable(
            "the file is empty. Export it again and drop it again.", path=path, incomplete=True
        )
    with path.open("rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    expected = [*expected_fields, *options.columns.keys()]
    if detect_kind(path, head) == "xlsx":
        table = open_xlsx(path, options, expected, chunk_rows, max_columns)
    else:
        table = open_csv(path, head, options, expected, chunk_rows)
    check_width(path, len(table.headers), max_columns)
    return table
