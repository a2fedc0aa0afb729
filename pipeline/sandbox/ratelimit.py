"""Per-account rate limits: fixed one-minute windows plus a daily cap.

As described under "Transport, rights, limits" in docs/api-contract.md.

Windows follow the injected clock: a minute window is the wall-clock minute, the day is the
tenant-local calendar day.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta


@dataclass(frozen=True)
class Verdict:
    """The outcome of counting one request."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the minute window resets
    retry_after: int  # seconds to wait when refused (0 when allowed)


class _Window:
    __slots__ = ("d", "day", "m", "minute")

    def __init__(self, minute: datetime, day: date) -> None:
        self.minute, self.m, self.day, self.d = minute, 0, day, 0


class RateLimiter:
    """Counts requests per account; thread-safe."""

    def __init__(self, per_minute: int, per_day: int) -> None:
        self._lock = threading.Lock()
        self.per_minute = per_minute
        self.per_day = per_day
        self._windows: dict[str, _Window] = {}

    def set_limits(self, per_minute: int | None = None, per_day: int | None = None) -> None:
        """Change the limits (None keeps the current value)."""
        with self._lock:
            if per_minute is not None:
                self.per_minute = per_minute
            if per_day is not None:
                self.per_day = per_day

    def hit(self, user: str, local_now: datetime) -> Verdict:
        """Count a request of ``user`` at tenant-local ``local_now`` (refused ones don't count)."""
        minute = local_now.replace(second=0, microsecond=0)
        day = local_now.date()
        reset_s = max(1, math.ceil(60 - local_now.second - local_now.microsecond / 1e6))
        with self._lock:
            w = self._windows.get(user)
            if w is None:
                w = self._windows[user] = _Window(minute, day)
            if w.minute != minute:
                w.minute, w.m = minute, 0
            if w.day != day:
                w.day, w.d = day, 0
            if w.m >= self.per_minute:
                return Verdict(False, self.per_minute, 0, reset_s, reset_s)
            if w.d >= self.per_day:
                midnight = datetime.combine(day + timedelta(days=1), datetime.min.time())
                wait = max(1, math.ceil((midnight - local_now).total_seconds()))
                return Verdict(False, self.per_minute, 0, reset_s, wait)
            w.m += 1
            w.d += 1
            return Verdict(True, self.per_minute, max(0, self.per_minute - w.m), reset_s, 0)

    def counts(self, user: str, local_now: datetime) -> tuple[int, int]:
        """(requests this minute, requests today) for ``user``."""
        minute = local_now.replace(second=0, microsecond=0)
        with self._lock:
            w = self._windows.get(user)
            if w is None:
                return 0, 0
            return (w.m if w.minute == minute else 0), (w.d if w.day == local_now.date() else 0)
