"""The daily request budget's arithmetic: reserve, the tenant's count, resets, persistence."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipeline.api.quota import (
    DailyBudget,
    DailyPolicy,
    QuotaExhausted,
    QuotaStatus,
    budget_of,
    next_reset,
)
from pipeline.api.ratelimit import RateLimiter
from pipeline.api.retry import RetryPolicy
from pipeline.clock import FakeClock
from pipeline.config import load_settings
from pipeline.dropfolder.eta import estimate_rows, finish_time
from pipeline.errors import ConfigError

CPH = ZoneInfo("Europe/Copenhagen")


def test_the_budget_is_the_limit_less_the_reserve() -> None:
    assert budget_of(30, 0.2) == 24
    assert budget_of(100_000, 0.1) == 90_000
    assert budget_of(10, 0.0) == 10
    assert budget_of(7, 0.5) == 3  # rounded down: never over
    assert budget_of(None, 0.2) is None


def test_take_stops_at_the_budget_and_says_when_it_resets() -> None:
    clock = FakeClock(datetime(2026, 6, 10, 8, 0, tzinfo=UTC))
    budget = DailyBudget(DailyPolicy(reserve=0.2), clock)
    budget.configure(per_day=30)
    for _ in range(24):
        budget.take()
    with pytest.raises(QuotaExhausted) as caught:
        budget.take()
    assert caught.value.resume_at == datetime(2026, 6, 10, 22, 0, tzinfo=UTC)  # local midnight
    assert "24 of 24" in str(caught.value)
    assert "20% kept" in str(caught.value)
    status = budget.status()
    assert (status.used, status.left, status.spent) == (24, 0, True)
    # a spent budget is never retried by the client: the caller pauses until the reset
    assert not RetryPolicy().retryable(caught.value, idempotent=True)


def test_the_day_starts_from_the_tenants_count_and_adds_ours_since() -> None:
    clock = FakeClock(datetime(2026, 6, 10, 8, 0, tzinfo=UTC))
    budget = DailyBudget(DailyPolicy(reserve=0.0), clock)
    budget.take()  # GET limits
    mark = budget.mark()
    budget.take()  # GET counts (counted by the tenant's answer itself)
    budget.take()  # another thread's request while counts was on its way
    budget.configure(per_day=100, used_today=40, mark=mark)
    assert budget.status().used == 41
    budget.take()
    assert budget.status().used == 42


def test_the_configured_limit_never_exceeds_the_tenants() -> None:
    clock = FakeClock(datetime(2026, 6, 10, 8, 0, tzinfo=UTC))
    lower = DailyBudget(DailyPolicy(per_day=50, reserve=0.0), clock)
    lower.configure(per_day=1000)
    assert (lower.status().limit, lower.status().source) == (50, "config")
    higher = DailyBudget(DailyPolicy(per_day=5000, reserve=0.0), clock)
    higher.configure(per_day=1000)
    assert (higher.status().limit, higher.status().source) == (1000, "limits")
    unknown = DailyBudget(DailyPolicy(reserve=0.2), clock)
    for _ in range(1000):
        unknown.take()  # no daily limit known: nothing held back
    assert unknown.status().budget is None
    assert not unknown.status().spent


def test_a_daily_header_window_gives_limit_count_and_reset() -> None:
    clock = FakeClock(datetime(2026, 6, 10, 8, 0, tzinfo=UTC))
    limiter = RateLimiter(600, clock)
    limiter.use_daily(DailyBudget(DailyPolicy(reserve=0.1), clock))
    limiter.observe(
        {
            "X-Rate-Limit-Limit": "1000",
            "X-Rate-Limit-Remaining": "150",
            "X-Rate-Limit-Reset": "3600",
        },
        200,
    )
    quota = limiter.quota()
    assert quota is not None
    assert (quota.limit, quota.source, quota.used, quota.budget) == (1000, "headers", 850, 900)
    assert datetime.fromisoformat(quota.resets_at) == clock.now() + timedelta(hours=1)
    assert limiter.limit == 600  # a daily figure is no per-minute limit
    # a minute window's headers leave the daily budget alone
    limiter.observe(
        {"X-Rate-Limit-Limit": "600", "X-Rate-Limit-Remaining": "10", "X-Rate-Limit-Reset": "30"},
        200,
    )
    assert limiter.quota() == quota


def test_the_reset_is_tenant_midnight_also_on_dst_days() -> None:
    # spring forward (2026-03-29 02:00 -> 03:00 in Copenhagen): a 23-hour day
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    first = next_reset(before, CPH, time(0, 0))
    assert first == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 00:00 CET (+01:00)
    second = next_reset(first, CPH, time(0, 0))
    assert second == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # 00:00 CEST (+02:00)
    assert second - first == timedelta(hours=23)
    # fall back (2026-10-25 03:00 -> 02:00): a 25-hour day
    start = next_reset(datetime(2026, 10, 24, 12, 0, tzinfo=UTC), CPH, time(0, 0))
    assert next_reset(start, CPH, time(0, 0)) - start == timedelta(hours=25)
    # a configured reset time that does not exist on the DST day still comes once that day
    odd = next_reset(datetime(2026, 3, 28, 23, 30, tzinfo=UTC), CPH, time(2, 30))
    assert odd.astimezone(CPH).date() == datetime(2026, 3, 29).date()


def test_a_new_day_begins_at_the_reset() -> None:
    clock = FakeClock(datetime(2026, 3, 29, 21, 0, tzinfo=UTC))  # 23:00 CEST
    budget = DailyBudget(DailyPolicy(reserve=0.0), clock)
    budget.configure(per_day=10, used_today=10)
    with pytest.raises(QuotaExhausted):
        budget.take()
    clock.advance(3600)  # 00:00 CEST: a new day
    budget.take()
    assert budget.status().used == 1
    assert budget.claim_refresh()
    assert not budget.claim_refresh()


def test_the_days_count_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 6, 10, 8, 0, tzinfo=UTC))
    path = tmp_path / "state" / "quota-test.day"
    first = DailyBudget(DailyPolicy(reserve=0.0), clock)
    first.use_state(path)
    first.configure(used_today=5, mark=first.mark())
    for _ in range(7):
        first.take()
    assert first.status().used == 12
    assert path.stat().st_mode & 0o777 == 0o600

    again = DailyBudget(DailyPolicy(reserve=0.0), clock)  # a restarted process
    again.use_state(path)
    assert again.status().used == 12
    again.take()
    third = DailyBudget(DailyPolicy(reserve=0.0), clock)
    third.use_state(path)
    assert third.status().used == 13

    clock.set(datetime(2026, 6, 10, 22, 0, tzinfo=UTC))  # the tenant's midnight has passed
    after = DailyBudget(DailyPolicy(reserve=0.0), clock)
    after.use_state(path)
    assert after.status().used == 0


def test_a_corrupt_day_file_is_read_as_far_as_it_goes(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 6, 10, 8, 0, tzinfo=UTC))
    path = tmp_path / "quota.day"
    budget = DailyBudget(DailyPolicy(reserve=0.0), clock)
    budget.use_state(path)
    budget.take()
    budget.take()
    with path.open("ab") as f:
        f.write(b"garbage\n12")
    again = DailyBudget(DailyPolicy(reserve=0.0), clock)
    again.use_state(path)
    assert again.status().used == 3  # "12" is a whole number: counted; garbage skipped


def test_finish_times_count_todays_budget_then_whole_days() -> None:
    now = datetime(2026, 6, 10, 20, 0, tzinfo=UTC)
    quota = QuotaStatus(
        used=14,
        limit=30,
        reserve=0.2,
        budget=24,
        resets_at="2026-06-11T00:00:00+02:00",
        per_minute=60,
    )
    assert finish_time(10, quota, now) == now + timedelta(seconds=10)  # fits today
    reset = datetime(2026, 6, 10, 22, 0, tzinfo=UTC)
    assert finish_time(11, quota, now) == reset + timedelta(seconds=1)
    assert finish_time(10 + 24 + 5, quota, now) == reset + timedelta(days=1, seconds=5)
    assert finish_time(5, QuotaStatus(used=3), now) == now + timedelta(seconds=0.5)
    assert estimate_rows("leads.csv", 1000) == 10
    assert estimate_rows("leads.xlsx", 450) == 10
    assert estimate_rows("leads.csv", None) is None


def test_quota_status_round_trips_and_reads_older_files() -> None:
    quota = QuotaStatus(used=3, limit=30, reserve=0.2, budget=24, resets_at="x", source="limits")
    assert QuotaStatus.from_json(quota.to_json()) == quota
    assert QuotaStatus.from_json({}) == QuotaStatus()


def test_the_reserve_must_be_a_share_below_one(tmp_path: Path) -> None:
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text(
        '[api]\ndaily_reserve = 1.0\nrequests_per_day = -1\ndaily_reset = "25:00"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(cfg, env={})
    text = str(caught.value)
    assert "api.daily_reserve" in text
    assert "0.2 for 20 %" in text
    assert "api.requests_per_day" in text
    assert "api.daily_reset" in text
    cfg.write_text("[api]\ndaily_reserve = 0.25\nrequests_per_day = 5000\n", encoding="utf-8")
    api = load_settings(cfg, env={}).api
    assert (api.daily_reserve, api.requests_per_day, api.daily_reset) == (0.25, 5000, "00:00")
