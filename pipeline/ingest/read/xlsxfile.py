"""XLSX -> text chunks: bounded checks, sheet choice, header row (see
:mod:`pipeline.ingest.read.open`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import CampaignSettings
from pipeline.errors import FileUnreadable
from pipeline.ingest.read.guard import check_width, check_xlsx
from pipeline.ingest.read.table import (
    HEADER_SEARCH_ROWS,
    Table,
    blank_mask,
    chunk_sizes,
    find_header,
    to_frame,
    unique_headers,
)


def open_xlsx(
    path: Path,
    options: CampaignSettings,
    expected: Sequence[str],
    chunk_rows: int,
    max_columns: int,
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
    check_width(path, info.width.get(sheet[2], 0), max_columns)  # what the sheet declares
    try:
        reader = fastexcel.read_excel(str(path))
        data = reader.load_sheet(sheet[0], header_row=None, dtypes="string").to_arrow()
    except Exception as exc:  # fastexcel raises its own tree
        raise FileUnreadable(
            f"the workbook cannot be read ({exc}). Save it again from Excel and drop it again.",
            path=path,
            incomplete=True,
        ) from exc
    check_width(path, data.num_columns, max_columns)  # what it holds
    offset = info.first_row.get(sheet[2], 1)  # Excel row of the first row fastexcel returns
    if data.num_rows == 0:
        raise FileUnreadable(f"the sheet '{sheet[0]}' is empty.", path=path)
    data = pa.table([pc.fill_null(c, "") for c in data.columns], names=data.column_names)
    top = data.slice(0, HEADER_SEARCH_ROWS).to_pylist()
    top_rows = [[str(v) for v in r.values()] for r in top]
    h = find_header(
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
        expected_rows=body.num_rows,
    )


_DATE_TIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"
#: Every text ``_DATE_TIME`` matches is this many bytes: RE2's ``\d`` is ASCII and its ``$``
#: the very end, so a column without a value of this length needs no regex.
_DATE_TIME_BYTES = 19


def _iter_xlsx(table: Table, body: pa.Table, first: int, chunk_rows: int) -> Iterator[pd.DataFrame]:
    start = 0
    for size in chunk_sizes(chunk_rows):
        if start >= body.num_rows:
            return
        part = body.slice(start, size)
        rows = first + start + np.arange(part.num_rows, dtype=np.int64)
        start += size
        cols, dates = [], {}
        for name, col in zip(table.headers, part.columns, strict=False):
            if not pc.any(pc.equal(pc.binary_length(col), _DATE_TIME_BYTES)).as_py():
                cols.append(col)  # no value is as long as a date-time: most columns
                continue
            is_dt = pc.match_substring_regex(col, _DATE_TIME)
            if pc.any(is_dt).as_py():
                midnight = pc.and_(is_dt, pc.ends_with(col, " 00:00:00"))
                col = pc.if_else(midnight, pc.utf8_slice_codeunits(col, 0, 10), col)
                dates[name] = np.asarray(is_dt.to_numpy(zero_copy_only=False), dtype=bool)
            cols.append(col)
        part = pa.table(cols[: len(table.headers)], names=[f"c{i}" for i in range(len(cols))])
        blank = blank_mask(part)
        if blank.any():
            part = part.filter(pa.array(~blank))
            rows = rows[~blank]
            dates = {k: v[~blank] for k, v in dates.items()}
        table.blank_rows += int(blank.sum())
        table.rows_read += part.num_rows
        frame = to_frame(part, table.headers[: part.num_columns], rows)
        for missing in table.headers[part.num_columns :]:
            frame[missing] = pd.Series([""] * len(frame), dtype="str")
        if dates:
            frame.attrs["date_cells"] = dates
        yield frame
