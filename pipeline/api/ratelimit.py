"""One rate limiter per HeroBase account, shared by every thread and client of this process.

A sliding one-minute window over the grants: a request is granted only when fewer than
``limit`` grants fall in the last 60 s, so no 60-s window ever holds more than the configured
ceiling (a token bucket would allow a burst of twice its rate across a window boundary).

- ``limit`` starts at ``min(ceiling, /myaccount/request/limits perMinute)`` (else the ceiling);
- ``X-Rate-Limit-Remaining``/``-Reset`` headers make it wait for the server's window when the
  server says the quota is used up (other integrations on the account count too);
- a 429 halves ``limit`` and blocks everyone for ``Retry-After``; ``limit`` then recovers by a
  tenth of its target every ``recover_every`` seconds without another 429;
- with a state folder (:func:`limiter_for` ``state_dir``), the grants of the last minute are
  kept in a small file there (:class:`GrantLog`), so a restarted process starts with the budget
  the previous ones already used instead of an empty window; a missing, unreadable or corrupt
  file starts it at a conservative pace instead (see :meth:`RateLimiter.use_state`) until the
  first answer with ``X-Rate-Limit-Remaining``/``-Reset`` gives the server's own count;
- permits go out in turns (docs/architecture.md, "Lanes"): requests that wait are queued per
  *lane* (a campaign's uploads) and served round-robin, one lane after the other, so a
  campaign with one row never waits behind thousands queued by another; *priority* requests
  (reads a preview, a schema fetch or a lookup needs) are served before any waiting lane,
  all within the same minute window and daily budget;
- with ``pace_uploads`` (what :func:`limiter_for` builds; off for a bare limiter), uploads are
  spaced ``60/limit`` s apart (bursting to at most :data:`UPLOAD_BURST`) and may not take the
  last :func:`headroom` permits of the window (nor of the server's count), which only priority
  requests may use, so priority reads need not wait behind uploads at full load; the window
  never holds more than ``limit`` grants either way;
- a request given a ``cancel`` event stops waiting when it is set (raising :class:`Stopping`,
  nothing sent), so a stopping service starts no new request;
- beside the minute window, the account's daily budget (:class:`~pipeline.api.quota.DailyBudget`,
  when :func:`limiter_for` is given a ``daily`` policy): ``acquire()`` raises
  :class:`~pipeline.api.quota.QuotaExhausted` instead of letting a request over it go;
- with a shared budget (:func:`limiter_for` ``shared``: a PostgreSQL ledger, docs/cluster.md,
  "Shared request budget"), the request whose turn it is, once this process's window, pacing
  and daily budget let it go, also takes a permit from the account's counters in PostgreSQL
  (:class:`~pipeline.api.shared_budget.SharedBudget`), priority reads included (the account
  counts every request), uploads leaving the same headroom there. The shared minute spent:
  every request waits for the database's next window (one sleep, no polling); the shared day
  spent: :class:`~pipeline.api.quota.QuotaExhausted`; the database unreachable:
  :class:`BudgetUnreachable` (nothing sent, safe to retry).

All waiting goes through the injected clock, so tests with a FakeClock never sleep.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import threading
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no grant file, the limiter works in memory
    fcntl = None  # type: ignore[assignment]

from pipeline.api.quota import (
    DailyBudget,
    DailyPolicy,
    QuotaExhausted,
    QuotaStatus,
    RateHeaders,
    day_log_path,
)
from pipeline.clock import Clock, SystemClock
from pipeline.errors import Unavailable
from pipeline.files import PRIVATE_FILE_MODE, open_private, private_dir

if TYPE_CHECKING:  # psycopg is loaded only for a PostgreSQL ledger
    from pipeline.api.shared_budget import Permit, SharedBudget

log = logging.getLogger(__name__)

WINDOW = 60.0
#: While lanes wait, at most this many priority requests in a row go before one lane's turn
#: (priority reads cannot starve the uploads, e.g. during a long export).
PRIORITY_BURST = 8
#: Uploads (non-priority permits) in a row that may go without the ``60/limit`` spacing.
UPLOAD_BURST = 2
#: The share of the minute limit kept for priority requests (at least HEADROOM_MIN permits).
HEADROOM_SHARE = 0.02
HEADROOM_MIN = 2
#: The lane of requests that name none.
DEFAULT_LANE = ""
#: A waiter that is not next re-checks its cancel event at least this often (real seconds).
_POLL = 0.25


def headroom(limit: int) -> int:
    """Permits of a ``limit``-a-minute window that uploads leave to priority requests.

    ``max(2, 2 %)`` of the limit, but never more than half of it (a limit of 1 keeps none).
    """
    return min(max(HEADROOM_MIN, math.ceil(limit * HEADROOM_SHARE)), limit // 2)


class Stopping(Unavailable):
    """The process is stopping: the request was not sent (and is not retried)."""


class BudgetUnreachable(Unavailable):
    """The shared request budget (PostgreSQL) did not answer: the request was not sent.

    Retried like any request HeroBase did not process (docs/cluster.md, "Shared request
    budget"): nothing goes out without a permit.
    """


class _Ticket:
    """One waiting request: its lane, whether it is a priority one."""

    __slots__ = ("lane", "priority")

    def __init__(self, lane: str, priority: bool) -> None:
        self.lane = lane
        self.priority = priority


class RateLimiter:
    """Sliding-window limiter; ``acquire()`` blocks (via the clock) until a request may go."""

    def __init__(
        self,
        ceiling: int,
        clock: Clock | None = None,
        *,
        recover_every: float = 10.0,
        keep_history: bool = False,
        pace_uploads: bool = False,
    ) -> None:
        if ceiling < 1:
            raise ValueError("the rate ceiling must be at least 1 request per minute")
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._turn = threading.Condition(self._lock)  # a waiter left the queue: whose turn?
        self._priority: deque[_Ticket] = deque()
        self._lanes: dict[str, deque[_Ticket]] = {}  # lanes with waiters, in round-robin order
        self._priority_run = 0  # priority grants in a row while lanes waited
        self.ceiling = ceiling
        self.target = ceiling
        self.limit = ceiling
        self.recover_every = recover_every
        self._grants: deque[float] = deque()
        #: uploads are spaced and leave the window's headroom to priority requests
        self.pace_uploads = pace_uploads
        self._upload_due = -math.inf  # the spacing's next due time (GCRA theoretical arrival)
        self._blocked_until = 0.0
        self._server_remaining: int | None = None
        self._server_reset_at = 0.0
        self._last_change = self.clock.monotonic()
        self._init_state = "pending"  # pending -> running -> done
        self.history: list[float] | None = [] if keep_history else None
        #: with ``keep_history``: the lane of each grant ("!" + lane for a priority one)
        self.lane_history: list[str] | None = [] if keep_history else None
        self._store: GrantLog | None = None
        self._state_path: Path | None = None
        # conservative start (no trustworthy record of the last minute): as if the minute
        # before ``_cautious_since`` had been spent evenly, grant n+1 waits until n/limit of
        # a minute has passed since then; ``_cautious_count`` grants were made since then
        self._cautious_since: float | None = None
        self._cautious_count = 0
        #: the account's daily budget (None: only the minute window is kept)
        self.daily: DailyBudget | None = None
        #: the account's budget shared with other nodes (None: this process counts alone)
        self.shared: SharedBudget | None = None
        self._claiming: _Ticket | None = None  # the request taking a shared permit now
        # the shared window is spent until then (monotonic): [uploads, priority requests]
        self._shared_blocked = [0.0, 0.0]

    def __repr__(self) -> str:
        return f"RateLimiter(limit={self.limit}/min, ceiling={self.ceiling}/min)"

    # -- set-up -----------------------------------------------------------------------------

    def claim_initialisation(self) -> bool:
        """True for exactly one caller: the one that should fetch the account's limits."""
        with self._lock:
            if self._init_state != "pending":
                return False
            self._init_state = "running"
            return True

    def configure(
        self,
        per_minute: int | None,
        *,
        per_day: int | None = None,
        used_today: int | None = None,
        mark: int | None = None,
    ) -> None:
        """Adopt the account's per-minute limit (never above the ceiling); None keeps it.

        ``per_day`` and ``used_today`` (the tenant's ``counts.day``, asked for after our
        ``mark``-th request of the day) go to the daily budget, if one is kept.
        """
        with self._lock:
            self._init_state = "done"
            if per_minute is not None and per_minute > 0:
                self.target = min(self.ceiling, per_minute)
                self.limit = self.target
                log.debug("rate limit set to %d requests/minute", self.limit)
            limit = self.limit
        if self.daily is not None:
            self.daily.configure(
                per_day=per_day, per_minute=limit, used_today=used_today, mark=mark
            )

    def use_daily(self, budget: DailyBudget) -> DailyBudget:
        """Keep ``budget`` as the account's daily budget (the first one given stays)."""
        with self._lock:
            if self.daily is None:
                self.daily = budget
                self.daily.per_minute = self.limit
                if self.shared is not None:
                    self.daily.shared = self.shared
            return self.daily

    def use_shared(self, shared: SharedBudget) -> bool:
        """Take permits from ``shared`` too (the first one given stays); False if one was."""
        with self._lock:
            if self.shared is not None:
                return False
            self.shared = shared
            if self.daily is not None:
                self.daily.shared = shared
            return True

    def quota(self) -> QuotaStatus | None:
        """The day's budget now (None: no daily budget is kept)."""
        daily = self.daily
        if daily is None:
            return None
        status = daily.status()
        with self._lock:
            limit = self.limit
        return status if status.per_minute == limit else replace(status, per_minute=limit)

    def lower_ceiling(self, ceiling: int) -> None:
        """Another client of the same account has a lower ceiling: the lowest one wins."""
        with self._lock:
            if 1 <= ceiling < self.ceiling:
                self.ceiling = ceiling
                self.target = min(self.target, ceiling)
                self.limit = min(self.limit, ceiling)

    def use_state(self, path: Path) -> None:
        """Keep this limiter's grants in ``path`` and start from the grants recorded there.

        Grants of the last minute recorded by earlier (or concurrent) processes fill the
        window as if this process had made them. A missing, unreadable or corrupt file never
        raises: the limiter then starts at a conservative pace (as if the minute before now had
        been spent evenly: at most ``limit`` grants spread over the first minute, until a
        successful answer carries the server's ``X-Rate-Limit-Remaining``/``-Reset``) and says
        so once in the log. Only the first call has an effect.
        """
        with self._lock:
            if self._state_path is not None:
                return
            self._state_path = Path(path)
        store = GrantLog(path)
        wall_now = self.clock.now().timestamp()
        offset = self.clock.monotonic() - wall_now  # wall clock -> this process's scale
        loaded = store.load(wall_now)  # file I/O outside the lock
        with self._lock:
            if loaded.times:
                merged = [*self._grants, *(t + offset for t in loaded.times)]
                self._grants = deque(sorted(merged))
            if loaded.cautious_since is not None:
                since = loaded.cautious_since + offset
                if self._cautious_since is None or since > self._cautious_since:
                    self._cautious_since = since
                    self._cautious_count = sum(1 for t in self._grants if t >= since)
            if store.usable:
                self._store = store
        if loaded.problem:
            quiet = loaded.status in ("missing", "inherited")
            level = logging.INFO if quiet else logging.WARNING
            log.log(
                level,
                "%s; starting at a conservative pace: this minute's requests are spread evenly, "
                "as if the previous process had spent the whole last minute",
                loaded.problem,
            )
        elif loaded.times:
            log.info(
                "%d HeroBase requests of the last minute recorded by earlier runs count against "
                "this run's budget",
                len(loaded.times),
            )

    # -- the hot path -----------------------------------------------------------------------

    def acquire(
        self,
        lane: str = DEFAULT_LANE,
        *,
        priority: bool = False,
        cancel: threading.Event | None = None,
    ) -> float:
        """Wait until a request may be sent and it is this request's turn; returns the wait.

        Waiting requests are served in turns: ``priority`` ones first (at most
        :data:`PRIORITY_BURST` in a row while lanes wait), then one per ``lane``, round-robin,
        first come first served within a lane. Raises
        :class:`~pipeline.api.quota.QuotaExhausted` (at once, nothing sent) when the day's
        budget is spent, :class:`Stopping` (nothing sent) once ``cancel`` is set, and
        :class:`BudgetUnreachable` (nothing sent) when the shared budget's database does not
        answer.
        """
        if cancel is not None and cancel.is_set():
            raise Stopping("leadpipe is stopping: request not sent")
        daily = self.daily
        if daily is not None:
            daily.check()  # spent: refused at once; counted only once granted (a stop may come)
        ticket = _Ticket(lane, priority)
        waited = 0.0
        granted = False
        with self._lock:
            if priority:
                self._priority.append(ticket)
            else:
                self._lanes.setdefault(lane, deque()).append(ticket)
        permit: Permit | None = None
        try:
            while True:
                with self._lock:
                    if cancel is not None and cancel.is_set():
                        raise Stopping("leadpipe is stopping: request not sent")
                    now = self.clock.monotonic()
                    # one request at a time takes a shared permit: the others wait their turn
                    mine = self._next() is ticket and self._claiming is None
                    # everyone sleeps until the window has room; only the next one takes it
                    wait = self._wait_needed(now, ticket)
                    shared = self.shared
                    if mine and wait <= 0 and shared is None:
                        self._grant(ticket, now)
                        granted = True
                        store = self._store
                        break
                    if mine and wait <= 0:
                        self._claiming = ticket
                        per_minute = self._shared_cap(ticket)
                    elif wait <= 0:
                        # another request is next: it wakes us when it leaves the queue
                        self._turn.wait(_POLL if cancel is not None else 1.0)
                        continue
                if shared is not None and wait <= 0:
                    permit = self._take_shared(shared, ticket, per_minute)
                    if permit.granted:
                        granted = True
                        store = self._store
                        break
                    continue  # the shared window's end is now everyone's wait
                self._sleep(wait, cancel)
                waited += wait
        finally:
            if not granted:
                with self._lock:
                    self._leave(ticket)
        if store is not None:
            store.append(self.clock.now().timestamp())
        if daily is not None:
            # the last of the day's budget may have gone to another thread meanwhile: refused
            # then (the minute permit is spent for nothing, the day's count is kept exact);
            # with a shared permit the database counted the day already, for every node
            daily.take(permit.day_used if permit is not None else None)
        return waited

    def _shared_cap(self, ticket: _Ticket) -> int:
        """The account's requests a minute ``ticket`` may take a shared permit within (lock
        held): uploads of a pacing limiter leave the headroom to priority requests there too."""
        keep = headroom(self.limit) if self.pace_uploads and not ticket.priority else 0
        return self.limit - keep

    def _take_shared(self, shared: SharedBudget, ticket: _Ticket, per_minute: int) -> Permit:
        """Take ``ticket``'s permit from the shared budget (outside the lock; ``ticket`` is
        the one claiming). Granted: recorded as a grant here too. The shared minute spent: every
        request of its kind waits for the next window. Raises QuotaExhausted (the shared day
        spent) or BudgetUnreachable (the database did not answer); nothing is sent then."""
        daily = self.daily
        permit: Permit | None = None
        try:
            day_end, day_cap = daily.shared_day() if daily is not None else (None, None)
            try:
                permit = shared.take(per_minute, day_end=day_end, day_cap=day_cap)
            except Exception as exc:  # never a dead thread: no permit, nothing sent
                log.exception("the shared request budget failed")
                permit = _no_permit(f"{type(exc).__name__}")
        finally:
            with self._lock:
                self._claiming = None
                now = self.clock.monotonic()
                if permit is not None and permit.granted:
                    self._grant(ticket, now)  # passes the turn on
                else:
                    self._turn.notify_all()
                if permit and not (permit.granted or permit.unavailable or permit.day_spent):
                    # the shared minute is spent: wait for its end (by the database's clock)
                    until = now + permit.wait
                    self._shared_blocked[int(ticket.priority)] = until
                    if ticket.priority:  # a priority request's cap is the higher one
                        self._shared_blocked[0] = max(self._shared_blocked[0], until)
        if permit.day_spent:
            used = permit.day_used if permit.day_used is not None else day_cap or 0
            if daily is not None and day_end is not None:
                raise daily.spent(used, day_end)
            raise QuotaExhausted(  # pragma: no cover - a day cap comes with a daily budget
                "the day's HeroBase request budget is spent", resume_at=self.clock.now()
            )
        if permit.unavailable:
            raise BudgetUnreachable(
                f"the shared request budget cannot be reached ({permit.unavailable}): request "
                "not sent",
                retry_after=permit.wait or None,
            )
        return permit

    def waiting(self) -> int:
        """How many requests wait for a permit now."""
        with self._lock:
            return len(self._priority) + sum(len(q) for q in self._lanes.values())

    def _sleep(self, seconds: float, cancel: threading.Event | None) -> None:
        if cancel is not None and isinstance(self.clock, SystemClock):
            cancel.wait(seconds)  # a stop ends the wait at once
        else:
            self.clock.sleep(seconds)

    def _next(self) -> _Ticket | None:
        """The waiting request whose turn it is (lock held)."""
        if self._priority and (self._priority_run < PRIORITY_BURST or not self._lanes):
            return self._priority[0]
        for queue in self._lanes.values():
            return queue[0]
        return self._priority[0] if self._priority else None

    def _grant(self, ticket: _Ticket, now: float) -> None:
        """Give ``ticket`` the permit (lock held): record it, pass the turn on."""
        self._grants.append(now)
        if self.pace_uploads and not ticket.priority:
            self._upload_due = max(self._upload_due, now) + WINDOW / self.limit
        if self._server_remaining is not None:
            self._server_remaining -= 1
        if self._cautious_since is not None:
            self._cautious_count += 1
        if self.history is not None:
            self.history.append(now)
        if self.lane_history is not None:
            self.lane_history.append(("!" if ticket.priority else "") + ticket.lane)
        if ticket.priority:
            self._priority_run = self._priority_run + 1 if self._lanes else 0
        else:
            self._priority_run = 0
        self._leave(ticket, rotate=True)

    def _leave(self, ticket: _Ticket, *, rotate: bool = False) -> None:
        """Take ``ticket`` out of the queue (lock held); after a grant its lane goes last."""
        if ticket.priority:
            with contextlib.suppress(ValueError):
                self._priority.remove(ticket)
        else:
            queue = self._lanes.get(ticket.lane)
            if queue is not None:
                with contextlib.suppress(ValueError):
                    queue.remove(ticket)
                if not queue:
                    del self._lanes[ticket.lane]
                elif rotate:  # served: the lane's next request waits for the other lanes
                    del self._lanes[ticket.lane]
                    self._lanes[ticket.lane] = queue
        self._turn.notify_all()

    def _wait_needed(self, now: float, ticket: _Ticket) -> float:
        """How long ``ticket`` must wait before the window has room for it (lock held)."""
        grants = self._grants
        while grants and grants[0] + WINDOW <= now:
            grants.popleft()
        if self._blocked_until > now:
            return self._blocked_until - now
        shared_blocked = self._shared_blocked[int(ticket.priority)]
        if shared_blocked > now:  # the shared window is spent: its end, for every node
            return shared_blocked - now
        # an upload of a pacing limiter leaves the last ``keep`` permits to priority requests
        keep = headroom(self.limit) if self.pace_uploads and not ticket.priority else 0
        allowed = self.limit - keep
        if len(grants) >= allowed:
            # the grant that must leave the window before one more fits
            return grants[len(grants) - allowed] + WINDOW - now
        if self.pace_uploads and not ticket.priority:
            # uploads spaced 60/limit s apart, at most UPLOAD_BURST of them at once
            due = self._upload_due - (UPLOAD_BURST - 1) * WINDOW / self.limit - now
            if due > 0:
                return due
        if self._cautious_since is not None:
            elapsed = now - self._cautious_since
            if elapsed >= WINDOW:
                self._cautious_since = None
            else:
                due = self._cautious_count * WINDOW / self.limit - elapsed
                if due > 0:
                    return due
        if self._server_remaining is not None:
            if self._server_reset_at <= now:
                self._server_remaining = None
            elif self._server_remaining <= keep:
                return self._server_reset_at - now
        return 0.0

    # -- feedback from responses ------------------------------------------------------------

    def observe(self, headers: Mapping[str, str], status: int) -> None:
        """Follow ``X-Rate-Limit-*`` headers of an answer; recover after successes."""
        seen = RateHeaders.of(headers)
        remaining, reset, limit = seen.remaining, seen.reset, seen.limit
        if self.daily is not None:
            self.daily.observe(headers)
        if reset is not None and reset > WINDOW:
            limit = None  # the limit of a daily window is no per-minute figure
        resolved: GrantLog | None = None
        with self._lock:
            now = self.clock.monotonic()
            if limit is not None and limit > 0:
                self.target = min(self.ceiling, limit)
                self.limit = min(self.limit, self.target)
            if remaining is not None and reset is not None:
                self._server_remaining = remaining
                # the per-minute window resets within a minute; a longer figure (a daily
                # window) must not freeze every thread: a 429 will say how long to wait
                self._server_reset_at = now + min(max(0.0, reset), WINDOW)
                if status < 400 and self._cautious_since is not None:
                    # the server counted the account's requests of its window, the previous
                    # process's included: its figure replaces the conservative assumption,
                    # for the processes that start after this one too
                    self._cautious_since = None
                    resolved = self._store
                    log.debug("rate-limit headers received: conservative start ended")
            recovering = status < 400 and self.limit < self.target
            if recovering and now - self._last_change >= self.recover_every:
                step = max(1, math.ceil(self.target / 10))
                self.limit = min(self.target, self.limit + step)
                self._last_change = now
        if resolved is not None:
            resolved.drop_marks(self.clock.now().timestamp())

    def penalise(self, retry_after: float | None) -> None:
        """A 429: halve the limit and hold every request back for ``retry_after`` seconds."""
        with self._lock:
            now = self.clock.monotonic()
            self.limit = max(1, self.limit // 2)
            self._last_change = now
            pause = retry_after if retry_after is not None else 1.0
            self._blocked_until = max(self._blocked_until, now + pause)
            log.warning(
                "HeroBase rate limit hit (429): pausing %.0f s, now at most %d requests/minute",
                pause,
                self.limit,
            )


_registry: dict[tuple[str, str, int | None], RateLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(
    url: str,
    user: str,
    ceiling: int,
    clock: Clock,
    *,
    state_dir: Path | None = None,
    daily: DailyPolicy | None = None,
    shared: SharedBudget | None = None,
) -> RateLimiter:
    """The process-wide limiter of account ``(url, user)``.

    Clients on the system clock share one limiter per account; a test clock (any other Clock)
    gets its own, so fake time never leaks between tests. With ``state_dir`` the limiter keeps
    its grants in that folder (:func:`grant_log_path`) and starts from the ones recorded there.
    With ``daily`` it keeps the account's daily budget too (its requests of the day in
    ``state_dir``, :func:`~pipeline.api.quota.day_log_path`). With ``shared`` every request
    also takes a permit from the account's budget every node shares (docs/cluster.md, "Shared
    request budget"); the limiter's first one stays (another given later is closed).
    """
    clock_key = None if isinstance(clock, SystemClock) else id(clock)
    key = (url.rstrip("/").lower(), user.lower(), clock_key)
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            limiter = _registry[key] = RateLimiter(ceiling, clock, pace_uploads=True)
        else:
            limiter.lower_ceiling(ceiling)
    if state_dir is not None:
        limiter.use_state(grant_log_path(state_dir, url, user))
    if daily is not None and limiter.daily is None:
        budget = limiter.use_daily(DailyBudget(daily, clock))
        if state_dir is not None:
            budget.use_state(day_log_path(state_dir, url, user))
    if shared is not None and not limiter.use_shared(shared):
        shared.close()
    return limiter


# -- the grants in the state folder ------------------------------------------------------------

#: Every this many of its appends a process looks at the file's size; it compacts the file
#: when it has grown to twice its size after the last compaction (and at least
#: COMPACT_MIN_BYTES), so compaction costs O(1) per append however busy the window is.
COMPACT_EVERY = 1024
COMPACT_MIN_BYTES = 64 * 1024
_MARK = b"~"


def grant_log_path(state_dir: Path, url: str, user: str) -> Path:
    """The grant file of account ``(url, user)`` in ``state_dir`` (named by a hash, no URL)."""
    account = f"{url.rstrip('/').lower()}\n{user.lower()}".encode()
    return Path(state_dir) / f"ratelimit-{hashlib.sha256(account).hexdigest()[:16]}.times"


@dataclass(frozen=True)
class Loaded:
    """What a grant file said at start: grant times of the last minute (wall clock, epoch s)."""

    times: list[float]
    cautious_since: float | None  # start conservatively from this moment (epoch s)
    status: str  # "ok", "missing", "corrupt", "unreadable" or "inherited" (a recent mark)
    problem: str = ""  # the sentence for the log when status is not "ok"


class GrantLog:
    """The account's recent grant times in one small file, shared by every process.

    One line per grant: wall-clock UTC milliseconds since the epoch (monotonic clocks do not
    survive a restart), appended with one ``write`` on an ``O_APPEND`` descriptor under a
    shared ``flock`` (no fsync: a tail lost in a power cut only makes the next start a little
    more eager). A line ``~<ms>`` records a conservative start begun at that moment, so a
    process that restarts within that minute inherits it. At start, and whenever a process
    finds it doubled in size since (:data:`COMPACT_EVERY`), the file is rewritten in place
    under an exclusive ``flock`` to the lines of the last minute. Mode 0600; nothing but times.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # one thread at a time on the descriptor (flock is per fd)
        self._fd: int | None = None
        self._appended = 0
        self._compacted_size = 0  # the file's size after its last compaction
        self._finalizer: weakref.finalize[..., GrantLog] | None = None

    def __repr__(self) -> str:
        return f"GrantLog({str(self.path)!r})"

    @property
    def usable(self) -> bool:
        """True while grants are being recorded."""
        return self._fd is not None

    def close(self) -> None:
        """Stop recording (idempotent)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if fd is not None:
            _close_quietly(fd)

    def load(self, now: float) -> Loaded:
        """Open (creating it with a conservative-start mark), read, compact; never raises."""
        if fcntl is None:  # pragma: no cover - not POSIX
            return Loaded([], now, "unreadable", "no file locks on this system")
        with self._lock:
            try:
                fd, created = self._open(now)
            except OSError as exc:
                return Loaded(
                    [],
                    now,
                    "unreadable",
                    f"the API request record {self.path} cannot be opened "
                    f"({exc.strerror or exc}); requests of this run are not recorded",
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    data = _read_all(fd)
                    times, marks, bad = _parse(data, now)
                    cautious = max(marks) if marks else None
                    if bad:
                        cautious = now
                    keep = [t for t in times if t > now - WINDOW]
                    if cautious is not None and cautious <= now - WINDOW:
                        cautious = None
                    lines = [_line(t) for t in keep]
                    if cautious is not None:
                        lines.insert(0, _MARK + _line(cautious))
                    content = b"".join(lines)
                    if content != data:
                        os.ftruncate(fd, 0)
                        os.write(fd, content)  # O_APPEND: at offset 0 of the emptied file
                    self._compacted_size = len(content)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError as exc:
                os.close(fd)
                return Loaded(
                    [],
                    now,
                    "unreadable",
                    f"the API request record {self.path} cannot be read "
                    f"({exc.strerror or exc}); requests of this run are not recorded",
                )
            self._fd = fd
            self._finalizer = weakref.finalize(self, _close_quietly, fd)
        if created:
            return Loaded(
                [],
                cautious,
                "missing",
                f"no record of recent API requests in {self.path} (first start, or the "
                "file was removed)",
            )
        if bad:
            return Loaded(
                keep,
                cautious,
                "corrupt",
                f"the API request record {self.path} is corrupt ({bad} unreadable "
                "line(s), dropped)",
            )
        if cautious is not None:
            return Loaded(
                keep,
                cautious,
                "inherited",
                f"a conservative start recorded in {self.path} less than a minute ago still "
                "applies",
            )
        return Loaded(keep, cautious, "ok")

    def _open(self, now: float) -> tuple[int, bool]:
        """The descriptor (``O_APPEND``) and whether the file was created now.

        A new file is created whole, holding the conservative-start mark, and linked into place,
        so a process starting at the same moment never reads it empty.
        """
        flags = os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            pass
        else:
            try:
                st = os.fstat(fd)
                if st.st_mode & 0o077 and st.st_uid == getattr(os, "geteuid", lambda: -1)():
                    os.fchmod(fd, PRIVATE_FILE_MODE)  # left open by a permissive umask
            except OSError:
                os.close(fd)
                raise
            return fd, False
        private_dir(self.path.parent)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)
            os.write(fd, _MARK + _line(now))
        finally:
            os.close(fd)
        try:
            os.link(tmp, self.path)
            created = True
        except FileExistsError:
            created = False
        except OSError:  # no hard links on this file system (some network shares)
            created = _create_exclusive(self.path, _MARK + _line(now))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return open_private(self.path, flags), created

    def append(self, when: float) -> None:
        """Record a grant at wall-clock ``when`` (epoch s): one ``write``; never raises."""
        line = _line(when)
        with self._lock:
            fd = self._fd
            if fd is None:
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                try:
                    os.write(fd, line)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                self._appended += 1
                if self._appended >= COMPACT_EVERY:
                    self._appended = 0
                    size = os.fstat(fd).st_size
                    if size >= max(COMPACT_MIN_BYTES, 2 * self._compacted_size):
                        self._compacted_size = self._compact(fd, when)
            except OSError as exc:
                self._close()
                log.warning(
                    "cannot record API requests in %s (%s); a restart within a minute may "
                    "exceed the rate limit",
                    self.path,
                    exc.strerror or exc,
                )

    def drop_marks(self, now: float) -> None:
        """Forget the conservative-start marks (the server has told its count); never raises."""
        with self._lock:
            fd = self._fd
            if fd is None:
                return
            try:
                self._compacted_size = self._compact(fd, now, marks=False)
            except OSError as exc:
                log.debug("cannot update %s: %s", self.path, exc)

    def _compact(self, fd: int, now: float, *, marks: bool = True) -> int:
        """Rewrite the file in place to the lines of the last minute; returns its new size."""
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            data = _read_all(fd)
            times, starts, _ = _parse(data, now, clamp=False)
            lines = [_MARK + _line(m) for m in starts if marks and m > now - WINDOW]
            lines += [_line(t) for t in times if t > now - WINDOW]
            content = b"".join(lines)
            if len(content) < len(data):
                os.ftruncate(fd, 0)
                os.write(fd, content)
                return len(content)
            return len(data)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _line(when: float) -> bytes:
    # whole milliseconds, rounded up: a recorded grant never leaves the window too early
    return b"%d\n" % math.ceil(when * 1000)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 16, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _parse(data: bytes, now: float, *, clamp: bool = True) -> tuple[list[float], list[float], int]:
    """(grant times, conservative-start marks, unreadable lines) of a grant file (epoch s).

    An unterminated last line counts as unreadable (a write is whole unless the disk failed).
    With ``clamp``, times after ``now`` (the wall clock went back) count as ``now``.
    """
    times: list[float] = []
    marks: list[float] = []
    bad = 0
    lines = data.split(b"\n")
    if lines[-1]:
        bad += 1
    for raw in lines[:-1]:
        target = times
        if raw.startswith(_MARK):
            target, raw = marks, raw[1:]
        if not raw.isdigit() or len(raw) > 16:
            bad += 1
            continue
        value = int(raw) / 1000
        target.append(min(value, now) if clamp else value)
    times.sort()
    return times, marks, bad


def _create_exclusive(path: Path, content: bytes) -> bool:
    """Create ``path`` (0600) holding ``content``; False when it exists already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    return True


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _no_permit(why: str) -> Permit:
    """No permit: the shared budget failed in an unexpected way (treated as unreachable)."""
    from pipeline.api.shared_budget import Permit

    return Permit(False, wait=1.0, unavailable=why)
