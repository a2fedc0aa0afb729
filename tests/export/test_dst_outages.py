"""Simulated weeks against the sandbox: DST changes, API outages, catch-up, one file per day."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.config import ExportJob
from pipeline.export.scheduler import ExportScheduler, JobStatus
from pipeline.sandbox import Fault
from tests.export.conftest import Env

CPH = ZoneInfo("Europe/Copenhagen")
CAMPAIGN = "B2B-DK-SPRING"
SEARCH = "api_import_export"  # B2B-DK-SPRING leads closed UserProcessed/Success


def at(*args: int) -> datetime:
    """A Copenhagen wall time as an aware instant (first occurrence when ambiguous)."""
    return datetime(*args, tzinfo=CPH).astimezone(UTC)


def lead_events(first: date, days: int) -> list[tuple[datetime, datetime, str]]:
    """(instant, local naive time, kind) of lead activity: edges of the day and the DST hour."""
    events: list[tuple[datetime, datetime, str]] = []
    for i in range(days):
        d = first + timedelta(days=i)
        for hh, mm, ss, us in [(0, 0, 0, 0), (2, 30, 0, 0), (12, 0, 0, 0), (23, 59, 59, 999999)]:
            wall = datetime(d.year, d.month, d.day, hh, mm, ss, us)
            events.append((wall.replace(tzinfo=CPH).astimezone(UTC), wall, "closed"))
        wall = datetime(d.year, d.month, d.day, 9, 0)
        events.append((wall.replace(tzinfo=CPH).astimezone(UTC), wall, "new"))
        wall = datetime(d.year, d.month, d.day, 15, 0)
        events.append((wall.replace(tzinfo=CPH).astimezone(UTC), wall, "simulate"))
    return sorted(events)


def expected_ids(env: Env, start: date, end: date) -> list[str]:
    """The sandbox's own answer: search leads whose lastModifiedTime is in [start, end)."""
    lo, hi = start.isoformat(), end.isoformat()
    return [
        lead["uniqueId"]
        for lead in env.sb.leads(CAMPAIGN)
        if lead["status"] == "UserProcessed"
        and lead["closure"] == "Success"
        and lo <= lead["lastModifiedTime"] < hi
    ]


def file_ids(path: Path, encoding: str, delimiter: str) -> list[str]:
    text = path.read_bytes().decode(encoding)
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    assert rows[0][0] == "uniqueId"
    return [r[0] for r in rows[1:]]


def simulate_period(
    env: Env,
    sched: ExportScheduler,
    *,
    begin: datetime,
    end: datetime,
    step: timedelta,
    events: list[tuple[datetime, datetime, str]],
    outages: list[tuple[datetime, datetime]],
    route: str,
    probe: Callable[[datetime], None] | None = None,
) -> None:
    """Drive time like the service loop: activity, outages, and run_due at every step."""
    pending = list(events)
    down = False
    t = begin
    n = 0
    while t <= end:
        env.clock.set(t)
        while pending and pending[0][0] <= t:
            _, wall, kind = pending.pop(0)
            n += 1
            if kind == "closed":
                env.sb.insert_lead(
                    CAMPAIGN, {"name": f"Lead {n} Ærø", "phone": f"+45 {10000000 + n}"},
                    status="UserProcessed", closure="Success", upload_time=wall,
                    last_modified_time=wall,
                )  # fmt: skip
            elif kind == "new":
                for k in range(4):
                    env.sb.insert_lead(
                        CAMPAIGN, {"name": f"Open {n}-{k}", "phone": f"+45 {2000000 + n * 10 + k}"},
                        upload_time=wall, last_modified_time=wall,
                    )  # fmt: skip
            else:
                env.sb.simulate(0.5, at=wall)
        should_be_down = any(a <= t < b for a, b in outages)
        if should_be_down and not down:
            env.sb.add_fault(Fault("status", route=route, status=503, times=0))
        elif down and not should_be_down:
            env.sb.clear_faults()
        down = should_be_down
        sched.run_due(t)
        if probe is not None:
            probe(t)
        t += step


def check_outbox(env: Env, name: str, first: date, days: int, encoding: str, delim: str) -> None:
    folder = env.tmp / "outbox" / name
    visible = sorted(p.name for p in folder.iterdir() if p.name != ".leadpipe")
    want = []
    for i in range(days):
        d = first + timedelta(days=i)
        want += [
            f"{name}_{d}_{d + timedelta(days=1)}.csv",
            f"{name}_{d}_{d + timedelta(days=1)}.csv.manifest.json",
        ]
    assert visible == want  # exactly one file (and its manifest) per day, nothing else
    assert [p for p in (folder / ".leadpipe").rglob("*") if p.is_file()] == []  # no temp left
    seen: Counter[str] = Counter()
    for i in range(days):
        d = first + timedelta(days=i)
        path = folder / f"{name}_{d}_{d + timedelta(days=1)}.csv"
        manifest = json.loads(Path(f"{path}.manifest.json").read_text("utf-8"))
        ids = file_ids(path, encoding, delim)
        assert sorted(ids) == sorted(expected_ids(env, d, d + timedelta(days=1))), f"window {d}"
        assert manifest["rows"] == len(ids)
        assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        seen.update(ids)
    end = first + timedelta(days=days)
    everything = expected_ids(env, first, end)
    assert len(everything) > days * 4  # activity every day, plus simulated closures
    assert set(seen) == set(everything)
    assert set(seen.values()) == {1}  # every lead modified in the period: exactly one file


def test_30_days_across_october_dst_with_three_outages(make_env: Callable[[datetime], Env]) -> None:
    first = date(2026, 10, 12)
    env = make_env(at(2026, 10, 11, 12, 0))
    job = ExportJob(name="nightly", search=SEARCH, schedule="0 2 * * *", start=str(first))
    sched = ExportScheduler(env.settings(job), env.client, clock=env.clock)
    outages = [
        (at(2026, 10, 14, 1, 30), at(2026, 10, 14, 5, 30)),
        (at(2026, 10, 24, 20, 0), at(2026, 10, 27, 10, 0)),  # the night of the change
        (at(2026, 11, 7, 1, 0), at(2026, 11, 8, 4, 0)),
    ]
    observed: dict[str, JobStatus] = {}

    def probe(t: datetime) -> None:
        if t == at(2026, 10, 26, 12, 0):
            observed["during"] = sched.status(t)[0]

    simulate_period(
        env, sched, begin=at(2026, 10, 12, 0, 0), end=at(2026, 11, 11, 4, 0),
        step=timedelta(hours=1), events=lead_events(first, 30), outages=outages,
        route="GET /leads/csv", probe=probe,
    )  # fmt: skip
    check_outbox(env, "nightly", first, 30, "utf-8", ",")
    during = observed["during"]
    assert during.state == "waiting for the API"
    assert during.watermark == "2026-10-24"
    final = sched.status(at(2026, 11, 11, 4, 0))[0]
    assert (final.state, final.watermark) == ("ok", "2026-11-11")
    # each window was downloaded completely exactly once, in order
    ok = [r["query"] for r in env.sb.requests() if r["path"] == "/leads/csv" and r["status"] == 200]
    assert [q["from"] for q in ok] == [str(first + timedelta(days=i)) for i in range(30)]
    failed = [r for r in env.sb.requests() if r["path"] == "/leads/csv" and r["status"] == 503]
    assert failed  # the outages were real


def test_march_dst_objects_nonexistent_run_time(make_env: Callable[[datetime], Env]) -> None:
    first = date(2026, 3, 26)
    env = make_env(at(2026, 3, 25, 12, 0))
    job = ExportJob(
        name="spring", search=SEARCH, schedule="30 2 * * *", start=str(first), format="objects"
    )
    sched = ExportScheduler(env.settings(job), env.client, clock=env.clock)
    simulate_period(
        env, sched, begin=at(2026, 3, 26, 0, 0), end=at(2026, 4, 1, 4, 0),
        step=timedelta(minutes=15), events=lead_events(first, 6),
        outages=[(at(2026, 3, 30, 2, 0), at(2026, 3, 30, 4, 0))], route="GET /leads",
    )  # fmt: skip
    check_outbox(env, "spring", first, 6, "utf-8-sig", ",")
    folder = env.tmp / "outbox" / "spring"
    written = {
        m["window"]["from"]: m["written_at"]
        for m in (json.loads(p.read_text("utf-8")) for p in folder.glob("*.manifest.json"))
    }
    # 02:30 did not exist on 29 March: the run came at the jump (03:00 CEST = 01:00 UTC)
    assert written["2026-03-28"] == "2026-03-29T01:00:00+00:00"
    assert written["2026-03-27"] == "2026-03-28T01:30:00+00:00"  # 02:30 CET
    assert written["2026-03-29"] == "2026-03-30T02:00:00+00:00"  # outage until 04:00 CEST
    assert written["2026-03-30"] == "2026-03-31T00:30:00+00:00"  # 02:30 CEST
