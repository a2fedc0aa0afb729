"""Formula neutralisation and atomic writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pipeline.cells import is_risky, neutralise_csv
from pipeline.files import atomic_move, atomic_open, atomic_write_text


@pytest.mark.parametrize(
    "value",
    ["=1+1", "@SUM(A1)", "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "\t=x", "\r=x", "\n=x"],
)
def test_formula_payloads_are_neutralised_in_csv(value: str) -> None:
    assert is_risky(value)
    out = neutralise_csv(value)
    assert out == "'" + value


@pytest.mark.parametrize(
    "value", ["+45 12 34 56 78", "-12.5", "+4512345678", "Anna", "", "a=b", "(+45) 1234"]
)
def test_plain_values_stay_exact(value: str) -> None:
    assert neutralise_csv(value) == value


def test_atomic_open_leaves_nothing_on_error(tmp_path: Path) -> None:
    dest = tmp_path / "out.csv"
    dest.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_open(dest, "w", encoding="utf-8") as fh:
        fh.write("half")
        raise RuntimeError("disk full")
    assert dest.read_text(encoding="utf-8") == "old"
    assert list((tmp_path / ".leadpipe" / "tmp").iterdir()) == []


def test_atomic_write_and_move_never_overwrite(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    atomic_write_text(a, "one")
    b = tmp_path / "sub" / "b.txt"
    b.parent.mkdir()
    b.write_text("keep", encoding="utf-8")
    moved = atomic_move(a, b)
    assert moved == tmp_path / "sub" / "b.1.txt"
    assert b.read_text(encoding="utf-8") == "keep"
    assert moved.read_text(encoding="utf-8") == "one"


def test_atomic_writes_get_the_permissions_a_plain_open_would(tmp_path: Path) -> None:
    """Receipts, rejects and exports land in shared folders: not mkstemp's private 0600."""
    old = os.umask(0o002)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x", encoding="utf-8")
        made = tmp_path / "receipt.txt"
        atomic_write_text(made, "done")
        assert stat.S_IMODE(made.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o664
        made.chmod(0o640)  # a file replaced keeps the mode someone gave it
        atomic_write_text(made, "again")
        assert stat.S_IMODE(made.stat().st_mode) == 0o640
    finally:
        os.umask(old)
