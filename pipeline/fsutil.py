"""Atomic file operations: a reader never sees half a file (style.md #9)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

WORK_DIR_NAME = ".leadpipe"


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort on platforms without dir fsync)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _proc_umask() -> int | None:
    """The process umask as Linux reports it (reading it this way changes nothing)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return None


def _startup_umask() -> int:
    found = _proc_umask()
    if found is not None:
        return found
    mask = os.umask(0o022)  # elsewhere: set and reset once, at import (os.umask is racy)
    os.umask(mask)
    return mask


_UMASK = _startup_umask()


def _new_file_mode(dest: Path) -> int:
    """The mode a plain ``open()`` would give ``dest``: its current one if it exists."""
    try:
        return dest.stat().st_mode & 0o7777
    except OSError:
        umask = _proc_umask()
        return 0o666 & ~(_UMASK if umask is None else umask)


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(dest: Path, *, tmp_dir: Path | None = None) -> Iterator[Path]:
    """Yield a temp file name for ``dest``; on success fsync it and rename it onto ``dest``.

    For writers that need a file name rather than a handle (xlsxwriter, a streamed download).
    The temp file lives in ``tmp_dir`` (default: a hidden ``.leadpipe/tmp`` folder beside
    ``dest``) on the same volume, so the final rename is atomic. On error the temp file is
    removed and ``dest`` is untouched. The file gets the permissions a plain ``open()`` would
    give it (``mkstemp``'s private 0600 would lock other users out of a shared folder).
    """
    dest = Path(dest)
    tmp_dir = tmp_dir or dest.parent / WORK_DIR_NAME / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=tmp_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, _new_file_mode(dest))
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(
    dest: Path,
    mode: str = "wb",
    *,
    tmp_dir: Path | None = None,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[bytes] | IO[str]]:
    """Open a temp file for writing; on success it is fsynced and renamed onto ``dest``.

    See :func:`atomic_path` for where the temp file lives and what happens on error.
    """
    with (
        atomic_path(dest, tmp_dir=tmp_dir) as tmp,
        tmp.open(mode, encoding=encoding, newline=newline) as fh,
    ):
        yield fh


def atomic_write_bytes(dest: Path, data: bytes, *, tmp_dir: Path | None = None) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_open(dest, "wb", tmp_dir=tmp_dir) as fh:
        fh.write(data)  # type: ignore[arg-type]


def readable(text: str) -> str:
    """``text`` safe to write as UTF-8: bytes of a file name that are not UTF-8 become U+FFFD.

    Python hands such names over as lone surrogates (PEP 383), which no text encoder accepts;
    they end up in receipts, error texts, the ledger and the status page as the replacement
    character instead (the file itself keeps its name).
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that did not come from a byte
        return text.encode("utf-8", "replace").decode("utf-8")


def atomic_write_text(
    dest: Path, text: str, *, tmp_dir: Path | None = None, encoding: str = "utf-8"
) -> None:
    """Write ``text`` to ``dest`` atomically (file-name bytes that are not UTF-8 as U+FFFD)."""
    if encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig"):
        text = readable(text)
    atomic_write_bytes(dest, text.encode(encoding), tmp_dir=tmp_dir)


def atomic_move(src: Path, dest: Path) -> Path:
    """Rename ``src`` to ``dest`` (same volume), never overwriting: a suffix is added if taken."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    candidate = dest
    n = 1
    while candidate.exists():
        candidate = dest.with_name(f"{dest.stem}.{n}{dest.suffix}")
        n += 1
    os.replace(src, candidate)
    fsync_dir(candidate.parent)
    return candidate
