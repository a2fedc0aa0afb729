"""Durable state of export jobs, and the lock that keeps one run per job at a time.

One small JSON file per job under ``<state>/exports/<job>.json``, written atomically; the lock
is an in-process lock plus an OS file lock on ``<state>/exports/<job>.lock``, so neither a
second thread nor a second process (``leadpipe export`` beside ``leadpipe run``) can run the
same job at once. A corrupt state file stops the job loudly; it is never silently reset. Like
the rest of the state folder, the folder is the service user's alone (0700, files 0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import date
from pathlib import Path
from typing import IO

from pipeline.errors import Action, StateError
from pipeline.files import PRIVATE_FILE_MODE, atomic_write_text, open_private, private_dir


class JobBusy(StateError):
    """Another run of the job holds its lock: try again when it has finished (not a fault)."""


@dataclass
class JobState:
    """The durable state of one export job."""

    name: str
    watermark: str | None = None  # ISO date: end (exclusive) of the last successful window
    last_success: str | None = None  # ISO instant (UTC)
    last_file: str | None = None
    last_rows: int | None = None
    last_error: str | None = None
    error_kind: Action | None = None  #: what to do about the last failure
    last_error_at: str | None = None
    failures: int = 0
    retry_at: str | None = None  # ISO instant (UTC): not before then

    @property
    def watermark_date(self) -> date | None:
        return date.fromisoformat(self.watermark) if self.watermark else None


#: What states written by earlier versions called their failures.
_EARLIER_KINDS = {
    "api-down": Action.RETRY_LATER,
    "permission": Action.STOP,
    "failed": Action.STOP,
}


def _action(raw: object) -> Action | None:
    """The stored failure kind as an :class:`Action` (an unknown word: stop, say so)."""
    if not raw:
        return None
    text = str(raw)
    if text in _EARLIER_KINDS:
        return _EARLIER_KINDS[text]
    try:
        return Action(text)
    except ValueError:
        return Action.STOP


class StateStore:
    """One JSON file per job under ``root`` (``settings.paths.state / "exports"``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def load(self, name: str) -> JobState:
        """The job's state; a fresh one if it never ran. Corrupt state stops loudly."""
        p = self.path(name)
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return JobState(name)
        except (OSError, ValueError) as exc:
            raise StateError(
                f"export state {p} cannot be read ({exc}): fix or delete it "
                "(deleting restarts the job at its 'start' setting)"
            ) from None
        known = {f.name for f in fields(JobState)}
        if not isinstance(raw, dict) or raw.get("name") != name:
            raise StateError(f"export state {p} is not the state of job {name!r}: fix or delete it")
        state = JobState(**{k: v for k, v in raw.items() if k in known})
        state.error_kind = _action(raw.get("error_kind"))
        return state

    def save(self, state: JobState) -> None:
        """Write the state atomically (0600, in a 0700 folder)."""
        private_dir(self.root)
        text = json.dumps(asdict(state), indent=2, ensure_ascii=False) + "\n"
        atomic_write_text(
            self.path(state.name), text, tmp_dir=self.root / ".tmp", mode=PRIVATE_FILE_MODE
        )

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the job's lock (in-process and OS); StateError if someone else holds it."""
        with _THREAD_LOCKS_GUARD:
            tlock = _THREAD_LOCKS.setdefault(str(self.path(name).resolve()), threading.Lock())
        if not tlock.acquire(blocking=False):
            raise JobBusy(f"export {name!r} is already running in this process")
        try:
            private_dir(self.root)
            fd = open_private(self.root / f"{name}.lock", os.O_RDWR | os.O_APPEND)
            with os.fdopen(fd, "a+b") as fh:
                if not _os_lock(fh):
                    raise JobBusy(
                        f"export {name!r} is already running in another leadpipe process; "
                        "try again when it has finished"
                    )
                try:
                    yield
                finally:
                    _os_unlock(fh)
        finally:
            tlock.release()


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _os_lock(fh: IO[bytes]) -> bool:
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _os_unlock(fh: IO[bytes]) -> None:
    with contextlib.suppress(OSError):
        if sys.platform == "win32":  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
