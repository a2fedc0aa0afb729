"""Values Excel damaged before the file reached us: flagged with how to fix, never repaired.

- a phone or ID shown in scientific notation (``4.5123E+11``): digits are lost;
- a number that lost its leading zeros where the field's regex needs them (``12345`` where
  ``0012345`` would be valid);
- a date serial (``45123``) where a date is expected;
- a cell Excel stored as a date in a field that is not a date (``12-03-45`` typed as a phone).

Only values are inspected (a CSV has no cell types; XLSX date cells come marked from
:mod:`pipeline.reading`), so the candidates are found by shape, vectorised, and confirmed
against the field's regex one by one (there are few).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow.compute as pc  # type: ignore[import-untyped]

from pipeline.schema import FieldSpec, compile_regex

FIX = "Format the column as Text in Excel and re-enter the values, then drop the file again."
FIX_DATES = FIX.replace("values", "dates")
_SCI = r"^[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+$"
_SCI_RE = re.compile(_SCI)
_SERIAL_RE = re.compile(r"\d{4,5}(?:[.,]\d+)?")


def _mask(values: pd.Series, pattern: str) -> np.ndarray:
    arr = values.array
    pa_arr = getattr(arr, "_pa_array", None)
    if pa_arr is None:
        return values.astype(str).str.fullmatch(pattern).to_numpy(dtype=bool)
    hit = pc.fill_null(pc.match_substring_regex(pa_arr, pattern), False)
    return np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)


def find_damage(
    spec: FieldSpec,
    values: pd.Series,
    failing: np.ndarray,
    date_cells: np.ndarray | None = None,
    failing_values: list[str] | None = None,
) -> list[tuple[int, str]]:
    """(position, message tail) for each value of ``values`` (stripped) Excel damaged.

    ``failing`` holds the positions whose value failed the field's regex (``failing_values``:
    their values, if the caller has them already).
    """
    compiled = compile_regex(spec.regex)

    def valid(v: str) -> bool:
        return compiled is None or compiled.fullmatch(v) is not None

    found: dict[int, str] = {}
    if failing_values is None:
        failing_values = [str(v) for v in values.iloc[failing].tolist()]
    if spec.type in ("phone", "integer") and valid("4.5123E+11"):
        # the regex lets scientific notation through: look at every value
        sci = np.flatnonzero(_mask(values, _SCI)).tolist()
    else:  # scientific notation fails the regex: only failing values can be damaged
        sci = [i for i, v in zip(failing.tolist(), failing_values, strict=True) if _SCI_RE.match(v)]
    for i in sci:
        found[i] = (
            f"looks like a number Excel showed in scientific notation, so digits are lost. {FIX}"
        )
    if spec.type == "date":
        for i, v in zip(failing.tolist(), failing_values, strict=True):
            if i not in found and _SERIAL_RE.fullmatch(v):
                found[i] = f"looks like an Excel date serial number, not a date. {FIX_DATES}"
    elif date_cells is not None:
        for i in np.flatnonzero(date_cells).tolist():
            if i not in found:
                found[i] = (
                    f"was stored by Excel as a date, but field {spec.name} is not a date. {FIX}"
                )
    for i, v in zip(failing.tolist(), failing_values, strict=True):
        if i in found or not v.isdigit():
            continue
        fixed = next((z + v for z in ("0", "00", "000") if valid(z + v)), None)
        if fixed is not None:
            found[i] = (
                f"looks like a number that lost its leading zeros in Excel (it would be valid "
                f"as '{fixed}'). {FIX}"
            )
    return sorted(found.items())
