"""The column-wise fingerprints equal the one-row definition (durable state: it never changes)."""

from __future__ import annotations

import json

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ledger.fingerprint import fingerprint, fingerprints

#: Every character JSON escapes, the ones it must leave alone, and some plain ones.
_TRICKY = [chr(c) for c in range(0x20)] + ['"', "\\", "/", "\x7f", "\x80", "\u2028", "\u2029"]
_TRICKY += ["é", "Ø", "😀", "\ufeff", "a", " ", "{", "}", ":", ","]
_TEXT = st.text(st.one_of(st.sampled_from(_TRICKY), st.characters(codec="utf-8")), max_size=12)
_NAMES = ["name", "phone", 'e"mail', "zip\\", "Navn ø"]
_ROWS = st.lists(
    st.fixed_dictionaries({k: st.one_of(st.none(), _TEXT) for k in _NAMES}),
    min_size=1,
    max_size=40,
)


def test_json_leaves_line_and_paragraph_separators_as_they_are() -> None:
    """What the column-wise escapes rely on: ensure_ascii=False escapes only these."""
    assert json.dumps("\u2028\u2029\x7f😀", ensure_ascii=False) == '"\u2028\u2029\x7f😀"'
    assert json.dumps("\x00\x1f\b\f\n\r\t", ensure_ascii=False) == (
        '"\\u0000\\u001f\\b\\f\\n\\r\\t"'
    )


@settings(max_examples=300, deadline=None)
@given(
    rows=_ROWS, campaign=st.sampled_from(["B2B-1", 'C"\\1', "Kampagne ø"]), step=st.integers(1, 50)
)
def test_column_fingerprints_equal_the_one_row_definition(
    rows: list[dict[str, str | None]], campaign: str, step: int
) -> None:
    columns = {k: pa.array([r[k] for r in rows], pa.string()) for k in _NAMES}
    expected = [fingerprint(campaign, {k: v for k, v in r.items() if v}) for r in rows]
    assert fingerprints(campaign, columns) == expected
    assert fingerprints(campaign, columns, step=step) == expected  # in slices
    chunked = {k: pa.chunked_array([v.slice(0, step), v.slice(step)]) for k, v in columns.items()}
    assert fingerprints(campaign, chunked) == expected


def test_every_control_character_alone_and_together() -> None:
    values = [chr(c) for c in range(0x20)] + ["".join(chr(c) for c in range(0x20)) + '"\\']
    got = fingerprints("C", {"note": pa.array(values)})
    assert got == [fingerprint("C", {"note": v}) for v in values]
