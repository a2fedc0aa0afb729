"""Injectable clocks (docs/architecture.md, "Practices"): logic never calls ``time`` directly.

``SystemClock`` is the real one; ``FakeClock`` makes retries, rate limits and schedules testable
without real sleeping: ``sleep`` advances the fake time instantly. :func:`shown_time` is how a
time is shown to people: in the tenant's zone, with its offset.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    """What leadpipe needs of time."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (for durations and rate windows)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock just advances)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A controllable clock for tests; thread-safe. ``sleep`` advances time and records it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = start or datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._mono = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
        self.advance(max(seconds, 0.0))

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (aware); monotonic time moves by the same amount (never backwards)."""
        with self._lock:
            delta = (when - self._now).total_seconds()
            self._now = when
            self._mono += max(delta, 0.0)


def shown_time(when: datetime | str, timezone: str | None = None) -> str:
    """A time as people read it, in the tenant's zone with its offset: ``2026-03-31 14:05
    (UTC+02:00)``. ``when``: aware, or ISO 8601 text (returned as given when it is not)."""
    if isinstance(when, str):
        text = when
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            return text or "?"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if timezone:
        when = when.astimezone(ZoneInfo(timezone))
    offset = when.strftime("%z") or "+0000"
    return f"{when:%Y-%m-%d %H:%M} (UTC{offset[:3]}:{offset[3:]})"
