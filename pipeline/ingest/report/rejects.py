"""Reject files: the rows to fix, as XLSX and CSV, in row order, safe to open in Excel.

``<stamp>_<file>.rejects.xlsx`` has the original columns in their order, every cell a text
cell, each bad cell highlighted with a comment saying what is wrong (the first
:data:`MAX_COMMENTS`; later ones are highlighted only), plus ``_row`` (the row in the original
file) and ``_problems`` (plain words). ``.rejects.csv`` (UTF-8 with BOM, so Excel
shows Danish letters) holds the same rows. No cell can run as a formula (:mod:`pipeline.cells`):
XLSX cells are text and risky ones carry Excel's quote prefix; CSV cells get an apostrophe.

Rows may arrive out of order (API refusals come after validation): they are spooled to a
temporary SQLite file and written, sorted, at :meth:`RejectWriter.close`, each file under a
temporary name and then renamed, so a reader never sees half a reject file. Fixed and dropped
again, a reject file is valid input: the helper columns are ignored (:mod:`pipeline.ingest.map`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xlsxwriter

from pipeline.cells import is_risky, neutralise_csv
from pipeline.files import atomic_open, atomic_path
from pipeline.ingest.validate.checks import RowProblem

__all__ = ["PROBLEMS_COLUMN", "ROW_COLUMN", "RejectWriter"]

ROW_COLUMN = "_row"
PROBLEMS_COLUMN = "_problems"
#: Excel's cell limit; longer texts are cut (with a note) so the workbook stays valid.
MAX_CELL = 32_767
#: Beyond this many commented cells Excel gets slow to open a file (and xlsxwriter to write
#: one): later bad cells are still highlighted and explained in ``_problems``.
MAX_COMMENTS = 10_000
#: Rows per worksheet, header included (Excel's limit): more rejects continue on the next sheet.
SHEET_ROWS = 1_048_576
#: Column widths of the reject workbook, in characters: fitted to the longest text, within these.
MIN_WIDTH, MAX_WIDTH, MAX_PROBLEMS_WIDTH = 6, 50, 100


class RejectWriter:
    """Collects rejected rows (any order) and writes the XLSX + CSV pair at close."""

    def __init__(
        self, xlsx_path: Path, csv_path: Path, headers: Sequence[str], *, tmp_dir: Path
    ) -> None:
        self.xlsx_path = Path(xlsx_path)
        self.csv_path = Path(csv_path)
        self.headers = list(headers)
        tmp_dir = Path(tmp_dir)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".rejects.", suffix=".sqlite", dir=tmp_dir)
        os.close(fd)
        self._spool_path = Path(name)
        self._db = sqlite3.connect(self._spool_path)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE rows (row INTEGER PRIMARY KEY, cells TEXT, problems TEXT)")
        self.count = 0
        self.sheets = 0  #: worksheets of the reject workbook (after :meth:`close`)
        self._closed = False

    def add(self, row: int, values: Sequence[str], problems: Sequence[RowProblem]) -> None:
        """Add a row (original values, in header order) and its problems.

        Adding the same row again merges the problems (e.g. an API refusal after validation).
        """
        probs = [[p.column, p.value, p.rule, p.message] for p in problems]
        cur = self._db.execute("SELECT problems FROM rows WHERE row = ?", (row,)).fetchone()
        if cur is not None:
            merged = json.loads(cur[0]) + probs
            self._db.execute(
                "UPDATE rows SET problems = ? WHERE row = ?", (json.dumps(merged), row)
            )
            return
        cells = ["" if v is None else str(v) for v in values]
        self._db.execute(
            "INSERT INTO rows VALUES (?, ?, ?)", (row, json.dumps(cells), json.dumps(probs))
        )
        self.count += 1

    def close(self) -> list[Path]:
        """Write both files (row order, atomically); the paths written (none if no rows)."""
        if self._closed:
            return []
        self._closed = True
        try:
            if self.count == 0:
                return []
            self._write_xlsx()
            self._write_csv()
            return [self.xlsx_path, self.csv_path]
        finally:
            self._db.close()
            with contextlib.suppress(OSError):
                self._spool_path.unlink()

    def abort(self) -> None:
        """Drop the spool without writing anything."""
        self._closed = True
        self._db.close()
        with contextlib.suppress(OSError):
            self._spool_path.unlink()

    def _rows(self) -> Any:
        for row, cells, problems in self._db.execute(
            "SELECT row, cells, problems FROM rows ORDER BY row"
        ):
            yield row, json.loads(cells), [RowProblem(row, *p) for p in json.loads(problems)]

    def _write_xlsx(self) -> None:
        with atomic_path(self.xlsx_path) as tmp:
            wb = xlsxwriter.Workbook(
                str(tmp), {"constant_memory": True, "strings_to_formulas": False}
            )
            base = {"num_format": "@"}
            bad = {**base, "bg_color": "#FFEB9C", "font_color": "#9C0006"}
            fmt = {
                (False, False): wb.add_format(base),
                (False, True): wb.add_format({**base, "quote_prefix": True}),
                (True, False): wb.add_format(bad),
                (True, True): wb.add_format({**bad, "quote_prefix": True}),
            }
            head = wb.add_format({**base, "bold": True})
            head_q = wb.add_format({**base, "bold": True, "quote_prefix": True})
            columns = [*self.headers, ROW_COLUMN, PROBLEMS_COLUMN]

            widths = [0] * len(columns)  # the longest text of each column on this sheet

            def new_sheet() -> Any:
                self.sheets += 1
                name = "Rejects" if self.sheets == 1 else f"Rejects ({self.sheets})"
                sheet = wb.add_worksheet(name)
                for c, name_ in enumerate(columns):
                    sheet.write_string(0, c, _cell(name_), head_q if is_risky(name_) else head)
                    widths[c] = len(name_)
                sheet.freeze_panes(1, 0)
                return sheet

            ws = new_sheet()
            index = {h: i for i, h in enumerate(self.headers)}
            comments = 0
            r = 0
            for row, cells, problems in self._rows():
                r += 1
                if r == SHEET_ROWS:  # Excel's last row: go on on a new sheet
                    _fit(ws, widths, r - 1)
                    ws, r = new_sheet(), 1
                notes: dict[int, list[str]] = {}
                for p in problems:
                    if p.column in index:
                        notes.setdefault(index[p.column], []).append(p.message)
                values = [*cells, str(row), _problems_text(problems)]
                for c, value in enumerate(values):
                    text = _cell(value)
                    ws.write_string(r, c, text, fmt[(c in notes, is_risky(text))])
                    widths[c] = max(widths[c], len(text))
                    if c in notes and comments < MAX_COMMENTS:
                        ws.write_comment(r, c, _cell("\n".join(notes[c])), {"x_scale": 3})
                        comments += 1
            _fit(ws, widths, r)
            wb.close()

    def _write_csv(self) -> None:
        with atomic_open(self.csv_path, "w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)  # type: ignore[arg-type]
            writer.writerow(
                [neutralise_csv(h) for h in [*self.headers, ROW_COLUMN, PROBLEMS_COLUMN]]
            )
            for row, cells, problems in self._rows():
                values = [*cells, str(row), _problems_text(problems)]
                writer.writerow([neutralise_csv(v) for v in values])


def _fit(sheet: Any, widths: Sequence[int], last_row: int) -> None:
    """Columns as wide as their longest text (within limits) and a filter on the header row, so
    names, e-mails and the problem text are read without widening columns by hand."""
    for c, chars in enumerate(widths):
        cap = MAX_PROBLEMS_WIDTH if c == len(widths) - 1 else MAX_WIDTH
        sheet.set_column(c, c, min(max(chars, MIN_WIDTH) + 2, cap))
    sheet.autofilter(0, 0, max(last_row, 1), len(widths) - 1)


def _problems_text(problems: Sequence[RowProblem]) -> str:
    return "\n".join(p.message for p in problems)


def _cell(text: str) -> str:
    if len(text) <= MAX_CELL:
        return text
    return text[: MAX_CELL - 20] + " ... (cut by leadpipe)"
