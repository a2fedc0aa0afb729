"""Waiting files' likely start and finish, as the status shows them (docs/dropfolder.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.clock import FakeClock, shown_time
from pipeline.dropfolder.intake import Intake, with_finish_times
from pipeline.dropfolder.status import CampaignStatus, FileInFolder, IntakeStatus
from pipeline.service.snapshot import ServiceStatus
from pipeline.service.status import render_html

NOW = datetime(2026, 3, 30, 9, 0, tzinfo=UTC)


def _status() -> IntakeStatus:
    # "leads_100.csv" of 10,000 bytes: an estimated row count from its size
    waiting = (FileInFolder("a.csv", size=10_000), FileInFolder("b.csv", size=10_000))
    return IntakeStatus(inbox="/inbox", campaigns={"C": CampaignStatus(waiting=waiting)})


def test_waiting_files_start_one_after_the_other_at_the_campaigns_rate() -> None:
    done = with_finish_times(_status(), None, NOW, {"C": 0.1})  # 100 rows: ~17 min
    a, b = done.campaigns["C"].waiting
    assert a.rows_estimate is not None
    assert a.rows_estimate > 0
    assert datetime.fromisoformat(a.starts) == NOW
    assert datetime.fromisoformat(b.starts) == datetime.fromisoformat(a.eta)
    assert datetime.fromisoformat(b.eta) > datetime.fromisoformat(b.starts)


def test_while_the_api_is_down_no_start_or_finish_is_guessed() -> None:
    done = with_finish_times(_status(), None, NOW, {"C": 10.0}, paused=True)
    for f in done.campaigns["C"].waiting:
        assert (f.starts, f.eta) == ("", "")
        assert f.rows_estimate is not None  # the size-based estimate stays


def _intake(tmp_path: Path, clock: FakeClock) -> Intake:
    inbox = tmp_path / "inbox"
    (inbox / "C").mkdir(parents=True)
    for name in ("a.csv", "b.csv"):
        (inbox / "C" / name).write_bytes(b"Name,Phone\n" + b"Acme,+4512345678\n" * 500)
    intake = Intake(
        inbox,
        lambda job: None,  # type: ignore[arg-type,return-value]
        campaigns=lambda: ["C"],
        settle_seconds=5.0,
        clock=clock,
        timezone="Europe/Copenhagen",
    )
    intake.sweep()
    clock.advance(5.0)
    intake.sweep()
    return intake


def test_paused_until_a_known_time_the_waiting_files_start_then(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    intake = _intake(tmp_path, clock)
    until = clock.now() + timedelta(hours=3)
    intake.breaker.pause_until("the day's budget is spent", until)
    first, second = intake.status().campaigns["C"].waiting
    assert datetime.fromisoformat(first.starts) == until.replace(second=0, microsecond=0)
    assert datetime.fromisoformat(second.starts) >= datetime.fromisoformat(first.eta)
    # the page shows it in the tenant's zone, with its offset
    html = render_html(ServiceStatus(intake=intake.status()))
    assert f"starts about {shown_time(first.starts)}" in html
    assert "(UTC+02:00)" in html


def test_while_the_api_is_down_the_intake_guesses_no_start(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    intake = _intake(tmp_path, clock)
    intake.breaker.trip("HeroBase does not answer")
    for f in intake.status().campaigns["C"].waiting:
        assert (f.starts, f.eta) == ("", "")
