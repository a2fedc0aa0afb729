"""Cells of files people open in Excel: formula-injection neutralisation, column letters.

Rule (docs/architecture.md, invariant 7): no cell we write starts with ``=``, ``+``, ``-``,
``@``, tab, CR or LF unless neutralised.

- **XLSX**: every value is written as a *text* cell; risky values additionally get Excel's
  native quote prefix (a cell style, not a character), so the value stays exact and is never
  evaluated, even after the cell is edited. See :func:`is_risky`.
- **CSV**: a CSV has no cell types, so risky values are prefixed with an apostrophe ``'``
  (OWASP's advice). Values that are plainly numbers or phone numbers (``+45 12 34 56 78``,
  ``-12.5``) are left exact: Excel reads them as numbers, never as formulas.
"""

from __future__ import annotations

import re

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
# A sign followed only by digits, spaces and phone punctuation cannot form a formula.
_SAFE_SIGNED = re.compile(r"[+-][0-9 ().,/-]*[0-9][0-9 ().,/-]*")


def is_risky(value: str) -> bool:
    """True when a spreadsheet program could read ``value`` as a formula."""
    if not value or not value.startswith(_TRIGGERS):
        return False
    return not (value[0] in "+-" and _SAFE_SIGNED.fullmatch(value))


def neutralise_csv(value: str) -> str:
    """The CSV form of a cell: risky values get a leading apostrophe."""
    return "'" + value if is_risky(value) else value


def column_letters(i: int) -> str:
    """The spreadsheet letters of the 0-based column ``i`` (0 -> A, 26 -> AA)."""
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s
