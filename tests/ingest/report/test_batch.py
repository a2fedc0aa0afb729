"""Rejected rows column by column: merging, slicing and the problem text of each row."""

from __future__ import annotations

import pickle

from pipeline.ingest.problems import Problems, RowProblem
from pipeline.ingest.report.batch import RejectBatch


def p(row: int, column: str, message: str) -> RowProblem:
    return RowProblem(row, column, "v", "pattern", message)


def test_records_in_any_order_become_sorted_rows_with_merged_problems() -> None:
    batch = RejectBatch.of(
        [
            (9, ["a", "b"], [p(9, "A", "first")]),
            (3, ["c"], [p(3, "B", "short row")]),  # padded to the width
            (9, ["ignored", "cells"], [p(9, "B", "second")]),  # merged: first cells kept
            (5, ["d", "e", "extra"], []),  # cut to the width; no problem
        ],
        width=2,
    )
    assert batch.rows == [3, 5, 9]
    assert batch.columns == [["c", "d", "a"], ["", "e", "b"]]
    assert batch.problems.rows == [3, 9, 9]
    assert batch.problem_texts() == ["short row", "", "first\nsecond"]
    assert batch.records()[2] == (9, ["a", "b"], [p(9, "A", "first"), p(9, "B", "second")])


def test_a_slice_keeps_its_rows_problems_and_nothing_else() -> None:
    records = [(r, [f"x{r}"], [p(r, "A", f"m{r}"), p(r, "A", f"n{r}")]) for r in range(2, 12)]
    batch = RejectBatch.of(records, width=1)
    part = batch.slice(3, 6)
    assert part.rows == [5, 6, 7]
    assert part.columns == [["x5", "x6", "x7"]]
    assert part.problems.messages == ["m5", "n5", "m6", "n6", "m7", "n7"]
    assert part.records() == records[3:6]
    assert len(batch.slice(20, 30)) == 0
    assert batch.slice(0, 5).records() + batch.slice(5, 10).records() == records


def test_a_batch_of_columns_and_a_pickle_round_trip_keep_every_problem() -> None:
    problems = [p(2, "A", "one"), p(2, "B", "two"), p(4, "A", "three")]
    batch = RejectBatch([2, 4], [["a", "b"], ["c", "d"]], Problems.of(problems))
    back = pickle.loads(pickle.dumps(batch))  # noqa: S301 (made here)
    assert back == batch
    assert back.records() == [(2, ["a", "c"], problems[:2]), (4, ["b", "d"], problems[2:])]
    empty = RejectBatch.of([], width=3)
    assert len(empty) == 0
    assert empty.columns == [[], [], []]
