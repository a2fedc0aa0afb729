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
