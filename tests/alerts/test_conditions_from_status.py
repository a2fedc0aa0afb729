"""Each condition from the service's status: raised once, kept across a restart without a
second alert, resolved once; unknown facts clear nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.alerts.events import Alert, Event
from pipeline.alerts.monitor import SETTLE_SECONDS, SETTLING, Monitor
from pipeline.api.quota import QuotaStatus
from pipeline.clock import FakeClock
from pipeline.config import AlertSettings, ExportJob, Paths, Settings
from pipeline.dropfolder.status import IntakeStatus
from pipeline.export.scheduler import JobStatus
from pipeline.service.snapshot import ApiStatus, ServiceStatus

NOW = datetime(2026, 10, 26, 9, 0, tzinfo=UTC)  # Monday 10:00 in Copenhagen (CET)
JOB = ExportJob(name="daily", search="s", schedule="0 2 * * *")


def job(state: str = "ok", watermark: str | None = "2026-10-26", message: str = "") -> JobStatus:
    return JobStatus(
        "daily", "s", JOB.schedule, "previous-day", "csv", state, watermark, None, 3,
        "outbox/daily/daily_2026-10-25_2026-10-26.csv", None, None, message,
    )  # fmt: skip


def quota(used: int) -> QuotaStatus:
    return QuotaStatus(used=used, limit=111, budget=100, resets_at=NOW.isoformat())


def base(tmp_path: Path) -> ServiceStatus:
    return ServiceStatus(
        intake=IntakeStatus(inbox=str(tmp_path / "inbox"), quota=quota(10)),
        api=ApiStatus(url="http://127.0.0.1:9/api", checked=True),
        exports=(job(),),
    )


def api_down(s: ServiceStatus) -> ServiceStatus:
    since = (NOW - timedelta(minutes=11)).isoformat()
    return replace(s, api=replace(s.api, problem="connection refused", since=since))


def breaker(s: ServiceStatus) -> ServiceStatus:
    return replace(s, intake=replace(s.intake, waiting_for_api=True, api_problem="503"))


def budget(s: ServiceStatus) -> ServiceStatus:
    return replace(s, intake=replace(s.intake, quota=quota(95)))


def export_failed(s: ServiceStatus) -> ServiceStatus:
    return replace(s, exports=(job("error", message="the search s is gone"),))


def export_late(s: ServiceStatus) -> ServiceStatus:
    return replace(s, exports=(job("waiting for the API", "2026-10-25"),))


def inbox_away(s: ServiceStatus) -> ServiceStatus:
    problem = "the inbox folder /in is not reachable"
    return replace(s, intake=replace(s.intake, inbox_ok=False, inbox_problem=problem))


Case = tuple[Event, Callable[[ServiceStatus], ServiceStatus], str]
CASES: list[Case] = [
    (Event.API_DOWN, api_down, "connection refused"),
    (Event.BREAKER_OPEN, breaker, "stopped taking files"),
    (Event.BUDGET_LOW, budget, "95 of today's 100 requests"),
    (Event.EXPORT_FAILED, export_failed, "the search s is gone"),
    (Event.EXPORT_LATE, export_late, "has not written its file"),
    (Event.INBOX_UNREACHABLE, inbox_away, "/in is not reachable"),
]


class Sent(list[Alert]):
    def __call__(self, alert: Alert) -> None:
        self.append(alert)


def setup(tmp_path: Path, **alerts: object) -> tuple[Settings, FakeClock]:
    for d in ("inbox", "outbox", "state"):
        (tmp_path / d).mkdir(exist_ok=True)
    values: dict[str, object] = {"digest_at": "", "export_grace_minutes": 60}
    values.update(alerts)
    settings = Settings(
        paths=Paths(tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state", tmp_path / "s"),
        alerts=AlertSettings(**values),  # type: ignore[arg-type]
        exports=[JOB],
    )
    return settings, FakeClock(NOW)


@pytest.mark.parametrize(("kind", "make", "said"), CASES, ids=[c[0].value for c in CASES])
def test_condition_fires_once_survives_restart_resolves_once(
    tmp_path: Path, kind: Event, make: Callable[[ServiceStatus], ServiceStatus], said: str
) -> None:
    settings, clock = setup(tmp_path)
    sent = Sent()
    mon = Monitor(settings, sent, clock=clock, link="http://127.0.0.1:8377/")
    mon.evaluate(base(tmp_path), force=True)
    assert sent == []
    bad = make(base(tmp_path))
    if kind in SETTLING:  # raised once it has held a while (it often clears by itself)
        mon.evaluate(bad, force=True)
        assert sent == []
        clock.advance(SETTLE_SECONDS)
    for _ in range(3):
        mon.evaluate(bad, force=True)
    (raised,) = sent
    assert raised.kind is kind
    assert not raised.resolved
    assert said in raised.body
    assert raised.link == "http://127.0.0.1:8377/"
    mon = Monitor(settings, sent, clock=clock)  # a restart, the condition still holds
    mon.evaluate(bad, force=True)
    assert len(sent) == 1
    # facts unknown (no API wired, no budget known, exports not evaluated): nothing clears
    unknown = replace(bad, api=ApiStatus(), exports=(), intake=replace(bad.intake, quota=None))
    if kind is not Event.INBOX_UNREACHABLE:
        mon.evaluate(unknown, force=True)
        assert len(sent) == 1
    clock.advance(60)
    mon.evaluate(base(tmp_path), force=True)
    mon.evaluate(base(tmp_path), force=True)
    (resolved,) = sent[1:]
    assert resolved.kind is kind
    assert resolved.resolved
    assert resolved.subject.startswith("[leadpipe] RESOLVED: ")


def test_api_down_waits_for_its_minutes(tmp_path: Path) -> None:
    settings, clock = setup(tmp_path, api_down_minutes=10)
    sent = Sent()
    mon = Monitor(settings, sent, clock=clock)
    down = replace(
        base(tmp_path),
        api=ApiStatus(url="http://x/api", problem="timeout", since=NOW.isoformat(), checked=True),
    )
    mon.evaluate(down, force=True)
    clock.advance(599)
    mon.evaluate(down, force=True)
    assert sent == []
    clock.advance(1)
    mon.evaluate(down, force=True)
    assert [a.kind for a in sent] == [Event.API_DOWN]
    assert sent[0].severity.value == "critical"


def test_a_restart_while_the_api_is_down_says_nothing_until_a_call_has_ended(
    tmp_path: Path,
) -> None:
    settings, clock = setup(tmp_path, api_down_minutes=10)
    sent = Sent()
    down = replace(
        base(tmp_path),
        api=ApiStatus(url="http://x/api", problem="timeout", since=NOW.isoformat(), checked=True),
    )
    mon = Monitor(settings, sent, clock=clock)
    clock.advance(600)
    mon.evaluate(down, force=True)
    assert [(a.kind, a.resolved) for a in sent] == [(Event.API_DOWN, False)]
    # a restart: the new process has made no call yet; the API's state is not known
    mon = Monitor(settings, sent, clock=clock)
    fresh = replace(base(tmp_path), api=ApiStatus(url="http://x/api"))
    mon.evaluate(fresh, force=True)
    assert len(sent) == 1  # no false "RESOLVED"
    mon.evaluate(replace(fresh, api=ApiStatus(url="http://x/api", checked=True)), force=True)
    assert [(a.kind, a.resolved) for a in sent][1:] == [(Event.API_DOWN, True)]


def test_disk_low_and_back(tmp_path: Path) -> None:
    settings, clock = setup(tmp_path, disk_free_percent=100.5)  # no disk has that much free
    sent = Sent()
    mon = Monitor(settings, sent, clock=clock)
    mon.evaluate(base(tmp_path), force=True)
    mon.evaluate(base(tmp_path), force=True)
    assert [a.kind for a in sent] == [Event.DISK_LOW]
    assert "is free on the disk of" in sent[0].body
    mon.alerts = replace(mon.alerts, disk_free_percent=0)
    mon.evaluate(base(tmp_path), force=True)
    assert [(a.kind, a.resolved) for a in sent] == [(Event.DISK_LOW, False), (Event.DISK_LOW, True)]


def test_disk_low_clears_only_with_a_margin_above_its_threshold(tmp_path: Path) -> None:
    import shutil

    usage = shutil.disk_usage(tmp_path)
    free = usage.free * 100.0 / usage.total
    settings, clock = setup(tmp_path, disk_free_percent=free + 0.4)
    sent = Sent()
    mon = Monitor(settings, sent, clock=clock)
    mon.evaluate(base(tmp_path), force=True)
    assert [(a.kind, a.resolved) for a in sent] == [(Event.DISK_LOW, False)]
    mon.alerts = replace(mon.alerts, disk_free_percent=free - 0.4)  # just above it now
    mon.evaluate(base(tmp_path), force=True)
    assert len(sent) == 1  # hovering around the threshold: no "resolved", no second alert
    mon.alerts = replace(mon.alerts, disk_free_percent=free - 1.6)  # clearly above it
    mon.evaluate(base(tmp_path), force=True)
    assert [(a.kind, a.resolved) for a in sent[1:]] == [(Event.DISK_LOW, True)]


def test_a_breaker_that_closes_within_its_settle_time_sends_nothing(tmp_path: Path) -> None:
    settings, clock = setup(tmp_path)
    sent = Sent()
    mon = Monitor(settings, sent, clock=clock)
    ok = base(tmp_path)
    held = replace(
        ok, intake=replace(ok.intake, waiting_for_api=True, api_problem="the API answered 503")
    )
    for _ in range(3):  # open at one probe, closed at the next: no alert, no "resolved"
        mon.evaluate(held, force=True)
        clock.advance(60)
        mon.evaluate(ok, force=True)
    assert sent == []
