"""The pass over a file's rows: check each chunk, deliver its valid rows, collect the rejects.

The middle step of :func:`pipeline.ingest.run.ingest_file`. The file streams in chunks (memory
stays flat); each is validated, its valid rows go to the :class:`~pipeline.ingest.deliver.
delivery.Delivery` chosen for the file, and its rejected rows (and the API's refusals) to the
reject writer. Before each chunk is delivered the file must still be the one that was hashed;
a file that changed raises :class:`~pipeline.errors.FileChanged` and no reject file is written
(see ``docs/dropfolder.md``). A stop request ends the pass after the chunk at hand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import FileChanged, InputError
from pipeline.ingest.deliver.delivery import Delivery
from pipeline.ingest.opening import Opened
from pipeline.ingest.problems import Problems, RowProblem
from pipeline.ingest.report.rejects import RejectWriter
from pipeline.ingest.rows import add_rejects, refusal_problems
from pipeline.ingest.validate.checks import Validator
from pipeline.ledger import FileKey, Ledger, RowState

#: Row states of rows that reached the API (or were handed a lead): never in a not-sent file.
SENT_STATES = [
    RowState.ACCEPTED,
    RowState.MOVED,
    RowState.REFUSED,
    RowState.DUPLICATE,
    RowState.UNCERTAIN,
]

#: progress(stage, done, total): stage is "reading" (rows read and checked so far, after each
#: chunk; total None), "rejected" (rows that failed the checks so far), "uploading" (the
#: uploader's rows of the chunk at hand) or "read" (the file was read to the end: total exact).
IngestProgress = Callable[[str, int, int | None], None]

#: repeated rows named on the receipt (the rest are counted); problems shown as a sample
MAX_REPEATS_NAMED = 20
MAX_SAMPLE = 5


@dataclass(frozen=True)
class RejectPlace:
    """Where the pass writes the reject files: ``<folder>/<base>.rejects.xlsx`` (and ``.csv``)."""

    folder: Path
    base: str
    tmp: Path  #: the reject writer's spool

    def writer(self, headers: list[str]) -> RejectWriter:
        """A reject writer for a file with these columns."""
        return RejectWriter(
            self.folder / f"{self.base}.rejects.xlsx",
            self.folder / f"{self.base}.rejects.csv",
            headers,
            tmp_dir=self.tmp,
        )


@dataclass
class Tally:
    """What the pass read and checked (the delivery keeps where the valid rows stand)."""

    data_rows: int = 0  #: rows read, blank rows apart
    rejected: int = 0  #: rows that failed validation
    repeats: int = 0  #: rows repeating an earlier row of the file (neither sent nor rejected)
    repeat_problems: list[RowProblem] = field(default_factory=list)  #: the first ones
    sample: list[str] = field(default_factory=list)  #: the first problems, in words
    #: asked to stop before the end: the rest of the file was not read, no reject file written
    interrupted: bool = False
    reject_files: list[Path] = field(default_factory=list)  #: none when no row was rejected
    reject_rows: int = 0  #: rows in the reject files
    reject_sheets: int = 0  #: worksheets of the reject workbook


def read_and_deliver(
    opened: Opened,
    delivery: Delivery,
    rejects: RejectPlace,
    *,
    stop: threading.Event | None = None,
    progress: IngestProgress | None = None,
) -> Tally:
    """Check and deliver every chunk of the file (until asked to stop); write the reject files.

    Raises FileChanged when the file changed while it was read (the delivery hands the rows it
    sent over to the file's complete version), InputError when it turned out unreadable.
    """
    file, table = opened.file, opened.table
    tally = Tally()
    validator = Validator(
        opened.schema,
        opened.mapping,
        semantics=opened.semantics,
        expected_rows=opened.table.expected_rows,
    )
    chunks = validator.validate_all(table.chunks())
    writer = rejects.writer(table.headers)  # last: it starts the reject files' process
    changed = ""
    try:
        for chunk, result in chunks:
            if not file.identity.stat_matches(file.path):  # a copy resumed: send nothing more
                changed = file.identity.changes(file.path) or "it changed while it was read"
                break
            tally.data_rows += len(chunk)
            tally.rejected += result.rejected_rows
            tally.repeats += len(result.duplicates)
            room = MAX_REPEATS_NAMED - len(tally.repeat_problems)
            tally.repeat_problems.extend(result.duplicates[:room])
            tally.sample.extend(result.problems.messages[: MAX_SAMPLE - len(tally.sample)])
            refusals = delivery.deliver(result)  # records the rows; sends while not halted
            add_rejects(writer, chunk, table.headers, result.problems, refusals)
            if progress is not None:
                progress("reading", tally.data_rows, None)
                progress("rejected", tally.rejected, None)
            if stop is not None and stop.is_set():
                # Read no further: on a huge file the rest could outlast the shutdown budget.
                # The rerun reads the file again; the ledger keeps it from sending twice.
                tally.interrupted = True
                break
        if not changed and not tally.interrupted:
            if progress is not None:  # read to the end: the total is known now
                progress("read", tally.data_rows, tally.data_rows)
            writer.end_rows()  # the reject files are completed while the file is hashed again
            # read to the end: still the same file? (a preview sends nothing: no second hash)
            changed = file.identity.changes(file.path, content=delivery.sends)
        if changed:
            writer.abort()
            delivery.changed(f"still being written: {changed}")
            raise FileChanged(changed, path=file.path)
        if tally.interrupted:  # no reject file: the rerun writes the whole one
            writer.abort()
        else:
            tally.reject_files = writer.close()
            tally.reject_rows, tally.reject_sheets = writer.count, writer.sheets
    except InputError as exc:
        writer.abort()
        file.raise_if_changed(exc, delivery.changed)
        raise
    except BaseException:
        writer.abort()
        raise
    finally:
        chunks.close()  # stops the helper thread and releases the file when reading stopped early
        validator.close()  # frees the duplicate index now, not whenever it is collected
    return tally


@dataclass(frozen=True)
class NotSent:
    """A cancelled file's unsent rows, written in the reject files' format."""

    files: list[Path]  #: ``<base>.not-sent.xlsx`` and ``.csv``; none when every row was sent
    rows: int  #: rows in them
    data_rows: int  #: data rows of the whole file
    blank_rows: int
    repeats: int = 0  #: rows repeating an earlier row of the file: in neither place


def write_not_sent(
    opened: Opened, ledger: Ledger, key: FileKey, place: RejectPlace, text: str
) -> NotSent:
    """Read the file again; every row the ledger does not hold as sent goes to the not-sent file.

    ``_problems`` of each row is ``not sent: <text>`` (e.g. "cancelled by ... at ..."), after
    the row's own problems when it failed the checks (what to fix before dropping it again).
    Rows HeroBase refused are in it too, with its reasons (they are not in HeroBase; the
    receipt counts them as refused, not as not sent). Rows that reached the API otherwise
    (uploaded, duplicate) or may have (uncertain) are not, nor rows that repeat an earlier row
    of the file (never sent on their own): dropping the file again can never send a lead twice
    (docs/dropfolder.md).
    """
    refused = {rec.row: rec for rec in ledger.rows(key, [RowState.REFUSED])}
    sent = {rec.row for rec in ledger.rows(key, SENT_STATES)} - refused.keys()
    header_of = opened.header_of
    table = opened.table
    validator = Validator(
        opened.schema,
        opened.mapping,
        semantics=opened.semantics,
        expected_rows=opened.table.expected_rows,
    )
    chunks = validator.validate_all(table.chunks())
    writer = place.writer(table.headers)  # last: it starts the reject files' process
    data_rows = rows = repeated = 0
    try:
        for chunk, result in chunks:
            data_rows += len(chunk)
            repeats = {p.row for p in result.duplicates}
            repeated += len(repeats)
            found: dict[int, list[RowProblem]] = {}
            for p in result.problems:
                found.setdefault(p.row, []).append(p)
            todo = [
                r
                for r in (int(r) for r in chunk["_row"].tolist())
                if r not in sent and r not in repeats
            ]
            problems = Problems.of(
                p
                for r in todo
                for p in (
                    refusal_problems(refused[r], header_of, {})
                    if r in refused
                    else [*found.get(r, []), RowProblem(r, "", "", "not_sent", f"not sent: {text}")]
                )
            )
            add_rejects(writer, chunk, table.headers, problems, {})
            rows += sum(1 for r in todo if r not in refused)
        files = writer.close()  # none when every row was sent
    except BaseException:
        writer.abort()
        raise
    finally:
        chunks.close()
        validator.close()
    return NotSent(files, rows, data_rows, int(table.blank_rows), repeated)
