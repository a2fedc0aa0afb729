"""The reject files themselves: one XLSX and one CSV, written batch by batch in row order.

:class:`Sink` is what :mod:`pipeline.ingest.report.rejects` writes through, in a process of
its own (:mod:`pipeline.ingest.report.sink_process`) or in a thread. This module imports only
xlsxwriter and small modules of leadpipe's own, so that process starts in a few tens of
milliseconds. What the files hold is described in :mod:`pipeline.ingest.report.rejects`.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from xlsxwriter.xmlwriter import XMLwriter

from pipeline.cells import column_letters, is_risky, neutralise_csv
from pipeline.files import atomic_open, atomic_path
from pipeline.ingest.report.batch import RejectBatch
from pipeline.ingest.report.sheet import (
    DEFAULT_LIMITS,
    MAX_CELL,
    PROBLEMS_COLUMN,
    ROW_COLUMN,
    Limits,
)
from pipeline.ingest.report.workbook import Workbook

#: Column widths of the reject workbook, in characters: fitted to the longest text, within these.
MIN_WIDTH, MAX_WIDTH, MAX_PROBLEMS_WIDTH = 6, 50, 100

_CUT_NOTE = " ... (cut by leadpipe)"
# Whole columns are scanned once (joined by a character no check looks for), so the per-cell
# work below is done only for the columns that need it.
_SEP = "\ue000"
# Each pattern starts with a literal or a single class, which the regex engine skips to
# quickly; a pattern starting with an alternation is tried at every character (4-8x slower).
# A cell :func:`pipeline.cells.is_risky` flags, searched in ``_SEP + joined``: a trigger first,
# unless it is a sign followed only by digits and phone punctuation (with at least one digit).
_RISKY = re.compile(f"{_SEP}(?:[=@\t\r\n]|[+-](?!(?=[0-9 ().,/-]*(?:{_SEP}|\\Z))[ ().,/-]*[0-9]))")
_LEADING_SPACE = re.compile(f"{_SEP}\\s")
_TRAILING_SPACE = re.compile(f"\\s{_SEP}")
_XML_CHARS = re.compile("[&<>\x00-\x08\x0b-\x1f\ufffe\uffff]")
_XML_LOOKALIKE = re.compile("_x[0-9a-fA-F]{4}_")  # kept as text by escaping its underscore


class _Dropped(Exception):
    """Thrown into the temporary files' context so they are removed, not renamed."""


class Sink:
    """The XLSX and CSV files of one writer, under temporary names until :meth:`publish`.

    Rows are written per batch. The XLSX rows go to xlsxwriter's row file (constant memory)
    as the XML its own cell path would write, built a column at a time: formats, comments,
    widths, the filter and the workbook still come from xlsxwriter, but its per-cell Python
    work (about 90 % of the time) is skipped. This leans on a few of its internals (the row
    file ``fh``, ``previous_row``, ``dim_rowmax``, ``_write_single_row``, ``_get_xf_index``);
    the tests compare the cells with xlsxwriter's own path.
    """

    def __init__(
        self, xlsx_path: Path, csv_path: Path, headers: list[str], limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.headers = headers
        self.limits = limits
        self.columns = [*headers, ROW_COLUMN, PROBLEMS_COLUMN]
        self._index = {h: i for i, h in enumerate(headers)}
        self._letters = [column_letters(c) for c in range(len(self.columns))]
        self._files = contextlib.ExitStack()
        self._wb: Any = None
        self._widths = [0] * len(self.columns)
        self._comments = 0
        self.sheets = 0
        self._last = 0  # the last row written on the current sheet (0: the header)
        try:
            tmp = self._files.enter_context(atomic_path(xlsx_path))
            fh = self._files.enter_context(
                atomic_open(csv_path, "w", encoding="utf-8-sig", newline="")
            )
            self._csv = csv.writer(fh)  # type: ignore[arg-type]
            self._csv.writerow([neutralise_csv(h) for h in self.columns])
            self._wb = wb = Workbook(
                str(tmp), {"constant_memory": True, "strings_to_formulas": False}
            )
            base = {"num_format": "@"}
            bad = {**base, "bg_color": "#FFEB9C", "font_color": "#9C0006"}
            self._formats = [  # by bad * 2 + risky
                wb.add_format(base),
                wb.add_format({**base, "quote_prefix": True}),
                wb.add_format(bad),
                wb.add_format({**bad, "quote_prefix": True}),
            ]
            self._style: dict[int, str] = {}  # style index of each format, once used
            self._head = wb.add_format({**base, "bold": True})
            self._head_q = wb.add_format({**base, "bold": True, "quote_prefix": True})
            self._ws: Any = self._new_sheet()
        except BaseException:
            self.discard()
            raise

    def write(self, batch: RejectBatch) -> None:
        """Write rows (in row order, after those written before) to both files."""
        columns = self._columns(batch)
        scans = [_Scan.of(col) for col in columns]  # each column scanned once, for both files
        self._write_csv(columns, scans)
        done = 0
        while done < len(batch):
            room = self.limits.sheet_rows - 1 - self._last
            if room == 0:  # Excel's last row: go on on a new sheet
                _fit(self._ws, self._widths, self._last)
                self._ws, self._last = self._new_sheet(), 0
                continue
            stop = min(len(batch), done + room)
            if stop - done == len(batch):
                self._write_xlsx(batch, columns, scans)
            else:  # a sheet ends inside the batch: each part is scanned again
                cols = [col[done:stop] for col in columns]
                self._write_xlsx(batch.slice(done, stop), cols, [_Scan.of(col) for col in cols])
            done = stop

    def finish(self) -> None:
        """Complete both files, still under their temporary names (the long part of the end:
        xlsxwriter assembles and compresses the workbook)."""
        _fit(self._ws, self._widths, self._last)
        self._wb.close()

    def publish(self) -> int:
        """Rename the finished files into place; the number of worksheets."""
        self._files.close()
        return self.sheets

    def commit(self) -> int:
        """Finish both files and rename them into place; the number of worksheets."""
        try:
            self.finish()
        except BaseException:
            self.discard()
            raise
        return self.publish()

    def discard(self) -> None:
        """Remove every temporary file (the workbook's row files included)."""
        for ws in self._wb.worksheets() if self._wb is not None else []:
            # xlsxwriter's own temporary file of each sheet's rows (constant memory)
            with contextlib.suppress(Exception):
                ws.row_data_fh.close()
                os.unlink(ws.row_data_filename)
        if self._wb is not None:
            self._wb.fileclosed = True  # nothing left for its destructor to complain about
        self._files.__exit__(_Dropped, _Dropped(), None)

    def _new_sheet(self) -> Any:
        self.sheets += 1
        name = "Rejects" if self.sheets == 1 else f"Rejects ({self.sheets})"
        sheet = self._wb.add_worksheet(name)
        for c, name_ in enumerate(self.columns):
            fmt = self._head_q if is_risky(name_) else self._head
            sheet.write_string(0, c, _cell(name_), fmt)
            self._widths[c] = len(name_)
        sheet.freeze_panes(1, 0)
        return sheet

    def _columns(self, batch: RejectBatch) -> list[list[str]]:
        """The batch's columns, ``_row`` and ``_problems`` included."""
        return [*batch.columns, [str(row) for row in batch.rows], batch.problem_texts()]

    def _write_csv(self, columns: list[list[str]], scans: list[_Scan]) -> None:
        safe = []
        for col, scan in zip(columns, scans, strict=True):
            risky = scan.risky
            if risky:  # neutralise_csv, on the cells that need it
                col = col.copy()
                for i in risky:
                    col[i] = "'" + col[i]
            safe.append(col)
        self._csv.writerows(zip(*safe, strict=True))

    def _write_xlsx(self, batch: RejectBatch, columns: list[list[str]], scans: list[_Scan]) -> None:
        ws, first = self._ws, self._last + 1
        n = len(batch)
        # bad cells: column -> {position in batch: messages}
        bad: dict[int, dict[int, list[str]]] = {}
        position = {row: i for i, row in enumerate(batch.rows)}
        index = self._index
        for row, column, message in zip(
            batch.problems.rows, batch.problems.columns, batch.problems.messages, strict=True
        ):
            c = index.get(column)
            if c is not None:
                bad.setdefault(c, {}).setdefault(position[row], []).append(message)
        # xlsxwriter writes its pending row (the header) and then takes comments for rows from
        # `first` on: a comment must be added before its row is written.
        ws._write_single_row(first)
        self._comment(ws, first, bad)
        numbers = [str(first + 1 + i) for i in range(n)]  # XML rows count from 1
        texts, codes, cuts = [], [], []
        for c, (col, scan) in enumerate(zip(columns, scans, strict=True)):
            text, code, cut = self._column_codes(c, col, scan, bad.get(c, {}))
            texts.append(text)
            codes.append(code)
            cuts.append(cut)
        self._number_styles(codes)
        cells = [
            self._column_xml(c, text, cut, numbers, [self._style[k] for k in code])
            for c, (text, code, cut) in enumerate(zip(texts, codes, cuts, strict=True))
        ]
        starts = [f'<row r="{r}">' for r in numbers]
        rows = zip(starts, *cells, ["</row>"] * n, strict=True)
        ws.fh.write("".join(itertools.chain.from_iterable(rows)))
        self._last = first + n - 1
        ws.dim_rowmax = max(ws.dim_rowmax or 0, self._last)
        ws.previous_row = self._last + 1  # nothing of xlsxwriter's own is pending

    def _column_codes(
        self, c: int, col: list[str], scan: _Scan, bad: dict[int, list[str]]
    ) -> tuple[list[str], list[int], _Scan]:
        """A column's texts (cut to Excel's limit), each cell's format (bad * 2 + risky) and the
        scan of the texts; widens the column to its longest text."""
        if col and max(map(len, col)) > MAX_CELL // 2:  # only then can a cell be too long
            col = [_cell(v) for v in col]
            scan = _Scan.of(col)  # a cut cell ends with a note: scanned as it is written
        self._widths[c] = max(self._widths[c], max(map(len, col), default=0))
        codes = [0] * len(col)
        for i in scan.risky:
            codes[i] = 1
        for i in bad:
            codes[i] += 2
        return col, codes, scan

    def _number_styles(self, codes: list[list[int]]) -> None:
        """Give formats first used in these rows their style index, in the order xlsxwriter's
        own cell path would (row by row): only used formats go into the workbook."""
        first: dict[int, tuple[int, int]] = {}
        for c, col in enumerate(codes):
            for k in set(col) - self._style.keys():
                at = (col.index(k), c)
                first[k] = min(first.get(k, at), at)
        for k in sorted(first, key=first.__getitem__):
            self._style[k] = str(self._formats[k]._get_xf_index())

    def _column_xml(
        self, c: int, col: list[str], scan: _Scan, numbers: list[str], styles: list[str]
    ) -> list[str]:
        """One column's cells as XML: text cells, styled, escaped as xlsxwriter would."""
        joined, clean = scan.joined, scan.clean
        if _xml_special(joined):
            if clean:  # every escape is local to a cell: the whole column at once
                joined = _xml_text(joined)
                col = joined.split(_SEP)
            else:
                col = [_xml_text(v) for v in col]
                joined = _SEP.join(col)
        pre = f'<c r="{self._letters[c]}'
        if _edge_space(joined):  # leading or trailing spaces are kept by this attribute
            return [
                f'{pre}{r}" s="{s}" t="inlineStr"><is><t{_space(v)}>{v}</t></is></c>'
                for r, s, v in zip(numbers, styles, col, strict=True)
            ]
        return [
            f'{pre}{r}" s="{s}" t="inlineStr"><is><t>{v}</t></is></c>'
            for r, s, v in zip(numbers, styles, col, strict=True)
        ]

    def _comment(self, ws: Any, first: int, bad: dict[int, dict[int, list[str]]]) -> None:
        """Comments on the bad cells, row by row, until there are ``limits.max_comments``."""
        room = self.limits.max_comments - self._comments
        if room <= 0 or not bad:
            return
        cells = sorted((i, c) for c, rows in bad.items() for i in rows)[:room]
        notes = [(first + i, c, _cell("\n".join(bad[c][i]))) for i, c in cells]
        ws.write_comments(notes, {"x_scale": 3})
        self._comments += len(cells)


def _fit(sheet: Any, widths: Sequence[int], last_row: int) -> None:
    """Columns as wide as their longest text (within limits) and a filter on the header row, so
    names, e-mails and the problem text are read without widening columns by hand."""
    for c, chars in enumerate(widths):
        cap = MAX_PROBLEMS_WIDTH if c == len(widths) - 1 else MAX_WIDTH
        sheet.set_column(c, c, min(max(chars, MIN_WIDTH) + 2, cap))
    sheet.autofilter(0, 0, max(last_row, 1), len(widths) - 1)


class _Scan(NamedTuple):
    """One column of a batch, scanned once: its cells joined, whether they are told apart in
    the joined text, and the positions of risky cells."""

    joined: str
    clean: bool
    risky: list[int]

    @classmethod
    def of(cls, col: list[str]) -> _Scan:
        joined, clean = _joined(col)
        return cls(joined, clean, _risky_cells(col, joined, clean))


def _joined(col: list[str]) -> tuple[str, bool]:
    """The column as one text, and whether its cells are told apart in it (a cell holding the
    separator itself makes the whole-column scans unsafe)."""
    joined = _SEP.join(col)
    return joined, joined.count(_SEP) == len(col) - 1


def _risky_cells(col: list[str], joined: str, clean: bool) -> list[int]:
    """Positions of the cells :func:`is_risky` flags: most columns have none, found by one scan."""
    if clean and not _RISKY.search(_SEP + joined):
        return []
    return [i for i, v in enumerate(col) if is_risky(v)]


def _xml_special(joined: str) -> bool:
    """Whether a cell of the joined column needs :func:`_xml_text`'s escapes."""
    return bool(_XML_CHARS.search(joined) or ("_x" in joined and _XML_LOOKALIKE.search(joined)))


def _edge_space(joined: str) -> bool:
    """Whether a cell of the joined column starts or ends with whitespace."""
    return bool(
        joined[:1].isspace()
        or joined[-1:].isspace()
        or _LEADING_SPACE.search(joined)
        or _TRAILING_SPACE.search(joined)
    )


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _cell(text: str) -> str:
    """``text`` within Excel's cell limit (counted in UTF-16 units, as Excel does)."""
    if len(text) <= MAX_CELL // 2 or _utf16_len(text) <= MAX_CELL:
        return text
    keep = MAX_CELL - len(_CUT_NOTE)
    cut = text[:keep]
    over = _utf16_len(cut) - keep  # characters beyond U+FFFF count twice
    return (cut[: len(cut) - over] if over > 0 else cut) + _CUT_NOTE


def _xml_text(text: str) -> str:
    """A cell's text in the sheet XML: control characters as ``_xHHHH_``, XML escaped."""
    text = XMLwriter._escape_control_characters(text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _space(text: str) -> str:
    return ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
