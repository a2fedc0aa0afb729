"""One rate limiter per HeroBase account, shared by every thread and client of this process.

A sliding one-minute window over the grants: a request is granted only when fewer than
``limit`` grants fall in the last 60 s, so no 60-s window ever holds more than the configured
ceiling (a token bucket would allow a burst of twice its rate across a window boundary).

- ``limit`` starts at ``min(ceiling, /myaccount/request/limits perMinute)`` (else the ceiling);
- ``X-Rate-Limit-Remaining``/``-Reset`` headers make it wait for the server's window when the
  server says the quota is used up (other integrations on the account count too);
- a 429 halves ``limit`` and blocks everyone for ``Retry-After``; ``limit`` then recovers by a
  tenth of its target every ``recover_every`` seconds without another 429.

All waiting goes through the injected clock, so tests with a FakeClock never sleep.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Mapping

from pipeline.clock import Clock, SystemClock

log = logging.getLogger(__name__)

WINDOW = 60.0


class RateLimiter:
    """Sliding-window limiter; ``acquire()`` blocks (via the clock) until a request may go."""

    def __init__(
        self,
        ceiling: int,
        clock: Clock | None = None,
        *,
        recover_every: float = 10.0,
        keep_history: bool = False,
    ) -> None:
        if ceiling < 1:
            raise ValueError("the rate ceiling must be at least 1 request per minute")
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self.ceiling = ceiling
        self.target = ceiling
        self.limit = ceiling
        self.recover_every = recover_every
        self._grants: deque[float] = deque()
        self._blocked_until = 0.0
        self._server_remaining: int | None = None
        self._server_reset_at = 0.0
        self._last_change = self.clock.monotonic()
        self._init_state = "pending"  # pending -> running -> done
        self.history: list[float] | None = [] if keep_history else None

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

    def configure(self, per_minute: int | None) -> None:
        """Adopt the account's per-minute limit (never above the ceiling); None keeps it."""
        with self._lock:
            self._init_state = "done"
            if per_minute is not None and per_minute > 0:
                self.target = min(self.ceiling, per_minute)
                self.limit = self.target
                log.debug("rate limit set to %d requests/minute", self.limit)

    def lower_ceiling(self, ceiling: int) -> None:
        """Another client of the same account has a lower ceiling: the lowest one wins."""
        with self._lock:
            if 1 <= ceiling < self.ceiling:
                self.ceiling = ceiling
                self.target = min(self.target, ceiling)
                self.limit = min(self.limit, ceiling)

    # -- the hot path -----------------------------------------------------------------------

    def acquire(self) -> float:
        """Wait until a request may be sent; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self.clock.monotonic()
                wait = self._wait_needed(now)
                if wait <= 0:
                    self._grants.append(now)
                    if self._server_remaining is not None:
                        self._server_remaining -= 1
                    if self.history is not None:
                        self.history.append(now)
                    return waited
            self.clock.sleep(wait)
            waited += wait

    def _wait_needed(self, now: float) -> float:
        grants = self._grants
        while grants and grants[0] + WINDOW <= now:
            grants.popleft()
        if self._blocked_until > now:
            return self._blocked_until - now
        if len(grants) >= self.limit:
            # the grant that must leave the window before one more fits
            return grants[len(grants) - self.limit] + WINDOW - now
        if self._server_remaining is not None:
            if self._server_reset_at <= now:
                self._server_remaining = None
            elif self._server_remaining <= 0:
                return self._server_reset_at - now
        return 0.0

    # -- feedback from responses ------------------------------------------------------------

    def observe(self, headers: Mapping[str, str], status: int) -> None:
        """Follow ``X-Rate-Limit-*`` headers of an answer; recover after successes."""
        remaining = _header_int(headers, "X-Rate-Limit-Remaining")
        reset = _header_float(headers, "X-Rate-Limit-Reset")
        limit = _header_int(headers, "X-Rate-Limit-Limit")
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
            recovering = status < 400 and self.limit < self.target
            if recovering and now - self._last_change >= self.recover_every:
                step = max(1, math.ceil(self.target / 10))
                self.limit = min(self.target, self.limit + step)
                self._last_change = now

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


def _header_float(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        result = float(value)
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = _header_float(headers, name)
    return None if value is None else int(value)


_registry: dict[tuple[str, str, int | None], RateLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(url: str, user: str, ceiling: int, clock: Clock) -> RateLimiter:
    """The process-wide limiter of account ``(url, user)``.

    Clients on the system clock share one limiter per account; a test clock (any other Clock)
    gets its own, so fake time never leaks between tests.
    """
    clock_key = None if isinstance(clock, SystemClock) else id(clock)
    key = (url.rstrip("/").lower(), user.lower(), clock_key)
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            limiter = _registry[key] = RateLimiter(ceiling, clock)
        else:
            limiter.lower_ceiling(ceiling)
        return limiter
