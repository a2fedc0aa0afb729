"""Reject files: the rows to fix, as XLSX and CSV, in row order, safe to open in Excel.

``<stamp>_<file>.rejects.xlsx`` has the original columns in their order, every cell a text
cell, each bad cell highlighted with a comment saying what is wrong (the first
:data:`MAX_COMMENTS`; later ones are highlighted only), plus ``_row`` (the row in the original
file) and ``_problems`` (plain words). ``.rejects.csv`` (UTF-8 with BOM, so Excel
shows Danish letters) holds the same rows. No cell can run as a formula (:mod:`pipeline.cells`):
XLSX cells are text and risky ones carry Excel's quote prefix; CSV cells get an apostrophe.

Rows are spooled per batch to a temporary SQLite file (the spool keeps memory flat whatever
the file's size). While batches arrive in row order, the normal case, a background thread
spools them and hands them to the files' writer, so writing overlaps reading and
checking; told the rows have ended (:meth:`RejectWriter.end_rows`) it completes the workbook
while the caller checks the file once more, and :meth:`RejectWriter.close` only renames. A row
that arrives out of order or again (API refusals come after validation) stops that stream:
the files are then written at close from the spool, sorted. Either way each file is written
under a temporary name and then renamed, so a reader never sees half a reject file. The
files themselves are written by :class:`~pipeline.ingest.report.sink.Sink`: while streaming,
in a child process (:mod:`pipeline.ingest.report.sink_process`; the work then runs on another
core instead of taking turns with reading and checking for the interpreter lock), else in
this one. Fixed and dropped again, a reject file is valid input: the helper
columns are ignored (:mod:`pipeline.ingest.map`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from pipeline.ingest.problems import Problems, RowProblem
from pipeline.ingest.report.batch import Reject, RejectBatch
from pipeline.ingest.report.sheet import (
    MAX_CELL,
    MAX_COMMENTS,
    PROBLEMS_COLUMN,
    ROW_COLUMN,
    SHEET_ROWS,
    Limits,
)
from pipeline.ingest.report.sink_process import ChildGone, ChildSink, stop_child, take_child

if TYPE_CHECKING:
    from pipeline.ingest.report.sink import Sink

__all__ = [
    "MAX_CELL",
    "MAX_COMMENTS",
    "PROBLEMS_COLUMN",
    "ROW_COLUMN",
    "SHEET_ROWS",
    "Reject",
    "RejectBatch",
    "RejectWriter",
]

log = logging.getLogger("leadpipe.ingest")

#: Rows per batch handed to the writer thread (and per read of the spool), and batches that
#: may wait for it: together they bound the memory the stream holds, whatever the chunk size.
BATCH_ROWS = 5_000
QUEUE_BATCHES = 4

#: Where a streamed writer writes the files: a child process (the default) or a thread.
WriterKind = Literal["process", "thread"]


class FileSink(Protocol):
    """What the writer thread writes through: a :class:`Sink` or a :class:`ChildSink`."""

    def write(self, batch: RejectBatch) -> None: ...
    def finish(self) -> None: ...
    def publish(self) -> int: ...
    def discard(self) -> None: ...


class RejectWriter:
    """Collects rejected rows (any order) and writes the XLSX + CSV pair by :meth:`close`."""

    def __init__(
        self,
        xlsx_path: Path,
        csv_path: Path,
        headers: Sequence[str],
        *,
        tmp_dir: Path,
        writer: WriterKind = "process",
    ) -> None:
        self._writer: WriterKind = writer
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
        # The files' process is started now, so its start overlaps reading the first rows;
        # it is given the files with the first rejected rows, or stopped unused.
        self._child: subprocess.Popen[bytes] | None = None
        if writer == "process":
            with contextlib.suppress(ChildGone):  # tried again, and said, at the first rows
                self._child = take_child()
                # a writer dropped without close() or abort() (its caller failed) ends it too
                weakref.finalize(self, stop_child, self._child)

    def add(self, row: int, values: Sequence[str], problems: Sequence[RowProblem]) -> None:
        """Add a row (original values, in header order) and its problems.

        Adding the same row again merges the problems (e.g. an API refusal after validation).
        """
        cells = ["" if v is None else str(v) for v in values]
        self.add_many([(row, cells, list(problems))])

    def add_many(self, rows: Iterable[Reject]) -> None:
        """Add rows (cells as text, one per header) with their problems, in one transaction.

        Rows may come in any order; a row added again (here or earlier) keeps its first cells
        and gets the new problems after its earlier ones.
        """
        self.add_batch(RejectBatch.of(rows, len(self.headers)))

    def add_batch(self, batch: RejectBatch) -> None:
        """Add a batch of rows (see :meth:`add_many`), as the checks of a chunk give them."""
        if len(batch.columns) != len(self.headers):
            raise ValueError(f"{len(batch.columns)} columns for {len(self.headers)} headers")
        if not batch.rows:
            return
        in_order = batch.rows[0] > self._last
        self._last = max(self._last, batch.rows[-1])
        if in_order and self._streaming and not self._rows_ended:  # after all earlier rows
            if self._stream is None:
                self._stream = _Stream(self._spool, self._stream_sink)
            for i in range(0, len(batch), BATCH_ROWS):  # spooled and written by the thread
                self._stream.put(batch.slice(i, i + BATCH_ROWS))
            self.count += len(batch)
            return
        if self._streaming:  # out of order or again: the files are written from the spool
            self._streaming = False
            stream, self._stream = self._stream, None
            if stream is not None:
                stream.stop()  # everything handed over is spooled once this returns
        self.count += self._spool(batch)

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

    def _spool(self, batch: RejectBatch) -> int:
        """Store rows in the spool (one transaction); how many of them were new."""
        with self._db:
            cur = self._db.executemany(
                self._insert_cells, zip(batch.rows, *batch.columns, strict=True)
            )
            added: int = cur.rowcount  # a row spooled before is ignored, its problems added
            self._db.executemany(
                "INSERT INTO problems VALUES (?, ?, ?, ?, ?)",
                zip(*batch.problems.lists(), strict=True),
            )
        return added

    def _limits(self) -> Limits:
        return Limits(SHEET_ROWS, MAX_COMMENTS)

    def _new_sink(self) -> Sink:
        # the files in this process (xlsxwriter is loaded only then: usually the child writes)
        from pipeline.ingest.report.sink import Sink

        return Sink(self.xlsx_path, self.csv_path, self.headers, self._limits())

    def _stream_sink(self) -> FileSink:
        """The streamed files' writer: a child process, or this process when none starts."""
        if self._writer == "process":
            try:
                child, self._child = self._child, None
                return ChildSink(
                    self.xlsx_path, self.csv_path, self.headers, self._limits(), process=child
                )
            except ChildGone as exc:
                log.warning("%s; writing the reject files in this process instead", exc)
        return self._new_sink()

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()

    def _drop_spool(self) -> None:
        """Remove the spool, and stop the files' process if no rows needed it (the writer
        thread has ended: the caller joined it)."""
        child, self._child = self._child, None
        if child is not None:
            stop_child(child)
        self._db.close()
        with contextlib.suppress(OSError):
            self._spool_path.unlink()

    def _spooled(self) -> Iterator[RejectBatch]:
        """The spooled rows in row order, each with its problems in the order they came."""
        problems = self._db.execute(
            "SELECT row, col, value, rule, msg FROM problems ORDER BY row, rowid"
        )
        pending = next(problems, None)
        cells = self._db.execute("SELECT * FROM cells ORDER BY row")
        while chunk := cells.fetchmany(BATCH_ROWS):
            last = chunk[-1][0]
            found = []
            while pending is not None and pending[0] <= last:
                found.append(pending)
                pending = next(problems, None)
            rows, *columns = (list(c) for c in zip(*chunk, strict=True))
            yield RejectBatch(rows, columns, Problems.of(map(RowProblem._make, found)))


class _Stream:
    """A writer thread fed batches in row order through a bounded queue: it writes each batch
    to the files (handing it to their process first, so that process starts on it at once) and
    spools it; this (the calling) thread puts the files in place or removes them.

    The thread never raises: an error is kept and raised by :meth:`finish` (or, for the spool,
    by :meth:`stop`); a failed step is skipped from then on, and the queue is always drained,
    so a producer never blocks on a failed writer.
    """

    def __init__(
        self, spool: Callable[[RejectBatch], object], make_sink: Callable[[], FileSink]
    ) -> None:
        self._queue: queue.Queue[RejectBatch | None] = queue.Queue(maxsize=QUEUE_BATCHES)
        self._writing = True  # cleared by stop(): spool only, no files
        self._dropped = False  # set by cancel(): nothing more at all
        self._ended = False  # the end of the rows is queued
        self._spool_error: BaseException | None = None
        self._file_error: BaseException | None = None
        self._sink: FileSink | None = None
        self._thread = threading.Thread(
            target=self._run, args=(spool, make_sink), name="reject-writer", daemon=True
        )
        self._thread.start()

    def put(self, batch: RejectBatch) -> None:
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

    def _join(self) -> FileSink | None:
        self.end()
        self._thread.join()
        sink, self._sink = self._sink, None
        return sink

    def _run(
        self, spool: Callable[[RejectBatch], object], make_sink: Callable[[], FileSink]
    ) -> None:
        while (batch := self._queue.get()) is not None:
            if self._dropped or self._spool_error is not None:
                continue  # drain only
            # the files first: their process starts on the batch while this thread spools it
            if self._writing and self._file_error is None:
                try:
                    if self._sink is None:
                        self._sink = make_sink()
                    self._sink.write(batch)
                except BaseException as exc:  # kept for finish(); the spool goes on
                    self._file_error = exc
            try:
                spool(batch)
            except BaseException as exc:  # kept for finish() and stop(): never lost
                self._spool_error = exc
        if self._sink is None or not self._writing or self._dropped:
            return
        try:
            if self._spool_error is None and self._file_error is None:
                self._sink.finish()
        except BaseException as exc:  # kept for finish()
            self._file_error = exc
