"""Discovery and settling: list the inbox, let each file settle, queue it; recover claims.

The inbox side of the drop-folder state machine (see :mod:`pipeline.dropfolder.intake`)::

    seen -> settling -> queued

plus the claims an interrupted run left in the work folder, queued again before anything new.
:class:`pipeline.dropfolder.intake.Intake` builds on :class:`Settling` (and
:class:`pipeline.dropfolder.claims.Claims`).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import logging
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.clock import Clock
from pipeline.dropfolder.breaker import Breaker
from pipeline.dropfolder.identity import FileIdentity, open_for_writing
from pipeline.dropfolder.layout import (
    CLAIM_RECORD,
    DropFolder,
    Finished,
    Job,
    Processor,
    can_open,
    is_ignored,
    list_inputs,
    parse_claim,
    safe_name,
    unknown_folder_text,
)
from pipeline.errors import LeadpipeError, NotPermitted

log = logging.getLogger("leadpipe.intake")

#: The status of an entry that is never opened (a folder, symlink, FIFO, device, socket).
IGNORED_IRREGULAR = "ignored: not a regular file"

#: Retry listing the campaigns this often while it fails; refresh it this often when a folder
#: that is no known campaign exists (a campaign may have been created since).
LIST_RETRY = 5.0
LIST_REFRESH = 60.0


@dataclass(eq=False)
class _Entry:
    """A file we have seen in the inbox and not yet claimed."""

    path: Path
    campaign: str
    preview: bool
    size: int
    mtime_ns: int
    since: float  # monotonic time from which size/mtime are known to be unchanged
    unknown: bool = False  # its folder is not a campaign we can reach
    problem: str = ""  # why it cannot be taken (shown on the status page)
    blocked: bool = False  # never taken as it is (not a regular file); retried when it changes
    queued: bool = False  # settled and in its campaign's queue

    @property
    def order(self) -> tuple[int, str]:
        return (self.mtime_ns, self.path.name)


@dataclass(eq=False)
class _Resumed:
    """A claim found in the work folder: processed again before anything new."""

    job: Job

    @property
    def order(self) -> tuple[int, str]:
        return (-1, self.job.path.parent.name)


def _order(item: _Entry | _Resumed) -> tuple[int, str]:
    return item.order


def _claimed_as(claim: Path) -> tuple[FileIdentity | None, str]:
    """The file as it was claimed and the name it was dropped as, from the claim's record."""
    try:
        data = json.loads((claim / CLAIM_RECORD).read_text(encoding="utf-8"))
        found = FileIdentity(int(data["size"]), int(data["mtime_ns"]), str(data["sha256"]))
        return found, str(data.get("dropped_as", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None, ""


class Settling:
    """What is in the inbox and what has settled (state set up by ``Intake.__init__``)."""

    inbox: Path
    layout: DropFolder
    work: Path
    tmp: Path
    processor: Processor
    _campaigns_fn: Callable[[], Iterable[str]]
    settle_seconds: float
    clock: Clock
    trust_ctime: bool
    probe: Callable[[], object] | None
    breaker: Breaker
    on_finished: Callable[[Finished], None] | None
    on_claimed: Callable[[Job, float], None] | None
    recent: deque[Finished]
    tz: ZoneInfo | None
    totals: dict[str, int]
    inbox_ok: bool
    inbox_problem: str
    folders: dict[str, str]  # folder name -> campaign code ("" = unknown)
    stray: list[str]  # files dropped at the top of the inbox
    _codes: dict[str, str] | None  # lower-case code -> code
    _seen: dict[Path, _Entry]
    _queues: dict[str, list[_Entry | _Resumed]]
    _busy: dict[str, Job | Path]  # campaign -> job being processed
    _active_claims: set[Path]
    _not_before: dict[Path, tuple[float, int, int]]  # (monotonic deadline, size, mtime_ns)
    _warned: set[str]
    _taking: bool
    _probing: bool
    _listing_failed: bool
    _accept_all: bool
    _refreshed_at: float
    _cond: threading.Condition
    _seq: itertools.count[int]

    # ------------------------------------------------------------------ discovery
    def refresh_campaigns(self) -> None:
        """Ask for the reachable campaigns again (on start and when an unknown folder shows up)."""
        codes = {str(c).lower(): str(c) for c in self._campaigns_fn()}
        with self._cond:
            self._codes = codes

    def sweep(self) -> None:
        """A full listing of the inbox: the truth, whatever events were (not) delivered."""
        try:
            children = list(os.scandir(self.inbox))
        except OSError as exc:
            self._inbox_lost(exc)
            return
        if not self.inbox_ok:
            log.warning("the inbox %s is back; picking up again", self.inbox)
        self.inbox_ok, self.inbox_problem = True, ""
        since = self.clock.monotonic() - self._refreshed_at
        unknown_folder = any(
            c.is_dir(follow_symlinks=False)
            and not is_ignored(c.name)
            and c.name.lower() not in (self._codes or {})
            for c in children
        )
        if (self._codes is None and not self._accept_all and since >= LIST_RETRY) or (
            unknown_folder and since >= LIST_REFRESH
        ):
            self._refreshed_at = self.clock.monotonic()
            try:
                self.refresh_campaigns()
                if self._listing_failed:
                    self._listing_failed = False
                    with self._cond:
                        self.breaker.success()
            except NotPermitted as exc:
                # the account may not list campaigns: take every folder as one (ingest then
                # says per file if the campaign is unknown)
                if not self._accept_all:
                    log.warning("cannot list the campaigns (%s); every folder is tried", exc)
                self._accept_all = True
            except LeadpipeError as exc:
                if self._codes is None:
                    self._listing_failed = True
                    with self._cond:
                        self.breaker.trip(f"cannot list the campaigns: {exc}")
        present: set[Path] = set()
        folders: dict[str, str] = {}
        with self._cond:
            busy = {b for b in self._busy.values() if isinstance(b, Path)}
        # files at the top of the inbox belong to no campaign: shown, never taken
        self.stray = sorted(
            c.name for c in children if not is_ignored(c.name) and c.is_file(follow_symlinks=False)
        )
        for child in sorted(children, key=lambda c: c.name):
            if is_ignored(child.name) or not child.is_dir(follow_symlinks=False):
                continue
            code = self._code_for(child.name)
            folders[child.name] = code or ""
            campaign = code or child.name
            base = Path(child.path)
            for path, preview in list_inputs(base):
                present.add(path)
                if path in busy:
                    continue
                self._observe(path, campaign, preview, unknown=code is None and self._known())
        now = self.clock.monotonic()
        with self._cond:
            self.folders = folders
            for path in [p for p in self._seen if p not in present]:
                self._forget(path)
            self._promote(now)
        self._recover()

    def check_settling(self) -> None:
        """Re-check only the files still settling (cheap; called at their deadlines)."""
        with self._cond:
            entries = [e for e in self._seen.values() if not self._queued(e)]
        for e in entries:
            self._observe(e.path, e.campaign, e.preview, unknown=e.unknown)
        with self._cond:
            self._promote(self.clock.monotonic())

    def next_deadline(self) -> float | None:
        """Monotonic time at which a settling file may be stable (None: nothing settling)."""
        with self._cond:
            times = [
                max(e.since + self.settle_seconds, self._held_back(e))
                for e in self._seen.values()
                if not self._queued(e) and not e.blocked
            ]
        return min(times) if times else None

    def _known(self) -> bool:
        return self._codes is not None

    def _code_for(self, folder: str) -> str | None:
        if self._codes is None:
            return folder  # cannot tell yet: assume it is one (taking waits for the API anyway)
        return self._codes.get(folder.lower())

    def _observe(self, path: Path, campaign: str, preview: bool, *, unknown: bool) -> None:
        try:
            st = os.lstat(path)
        except OSError:
            with self._cond:
                self._forget(path)
            return
        now = self.clock.monotonic()
        with self._cond:
            e = self._seen.get(path)
            if e is not None and (e.size, e.mtime_ns) == (st.st_size, st.st_mtime_ns):
                e.unknown = unknown
                return
            if e is not None and self._queued(e):
                self._unqueue(e)  # it changed after all: settle again
            since = self._settled_since(st, now)
            regular = stat.S_ISREG(st.st_mode)
            self._seen[path] = _Entry(
                path,
                campaign,
                preview,
                st.st_size,
                st.st_mtime_ns,
                since,
                unknown,
                problem="" if regular else IGNORED_IRREGULAR,
                blocked=not regular,
            )
            self._cond.notify_all()

    def _settled_since(self, st: os.stat_result, now: float) -> float:
        """On local disks the change time vouches for how long the file has been unchanged.

        ``ctime`` cannot be set by copy tools (they preserve ``mtime``), so ``max(mtime, ctime)``
        is the last time anything touched the file. Not trusted on network shares, whose clocks
        may differ from ours: there only our own observation counts.
        """
        if not self.trust_ctime:
            return now
        age = self.clock.now().timestamp() - max(st.st_mtime, st.st_ctime)
        return now - min(max(age, 0.0), self.settle_seconds) if age > 0 else now

    def _promote(self, now: float) -> None:
        """Queue every file that has settled (lock held)."""
        for e in list(self._seen.values()):
            if self._queued(e) or e.blocked or now - e.since < self.settle_seconds:
                continue
            if self._held_back(e) > now:
                continue
            self._not_before.pop(e.path, None)
            if not can_open(e.path):
                e.problem = "cannot be opened yet (still locked by another program?)"
                e.since = now  # try again after another settle time
                continue
            if open_for_writing(e.path):
                e.problem = "still being written (another program has it open for writing)"
                e.since = now  # a paused copy: try again after another settle time
                continue
            e.problem = ""
            if e.unknown:
                self._fail_unknown(e)
                continue
            bisect.insort(self._queues.setdefault(e.campaign, []), e, key=_order)
            e.queued = True
            self._cond.notify_all()

    def _held_back(self, e: _Entry) -> float:
        """Until when a file sent back to the inbox waits, unless it has changed since (lock)."""
        deadline, size, mtime_ns = self._not_before.get(e.path, (0.0, -1, -1))
        return deadline if (size, mtime_ns) == (e.size, e.mtime_ns) else 0.0

    def _queued(self, e: _Entry) -> bool:
        return e.queued

    def _unqueue(self, e: _Entry) -> None:
        if e.queued:
            self._queues[e.campaign].remove(e)
            e.queued = False

    def _forget(self, path: Path) -> None:
        self._not_before.pop(path, None)
        e = self._seen.pop(path, None)
        if e is not None:
            self._unqueue(e)

    def _inbox_lost(self, exc: OSError) -> None:
        if self.inbox_ok:
            log.warning(
                "the inbox %s cannot be read (%s); waiting for it to return", self.inbox, exc
            )
        self.inbox_ok = False
        self.inbox_problem = (
            f"the inbox folder {self.inbox} is not reachable ({exc.strerror or exc}); "
            "waiting for it to come back (a network share outage?)"
        )
        with self._cond:
            for path in list(self._seen):
                self._forget(path)

    def _fail_unknown(self, e: _Entry) -> None:
        """A settled file in a folder that is no campaign we can reach: to failed/, explained."""
        self._seen.pop(e.path, None)
        folder = DropFolder.campaign_folder(e.path.parent, e.preview)
        name = safe_name(e.path.name)
        message = unknown_folder_text(folder.name, name, (self._codes or {}).values())
        if folder.name not in self._warned:
            self._warned.add(folder.name)
            log.warning("folder %r is not a campaign this account can reach", folder.name)
        stamp = self._stamp()
        started = self.clock.monotonic()
        try:
            # to the folder's failed/, also from its preview/
            final, error = self.layout.to_failed(
                e.path, folder, False, DropFolder.result_name(stamp, name), message
            )
        except OSError as exc:
            log.warning("could not move %s to failed/: %s", e.path, exc)
            return
        self._record(
            Finished.failed(
                folder.name,
                name,
                preview=e.preview,
                at=self._local_now(),
                final=final,
                error=error,
                message=message.splitlines()[0],
                seconds=self.clock.monotonic() - started,
            )
        )

    # ------------------------------------------------------------------ recovery
    def _recover(self) -> None:
        """Queue every claim left in the work folder that no worker of ours is processing."""
        try:
            campaign_dirs = [d for d in self.work.iterdir() if d.is_dir()]
        except OSError:
            return
        for cdir in campaign_dirs:
            for claim in sorted(cdir.iterdir()):
                if not claim.is_dir():
                    continue
                with self._cond:
                    if claim in self._active_claims or any(
                        isinstance(x, _Resumed) and x.job.path.parent == claim
                        for q in self._queues.values()
                        for x in q
                    ):
                        continue
                files = [f for f in claim.iterdir() if f.is_file() and f.name != CLAIM_RECORD]
                if not files:
                    with contextlib.suppress(OSError):
                        (claim / CLAIM_RECORD).unlink(missing_ok=True)
                        claim.rmdir()  # the move out finished before an interruption
                    continue
                code = self._code_for(cdir.name) or cdir.name
                stamp, sha, preview = parse_claim(claim.name)
                identity, dropped_as = _claimed_as(claim)
                folder = DropFolder.drop_folder(self.inbox / cdir.name, preview)
                job = Job(
                    campaign=code,
                    name=files[0].name,
                    path=files[0],
                    folder=folder,
                    preview=preview,
                    stamp=stamp or self._stamp(),
                    sha256=identity.sha256 if identity else sha,
                    resumed=True,
                    identity=identity,
                    dropped_as=dropped_as,
                )
                log.info("resuming %s for %s (interrupted earlier)", job.name, job.campaign)
                with self._cond:
                    bisect.insort(self._queues.setdefault(code, []), _Resumed(job), key=_order)
                    self._cond.notify_all()

    def _local_now(self) -> datetime:
        return self.clock.now().astimezone(self.tz)

    def _stamp(self) -> str:
        return self._local_now().strftime("%Y%m%d-%H%M%S")

    def _record(self, done: Finished) -> None:
        with self._cond:
            self.recent.appendleft(done)
            self.totals[done.kind] = self.totals.get(done.kind, 0) + 1
            self._cond.notify_all()
        if self.on_finished is not None:
            self.on_finished(done)
