"""Whole-value regex and emptiness masks over text columns (no pandera here).

The engines, fastest first: polars' Rust regex over all columns in one multi-threaded pass
(Unicode classes, as .NET), pyarrow's RE2 (ASCII classes: stricter), then Python's ``re`` and
the ``regex`` package (.NET syntax such as ``(?<name>...)`` and ``\\p{L}``). A value a fast
engine refuses is re-checked with Python's engine, so an engine difference costs time, never a
wrong rejection. :mod:`pipeline.ingest.fields` wraps these masks in the campaign's pandera checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import regex as regex_pkg


class _Matcher(Protocol):
    def fullmatch(self, string: str) -> Any: ...


def compile_regex(pattern: str) -> _Matcher | None:
    """Compile a .NET regex: :mod:`re` first, then the ``regex`` package; None if neither."""
    try:
        return re.compile(pattern)
    except re.error:
        pass
    try:
        return regex_pkg.compile(pattern)  # type: ignore[no-any-return]
    except regex_pkg.error:
        return None


def arrow_strings(series: pd.Series) -> pa.ChunkedArray | pa.Array:
    """The series' values as an Arrow string array (zero-copy for pandas' pyarrow strings)."""
    arr = series.array
    pa_arr = getattr(arr, "_pa_array", None)
    if pa_arr is not None:
        return pa_arr
    return pa.array(series.astype("str").array, type=pa.large_string())


#: Inside a character class these mean set operations or POSIX classes to Rust's regex engine
#: but something else to .NET and Python: such patterns skip the fast engine.
_RUST_DIFFERS = ("&&", "--", "~~", "[:", "-[")


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})?$"  # whole value; "?" lets an empty value pass in the same scan


@lru_cache(maxsize=256)
def _rust_compiles(pattern: str) -> bool:
    """Whether polars' Rust regex engine takes ``pattern`` and reads it as .NET would."""
    if any(token in pattern for token in _RUST_DIFFERS):
        return False
    try:
        pl.Series([""]).str.contains(_anchored(pattern))
    except pl.exceptions.PolarsError:
        return False
    return True


def pattern_masks(
    frame: pd.DataFrame, patterns: Mapping[str, str], polars_frame: pl.DataFrame | None = None
) -> dict[str, np.ndarray]:
    r"""Per column of ``patterns`` (column -> regex): which values match the regex as a whole.

    Empty and missing values count as matching (``required`` is a check of its own). The fast
    engine is polars' Rust regex, all columns in one multi-threaded pass (Unicode
    ``\d``/``\w``/``\s``, as .NET and Python); a pattern it cannot take (look-arounds,
    backreferences) tries pyarrow's RE2, then Python. Values a fast engine refuses are checked
    again one by one with Python's engine, so an engine difference costs time, never a wrong
    rejection. A pattern no engine here compiles checks nothing (the API still validates).
    ``polars_frame``: the same columns already converted to polars (saves converting again).
    """
    out: dict[str, np.ndarray] = {}
    compiled = {c: compile_regex(rx) for c, rx in patterns.items() if c in frame.columns}
    fast = [c for c in compiled if compiled[c] is not None and _rust_compiles(patterns[c])]
    if fast:
        if polars_frame is not None and all(c in polars_frame.columns for c in fast):
            values = polars_frame
        else:
            values = pl.DataFrame([pl.Series(c, arrow_strings(frame[c])) for c in fast])
        hits = values.select(
            pl.col(c).str.contains(_anchored(patterns[c])).fill_null(True) for c in fast
        )
        for c in fast:
            out[c] = hits.get_column(c).to_numpy().astype(bool, copy=False)
    for c, matcher in compiled.items():
        if matcher is None:
            out[c] = np.ones(len(frame), dtype=bool)
            continue
        if c not in out:
            out[c] = _re2_mask(arrow_strings(frame[c]), _anchored(patterns[c]))
        ok = out[c]
        recheck = np.flatnonzero(~ok)
        if len(recheck):
            taken = arrow_strings(frame[c]).take(pa.array(recheck, type=pa.int64()))
            again = taken.to_pylist()
            ok[recheck] = [not v or matcher.fullmatch(v) is not None for v in again]
    return out


def _re2_mask(arr: pa.ChunkedArray | pa.Array, anchored: str) -> np.ndarray:
    """pyarrow's RE2 (ASCII classes: stricter, never looser); if RE2 refuses the pattern,
    only empty values pass here and the caller checks the rest in Python."""
    try:
        hit = pc.match_substring_regex(arr, anchored)
    except pa.ArrowInvalid:
        hit = pc.equal(pc.utf8_length(arr), 0)
    return np.asarray(pc.fill_null(hit, True).to_numpy(zero_copy_only=False), dtype=bool)


def fullmatch_mask(series: pd.Series, pattern: str) -> np.ndarray:
    """Boolean mask for one column: :func:`pattern_masks` of ``series`` alone."""
    frame = pd.DataFrame({"v": series.astype("str")})
    return pattern_masks(frame, {"v": pattern})["v"]


def nonempty_mask(series: pd.Series) -> np.ndarray:
    """Boolean mask: which values are present and not empty."""
    arr = arrow_strings(series)  # byte lengths: read from the offsets, no text decoded
    return np.asarray(
        pc.fill_null(pc.greater(pc.binary_length(arr), 0), False).to_numpy(zero_copy_only=False),
        dtype=bool,
    )
