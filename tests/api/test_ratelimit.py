"""The shared rate limiter: a hard ceiling per 60-s window, server headers, 429 back-off."""

from __future__ import annotations

import threading

from pipeline.api.ratelimit import RateLimiter, limiter_for
from pipeline.clock import FakeClock, SystemClock


def max_in_any_window(times: list[float], window: float = 60.0) -> int:
    times = sorted(times)
    best = 0
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_eight_threads_never_exceed_the_ceiling_in_any_minute() -> None:
    clock = FakeClock()
    limiter = RateLimiter(50, clock, keep_history=True)
    per_thread = 125

    def work() -> None:
        for _ in range(per_thread):
            limiter.acquire()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert limiter.history is not None
    assert len(limiter.history) == 1000
    assert max_in_any_window(limiter.history) == 50
    assert clock.sleeps  # it had to wait, on the injected clock


def test_server_headers_make_it_wait_for_the_server_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, clock)
    limiter.observe({"X-Rate-Limit-Remaining": "1", "X-Rate-Limit-Reset": "20"}, 200)
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == 20.0  # the server's quota was used up: wait for its reset
    assert limiter.acquire() == 0.0


def test_a_429_halves_the_rate_blocks_and_recovers_gradually() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, clock, recover_every=10.0)
    limiter.penalise(7.0)
    assert limiter.limit == 50
    assert limiter.acquire() == 7.0
    limiter.observe({}, 200)  # too soon to recover
    assert limiter.limit == 50
    clock.advance(10)
    limiter.observe({}, 200)
    assert limiter.limit == 60
    for _ in range(10):
        clock.advance(10)
        limiter.observe({}, 200)
    assert limiter.limit == 100  # back to the target, never above


def test_limit_header_lowers_the_target_but_never_raises_the_ceiling() -> None:
    limiter = RateLimiter(100, FakeClock())
    limiter.observe({"X-Rate-Limit-Limit": "1000"}, 200)
    assert limiter.limit == 100
    limiter.observe({"X-Rate-Limit-Limit": "30"}, 200)
    assert limiter.limit == 30


def test_one_limiter_per_account() -> None:
    clock = SystemClock()
    a = limiter_for("https://t.example/api", "u@x", 600, clock)
    b = limiter_for("https://t.example/api/", "U@x", 300, SystemClock())
    c = limiter_for("https://t.example/api", "other@x", 600, clock)
    assert a is b
    assert a.ceiling == 300  # the lowest configured ceiling wins
    assert c is not a
    fake = FakeClock()
    assert limiter_for("https://t.example/api", "u@x", 600, fake) is not a
