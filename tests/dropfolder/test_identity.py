"""A file's identity: size, time and content, checked again after it was read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipeline.dropfolder import identity
from pipeline.dropfolder.identity import FileIdentity, hash_ahead
from pipeline.errors import FileUnreadable


def test_a_same_size_rewrite_that_kept_its_time_is_found_by_the_second_hash_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "leads.csv"
    path.write_bytes(b"Name,Phone\nAcme,+4512345678\n")
    ident = FileIdentity.of(path)
    st = os.stat(path)
    path.write_bytes(b"Name,Phone\nAcme,+4587654321\n")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # a copy that kept the time
    assert ident.changes(path) == "its content changed (same size)"
    # a preview sends nothing: it trusts size and time and reads the file once
    assert ident.changes(path, content=False) == ""
    path.write_bytes(b"Name,Phone\n")
    assert ident.changes(path, content=False).startswith("its size went from")


def test_a_hash_made_ahead_is_taken_only_while_the_file_is_as_it_was_hashed(
    tmp_path: Path,
) -> None:
    """``leadpipe ingest`` hashes its file while it loads; what it then records is the file's
    identity as it is when recorded, never a stale one."""
    path = tmp_path / "leads.csv"
    path.write_bytes(b"Name,Phone\nAcme,+4512345678\n" * 1000)
    hash_ahead(path)
    ahead = _ahead_of(path)
    ahead.done.wait()
    taken = FileIdentity.of(path)
    assert taken is ahead.identity  # taken,
    assert taken == FileIdentity._hashed(path)[0]  # and right

    hash_ahead(path)
    _ahead_of(path).done.wait()  # hashed; then rewritten, same size, its time set back
    st = os.stat(path)
    path.write_bytes(path.read_bytes().replace(b"Acme", b"Acne"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    rewritten = FileIdentity.of(path)
    assert (rewritten.size, rewritten.mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert rewritten.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()  # not the old one

    hash_ahead(path)
    _ahead_of(path).done.wait()  # hashed; then the file grows before it is recorded
    with path.open("ab") as fh:
        fh.write(b"Beta,+4587654321\n")
    grown = FileIdentity.of(path)
    assert grown.size == path.stat().st_size
    assert grown.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    hash_ahead(path)
    _ahead_of(path).done.wait()
    path.unlink()  # gone before it is recorded: the usual error, not the old hash
    with pytest.raises(FileUnreadable):
        FileIdentity.of(path)
    hash_ahead(path)  # no file: nothing started, nothing left behind
    assert path.absolute() not in identity._AHEAD


def _ahead_of(path: Path) -> identity._Ahead:
    with identity._AHEAD_LOCK:
        return identity._AHEAD[path.absolute()]
