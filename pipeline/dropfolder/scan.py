"""The inbox as seen, and the settle policy: when a file seen there may be taken.

:class:`InboxListing` is one look at the inbox, a value: its campaign folders, the entries in
them (and in their ``preview/``) and the stray files at its top. :class:`Settling` remembers
every file seen and not yet claimed, and says which have settled: size and mtime unchanged for
the settle time, openable, and not open for writing by any program on this machine
(``docs/dropfolder.md``). Both take their file-system calls as arguments, so each can be built
and tested alone; neither knows about campaigns, queues or claims
(:class:`pipeline.dropfolder.intake.Intake` composes them).
"""

from __future__ import annotations

import os
import stat as st_mode
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.clock import Clock
from pipeline.dropfolder.identity import open_for_writing
from pipeline.dropfolder.layout import ScanDir, can_open, is_ignored, list_inputs

#: The status of an entry that is never opened (a folder, symlink, FIFO, device, socket).
IGNORED_IRREGULAR = "ignored: not a regular file"


@dataclass(frozen=True)
class InboxListing:
    """One look at the inbox: what a person put where (nothing here is opened)."""

    folders: tuple[str, ...]  #: sub-folder names, each meant to be a campaign
    inputs: tuple[tuple[str, Path, bool], ...]  #: (folder name, entry, in its ``preview/``)
    stray: tuple[str, ...]  #: files at the top of the inbox: in no campaign, never taken

    @classmethod
    def of(cls, inbox: Path, scandir: ScanDir = os.scandir) -> InboxListing:
        """List ``inbox``; raises ``OSError`` when the inbox itself cannot be read."""
        children = sorted(scandir(inbox), key=lambda c: c.name)
        folders = tuple(
            c.name for c in children if not is_ignored(c.name) and c.is_dir(follow_symlinks=False)
        )
        stray = tuple(
            c.name for c in children if not is_ignored(c.name) and c.is_file(follow_symlinks=False)
        )
        inputs = tuple(
            (name, path, preview)
            for name in folders
            for path, preview in list_inputs(inbox / name, scandir)
        )
        return cls(folders, inputs, stray)


@dataclass(eq=False)
class SeenFile:
    """A file seen in the inbox and not yet claimed."""

    path: Path
    campaign: str
    preview: bool
    size: int
    mtime_ns: int
    since: float  #: monotonic time from which size/mtime are known to be unchanged
    unknown: bool = False  #: its folder is not a campaign this account can reach
    problem: str = ""  #: why it cannot be taken yet (shown on the status page)
    blocked: bool = False  #: never taken as it is (not a regular file); retried when it changes
    queued: bool = False  #: settled and in its campaign's queue

    @property
    def order(self) -> tuple[int, str]:
        """Oldest first (mtime, then name)."""
        return (self.mtime_ns, self.path.name)


class Settling:
    """Every file seen and not yet claimed, and when each has settled.

    Not thread-safe: the intake calls it under its own lock (:meth:`look` may be called
    without it: it only reads the file system).
    """

    def __init__(
        self,
        settle_seconds: float,
        clock: Clock,
        *,
        trust_ctime: bool = True,
        lstat: Callable[[Path], os.stat_result] = os.lstat,
        openable: Callable[[Path], bool] = can_open,
        being_written: Callable[[Path], bool] = open_for_writing,
    ) -> None:
        self.settle_seconds = settle_seconds
        self.clock = clock
        self.trust_ctime = trust_ctime
        self._lstat = lstat
        self._openable = openable
        self._being_written = being_written
        self._seen: dict[Path, SeenFile] = {}
        #: sent back to the inbox: not taken again before (deadline) unless size/mtime change
        self._not_before: dict[Path, tuple[float, int, int]] = {}

    def __iter__(self) -> Iterator[SeenFile]:
        return iter(list(self._seen.values()))

    def __contains__(self, path: object) -> bool:
        return path in self._seen

    def __bool__(self) -> bool:
        return bool(self._seen)

    def look(self, path: Path) -> os.stat_result | None:
        """The file's status now (None: it is gone)."""
        try:
            return self._lstat(path)
        except OSError:
            return None

    def record(
        self,
        path: Path,
        found: os.stat_result,
        campaign: str,
        preview: bool,
        *,
        unknown: bool,
    ) -> tuple[SeenFile, SeenFile | None] | None:
        """Note what ``path`` looks like now.

        None when it is unchanged since the last look; else ``(new, old)``: the file settles
        again from now (``old`` is what it replaced, if anything: unqueue it when queued).
        """
        e = self._seen.get(path)
        if e is not None and (e.size, e.mtime_ns) == (found.st_size, found.st_mtime_ns):
            e.unknown = unknown
            return None
        regular = st_mode.S_ISREG(found.st_mode)
        new = SeenFile(
            path,
            campaign,
            preview,
            found.st_size,
            found.st_mtime_ns,
            self._settled_since(found, self.clock.monotonic()),
            unknown,
            problem="" if regular else IGNORED_IRREGULAR,
            blocked=not regular,
        )
        self._seen[path] = new
        return new, e

    def put_back(self, e: SeenFile) -> None:
        """Remember a file again (one that was taken, then not claimed after all)."""
        self._seen[e.path] = e

    def forget(self, path: Path) -> SeenFile | None:
        """Stop tracking ``path`` (gone, or claimed); returns what was known of it."""
        self._not_before.pop(path, None)
        return self._seen.pop(path, None)

    def forget_all_but(self, present: set[Path]) -> list[SeenFile]:
        """Forget every file not in ``present`` (a full listing); returns those forgotten."""
        gone = [p for p in self._seen if p not in present]
        return [e for p in gone if (e := self.forget(p)) is not None]

    def hold_back(self, path: Path, seconds: float) -> None:
        """Do not let ``path`` settle for ``seconds`` unless it changes meanwhile."""
        found = self.look(path)
        if found is not None:
            until = self.clock.monotonic() + seconds
            self._not_before[path] = (until, found.st_size, found.st_mtime_ns)

    def settling(self) -> list[SeenFile]:
        """Files still settling (not queued, not blocked)."""
        return [e for e in self._seen.values() if not e.queued and not e.blocked]

    def next_deadline(self) -> float | None:
        """Monotonic time at which a settling file may be stable (None: nothing settling)."""
        times = [max(e.since + self.settle_seconds, self._held_back(e)) for e in self.settling()]
        return min(times) if times else None

    def settled(self, now: float) -> list[SeenFile]:
        """Files that have settled by ``now`` and can be taken (the caller queues them).

        A file that cannot be opened yet, or that a program still has open for writing,
        gets a ``problem`` and settles again from now.
        """
        out: list[SeenFile] = []
        for e in self.settling():
            if now - e.since < self.settle_seconds or self._held_back(e) > now:
                continue
            self._not_before.pop(e.path, None)
            if not self._openable(e.path):
                e.problem = "cannot be opened yet (still locked by another program?)"
                e.since = now  # try again after another settle time
            elif self._being_written(e.path):
                e.problem = "still being written (another program has it open for writing)"
                e.since = now  # a paused copy: try again after another settle time
            else:
                e.problem = ""
                out.append(e)
        return out

    def _held_back(self, e: SeenFile) -> float:
        """Until when a file sent back to the inbox waits, unless it has changed since."""
        deadline, size, mtime_ns = self._not_before.get(e.path, (0.0, -1, -1))
        return deadline if (size, mtime_ns) == (e.size, e.mtime_ns) else 0.0

    def _settled_since(self, found: os.stat_result, now: float) -> float:
        """On local disks the change time vouches for how long the file has been unchanged.

        ``ctime`` cannot be set by copy tools (they preserve ``mtime``), so ``max(mtime, ctime)``
        is the last time anything touched the file. Not trusted on network shares, whose clocks
        may differ from ours: there only our own observation counts.
        """
        if not self.trust_ctime:
            return now
        age = self.clock.now().timestamp() - max(found.st_mtime, found.st_ctime)
        return now - min(max(age, 0.0), self.settle_seconds) if age > 0 else now
