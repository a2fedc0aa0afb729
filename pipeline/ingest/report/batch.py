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

from pipeline.ingest.problems import Problems, RowProblem

#: A rejected row as the slow paths give it: its row number, its cells in header order, its
#: problems.
Reject = tuple[int, Sequence[str], Sequence[RowProblem]]


@dataclass(frozen=True, slots=True)
class RejectBatch:
    """Rejected rows (ascending, each once) and their problems (grouped by row, in order).

    ``columns`` has one list per header, each as long as ``rows``; ``problems.rows`` is
    ascending.
    """

    rows: list[int]
    columns: list[list[str]]
    problems: Problems

    def __len__(self) -> int:
        return len(self.rows)

    def slice(self, start: int, stop: int) -> RejectBatch:
        """Rows ``start:stop`` of the batch, with their problems."""
        rows = self.rows[start:stop]
        if not rows:
            return RejectBatch([], [[] for _ in self.columns], Problems())
        lo = bisect.bisect_left(self.problems.rows, rows[0])
        hi = bisect.bisect_right(self.problems.rows, rows[-1])
        return RejectBatch(
            rows, [col[start:stop] for col in self.columns], self.problems.slice(lo, hi)
        )

    def problem_texts(self) -> list[str]:
        """Each row's problem messages, one per line (``""`` for a row without any)."""
        texts: list[list[str]] = [[] for _ in self.rows]
        position = {row: i for i, row in enumerate(self.rows)}
        for row, message in zip(self.problems.rows, self.problems.messages, strict=True):
            texts[position[row]].append(message)
        return ["\n".join(t) for t in texts]

    def records(self) -> list[tuple[int, list[str], list[RowProblem]]]:
        """The batch row by row, as :data:`Reject` records (for tests and small batches)."""
        cells = list(zip(*self.columns, strict=True)) if self.columns else [()] * len(self.rows)
        problems: dict[int, list[RowProblem]] = {row: [] for row in self.rows}
        for p in self.problems:
            problems[p.row].append(p)
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
        return cls(rows, columns, Problems.of(p for row in rows for p in problems_of[row]))
