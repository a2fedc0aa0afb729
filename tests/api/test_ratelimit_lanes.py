"""Lanes of the rate limiter: permits go round-robin per campaign, priority reads first, stop.

These tests assert the order permits are granted in, never timing: the clock is a FakeClock
whose ``sleep`` waits for the test to open a gate, so every requester is queued before the
first permit after the full window goes out.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import pytest

from pipeline.api.quota import DailyBudget, DailyPolicy
from pipeline.api.ratelimit import (
    PRIORITY_BURST,
    UPLOAD_BURST,
    RateLimiter,
    Stopping,
    headroom,
)
from pipeline.clock import FakeClock
from tests.api.test_ratelimit import max_in_any_window


class GatedClock(FakeClock):
    """A FakeClock whose ``sleep`` blocks until the gate is open (then advances instantly)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def sleep(self, seconds: float) -> None:
        assert self.gate.wait(30), "the test never opened the gate"
        super().sleep(seconds)


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _full(limit: int) -> tuple[GatedClock, RateLimiter]:
    """A limiter whose minute window is already spent (the next permit needs a wait)."""
    clock = GatedClock()
    limiter = RateLimiter(limit, clock, keep_history=True)
    for _ in range(limit):
        limiter.acquire("warm-up")
    assert limiter.lane_history is not None
    limiter.lane_history.clear()
    return clock, limiter


def _start(
    limiter: RateLimiter, lane: str, n: int, *, priority: bool = False
) -> list[threading.Thread]:
    """``n`` threads of ``lane``, each asking for one permit; returns once all of them wait."""
    before = limiter.waiting()
    threads = [
        threading.Thread(target=limiter.acquire, args=(lane,), kwargs={"priority": priority})
        for _ in range(n)
    ]
    for t in threads:
        t.start()
    _until(lambda: limiter.waiting() == before + n, f"{n} requests of {lane!r} to queue")
    return threads


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(30)
        assert not t.is_alive()


def test_two_campaigns_uploading_at_once_get_permits_alternately() -> None:
    clock, limiter = _full(6)
    threads = _start(limiter, "A", 40) + _start(limiter, "B", 40)
    clock.gate.set()
    _join(threads)
    order = limiter.lane_history
    assert order is not None
    assert len(order) == 80
    # strictly alternating: A queued first, so A, B, A, B, ...
    assert order == ["A", "B"] * 40
    assert limiter.history is not None
    assert max_in_any_window(limiter.history) <= 6  # turns never add a permit to a window


def test_a_campaign_with_one_row_gets_the_next_permit_not_the_last() -> None:
    clock, limiter = _full(5)
    threads = _start(limiter, "A", 200) + _start(limiter, "B", 1)
    clock.gate.set()
    _join(threads)
    order = limiter.lane_history
    assert order is not None
    assert order.index("B") <= 1  # at most one of A's 200 queued uploads before it


def test_a_preview_and_a_schema_fetch_go_before_the_queued_uploads() -> None:
    clock, limiter = _full(5)
    uploads = _start(limiter, "A", 100)
    reads = _start(limiter, "B", 3, priority=True)  # a preview's campaigns, example, lookup
    schema = _start(limiter, "", 1, priority=True)
    clock.gate.set()
    _join(uploads + reads + schema)
    order = limiter.lane_history
    assert order is not None
    assert sorted(order[:4]) == ["!", "!B", "!B", "!B"]
    assert order[4:] == ["A"] * 100


def test_priority_reads_cannot_starve_the_uploads() -> None:
    clock, limiter = _full(5)
    uploads = _start(limiter, "A", 5)
    reads = _start(limiter, "export", 3 * PRIORITY_BURST, priority=True)
    clock.gate.set()
    _join(uploads + reads)
    order = limiter.lane_history
    assert order is not None
    assert order[: PRIORITY_BURST + 1] == ["!export"] * PRIORITY_BURST + ["A"]


def test_a_stop_ends_every_wait_and_no_permit_goes_out_after_it() -> None:
    clock, limiter = _full(3)
    stop = threading.Event()
    errors: list[BaseException] = []

    def ask(lane: str) -> None:
        try:
            limiter.acquire(lane, cancel=stop)
        except Stopping as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(lane,)) for lane in "AAAABBBB"]
    for t in threads:
        t.start()
    _until(lambda: limiter.waiting() == 8, "8 requests to queue")
    stop.set()
    clock.gate.set()
    _join(threads)
    assert len(errors) == 8
    assert limiter.lane_history == []
    assert limiter.waiting() == 0
    with pytest.raises(Stopping):
        limiter.acquire("A", cancel=stop)


def test_requests_stopped_while_waiting_take_nothing_from_the_days_budget() -> None:
    clock, limiter = _full(3)
    budget = limiter.use_daily(DailyBudget(DailyPolicy(reserve=0.0), FakeClock()))
    budget.configure(per_day=1000)
    stop = threading.Event()
    threads = [
        threading.Thread(target=_quietly_stopped, args=(limiter, lane, stop)) for lane in "AB"
    ]
    for t in threads:
        t.start()
    _until(lambda: limiter.waiting() == 2, "2 requests to queue")
    stop.set()
    clock.gate.set()
    _join(threads)
    assert budget.status().used == 0  # neither was sent: the day's count is exact


def _quietly_stopped(limiter: RateLimiter, lane: str, stop: threading.Event) -> None:
    with contextlib.suppress(Stopping):
        limiter.acquire(lane, cancel=stop)


def test_lanes_keep_the_minute_ceiling_under_many_threads() -> None:
    clock = FakeClock()
    limiter = RateLimiter(20, clock, keep_history=True)

    def work(lane: str, priority: bool) -> None:
        for _ in range(30):
            limiter.acquire(lane, priority=priority)

    threads = [threading.Thread(target=work, args=(f"c{i % 3}", i == 0)) for i in range(6)]
    for t in threads:
        t.start()
    _join(threads)
    assert limiter.history is not None
    assert len(limiter.history) == 180
    assert max_in_any_window(limiter.history) <= 20


def test_paced_uploads_are_spaced_and_leave_the_headroom_to_priority_reads() -> None:
    clock = FakeClock()
    limiter = RateLimiter(20, clock, keep_history=True, pace_uploads=True)
    assert headroom(20) == 2
    # two uploads at once (UPLOAD_BURST), then one every 60/20 = 3 s
    waits = [limiter.acquire("A") for _ in range(18)]
    assert waits[:UPLOAD_BURST] == [0.0] * UPLOAD_BURST
    assert waits[UPLOAD_BURST:] == pytest.approx([3.0] * (18 - UPLOAD_BURST))
    # the window holds 18 uploads: the 19th waits for the oldest to leave it ...
    assert limiter.acquire("A") > 0
    # ... while priority reads find the 2 permits kept for them at once
    assert limiter.waiting() == 0
    assert [limiter.acquire("B", priority=True) for _ in range(2)] == [0.0, 0.0]
    assert limiter.history is not None
    assert max_in_any_window(limiter.history) <= 20
