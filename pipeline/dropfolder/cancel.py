"""Cancelling a file: the requests people make, and the signal the file's processor watches.

Two ways to ask (docs/dropfolder.md, "Cancelling a file"): ``leadpipe cancel FILE`` writes
``inbox/.leadpipe/cancel/<campaign folder>/<file>.cancel`` (who asked, when), and ops without a
shell drop an empty ``<file>.cancel`` into the campaign folder. The intake polls both at each
sweep (:func:`find_requests`) and either sets the running file's :class:`CancelSignal` or
cancels a file that waits without reading it. A request is removed once its file has ended.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.dropfolder.layout import RESULT_FOLDERS, DropFolder
from pipeline.files import atomic_write_text, readable

log = logging.getLogger("leadpipe.intake")


@dataclass(frozen=True)
class CancelRequest:
    """One request to cancel the file ``name`` of the campaign folder ``folder``."""

    folder: str  #: the campaign folder's name
    name: str  #: the file's name as dropped
    by: str  #: who or how, in words ("leadpipe cancel (user ops)", "a .cancel file")
    at: datetime  #: when it was asked
    path: Path  #: the request file (removed once the file has ended)

    @property
    def text(self) -> str:
        """``cancelled by <who/how> at <time>``: the words of the receipt and the not-sent file."""
        return f"cancelled by {self.by} at {self.at.isoformat(timespec='seconds')}"

    def done(self) -> None:
        """The file ended: remove the request (best effort)."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove the cancel request %s: %s", readable(str(self.path)), exc)


class CancelSignal:
    """Set once a person asked to cancel the file; the upload stops before its next row."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._text = ""

    def request(self, text: str) -> None:
        """Ask to cancel (``text``: the request's words, e.g. ``cancelled by ... at ...``)."""
        if not self.event.is_set():
            self._text = text
            self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    @property
    def text(self) -> str:
        return self._text


def find_requests(layout: DropFolder, folders: list[str]) -> list[CancelRequest]:
    """Every cancel request: ``<file>.cancel`` in campaign folders and ``leadpipe cancel``'s."""
    out: list[CancelRequest] = []
    for folder in folders:
        base = layout.inbox / folder
        for path in _entries(base):
            out.extend(_dropped(folder, path))
        for path in _entries(layout.cancels / folder):
            out.extend(_written(folder, path))
    return out


def _entries(folder: Path) -> list[Path]:
    try:
        return [
            Path(e.path)
            for e in os.scandir(folder)
            if e.is_file(follow_symlinks=False) and DropFolder.cancel_target(e.name)
        ]
    except OSError:
        return []


def _dropped(folder: str, path: Path) -> list[CancelRequest]:
    target = DropFolder.cancel_target(path.name)
    if target is None or target.lower() in RESULT_FOLDERS:
        return []
    try:
        at = datetime.fromtimestamp(path.stat().st_mtime).astimezone()
    except OSError:
        return []
    return [CancelRequest(folder, target, f"a {path.name} file in the campaign folder", at, path)]


def _written(folder: str, path: Path) -> list[CancelRequest]:
    target = DropFolder.cancel_target(path.name)
    if target is None:
        return []
    name, by = target, "leadpipe cancel"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        at = datetime.fromisoformat(str(data["at"]))
        by = str(data.get("by") or by)
        name = str(data.get("name") or name)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        try:
            at = datetime.fromtimestamp(path.stat().st_mtime).astimezone()
        except OSError:
            return []
    return [CancelRequest(folder, name, by, at, path)]


def write_request(layout: DropFolder, folder: str, name: str, now: datetime) -> Path:
    """``leadpipe cancel``'s request for ``name`` in the campaign folder ``folder``."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    path = layout.cancels / folder / DropFolder.cancel_name(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"name": name, "by": f"leadpipe cancel (user {user})", "at": now.isoformat()}
    atomic_write_text(path, json.dumps(body), tmp_dir=layout.tmp)
    return path
