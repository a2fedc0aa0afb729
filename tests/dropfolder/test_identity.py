"""A file's identity: size, time and content, checked again after it was read."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.dropfolder.identity import FileIdentity


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
