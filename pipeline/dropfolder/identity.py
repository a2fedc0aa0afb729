"""Is this the file that was read? Size, mtime and content hash, and open writers.

A file copied slowly onto a share can settle (stop changing for the settle time) while its copy
is only paused. leadpipe therefore records a file's :class:`FileIdentity` when it claims it,
checks it again after reading and before moving the file to its end folder, and asks the
kernel whether some program still has it open for writing (:func:`open_for_writing`). A file
that changed is neither processed nor failed: it goes back to the inbox to settle again (see
``docs/dropfolder.md``, "Slow copies").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import FileUnreadable

_BLOCK = 1 << 20


@dataclass(frozen=True)
class FileIdentity:
    """What a file was when it was looked at: size, modification time and content hash."""

    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        """Stat and hash ``path`` (streamed).

        Size and time are taken *before* hashing: a file that grows while it is hashed gets an
        identity that no longer matches it, so the next check sees the change. A hash started
        for ``path`` by :func:`hash_ahead` is taken when the file's size and time are still
        those it was taken at (the same guarantee: they were taken before that hash).
        """
        with _AHEAD_LOCK:
            ahead = _AHEAD.pop(Path(path).absolute(), None)
        if ahead is not None:
            ahead.done.wait()
            if ahead.identity is not None and ahead.stat is not None:
                try:
                    now = os.stat(path)
                except OSError:
                    now = None
                if now is not None and _same_file(ahead.stat, now):
                    return ahead.identity
        return cls._hashed(path)[0]

    @classmethod
    def _hashed(cls, path: Path) -> tuple[FileIdentity, os.stat_result]:
        """The identity, and the file's status taken before it was hashed."""
        try:
            with Path(path).open("rb") as fh:
                before = os.fstat(fh.fileno())
                h = hashlib.sha256()
                while block := fh.read(_BLOCK):
                    h.update(block)
        except OSError as exc:
            raise FileUnreadable(f"cannot be read: {exc.strerror or exc}", path=path) from exc
        return cls(before.st_size, before.st_mtime_ns, h.hexdigest()), before

    def stat_matches(self, path: Path) -> bool:
        """True when size and modification time are still those recorded (cheap: one stat)."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (st.st_size, st.st_mtime_ns) == (self.size, self.mtime_ns)

    def changes(self, path: Path, *, content: bool = True) -> str:
        """What changed since this identity was taken, in plain words ("" when nothing did).

        ``content``: hash the file again when size and time are unchanged (a copy that kept
        the time); a preview, which sends nothing, leaves that out and reads the file once.
        """
        try:
            st = os.stat(path)
        except OSError as exc:
            return f"it can no longer be read ({exc.strerror or exc})"
        if st.st_size != self.size:
            return f"its size went from {self.size:,} to {st.st_size:,} bytes"
        if st.st_mtime_ns != self.mtime_ns:
            return "its modification time changed"
        if open_for_writing(path):
            return "another program still has it open for writing"
        if content and FileIdentity._hashed(path)[0].sha256 != self.sha256:
            return "its content changed (same size)"
        return ""


class _Ahead:
    """A hash of one file, made in a helper thread (:func:`hash_ahead`)."""

    def __init__(self, path: Path) -> None:
        self.identity: FileIdentity | None = None  #: None: it failed (the taker hashes again)
        self.stat: os.stat_result | None = None  #: the file's status before it was hashed
        self.done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(path,), name="leadpipe-hash-ahead", daemon=True
        )
        self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            with contextlib.suppress(Exception):  # the taker hashes again and reports it
                self.identity, self.stat = FileIdentity._hashed(path)
        finally:
            self.done.set()


def _same_file(before: os.stat_result, now: os.stat_result) -> bool:
    """The same file, unchanged since ``before``: its inode, size, modification time and
    status-change time (which any write, and setting the modification time back, moves on)."""
    return (
        before.st_dev,
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
        before.st_ctime_ns,
    ) == (
        now.st_dev,
        now.st_ino,
        now.st_size,
        now.st_mtime_ns,
        now.st_ctime_ns,
    )


_AHEAD: dict[Path, _Ahead] = {}
_AHEAD_LOCK = threading.Lock()


def hash_ahead(path: Path) -> None:
    """Start hashing ``path`` now, in a helper thread, for the next :meth:`FileIdentity.of`
    of it to take (only if the file is still the one hashed and unchanged: :func:`_same_file`).

    Reading and hashing release the interpreter lock, so a big file is hashed on another core
    while the caller does other work, e.g. ``leadpipe ingest`` loading its modules (an 86 MB
    file takes 0.15 s to hash; bench/RESULTS.md). Nothing is started when ``path`` is not a
    file; a second call for the same path before the first was taken does nothing.
    """
    key = Path(path).absolute()
    if not key.is_file():
        return
    with _AHEAD_LOCK:
        if key not in _AHEAD:
            _AHEAD[key] = _Ahead(key)


def open_for_writing(path: Path) -> bool:
    """True when some process has ``path`` open for writing, as far as this machine can tell.

    On Linux a read lease can be taken only while nobody has the file open for writing, which
    covers every process and user; where a lease is not allowed (another owner without
    ``CAP_LEASE``, network file systems) the open file descriptors under ``/proc`` are checked
    instead (the processes this account may see). A writer on another machine (a share) is
    invisible here: the size/mtime/hash checks cover that case.
    """
    verdict = _lease_says(path)
    if verdict is not None:
        return verdict
    return _proc_says(path)


def _lease_says(path: Path) -> bool | None:
    setlease = getattr(fcntl, "F_SETLEASE", None)
    if setlease is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        try:
            fcntl.fcntl(fd, setlease, fcntl.F_RDLCK)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EBUSY):
                return True
            return None  # not allowed or not supported here: ask /proc
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, setlease, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def _proc_says(path: Path) -> bool:
    try:
        target = os.stat(path)
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return False
    wanted = (target.st_dev, target.st_ino)
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
                if (st.st_dev, st.st_ino) != wanted:
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as info:
                    flags = next(
                        int(line.split()[1], 8) for line in info if line.startswith("flags:")
                    )
            except (OSError, StopIteration, ValueError, IndexError):
                continue
            if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                return True
    return False
