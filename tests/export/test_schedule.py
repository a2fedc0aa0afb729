"""schedule.py: cron in tenant time across both DST changes of 2026, windows, catch-up."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from pipeline.export.windows import (
    ScheduleError,
    Window,
    WindowRule,
    check_cron,
    due_ends,
    iter_runs,
    next_run,
    parse_window,
    to_utc,
    windows_due,
    zone,
)

CPH = zone("Europe/Copenhagen")


def runs(expr: str, after: datetime, n: int) -> list[str]:
    it = iter_runs(expr, after, CPH)
    return [next(it).astimezone(CPH).isoformat() for _ in range(n)]


def test_daily_run_keeps_local_wall_time_across_spring_forward() -> None:
    after = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    assert runs("0 4 * * *", after, 3) == [
        "2026-03-28T04:00:00+01:00",
        "2026-03-29T04:00:00+02:00",
        "2026-03-30T04:00:00+02:00",
    ]


def test_nonexistent_time_runs_once_at_the_jump() -> None:
    after = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    assert runs("30 2 * * *", after, 2) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    # every 30 minutes: 02:00 and 02:30 do not exist; one run at 03:00, none doubled
    assert runs("*/30 * * * *", datetime(2026, 3, 29, 0, 0, tzinfo=UTC), 4) == [
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]


def test_repeated_time_runs_once_at_first_occurrence() -> None:
    after = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    assert runs("30 2 * * *", after, 2) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    assert runs("0 * * * *", datetime(2026, 10, 24, 23, 30, tzinfo=UTC), 4) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T04:00:00+01:00",
        "2026-10-25T05:00:00+01:00",
    ]


def test_next_run_from_inside_the_repeated_hour() -> None:
    # 01:10 UTC is the second 02:10 (CET); 02:30 CEST has passed, next is 03:00 CET
    now = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)
    assert next_run("*/30 * * * *", now, "Europe/Copenhagen") == datetime(
        2026, 10, 25, 2, 0, tzinfo=UTC
    )
    assert next_run("0 2 * * *", now, CPH) == datetime(2026, 10, 26, 1, 0, tzinfo=UTC)


def test_next_run_is_strictly_after_now() -> None:
    at = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)  # 02:00 CEST
    assert next_run("0 2 * * *", at, CPH) == datetime(2026, 6, 2, 0, 0, tzinfo=UTC)


def test_to_utc_gap_and_fold() -> None:
    assert to_utc(datetime(2026, 3, 29, 2, 30), CPH) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert to_utc(datetime(2026, 10, 25, 2, 30), CPH) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["0 2 * *", "61 2 * * *", "every night", "0 2 * * * *"])
def test_bad_cron_message(bad: str) -> None:
    with pytest.raises(ScheduleError, match="is not a cron expression: write five fields"):
        check_cron(bad)


def test_cron_that_never_fires() -> None:
    with pytest.raises(ScheduleError, match="never fires"):
        next_run("0 0 30 2 *", datetime(2026, 1, 1, tzinfo=UTC), CPH)


def test_parse_window() -> None:
    assert parse_window("previous-day") == WindowRule("previous-day")
    assert parse_window("") == WindowRule("previous-day")
    assert parse_window("since-last") == WindowRule("since-last")
    assert parse_window("rolling:7d") == WindowRule("rolling", 7)
    with pytest.raises(
        ScheduleError, match=r"write 'previous-day', 'since-last' or 'rolling:<N>d'"
    ):
        parse_window("rolling:0d")


def test_window_must_end_after_start() -> None:
    with pytest.raises(ScheduleError, match="must end after it starts"):
        Window(date(2026, 1, 2), date(2026, 1, 2))


DAILY = "0 2 * * *"
PREV = WindowRule("previous-day")


def test_before_todays_run_only_yesterdays_end_is_due() -> None:
    now = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, run at 02:00 CEST passed
    assert due_ends(DAILY, CPH, now, None) == [date(2026, 10, 25)]
    now = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)  # 01:30 CEST on the 25th, run not yet
    assert due_ends(DAILY, CPH, now, None) == [date(2026, 10, 24)]
    assert due_ends(DAILY, CPH, now, None, force=True) == [date(2026, 10, 25)]


def test_previous_day_first_run_without_start_exports_yesterday_only() -> None:
    now = datetime(2026, 10, 26, 3, 0, tzinfo=UTC)
    assert windows_due(PREV, DAILY, CPH, now, None) == [
        Window(date(2026, 10, 25), date(2026, 10, 26))
    ]


def test_previous_day_catch_up_after_downtime_one_window_per_day_in_order() -> None:
    now = datetime(2026, 10, 28, 12, 0, tzinfo=UTC)
    assert windows_due(PREV, DAILY, CPH, now, date(2026, 10, 24)) == [
        Window(date(2026, 10, 24), date(2026, 10, 25)),
        Window(date(2026, 10, 25), date(2026, 10, 26)),
        Window(date(2026, 10, 26), date(2026, 10, 27)),
        Window(date(2026, 10, 27), date(2026, 10, 28)),
    ]
    assert windows_due(PREV, DAILY, CPH, now, date(2026, 10, 28)) == []


def test_previous_day_start_setting_and_weekday_schedule_stay_contiguous() -> None:
    now = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)  # Monday
    got = windows_due(PREV, "0 6 * * 1-5", CPH, now, None, start=date(2026, 3, 26))
    assert [(w.start.day, w.end.day) for w in got] == [(26, 27), (27, 28), (28, 29), (29, 30)]


def test_since_last_and_rolling() -> None:
    now = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)  # Tuesday
    weekdays = "0 6 * * 1-5"
    since = windows_due(WindowRule("since-last"), weekdays, CPH, now, date(2026, 3, 27))
    assert since == [
        Window(date(2026, 3, 27), date(2026, 3, 30)),
        Window(date(2026, 3, 30), date(2026, 3, 31)),
    ]
    rolling = windows_due(WindowRule("rolling", 7), weekdays, CPH, now, date(2026, 3, 27))
    assert rolling == [
        Window(date(2026, 3, 23), date(2026, 3, 30)),
        Window(date(2026, 3, 24), date(2026, 3, 31)),
    ]
    first = windows_due(WindowRule("rolling", 3), DAILY, CPH, now, None, start=date(2026, 3, 28))
    assert first[0] == Window(date(2026, 3, 28), date(2026, 3, 31))


def test_hourly_schedule_gives_one_window_per_day() -> None:
    now = datetime(2026, 10, 27, 23, 30, tzinfo=UTC)
    got = windows_due(PREV, "0 * * * *", CPH, now, date(2026, 10, 25))
    assert got == [
        Window(date(2026, 10, 25), date(2026, 10, 26)),
        Window(date(2026, 10, 26), date(2026, 10, 27)),
        Window(date(2026, 10, 27), date(2026, 10, 28)),
    ]


def test_local_aware_now_is_accepted_and_naive_refused() -> None:
    now = datetime(2026, 10, 26, 3, 0, tzinfo=UTC).astimezone(CPH)
    assert windows_due(PREV, DAILY, CPH, now, None) == [
        Window(date(2026, 10, 25), date(2026, 10, 26))
    ]
    with pytest.raises(ValueError, match="aware datetime"):
        next_run(DAILY, datetime(2026, 1, 1), CPH)
