"""The status page as a person (headless Chromium) and a program (/metrics, /healthz) see it."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import Running, make_settings, service, wait_for

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "B2B-DK-SPRING-demo.xlsx"
CHROMIUM = Path("/usr/bin/chromium")
ODD = '<img src=x onerror=alert(1)> & "quotes".csv'
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback)
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), ""


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The service on the embedded sandbox after the demo file and an odd file were processed."""
    root = tmp_path_factory.mktemp("status")
    settings = make_settings(root, settle_seconds=0.2)
    with service(settings) as svc:
        shutil.copy(DEMO, root / "inbox" / "B2B-DK-SPRING" / DEMO.name)
        (root / "inbox" / "NOPE").mkdir()
        (root / "inbox" / "NOPE" / ODD).write_text("name,phone\n", encoding="utf-8")
        wait_for(lambda: len(svc.snapshot()["recent"]) >= 2, 30, "both files to finish")
        yield svc


def test_metrics_parse_and_count_files_rows_and_api_calls(running: Running) -> None:
    assert running.info.status_url is not None
    status, body, ctype = get(running.info.status_url + "metrics")
    assert status == 200
    assert ctype.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    files = {
        s.labels["outcome"]: s.value
        for s in families["leadpipe_files"].samples
        if s.name == "leadpipe_files_total"
    }
    assert files == {"processed_with_rejects": 1.0, "failed": 1.0}
    rows = {
        s.labels["outcome"]: s.value
        for s in families["leadpipe_rows"].samples
        if s.name == "leadpipe_rows_total"
    }
    assert rows == {"accepted": 6.0, "rejected": 4.0}
    calls = {
        s.labels["status"]: s.value
        for s in families["leadpipe_api_calls"].samples
        if s.name == "leadpipe_api_calls_total"
    }
    assert set(calls) == {"200"}  # every call answered OK ...
    assert calls["200"] >= 6  # ... among them the six leads created
    latency = families["leadpipe_api_call_seconds"].samples
    count = next(s.value for s in latency if s.name == "leadpipe_api_call_seconds_count")
    assert count == calls["200"]
    for name in (
        "leadpipe_api_call_seconds",
        "leadpipe_file_seconds",
        "leadpipe_queue_depth",
        "leadpipe_pickup_delay_seconds",
        "leadpipe_waiting_for_api",
    ):
        assert name in families, name


def test_healthz_and_status_json(running: Running) -> None:
    url = running.info.status_url
    assert url is not None
    status, body, _ = get(url + "healthz")
    assert status == 200
    assert json.loads(body) == {
        "ok": True,
        "problems": [],
        "inbox_ok": True,
        "waiting_for_api": False,
    }
    status, body, _ = get(url + "status.json")
    data = json.loads(body)
    assert {r["name"] for r in data["recent"]} == {DEMO.name, ODD}
    assert data["api"]["embedded"] is True


def test_only_result_files_inside_the_inbox_are_served(running: Running) -> None:
    url = running.info.status_url
    assert url is not None
    for bad in (
        "files/../state/ledger.sqlite",
        "files/%2e%2e/state/status.json",
        "files/B2B-DK-SPRING/processed/x.csv",
        "files//etc/passwd",
    ):
        assert get(url + bad)[0] == 404, bad
    rejects = next(r for r in running.snapshot()["recent"] if r["name"] == DEMO.name)["rejects"]
    rel = Path(rejects[0]).relative_to(running.settings.paths.inbox).as_posix()
    status, body, ctype = get(url + "files/" + urllib.parse.quote(rel))
    assert status == 200
    assert body[:2] == b"PK"
    assert "spreadsheetml" in ctype


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)
def test_what_a_person_sees_in_a_browser(running: Running, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url = running.info.status_url
    assert url is not None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            assert page.title() == "leadpipe status"
            assert page.inner_text("#api-state").startswith("API: connected")
            assert "built-in demo sandbox" in page.inner_text("#embedded")
            counts = " ".join(page.inner_text("#counts").split())
            assert counts == (
                "0 waiting · 0 arriving · 0 in progress · 1 processed · 1 failed (since start)"
            )
            campaigns = page.inner_text("#campaigns")
            assert "B2B-DK-SPRING" in campaigns
            assert "NOPE (not a campaign we can reach)" in campaigns
            rows = page.locator("#recent tr")
            texts = [" ".join(rows.nth(i).inner_text().split()) for i in range(rows.count())]
            demo_row = next(t for t in texts if DEMO.name in t)
            assert "processed" in demo_row
            assert "10 read, 6 accepted, 4 rejected" in demo_row
            assert "receipt · rows to fix" in demo_row
            odd_row = next(t for t in texts if "quotes" in t)
            assert ODD in odd_row  # shown literally: the name is text, not markup
            assert "failed" in odd_row
            assert page.locator("#recent img").count() == 0
            page.screenshot(path=str(tmp_path / "status.png"), full_page=True)
            page.get_by_role("link", name="why it failed").click()
            assert "is not a campaign this account can reach" in page.inner_text("body")
            page.go_back()
            page.get_by_role("link", name="receipt").click()
            assert page.inner_text("body").startswith(f"leadpipe receipt for {DEMO.name}")
        finally:
            browser.close()
