"""When to retry, and how long to wait: exponential backoff with full jitter, bounded.

GETs retry on :class:`~pipeline.errors.Unavailable` and :class:`~pipeline.errors.Uncertain`;
``POST /leads`` only on ``Unavailable`` (certainly not processed). A ``Retry-After`` from the
server is honoured exactly, capped at ``retry_after_cap``. Once the policy's ``stop`` event is
set (the service is stopping), no retry starts and a backoff wait ends at once.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from pipeline.api.quota import QuotaExhausted
from pipeline.clock import Clock, SystemClock
from pipeline.config import ApiSettings
from pipeline.errors import ApiError, Unavailable, Uncertain


@dataclass
class RetryPolicy:
    """Bounds and backoff of retries (count, total time, Retry-After cap)."""

    max_retries: int = 5
    total_seconds: float = 120.0
    retry_after_cap: float = 300.0
    base: float = 0.5
    max_backoff: float = 30.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    #: set when the process stops: no request or retry starts after it
    stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @classmethod
    def from_settings(
        cls,
        settings: ApiSettings,
        rng: random.Random | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> RetryPolicy:
        """The policy configured under ``[api]``; ``stop`` ends its retries (a stopping service)."""
        return cls(
            max_retries=max(0, settings.max_retries),
            total_seconds=settings.retry_total_seconds,
            retry_after_cap=settings.retry_after_cap,
            rng=rng or random.Random(),
            stop=stop if stop is not None else threading.Event(),
        )

    @property
    def stopping(self) -> bool:
        """True once the stop event is set."""
        return self.stop.is_set()

    def pause(self, clock: Clock, seconds: float) -> bool:
        """Wait ``seconds`` before a retry; False when the stop came first (do not retry)."""
        if self.stop.is_set():
            return False
        if isinstance(clock, SystemClock):
            return not self.stop.wait(seconds)
        clock.sleep(seconds)
        return not self.stop.is_set()

    def retryable(self, exc: ApiError, *, idempotent: bool) -> bool:
        """May this error be retried? Only ``Unavailable`` unless the request is idempotent.

        A spent daily budget is not retried: it lasts until the day's reset, the caller pauses.
        """
        if isinstance(exc, QuotaExhausted) or self.stop.is_set():
            return False
        if isinstance(exc, Unavailable):
            return True
        return idempotent and isinstance(exc, Uncertain)

    def delay(self, retries_done: int, elapsed: float, retry_after: float | None) -> float | None:
        """Seconds to wait before retry ``retries_done + 1``, or None to give up."""
        if retries_done >= self.max_retries or self.stop.is_set():
            return None
        if retry_after is not None:
            wait = min(max(0.0, retry_after), self.retry_after_cap)
        else:
            wait = self.rng.uniform(0.0, min(self.max_backoff, self.base * 2**retries_done))
        if elapsed + wait > self.total_seconds:
            return None
        return wait
