"""The daily request budget end to end: over real HTTP to the sandbox, with a fake clock.

A tenant allowing 30 requests a day, 20 % kept for other integrations: uploads stop at 24
requests, the file waits in the inbox (not failed), the status shows the budget and the file's
likely finish, nothing is refused with a 429, and after each of the day's resets more goes
until the file is done; every lead is in HeroBase once (docs/dropfolder.md, "Waiting for
the daily budget").
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from pipeline.api.connect import open_client
from pipeline.clock import FakeClock
from pipeline.config import ApiSettings, IntakeSettings, Paths, Settings
from pipeline.dropfolder.intake import Intake
from pipeline.dropfolder.processing import IngestProcessor
from pipeline.ledger.sqlite import open_ledger
from pipeline.outcome import FileOutcome
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox
from pipeline.service.metrics import Metrics
from pipeline.service.snapshot import ServiceStatus
from pipeline.service.status import render_html

DK = "B2B-DK-SPRING"
TZ = "Europe/Copenhagen"
#: 22:00 in Copenhagen (summer time): the tenant's day resets two hours later
START = datetime(2026, 6, 10, 20, 0, tzinfo=UTC)
RESET = datetime(2026, 6, 10, 22, 0, tzinfo=UTC)


def leads_csv(tag: str, n: int) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["Name", "Phone", "Email", "Segment"])
    for i in range(n):
        w.writerow([f"{tag} {i:03d}", f"+45{40000000 + i:08d}", "", "SMB"])
    return out.getvalue().encode()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def sandbox_on_clock(clock: FakeClock) -> Iterator[Sandbox]:
    sb = Sandbox(port=0, clock=clock).start()
    sb.set_rate_limit(per_minute=10_000, per_day=30)
    try:
        yield sb
    finally:
        sb.stop()


def settings_for(root: Path, sb: Sandbox) -> Settings:
    return Settings(
        paths=Paths(
            inbox=root / "inbox",
            outbox=root / "outbox",
            state=root / "state",
            schemas=root / "schemas",
        ),
        api=ApiSettings(
            url=sb.url,
            user=DEMO_USER,
            password=DEMO_PASSWORD,
            read_timeout=5.0,
            requests_per_minute=10_000,
            daily_reserve=0.2,
        ),
        intake=IntakeSettings(concurrency=4, verify_after_minutes=0),
        timezone=TZ,
    )


def ours(sb: Sandbox) -> Counter[str]:
    """How many leads of this test the campaign holds, by name."""
    names = (str(lead["data"].get("name", "")) for lead in sb.leads(DK))
    return Counter(n for n in names if n.startswith("QUOTA"))


def day_count(sb: Sandbox) -> int:
    """The sandbox's own count of the demo login's requests today."""
    return sb.tenant.limiter.counts(DEMO_USER, sb.tenant.now())[1]


def test_uploads_pause_at_the_days_budget_and_resume_after_the_reset(
    sandbox_on_clock: Sandbox, clock: FakeClock, tmp_path: Path
) -> None:
    sb = sandbox_on_clock
    # another integration on the account already spent 3 requests today
    for _ in range(3):
        requests.get(f"{sb.url}/myaccount", auth=(DEMO_USER, DEMO_PASSWORD), timeout=10)
    settings = settings_for(tmp_path, sb)
    folder = settings.paths.inbox / DK
    folder.mkdir(parents=True)
    (folder / "leads.csv").write_bytes(leads_csv("QUOTA", 40))

    with open_client(settings, clock=clock) as client:
        ledger = open_ledger(settings.paths.state)
        try:
            processor = IngestProcessor(
                settings, client, ledger, stop=threading.Event(), clock=clock
            )
            intake = Intake(
                settings.paths.inbox,
                processor,
                campaigns=lambda: [c.code for c in client.campaigns()],
                settle_seconds=5.0,
                clock=clock,
                probe=client.limits,
                timezone=TZ,
                quota=client.limiter.quota,
            )
            intake.sweep()
            clock.advance(5.0)
            intake.sweep()
            assert intake.drain() == 1

            # the budget is spent: 24 of 30 requests (the other integration's 3 included)
            assert day_count(sb) == 24
            assert (folder / "leads.csv").exists()  # back in the inbox
            assert not list(folder.glob("failed/*"))
            assert not list(folder.glob("processed/*"))
            first = intake.recent[0]
            assert first.kind is FileOutcome.WAITING
            assert "budget is spent" in first.message
            sent_first = ours(sb)
            assert 0 < len(sent_first) < 40
            assert set(sent_first.values()) == {1}

            # taking pauses until the reset; the status says so, with the file's finish time
            intake.sweep()
            clock.advance(5.0)
            intake.sweep()
            assert intake.drain() == 0
            now = intake.status()
            assert now.waiting_for_api
            assert datetime.fromisoformat(now.resume_at) == RESET
            assert now.quota is not None
            assert (now.quota.limit, now.quota.budget, now.quota.used) == (30, 24, 24)
            assert now.quota.left == 0
            assert now.quota.spent
            assert datetime.fromisoformat(now.quota.resets_at) == RESET
            (waiting,) = now.campaigns[DK].waiting
            assert waiting.rows_estimate is not None
            assert waiting.rows_estimate > 0
            assert datetime.fromisoformat(waiting.eta) >= RESET
            assert day_count(sb) == 24  # a paused intake sends nothing, not even a probe

            # the status page, /metrics and the status file carry it
            status = ServiceStatus(intake=now)
            assert ServiceStatus.from_json(json.loads(json.dumps(status.to_json()))) == status
            page = render_html(status)
            assert "uploads paused until 2026-06-11 00:00" in page
            assert "24 of 24 requests used today (limit 30, 20% kept" in page
            assert "done by about 2026-06-11 00:0" in page
            metrics = Metrics()
            metrics.follow(intake.status)
            text = metrics.render().decode()
            assert "leadpipe_api_quota_used_today 24.0" in text
            assert "leadpipe_api_quota_left_today 0.0" in text

            # after each reset the intake goes on by itself, as far as the new day's budget
            # goes (its own requests for the file included): here two days are needed
            reset = RESET
            days = 0
            while intake.recent[0].kind is FileOutcome.WAITING:
                assert days < 3, "the file never finished"
                clock.set(reset + timedelta(seconds=1))
                days += 1
                intake.sweep()
                clock.advance(5.0)
                intake.sweep()
                assert intake.drain() == 1
                assert day_count(sb) <= 24
                assert not list(folder.glob("failed/*"))
                reset += timedelta(days=1)
            assert days == 2
            assert intake.recent[0].kind is FileOutcome.PROCESSED
            assert not intake.status().waiting_for_api
        finally:
            ledger.close()

    assert ours(sb) == {f"QUOTA {i:03d}": 1 for i in range(40)}
    assert not [r for r in sb.requests() if r["status"] == 429]
    (receipt_file,) = (folder / "processed").glob("*.receipt.json")
    receipt = json.loads(receipt_file.read_text("utf-8"))
    assert (receipt["outcome"], receipt["rows_read"], receipt["accepted"]) == ("processed", 40, 40)
    assert receipt["rejected"] == 0
    assert receipt["uncertain"] == 0
