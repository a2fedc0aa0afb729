"""Atomic file operations: a reader never sees half a file (docs/architecture.md, "Practices")."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

WORK_DIR_NAME = ".leadpipe"
#: The mode of leadpipe's state folder and the folders in it: the service user's alone.
PRIVATE_DIR_MODE = 0o700
#: The mode of the files leadpipe keeps in its state folder (ledger, lock, status).
PRIVATE_FILE_MODE = 0o600

log = logging.getLogger("leadpipe.fsutil")


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
def atomic_path(
    dest: Path, *, tmp_dir: Path | None = None, mode: int | None = None
) -> Iterator[Path]:
    """Yield a temp file name for ``dest``; on success fsync it and rename it onto ``dest``.

    For writers that need a file name rather than a handle (xlsxwriter, a streamed download).
    The temp file lives in ``tmp_dir`` (default: a hidden ``.leadpipe/tmp`` folder beside
    ``dest``) on the same volume, so the final rename is atomic. On error the temp file is
    removed and ``dest`` is untouched. By default the file gets the permissions a plain
    ``open()`` would give it (``mkstemp``'s private 0600 would lock other users out of a shared
    folder); ``mode`` sets them exactly instead, whatever the umask (e.g.
    :data:`PRIVATE_FILE_MODE` for state files), and a new ``tmp_dir`` is then made 0700.
    """
    dest = Path(dest)
    tmp_dir = tmp_dir or dest.parent / WORK_DIR_NAME / "tmp"
    if mode is None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
    else:
        tmp_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=tmp_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, _new_file_mode(dest) if mode is None else mode)
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
    file_mode: int | None = None,
) -> Iterator[IO[bytes] | IO[str]]:
    """Open a temp file for writing; on success it is fsynced and renamed onto ``dest``.

    See :func:`atomic_path` for where the temp file lives, what happens on error and what
    ``file_mode`` (its ``mode``: the permission bits) does; ``mode`` here is the open mode.
    """
    with (
        atomic_path(dest, tmp_dir=tmp_dir, mode=file_mode) as tmp,
        tmp.open(mode, encoding=encoding, newline=newline) as fh,
    ):
        yield fh


def atomic_write_bytes(
    dest: Path, data: bytes, *, tmp_dir: Path | None = None, mode: int | None = None
) -> None:
    """Write ``data`` to ``dest`` atomically.

    ``mode``: exact permission bits, see :func:`atomic_path`.
    """
    with atomic_open(dest, "wb", tmp_dir=tmp_dir, file_mode=mode) as fh:
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
    dest: Path,
    text: str,
    *,
    tmp_dir: Path | None = None,
    encoding: str = "utf-8",
    mode: int | None = None,
) -> None:
    """Write ``text`` to ``dest`` atomically (file-name bytes that are not UTF-8 as U+FFFD).

    ``mode``: exact permission bits, see :func:`atomic_path`.
    """
    if encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig"):
        text = readable(text)
    atomic_write_bytes(dest, text.encode(encoding), tmp_dir=tmp_dir, mode=mode)


def free_name(dest: Path) -> Path:
    """``dest``, or ``<stem>.1<suffix>``, ``.2`` ... when taken: the name a move will use."""
    candidate, n = dest, 1
    while candidate.exists():
        candidate = dest.with_name(f"{dest.stem}.{n}{dest.suffix}")
        n += 1
    return candidate


def atomic_move(src: Path, dest: Path) -> Path:
    """Rename ``src`` to ``dest`` (same volume), never overwriting: a suffix is added if taken."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    candidate = free_name(dest)
    os.replace(src, candidate)
    fsync_dir(candidate.parent)
    return candidate


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) if needed and make it 0700, whatever the umask.

    Only the folder itself is made private (parents get the usual mode). A folder of another
    user cannot be changed: that is logged, not raised (the caller finds out when it writes).
    """
    path = Path(path)
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, path.stat())  # the configured folder may be a link to the real one
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` of a state file, created 0600; an existing file of ours is made 0600 too."""
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE_MODE)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077 and st.st_uid == _euid():
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)
    except OSError:
        os.close(fd)
        raise
    return fd


def make_private(folder: Path) -> None:
    """Take the group and other permissions off ``folder`` and all in it that this user owns.

    Repairs state folders written under a permissive umask by earlier versions: files end up
    0600, folders 0700 (bits the owner lacks are not added). Symbolic links inside are
    neither followed nor changed, nor is anything of another user; a missing folder is left
    alone.
    """
    folder = Path(folder)
    try:
        st = folder.stat()  # the configured folder may be a link to the real one
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode):
        return
    _tighten(folder, st)
    if st.st_uid != _euid():
        return
    for parent, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            path = Path(parent) / name
            try:
                entry = path.lstat()
            except OSError:
                continue
            if stat.S_ISDIR(entry.st_mode) or stat.S_ISREG(entry.st_mode):
                _tighten(path, entry)
        # not into folders of other users (a symlinked folder is not walked into anyway)
        dirs[:] = [d for d in dirs if _owned(Path(parent) / d)]


def _euid() -> int:
    """This process's effective user id (-1 where there are none: nothing is then changed)."""
    geteuid = getattr(os, "geteuid", None)
    return geteuid() if geteuid is not None else -1


def _owned(path: Path) -> bool:
    try:
        return path.lstat().st_uid == _euid()
    except OSError:
        return False


def _tighten(path: Path, st: os.stat_result) -> None:
    """Drop the group/other bits of ``path`` (already stat-ed as ``st``) if it has any."""
    if not st.st_mode & 0o077 or _euid() < 0:
        return
    if st.st_uid != _euid():
        log.warning(
            "%s belongs to another user and is open to others (mode %o); leadpipe cannot "
            "make it private: fix its owner or mode",
            path,
            stat.S_IMODE(st.st_mode),
        )
        return
    try:
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
    except OSError as exc:
        log.warning("cannot make %s private: %s", path, exc)
