"""Row fingerprints the ledger keeps: one per row, or a whole column batch at once.

The fingerprint is part of the ledger's durable state (it finds data already accepted for a
campaign, from any file), so its definition never changes: SHA-256 of the campaign code, a
newline and the canonical JSON (sorted keys, no spaces, UTF-8) of the row's non-empty fields.
:func:`fingerprints` computes exactly that for many rows, building the JSON text with Arrow
string kernels, the escapes JSON needs (quotes, backslashes, control characters) included.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def fingerprint(campaign: str, data: Mapping[str, str]) -> str:
    """SHA-256 of the campaign code and the canonical JSON of the mapped field data."""
    canon = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{campaign}\n{canon}".encode()).hexdigest()


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


#: Bytes JSON escapes inside a string: control characters, the quote and the backslash.
#: (``json.dumps(..., ensure_ascii=False)`` leaves everything else as is: DEL, non-ASCII,
#: U+2028/U+2029; the bytes of a multi-byte UTF-8 character are all >= 0x80.)
_ESCAPED = np.zeros(256, dtype=bool)
_ESCAPED[:0x20] = True
_ESCAPED[[0x22, 0x5C]] = True

_SHORT = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
#: Each escaped byte and its JSON escape, as json.dumps writes it. The backslash comes first,
#: so the backslashes the later escapes add are not doubled.
_ESCAPES: list[tuple[int, str]] = [
    (0x5C, "\\\\"),
    (0x22, '\\"'),
    *((b, _SHORT.get(b, f"\\u{b:04x}")) for b in range(0x20)),
]


def _escape(values: pa.Array) -> pa.Array:
    """``values`` as the inside of JSON strings: only the escapes they need, one pass each."""
    _validity, offsets_buf, data_buf = values.buffers()
    if data_buf is None or len(values) == 0:
        return values
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[
        values.offset : values.offset + len(values) + 1
    ]
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
    present = np.flatnonzero(np.bincount(data[_ESCAPED[data]], minlength=256))
    if len(present) == 0:
        return values
    wanted = set(present.tolist())
    for byte, escape in _ESCAPES:
        if byte in wanted:
            values = pc.replace_substring(values, chr(byte), escape)
    return values


def fingerprints(
    campaign: str, columns: Mapping[str, pa.Array | pa.ChunkedArray], *, step: int = 16_384
) -> list[str]:
    """:func:`fingerprint` of every row of ``columns`` (field -> text values; a missing or
    empty value is left out of the row's data, as for one row).

    Rows are grouped by which fields they fill; each group's JSON texts come from one Arrow
    join of the keys and escaped values, and are hashed one by one (SHA-256 has no batch form
    here; hashing is most of the time left). ``step`` rows at a time, so the JSON copies stay
    small.
    """
    if not columns:
        return []
    n = len(next(iter(columns.values())))
    if n > step:
        out: list[str] = []
        for start in range(0, n, step):
            out += _fingerprints(campaign, {k: v.slice(start, step) for k, v in columns.items()})
        return out
    return _fingerprints(campaign, columns)


def _fingerprints(campaign: str, columns: Mapping[str, pa.Array | pa.ChunkedArray]) -> list[str]:
    names = sorted(columns)
    values = [
        pc.fill_null(columns[k], "").cast(pa.large_string()).combine_chunks()
        if isinstance(columns[k], pa.ChunkedArray)
        else pc.fill_null(columns[k], "").cast(pa.large_string())
        for k in names
    ]
    n = len(values[0])
    filled = np.zeros(n, dtype=np.int64)  # bit j: field j is not empty
    for j, v in enumerate(values):
        lengths = np.asarray(pc.binary_length(v).to_numpy(zero_copy_only=False))
        filled |= (lengths > 0).astype(np.int64) << j
    values = [_escape(v) for v in values]  # after `filled`: an escape never empties a value
    keys = [json.dumps(k, ensure_ascii=False) for k in names]
    out = [""] * n
    for pattern in np.unique(filled).tolist():
        at = np.flatnonzero(filled == pattern)
        present = [j for j in range(len(names)) if pattern >> j & 1]
        if not present:  # no field at all
            digest = hashlib.sha256(f"{campaign}\n{{}}".encode()).hexdigest()
            for i in at.tolist():
                out[i] = digest
            continue
        pieces: list[Any] = [_large(f"{campaign}\n{{")]
        for m, j in enumerate(present):
            pieces.append(_large(f'{"," if m else ""}{keys[j]}:"'))
            pieces.append(values[j].take(pa.array(at)))
            pieces.append(_large('"'))
        pieces.append(_large("}"))
        joined = pc.binary_join_element_wise(*pieces, _large(""))
        sha256 = hashlib.sha256
        digests = [sha256(b).hexdigest() for b in joined.cast(pa.large_binary()).to_pylist()]
        if len(at) == n:  # the usual case: every row fills the same fields
            return digests
        for i, digest in zip(at.tolist(), digests, strict=True):
            out[i] = digest
    return out
