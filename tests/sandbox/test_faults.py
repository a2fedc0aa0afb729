"""Fault injection, the request log and the HTTP test controls."""

from __future__ import annotations

import pytest
import requests

from pipeline.sandbox import Fault, Sandbox
from tests.sandbox.conftest import Api

LEAD = {
    "campaignCode": "B2B-DK-SPRING",
    "data": {"name": "Fault Row 7", "phone": "+45 12 34 56 78"},
}


def _stored(sb: Sandbox) -> int:
    return sum(1 for lead in sb.leads("B2B-DK-SPRING") if lead["data"]["name"] == "Fault Row 7")


def test_status_fault_with_retry_after_then_normal(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("status", route="POST /leads", status=503, retry_after=7))
    r = api.post("/leads", json=LEAD)
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "7"
    assert r.json()["responseStatus"]["errorCode"] == "ServiceUnavailable"
    assert _stored(sandbox) == 0
    assert api.post("/leads", json=LEAD).status_code == 200  # times=1: only once
    assert _stored(sandbox) == 1


def test_status_fault_defaults_to_503(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("status"))
    assert api.get("/myaccount").status_code == 503


def test_drop_before_resets_and_stores_nothing(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("drop_before", route="POST /leads"))
    with pytest.raises(requests.ConnectionError):
        api.post("/leads", json=LEAD)
    assert _stored(sandbox) == 0
    entry = sandbox.requests()[-1]
    assert entry["method"] == "POST"
    assert entry["path"] == "/leads"
    assert entry["status"] == 0
    assert entry["body"] == LEAD  # a test can tell which row was attempted
    assert api.post("/leads", json=LEAD).status_code == 200


def test_drop_after_stores_then_resets(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("drop_after", route="POST /leads"))
    with pytest.raises(requests.ConnectionError):
        api.post("/leads", json=LEAD)
    assert _stored(sandbox) == 1


def test_status_after_stores_then_answers_500(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("status_after", route="POST /leads"))
    r = api.post("/leads", json=LEAD)
    assert r.status_code == 500
    assert _stored(sandbox) == 1
    sandbox.add_fault(Fault("status_after", route="POST /leads", status=502))
    assert api.post("/leads", json=LEAD).status_code == 502
    assert _stored(sandbox) == 2


def test_html_error_page(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("html", route="POST /leads"))
    r = api.post("/leads", json=LEAD)
    assert r.status_code == 502
    assert r.headers["content-type"].startswith("text/html")
    assert r.text.lstrip().startswith("<html>")
    assert _stored(sandbox) == 0


def test_garbled_2xx_body_after_storing(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("garbled", route="POST /leads"))
    r = api.post("/leads", json=LEAD)
    assert r.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        r.json()
    assert _stored(sandbox) == 1


def test_delay_then_normal_answer_and_read_timeout(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("delay", route="GET /myaccount", delay=0.05))
    assert api.get("/myaccount").status_code == 200
    sandbox.add_fault(Fault("delay", route="POST /leads", delay=30))
    with pytest.raises(requests.ReadTimeout):
        api.session.post(api.url + "/leads", json=LEAD, timeout=0.3)
    # the sandbox fixture then stops promptly although a handler is still waiting


def test_after_and_times_count_matching_requests(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("status", route="GET /myaccount", after=2, times=2, status=500))
    codes = [api.get("/myaccount").status_code for _ in range(5)]
    assert codes == [200, 200, 500, 500, 200]


def test_times_zero_until_cleared_and_route_globs(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("status", route="GET /leads*", times=0, status=503))
    assert api.get("/leads/example?campaignCode=B2B-DK-SPRING").status_code == 503
    assert api.get("/leads/searches").status_code == 503
    assert api.get("/myaccount").status_code == 200  # other route
    assert api.post("/leads", json=LEAD).status_code == 200  # other method
    sandbox.clear_faults()
    assert api.get("/leads/searches").status_code == 200


def test_request_number_fault_with_star_route(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("status", after=1, status=429, retry_after=2))
    assert api.get("/projects").status_code == 200
    r = api.get("/campaigns")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "2"


def test_bad_faults_are_refused() -> None:
    for kwargs in (
        {"kind": "explode"},
        {"kind": "status", "route": "/leads"},
        {"kind": "status", "status": 42},
        {"kind": "delay", "delay": -1},
    ):
        with pytest.raises(ValueError, match=r"kind|route|status|delay"):
            Fault(**kwargs)  # type: ignore[arg-type]


def test_request_log(api: Api, sandbox: Sandbox) -> None:
    sandbox.clear_requests()
    api.get("/leads/example?campaignCode=B2B-DK-SPRING&ShowAllDataEntries=1")
    api.post("/leads", json=LEAD)
    requests.get(sandbox.url + "/myaccount", timeout=5)
    log = sandbox.requests()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("GET", "/leads/example", 200),
        ("POST", "/leads", 200),
        ("GET", "/myaccount", 401),
    ]
    assert log[0]["query"] == {"campaignCode": "B2B-DK-SPRING", "ShowAllDataEntries": "1"}
    assert log[1]["body"] == LEAD
    assert log[1]["user"] == "api@demo.example"
    assert log[2]["user"] is None
    assert log[0]["body"] is None
    assert log[1]["n"] == log[0]["n"] + 1
    assert all(isinstance(e["time"], str) for e in log)


def test_http_controls(api: Api, sandbox: Sandbox) -> None:
    root = sandbox.root_url + "/_sandbox"
    r = requests.post(
        root + "/faults", json={"kind": "drop_after", "route": "POST /leads"}, timeout=5
    )
    assert r.status_code == 200
    assert isinstance(r.json()["id"], int)
    assert requests.get(root + "/faults", timeout=5).json()[0]["kind"] == "drop_after"
    with pytest.raises(requests.ConnectionError):
        api.post("/leads", json=LEAD)
    assert _stored(sandbox) == 1
    requests.post(
        root + "/faults", json={"Kind": "status", "retry_after": 3, "times": 0}, timeout=5
    )
    assert api.get("/myaccount").status_code == 503
    assert requests.delete(root + "/faults", timeout=5).status_code == 200
    assert api.get("/myaccount").status_code == 200
    log = requests.get(root + "/requests", timeout=5).json()
    assert [e["path"] for e in log] == ["/leads", "/myaccount", "/myaccount"]
    assert requests.delete(root + "/requests", timeout=5).status_code == 200
    assert requests.get(root + "/requests", timeout=5).json() == []
    bad = requests.post(root + "/faults", json={"kind": "nope"}, timeout=5)
    assert bad.status_code == 400
    assert "kind" in bad.json()["responseStatus"]["message"]
    assert requests.post(root + "/faults", data=b"{oops", timeout=5).status_code == 400
    assert requests.get(root + "/nothing", timeout=5).status_code == 404
    closed = requests.post(
        root + "/simulate", json={"fraction": 0.5, "at": "2026-03-30T12:00:00"}, timeout=5
    ).json()["closed"]
    assert closed > 0
    stamps = [x["lastModifiedTime"] for x in sandbox.leads()]
    assert stamps.count("2026-03-30T12:00:00.0000000") == closed
    limits = requests.post(root + "/ratelimit", json={"perMinute": 5}, timeout=5).json()
    assert limits == {"perMinute": 5, "perDay": 100000}


def test_empty_error_body(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("empty", route="GET /campaigns"))
    r = api.get("/campaigns")
    assert r.status_code == 502
    assert r.content == b""
    sandbox.add_fault(Fault("empty", status=503, retry_after=5))
    r = api.get("/campaigns")
    assert (r.status_code, r.headers["Retry-After"], r.content) == (503, "5", b"")
