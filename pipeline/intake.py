"""The drop-folder state machine: discover, settle, queue, claim, process, put in one final place.

A file in ``inbox/<campaign>/`` (or its ``preview/``) moves through::

    seen -> settling -> queued -> claimed (work folder) -> processed/ | failed/
                                         \\-> back in the inbox (API down: "waiting for the API")

* **Settling.** A file is taken only when its size and mtime stayed unchanged for the settle time
  (observed by us; on local folders the file's own change time may vouch for the past, see
  :func:`_settled_since`) and it can be opened. Lock, temp, hidden and our own files are ignored.
* **Claim.** An atomic rename into ``inbox/.leadpipe/work/<folder>/<seq>-<sha16>[-preview]/``
  on the same volume. Whatever is found there at start-up (or when the inbox returns) was
  interrupted and is resumed: the ledger, keyed by the file's SHA-256, makes the rerun safe.
* **Order.** One file at a time per campaign, oldest first (mtime, then name); campaigns run in
  parallel, bounded by the number of workers.
* **Breaker.** When the processor says the API is down (or uncertain outcomes repeat), taking
  stops; files wait in the inbox; a cheap probe (or the next file) closes it again.

Nothing here knows about HTTP or spreadsheets: the work is done by an injected ``Processor``.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import os
import shutil
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.breaker import Breaker
from pipeline.clock import Clock, SystemClock
from pipeline.dropfolder import (
    OUTPUT_SUFFIXES,
    PREVIEW,
    Finished,
    Job,
    Outcome,
    Processor,
    can_open,
    claim_name,
    clear_empty_work,
    error_text,
    finished_json,
    is_ignored,
    list_inputs,
    parse_claim,
    sha256_file,
    unknown_folder_text,
)
from pipeline.errors import LeadpipeError, NotPermitted, Unavailable, Uncertain
from pipeline.fsutil import WORK_DIR_NAME, atomic_move, atomic_write_text, fsync_dir

log = logging.getLogger("leadpipe.intake")

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


class Intake:
    """The drop-folder state machine over ``inbox``. Thread-safe; see the module docstring.

    ``campaigns`` returns the campaign codes the account can reach (raise an ``ApiError`` when it
    cannot tell: taking pauses). ``probe`` is a cheap API call that raises while the API is down.
    """

    def __init__(
        self,
        inbox: Path,
        processor: Processor,
        *,
        campaigns: Callable[[], Iterable[str]],
        settle_seconds: float = 5.0,
        clock: Clock | None = None,
        trust_ctime: bool = True,
        probe: Callable[[], object] | None = None,
        breaker: Breaker | None = None,
        on_finished: Callable[[Finished], None] | None = None,
        on_claimed: Callable[[Job, float], None] | None = None,
        recent_size: int = 100,
        timezone: str | None = None,
    ) -> None:
        self.inbox = Path(inbox)
        self.work = self.inbox / WORK_DIR_NAME / "work"
        self.tmp = self.inbox / WORK_DIR_NAME / "tmp"
        self.processor = processor
        self._campaigns_fn = campaigns
        self.settle_seconds = settle_seconds
        self.clock: Clock = clock or SystemClock()
        self.trust_ctime = trust_ctime
        self.probe = probe
        self.breaker = breaker or Breaker(self.clock)
        self.on_finished = on_finished
        self.on_claimed = on_claimed
        self.recent: deque[Finished] = deque(maxlen=recent_size)
        self.tz = ZoneInfo(timezone) if timezone else None
        self.totals: dict[str, int] = {"processed": 0, "failed": 0, "wait": 0, "interrupted": 0}
        self.inbox_ok = True
        self.inbox_problem = ""
        self.folders: dict[str, str] = {}  # folder name -> campaign code ("" = unknown)
        self.stray: list[str] = []  # files dropped at the top of the inbox
        self._codes: dict[str, str] | None = None  # lower-case code -> code
        self._seen: dict[Path, _Entry] = {}
        self._queues: dict[str, list[_Entry | _Resumed]] = {}
        self._busy: dict[str, Job | Path] = {}  # campaign -> job being processed
        self._active_claims: set[Path] = set()
        self._warned: set[str] = set()
        self._taking = True
        self._probing = False
        self._listing_failed = False
        self._accept_all = False
        self._refreshed_at = float("-inf")
        self._cond = threading.Condition()
        self._seq = itertools.count()

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
                e.since + self.settle_seconds
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
                problem="" if regular else "not a regular file",
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
            if not can_open(e.path):
                e.problem = "cannot be opened yet (still locked by another program?)"
                e.since = now  # try again after another settle time
                continue
            e.problem = ""
            if e.unknown:
                self._fail_unknown(e)
                continue
            bisect.insort(self._queues.setdefault(e.campaign, []), e, key=_order)
            e.queued = True
            self._cond.notify_all()

    def _queued(self, e: _Entry) -> bool:
        return e.queued

    def _unqueue(self, e: _Entry) -> None:
        if e.queued:
            self._queues[e.campaign].remove(e)
            e.queued = False

    def _forget(self, path: Path) -> None:
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
        folder = e.path.parent.parent if e.preview else e.path.parent
        message = unknown_folder_text(folder.name, e.path.name, (self._codes or {}).values())
        if folder.name not in self._warned:
            self._warned.add(folder.name)
            log.warning("folder %r is not a campaign this account can reach", folder.name)
        stamp = self._stamp()
        started = self.clock.monotonic()
        try:
            error = folder / "failed" / f"{stamp}_{e.path.name}.error.txt"
            atomic_write_text(error, message, tmp_dir=self.tmp)
            final = atomic_move(e.path, folder / "failed" / f"{stamp}_{e.path.name}")
        except OSError as exc:
            log.warning("could not move %s to failed/: %s", e.path, exc)
            return
        self._record(
            Finished(
                campaign=folder.name,
                name=e.path.name,
                preview=e.preview,
                kind="failed",
                at=self._local_now(),
                final=final,
                receipt=None,
                rejects=[],
                error=error,
                message=message.splitlines()[0],
                counts={},
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
                files = [f for f in claim.iterdir() if f.is_file()]
                if not files:
                    with contextlib.suppress(OSError):
                        claim.rmdir()  # the move out finished before an interruption
                    continue
                code = self._code_for(cdir.name) or cdir.name
                stamp, sha, preview = parse_claim(claim.name)
                folder = self.inbox / cdir.name / (PREVIEW if preview else "")
                job = Job(
                    campaign=code,
                    name=files[0].name,
                    path=files[0],
                    folder=folder,
                    preview=preview,
                    stamp=stamp or self._stamp(),
                    sha256=sha,
                    resumed=True,
                )
                log.info("resuming %s for %s (interrupted earlier)", job.name, job.campaign)
                with self._cond:
                    bisect.insort(self._queues.setdefault(code, []), _Resumed(job), key=_order)
                    self._cond.notify_all()

    # ------------------------------------------------------------------ taking and processing
    def stop_taking(self) -> None:
        """Stop handing out files (shutdown); wakes blocked :meth:`take` calls."""
        with self._cond:
            self._taking = False
            self._cond.notify_all()

    def take(self, timeout: float | None = 0.0) -> tuple[str, _Entry | _Resumed] | None:
        """The next file of a campaign nobody is working on; None when there is none."""
        with self._cond:
            while True:
                got = self._pick()
                if got is not None or not timeout or not self._taking:
                    return got
                if not self._cond.wait(timeout):
                    return self._pick()

    def _pick(self) -> tuple[str, _Entry | _Resumed] | None:
        if not self._taking or not self.inbox_ok:
            return None
        if self.breaker.open and (self._probing or not self.breaker.may_try()):
            return None
        ready = [
            (q[0].order, c)
            for c, q in self._queues.items()
            if q and c not in self._busy and (self._codes is not None or self._accept_all)
        ]
        if not ready:
            return None
        _, campaign = min(ready)
        item = self._queues[campaign].pop(0)
        if isinstance(item, _Entry):
            item.queued = False
            self._seen.pop(item.path, None)
            self._busy[campaign] = item.path
        else:
            self._busy[campaign] = item.job
            self._active_claims.add(item.job.path.parent)
        if self.breaker.open:
            self._probing = True
            self.breaker.hold()
        return campaign, item

    def run(self, taken: tuple[str, _Entry | _Resumed]) -> Finished | None:
        """Claim (if new), process and finalise one taken file. Never raises for file problems."""
        campaign, item = taken
        job: Job | None = None
        try:
            if self._probing and self.probe is not None and not self._run_probe():
                self._requeue(item)
                return None
            if isinstance(item, _Resumed):
                job = item.job
            else:
                job = self._claim(item)
                if job is None:
                    return None
            with self._cond:
                self._busy[campaign] = job
                self._active_claims.add(job.path.parent)
            return self._process(job)
        finally:
            with self._cond:
                self._busy.pop(campaign, None)
                if job is not None:
                    self._active_claims.discard(job.path.parent)
                if self._probing:
                    self._probing = False
                self._cond.notify_all()

    def drain(self) -> int:
        """Process everything that can be taken now, in this thread. Returns files finished."""
        n = 0
        while (taken := self.take(timeout=0.0)) is not None:
            if self.run(taken) is not None:
                n += 1
        return n

    def pending(self) -> bool:
        """Anything seen, queued or being processed."""
        with self._cond:
            return bool(self._seen or any(self._queues.values()) or self._busy)

    def waiting_for_api(self) -> bool:
        """True while the breaker holds files back."""
        return self.breaker.open

    def _run_probe(self) -> bool:
        assert self.probe is not None
        try:
            self.probe()
        except (Unavailable, Uncertain) as exc:  # any other answer means the API is back
            with self._cond:
                self.breaker.trip(self.breaker.reason or str(exc))
            return False
        with self._cond:
            self.breaker.success()
        log.info("the API answers again; taking files")
        return True

    def _requeue(self, item: _Entry | _Resumed) -> None:
        with self._cond:
            if isinstance(item, _Entry):
                self._seen[item.path] = item
                campaign = item.campaign
            else:
                campaign = item.job.campaign
            bisect.insort(self._queues.setdefault(campaign, []), item, key=_order)
            if isinstance(item, _Entry):
                item.queued = True

    def _local_now(self) -> datetime:
        return self.clock.now().astimezone(self.tz)

    def _stamp(self) -> str:
        return self._local_now().strftime("%Y%m%d-%H%M%S")

    def _claim(self, e: _Entry) -> Job | None:
        """Rename the file into the work folder; None when it changed or vanished meanwhile."""
        claim: Path | None = None
        try:
            st = os.lstat(e.path)
            if (st.st_size, st.st_mtime_ns) != (e.size, e.mtime_ns):
                self._observe(e.path, e.campaign, e.preview, unknown=e.unknown)
                return None
            digest = sha256_file(e.path)
            now = self._local_now()
            seq = f"{now:%Y%m%d%H%M%S%f}{next(self._seq) % 10000:04d}"
            folder = e.path.parent.parent if e.preview else e.path.parent
            claim = self.work / folder.name / claim_name(seq, digest, e.preview)
            with self._cond:
                self._active_claims.add(claim)  # a concurrent sweep must not "resume" it
            claim.mkdir(parents=True, exist_ok=False)
            target = claim / e.path.name
            os.rename(e.path, target)
            fsync_dir(claim)
        except OSError as exc:
            if claim is not None:
                with contextlib.suppress(OSError):
                    claim.rmdir()
                with self._cond:
                    self._active_claims.discard(claim)
            if isinstance(exc, FileNotFoundError):
                return None  # deleted or renamed just now: the next sweep sees its new name
            log.warning("could not claim %s: %s", e.path, exc)
            e.problem = f"could not be moved into the work folder: {exc.strerror or exc}"
            e.since = self.clock.monotonic()  # try again after another settle time
            with self._cond:
                self._seen[e.path] = e
            return None
        job = Job(
            campaign=e.campaign,
            name=e.path.name,
            path=target,
            folder=e.path.parent,
            preview=e.preview,
            stamp=f"{now:%Y%m%d-%H%M%S}",
            sha256=digest,
        )
        if self.on_claimed is not None:
            self.on_claimed(job, max(0.0, self.clock.monotonic() - e.since - self.settle_seconds))
        return job

    def _process(self, job: Job) -> Finished | None:
        started = self.clock.monotonic()
        try:
            outcome = self.processor(job)
        except LeadpipeError as exc:
            outcome = Outcome("failed", message=str(exc))
        except Exception as exc:
            log.exception("unexpected error while processing %s", job.name)
            outcome = Outcome(
                "failed",
                message=(
                    f"leadpipe hit an internal error while processing this file ({exc!r}). "
                    "Nothing more will happen to it; tell whoever runs leadpipe."
                ),
            )
        return self._finalise(job, outcome, self.clock.monotonic() - started)

    def _finalise(self, job: Job, out: Outcome, seconds: float) -> Finished | None:
        stamp = out.stamp or job.stamp
        error: Path | None = None
        final: Path | None = None
        try:
            if out.kind == "interrupted":
                return None  # stays claimed; resumed at the next start
            if out.kind == "wait":
                final = atomic_move(job.path, job.folder / job.name)
                with self._cond:
                    self.breaker.trip(
                        out.message or "the API is not answering", longest=out.not_permitted
                    )
                log.warning("waiting for the API: %s (%s back in the inbox)", out.message, job.name)
            elif out.kind == "failed":
                where = job.folder / "failed" if not job.preview else job.folder
                error = where / f"{stamp}_{job.name}.error.txt"
                atomic_write_text(error, error_text(job, out.message), tmp_dir=self.tmp)
                final = atomic_move(job.path, where / f"{stamp}_{job.name}")
            else:
                where = job.folder if job.preview else job.folder / "processed"
                final = atomic_move(job.path, out.destination or where / f"{stamp}_{job.name}")
                with self._cond:
                    self.breaker.success(out.uncertain)
            shutil.rmtree(job.path.parent, ignore_errors=True)  # the claim, now without its file
        except OSError as exc:
            # The inbox (a share?) went away mid-move: the claim stays and is resumed later.
            log.warning("could not finish %s (%s); it will be resumed", job.name, exc)
            return None
        done = Finished(
            campaign=job.campaign,
            name=job.name,
            preview=job.preview,
            kind=out.kind,
            at=self._local_now(),
            final=final,
            receipt=out.receipt,
            rejects=list(out.rejects),
            error=error,
            message=out.message,
            counts=dict(out.counts),
            seconds=seconds,
        )
        self._record(done)
        return done

    def _record(self, done: Finished) -> None:
        with self._cond:
            self.recent.appendleft(done)
            self.totals[done.kind] = self.totals.get(done.kind, 0) + 1
            self._cond.notify_all()
        if self.on_finished is not None:
            self.on_finished(done)

    # ------------------------------------------------------------------ status
    def snapshot(self) -> dict[str, Any]:
        """Facts for the status page and ``leadpipe status`` (JSON-friendly)."""
        now = self.clock.monotonic()
        with self._cond:
            campaigns: dict[str, dict[str, Any]] = {}
            for folder, code in sorted(self.folders.items()):
                campaigns[code or folder] = {
                    "folder": str(self.inbox / folder),
                    "known": bool(code) or self._codes is None,
                    "waiting": [],
                    "settling": [],
                    "in_progress": None,
                }
            for e in sorted(self._seen.values(), key=lambda x: x.order):
                c = campaigns.setdefault(
                    e.campaign,
                    {
                        "folder": "",
                        "known": True,
                        "waiting": [],
                        "settling": [],
                        "in_progress": None,
                    },
                )
                item = {"name": e.path.name, "preview": e.preview, "size": e.size}
                if e.problem:
                    item["problem"] = e.problem
                if self._queued(e):
                    c["waiting"].append(item)
                else:
                    item["stable_in"] = round(max(0.0, e.since + self.settle_seconds - now), 1)
                    c["settling"].append(item)
            for camp, q in self._queues.items():
                for x in q:
                    if isinstance(x, _Resumed):
                        campaigns.setdefault(camp, {"waiting": [], "settling": []})[
                            "waiting"
                        ].insert(0, {"name": x.job.name, "preview": x.job.preview, "resumed": True})
            for camp, busy in self._busy.items():
                name = busy.name
                campaigns.setdefault(camp, {"waiting": [], "settling": []})["in_progress"] = name
            return {
                "inbox": str(self.inbox),
                "inbox_ok": self.inbox_ok,
                "inbox_problem": self.inbox_problem,
                "stray": list(self.stray),
                "waiting_for_api": self.breaker.open,
                "api_problem": self.breaker.reason,
                "retry_in": round(self.breaker.retry_in(), 1),
                "campaigns": campaigns,
                "queue_depth": sum(len(q) for q in self._queues.values()),
                "in_progress": len(self._busy),
                "totals": dict(self.totals),
                "recent": [finished_json(f) for f in self.recent],
            }


__all__ = [
    "OUTPUT_SUFFIXES",
    "Breaker",
    "Finished",
    "Intake",
    "Job",
    "Outcome",
    "Processor",
    "clear_empty_work",
    "is_ignored",
    "sha256_file",
]
