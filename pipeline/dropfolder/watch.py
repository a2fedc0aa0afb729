"""File-system events as hints: they only wake the sweep early.

See docs/architecture.md, "The drop folder".

The periodic full sweep in :mod:`pipeline.service.run` is the truth; an event merely sets a
``threading.Event`` so the sweep runs now instead of at the next tick. Network shares (SMB/NFS)
deliver no events: ``polling = true`` skips the watcher entirely. When the inbox vanishes and
returns (a share outage), :meth:`Watcher.ensure` re-arms the watch on the new folder.

This is the only module that imports watchdog.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from pipeline.dropfolder.layout import DropFolder

log = logging.getLogger("leadpipe.watch")


class _QuietStop(logging.Filter):
    """watchdog logs an ERROR when events arrive while an observer stops: harmless here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_QuietStop())


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
            if parts and not any(DropFolder.is_ours(p) for p in parts):
                self.hint.set()
                return
            if not parts:
                self.hint.set()  # the inbox itself changed (deleted?)
                return


class Watcher:
    """Turns file-system events in the inbox and its campaign folders into sweep wake-ups.

    Each folder is watched on its own, not recursively: the hidden work folder, where claims
    come and go all the time, is never watched.
    """

    def __init__(self, inbox: Path, hint: threading.Event, *, polling: bool = False) -> None:
        self.inbox = Path(inbox)
        self.hint = hint
        self.polling = polling
        self._observer: Any = None
        self._watches: dict[Path, tuple[tuple[int, int], Any]] = {}
        self.problem = ""

    @property
    def mode(self) -> str:
        """``events``, ``polling`` (configured or fallen back) or ``waiting for the inbox``."""
        if self.polling or self.problem:
            return "polling"
        return "events" if self._watches else "waiting for the inbox"

    def start(self) -> Watcher:
        """Start watching (no-op in polling mode)."""
        if not self.polling:
            self._observer = Observer()
            self._observer.start()
            self.ensure()
        return self

    def ensure(self, folders: Iterable[Path] = ()) -> None:
        """Watch the inbox and ``folders`` (and their ``preview/``) as they are now.

        A folder that vanished loses its watch; one that came back (a new inode) gets a new one.
        """
        if self.polling or self._observer is None or self.problem:
            return
        wanted: dict[Path, tuple[int, int]] = {}
        dirs = [Path(f) for f in folders]
        for folder in [self.inbox, *dirs, *(DropFolder.drop_folder(f, True) for f in dirs)]:
            try:
                st = os.stat(folder)
            except OSError:
                continue
            wanted[Path(folder)] = (st.st_dev, st.st_ino)
        for path in list(self._watches):
            identity, watch = self._watches[path]
            if wanted.get(path) != identity:
                with contextlib.suppress(Exception):
                    self._observer.unschedule(watch)
                del self._watches[path]
        for path, identity in wanted.items():
            if path in self._watches:
                continue
            try:
                watch = self._observer.schedule(
                    _Hint(self.inbox, self.hint), str(path), recursive=False
                )
            except OSError as exc:
                if not path.exists():
                    continue  # gone again already: the next sweep tries once more
                self.problem = f"file-system events unavailable ({exc}); sweeping on a timer only"
                log.warning(self.problem)
                return
            self._watches[path] = (identity, watch)

    def stop(self) -> None:
        """Stop the observer thread."""
        if self._observer is not None:
            obs, self._observer = self._observer, None
            with contextlib.suppress(Exception):
                obs.unschedule_all()
            obs.stop()
            obs.join(5)
        self._watches.clear()
