"""The account's daily request budget: the day's limit, minus a share kept for others.

HeroBase counts an account's requests per day as well as per minute, for every integration on
the account together (docs/api-contract.md, "The daily quota"). leadpipe spends one request per
lead, so a big file could use up the tenant's day. :class:`DailyBudget` keeps the day's count
and refuses a request (:class:`QuotaExhausted`, before anything is sent) once the usable budget
is spent:

- the day's **limit**: ``[api] requests_per_day`` when set (never above the tenant's), else the
  tenant's ``perDay`` (``/myaccount/request/limits``), else the limit of a daily
  ``X-Rate-Limit-*`` window (headers whose reset is more than a minute away), else none;
- the **budget**: the limit less ``[api] daily_reserve`` (a share left to other integrations);
- **used today**: the tenant's own count (``counts.day``, or limit minus remaining of a daily
  header window) plus the requests this process sent since, never less than our own requests
  of the day; our requests are kept in the state folder (:class:`DayLog`), so a restart starts
  with the day's count;
- the **reset**: ``[api] daily_reset`` (default midnight) in the tenant's time zone, unless a
  daily header window says when it resets;
- **shared** (:attr:`DailyBudget.shared`, with a PostgreSQL ledger): the day's count is the
  account's over every node, kept in PostgreSQL (:mod:`pipeline.api.shared_budget`,
  docs/cluster.md, "Shared request budget"); each permit the limiter takes there tells this
  budget the account's count, and the tenant's count is shared there too.

All times come from the injected clock.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from pipeline.clock import Clock, shown_time
from pipeline.errors import Unavailable
from pipeline.files import PRIVATE_FILE_MODE, open_private, private_dir

log = logging.getLogger(__name__)

#: A header window that resets later than this is the daily one (a minute window resets within
#: a minute) [ours: docs/api-contract.md, "The daily quota"].
MINUTE = 60.0

Json = dict[str, Any]


class QuotaExhausted(Unavailable):
    """The day's request budget is spent: nothing was sent; try again at ``resume_at``.

    Never retried by the client (the wait is until the reset); callers pause instead.
    """

    def __init__(self, message: str, *, resume_at: datetime) -> None:
        self.resume_at = resume_at
        super().__init__(message)


class DayMark(int):
    """Our requests of the day when the tenant's count was asked for (:meth:`DailyBudget.mark`).

    ``shared``: the figure is every node's, from the shared counter; False when it is this
    process's own (no shared budget, or the database did not answer).
    """

    shared: bool

    def __new__(cls, count: int, *, shared: bool = False) -> DayMark:
        mark = super().__new__(cls, count)
        mark.shared = shared
        return mark


class SharedDay(Protocol):
    """The day's counter every node shares (:class:`pipeline.api.shared_budget.SharedBudget`)."""

    def day_used(self, day_end: datetime) -> int | None:
        """Our requests of the day over every node (None: unknown now)."""

    def set_others(self, day_end: datetime, others: int) -> None:
        """The tenant's count held ``others`` requests beyond ours."""


@dataclass(frozen=True)
class DailyPolicy:
    """What the configuration says about the daily budget."""

    per_day: int | None = None  #: ``[api] requests_per_day``; None: the tenant's figure
    reserve: float = 0.1  #: ``[api] daily_reserve``: share of the limit left to others
    timezone: str = "Europe/Copenhagen"  #: the tenant's time zone (``timezone``)
    reset: time = time(0, 0)  #: ``[api] daily_reset``: local time the day's count restarts

    @classmethod
    def from_settings(cls, settings: Any) -> DailyPolicy:
        """The policy of a :class:`~pipeline.config.Settings`."""
        api = settings.api
        return cls(
            per_day=api.requests_per_day or None,
            reserve=api.daily_reserve,
            timezone=settings.timezone,
            reset=parse_reset(api.daily_reset),
        )


def parse_reset(text: str) -> time:
    """``"HH:MM"`` as a time of day; ValueError when it is not one."""
    hours, _, minutes = text.strip().partition(":")
    return time(int(hours), int(minutes or 0))


def budget_of(limit: int | None, reserve: float) -> int | None:
    """The usable part of a day's ``limit`` once ``reserve`` (a share, 0 <= r < 1) is kept."""
    if limit is None:
        return None
    return max(0, math.floor(limit * (1.0 - reserve) + 1e-9))


def next_reset(now: datetime, tz: ZoneInfo, at: time) -> datetime:
    """The first local ``at`` in ``tz`` after ``now`` (aware), in UTC; DST days included."""
    local = now.astimezone(tz)
    for days in (0, 1, 2):
        day = local.date() + timedelta(days=days)
        candidate = datetime.combine(day, at, tzinfo=tz).astimezone(UTC)
        if candidate > now.astimezone(UTC):
            return candidate
    raise AssertionError("unreachable: a reset within two days")  # pragma: no cover


@dataclass(frozen=True)
class QuotaStatus:
    """The day's budget at one moment, as the status page, ``/metrics`` and the CLI show it."""

    used: int = 0  #: requests counted today (the tenant's count and ours since)
    limit: int | None = None  #: the day's limit (None: none known, nothing held back)
    reserve: float = 0.0  #: share of the limit left to other integrations
    budget: int | None = None  #: the part leadpipe may use today (limit less the reserve)
    resets_at: str = ""  #: when the day's count restarts (ISO 8601, tenant time)
    source: str = ""  #: where the limit comes from: config, limits, headers ("" none)
    per_minute: int | None = None  #: the minute limit in force (for finish-time estimates)

    @property
    def left(self) -> int | None:
        """Requests leadpipe may still send today (None: no daily limit known)."""
        return None if self.budget is None else max(0, self.budget - self.used)

    @property
    def spent(self) -> bool:
        """The day's budget is used up: uploads pause until :attr:`resets_at`."""
        return self.left == 0

    def sentence(self) -> str:
        """The budget in plain words (status page, ``leadpipe status``)."""
        resets = shown_time(self.resets_at)
        if self.budget is None:
            return f"{self.used} requests today (no daily limit known); the day resets at {resets}"
        kept = f", {self.reserve:.0%} kept for other integrations" if self.reserve else ""
        return (
            f"{self.used} of {self.budget} requests used today (limit {self.limit}{kept}); "
            f"{self.left} left; the day resets at {resets}"
        )

    def to_json(self) -> Json:
        return {
            "used": self.used,
            "limit": self.limit,
            "reserve": self.reserve,
            "budget": self.budget,
            "left": self.left,
            "resets_at": self.resets_at,
            "source": self.source,
            "per_minute": self.per_minute,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QuotaStatus:
        def num(key: str) -> int | None:
            value = data.get(key)
            return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

        reserve = data.get("reserve")
        return cls(
            used=num("used") or 0,
            limit=num("limit"),
            reserve=float(reserve) if isinstance(reserve, int | float) else 0.0,
            budget=num("budget"),
            resets_at=str(data.get("resets_at") or ""),
            source=str(data.get("source") or ""),
            per_minute=num("per_minute"),
        )


class DailyBudget:
    """The day's count of one account's requests and the budget it may not exceed.

    Thread-safe. :meth:`take` before each request; :meth:`observe` each answer's headers;
    :meth:`configure` with the tenant's limits and count.
    """

    def __init__(self, policy: DailyPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.tz = ZoneInfo(policy.timezone)
        self._lock = threading.Lock()
        self._tenant_limit: int | None = None  # perDay of /myaccount/request/limits
        self._header_limit: int | None = None  # the limit of a daily header window
        self._reset_at = next_reset(clock.now(), self.tz, policy.reset)
        self._ours = 0  # our requests in this day window
        self._base: int | None = None  # the tenant's count of the day, when last told
        self._since_base = 0  # our requests after that count
        # the account's count of a daily header window (every integration's), when last told,
        # and our requests since: kept apart from ``_base``, which a shared permit overwrites
        self._header_used: int | None = None
        self._since_header = 0
        self._shared_total: int | None = None  # the shared day's count, as of our last permit
        self._refresh_due = False  # a new day began: read the tenant's count again
        self._store: DayLog | None = None
        self.per_minute: int | None = None
        #: the day's counter shared by every node (None: this process counts alone)
        self.shared: SharedDay | None = None

    def __repr__(self) -> str:
        return f"DailyBudget(used={self.status().used}, budget={self.status().budget})"

    # -- set-up ----------------------------------------------------------------------------

    def use_state(self, path: Path) -> None:
        """Keep our requests of the day in ``path`` and start from those recorded there."""
        store = DayLog(path)
        now = self.clock.now()
        loaded = store.load(now, self._reset_at)
        with self._lock:
            if self._store is not None:
                return
            if loaded is not None:
                self._reset_at = loaded.reset_at
                self._ours += loaded.ours
                if loaded.base is not None:
                    self._base = loaded.base
                    self._since_base += loaded.since_base
                else:
                    self._since_base += loaded.ours
            self._store = store if store.usable else None
        if loaded is not None and (loaded.ours or loaded.base is not None):
            log.info(
                "%d HeroBase requests of today recorded by earlier runs count against today's "
                "budget",
                loaded.ours,
            )

    def mark(self) -> DayMark:
        """Our requests so far today (pass to :meth:`configure` with the tenant's count).

        Shared: every node's requests of the day (``shared`` set). When the database does not
        answer, this process's own (``shared`` not set): the tenant's count then looks larger
        for this process, the safe side, and :meth:`configure` does not share that figure
        (docs/cluster.md, "Shared request budget").
        """
        shared = self.shared
        if shared is not None:
            used = shared.day_used(self.shared_day()[0])
            if used is not None:
                return DayMark(used, shared=True)
        with self._lock:
            return DayMark(self._ours)

    def shared_day(self) -> tuple[datetime, int | None]:
        """The day of the shared counter (the instant it ends) and the day's usable budget.

        The day as the policy defines it (``daily_reset`` in the tenant's time zone), the same
        on every node whatever headers each saw.
        """
        now = self.clock.now()
        end = next_reset(now, self.tz, self.policy.reset)
        with self._lock:
            return end, budget_of(self._limit()[0], self.policy.reserve)

    def configure(
        self,
        *,
        per_day: int | None = None,
        per_minute: int | None = None,
        used_today: int | None = None,
        mark: int | None = None,
    ) -> None:
        """Adopt the tenant's limits and its count of the day.

        ``used_today`` (``counts.day``) was asked for after our ``mark``-th request of the day;
        it counts itself, and every other request of ours since the mark is added to it (it may
        not have been counted yet).
        """
        with self._lock:
            if per_day is not None and per_day > 0:
                self._tenant_limit = per_day
            if per_minute is not None and per_minute > 0:
                self.per_minute = per_minute
            if used_today is not None and used_today >= 0:
                since = 0 if mark is None else max(0, self._ours - mark - 1)
                self._base, self._since_base = used_today, since
                store, base_at = self._store, self.clock.now()
            else:
                store = None
        if store is not None:
            store.base(used_today or 0, base_at)
        shared = self.shared
        from_shared = isinstance(mark, DayMark) and mark.shared
        if shared is not None and used_today is not None and used_today >= 0 and from_shared:
            # the tenant counted every node's requests up to ``mark`` and the one that asked;
            # the rest of its count is other integrations' (docs/cluster.md, "Shared request
            # budget"). A mark of this process alone (the database did not answer) would put
            # the other nodes' requests among the others, for the rest of the day: not shared.
            assert mark is not None
            shared.set_others(self.shared_day()[0], used_today - (mark + 1))

    def claim_refresh(self) -> bool:
        """True once after a new day began: the caller reads the tenant's count again."""
        with self._lock:
            self._roll(self.clock.now())
            due, self._refresh_due = self._refresh_due, False
            return due

    # -- the hot path ----------------------------------------------------------------------

    def check(self) -> None:
        """QuotaExhausted when the day's budget is spent now; counts nothing (a request that
        may still wait for its turn, and be stopped, before it is sent)."""
        with self._lock:
            self._roll(self.clock.now())
            self._refuse_if_spent()

    def _refuse_if_spent(self) -> None:
        budget = budget_of(self._limit()[0], self.policy.reserve)
        used = self._used()
        if budget is not None and used >= budget:
            raise QuotaExhausted(self._spent_sentence(used, budget), resume_at=self._reset_at)

    def take(self, shared_used: int | None = None) -> None:
        """Count one request about to be sent; QuotaExhausted (nothing counted) when spent.

        ``shared_used``: the shared budget granted it, and the account's count of the day is
        that (every node's requests and the tenant's others, this request included). The day's
        count is then the larger of it and what a daily header window said (HeroBase's count of
        every integration, docs/api-contract.md, "The daily quota"), and a spent day is still
        refused: the shared permit is wasted then, the safe side.
        """
        now = self.clock.now()
        with self._lock:
            self._roll(now)
            if shared_used is not None:
                self._shared_total = max(shared_used, self._shared_total or 0)
                before = max(shared_used - 1, self._header_count() or 0)
                self._base, self._since_base = before, 0
            self._refuse_if_spent()
            self._ours += 1
            self._since_base += 1
            self._since_header += 1
            store = self._store
        if store is not None:
            store.append(now)

    def spent(self, used: int, resume_at: datetime) -> QuotaExhausted:
        """The shared day is spent at ``used`` requests: the error to raise (nothing sent)."""
        with self._lock:
            self._roll(self.clock.now())
            self._base, self._since_base = max(used, self._used()), 0
            budget = budget_of(self._limit()[0], self.policy.reserve)
            if self._reset_at > resume_at:
                resume_at = self._reset_at
            sentence = self._spent_sentence(used, budget if budget is not None else used)
        return QuotaExhausted(sentence, resume_at=resume_at)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Follow a daily ``X-Rate-Limit-*`` window (reset later than a minute), if any.

        Shared: what the window counts beyond the shared day's count is other integrations'
        requests, shared with every node (never lowering the figure kept there).
        """
        seen = RateHeaders.of(headers)
        limit, remaining, reset = seen.limit, seen.remaining, seen.reset
        if limit is None or remaining is None or reset is None or reset <= MINUTE:
            return
        now = self.clock.now()
        reset_at = now + timedelta(seconds=reset)
        with self._lock:
            self._roll(now)
            # the same window announced again (seconds drift) or a new one
            moved = abs((reset_at - self._reset_at).total_seconds()) > MINUTE
            if moved and reset_at > self._reset_at:
                self._ours = 0  # a window of the tenant's that began after ours ended
            self._header_limit = limit
            self._base, self._since_base = max(0, limit - remaining), 0
            self._header_used, self._since_header = max(0, limit - remaining), 0
            if moved:
                self._reset_at = reset_at
            store = self._store
            known = self._shared_total
        if store is not None:
            store.base(max(0, limit - remaining), now, reset_at=reset_at if moved else None)
        if self.shared is not None and (known is None or limit - remaining > known):
            self._share_others(max(0, limit - remaining))

    def _share_others(self, header_used: int) -> None:
        """The daily header window counted ``header_used`` requests of the account: what it
        holds beyond every node's requests of the shared day is others' (docs/cluster.md,
        "Shared request budget"). Asked only when the window says more than the shared count
        we know (else the figure kept there is at least as large); never raises."""
        shared = self.shared
        if shared is None:
            return
        try:
            day_end = self.shared_day()[0]
            used = shared.day_used(day_end)
            if used is not None and header_used > used:
                shared.set_others(day_end, header_used - used)
        except Exception:  # the answer was received: sharing the count never fails a request
            log.exception("the tenant's daily count could not be shared")

    # -- reading ---------------------------------------------------------------------------

    def status(self) -> QuotaStatus:
        """The day's budget now."""
        now = self.clock.now()
        with self._lock:
            self._roll(now)
            limit, source = self._limit()
            return QuotaStatus(
                used=self._used(),
                limit=limit,
                reserve=self.policy.reserve,
                budget=budget_of(limit, self.policy.reserve),
                resets_at=self._reset_at.astimezone(self.tz).isoformat(timespec="seconds"),
                source=source,
                per_minute=self.per_minute,
            )

    # -- internals (under the lock) --------------------------------------------------------

    def _limit(self) -> tuple[int | None, str]:
        tenant = self._tenant_limit or self._header_limit
        source = "limits" if self._tenant_limit else "headers" if self._header_limit else ""
        if self.policy.per_day is not None:
            if tenant is not None and tenant < self.policy.per_day:
                return tenant, source
            return self.policy.per_day, "config"
        return tenant, source

    def _header_count(self) -> int | None:
        """The account's count of the day as the last daily header window said, plus our
        requests since (None: no daily header window seen this day)."""
        if self._header_used is None:
            return None
        return self._header_used + self._since_header

    def _used(self) -> int:
        if self._base is None:
            return self._ours
        return max(self._ours, self._base + self._since_base)

    def _roll(self, now: datetime) -> None:
        if now < self._reset_at:
            return
        self._reset_at = next_reset(now, self.tz, self.policy.reset)
        self._ours, self._base, self._since_base = 0, None, 0
        self._header_used, self._since_header, self._shared_total = None, 0, None
        self._refresh_due = True
        if self._store is not None:
            self._store.start(self._reset_at)
        log.info("a new day of HeroBase requests began; the next reset is at %s", self._reset_at)

    def _spent_sentence(self, used: int, budget: int) -> str:
        local = self._reset_at.astimezone(self.tz)
        kept = f", {self.policy.reserve:.0%} kept for other integrations"
        return (
            f"the day's HeroBase request budget is spent ({used} of {budget} requests"
            f"{kept if self.policy.reserve else ''}); uploads resume at "
            f"{local:%Y-%m-%d %H:%M} ({self.policy.timezone})"
        )


@dataclass(frozen=True)
class RateHeaders:
    """The ``X-Rate-Limit-*`` headers of one answer (None: absent or not a finite number).

    The minute limiter and the daily budget both read them; ``reset`` tells which window the
    figures are about (docs/api-contract.md, "The daily quota").
    """

    limit: int | None
    remaining: int | None
    reset: float | None  #: seconds until the window resets

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> RateHeaders:
        limit = _number(headers, "X-Rate-Limit-Limit")
        remaining = _number(headers, "X-Rate-Limit-Remaining")
        return cls(
            limit=None if limit is None else int(limit),
            remaining=None if remaining is None else int(remaining),
            reset=_number(headers, "X-Rate-Limit-Reset"),
        )


def _number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        result = float(value)
    except ValueError:
        return None
    return result if math.isfinite(result) else None


# -- the day's requests in the state folder ----------------------------------------------------


def day_log_path(state_dir: Path, url: str, user: str) -> Path:
    """The day file of account ``(url, user)`` in ``state_dir`` (named by a hash, no URL)."""
    account = f"{url.rstrip('/').lower()}\n{user.lower()}".encode()
    return Path(state_dir) / f"quota-{hashlib.sha256(account).hexdigest()[:16]}.day"


@dataclass(frozen=True)
class LoadedDay:
    """What a day file said about the day window still running."""

    reset_at: datetime
    ours: int  #: our requests in the window
    base: int | None  #: the tenant's last count of the day
    since_base: int  #: our requests after that count


class DayLog:
    """Our requests of the current day, one line each, in a small file of the state folder.

    Lines: ``W <ms>`` starts a day window ending at that time (UTC ms since the epoch);
    ``B <count> <ms>`` records the tenant's count of the day at a moment; ``<ms>`` is one of our
    requests. Appended with one ``write`` on an ``O_APPEND`` descriptor (no fsync: a tail lost
    in a power cut only undercounts a few requests, which the reserve absorbs); rewritten to
    the current window at start and when a new day begins. Mode 0600; nothing but numbers.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None

    @property
    def usable(self) -> bool:
        """True while requests are being recorded."""
        return self._fd is not None

    def load(self, now: datetime, reset_at: datetime) -> LoadedDay | None:
        """Read the running window (None: none recorded), compact the file; never raises."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            log.warning("cannot read the day's API requests in %s: %s", self.path, exc)
            data = b""
        loaded = _parse_day(data, now)
        window = loaded.reset_at if loaded is not None else reset_at
        lines = [b"W %d\n" % _ms(window)]
        if loaded is not None:
            if loaded.base is not None:
                lines += [b"%d\n" % _ms(now)] * (loaded.ours - loaded.since_base)
                lines.append(b"B %d %d\n" % (loaded.base, _ms(now)))
                lines += [b"%d\n" % _ms(now)] * loaded.since_base
            else:
                lines += [b"%d\n" % _ms(now)] * loaded.ours
        self._rewrite(b"".join(lines))
        return loaded

    def start(self, reset_at: datetime) -> None:
        """A new day window begins: forget the previous one's lines."""
        self._rewrite(b"W %d\n" % _ms(reset_at))

    def append(self, when: datetime) -> None:
        """Record one of our requests (never raises)."""
        self._write(b"%d\n" % _ms(when))

    def base(self, count: int, when: datetime, *, reset_at: datetime | None = None) -> None:
        """Record the tenant's count of the day (and a window end it announced)."""
        line = b"B %d %d\n" % (count, _ms(when))
        if reset_at is not None:
            line = b"W %d\n" % _ms(reset_at) + line
        self._write(line)

    def _write(self, line: bytes) -> None:
        with self._lock:
            if self._fd is None:
                return
            try:
                os.write(self._fd, line)
            except OSError as exc:
                self._close()
                log.warning("cannot record the day's API requests in %s: %s", self.path, exc)

    def _rewrite(self, content: bytes) -> None:
        with self._lock:
            self._close()
            try:
                private_dir(self.path.parent)
                tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
                try:
                    os.write(fd, content)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)
                flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
                self._fd = open_private(self.path, flags)
            except OSError as exc:
                log.warning(
                    "cannot record the day's API requests in %s (%s); a restart today starts "
                    "from the tenant's count only",
                    self.path,
                    exc.strerror or exc,
                )

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Stop recording (idempotent)."""
        with self._lock:
            self._close()


def _ms(when: datetime) -> int:
    return math.floor(when.timestamp() * 1000)


def _parse_day(data: bytes, now: datetime) -> LoadedDay | None:
    """The last window of a day file, if it has not ended by ``now``; bad lines are skipped."""
    reset: datetime | None = None
    ours = since = 0
    base: int | None = None
    bad = 0
    for raw in data.split(b"\n"):
        parts = raw.split()
        try:
            if not parts:
                continue
            if parts[0] == b"W" and len(parts) == 2:
                when = datetime.fromtimestamp(int(parts[1]) / 1000, UTC)
                if reset is None or when != reset:
                    reset, ours, since, base = when, 0, 0, None
            elif parts[0] == b"B" and len(parts) == 3:
                base, since = int(parts[1]), 0
            elif len(parts) == 1 and parts[0].isdigit():
                ours += 1
                since += 1
            else:
                bad += 1
        except (ValueError, OverflowError, OSError):
            bad += 1
    if bad:
        log.warning("%d unreadable line(s) in the day's API request record ignored", bad)
    if reset is None or reset <= now:
        return None
    return LoadedDay(reset, ours, base, since if base is not None else ours)
