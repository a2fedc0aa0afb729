"""HeroBaseClient against the sandbox over real HTTP, with injected faults."""

from __future__ import annotations

import csv
import io
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.clock import FakeClock
from pipeline.errors import (
    Invalid,
    NotFound,
    NotPermitted,
    RateLimited,
    Unavailable,
    Uncertain,
    exit_code,
)
from pipeline.sandbox import RESTRICTED_PASSWORD, RESTRICTED_USER, Fault, Sandbox
from tests.api.conftest import MakeClient
from tests.api.test_ratelimit import max_in_any_window

CODE = "B2B-DK-SPRING"
GOOD = {"name": "Hansen & Co ApS", "phone": "+45 12 34 56 78"}


def calls(sb: Sandbox, method: str, path: str) -> list[dict[str, Any]]:
    return [r for r in sb.requests() if r["method"] == method and r["path"] == path]


def test_request_succeeds_and_records_are_typed(sb: Sandbox, make_client: MakeClient) -> None:
    client = make_client()
    created = client.create_lead(CODE, GOOD)
    lead = client.lead(created.unique_id)
    assert (lead.campaign_code, lead.status, lead.closure) == (CODE, "New", "NotSet")
    assert lead.data == GOOD
    assert lead.upload_time == lead.last_modified_time
    assert len(lead.upload_time) == len("2026-03-30T09:04:24.0000000")


# -- each error class from its fault ----------------------------------------------------------


def test_wrong_password_is_not_permitted(make_client: MakeClient) -> None:
    client = make_client(password="wrong")
    with pytest.raises(NotPermitted) as info:
        client.campaigns()
    assert info.value.status == 401
    assert "LEADPIPE_API_PASSWORD" in str(info.value)
    assert exit_code(info.value) == 3  # a setting to fix, not "try again later"


def test_403_names_the_missing_right(make_client: MakeClient) -> None:
    client = make_client(user=RESTRICTED_USER, password=RESTRICTED_PASSWORD)
    with pytest.raises(NotPermitted) as info:
        client.searches()
    assert info.value.missing_right == "Leads: GET"
    assert str(info.value).startswith("the account lacks Leads: GET")
    with pytest.raises(NotPermitted, match="a project right reaching campaign INTERNAL-TEST"):
        client.import_example("INTERNAL-TEST")


def test_unknown_campaign_is_not_found(make_client: MakeClient) -> None:
    with pytest.raises(NotFound) as info:
        make_client().import_example("NO-SUCH-CAMPAIGN")
    assert info.value.status == 404
    assert info.value.response_status is not None


def test_invalid_lead_names_each_field(sb: Sandbox, make_client: MakeClient) -> None:
    before = len(sb.leads(CODE))
    with pytest.raises(Invalid) as info:
        make_client().create_lead(CODE, {"name": "", "phone": "12ab", "shoe": "42"})
    fields = {(e.field_name, e.error_code) for e in info.value.field_errors}
    assert fields == {
        ("name", "NotEmpty"),
        ("phone", "RegularExpression"),
        ("shoe", "UnknownField"),
    }
    assert len(sb.leads(CODE)) == before
    assert len(calls(sb, "POST", "/leads")) == 1


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        (Fault("status", status=503), Unavailable),
        (Fault("status", status=429, retry_after=3), RateLimited),
        (Fault("status", status=500), Uncertain),
        (Fault("status", status=502), Uncertain),
        (Fault("html"), Uncertain),
        (Fault("garbled"), Uncertain),
        (Fault("drop_before"), Uncertain),
        (Fault("delay", delay=1.0), Uncertain),
    ],
    ids=["503", "429", "500", "502", "html", "garbled", "drop", "slow"],
)
def test_get_fault_maps_to_its_error_class(
    sb: Sandbox, make_client: MakeClient, fault: Fault, cls: type[Exception]
) -> None:
    client = make_client(max_retries=0, read_timeout=0.3)
    client.limits()  # the limiter's start-up probe, before the fault is armed
    sb.add_fault(replace(fault, route="GET /campaigns"))
    with pytest.raises(cls) as info:
        client.campaigns()
    err = info.value
    assert type(err) is cls
    assert err.method == "GET"  # type: ignore[attr-defined]
    assert err.url == sb.url + "/campaigns"  # type: ignore[attr-defined]
    if fault.kind == "html":
        assert err.excerpt.startswith("HTML page: ")  # type: ignore[attr-defined]
        assert err.response_status is None  # type: ignore[attr-defined]
    if isinstance(err, RateLimited):
        assert err.retry_after == 3.0


def test_connection_refused_is_unavailable(make_client: MakeClient) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    client = make_client(url=f"http://127.0.0.1:{port}/api", max_retries=0)
    with pytest.raises(Unavailable) as info:
        client.create_lead(CODE, GOOD)
    assert type(info.value) is Unavailable
    assert "could not connect" in str(info.value)


# -- retries ----------------------------------------------------------------------------------


def test_get_retried_after_503_and_429_honouring_retry_after(
    sb: Sandbox, make_client: MakeClient, clock: FakeClock
) -> None:
    client = make_client()
    client.limits()
    sb.add_fault(Fault("status", route="GET /campaigns", status=503, retry_after=5, times=1))
    sb.add_fault(
        Fault("status", route="GET /campaigns", status=429, retry_after=2, after=1, times=1)
    )
    assert CODE in {c.code for c in client.campaigns()}
    assert [r["status"] for r in calls(sb, "GET", "/campaigns")] == [503, 429, 200]
    assert clock.sleeps == [5.0, 2.0]


def test_post_is_retried_only_when_certainly_not_processed(
    sb: Sandbox, make_client: MakeClient, clock: FakeClock
) -> None:
    client = make_client()
    before = len(sb.leads(CODE))
    sb.add_fault(Fault("status", route="POST /leads", status=503, retry_after=4, times=1))
    sb.add_fault(Fault("status", route="POST /leads", status=429, retry_after=1, after=1))
    created = client.create_lead(CODE, GOOD)
    assert [r["status"] for r in calls(sb, "POST", "/leads")] == [503, 429, 200]
    assert clock.sleeps == [4.0, 1.0]
    stored = sb.leads(CODE)
    assert len(stored) == before + 1
    assert stored[-1]["uniqueId"] == created.unique_id


@pytest.mark.parametrize(
    "fault",
    [
        Fault("drop_after"),
        Fault("status_after", status=500),
        Fault("html", status=502),
        Fault("delay", delay=1.0),
        Fault("drop_before"),
    ],
    ids=["reset-after-send", "500-after-store", "html-502", "read-timeout", "reset"],
)
def test_post_is_never_retried_after_an_uncertain_fault(
    sb: Sandbox, make_client: MakeClient, clock: FakeClock, fault: Fault
) -> None:
    client = make_client(read_timeout=0.3)
    client.limits()
    sb.add_fault(replace(fault, route="POST /leads"))
    before = len(sb.leads(CODE))
    with pytest.raises(Uncertain):
        client.create_lead(CODE, GOOD)
    assert len(calls(sb, "POST", "/leads")) == 1
    assert clock.sleeps == []
    if fault.kind in {"drop_after", "status_after"}:
        assert len(sb.leads(CODE)) == before + 1  # it was stored: a resend would duplicate it


def test_a_garbled_2xx_answer_is_a_lead_created_without_its_id(
    sb: Sandbox, make_client: MakeClient
) -> None:
    client = make_client()
    sb.add_fault(Fault("garbled", route="POST /leads"))
    before = len(sb.leads(CODE))
    created = client.create_lead(CODE, GOOD)
    assert created.unique_id is None  # a success: never sent again, the id is looked up later
    assert len(sb.leads(CODE)) == before + 1
    assert len(calls(sb, "POST", "/leads")) == 1


# -- the limiter under concurrency ------------------------------------------------------------


def test_eight_threads_over_1000_calls_never_exceed_the_ceiling(
    sb: Sandbox, make_client: MakeClient, clock: FakeClock
) -> None:
    ceiling = 120
    client = make_client(requests_per_minute=ceiling, pool_size=8)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(125):
                client.counts()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(calls(sb, "GET", "/myaccount/request/counts")) == 1000
    history = client.limiter.history
    assert history is not None
    assert len(history) == 1001  # the 1000 calls and the limits probe
    assert max_in_any_window(history) <= ceiling
    assert history[-1] - history[0] >= (1001 // ceiling) * 60.0
    assert clock.sleeps  # waiting happened on the injected clock


# -- paging -----------------------------------------------------------------------------------


class _StuckPager(BaseHTTPRequestHandler):
    """A server that ignores ``skip``: every page is the first one."""

    page: bytes = b"[]"

    def do_GET(self) -> None:
        body = self.page if self.path.startswith("/api/leads?") else b'{"perMinute": 600}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stuck_server(sb: Sandbox) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    import json

    objects = sb.leads()[:3]
    handler = type("H", (_StuckPager,), {"page": json.dumps(objects).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api", objects
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_repeated_page_stops_paging(
    stuck_server: tuple[str, list[dict[str, Any]]],
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, objects = stuck_server
    client = make_client(url=url)
    got = [
        lead.unique_id for lead in client.iter_leads("daily_outcomes", "2026-01-01", page_size=3)
    ]
    assert got == [o["uniqueId"] for o in objects]
    assert "repeats the previous page" in caplog.text


def test_paging_walks_every_lead_once(sb: Sandbox, make_client: MakeClient) -> None:
    client = make_client()
    everything = {x["uniqueId"] for x in sb.leads()}
    got = [x.unique_id for x in client.iter_simpleleads(modified_from="2000-01-01", page_size=7)]
    assert len(got) == len(set(got))
    assert set(got) == everything
    pages = calls(sb, "GET", "/simpleleads")
    assert len(pages) == len(everything) // 7 + 1


# -- CSV export -------------------------------------------------------------------------------


def test_windows_1252_da_dk_csv_export_decodes_exactly(
    sb: Sandbox, make_client: MakeClient, tmp_path: Path
) -> None:
    when = datetime(2026, 3, 2, 14, 5, 9)
    names = ["Ærø Værft ApS", "Søren Østergård", "Åbenrå Café"]
    for name in names:
        sb.insert_lead(
            CODE,
            {"name": name, "phone": "+45 12 34 56 78", "note": "Bemærk; semikolon"},
            status="UserProcessed",
            closure="Success",
            upload_time=when,
            last_modified_time=when,
        )
    dest = tmp_path / "out" / "export.csv"
    size = make_client().download_leads_csv(
        "api_import_export",
        "2026-03-02",
        "2026-03-03",
        dest,
        encoding="windows-1252",
        culture="da-DK",
    )
    raw = dest.read_bytes()
    assert size == len(raw)
    text = raw.decode("cp1252")  # strict: every byte is windows-1252
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    head = rows[0]
    assert head[:6] == [
        "uniqueId",
        "campaignCode",
        "status",
        "closure",
        "uploadTime",
        "lastModifiedTime",
    ]
    by_name = {r[head.index("name")]: r for r in rows[1:]}
    assert sorted(by_name) == sorted(names)
    row = by_name["Søren Østergård"]
    assert row[head.index("note")] == "Bemærk; semikolon"
    assert row[head.index("uploadTime")] == "02-03-2026 14:05:09"
    assert list((tmp_path / "out").glob("*.part")) == []


def test_failed_csv_export_leaves_no_file(
    sb: Sandbox, make_client: MakeClient, tmp_path: Path
) -> None:
    sb.add_fault(Fault("status", route="GET /leads/csv", status=500, times=0))
    dest = tmp_path / "export.csv"
    with pytest.raises(Uncertain):
        make_client(max_retries=1).download_leads_csv("daily_outcomes", "2026-01-01", None, dest)
    assert not dest.exists()


def test_limiter_follows_the_account_limits_headers_and_429_on_a_shared_clock() -> None:
    import random

    from pipeline.api import HeroBaseClient, RateLimiter, RetryPolicy
    from pipeline.config import ApiSettings
    from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER

    clock = FakeClock()  # the sandbox's minute windows run on the same fake time
    with Sandbox(clock=clock) as sandbox:
        sandbox.set_rate_limit(per_minute=5)
        settings = ApiSettings(url=sandbox.url, user=DEMO_USER, password=DEMO_PASSWORD)
        client = HeroBaseClient(
            settings,
            clock=clock,
            limiter=RateLimiter(600, clock),
            retry=RetryPolicy.from_settings(settings, random.Random(5)),
        )
        for _ in range(12):
            client.campaigns()
        assert client.limiter.limit == 5  # started from /myaccount/request/limits
        first = sandbox.requests()
        assert [r["status"] for r in first] == [200] * 13  # never over the server's limit
        per_minute: dict[str, int] = {}
        for r in first:
            per_minute[r["time"][:16]] = per_minute.get(r["time"][:16], 0) + 1
        assert max(per_minute.values()) == 5

        sandbox.set_rate_limit(per_minute=3)  # another integration took part of the quota
        for _ in range(7):
            client.campaigns()
        later = [r["status"] for r in sandbox.requests()[13:]]
        assert later.count(429) == 1  # one refusal, then the limiter slows everyone down
        assert later.count(200) == 7
        assert client.limiter.limit == 3  # recovered, up to the server's new limit
        client.close()
