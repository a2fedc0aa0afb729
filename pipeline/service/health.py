"""Is the service alive and moving? Heartbeats of its threads and the verdict ``/healthz`` gives.

Each intake worker beats while it waits for work and, while it processes a file, whenever the
file makes progress (a chunk read, a row uploaded). The service loop beats on every turn. A
worker thread that ended, a worker busy without progress for ``intake.stuck_seconds``, or a
loop that stopped turning makes the service unhealthy: ``/healthz`` answers 503 and says why.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.clock import Clock


class Heartbeats:
    """The last time each named thread showed it was alive and moving (thread-safe)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def beat(self, who: str | None = None) -> None:
        """Record a sign of life of ``who`` (default: the calling thread)."""
        name = who or threading.current_thread().name
        now = self.clock.monotonic()
        with self._lock:
            self._last[name] = now

    def quiet_for(self, who: str) -> float:
        """Seconds since ``who`` last beat (infinite when it never did)."""
        with self._lock:
            last = self._last.get(who)
        return float("inf") if last is None else max(0.0, self.clock.monotonic() - last)


@dataclass(frozen=True)
class WorkerState:
    """One intake worker as the health check sees it."""

    name: str
    alive: bool
    busy: bool
    quiet_for: float


def assess(
    workers: Sequence[WorkerState],
    loop_quiet_for: float,
    *,
    loop_limit: float,
    stuck_after: float,
) -> list[str]:
    """What is wrong, in plain words (empty: healthy)."""
    problems = [f"the intake worker {w.name} has stopped" for w in workers if not w.alive]
    problems += [
        f"the intake worker {w.name} has made no progress on its file for {w.quiet_for:.0f} s"
        for w in workers
        if w.alive and w.busy and w.quiet_for > stuck_after
    ]
    if loop_quiet_for > loop_limit:
        problems.append(
            f"the service loop (sweeps, settling, export schedule) has not run for "
            f"{loop_quiet_for:.0f} s"
        )
    return problems
