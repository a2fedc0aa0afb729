"""A row's problem, as every stage reports it (a light module: the reject writer's child
process imports it without the validation stack)."""

from __future__ import annotations

from typing import NamedTuple


class RowProblem(NamedTuple):
    """One problem: the sheet's row number, the header the person sees, the value, the rule.

    A named tuple: a big file with many mistakes makes tens of thousands of them.
    """

    row: int
    column: str
    value: str
    rule: str
    message: str
