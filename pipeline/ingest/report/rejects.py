"""Reject files: the rows to fix, as XLSX and CSV, in row order, safe to open in Excel.

``<stamp>_<file>.rejects.xlsx`` has the original columns in their order, every cell a text
cell, each bad cell highlighted with a comment saying what is wrong (the first
:data:`MAX_COMMENTS`; later ones are highlighted only), plus ``_row`` (the row in the original
file) and ``_problems`` (plain words). ``.rejects.csv`` (UTF-8 with BOM, so Excel
shows Danish letters) holds the same rows. No cell can run as a formula (:mod:`pipeline.cells`):
XLSX cells are text and risky ones carry Excel's quote prefix; CSV cells get an apostrophe.

Rows are spooled per batch to a temporary SQLite file (the spool keeps memory flat whatever
the file's size). While batches arrive in row order, the normal case, a background thread
spools them and writes them straight into both files, so writing overlaps reading and
checking; told the rows have ended (:meth:`RejectWriter.end_rows`) it completes the workbook
while the caller checks the file once more, and :meth:`RejectWriter.close` only renames. A row
that arrives out of order or again (API refusals come after validation) stops that stream:
the files are then written at close from the spool, sorted. Either way each file is written
under a temporary name and then renamed, so a reader never sees half a reject file. The
worksheet rows are written as XML directly into xlsxwriter's row file, a column at a time
(see :class:`_Sink`). Fixed and dropped again, a reject file is valid input: the helper
columns are ignored (:mod:`pipeline.ingest.map`).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import os
import queue
import re
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import xlsxwriter
from xlsxwriter.xmlwriter import XMLwriter

from pipeline.cells import column_letters, is_risky, neutralise_csv
from pipeline.files import atomic_open, atomic_path
from pipeline.ingest.validate.checks import RowProblem

__all__ = ["PROBLEMS_COLUMN", "ROW_COLUMN", "Reject", "RejectWriter"]

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
#: Rows per batch handed to the writer thread (and per read of the spool), and batches that
#: may wait for it: together they bound the memory the stream holds, whatever the chunk size.
BATCH_ROWS = 5_000
QUEUE_BATCHES = 4

#: A rejected row: its row number, its cells in header order, its problems.
Reject = tuple[int, list[str], list[RowProblem]]

_CUT_NOTE = " ... (cut by leadpipe)"
# Whole columns are scanned once (joined by a character no check looks for), so the per-cell
# work below is done only for the columns that need it.
_SEP = "\ue000"
# A cell :func:`pipeline.cells.is_risky` flags: a trigger first, unless it is a sign followed
# only by digits and phone punctuation (with at least one digit).
_RISKY = re.compile(
    f"(?:^|{_SEP})(?:[=@\t\r\n]|[+-](?!(?=[0-9 ().,/-]*(?:{_SEP}|\\Z))[ ().,/-]*[0-9]))"
)
_EDGE_SPACE = re.compile(f"(?:^|{_SEP})\\s|\\s(?:{_SEP}|\\Z)")
_XML_SPECIAL = re.compile("[&<>\x00-\x08\x0b-\x1f\ufffe\uffff]|_x[0-9a-fA-F]{4}_")


class RejectWriter:
    """Collects rejected rows (any order) and writes the XLSX + CSV pair by :meth:`close`."""

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
        # Used by one thread at a time: the writer thread while it streams, else this one.
        self._db = sqlite3.connect(self._spool_path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        cols = "".join(f", c{i} TEXT" for i in range(len(self.headers)))
        self._db.execute(f"CREATE TABLE cells (row INTEGER PRIMARY KEY{cols})")
        # rowid keeps the order problems were added in (a row's merged problems in order)
        self._db.execute(
            "CREATE TABLE problems (row INTEGER, col TEXT, value TEXT, rule TEXT, msg TEXT)"
        )
        marks = ", ?" * len(self.headers)
        self._insert_cells = f"INSERT OR IGNORE INTO cells VALUES (?{marks})"  # noqa: S608
        self.count = 0
        self.sheets = 0  #: worksheets of the reject workbook (after :meth:`close`)
        self._closed = False
        self._last = -1  # the highest row added so far
        self._stream: _Stream | None = None
        self._streaming = True  # until a row arrives out of order or again
        self._rows_ended = False  # told no more rows come (they still may: then no stream)

    def add(self, row: int, values: Sequence[str], problems: Sequence[RowProblem]) -> None:
        """Add a row (original values, in header order) and its problems.

        Adding the same row again merges the problems (e.g. an API refusal after validation).
        """
        cells = ["" if v is None else str(v) for v in values]
        self.add_many([(row, cells, list(problems))])

    def add_many(self, rows: Iterable[tuple[int, Sequence[str], Sequence[RowProblem]]]) -> None:
        """Add rows (cells as text, one per header) with their problems, in one transaction.

        Rows may come in any order; a row added again (here or earlier) keeps its first cells
        and gets the new problems after its earlier ones.
        """
        width = len(self.headers)
        batch: dict[int, Reject] = {}
        for row, cells, problems in rows:
            got = batch.get(row)
            if got is not None:
                got[2].extend(problems)
                continue
            cells = list(cells)
            if len(cells) != width:  # a refusal of a row seen in an earlier chunk: no cells
                cells = (cells + [""] * width)[:width]
            batch[row] = (row, cells, list(problems))
        if not batch:
            return
        recs = [batch[r] for r in sorted(batch)]
        in_order = recs[0][0] > self._last
        self._last = max(self._last, recs[-1][0])
        if in_order and self._streaming and not self._rows_ended:  # after all earlier rows
            if self._stream is None:
                self._stream = _Stream(self._spool, self._new_sink)
            for i in range(0, len(recs), BATCH_ROWS):  # spooled and written by the thread
                self._stream.put(recs[i : i + BATCH_ROWS])
            self.count += len(recs)
            return
        if self._streaming:  # out of order or again: the files are written from the spool
            self._streaming = False
            stream, self._stream = self._stream, None
            if stream is not None:
                stream.stop()  # everything handed over is spooled once this returns
        self.count += self._spool(recs)

    def end_rows(self) -> None:
        """No more rows come: the writer thread completes the files (under temporary names)
        while the caller goes on, e.g. checks the input once more; :meth:`close` then only
        puts them in place (or :meth:`abort` removes them). A row added after all is still
        written: the files are then written from the spool at close.
        """
        self._rows_ended = True
        if self._stream is not None:
            self._stream.end()

    def close(self) -> list[Path]:
        """Write both files (row order, atomically); the paths written (none if no rows).

        An error of the writer thread is raised here.
        """
        if self._closed:
            return []
        self._closed = True
        try:
            if self.count == 0:
                self._drop_stream()
                return []
            if self._stream is not None:
                stream, self._stream = self._stream, None
                self.sheets = stream.finish()
            else:
                sink = self._new_sink()
                try:
                    for recs in self._spooled():
                        sink.write(recs)
                except BaseException:
                    sink.discard()
                    raise
                self.sheets = sink.commit()
            return [self.xlsx_path, self.csv_path]
        finally:
            self._drop_spool()

    def abort(self) -> None:
        """Stop the writer thread and drop everything: no file is written."""
        self._closed = True
        try:
            self._drop_stream()
        finally:
            self._drop_spool()

    def _spool(self, recs: Sequence[Reject]) -> int:
        """Store rows in the spool (one transaction); how many of them were new."""
        with self._db:
            cur = self._db.executemany(self._insert_cells, [(r, *c) for r, c, _ in recs])
            added: int = cur.rowcount  # a row spooled before is ignored, its problems added
            self._db.executemany(
                "INSERT INTO problems VALUES (?, ?, ?, ?, ?)",
                [(r, p.column, p.value, p.rule, p.message) for r, _, ps in recs for p in ps],
            )
        return added

    def _new_sink(self) -> _Sink:
        return _Sink(self.xlsx_path, self.csv_path, self.headers)

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()

    def _drop_spool(self) -> None:
        self._db.close()
        with contextlib.suppress(OSError):
            self._spool_path.unlink()

    def _spooled(self) -> Iterator[list[Reject]]:
        """The spooled rows in row order, each with its problems in the order they came."""
        problems = self._db.execute(
            "SELECT row, col, value, rule, msg FROM problems ORDER BY row, rowid"
        )
        pending = next(problems, None)
        batch: list[Reject] = []
        for row, *cells in self._db.execute("SELECT * FROM cells ORDER BY row"):
            ps: list[RowProblem] = []
            while pending is not None and pending[0] == row:
                ps.append(RowProblem(*pending))
                pending = next(problems, None)
            batch.append((row, cells, ps))
            if len(batch) == BATCH_ROWS:
                yield batch
                batch = []
        if batch:
            yield batch


class _Stream:
    """A writer thread fed batches in row order through a bounded queue: it spools each batch
    and writes it to the files, which this (the calling) thread puts in place or removes.

    The thread never raises: an error is kept and raised by :meth:`finish` (or, for the spool,
    by :meth:`stop`); a failed step is skipped from then on, and the queue is always drained,
    so a producer never blocks on a failed writer.
    """

    def __init__(
        self, spool: Callable[[list[Reject]], object], make_sink: Callable[[], _Sink]
    ) -> None:
        self._queue: queue.Queue[list[Reject] | None] = queue.Queue(maxsize=QUEUE_BATCHES)
        self._writing = True  # cleared by stop(): spool only, no files
        self._dropped = False  # set by cancel(): nothing more at all
        self._ended = False  # the end of the rows is queued
        self._spool_error: BaseException | None = None
        self._file_error: BaseException | None = None
        self._sink: _Sink | None = None
        self._thread = threading.Thread(
            target=self._run, args=(spool, make_sink), name="reject-writer", daemon=True
        )
        self._thread.start()

    def put(self, batch: list[Reject]) -> None:
        """Hand a batch over (waits while the queue is full)."""
        if self._spool_error is None:
            self._queue.put(batch)

    def end(self) -> None:
        """No more batches: the thread completes the files (temporary names) meanwhile."""
        if not self._ended:
            self._ended = True
            self._queue.put(None)

    def finish(self) -> int:
        """Wait for the files and put them in place; the number of worksheets."""
        sink = self._join()
        error = self._spool_error or self._file_error
        if sink is None or error is not None:
            if sink is not None:
                sink.discard()
            raise error or RuntimeError("the reject writer wrote no rows")
        return sink.publish()

    def stop(self) -> None:
        """Spool what was handed over, remove the files (they are written from the spool)."""
        self._writing = False
        sink = self._join()
        if sink is not None:
            sink.discard()
        if self._spool_error is not None:
            raise self._spool_error

    def cancel(self) -> None:
        """Drop what is queued and remove the files (an error is dropped with them)."""
        self._dropped = True
        sink = self._join()
        if sink is not None:
            sink.discard()

    def _join(self) -> _Sink | None:
        self.end()
        self._thread.join()
        sink, self._sink = self._sink, None
        return sink

    def _run(self, spool: Callable[[list[Reject]], object], make_sink: Callable[[], _Sink]) -> None:
        while (batch := self._queue.get()) is not None:
            if self._dropped or self._spool_error is not None:
                continue  # drain only
            try:
                spool(batch)
            except BaseException as exc:  # kept for finish() and stop(): never lost
                self._spool_error = exc
                continue
            if not self._writing or self._file_error is not None:
                continue
            try:
                if self._sink is None:
                    self._sink = make_sink()
                self._sink.write(batch)
            except BaseException as exc:  # kept for finish(); the spool goes on
                self._file_error = exc
        if self._sink is None or not self._writing or self._dropped:
            return
        try:
            if self._spool_error is None and self._file_error is None:
                self._sink.finish()
        except BaseException as exc:  # kept for finish()
            self._file_error = exc


class _Dropped(Exception):
    """Thrown into the temporary files' context so they are removed, not renamed."""


class _Sink:
    """The XLSX and CSV files of one writer, under temporary names until :meth:`publish`.

    Rows are written per batch. The XLSX rows go to xlsxwriter's row file (constant memory)
    as the XML its own cell path would write, built a column at a time: formats, comments,
    widths, the filter and the workbook still come from xlsxwriter, but its per-cell Python
    work (about 90 % of the time) is skipped. This leans on a few of its internals (the row
    file ``fh``, ``previous_row``, ``dim_rowmax``, ``_write_single_row``, ``_get_xf_index``);
    the tests compare the cells with xlsxwriter's own path.
    """

    def __init__(self, xlsx_path: Path, csv_path: Path, headers: list[str]) -> None:
        self.headers = headers
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
            self._wb = wb = xlsxwriter.Workbook(
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

    def write(self, batch: Sequence[Reject]) -> None:
        """Write rows (in row order, after those written before) to both files."""
        columns = self._columns(batch)
        self._write_csv(columns)
        done = 0
        while done < len(batch):
            room = SHEET_ROWS - 1 - self._last
            if room == 0:  # Excel's last row: go on on a new sheet
                _fit(self._ws, self._widths, self._last)
                self._ws, self._last = self._new_sheet(), 0
                continue
            part = slice(done, min(len(batch), done + room))
            self._write_xlsx(batch[part], [col[part] for col in columns])
            done = part.stop

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

    def _columns(self, batch: Sequence[Reject]) -> list[list[str]]:
        """The batch column by column, ``_row`` and ``_problems`` included."""
        cols = [list(c) for c in zip(*(cells for _, cells, _ in batch), strict=True)]
        if not cols:  # a file without columns: nothing to transpose
            cols = [[] for _ in self.headers]
        cols.append([str(row) for row, _, _ in batch])
        cols.append([_problems_text(ps) for _, _, ps in batch])
        return cols

    def _write_csv(self, columns: list[list[str]]) -> None:
        safe = []
        for col in columns:
            risky = _risky_cells(col, *_joined(col))
            if risky:  # neutralise_csv, on the cells that need it
                col = col.copy()
                for i in risky:
                    col[i] = "'" + col[i]
            safe.append(col)
        self._csv.writerows(zip(*safe, strict=True))

    def _write_xlsx(self, batch: Sequence[Reject], columns: list[list[str]]) -> None:
        ws, first = self._ws, self._last + 1
        n = len(batch)
        # bad cells: column -> {position in batch: messages}
        bad: dict[int, dict[int, list[str]]] = {}
        for i, (_, _, problems) in enumerate(batch):
            for p in problems:
                c = self._index.get(p.column)
                if c is not None:
                    bad.setdefault(c, {}).setdefault(i, []).append(p.message)
        # xlsxwriter writes its pending row (the header) and then takes comments for rows from
        # `first` on: a comment must be added before its row is written.
        ws._write_single_row(first)
        self._comment(ws, first, bad)
        numbers = [str(first + 1 + i) for i in range(n)]  # XML rows count from 1
        texts, codes = [], []
        for c, col in enumerate(columns):
            text, code = self._column_codes(c, col, bad.get(c, {}))
            texts.append(text)
            codes.append(code)
        self._number_styles(codes)
        cells = [
            self._column_xml(c, text, numbers, [self._style[k] for k in code])
            for c, (text, code) in enumerate(zip(texts, codes, strict=True))
        ]
        starts = [f'<row r="{r}">' for r in numbers]
        rows = zip(starts, *cells, ["</row>"] * n, strict=True)
        ws.fh.write("".join(itertools.chain.from_iterable(rows)))
        self._last = first + n - 1
        ws.dim_rowmax = max(ws.dim_rowmax or 0, self._last)
        ws.previous_row = self._last + 1  # nothing of xlsxwriter's own is pending

    def _column_codes(
        self, c: int, col: list[str], bad: dict[int, list[str]]
    ) -> tuple[list[str], list[int]]:
        """A column's texts (cut to Excel's limit) and each cell's format (bad * 2 + risky);
        widens the column to its longest text."""
        if col and max(map(len, col)) > MAX_CELL // 2:  # only then can a cell be too long
            col = [_cell(v) for v in col]
        self._widths[c] = max(self._widths[c], max(map(len, col), default=0))
        codes = [0] * len(col)
        for i in _risky_cells(col, *_joined(col)):
            codes[i] = 1
        for i in bad:
            codes[i] += 2
        return col, codes

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
        self, c: int, col: list[str], numbers: list[str], styles: list[str]
    ) -> list[str]:
        """One column's cells as XML: text cells, styled, escaped as xlsxwriter would."""
        joined, clean = _joined(col)
        if _XML_SPECIAL.search(joined):
            if clean:  # every escape is local to a cell: the whole column at once
                joined = _xml_text(joined)
                col = joined.split(_SEP)
            else:
                col = [_xml_text(v) for v in col]
                joined = _SEP.join(col)
        pre = f'<c r="{self._letters[c]}'
        if _EDGE_SPACE.search(joined):  # leading or trailing spaces are kept by this attribute
            return [
                f'{pre}{r}" s="{s}" t="inlineStr"><is><t{_space(v)}>{v}</t></is></c>'
                for r, s, v in zip(numbers, styles, col, strict=True)
            ]
        return [
            f'{pre}{r}" s="{s}" t="inlineStr"><is><t>{v}</t></is></c>'
            for r, s, v in zip(numbers, styles, col, strict=True)
        ]

    def _comment(self, ws: Any, first: int, bad: dict[int, dict[int, list[str]]]) -> None:
        """Comments on the bad cells, row by row, until there are :data:`MAX_COMMENTS`."""
        room = MAX_COMMENTS - self._comments
        if room <= 0 or not bad:
            return
        cells = sorted((i, c) for c, rows in bad.items() for i in rows)[:room]
        for i, c in cells:
            ws.write_comment(first + i, c, _cell("\n".join(bad[c][i])), {"x_scale": 3})
        self._comments += len(cells)


def _fit(sheet: Any, widths: Sequence[int], last_row: int) -> None:
    """Columns as wide as their longest text (within limits) and a filter on the header row, so
    names, e-mails and the problem text are read without widening columns by hand."""
    for c, chars in enumerate(widths):
        cap = MAX_PROBLEMS_WIDTH if c == len(widths) - 1 else MAX_WIDTH
        sheet.set_column(c, c, min(max(chars, MIN_WIDTH) + 2, cap))
    sheet.autofilter(0, 0, max(last_row, 1), len(widths) - 1)


def _problems_text(problems: Sequence[RowProblem]) -> str:
    return "\n".join(p.message for p in problems)


def _joined(col: list[str]) -> tuple[str, bool]:
    """The column as one text, and whether its cells are told apart in it (a cell holding the
    separator itself makes the whole-column scans unsafe)."""
    joined = _SEP.join(col)
    return joined, joined.count(_SEP) == len(col) - 1


def _risky_cells(col: list[str], joined: str, clean: bool) -> list[int]:
    """Positions of the cells :func:`is_risky` flags: most columns have none, found by one scan."""
    if clean and not _RISKY.search(joined):
        return []
    return [i for i, v in enumerate(col) if is_risky(v)]


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
