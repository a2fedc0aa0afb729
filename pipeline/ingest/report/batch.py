"""Rejected rows handed to the reject files a batch at a time, column by column.

A :class:`RejectBatch` holds rows in ascending order, each once, with their cells as one list
per column and their problems as parallel lists, grouped by row in the order they were added.
Column lists of plain strings cross to the reject writer's process and into the spool without
a Python object per row or per problem (a tuple per row and a named tuple per problem were
most of the cost of handing 40,000 rejected rows over). This module imports nothing heavy:
the writer's process loads it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.ingest.problems import RowProblem

#: A rejected row as the slow paths give it: its row number, its cells in header order, its
#: problems.
Reject = tuple[int, Sequence[str], Sequence[RowProblem]]


@dataclass(frozen=True, slots=True)
class RejectBatch:
    """Rejected rows (ascending, each once) and their problems (grouped by row, in order).

    ``columns`` has one list per header, each as long as ``rows``; the ``problem_*`` lists are
    parallel, one entry per problem, ``problem_rows`` ascending.
    """

    rows: list[int]
    columns: list[list[str]]
    problem_rows: list[int]
    problem_columns: list[str]
    problem_values: list[str]
    problem_rules: list[str]
    problem_messages: list[str]

    def __len__(self) -> int:
        return len(self.rows)

    def slice(self, start: int, stop: int) -> RejectBatch:
        """Rows ``start:stop`` of the batch, with their problems."""
        rows = self.rows[start:stop]
        if not rows:
            return RejectBatch([], [[] for _ in self.columns], [], [], [], [], [])
        lo = bisect.bisect_left(self.problem_rows, rows[0])
        hi = bisect.bisect_right(self.problem_rows, rows[-1])
        return RejectBatch(
            rows,
            [col[start:stop] for col in self.columns],
            self.problem_rows[lo:hi],
            self.problem_columns[lo:hi],
            self.problem_values[lo:hi],
            self.problem_rules[lo:hi],
            self.problem_messages[lo:hi],
        )

    def problem_texts(self) -> list[str]:
        """Each row's problem messages, one per line (``""`` for a row without any)."""
        texts: list[list[str]] = [[] for _ in self.rows]
        position = {row: i for i, row in enumerate(self.rows)}
        for row, message in zip(self.problem_rows, self.problem_messages, strict=True):
            texts[position[row]].append(message)
        return ["\n".join(t) for t in texts]

    def records(self) -> list[tuple[int, list[str], list[RowProblem]]]:
        """The batch row by row, as :data:`Reject` records (for tests and small batches)."""
        cells = list(zip(*self.columns, strict=True)) if self.columns else [()] * len(self.rows)
        problems: dict[int, list[RowProblem]] = {row: [] for row in self.rows}
        for p in zip(
            self.problem_rows,
            self.problem_columns,
            self.problem_values,
            self.problem_rules,
            self.problem_messages,
            strict=True,
        ):
            problems[p[0]].append(RowProblem(*p))
        return [(row, list(c), problems[row]) for row, c in zip(self.rows, cells, strict=True)]

    @classmethod
    def of(cls, records: Iterable[Reject], width: int) -> RejectBatch:
        """A batch from records in any order; a row given twice keeps its first cells and gets
        the later problems after the earlier ones. Cells are padded or cut to ``width`` (a
        refusal of a row of an earlier chunk comes without them)."""
        cells_of: dict[int, list[str]] = {}
        problems_of: dict[int, list[RowProblem]] = {}
        for row, cells, problems in records:
            if row not in cells_of:
                cells_of[row] = (list(cells) + [""] * width)[:width]
                problems_of[row] = []
            problems_of[row].extend(problems)
        rows = sorted(cells_of)
        columns = [list(c) for c in zip(*(cells_of[r] for r in rows), strict=True)] if rows else []
        if len(columns) != width:  # no rows (or no columns): one empty list per column
            columns = [[] for _ in range(width)]
        flat = [(row, p) for row in rows for p in problems_of[row]]
        return cls(
            rows,
            columns,
            [row for row, _ in flat],
            [p.column for _, p in flat],
            [p.value for _, p in flat],
            [p.rule for _, p in flat],
            [p.message for _, p in flat],
        )

    @classmethod
    def from_columns(
        cls, rows: list[int], columns: list[list[str]], problems: Sequence[RowProblem]
    ) -> RejectBatch:
        """A batch from rows (ascending, each once), their cells column by column, and their
        problems sorted by row (each problem's row among ``rows``)."""
        if not problems:
            return cls(rows, columns, [], [], [], [], [])
        p_rows, p_columns, p_values, p_rules, p_messages = map(list, zip(*problems, strict=True))
        return cls(rows, columns, p_rows, p_columns, p_values, p_rules, p_messages)
