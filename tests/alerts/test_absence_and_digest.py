"""Absence alerts and the digest with the fake clock: a weekend, both DST changes of
Europe/Copenhagen (last Sunday of March and of October)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.alerts.absence import last_deadline, missed
from pipeline.alerts.events import Alert, Event
from pipeline.alerts.monitor import Monitor
from pipeline.clock import FakeClock
from pipeline.config import AlertSettings, FileExpectation, Paths, Settings
from pipeline.dropfolder.jobs import Finished
from pipeline.dropfolder.status import IntakeStatus
from pipeline.outcome import FileOutcome
from pipeline.service.snapshot import ServiceStatus

TZ = "Europe/Copenhagen"
WEEKDAYS = FileExpectation("B2B-DK-SPRING", by="09:00", days="mon-fri")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_weekend_no_deadline_on_saturday_and_sunday() -> None:
    # Friday 2026-03-20 09:00 CET = 08:00 UTC; the next deadline is Monday 2026-03-23
    friday_file = utc(2026, 3, 20, 7, 30)
    for hour in range(24 * 3):  # Friday 08:00 UTC .. Monday 08:00 UTC, hour by hour
        now = utc(2026, 3, 20, 8) + timedelta(hours=hour)
        assert missed(WEEKDAYS, now, TZ, friday_file) is None, now
    monday = utc(2026, 3, 23, 8)  # 09:00 local
    assert missed(WEEKDAYS, monday - timedelta(seconds=1), TZ, friday_file) is None
    assert missed(WEEKDAYS, monday, TZ, friday_file) == monday
    # a file on Monday morning (local) counts, one after the deadline clears it
    assert missed(WEEKDAYS, monday, TZ, utc(2026, 3, 22, 23, 30)) is None  # 00:30 local
    assert missed(WEEKDAYS, monday + timedelta(hours=1), TZ, monday + timedelta(minutes=5)) is None


def test_deadline_follows_the_local_clock_across_both_dst_changes() -> None:
    # before the spring change 09:00 local is 08:00 UTC; after it, 07:00 UTC
    assert last_deadline(WEEKDAYS.schedule, utc(2026, 3, 27, 8, 0), TZ) == utc(2026, 3, 27, 8)
    assert last_deadline(WEEKDAYS.schedule, utc(2026, 3, 30, 7, 0), TZ) == utc(2026, 3, 30, 7)
    assert last_deadline(WEEKDAYS.schedule, utc(2026, 3, 30, 6, 59), TZ) == utc(2026, 3, 27, 8)
    # autumn: back to 08:00 UTC on Monday 2026-10-26
    assert last_deadline(WEEKDAYS.schedule, utc(2026, 10, 26, 7, 30), TZ) == utc(2026, 10, 23, 7)
    assert last_deadline(WEEKDAYS.schedule, utc(2026, 10, 26, 8, 0), TZ) == utc(2026, 10, 26, 8)
    # a deadline inside the spring gap (02:30 on Sunday 2026-03-29) falls at the jump, 03:00
    gap = FileExpectation("X", by="02:30", days="sun")
    assert last_deadline(gap.schedule, utc(2026, 3, 29, 2), TZ) == utc(2026, 3, 29, 1)
    # the repeated hour in autumn (02:30 on Sunday 2026-10-25) counts once, the first time
    twice = FileExpectation("X", by="02:30", days="sun")
    assert last_deadline(twice.schedule, utc(2026, 10, 25, 3), TZ) == utc(2026, 10, 25, 0, 30)


class Sent(list[Alert]):
    def __call__(self, alert: Alert) -> None:
        self.append(alert)


def settings(tmp_path: Path, **alerts: object) -> Settings:
    values: dict[str, object] = {"expect": (WEEKDAYS,), "digest_at": "08:00"}
    values.update(alerts)
    return Settings(
        paths=Paths(tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state", tmp_path / "s"),
        alerts=AlertSettings(**values),  # type: ignore[arg-type]
        timezone=TZ,
    )


def status(tmp_path: Path) -> ServiceStatus:
    return ServiceStatus(intake=IntakeStatus(inbox=str(tmp_path / "inbox")))


def finished(at: datetime, **counts: int) -> Finished:
    return Finished(
        "B2B-DK-SPRING",
        "leads.csv",
        False,
        FileOutcome.PROCESSED,
        at,
        Path("/x/processed/20260330-0700_leads.csv"),
        Path("/x/processed/20260330-0700_leads.csv.receipt.txt"),
        [Path("/x/rejected/20260330-0700_leads.csv.rejects.xlsx")],
        None,
        "",
        dict(counts),
        1.0,
    )


def test_monitor_absence_fires_once_resolves_once_and_survives_a_restart(tmp_path: Path) -> None:
    for d in ("inbox", "outbox", "state"):
        (tmp_path / d).mkdir()
    clock = FakeClock(utc(2026, 3, 27, 7, 0))  # Friday 08:00 local, before the deadline
    sent = Sent()
    mon = Monitor(settings(tmp_path, digest_at=""), sent, clock=clock)
    mon.evaluate(status(tmp_path), force=True)
    assert sent == []
    clock.set(utc(2026, 3, 27, 8, 0))  # Friday 09:00 local: nothing came
    mon.evaluate(status(tmp_path), force=True)
    assert [a.kind for a in sent] == [Event.FILE_MISSING]
    assert "no file by 09:00" in sent[0].title
    for hours in (1, 24, 48):  # the weekend: the same condition, no second alert
        clock.set(utc(2026, 3, 27, 8, 0) + timedelta(hours=hours))
        mon.evaluate(status(tmp_path), force=True)
    assert len(sent) == 1
    # a restart: the condition is remembered, not sent again
    mon = Monitor(settings(tmp_path, digest_at=""), sent, clock=clock)
    mon.evaluate(status(tmp_path), force=True)
    assert len(sent) == 1
    assert [c.key for c in mon.store.active()] == ["file_missing:B2B-DK-SPRING"]
    # Sunday: a file arrives (summer time now): resolved once
    clock.set(utc(2026, 3, 29, 10, 0))
    mon.finished(finished(clock.now(), rows_read=3, accepted=3))
    mon.evaluate(status(tmp_path), force=True)
    mon.evaluate(status(tmp_path), force=True)
    assert [(a.kind, a.resolved) for a in sent[1:]] == [(Event.FILE_MISSING, True)]
    # Monday 09:00 CEST = 07:00 UTC: the Sunday file does not count for Monday
    clock.set(utc(2026, 3, 30, 6, 59))
    mon.evaluate(status(tmp_path), force=True)
    assert len(sent) == 2
    clock.set(utc(2026, 3, 30, 7, 0))
    mon.evaluate(status(tmp_path), force=True)
    assert [(a.kind, a.resolved) for a in sent[2:]] == [(Event.FILE_MISSING, False)]


def test_digest_at_its_local_time_nothing_happened_then_figures(tmp_path: Path) -> None:
    for d in ("inbox", "outbox", "state"):
        (tmp_path / d).mkdir()
    # Saturday 2026-10-24 09:00 local (CEST): the first start; today's 08:00 digest has passed
    clock = FakeClock(utc(2026, 10, 24, 7, 0))
    sent = Sent()
    s = settings(tmp_path, expect=())
    mon = Monitor(s, sent, clock=clock)
    mon.evaluate(status(tmp_path), force=True)
    assert sent == []
    clock.set(utc(2026, 10, 25, 6, 59))  # Sunday 07:59 CET (the clocks went back at night)
    mon.evaluate(status(tmp_path), force=True)
    assert sent == []
    clock.set(utc(2026, 10, 25, 7, 0))  # Sunday 08:00 CET
    mon.evaluate(status(tmp_path), force=True)
    assert [a.kind for a in sent] == [Event.DIGEST]
    assert "Nothing happened" in sent[0].body
    mon.evaluate(status(tmp_path), force=True)
    assert len(sent) == 1
    mon.finished(finished(clock.now(), rows_read=10, accepted=6, rejected=4, uncertain=0))
    mon = Monitor(s, sent, clock=clock)  # a restart keeps the figures
    clock.set(utc(2026, 10, 26, 7, 0))
    mon.evaluate(status(tmp_path), force=True)
    digest = sent[-1]
    assert digest.kind is Event.DIGEST
    assert "B2B-DK-SPRING: 1 file(s) processed (0 failed), 6 lead(s) uploaded" in digest.body
    assert "4 row(s) to fix" in digest.body
    assert "20260330-0700_leads.csv.rejects.xlsx" in digest.body
    assert "No export file was written." in digest.body
    # the one-off reject-rate alert went too (40% > 20%)
    assert any(a.kind is Event.REJECT_RATE for a in sent)
    assert replace(digest, body="").title.startswith("Daily digest 2026-10-26")


def test_a_missing_file_alert_clears_when_its_expectation_is_removed(tmp_path: Path) -> None:
    for d in ("inbox", "outbox", "state"):
        (tmp_path / d).mkdir()
    clock = FakeClock(utc(2026, 3, 27, 7, 0))
    sent = Sent()
    mon = Monitor(settings(tmp_path, digest_at=""), sent, clock=clock)
    mon.evaluate(status(tmp_path), force=True)
    clock.set(utc(2026, 3, 27, 8, 0))  # the deadline passed: raised
    mon.evaluate(status(tmp_path), force=True)
    assert [(a.kind, a.resolved) for a in sent] == [(Event.FILE_MISSING, False)]
    # the expectation is taken out of the config; the service restarts
    quiet = replace(settings(tmp_path, digest_at=""), alerts=replace(mon.alerts, expect=()))
    mon = Monitor(quiet, sent, clock=clock)
    mon.evaluate(status(tmp_path), force=True)
    assert [(a.kind, a.resolved) for a in sent[1:]] == [(Event.FILE_MISSING, True)]
    assert mon.store.active() == []


def test_the_last_deadline_of_a_monthly_schedule_is_found_weeks_later() -> None:
    from pipeline.alerts.absence import last_deadline

    now = utc(2026, 2, 20, 12, 0)  # 19 days after the 1st
    assert last_deadline("0 6 1 * *", now, "Europe/Copenhagen") == utc(2026, 2, 1, 5, 0)
    assert last_deadline("*/5 * * * *", now, "Europe/Copenhagen") == utc(2026, 2, 20, 12, 0)
