"""The status page in words people read: no exception names, red at the first failed call,
outcomes coloured, times in the tenant's zone with its offset."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from pipeline.clock import shown_time
from pipeline.config import load_settings
from pipeline.dropfolder.breaker import Breaker
from pipeline.dropfolder.status import IntakeStatus, RecentFile
from pipeline.errors import plain_words
from pipeline.outcome import FileOutcome
from pipeline.sandbox import Sandbox
from pipeline.service.snapshot import ServiceStatus
from pipeline.service.status import CONTENT_SECURITY_POLICY, render_html
from tests.dropfolder.test_real_ingest import CODE, env_for, leads_csv, write_config
from tests.service.conftest import service, wait_for

LOW_LEVEL = re.compile(r"Errno|[A-Za-z]+(Error|Exception)\b")


def test_one_failed_call_turns_the_page_red_in_words(sandbox: Sandbox, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sandbox.url)
    settings = load_settings(cfg, env=env_for(cfg))
    with service(settings) as running:
        assert running.info.status is not None
        status = running.info.status
        wait_for(lambda: 'id="api-state">API: connected' in render_html(status()), what="ok")
        sandbox.stop()  # the API dies; a file arrives: its first call is refused
        inbox = tmp_path / "inbox" / CODE
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / "after.csv").write_bytes(leads_csv("DOWN", valid=2, invalid=0)[0])
        wait_for(lambda: status().api.problem, timeout=10, what="the API marked not answering")
        html = render_html(status())
        line = re.search(r'<p class="bad" id="api-state">[^<]*</p>', html)
        assert line is not None, html
        assert "not answering (connection refused)" in line.group(0)
        assert not LOW_LEVEL.search(line.group(0))
        assert "(UTC+0" in line.group(0)  # since when, in the tenant's zone
        assert (
            status().to_json()["api"]["problem"] == "the API is not answering (connection refused)"
        )


def test_breaker_reasons_are_kept_in_words() -> None:
    from pipeline.clock import FakeClock

    breaker = Breaker(FakeClock())
    breaker.trip(
        "could not connect to the API (ConnectionRefusedError: [Errno 111] Connection refused) "
        "[GET http://127.0.0.1:9/api/myaccount/request/limits]"
    )
    assert breaker.reason == "could not connect to the API (connection refused)"
    assert plain_words("the API refused the request [POST http://h/api/leads -> 503]") == (
        "the API refused the request (the API answered 503)"
    )


def test_outcomes_are_coloured_and_times_carry_the_offset() -> None:
    at = "2026-07-01T14:05:00+02:00"
    recent = (
        RecentFile(
            campaign="C", name="bad.csv", outcome=FileOutcome.FAILED, at=at,
            message="cannot read it (BadZipFile: File is not a zip file)",
        ),
        RecentFile(
            campaign="C", name="some.csv", outcome=FileOutcome.PROCESSED, at=at,
            rejects=("/in/C/rejected/x.rejects.xlsx",),
        ),
    )  # fmt: skip
    status = ServiceStatus(
        intake=IntakeStatus(inbox="/in", recent=recent), at="2026-07-01T12:05:00+00:00"
    )
    html = render_html(status)
    assert '<td class="failed">failed' in html
    assert '<a class="fix" href="/files/C/rejected/x.rejects.xlsx">rows to fix</a>' in html
    assert "<td>2026-07-01 14:05 (UTC+02:00)</td>" in html
    assert "As of 2026-07-01 12:05 (UTC+00:00)" in html
    assert "BadZipFile" not in html
    style = re.search(r"<style>(.*?)</style>", html)
    assert style is not None
    assert ".failed{" in style.group(1)
    assert "a.fix{" in style.group(1)
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in CONTENT_SECURITY_POLICY  # the one hashed style sheet
    assert shown_time("2026-07-01T12:05:00+00:00", "Europe/Copenhagen") == (
        "2026-07-01 14:05 (UTC+02:00)"
    )
