"""File-system events as hints: they only wake the sweep early (reliability.md #6).

The periodic full sweep in :mod:`pipeline.service` is the truth; an event merely sets a
``threading.Event`` so the sweep runs now instead of at the next tick. Network shares (SMB/NFS)
deliver no events: ``polling = true`` skips the watcher entirely. When the inbox vanishes and
returns (a share outage), :meth:`Watcher.ensure` re-arms the watch on the new folder.

This is the only module that imports watchdog.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from pipeline.fsutil import WORK_DIR_NAME

log = logging.getLogger("leadpipe.watch")

_OUR_FOLDERS = frozenset({WORK_DIR_NAME, "processed", "rejected", "failed"})


class _Hint(FileSystemEventHandler):
    def __init__(self, inbox: Path, hint: threading.Event) -> None:
        self.inbox = inbox
        self.hint = hint

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = Path(os.fsdecode(raw))
            try:
                parts = path.relative_to(self.inbox).parts
            except ValueError:
                parts = ()
            # our own moves into processed/, failed/ and the work folder wake nothing
            if parts and not any(p in _OUR_FOLDERS for p in parts):
                self.hint.set()
                return
            if not parts:
                self.hint.set()  # the inbox itself changed (deleted?)
                return


class Watcher:
    """Turns file-system events under ``inbox`` into wake-ups of the sweep."""

    def __init__(self, inbox: Path, hint: threading.Event, *, polling: bool = False) -> None:
        self.inbox = Path(inbox)
        self.hint = hint
        self.polling = polling
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._identity: tuple[int, int] | None = None
        self.problem = ""

    @property
    def mode(self) -> str:
        """``events``, ``polling`` (configured or fallen back) or ``waiting for the inbox``."""
        if self.polling:
            return "polling"
        if self._observer is None:
            return "polling" if self.problem else "waiting for the inbox"
        return "events"

    def start(self) -> Watcher:
        """Start watching (no-op in polling mode)."""
        self.ensure()
        return self

    def ensure(self) -> None:
        """(Re)arm the watch when the inbox exists and is not (or no longer) watched."""
        if self.polling:
            return
        try:
            st = os.stat(self.inbox)
            identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            identity = None
        alive = self._observer is not None and self._observer.is_alive()
        if identity == self._identity and (alive or identity is None):
            return
        self._stop_observer()
        self._identity = identity
        if identity is None:
            return
        observer = Observer()
        try:
            observer.schedule(_Hint(self.inbox, self.hint), str(self.inbox), recursive=True)
            observer.start()
        except OSError as exc:
            self.problem = f"file-system events unavailable ({exc}); sweeping on a timer only"
            log.warning(self.problem)
            return
        self._observer = observer
        self.problem = ""

    def stop(self) -> None:
        """Stop the observer thread."""
        self._stop_observer()

    def _stop_observer(self) -> None:
        if self._observer is not None:
            obs, self._observer = self._observer, None
            obs.stop()
            obs.join(5)
