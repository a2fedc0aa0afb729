"""Export schedules as pure functions of ``now``: cron in tenant time, windows, catch-up.

Nothing here reads a clock or touches a file: every function takes ``now`` (an aware
datetime) and returns plain values, so schedules are tested exactly across DST changes.

Cron expressions are read in the tenant's time zone (``settings.timezone``). Wall-clock times
that a DST change makes special follow classic cron (Vixie/cronie):

- a time that does not exist (spring forward, 02:00-03:00 in Europe/Copenhagen) runs once,
  at the instant the clock jumps (03:00 local);
- a time that happens twice (fall back) runs once, at its first occurrence.

Windows are whole tenant-local days ``[start, end)`` (the API reads dates as tenant-local and
treats the upper bound as exclusive). A run on local day ``D`` has window end ``D``:

- ``previous-day``: one file per day; after downtime every missed day gets its own file, in
  order, up to the latest due end (so the days form an unbroken sequence);
- ``since-last``: ``[watermark, D)`` for each day ``D`` on which the schedule fired;
- ``rolling:<N>d``: ``[D - N days, D)`` for each day ``D`` on which the schedule fired
  (overlapping by design).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

WindowKind = Literal["previous-day", "since-last", "rolling"]
_ROLLING = re.compile(r"rolling:(\d{1,4})d")
#: How far back to look for the latest run (a yearly schedule fires at least once a year).
_LOOKBACK_DAYS = 366 + 31
_ONE_DAY = timedelta(days=1)
_TINY = timedelta(microseconds=1)


class ScheduleError(ValueError):
    """A cron expression or window rule that cannot be used (message says what to write)."""


@dataclass(frozen=True, order=True)
class Window:
    """Tenant-local days ``[start, end)``; ``end`` is exclusive, as in the API's ``to``."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ScheduleError(f"a window must end after it starts: {self.start} .. {self.end}")

    @property
    def days(self) -> int:
        """Number of local days covered."""
        return (self.end - self.start).days

    def __str__(self) -> str:
        return f"{self.start.isoformat()} .. {self.end.isoformat()} (end exclusive)"


@dataclass(frozen=True)
class WindowRule:
    """A parsed ``window`` setting."""

    kind: WindowKind
    days: int = 1

    def __str__(self) -> str:
        return f"rolling:{self.days}d" if self.kind == "rolling" else self.kind


def parse_window(text: str) -> WindowRule:
    """Parse ``previous-day``, ``since-last`` or ``rolling:<N>d``."""
    value = (text or "previous-day").strip().lower()
    if value == "previous-day":
        return WindowRule("previous-day")
    if value == "since-last":
        return WindowRule("since-last")
    m = _ROLLING.fullmatch(value)
    if m and int(m.group(1)) >= 1:
        return WindowRule("rolling", int(m.group(1)))
    raise ScheduleError(
        f"unknown window {text!r}: write 'previous-day', 'since-last' or 'rolling:<N>d' "
        "(for example 'rolling:7d')"
    )


def check_cron(expr: str) -> str:
    """Return ``expr`` if it is a valid 5-field cron expression, else raise ScheduleError."""
    if len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise ScheduleError(
            f"schedule {expr!r} is not a cron expression: write five fields "
            "'minute hour day-of-month month day-of-week', for example '0 2 * * *' (02:00 daily)"
        )
    return expr


def zone(name: str | tzinfo) -> tzinfo:
    """The tenant's time zone from its name (or pass a tzinfo through)."""
    return ZoneInfo(name) if isinstance(name, str) else name


def to_utc(local: datetime, tz: tzinfo) -> datetime:
    """The instant (UTC) a tenant-local wall time means, cron style.

    Non-existent times (spring forward) become the instant of the jump; repeated times
    (fall back) their first occurrence.
    """
    naive = local.replace(tzinfo=None)
    early = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if early.astimezone(tz).replace(tzinfo=None) == naive:
        return early  # exists (first occurrence when ambiguous)
    # In a gap: fold=1 applies the offset after the jump and lands before it; the jump
    # instant lies between the two readings. Find it to the second.
    lo = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(lo, early), max(lo, early)
    off = lo.astimezone(tz).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == off:
            lo = mid
        else:
            hi = mid
    return hi.replace(microsecond=0)


def local_date(instant: datetime, tz: tzinfo) -> date:
    """The tenant-local calendar date of an aware instant."""
    return instant.astimezone(tz).date()


def day_start(day: date, tz: tzinfo) -> datetime:
    """The instant (UTC) local day ``day`` begins."""
    return to_utc(datetime(day.year, day.month, day.day), tz)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("schedule functions need an aware datetime (clock.now())")
    return now.astimezone(UTC)


def iter_runs(expr: str, after: datetime, tz: tzinfo) -> Iterator[datetime]:
    """Scheduled instants (UTC) strictly after ``after``, in order, each once."""
    after = _aware(after)
    # Mapping local wall times to instants (to_utc) never goes backwards, so walking the
    # wall-clock candidates from after's own wall time finds the runs in order.
    it = croniter(check_cron(expr), after.astimezone(tz).replace(tzinfo=None))
    last = after
    while True:
        try:
            wall = it.get_next(datetime)
        except CroniterError as exc:
            raise ScheduleError(f"schedule {expr!r} never fires: {exc}") from None
        candidate = to_utc(wall, tz)
        if candidate > last:
            last = candidate
            yield candidate


def next_run(expr: str, now: datetime, tz: tzinfo | str) -> datetime:
    """The first scheduled instant (UTC) strictly after ``now``."""
    return next(iter_runs(expr, now, zone(tz)))


def first_run_on(expr: str, day: date, tz: tzinfo) -> datetime | None:
    """The first scheduled instant on local day ``day``, or None if the schedule skips it."""
    run = next(iter_runs(expr, day_start(day, tz) - _TINY, tz))
    return run if local_date(run, tz) == day else None


def due_ends(
    expr: str,
    tz: tzinfo | str,
    now: datetime,
    after: date | None,
    *,
    force: bool = False,
) -> list[date]:
    """Local days ``D`` (ascending) on which the schedule fired at or before ``now``.

    Only days after ``after`` (the watermark) are listed; with ``after=None`` only the latest.
    ``force`` counts today as fired (a run requested by a person).
    """
    tz = zone(tz)
    now = _aware(now)
    today = local_date(now, tz)

    def fired(day: date) -> bool:
        if force and day == today:
            return True
        run = first_run_on(expr, day, tz)
        return run is not None and run <= now

    if after is None:
        day = today
        for _ in range(_LOOKBACK_DAYS):
            if fired(day):
                return [day]
            day -= _ONE_DAY
        return []
    ends: list[date] = []
    day = after + _ONE_DAY
    while day <= today:
        if fired(day):
            ends.append(day)
        day += _ONE_DAY
    return ends


def windows_due(
    rule: WindowRule,
    expr: str,
    tz: tzinfo | str,
    now: datetime,
    watermark: date | None,
    *,
    start: date | None = None,
    force: bool = False,
) -> list[Window]:
    """The windows to export now, oldest first: catch-up after downtime included.

    ``watermark`` is the end of the last successful window (None: never ran). A job that never
    ran starts at ``start`` when given, else exports only its latest window.
    """
    tz = zone(tz)
    if watermark is None and start is not None:
        watermark = start
        if rule.kind == "rolling":
            # the first rolling window is the one that starts at `start`
            watermark = start + timedelta(days=rule.days - 1)
    ends = due_ends(expr, tz, now, watermark, force=force)
    if not ends:
        return []
    if rule.kind == "previous-day":
        first = watermark if watermark is not None else ends[-1] - _ONE_DAY
        return [
            Window(first + timedelta(days=i), first + timedelta(days=i + 1))
            for i in range((ends[-1] - first).days)
        ]
    if rule.kind == "since-last":
        prev = watermark if watermark is not None else ends[-1] - _ONE_DAY
        out: list[Window] = []
        for end in ends:
            out.append(Window(prev, end))
            prev = end
        return out
    return [Window(end - timedelta(days=rule.days), end) for end in ends]


def parse_day(text: str, what: str = "date") -> date:
    """A ``YYYY-MM-DD`` date from config or the command line (clear message when it is not)."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(f"{what} {text!r} is not a date: write YYYY-MM-DD") from None
