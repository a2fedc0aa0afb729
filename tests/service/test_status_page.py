"""The status page as a person (headless Chromium) and a program (/metrics, /healthz) see it."""

from __future__ import annotations

import json
import re
import shutil
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import load_settings
from pipeline.sandbox import Fault, Sandbox
from pipeline.service.status import _STYLE
from tests.dropfolder.test_real_ingest import CODE, env_for, leads_csv, write_config
from tests.service.conftest import Running, make_settings, service, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Page

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
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)
#: What people must never read on the page: an exception's class name or an errno.
LOW_LEVEL = re.compile(r"Errno|[A-Za-z]+(Error|Exception)\b")


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


@needs_chromium
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


@contextmanager
def chromium_page() -> Iterator[Page]:
    """A page in Debian's headless chromium (driven by playwright); closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def screenshot(page: Page, path: Path) -> None:
    """A full-page PNG at ``path``: it must exist, be a PNG of a real size, and not be tiny."""
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400, (width, height)
    assert height >= 300, (width, height)
    assert len(data) > 10_000, f"{path} is only {len(data)} bytes"


def words(page: Page, selector: str) -> str:
    """The rendered text of ``selector``, white space folded."""
    return " ".join(page.inner_text(selector).split())


def css_colour(rule: str) -> str:
    """The computed form (``rgb(r, g, b)``) of the colour ``_STYLE`` gives ``rule``."""
    found = re.search(re.escape(rule) + r"\{color:#([0-9a-f]{6})", _STYLE)
    assert found is not None, rule
    r, g, b = bytes.fromhex(found.group(1))
    return f"rgb({r}, {g}, {b})"


def _snapshot(svc: Running) -> dict[str, Any]:
    """``/status.json`` as a program polls it."""
    assert svc.info.status_url is not None
    status, body, _ = get(svc.info.status_url + "status.json")
    assert status == 200
    data: dict[str, Any] = json.loads(body)
    return data


def _campaign(svc: Running) -> dict[str, Any]:
    camp: dict[str, Any] = _snapshot(svc)["campaigns"].get(CODE) or {}
    return camp


@pytest.mark.slow
@needs_chromium
def test_a_big_file_in_progress_in_a_browser(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    sandbox.add_fault(Fault("delay", route="POST /leads", delay=0.05, times=0))
    cfg = write_config(tmp_path, sandbox.url, concurrency=2)
    settings = load_settings(cfg, env=env_for(cfg))
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    big, _ = leads_csv("BIG", valid=400, invalid=2)
    later, _ = leads_csv("NEXT", valid=5, invalid=0)
    with service(settings) as svc:
        url = svc.info.status_url
        assert url is not None
        (inbox / "big.csv").write_bytes(big)

        def sending() -> bool:
            p = _campaign(svc).get("progress")
            return isinstance(p, dict) and p["rows_sent"] >= 20 and bool(p["rate"])

        wait_for(sending, 30, "big.csv's progress with a rate")
        (inbox / "later.csv").write_bytes(later)
        wait_for(
            lambda: any(
                w["name"] == "later.csv" and w.get("starts") and w.get("eta")
                for w in _campaign(svc).get("waiting", [])
            ),
            20,
            "later.csv's likely start and finish",
        )
        with chromium_page() as page:
            page.goto(url)
            assert page.title() == "leadpipe status"
            row = page.locator("#campaigns tr", has_text=CODE)
            assert row.count() == 1
            cells = row.locator("td")
            busy = " ".join(cells.nth(2).inner_text().split())
            assert busy.startswith("big.csv"), busy
            progress = row.locator(".progress")
            assert progress.is_visible()
            text = " ".join(progress.inner_text().split())
            sent = re.search(r"([\d,]+) of ~?402 rows sent \((\d+)%\)", text)
            assert sent is not None, text
            assert 0 < int(sent.group(1).replace(",", "")) < 402, text
            assert re.search(r"\d+(\.\d)? rows/s", text), text
            assert re.search(r"done by about \d{4}-\d\d-\d\d \d\d:\d\d", text), text
            waiting = " ".join(cells.nth(3).inner_text().split())
            # the estimate is by size (~rows, not 5); times in the tenant's zone with its offset
            when = r"(\d{4}-\d\d-\d\d \d\d:\d\d) \(UTC[+-]\d\d:\d\d\)"
            likely = re.search(
                rf"later\.csv \(~\d+ rows, starts about {when}, done by about {when}\)", waiting
            )
            assert likely is not None, waiting
            assert likely.group(1) <= likely.group(2), waiting
            assert words(page, "#counts").startswith("1 waiting · 0 arriving · 1 in progress")
            assert page.inner_text("#api-state").startswith("API: connected")
            screenshot(page, tmp_path / "in-progress.png")
        sandbox.clear_faults()  # let it finish quickly: the service then stops at once
        wait_for(lambda: _snapshot(svc)["totals"].get("processed") == 2, 30, "both files")


@pytest.mark.slow
@needs_chromium
def test_the_api_down_in_a_browser(sandbox: Sandbox, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sandbox.url)
    settings = load_settings(cfg, env=env_for(cfg))
    # one retry, not five with a random back-off: the file gives up and waits within a second
    settings = replace(settings, api=replace(settings.api, max_retries=1))
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    with service(settings) as svc:
        url = svc.info.status_url
        assert url is not None
        wait_for(lambda: _snapshot(svc)["api"]["problem"] == "", 10, "the API answering")
        sandbox.stop()  # the API dies; a file arrives and has to wait
        (inbox / "waits.csv").write_bytes(leads_csv("DOWN", valid=3, invalid=0)[0])
        wait_for(
            lambda: (
                _snapshot(svc)["waiting_for_api"]
                and any(w["name"] == "waits.csv" for w in _campaign(svc).get("waiting", []))
            ),
            25,
            "waits.csv waiting for the API",
        )
        with chromium_page() as page:
            page.goto(url)
            state = page.locator("#api-state")
            assert state.is_visible()
            assert state.get_attribute("class") == "bad"
            text = words(page, "#api-state")
            assert text.startswith("API: "), text
            assert "not answering" in text, text
            assert "Files wait in the inbox" in text, text
            for shown in (page.inner_text("body"), page.content()):  # the words and the DOM
                assert not LOW_LEVEL.search(shown), LOW_LEVEL.findall(shown)
            assert state.evaluate("e => getComputedStyle(e).color") == css_colour(".bad")
            assert css_colour(".bad") != css_colour(".ok")
            row = page.locator("#campaigns tr", has_text=CODE)
            assert "waits.csv" in row.locator("td").nth(3).inner_text()
            screenshot(page, tmp_path / "api-down.png")
