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
