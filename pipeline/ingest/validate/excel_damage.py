"""Values Excel damaged before the file reached us: flagged with how to fix, never repaired.

- a phone or ID shown in scientific notation (``4.5123E+11``): digits are lost;
- a number that lost its leading zeros where the field's regex needs them (``12345`` where
  ``0012345`` would be valid);
- a date serial (``45123``) where a date is expected;
- a cell Excel stored as a date in a field that is not a date (``12-03-45`` typed as a phone).

Only values are inspected (a CSV has no cell types; XLSX date cells come marked from
:mod:`pipeline.ingest.read.open`), so the candidates are found by shape and confirmed against the
field's regex, both vectorised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest.fields import FieldSpec
from pipeline.ingest.matching import compile_regex, match_mask
from pipeline.regexmatch import DEFAULT_SEMANTICS, Semantics

FIX = "Format the column as Text in Excel and re-enter the values, then drop the file again."
FIX_DATES = FIX.replace("values", "dates")
_SCI = r"^[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+$"
_SERIAL = r"^\d{4,5}(?:[.,]\d+)?$"


def _matches(values: pa.Array | pa.ChunkedArray, pattern: str) -> np.ndarray:
    """Which values match ``pattern`` (RE2; a null never does)."""
    hit = pc.fill_null(pc.match_substring_regex(values, pattern), False)
    return np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)


def find_damage(
    spec: FieldSpec,
    values: pa.Array | pa.ChunkedArray,
    failing: np.ndarray,
    date_cells: np.ndarray | None = None,
    semantics: Semantics = DEFAULT_SEMANTICS,
) -> dict[int, str]:
    """Position -> message tail, for each value of ``values`` (stripped) Excel damaged.

    ``failing`` holds the positions whose value failed the field's regex. Vectorised: the
    candidates are found by shape over the failing values (or every value, where the regex
    lets scientific notation through), and re-validated with the field's regex in bulk.
    """
    found: dict[int, str] = {}
    compiled = compile_regex(spec.regex, semantics)
    bad = values.take(pa.array(failing, type=pa.int64()))
    if spec.type in ("phone", "integer") and (
        compiled is None or compiled.matches("4.5123E+11")
    ):  # the regex lets scientific notation through: look at every value
        sci = np.flatnonzero(_matches(values, _SCI))
    else:  # scientific notation fails the regex: only failing values can be damaged
        sci = failing[_matches(bad, _SCI)]
    for i in sci.tolist():
        found[i] = (
            f"looks like a number Excel showed in scientific notation, so digits are lost. {FIX}"
        )
    if spec.type == "date":
        for i in failing[_matches(bad, _SERIAL)].tolist():
            found.setdefault(i, f"looks like an Excel date serial number, not a date. {FIX_DATES}")
    elif date_cells is not None:
        for i in np.flatnonzero(date_cells).tolist():
            found.setdefault(
                i, f"was stored by Excel as a date, but field {spec.name} is not a date. {FIX}"
            )
    digits = _matches(bad, r"^[0-9]+$")
    if compiled is not None and digits.any():
        at = failing[digits]
        numbers = bad.filter(pa.array(digits)).cast(pa.large_string())
        fixed: dict[int, str] = {}
        for zeros in ("0", "00", "000"):  # the fewest zeros that make the value valid
            if len(at) == 0:
                break
            padded = pc.binary_join_element_wise(
                pa.scalar(zeros, pa.large_string()), numbers, pa.scalar("", pa.large_string())
            )
            ok = match_mask(pd.Series(padded, dtype="str"), spec.regex, semantics)
            good = padded.filter(pa.array(ok)).to_pylist()
            fixed.update(zip(at[ok].tolist(), good, strict=True))
            at, numbers = at[~ok], numbers.filter(pa.array(~ok))
        for i, value in fixed.items():
            found.setdefault(
                i,
                f"looks like a number that lost its leading zeros in Excel (it would be valid "
                f"as '{value}'). {FIX}",
            )
    return found
