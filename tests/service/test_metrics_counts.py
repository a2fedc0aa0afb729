"""Row counters of /metrics: a file read more than once counts its rows once."""

from __future__ import annotations

from pipeline.service.metrics import Metrics


def rows(m: Metrics, label: str) -> float:
    text = m.render().decode()
    line = next(
        (x for x in text.splitlines() if x.startswith(f'leadpipe_rows_total{{outcome="{label}"}}')),
        "",
    )
    return float(line.split()[-1]) if line else 0.0


def test_a_file_that_waits_twice_counts_its_rejected_rows_once() -> None:
    m = Metrics()
    # two runs stop at the day's budget (the file goes back to the inbox and is read again),
    # the third ends: 2 invalid rows were found by each read, they are 2 rejected rows
    m.file_finished(
        "waiting", {}, 1.0, run="r1", run_counts={"accepted": 16, "rejected": 2}, ended=False
    )
    m.file_finished(
        "waiting", {}, 1.0, run="r2", run_counts={"accepted": 20, "rejected": 2}, ended=False
    )
    m.file_finished("processed", {}, 1.0, run="r3", run_counts={"accepted": 4, "rejected": 2})
    assert rows(m, "rejected") == 2
    assert rows(m, "accepted") == 40  # sent rows are in the ledger once: each run's count
