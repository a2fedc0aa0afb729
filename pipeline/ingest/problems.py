"""A row's problem, as every stage reports it (a light module: the reject writer's child
process imports it without the validation stack)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple


class RowProblem(NamedTuple):
    """One problem: the sheet's row number, the header the person sees, the value, the rule.

    A named tuple: the slow paths (API refusals, repeats, not-sent files) make them one by one.
    """

    row: int
    column: str
    value: str
    rule: str
    message: str


@dataclass(slots=True)
class Problems:
    """Many problems column by column: one list per :class:`RowProblem` field, parallel.

    What the checks of a chunk give: a wrong column makes tens of thousands of problems, and
    building a named tuple for each cost more than checking the values. They reach the reject
    files as these lists; iterating yields :class:`RowProblem` records (for small paths and
    tests).
    """

    rows: list[int] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, problems: Iterable[RowProblem]) -> Problems:
        """Problems from records, in their order."""
        found = list(problems)
        if not found:
            return cls()
        rows, columns, values, rules, messages = map(list, zip(*found, strict=True))
        return cls(rows, columns, values, rules, messages)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[RowProblem]:
        return map(RowProblem._make, zip(*self.lists(), strict=True))

    def __getitem__(self, i: int) -> RowProblem:
        return RowProblem(
            self.rows[i], self.columns[i], self.values[i], self.rules[i], self.messages[i]
        )

    def extend(self, other: Iterable[RowProblem] | Problems) -> None:
        """Append ``other``'s problems after these."""
        more = other if isinstance(other, Problems) else Problems.of(other)
        self.rows += more.rows
        self.columns += more.columns
        self.values += more.values
        self.rules += more.rules
        self.messages += more.messages

    def take(self, order: Sequence[int]) -> Problems:
        """The problems at positions ``order``, in that order."""
        return Problems(
            [self.rows[k] for k in order],
            [self.columns[k] for k in order],
            [self.values[k] for k in order],
            [self.rules[k] for k in order],
            [self.messages[k] for k in order],
        )

    def slice(self, start: int, stop: int) -> Problems:
        """Problems ``start:stop``."""
        return Problems(
            self.rows[start:stop],
            self.columns[start:stop],
            self.values[start:stop],
            self.rules[start:stop],
            self.messages[start:stop],
        )

    def lists(self) -> tuple[list[int], list[str], list[str], list[str], list[str]]:
        """The five lists, in :class:`RowProblem`'s field order."""
        return self.rows, self.columns, self.values, self.rules, self.messages
