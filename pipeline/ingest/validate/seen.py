"""Which rows of a file were seen before: 64-bit row fingerprints in flat memory.

:func:`row_fingerprints` hashes rows of text columns (polars' ``hash_rows``). A Bloom filter
(4 bits per fingerprint, all in one 64-bit word: one memory access each) answers "certainly
new" for almost every row; the fingerprints themselves (with the first row number) live in
sorted runs: small ones in memory, larger ones spilled to a temporary folder with a sparse
in-memory index, so memory stays the same whether a file has 1M or 50M rows. Only the few
rows the filter cannot clear read the disk.

The filter is sized for the rows the reader expects (:meth:`SeenRows.bits_for`: 8 KB to 16 MB)
and made again bigger if more come. A few-row file so never touches 16 MB of fresh memory: on
a virtual machine the first touch of such memory cost a 10-row file up to 25 ms
(bench/RESULTS.md).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import polars as pl

_MIX_BITS = np.uint64(0xC2B2AE3D27D4EB4F)
_SIX_BITS = np.uint64(63)
_BLOCK = 4096  # entries per on-disk block (one index entry each)
_SEED = 0x1EAD


def row_fingerprints(frame: pl.DataFrame) -> np.ndarray:
    """A 64-bit fingerprint per row of a frame of text columns (a missing value counts as empty).

    polars' vectorised ``hash_rows`` (each value hashed, then combined in column order, so
    ``("ab", "c")`` and ``("a", "bc")`` differ). Stable within one process and polars version,
    which is as long as a file's index lives; the ledger keeps its own, documented fingerprint.
    """
    if frame.width == 0:
        return np.zeros(frame.height, dtype=np.uint64)
    if any(column.null_count() for column in frame.iter_columns()):
        frame = frame.fill_null("")
    hashes = frame.hash_rows(seed=_SEED)
    return hashes.to_numpy().astype(np.uint64, copy=False)


def python_fingerprints(columns: Sequence[pa.Array | pa.ChunkedArray], rows: int) -> np.ndarray:
    """A 64-bit fingerprint per row of text columns (a missing value counts as empty), without
    polars: for a file too small to pay for loading it. Stable within one process, like
    :func:`row_fingerprints`; a file's rows are all fingerprinted one way
    (:class:`~pipeline.ingest.validate.checks.Validator`).

    Each row's values are joined into one text (by Arrow) and its UTF-8 bytes hashed by Python
    (SipHash, with a key of the process's own); the values' lengths are then mixed in, so that
    where the join's separator falls is part of the fingerprint: ``("a", "bc")`` and
    ``("ab", "c")`` differ, whatever the values hold. One Python object per row, not one per
    value: about half the time; and bytes, not text, which Python need not decode: a third
    less again (bench/RESULTS.md).
    """
    if not columns:
        return np.zeros(rows, dtype=np.uint64)
    columns = [
        c if pa.types.is_large_string(c.type) else c.cast(pa.large_string()) for c in columns
    ]
    joined = pc.binary_join_element_wise(
        *columns, _JOIN, null_handling="replace", null_replacement=""
    )
    texts = joined.cast(pa.large_binary()).to_pylist()  # the same bytes, as bytes objects
    hashes = np.fromiter(map(hash, texts), dtype=np.int64, count=rows)
    out = hashes.view(np.uint64)
    with np.errstate(over="ignore"):
        for column in columns:
            lengths = pc.fill_null(pc.binary_length(column), 0).to_numpy(zero_copy_only=False)
            out = (out ^ lengths.astype(np.uint64)) * _MIX_LENGTHS
            out ^= out >> np.uint64(29)
    return out


_JOIN = pa.scalar("\x1f", type=pa.large_string())
_MIX_LENGTHS = np.uint64(0x9E3779B97F4A7C15)


class SeenRows:
    """Remember (fingerprint -> first row); look many fingerprints up at once."""

    FILTER_BITS = 1 << 27  # the most: 16 MB, 4 set bits per fingerprint, ~0.1 % false hits at 5M
    FIRST_FILTER_BITS = 1 << 16  # the least: 8 KB
    #: A filter is made with this many bits per fingerprint (expected, or held so far), and made
    #: again bigger once it holds a sixteenth as many fingerprints as bits (~0.5 % false hits).
    #: Its size follows the file's: the filter's memory is fresh pages the system zeroes, and
    #: the most for a 100,000-row file took as long as the rest of its duplicate index.
    ROOM_BITS = 64
    MEMORY_ENTRIES = 1 << 18  # keep at most this many fingerprints in memory, then spill

    def __init__(self, tmp_dir: Path | None = None, expected: int | None = None) -> None:
        """``expected``: how many fingerprints the file will likely give (the reader's
        estimate of its rows), so that the filter is made once at its size."""
        self._filter = np.zeros(self.bits_for(expected or 0) // 64, dtype=np.uint64)
        self._entries = 0  # fingerprints added
        self._mem: list[tuple[np.ndarray, np.ndarray]] = []
        self._disk: list[tuple[Path, Path, np.ndarray, int]] = []  # keys, rows, sparse index, n
        self._dir = Path(tempfile.mkdtemp(prefix="leadpipe-seen-", dir=tmp_dir))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)

    def close(self) -> None:
        """Delete the spilled runs."""
        self._finalizer()

    @property
    def filter_bits(self) -> int:
        """The Bloom filter's size now, in bits."""
        return len(self._filter) * 64

    @classmethod
    def bits_for(cls, fingerprints: int) -> int:
        """A filter's size for ``fingerprints``: :data:`ROOM_BITS` each, a power of two, at
        least :data:`FIRST_FILTER_BITS` and at most :data:`FILTER_BITS`."""
        bits = cls.FIRST_FILTER_BITS
        while bits < fingerprints * cls.ROOM_BITS and bits < cls.FILTER_BITS:
            bits *= 2
        return bits

    def probes(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(filter word, its 4-bit mask) per fingerprint: the word from the fingerprint's top
        bits (so sorted fingerprints give sorted words), the bits from a multiplied copy."""
        with np.errstate(over="ignore"):
            bit_mix = hashes * _MIX_BITS
        shift = np.uint64(64 - len(self._filter).bit_length() + 1)
        word = (hashes >> shift).astype(np.intp)
        one = np.uint64(1)
        mask = one << (bit_mix >> np.uint64(58))
        for pos in (52, 46, 40):
            mask |= one << ((bit_mix >> np.uint64(pos)) & _SIX_BITS)
        return word, mask

    def lookup(
        self, hashes: np.ndarray, probes: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """The first row number recorded for each fingerprint, else 0 (``probes``: those of
        ``hashes``, when the caller has them already)."""
        out = np.zeros(len(hashes), dtype=np.int64)
        if len(hashes) == 0 or not (self._mem or self._disk):
            return out
        word, mask = probes if probes is not None else self.probes(hashes)
        maybe = np.flatnonzero((self._filter[word] & mask) == mask)
        if len(maybe) == 0:
            return out
        order = maybe[np.argsort(hashes[maybe], kind="stable")]
        query = hashes[order]
        found = np.zeros(len(order), dtype=np.int64)
        for keys, rows in self._mem:
            _search(keys, rows, query, found)
        for keys_path, rows_path, index, n in self._disk:
            self._search_disk(keys_path, rows_path, index, n, query, found)
        out[order] = found
        return out

    def add(
        self,
        hashes: np.ndarray,
        rows: np.ndarray,
        probes: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Record fingerprints first seen at ``rows`` (callers add each fingerprint once;
        ``probes``: those of ``hashes``, when the caller has them already)."""
        if len(hashes) == 0:
            return
        self._entries += len(hashes)
        if self._entries * 16 > self.filter_bits and self.filter_bits < self.FILTER_BITS:
            self._grow(self.bits_for(self._entries))
            probes = None  # (they were worked out for the smaller filter)
        order = _sorting(hashes)
        keys = hashes[order]
        # words in order: OR the masks of each word, write once
        if probes is not None:
            word, mask = probes[0][order], probes[1][order]
        else:
            word, mask = self.probes(keys)
        starts = np.flatnonzero(np.concatenate(([True], word[1:] != word[:-1])))
        self._filter[word[starts]] |= np.bitwise_or.reduceat(mask, starts)
        self._mem.append((keys, rows[order].astype(np.int32)))
        while len(self._mem) > 1 and len(self._mem[-1][0]) * 2 >= len(self._mem[-2][0]):
            (k2, r2), (k1, r1) = self._mem.pop(), self._mem.pop()
            keys = np.concatenate([k1, k2])
            o = np.argsort(keys, kind="stable")
            self._mem.append((keys[o], np.concatenate([r1, r2])[o]))
        if sum(len(k) for k, _r in self._mem) >= self.MEMORY_ENTRIES:
            self._spill()

    def _grow(self, bits: int) -> None:
        """Replace the filter by one of ``bits`` bits, with every fingerprint so far."""
        self._filter = np.zeros(bits // 64, dtype=np.uint64)
        on_disk = (np.fromfile(path, dtype=np.uint64) for path, *_ in self._disk)
        for keys in itertools.chain((k for k, _rows in self._mem), on_disk):  # a run at a time
            word, mask = self.probes(keys)
            np.bitwise_or.at(self._filter, word, mask)

    def _spill(self) -> None:
        keys = np.concatenate([k for k, _r in self._mem])
        rows = np.concatenate([r for _k, r in self._mem])
        o = np.argsort(keys, kind="stable")
        keys, rows = keys[o], rows[o]
        n = len(self._disk)
        keys_path, rows_path = self._dir / f"run{n}.keys", self._dir / f"run{n}.rows"
        keys.tofile(keys_path)
        rows.tofile(rows_path)
        self._disk.append((keys_path, rows_path, keys[::_BLOCK].copy(), len(keys)))
        self._mem = []

    @staticmethod
    def _search_disk(
        keys_path: Path,
        rows_path: Path,
        index: np.ndarray,
        n: int,
        query: np.ndarray,
        found: np.ndarray,
    ) -> None:
        blocks = np.unique(np.searchsorted(index, query, side="right") - 1).clip(0)
        with keys_path.open("rb") as kf, rows_path.open("rb") as rf:
            for b in blocks.tolist():
                start, stop = b * _BLOCK, min(n, (b + 1) * _BLOCK)
                kf.seek(start * 8)
                rf.seek(start * 4)
                keys = np.frombuffer(kf.read((stop - start) * 8), dtype=np.uint64)
                rows = np.frombuffer(rf.read((stop - start) * 4), dtype=np.int32)
                _search(keys, rows, query, found)


def _sorting(hashes: np.ndarray) -> np.ndarray:
    """The positions that sort ``hashes``, about twice as fast as ``np.argsort`` for
    fingerprints: a radix pass on their top 16 bits (spread evenly, they leave a few per
    bucket), then a merge sort that finds the array nearly sorted."""
    buckets = np.argsort((hashes >> np.uint64(48)).astype(np.uint16), kind="stable")
    return buckets[np.argsort(hashes[buckets], kind="stable")]


def _search(keys: np.ndarray, rows: np.ndarray, query: np.ndarray, found: np.ndarray) -> None:
    if len(keys) == 0:
        return
    pos = np.searchsorted(keys, query).clip(0, len(keys) - 1)
    hit = (keys[pos] == query) & (found == 0)
    found[hit] = rows[pos[hit]]
