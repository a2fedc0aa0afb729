"""exporting.py: catch-up, watermark, backoff, isolation between jobs, locks, status (no HTTP)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pipeline.clock import FakeClock
from pipeline.config import ExportJob, Paths, Settings
from pipeline.errors import NotFound, StateError, Unavailable
from pipeline.export.scheduler import DEMO_EXPORT_DAYS, ExportScheduler, demo_exports
from pipeline.export.state import StateStore
from pipeline.export.windows import Window


class ScriptedClient:
    """Stands in for HeroBaseClient: answers or raises per search name (no HTTP involved)."""

    def __init__(self) -> None:
        self.down = False
        self.missing: set[str] = set()
        self.calls: list[tuple[str, date, date]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def iter_leads(
        self, search: str, from_: Any, to: Any = None, *, page_size: int = 1000
    ) -> Iterator[Any]:
        raise AssertionError("objects format not used here")

    def download_leads_csv(self, search: str, from_: Any, to: Any, dest: Path, **kw: Any) -> int:
        self.calls.append((search, from_, to))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        if search == "explodes":
            raise ValueError("bad byte in answer")
        if search in self.missing:
            raise NotFound(
                f"no search called {search!r}", method="GET", url="/api/leads/csv", status=404
            )
        if self.down:
            raise Unavailable(
                "503 Service Unavailable", method="GET", url="/api/leads/csv", status=503
            )
        body = f"uniqueId,from\r\n1S1,{from_}\r\n".encode()
        dest.write_bytes(body)
        return len(body)


def make(tmp_path: Path, *jobs: ExportJob) -> tuple[ExportScheduler, ScriptedClient, FakeClock]:
    settings = Settings(
        paths=Paths(
            inbox=tmp_path / "in",
            outbox=tmp_path / "outbox",
            state=tmp_path / "state",
            schemas=tmp_path / "s",
        ),
        exports=list(jobs),
        timezone="Europe/Copenhagen",
    )
    clock = FakeClock(datetime(2026, 10, 20, 12, 0, tzinfo=UTC))
    client = ScriptedClient()
    return ExportScheduler(settings, client, clock=clock), client, clock


DAILY = ExportJob(
    name="daily", search="api_import_export", schedule="0 2 * * *", start="2026-10-18"
)


def files(tmp_path: Path, name: str) -> list[str]:
    return sorted(p.name for p in (tmp_path / "outbox" / name).glob("*.csv"))


def test_catch_up_from_start_then_nothing_until_next_run(tmp_path: Path) -> None:
    sched, _client, clock = make(tmp_path, DAILY)
    results = sched.run_due()
    assert [(r.window.start.day, r.window.end.day, r.status) for r in results] == [
        (18, 19, "written"), (19, 20, "written"),
    ]  # fmt: skip
    assert files(tmp_path, "daily") == [
        "daily_2026-10-18_2026-10-19.csv",
        "daily_2026-10-19_2026-10-20.csv",
    ]
    assert sched.run_due() == []
    clock.set(datetime(2026, 10, 21, 0, 59, tzinfo=UTC))  # 02:59 local: the 21st's run is due
    assert [r.window.end for r in sched.run_due()] == [date(2026, 10, 21)]
    status = sched.status()[0]
    assert (status.state, status.watermark, status.last_rows) == ("ok", "2026-10-21", 1)
    assert status.next_run == "2026-10-22T02:00:00+02:00"


def test_api_down_keeps_watermark_backs_off_and_catches_up_in_order(tmp_path: Path) -> None:
    sched, client, clock = make(tmp_path, DAILY)
    client.down = True
    results = sched.run_due()
    assert [(r.status, r.window.start.day) for r in results] == [
        ("failed", 18)
    ]  # stops at the first
    st = sched.status()[0]
    assert st.state == "waiting for the API"
    assert st.watermark is None
    assert "503 Service Unavailable" in st.message
    assert "attempt 1" in st.message
    assert sched.run_due() == []  # backing off: not before retry_at
    clock.advance(61)
    assert [r.status for r in sched.run_due()] == ["failed"]
    assert sched.store.load("daily").retry_at == (clock.now() + timedelta(seconds=120)).isoformat()
    client.down = False
    clock.advance(121)
    assert [r.window.start.day for r in sched.run_due()] == [18, 19]
    st = sched.status()[0]
    assert (st.state, st.watermark, st.retry_at) == ("ok", "2026-10-20", None)
    assert files(tmp_path, "daily") == [
        "daily_2026-10-18_2026-10-19.csv",
        "daily_2026-10-19_2026-10-20.csv",
    ]


def test_missing_search_is_a_clear_error_and_other_jobs_run(tmp_path: Path) -> None:
    broken = ExportJob(name="broken", search="gone", start="2026-10-19")
    sched, client, _ = make(tmp_path, broken, DAILY)
    client.missing = {"gone"}
    results = sched.run_due()
    assert [(r.job, r.status) for r in results] == [
        ("broken", "failed"), ("daily", "written"), ("daily", "written"),
    ]  # fmt: skip
    st = {s.name: s for s in sched.status()}
    assert st["broken"].state == "error"
    assert "search 'gone' was not found by the API" in st["broken"].message
    assert "check the 'search' of this [[exports]] job" in st["broken"].message
    assert st["daily"].state == "ok"


def test_bad_schedule_only_disables_its_own_job(tmp_path: Path) -> None:
    bad = ExportJob(name="bad", search="s", schedule="0 2 * *")
    sched, _, _ = make(tmp_path, bad, DAILY)
    assert {r.job for r in sched.run_due()} == {"daily"}
    st = {s.name: s for s in sched.status()}
    assert st["bad"].state == "error"
    assert st["bad"].message.startswith("exports.bad.schedule: schedule '0 2 * *' is not a cron")


def test_explicit_window_reexports_without_moving_the_watermark(tmp_path: Path) -> None:
    sched, _, _ = make(tmp_path, DAILY)
    sched.run_due()
    [r] = sched.run_job("daily", window=Window(date(2026, 10, 1), date(2026, 10, 8)))
    assert r.path is not None
    assert r.path.name == "daily_2026-10-01_2026-10-08.csv"
    assert sched.store.load("daily").watermark == "2026-10-20"


def test_run_job_now_counts_today_as_due(tmp_path: Path) -> None:
    sched, _, clock = make(tmp_path, DAILY)
    clock.set(datetime(2026, 10, 19, 23, 30, tzinfo=UTC))  # 01:30 on the 20th, before 02:00
    assert [r.window.end.day for r in sched.run_due()] == [19]
    assert [r.window.end.day for r in sched.run_job("daily")] == [20]
    assert [r.status for r in sched.run_job("daily", dry_run=True)] == []


def test_never_two_runs_of_one_job(tmp_path: Path) -> None:
    sched, client, _ = make(tmp_path, DAILY)
    client.gate = threading.Event()
    worker = threading.Thread(target=sched.run_due)
    worker.start()
    try:
        assert client.entered.wait(5)
        assert sched.status()[0].state == "running"
        assert sched.run_due() == []  # skipped: the job is running
        assert sched.next_wakeup() == sched.clock.now() + timedelta(seconds=60)  # look again soon
        with pytest.raises(StateError, match="already running in this process"):
            sched.run_job("daily")
        other_process = StateStore(tmp_path / "state" / "exports")
        # a second store object takes the OS lock path: another process would be refused
        with pytest.raises(StateError, match="already running"), other_process.lock("daily"):
            pass
    finally:
        client.gate.set()
        worker.join(5)
    assert len(client.calls) == 2


def test_corrupt_state_stops_the_job_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sched, client, clock = make(tmp_path, DAILY)
    state = tmp_path / "state" / "exports" / "daily.json"
    state.parent.mkdir(parents=True)
    state.write_text("{not json")
    assert sched.run_due() == []
    st = sched.status()[0]
    assert st.state == "error"
    assert "cannot be read" in st.message
    assert "fix or delete it" in st.message
    # stopped, not "busy": nothing is retried every minute while the file stays broken
    clock.advance(600)
    assert sched.run_due() == []
    assert client.calls == []
    assert sched.next_wakeup() is None
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "daily" in r.getMessage()]
    assert len(said) == 1  # said once, as an error, not retried as if busy
    assert said[0][0] == "ERROR"
    assert "stopped until its state is fixed" in said[0][1]
    state.unlink()  # a person deleted it: the job runs again from its start
    assert [r.status for r in sched.run_due()] == ["written", "written"]


def test_state_file_is_small_json(tmp_path: Path) -> None:
    sched, _, _ = make(tmp_path, DAILY)
    sched.run_due()
    raw = json.loads((tmp_path / "state" / "exports" / "daily.json").read_text())
    assert raw["watermark"] == "2026-10-20"
    assert raw["last_success"] == "2026-10-20T12:00:00+00:00"
    assert raw["last_error"] is None


def test_next_wakeup_is_the_earlier_of_cron_and_retry(tmp_path: Path) -> None:
    sched, client, clock = make(tmp_path, DAILY)
    assert sched.next_wakeup() == datetime(2026, 10, 21, 0, 0, tzinfo=UTC)
    client.down = True
    sched.run_due()
    assert sched.next_wakeup() == clock.now() + timedelta(seconds=60)


def test_unexpected_error_stays_in_its_job_and_backs_off(tmp_path: Path) -> None:
    odd = ExportJob(name="odd", search="explodes", start="2026-10-19")
    sched, _, clock = make(tmp_path, odd, DAILY)
    assert [(r.job, r.status) for r in sched.run_due()] == [
        ("odd", "failed"), ("daily", "written"), ("daily", "written"),
    ]  # fmt: skip
    st = sched.status()[0]
    assert st.state == "error"
    assert st.message.startswith("unexpected ValueError: bad byte in answer; next attempt at")
    assert st.retry_at == (clock.now() + timedelta(seconds=60)).isoformat()


@pytest.mark.parametrize(
    "local_time",
    [
        datetime(2026, 11, 30, 0, 30),  # after midnight, before the 02:00 run
        datetime(2026, 11, 30, 1, 59),
        datetime(2026, 11, 30, 2, 0),
        datetime(2026, 11, 30, 14, 0),
    ],
)
def test_the_demo_export_catches_up_a_whole_week_at_any_hour(
    tmp_path: Path, local_time: datetime
) -> None:
    tz = ZoneInfo("Europe/Copenhagen")
    clock = FakeClock(local_time.replace(tzinfo=tz).astimezone(UTC))
    base = Settings(
        paths=Paths(
            inbox=tmp_path / "in",
            outbox=tmp_path / "outbox",
            state=tmp_path / "state",
            schemas=tmp_path / "s",
        ),
        timezone="Europe/Copenhagen",
    )
    settings = demo_exports(base, clock)
    (job,) = settings.exports
    windows = ExportScheduler(settings, None, clock=clock).planned(job.name)
    assert len(windows) == DEMO_EXPORT_DAYS  # a week of files, whatever the hour it starts
    assert windows[-1].end <= local_time.date()
