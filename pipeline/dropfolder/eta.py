"""When the files waiting in the inbox are likely taken and done: the measured rate, the day's
request budget, and the queue order.

leadpipe spends one request per lead, and the account's daily budget
(:class:`~pipeline.api.quota.QuotaStatus`) may not cover every waiting file today: a file then
finishes after one or more of the budget's resets (docs/dropfolder.md, "Waiting for the daily
budget"). A file's rows are not known before it is read, so they are **estimated from its
size** (no file is opened: the status is taken often, and the inbox may be a slow share), at
:data:`BYTES_PER_ROW` for its kind [ours]. The estimate counts the waiting files in the order
shown (campaign by campaign, each queue oldest first) and ignores the rest of a file being
processed.

:func:`queue_times` adds the queue: a waiting file starts when the files ahead of it in its
campaign are done (the rest of the file in progress first), at the rate measured on the
campaign's files (rows per second over the last minute), or at the minute limit before any was
measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from pipeline.api.quota import QuotaStatus

#: Average bytes per lead row by file kind, for the estimate [ours]: a CSV row of a typical
#: lead (name, phone, e-mail, company, a choice or two), and the same in a zipped workbook.
BYTES_PER_ROW = {".csv": 100, ".txt": 100, ".xlsx": 45}
DEFAULT_BYTES_PER_ROW = 100
#: the pace assumed when the minute limit is not known (HeroBase's usual per-minute limit)
DEFAULT_PER_MINUTE = 600


def estimate_rows(name: str, size: int | None) -> int | None:
    """The rows a file of ``size`` bytes probably holds (None: size unknown)."""
    if size is None:
        return None
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    per_row = BYTES_PER_ROW.get(suffix, DEFAULT_BYTES_PER_ROW)
    return max(1, math.ceil(size / per_row))


def finish_time(requests: int, quota: QuotaStatus, now: datetime) -> datetime | None:
    """When ``requests`` more requests are likely sent (None: never, the budget is 0).

    Today's budget is used first, at the minute limit; what does not fit waits for the reset,
    and for a further day per budget's worth.
    """
    pace = timedelta(minutes=1) / (quota.per_minute or DEFAULT_PER_MINUTE)
    left = quota.left
    if left is None or requests <= left:
        return now + pace * requests
    if not quota.budget or not quota.resets_at:
        return None
    over = requests - left
    days = math.ceil(over / quota.budget) - 1  # whole further days after the first reset
    rest = over - days * quota.budget
    start = datetime.fromisoformat(quota.resets_at) + timedelta(days=days)
    return start + pace * rest


def finish_times(
    rows: Sequence[int | None], quota: QuotaStatus, now: datetime
) -> list[datetime | None]:
    """The likely finish of each file of ``rows`` (estimates, in order; None: not known)."""
    out: list[datetime | None] = []
    total = 0
    for n in rows:
        if n is None:
            out.append(None)
            continue
        total += n
        out.append(finish_time(total, quota, now))
    return out


def pace_of(rate: float | None, per_minute: int | None) -> float:
    """Rows per second: the measured ``rate``, else the minute limit's pace."""
    return rate if rate and rate > 0 else (per_minute or DEFAULT_PER_MINUTE) / 60.0


def queue_times(
    rows: Sequence[int | None],
    rate: float | None,
    per_minute: int | None,
    start: datetime,
) -> list[tuple[datetime | None, datetime | None]]:
    """(likely start, likely finish) of each file of one campaign's queue, in order.

    ``rate``: rows per second measured on the campaign (None: the minute limit's pace). A file
    whose rows are not known (a preview, no size) is assumed to take no time [ours]; one after
    a file of unknown length has no start either.
    """
    pace = pace_of(rate, per_minute)
    out: list[tuple[datetime | None, datetime | None]] = []
    at: datetime | None = start
    for n in rows:
        if at is None:
            out.append((None, None))
            continue
        finish = at + timedelta(seconds=(n or 0) / pace)
        out.append((at, finish if n is not None else None))
        at = finish
    return out
