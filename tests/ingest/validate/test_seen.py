"""seen.py: the duplicate index gives the first row, in memory and after spilling to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.ingest.validate.seen import SeenRows


def test_lookup_finds_first_rows_across_spilled_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SeenRows, "MEMORY_ENTRIES", 5000)
    seen = SeenRows(tmp_path)
    rng = np.random.default_rng(3)
    keys = rng.integers(1, 2**63, 60_000, dtype=np.int64).astype(np.uint64)
    rows = np.arange(2, 60_002, dtype=np.int64)
    for start in range(0, 60_000, 3000):
        part = slice(start, start + 3000)
        assert not seen.lookup(keys[part]).any()  # all new
        seen.add(keys[part], rows[part])
    assert len(list(tmp_path.glob("leadpipe-seen-*/run*.keys"))) >= 10
    probe = np.concatenate([keys[::997], rng.integers(1, 2**63, 500).astype(np.uint64)])
    got = seen.lookup(probe)
    assert got[: len(keys[::997])].tolist() == rows[::997].tolist()
    assert not got[len(keys[::997]) :].any()
    seen.close()
    assert list(tmp_path.iterdir()) == []


def test_fingerprints_found_however_their_top_bits_are_spread(tmp_path: Path) -> None:
    """The index sorts by the top bits first: keys that all share them (one bucket) or crowd
    a few, as well as evenly spread ones, are all found with their first rows."""
    rng = np.random.default_rng(5)
    spread = rng.integers(1, 2**63, 20_000, dtype=np.int64).astype(np.uint64)
    one_bucket = np.uint64(0xABCD) << np.uint64(48) | rng.integers(1, 2**40, 20_000).astype(
        np.uint64
    )
    few = (rng.integers(0, 3, 20_000).astype(np.uint64) << np.uint64(48)) | rng.integers(
        1, 2**40, 20_000
    ).astype(np.uint64)
    for keys in (spread, one_bucket, few):
        keys = np.unique(keys)
        rows = np.arange(2, len(keys) + 2, dtype=np.int64)
        shuffled = rng.permutation(len(keys))
        seen = SeenRows(tmp_path)
        seen.add(keys[shuffled], rows[shuffled])
        assert seen.lookup(keys).tolist() == rows.tolist()
        assert not seen.lookup(keys + np.uint64(2**41)).any()  # none of these was added
        seen.close()


def test_the_filter_starts_small_and_grows_with_every_fingerprint_kept(tmp_path: Path) -> None:
    """A few-row file's index holds an 8 KB filter; once it holds a sixteenth as many
    fingerprints as bits it is made again bigger with all of them, so rows seen before the
    growth are still found after it."""
    rng = np.random.default_rng(7)
    keys = np.unique(rng.integers(1, 2**63, 12_000, dtype=np.int64).astype(np.uint64))
    keys = keys[rng.permutation(len(keys))]
    rows = np.arange(2, len(keys) + 2, dtype=np.int64)
    seen = SeenRows(tmp_path)
    seen.add(keys[:10], rows[:10])
    assert seen.filter_bits == SeenRows.FIRST_FILTER_BITS  # 8 KB for ten rows
    assert seen.lookup(keys[:10]).tolist() == rows[:10].tolist()
    seen.add(keys[10:4000], rows[10:4000])
    assert seen.filter_bits == SeenRows.FIRST_FILTER_BITS
    for start in range(4000, len(keys), 3000):  # grows at the first of these
        part = slice(start, start + 3000)
        probes = seen.probes(keys[part])  # as the validator does: worked out before the add
        assert not seen.lookup(keys[part], probes).any()
        seen.add(keys[part], rows[part], probes)
    assert seen.filter_bits == SeenRows.bits_for(7000) == 1 << 19  # 64 bits for each of 7,000
    assert seen.lookup(keys).tolist() == rows.tolist()
    assert not seen.lookup(keys + np.uint64(1)).any()
    seen.close()


def test_the_filter_is_made_for_the_rows_expected_and_grows_only_to_its_most() -> None:
    """The reader's estimate sizes the filter at once (no growth for a file as big as it
    said); 16 MB is the most, whatever the estimate."""
    assert SeenRows.bits_for(0) == SeenRows.bits_for(1000) == SeenRows.FIRST_FILTER_BITS
    assert SeenRows.bits_for(100_000) == 1 << 23  # 1 MB for a 100,000-row file
    assert SeenRows.bits_for(5_000_000) == SeenRows.bits_for(10**9) == SeenRows.FILTER_BITS
    seen = SeenRows(expected=100_000)
    assert seen.filter_bits == 1 << 23
    rng = np.random.default_rng(3)
    keys = np.unique(rng.integers(1, 2**63, 100_000, dtype=np.int64).astype(np.uint64))
    rows = np.arange(2, len(keys) + 2, dtype=np.int64)
    for start in range(0, len(keys), 25_000):
        seen.add(keys[start : start + 25_000], rows[start : start + 25_000])
    assert seen.filter_bits == 1 << 23  # as many as expected: made once
    assert seen.lookup(keys).tolist() == rows.tolist()
    seen.close()


def test_rows_fingerprinted_without_polars_are_the_same_only_when_their_values_are() -> None:
    """Values are joined before they are hashed: where one value ends is part of the
    fingerprint, whatever characters the values hold; a missing value counts as empty."""
    import pyarrow as pa

    from pipeline.ingest.validate.seen import python_fingerprints

    rows = [
        ("ab", "c"), ("a", "bc"), ("a\x1fb", "c"), ("a", "b\x1fc"), ("a\x1f", "c"), ("a", "\x1fc"),
        ("", "x"), (None, "x"), ("ab", "c"), ("Åse", "+45 12"), ("Åse", "+45 12 "),
    ]  # fmt: skip
    columns = [pa.array([r[i] for r in rows], type=pa.large_string()) for i in range(2)]
    got = python_fingerprints(columns, len(rows)).tolist()
    for i, a in enumerate(rows):
        for j, b in enumerate(rows):
            same = tuple(v or "" for v in a) == tuple(v or "" for v in b)
            assert (got[i] == got[j]) is same, (a, b)
    plain = [pa.array([r[i] for r in rows], type=pa.string()) for i in range(2)]
    assert python_fingerprints(plain, len(rows)).tolist() == got  # (either string type)
    chunked = [  # (columns in pieces, each cut elsewhere)
        pa.chunked_array([c.slice(0, 3), c.slice(3)])
        if i
        else pa.chunked_array([c.slice(0, 7), c.slice(7)])
        for i, c in enumerate(columns)
    ]
    assert python_fingerprints(chunked, len(rows)).tolist() == got
    assert python_fingerprints([c.slice(0, 0) for c in columns], 0).tolist() == []
