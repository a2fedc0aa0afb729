"""rejects.py: rows streamed by the writer thread, the spool fallback, errors, abort, cells."""

from __future__ import annotations

import csv
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import openpyxl
import psutil
import pytest
import xlsxwriter

from pipeline.cells import is_risky
from pipeline.ingest.problems import Problems, RowProblem
from pipeline.ingest.report import rejects, sink
from pipeline.ingest.report.rejects import RejectWriter, WriterKind
from tests.ingest.stage_helpers import writer_children

HEADERS = ["Navn", "Tlf.", "Noter"]


def problem(row: int, column: str = "Tlf.", text: str = "bad phone") -> RowProblem:
    return RowProblem(row, column, "x", "pattern", f"Row {row}: {text}")


def batches(
    start: int, stop: int, size: int
) -> list[list[tuple[int, list[str], list[RowProblem]]]]:
    rows = [
        (r, [f"Navn {r}", "=1+1" if r % 5 == 0 else f"+45 {r:08d}", f" note {r} "], [problem(r)])
        for r in range(start, stop)
    ]
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def writer(tmp_path: Path, name: str, kind: WriterKind = "process") -> RejectWriter:
    out = tmp_path / name
    return RejectWriter(
        out / "r.rejects.xlsx",
        out / "r.rejects.csv",
        HEADERS,
        tmp_dir=tmp_path / f"spool-{name}",
        writer=kind,
    )


def sheet_dump(path: Path) -> list[list[tuple[object, bool, bool, str | None]]]:
    """Every cell: value, quote prefix, highlighted, comment."""
    wb = openpyxl.load_workbook(path)
    return [
        [
            (
                c.value,
                bool(c.quotePrefix),
                c.fill.fgColor.rgb.endswith("FFEB9C"),
                c.comment and c.comment.text,
            )
            for c in row
        ]
        for ws in wb.worksheets
        for row in ws.iter_rows()
    ]


def reject_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "reject-writer"]


def test_in_order_stream_and_spool_fallback_write_the_same_files(tmp_path: Path) -> None:
    streamed = writer(tmp_path, "stream")
    for part in batches(2, 400, 50):
        streamed.add_many(part)
    assert reject_threads()  # written while rows come in
    # same rows, but a refusal of an early row arrives after later ones: written from the spool
    fallback = writer(tmp_path, "fallback")
    for part in batches(2, 400, 50):
        fallback.add_many(part)
    late = RowProblem(3, "Navn", "", "api", "Row 3: refused by HeroBase: no.")
    fallback.add_many([(3, [], [late])])
    streamed.add_many([])  # nothing: no effect
    assert (streamed.count, fallback.count) == (398, 398)
    a, b = streamed.close(), fallback.close()
    assert not reject_threads()
    assert [p.name for p in a] == [p.name for p in b] == ["r.rejects.xlsx", "r.rejects.csv"]
    sa, sb = sheet_dump(a[0]), sheet_dump(b[0])
    assert len(sa) == 399
    row3 = sb[2]
    assert row3[0][3] == "Row 3: refused by HeroBase: no."
    assert row3[0][2]  # highlighted
    assert row3[4][0] == "Row 3: bad phone\nRow 3: refused by HeroBase: no."
    sb[2] = sa[2]  # the merged row apart, both files are the same
    assert sa == sb
    assert sa[4][1][:2] == ("=1+1", True)  # row 5: risky, quote prefix
    assert sa[1][2][0] == " note 2 "  # spaces kept
    ca, cb = read_csv(a[1]), read_csv(b[1])
    assert ca[0] == ["Navn", "Tlf.", "Noter", "_row", "_problems"]
    assert ca[4] == ["Navn 5", "'=1+1", " note 5 ", "5", "Row 5: bad phone"]
    assert cb[2][4] == "Row 3: bad phone\nRow 3: refused by HeroBase: no."
    assert ca[:2] + ca[3:] == cb[:2] + cb[3:]


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


def test_rows_out_of_order_from_the_start_are_sorted(tmp_path: Path) -> None:
    w = writer(tmp_path, "o")
    parts = batches(2, 60, 10)
    for b in reversed(parts):
        w.add_many(reversed(b))
    w.add_many([(7, ["x", "y", "z"], [problem(7, "Noter", "again")])])  # merged, cells kept
    assert w.count == 58
    xlsx, csv_path = w.close()
    rows = read_csv(csv_path)
    assert [int(r[3]) for r in rows[1:]] == list(range(2, 60))
    assert rows[6][:3] == ["Navn 7", "+45 00000007", " note 7 "]
    assert rows[6][4] == "Row 7: bad phone\nRow 7: again"
    assert len(sheet_dump(xlsx)) == 59


def test_an_error_of_the_writer_thread_surfaces_at_close_and_no_file_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def failing(self: object, batch: object) -> None:
        calls.append(batch)
        if len(calls) == 2:
            raise OSError("disk full")

    monkeypatch.setattr(sink.Sink, "write", failing)
    w = writer(tmp_path, "e", "thread")
    for b in batches(2, 300, 20):  # more batches than the queue holds: never blocks
        w.add_many(b)
    with pytest.raises(OSError, match="disk full"):
        w.close()
    assert len(calls) == 2  # the failed writer wrote nothing more
    assert not reject_threads()
    assert [p for p in (tmp_path / "e").rglob("*") if p.is_file()] == []
    assert list((tmp_path / "spool-e").iterdir()) == []


def test_a_spool_error_in_the_writer_thread_surfaces_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(self: RejectWriter, recs: object) -> int:
        raise OSError("spool full")

    monkeypatch.setattr(RejectWriter, "_spool", failing)
    w = writer(tmp_path, "s")
    for b in batches(2, 100, 10):
        w.add_many(b)
    with pytest.raises(OSError, match="spool full"):
        w.close()
    assert [p for p in (tmp_path / "s").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_abort_stops_the_thread_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: WriterKind
) -> None:
    rows_tmp = tmp_path / "xlsxwriter"  # where xlsxwriter keeps each sheet's rows meanwhile
    rows_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rows_tmp))
    monkeypatch.setenv("TMPDIR", str(rows_tmp))  # the same for the child process
    w = writer(tmp_path, "a", kind)
    for b in batches(2, 500, 25):
        w.add_many(b)
    w.abort()
    assert not reject_threads()
    assert [p for p in (tmp_path / "a").rglob("*") if p.is_file()] == []
    assert list(rows_tmp.iterdir()) == []
    assert list((tmp_path / "spool-a").iterdir()) == []
    assert w.close() == []


def test_abort_after_the_fallback_leaves_no_file(tmp_path: Path) -> None:
    w = writer(tmp_path, "f")
    for b in batches(20, 80, 10):
        w.add_many(b)
    w.add_many(batches(2, 5, 10)[0])  # earlier rows: the stream stops, the spool takes over
    assert not reject_threads()
    w.abort()
    assert [p for p in (tmp_path / "f").rglob("*") if p.is_file()] == []


def test_rows_beyond_a_sheet_split_inside_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rejects, "SHEET_ROWS", 4)  # 3 rows per sheet
    w = writer(tmp_path, "p")
    for b in batches(2, 12, 4):
        w.add_many(b)
    xlsx, _ = w.close()
    assert w.sheets == 4
    wb = openpyxl.load_workbook(xlsx)
    got = [int(r[3]) for ws in wb.worksheets for r in ws.iter_rows(min_row=2, values_only=True)]
    assert got == list(range(2, 12))
    assert [ws.auto_filter.ref for ws in wb.worksheets] == ["A1:E4", "A1:E4", "A1:E4", "A1:E2"]


CELLS = [
    "plain",
    'A & B <Co> "q"',
    " lead",
    "trail\t",
    "\nfirst line",
    "ctrl\x01\x1fchars",
    "_x0041_ literal",
    "non\ufffechar",
    "sep\ue000inside",
    "=SUM(A1)",
    "+45 12 34 56 78",
    "-12.5",
    "+45 12ab",
    "@me",
    "<r>not rich</r>",
    "x" * 40_000,
    "😀" * 20_000,
    "",
]


def test_cells_read_back_as_xlsxwriter_writes_them(tmp_path: Path) -> None:
    """The row XML written directly equals what xlsxwriter's own path gives, cell for cell."""
    rng = random.Random(5)
    rows = [[rng.choice(CELLS) for _ in HEADERS] for _ in range(60)]
    rows += [[c, c, c] for c in CELLS]
    w = writer(tmp_path, "c")
    w.add_many((i + 2, r, [problem(i + 2, "Navn")]) for i, r in enumerate(rows))
    xlsx, csv_path = w.close()

    ref = tmp_path / "ref.xlsx"
    wb = xlsxwriter.Workbook(str(ref), {"constant_memory": True, "strings_to_formulas": False})
    ws = wb.add_worksheet()
    for i, r in enumerate(rows):
        for c, v in enumerate(r):
            ws.write_string(i, c, sink._cell(v))
    wb.close()
    want = [list(r) for r in openpyxl.load_workbook(ref).active.iter_rows(values_only=True)]
    got = [list(r[:3]) for r in openpyxl.load_workbook(xlsx).active.iter_rows(values_only=True)]
    rich = "<r>not rich</r>"  # xlsxwriter's own path emits it as raw XML: here it is text
    for got_row, want_row, row in zip(got[1:], want, rows, strict=True):
        for g, w, v in zip(got_row, want_row, row, strict=True):
            assert g == (rich if v == rich else w)
    sheet = openpyxl.load_workbook(xlsx).active
    for row in sheet.iter_rows(min_row=2):
        for cell in row:
            assert cell.data_type == "s"
            assert bool(cell.quotePrefix) == (cell.value is not None and is_risky(cell.value))
    back = read_csv(csv_path)[1:]
    assert [r[:3] for r in back] == [[("'" + v) if is_risky(v) else v for v in r] for r in rows]


def test_a_cut_cell_fits_excels_limit() -> None:
    for text in ["x" * 40_000, "😀" * 20_000, "a" + "😀" * 16_400]:
        cut = sink._cell(text)
        assert len(cut.encode("utf-16-le")) // 2 <= sink.MAX_CELL
        assert cut.endswith(" ... (cut by leadpipe)")
    assert sink._cell("short") == "short"


def test_the_risky_scan_of_a_column_agrees_with_is_risky() -> None:
    rng = random.Random(1)
    alphabet = list("=+-@\t\r\n0123456789 ().,/-ab\ue000")
    for _ in range(20_000):
        col = [
            "".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(rng.randint(1, 4))
        ]
        want = [i for i, v in enumerate(col) if is_risky(v)]
        assert sink._risky_cells(col, *sink._joined(col)) == want, col


def test_the_whole_column_scans_agree_with_each_cell() -> None:
    rng = random.Random(2)
    pieces = [" ", "\u00a0", "\t", "\n", "a", "&", "<", ">", "\x01", "_x0041_", "_x00", "1_", "é"]
    for _ in range(20_000):
        col = ["".join(rng.choices(pieces, k=rng.randint(0, 4))) for _ in range(rng.randint(1, 4))]
        joined, clean = sink._joined(col)
        assert clean
        edge = any(v[:1].isspace() or v[-1:].isspace() for v in col)
        assert sink._edge_space(joined) == edge, col
        assert sink._xml_special(joined) == any(sink._xml_text(v) != v for v in col), col


def test_a_big_batch_reaches_the_thread_in_bounded_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rejects, "BATCH_ROWS", 7)
    sizes: list[int] = []
    write = sink.Sink.write

    def counting(self: sink.Sink, batch: rejects.RejectBatch) -> None:
        sizes.append(len(batch))
        write(self, batch)

    monkeypatch.setattr(sink.Sink, "write", counting)
    w = writer(tmp_path, "b", "thread")
    (rows,) = batches(2, 52, 50)  # one chunk's 50 rows, e.g. a cancelled file's not-sent rows
    w.add_many(rows)
    _, csv_path = w.close()
    assert sizes == [7] * 7 + [1]
    assert [int(r[3]) for r in read_csv(csv_path)[1:]] == list(range(2, 52))


def test_end_rows_completes_the_files_but_only_close_puts_them_in_place(tmp_path: Path) -> None:
    done = writer(tmp_path, "d")
    for part in batches(2, 100, 10):
        done.add_many(part)
    done.end_rows()
    assert not [p for p in (tmp_path / "d").glob("*") if p.is_file()]  # nothing visible yet
    xlsx, csv_path = done.close()
    assert not reject_threads()
    assert len(sheet_dump(xlsx)) == 99
    assert len(read_csv(csv_path)) == 99

    dropped = writer(tmp_path, "x")
    for part in batches(2, 100, 10):
        dropped.add_many(part)
    dropped.end_rows()
    dropped.abort()  # e.g. the file changed: the finished files are removed, never renamed
    assert not reject_threads()
    assert [p for p in (tmp_path / "x").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("late_row", [150, 50])
def test_a_row_after_end_rows_is_still_written(tmp_path: Path, late_row: int) -> None:
    w = writer(tmp_path, f"l{late_row}")
    for part in batches(2, 100, 10):
        w.add_many(part)
    w.end_rows()
    w.add_many([(late_row, ["late", "", ""], [problem(late_row, "Navn", "late")])])
    xlsx, csv_path = w.close()
    rows = read_csv(csv_path)[1:]
    assert [int(r[3]) for r in rows] == sorted({*range(2, 100), late_row})
    assert any(r[0] == "late" for r in rows) == (late_row == 150)  # row 50 keeps its cells
    assert len(sheet_dump(xlsx)) == len(rows) + 1


# ---------------------------------------------------------------- the writer's child process


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_the_child_process_and_the_thread_write_the_same_files(tmp_path: Path) -> None:
    made = {}
    for kind in ("process", "thread"):
        w = writer(tmp_path, kind, kind)  # type: ignore[arg-type]
        for part in batches(2, 300, 40):
            w.add_many(part)
        if kind == "process":
            assert len(writer_children()) == 1  # the files are written over there
        made[kind] = w.close()
        assert w.sheets == 1
    assert not writer_children()
    assert sheet_dump(made["process"][0]) == sheet_dump(made["thread"][0])
    assert read_csv(made["process"][1]) == read_csv(made["thread"][1])


def test_the_writer_process_starts_with_the_writer_and_an_unused_one_is_stopped(
    tmp_path: Path,
) -> None:
    """The files' process starts before the first rejected row (its start overlaps reading);
    a file without rejected rows, or a pass that stops, leaves no process behind."""
    for name, end in (("none", "close"), ("stopped", "abort")):
        w = writer(tmp_path, name)
        assert len(writer_children()) == 1
        assert getattr(w, end)() in ([], None)
        assert not writer_children()
        assert files_in(tmp_path / name) == []
    dropped = writer(tmp_path, "dropped")  # its caller failed before close() or abort()
    assert len(writer_children()) == 1
    del dropped
    assert not writer_children()  # stopped and reaped when the writer is collected


def test_a_killed_writer_process_fails_the_close_plainly_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    w = writer(tmp_path, "k")
    w.add_many(batches(2, 50, 50)[0])
    deadline = time.monotonic() + 30
    while not files_in(tmp_path / "k") and time.monotonic() < deadline:
        time.sleep(0.02)  # until the child has its files open (and so has said it is ready)
    time.sleep(0.2)
    (child,) = writer_children()
    child.kill()  # not reaped here: the writer is the one to see how it ended
    while child.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.02)
    for part in batches(50, 400, 50):  # the stream goes on: nothing blocks on the dead child
        w.add_many(part)
    with pytest.raises(OSError, match="reject writer's process ended with exit code -9"):
        w.close()
    assert not reject_threads()
    assert files_in(tmp_path / "k") == []


def test_the_writer_process_removes_its_files_when_leadpipe_is_killed(tmp_path: Path) -> None:
    """kill -9 of the process writing: its child sees the end of its input and cleans up."""
    script = f"""
import sys, time
from pathlib import Path
from pipeline.ingest.problems import Problems, RowProblem
from pipeline.ingest.report.rejects import RejectWriter
out = Path({str(tmp_path / "out")!r})
w = RejectWriter(out / "r.rejects.xlsx", out / "r.rejects.csv", ["A"], tmp_dir=out / "spool")
w.add_many([(r, ["=x"], [RowProblem(r, "A", "=x", "pattern", "bad")]) for r in range(2, 500)])
w.end_rows()
print("written", flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
        deadline = time.monotonic() + 30
        children: list[psutil.Process] = []
        while not children and time.monotonic() < deadline:
            children = [
                p
                for p in psutil.Process(proc.pid).children()
                if "sink_process" in " ".join(p.cmdline())
            ]
        (child,) = children
        while not files_in(tmp_path / "out" / ".leadpipe") and time.monotonic() < deadline:
            time.sleep(0.02)  # the child has its files open
        proc.kill()
        proc.wait(10)
        child.wait(30)  # it ends by itself
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert [p for p in files_in(tmp_path / "out") if "spool" not in p.parts] == []


def test_without_a_child_process_the_files_are_written_in_this_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    w = writer(tmp_path, "n")
    for part in batches(2, 100, 25):
        w.add_many(part)
    _, csv_path = w.close()
    assert len(read_csv(csv_path)) == 99
    assert "writing the reject files in this process instead" in caplog.text


def test_an_error_opening_the_files_in_the_child_is_raised_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the folder should be", encoding="utf-8")
    w = RejectWriter(
        tmp_path / "blocked" / "r.rejects.xlsx",
        tmp_path / "blocked" / "r.rejects.csv",
        HEADERS,
        tmp_dir=tmp_path / "spool",
    )
    for part in batches(2, 100, 25):
        w.add_many(part)
    with pytest.raises((FileExistsError, NotADirectoryError)):
        w.close()
    assert not writer_children()


def test_a_chunks_rejects_keep_every_problem_also_of_a_row_not_in_the_chunk(
    tmp_path: Path,
) -> None:
    """add_rejects: cells from the chunk, refusals after a row's own problems, and a problem
    of a row the chunk does not hold still written (with empty cells), in row order."""
    import pandas as pd

    from pipeline.ingest.rows import add_rejects

    chunk = pd.DataFrame({h: [f"{h} {r}" for r in (2, 3, 4)] for h in HEADERS}).astype("str")
    chunk["_row"] = [2, 3, 4]
    refusal = RowProblem(3, "", "", "api", "Row 3: refused")
    for name, problems in (
        ("in-chunk", [problem(3), problem(4, "Navn")]),
        ("missing", [problem(3), problem(9, "Navn")]),
    ):
        w = writer(tmp_path, name, "thread")
        add_rejects(w, chunk, HEADERS, Problems.of(problems), {3: [refusal]})
        _, csv_path = w.close()
        rows = read_csv(csv_path)[1:]
        assert rows[0] == ["Navn 3", "Tlf. 3", "Noter 3", "3", "Row 3: bad phone\nRow 3: refused"]
        last = rows[1]
        if name == "missing":
            assert last == ["", "", "", "9", "Row 9: bad phone"]
        else:
            assert last == ["Navn 4", "Tlf. 4", "Noter 4", "4", "Row 4: bad phone"]
