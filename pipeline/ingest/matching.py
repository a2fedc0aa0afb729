r"""Regex and emptiness masks over text columns, with the semantics of :mod:`pipeline.regexmatch`.

The verdict on a value is :meth:`pipeline.regexmatch.Matcher.matches` under the configured
semantics (``search`` or ``whole``, docs/api-contract.md). The engines only make it fast:

- polars' Rust regex, all columns in one multi-threaded pass, for patterns written in the
  syntax both engines read alike (:func:`engine_plan`). Rust's ``$`` is the end of the value
  only, never before a final ``\n``: stricter, so a value it refuses is checked again in
  Python. A pattern whose answer depends on class tables the engines do not share (``\D``,
  ``\W``, ``\b``, ``\P{..}``, a negated class with ``\d``/``\w``/``\p``, some ``\p{..}``) is
  trusted only for values of ASCII characters; the others are checked in Python.
- pyarrow's RE2 where polars is not used (a file that is not big enough to pay for loading
  it) or Rust refuses the pattern. RE2's class shorthands (``\d``, ``\w``, ``\s``, ``\b``)
  are ASCII-only, its ``\s`` leaves out the vertical tab, and its Unicode tables are not the
  ``regex`` package's: a pattern with a shorthand or a ``\p{..}`` class is trusted only for
  values of ASCII characters other than the vertical tab, where the engines agree (checked
  over every such character); the others are checked in Python. A pattern without them is
  trusted for every value.
- Python (``regex``) for every other pattern, and for every value a fast engine refused.

So a fast engine never decides a value the Python verdict would decide differently.
:mod:`pipeline.ingest.fields` wraps these masks in the campaign's pandera checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.regexmatch import DEFAULT_SEMANTICS, Matcher, Semantics, try_compile

if TYPE_CHECKING:  # loaded where its engine is used: a small file never needs it
    import polars as pl

Plan = Literal["fast", "ascii", "python"]


#: Patterns every value matches under the ``search`` semantics (an empty match at its start):
#: a field with one gets no pattern check (:func:`pipeline.ingest.fields.has_pattern`).
ANY_VALUE: Final = frozenset({"", ".*", ".*?", "^.*", "^.*?", "(.*)", "(?:.*)"})


def compile_regex(pattern: str, semantics: Semantics = DEFAULT_SEMANTICS) -> Matcher | None:
    """The field's matcher under ``semantics`` (:mod:`pipeline.regexmatch`); None if the
    pattern does not compile."""
    return try_compile(pattern, semantics)


def arrow_strings(series: pd.Series) -> pa.ChunkedArray | pa.Array:
    """The series' values as an Arrow string array (zero-copy for pandas' pyarrow strings)."""
    arr = series.array
    pa_arr = getattr(arr, "_pa_array", None)
    if pa_arr is not None:
        return pa_arr
    return pa.array(series.astype("str").array, type=pa.large_string())


#: ``\p{..}`` classes whose Rust table is contained in the ``regex`` package's (checked over
#: every code point): a value Rust accepts, Python accepts too.
_SHARED_PROPERTIES: Final = frozenset(
    {"L", "Lu", "Lt", "Lm", "Lo", "N", "Nd", "M", "Mn", "P", "S", "Z", "Zs"}
)
#: Escaped punctuation both engines read as the literal character.
_LITERAL_ESCAPES: Final = frozenset(".^$*+?()[]{}|\\/-#&~ !\"%',:;=@_`")
_QUANTIFIER: Final = re.compile(r"\{\d+(?:,\d*)?\}")
_PROPERTY: Final = re.compile(r"\{([A-Za-z_]+)\}")
_GROUP: Final = re.compile(r"\(\?(?::|<[A-Za-z_]\w*>)")
_HEX: Final = {"x": re.compile(r"[0-9A-Fa-f]{2}"), "u": re.compile(r"[0-9A-Fa-f]{4}")}


@lru_cache(maxsize=512)
def engine_plan(pattern: str) -> Plan:
    """Whether the fast engines read ``pattern`` as .NET and the ``regex`` package do.

    ``fast``: any value; ``ascii``: values of ASCII characters only (the engines' Unicode
    tables differ); ``python``: none (look-arounds, back-references, inline options, ``\\Z``,
    nested or subtracted classes, ``{,n}``, ``\\<``: anything outside the shared syntax).
    """
    ascii_only = False
    in_class = negated = first = after_quantifier = False
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        quantifier = False
        if ch == "\\":
            if i + 1 >= n:
                return "python"
            esc, end = pattern[i + 1], i + 2
            if esc in "pP":
                prop = _PROPERTY.match(pattern, end)
                if prop is None:
                    return "python"
                end = prop.end()
                if esc == "P" or negated or prop.group(1) not in _SHARED_PROPERTIES:
                    ascii_only = True
            elif esc in "dw":
                ascii_only = ascii_only or negated
            elif esc in "DW" or (esc in "bB" and not in_class):
                ascii_only = True
            elif esc in _HEX:
                if _HEX[esc].match(pattern, end) is None:
                    return "python"
                end += 2 if esc == "x" else 4
            elif not (
                esc in "sStnrfv" or esc in _LITERAL_ESCAPES or (esc in "Az" and not in_class)
            ):
                return "python"
            i, first = end, False
            after_quantifier = False
            continue
        if in_class:
            if ch == "[" or (ch == "]" and first) or pattern.startswith(("&&", "--", "~~"), i):
                return "python"
            if ch == "]":
                in_class = negated = False
            first = False
        elif ch == "[":
            in_class, first = True, True
            negated = pattern.startswith("^", i + 1)
            i += 1 + negated
            continue
        elif ch == "(" and pattern.startswith("(?", i):
            group = _GROUP.match(pattern, i)
            if group is None:
                return "python"
            i = group.end()
            continue
        elif ch == "{":
            found = _QUANTIFIER.match(pattern, i)
            if found is None or after_quantifier:
                return "python"
            i, after_quantifier = found.end(), True
            if pattern.startswith("?", i):
                i += 1  # lazy
            continue
        elif ch in "*+?":
            if after_quantifier:
                return "python"  # possessive or nested quantifiers: not the same language
            quantifier = True
            if pattern.startswith("?", i + 1):
                i += 1  # lazy
        after_quantifier = quantifier
        i += 1
    if in_class:
        return "python"
    return "ascii" if ascii_only else "fast"


def _rust_pattern(pattern: str, semantics: Semantics) -> str:
    """The pattern as sent to Rust; the empty value always passes in the same scan."""
    if semantics == "whole":
        return f"^(?:{pattern})?$"
    return f"(?:{pattern})|^$"


@lru_cache(maxsize=512)
def rust_compiles(pattern: str, semantics: Semantics) -> bool:
    """Whether polars' Rust regex engine takes ``pattern`` (as sent under ``semantics``)."""
    import polars as pl

    try:
        pl.Series([""]).str.contains(_rust_pattern(pattern, semantics))
    except pl.exceptions.PolarsError:
        return False
    return True


def _re2_reads_alike(pattern: str) -> bool:
    """RE2's class shorthands and word boundaries are ASCII-only: patterns with none."""
    return engine_plan(pattern) == "fast" and re.search(r"\\[dDwWsSbBpP]", pattern) is None


def pattern_masks(
    frame: pd.DataFrame,
    patterns: Mapping[str, str],
    polars_frame: pl.DataFrame | None = None,
    semantics: Semantics = DEFAULT_SEMANTICS,
    *,
    fast: bool = True,
) -> dict[str, np.ndarray]:
    """Per column of ``patterns`` (column -> regex): which values match it under ``semantics``.

    Empty and missing values count as matching (``required`` is a check of its own). A pattern
    that does not compile checks nothing here (the API still validates). The engines (module
    docstring) answer only where they agree with :meth:`Matcher.matches`; every other value is
    checked with it one by one. ``polars_frame``: the same columns already converted to polars.
    Without ``fast`` polars' engine is not used (nor loaded): for a file that is not big,
    RE2 and :meth:`Matcher.matches` are quicker than loading it.
    """
    out: dict[str, np.ndarray] = {}
    matchers = {c: compile_regex(rx, semantics) for c, rx in patterns.items() if c in frame.columns}
    plans = {c: engine_plan(patterns[c]) for c, m in matchers.items() if m is not None}
    fast_columns = (
        [
            c
            for c, plan in plans.items()
            if plan != "python" and rust_compiles(patterns[c], semantics)
        ]
        if fast
        else []
    )
    unsure: dict[str, np.ndarray] = {}
    if fast_columns:
        import polars as pl

        if polars_frame is not None and all(c in polars_frame.columns for c in fast_columns):
            values = polars_frame
        else:
            values = pl.DataFrame([pl.Series(c, arrow_strings(frame[c])) for c in fast_columns])
        guarded = [c for c in fast_columns if plans[c] == "ascii"]
        hits = values.select(
            *(pl.col(c).str.contains(_rust_pattern(patterns[c], semantics)).fill_null(True)
              for c in fast_columns),
            *((pl.col(c).str.len_bytes() != pl.col(c).str.len_chars()).fill_null(False)
              .alias(f"\0{c}") for c in guarded),
        )  # fmt: skip
        for c in fast_columns:
            out[c] = hits.get_column(c).to_numpy().astype(bool, copy=False)
        for c in guarded:  # values with a non-ASCII character: Python decides
            unsure[c] = hits.get_column(f"\0{c}").to_numpy().astype(bool, copy=False)
    for c, matcher in matchers.items():
        if matcher is None:
            out[c] = np.ones(len(frame), dtype=bool)
            continue
        if c not in out:
            arr = arrow_strings(frame[c])
            if plans[c] == "python":
                out[c] = _empty_mask(arr)
            else:
                out[c] = _re2_mask(arr, _rust_pattern(patterns[c], semantics))
                if not _re2_reads_alike(patterns[c]):  # values where the engines may differ
                    unsure[c] = _re2_unsure(arr)
        ok = out[c]
        if not ok.flags.writeable:
            ok = out[c] = ok.copy()
        recheck = np.flatnonzero(~ok | unsure[c]) if c in unsure else np.flatnonzero(~ok)
        if len(recheck):
            taken = arrow_strings(frame[c]).take(pa.array(recheck, type=pa.int64()))
            ok[recheck] = _python_verdicts(taken, matcher)
    return out


def _python_verdicts(values: pa.Array | pa.ChunkedArray, matcher: Matcher) -> np.ndarray:
    """:meth:`Matcher.matches` of each value (empty and missing ones pass), each distinct
    value asked once: wrong values repeat (``n/a``, ``-``, the same typo pasted down a column)."""
    distinct = pc.unique(values)
    verdicts = np.array([not v or matcher.matches(v) for v in distinct.to_pylist()], dtype=bool)
    at = pc.index_in(values, value_set=distinct, skip_nulls=False)
    return verdicts[np.asarray(at.to_numpy(zero_copy_only=False), dtype=np.intp)]


def _empty_mask(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Which values are empty or missing (they pass without a look at the pattern)."""
    empty = pc.fill_null(pc.equal(pc.binary_length(arr), 0), True)
    return np.asarray(empty.to_numpy(zero_copy_only=False), dtype=bool)


def _re2_mask(arr: pa.ChunkedArray | pa.Array, pattern: str) -> np.ndarray:
    """pyarrow's RE2 (its verdict is trusted where :func:`pattern_masks` says); if RE2 refuses
    the pattern, only empty values pass here and the caller checks the rest."""
    try:
        hit = pc.match_substring_regex(arr, pattern)
    except pa.ArrowInvalid:
        return _empty_mask(arr)
    return np.asarray(pc.fill_null(hit, True).to_numpy(zero_copy_only=False), dtype=bool)


def _re2_unsure(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The values RE2 may judge differently from Python when a pattern has class shorthands or
    Unicode classes: those with a character outside ASCII, or with the vertical tab (RE2's
    ``\\s`` leaves it out). The tab is looked for value by value only when the text has one."""
    unsure = pc.invert(pc.string_is_ascii(arr))
    if _has_byte(arr, 0x0B):
        unsure = pc.or_(unsure, pc.match_substring(arr, "\x0b"))
    return np.asarray(pc.fill_null(unsure, False).to_numpy(zero_copy_only=False), dtype=bool)


def _has_byte(arr: pa.ChunkedArray | pa.Array, byte: int) -> bool:
    """Whether the text buffers behind ``arr`` hold ``byte`` (perhaps outside its values,
    when it is a slice: then the caller only looks closer)."""
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    for chunk in chunks:
        data = chunk.buffers()[2]
        if data is not None and data.size and (np.frombuffer(data, dtype=np.uint8) == byte).any():
            return True
    return False


def match_mask(
    series: pd.Series, pattern: str, semantics: Semantics = DEFAULT_SEMANTICS
) -> np.ndarray:
    """Boolean mask for one column: :func:`pattern_masks` of ``series`` alone."""
    frame = pd.DataFrame({"v": series.astype("str")})
    return pattern_masks(frame, {"v": pattern}, semantics=semantics)["v"]


def fullmatch_mask(series: pd.Series, pattern: str) -> np.ndarray:
    """:func:`match_mask` under the ``whole`` semantics (the whole value must match)."""
    return match_mask(series, pattern, "whole")


def nonempty_mask(series: pd.Series) -> np.ndarray:
    """Boolean mask: which values are present and not empty."""
    arr = arrow_strings(series)  # byte lengths: read from the offsets, no text decoded
    return np.asarray(
        pc.fill_null(pc.greater(pc.binary_length(arr), 0), False).to_numpy(zero_copy_only=False),
        dtype=bool,
    )
