"""Absence: "expect a file for this campaign by HH:MM on these days", as pure functions of
``now`` (docs/alerts.md, "Absence").

The deadlines are a cron expression in the tenant's time zone (``[[alerts.expect]]``: ``by``
and ``days``), read as export schedules are: a deadline in a DST gap (spring forward) falls at
the jump, a repeated time (fall back) counts once, at its first occurrence
(:mod:`pipeline.export.windows`). A file counts for a deadline when it arrived on the
deadline's local day or later: one dropped after the deadline clears the alert.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from pipeline.config import FileExpectation
from pipeline.export.windows import day_start, iter_runs, local_date, zone

#: How far back the latest deadline is looked for, widening step by step: a frequent
#: schedule is found in the first hour (cheap), a monthly or yearly one further back.
LOOKBACK = (
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=8),
    timedelta(days=32),
    timedelta(days=367),
)


def last_deadline(schedule: str, now: datetime, tz: tzinfo | str) -> datetime | None:
    """The latest deadline (UTC) at or before ``now``, within a year; None if none."""
    for back in LOOKBACK:
        last: datetime | None = None
        for run in iter_runs(schedule, now - back, zone(tz)):
            if run > now:
                break
            last = run
        if last is not None:
            return last
    return None


def missed(
    expect: FileExpectation, now: datetime, tz: tzinfo | str, arrived: datetime | None
) -> datetime | None:
    """The deadline no file came by (UTC), or None: none passed yet, or a file came.

    ``arrived``: when the campaign's latest file arrived (None: none known).
    """
    deadline = last_deadline(expect.schedule, now, tz)
    if deadline is None:
        return None
    since = day_start(local_date(deadline, zone(tz)), zone(tz))
    if arrived is not None and arrived >= since:
        return None
    return deadline
