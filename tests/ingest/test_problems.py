"""Problems column by column: the same records in, the same records out, in the order asked."""

from __future__ import annotations

import pickle

from pipeline.ingest.problems import Problems, RowProblem


def records() -> list[RowProblem]:
    return [
        RowProblem(2, "Tlf.", "12ab", "pattern", "Row 2: bad phone"),
        RowProblem(2, "Navn", "", "required", "Row 2: no name"),
        RowProblem(5, "", "", "malformed", "Row 5: 3 values"),
    ]


def test_records_round_trip_through_the_columns() -> None:
    found = Problems.of(records())
    assert len(found) == 3
    assert found.rows == [2, 2, 5]
    assert found.messages == ["Row 2: bad phone", "Row 2: no name", "Row 5: 3 values"]
    assert list(found) == records()
    assert found[1] == records()[1]
    assert pickle.loads(pickle.dumps(found)) == found  # noqa: S301 (made here)
    assert list(Problems.of([])) == []
    assert not Problems()


def test_extend_take_and_slice_keep_each_problem_whole() -> None:
    found = Problems.of(records()[:1])
    found.extend(Problems.of(records()[1:2]))
    found.extend(records()[2:])  # records, as the slow paths give them
    assert list(found) == records()
    assert list(found.take([2, 0, 1])) == [records()[2], records()[0], records()[1]]
    part = found.slice(1, 3)
    assert list(part) == records()[1:]
    part.rows[0] = 99  # a slice is a copy
    assert found.rows == [2, 2, 5]
