"""The drop-folder state machine: discover, settle, queue, claim, process, put in one final place.

A file in ``inbox/<campaign>/`` (or its ``preview/``) moves through::

    seen -> settling -> queued -> claimed (work folder) -> processed/ | failed/
                                         \\-> back in the inbox (API down: "waiting for the API")

* **Settling.** A file is taken only when its size and mtime stayed unchanged for the settle time
  (observed by us; on local folders the file's own change time may vouch for the past, see
  :meth:`pipeline.dropfolder.scan.Settling._settled_since`) and it can be opened. Lock, temp, hidden
  and our own files are ignored.
* **Claim.** An atomic rename into ``inbox/.leadpipe/work/<folder>/<seq>-<sha16>[-preview]/``
  on the same volume. Whatever is found there at start-up (or when the inbox returns) was
  interrupted and is resumed: the ledger, keyed by the file's SHA-256, makes the rerun safe.
* **Order.** One file at a time per campaign, oldest first (mtime, then name); campaigns run in
  parallel, bounded by the number of workers.
* **Breaker.** When the processor says the API is down (or uncertain outcomes repeat), taking
  stops; files wait in the inbox; a cheap probe (or the next file) closes it again.

Nothing here knows about HTTP or spreadsheets: the work is done by an injected ``Processor``.
Discovery and settling (and finding interrupted claims) live in :mod:`pipeline.dropfolder.scan`;
claiming, processing and finishing one file in :mod:`pipeline.dropfolder.claims`; this module
holds the
state, the queues, taking and the status snapshot.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.clock import Clock, SystemClock
from pipeline.dropfolder.breaker import Breaker
from pipeline.dropfolder.claims import Claims
from pipeline.dropfolder.layout import (
    OUTPUT_SUFFIXES,
    DropFolder,
    Finished,
    Job,
    Outcome,
    Processor,
    clear_empty_work,
    finished_json,
    is_ignored,
    safe_name,
)
from pipeline.dropfolder.scan import _Entry, _order, _Resumed
from pipeline.errors import Unavailable, Uncertain
from pipeline.files import readable
from pipeline.outcome import FileOutcome

log = logging.getLogger("leadpipe.intake")


class Intake(Claims):
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
        self.layout = DropFolder(self.inbox)  # every folder name and result place
        self.work = self.layout.work
        self.tmp = self.layout.tmp
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
        self.totals: dict[str, int] = {o.value: 0 for o in FileOutcome}
        self.inbox_ok = True
        self.inbox_problem = ""
        self.folders: dict[str, str] = {}  # folder name -> campaign code ("" = unknown)
        self.stray: list[str] = []  # files dropped at the top of the inbox
        self._codes: dict[str, str] | None = None  # lower-case code -> code
        self._seen: dict[Path, _Entry] = {}
        self._queues: dict[str, list[_Entry | _Resumed]] = {}
        self._busy: dict[str, Job | Path] = {}  # campaign -> job being processed
        self._active_claims: set[Path] = set()
        #: sent back to the inbox: not taken again before (deadline) unless size/mtime change
        self._not_before: dict[Path, tuple[float, int, int]] = {}
        self._warned: set[str] = set()
        self._taking = True
        self._probing = False
        self._listing_failed = False
        self._accept_all = False
        self._refreshed_at = float("-inf")
        self._cond = threading.Condition()
        self._seq = itertools.count()

    # ------------------------------------------------------------------ taking and processing
    def stop_taking(self) -> None:
        """Stop handing out files (shutdown); wakes blocked :meth:`take` calls."""
        with self._cond:
            self._taking = False
            self._cond.notify_all()

    def take(self, timeout: float | None = 0.0) -> tuple[str, _Entry | _Resumed] | None:
        """The next file of a campaign nobody is working on; None when there is none."""
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        with self._cond:
            while True:
                got = self._pick()
                if got is not None or not timeout or not self._taking:
                    return got
                # one deadline for the whole call: wake-ups must not keep a caller waiting
                left = None if deadline is None else deadline - self.clock.monotonic()
                if left is not None and left <= 0:
                    return None
                if not self._cond.wait(left):
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
        except Exception as exc:  # one file's trouble never ends a worker
            log.exception("unexpected error while handling a file of %s", campaign)
            return self._fail_unexpected(item, job, exc)
        finally:
            with self._cond:
                self._busy.pop(campaign, None)
                if job is not None:
                    self._active_claims.discard(job.path.parent)
                if self._probing:
                    self._probing = False
                self._cond.notify_all()

    def _fail_unexpected(
        self, item: _Entry | _Resumed, job: Job | None, exc: Exception
    ) -> Finished | None:
        """Put a file whose handling raised into failed/ with the reason (best effort).

        Under a short name (stamp, hash, extension) if need be, so the move itself cannot fail
        for the name; when even that fails the claim stays for the next start.
        """
        if job is None and isinstance(item, _Resumed):
            job = item.job
        path = job.path if job is not None else item.path  # type: ignore[union-attr]
        if not os.path.lexists(path):  # it already reached its place: nothing to fail
            return None
        if job is None:
            assert isinstance(item, _Entry)
            drop, preview, campaign = item.path.parent, item.preview, item.campaign
        else:
            drop, preview, campaign = job.folder, job.preview, job.campaign
        stamp = self._stamp()
        message = (
            f"leadpipe hit an internal error while handling this file ({exc!r}). Rows it "
            "already sent are recorded and are not sent again. Tell whoever runs leadpipe."
        )
        name = safe_name(path.name)
        started = self.clock.monotonic()
        final: Path | None = None
        error: Path | None = None
        short = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:8] + path.suffix[:10]
        for base in (f"{stamp}_{name}", f"{stamp}_{readable(short)}"):
            try:
                final, error = self.layout.to_failed(path, drop, preview, base, message)
                break
            except OSError as failure:
                log.warning("could not move %s to failed/: %s", readable(path.name), failure)
        if final is None:
            return None
        if job is not None:
            DropFolder.release(job.path.parent)
        done = Finished.failed(
            campaign,
            name,
            preview=preview,
            at=self._local_now(),
            final=final,
            error=error,
            message=message,
            seconds=self.clock.monotonic() - started,
        )
        self._record(done)
        return done

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
                    "ignored": [],
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
                        "ignored": [],
                        "in_progress": None,
                    },
                )
                item = {"name": readable(e.path.name), "preview": e.preview, "size": e.size}
                if e.problem:
                    item["problem"] = e.problem
                if e.blocked:
                    c.setdefault("ignored", []).append(item)
                elif self._queued(e):
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
]
