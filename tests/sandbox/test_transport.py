"""Transport, auth, rights and rendering (docs/api-contract.md), over real HTTP."""

from __future__ import annotations

import base64
import threading

import pytest
import requests

from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox
from tests.sandbox.conftest import Api


def test_myaccount_has_the_documented_shape(api: Api) -> None:
    r = api.get("/myaccount")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {
        "username": "api@demo.example",
        "logRequestData": False,
        "projectRights": ["B2B*", "Consumer Denmark"],
        "resourceRights": {
            "Account": ["GET"],
            "Calls": ["GET"],
            "Campaigns": ["GET"],
            "Leads": ["GET", "POST"],
            "Organization": ["GET"],
        },
    }


def test_no_accept_header_means_json(sandbox: Sandbox) -> None:
    r = requests.get(
        sandbox.url + "/myaccount",
        auth=(DEMO_USER, DEMO_PASSWORD),
        headers={"Accept": ""},
        timeout=5,
    )
    assert r.json()["username"] == DEMO_USER


def test_limits_and_counts(api: Api) -> None:
    assert api.get("/myaccount/request/limits").json() == {"perMinute": 600, "perDay": 100000}
    api.get("/projects")
    assert api.get("/myaccount/request/counts").json() == {"minute": 3, "day": 3}


def test_missing_credentials_is_401_with_www_authenticate(sandbox: Sandbox) -> None:
    r = requests.get(sandbox.url + "/myaccount", timeout=5)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith('Basic realm="')
    assert r.json()["responseStatus"]["errorCode"] == "Unauthorized"


def test_wrong_password_and_malformed_header_are_401(sandbox: Sandbox) -> None:
    wrong = requests.get(sandbox.url + "/myaccount", auth=(DEMO_USER, "nope"), timeout=5)
    assert wrong.status_code == 401
    for header in (
        "Basic !!!notbase64",
        "Bearer abc",
        "Basic " + base64.b64encode(b"\xff").decode(),
    ):
        r = requests.get(sandbox.url + "/myaccount", headers={"Authorization": header}, timeout=5)
        assert r.status_code == 401, header
    assert "nope" not in wrong.text


def test_login_name_is_case_insensitive_password_is_not(sandbox: Sandbox) -> None:
    ok = requests.get(
        sandbox.url + "/myaccount", auth=(DEMO_USER.upper(), DEMO_PASSWORD), timeout=5
    )
    assert ok.status_code == 200
    bad = requests.get(
        sandbox.url + "/myaccount", auth=(DEMO_USER, DEMO_PASSWORD.upper()), timeout=5
    )
    assert bad.status_code == 401


def test_projects_and_campaigns_only_reachable_ones(api: Api) -> None:
    assert api.get("/projects").json() == [
        {"uniqueId": "PRJ1S3064", "name": "B2B Denmark"},
        {"uniqueId": "PRJ2S3064", "name": "B2B Sweden"},
        {"uniqueId": "PRJ3S3064", "name": "Consumer Denmark"},
    ]
    campaigns = api.get("/campaigns").json()
    assert [c["code"] for c in campaigns] == [
        "B2B-DK-SPRING",
        "B2B-SE-AUTUMN",
        "CONSUMER-DK-ENERGI",
    ]
    assert campaigns[0] == {
        "uniqueId": "CAMP10062S3064",
        "code": "B2B-DK-SPRING",
        "name": "B2B spring outreach",
        "project": "B2B Denmark",
        "active": True,
    }


def test_wildcard_project_right_and_exact_right(restricted: Api) -> None:
    # restricted: project_rights = ["B2B Denmark"] (exact, no wildcard)
    assert [c["code"] for c in restricted.get("/campaigns").json()] == ["B2B-DK-SPRING"]
    assert [p["name"] for p in restricted.get("/projects").json()] == ["B2B Denmark"]


def test_cut_down_login_gets_403_on_some_endpoints_only(restricted: Api) -> None:
    assert restricted.get("/myaccount").status_code == 200
    for path in (
        "/leads/searches",
        "/leads?searchName=api_import_export&from=2026-01-01",
        "/leads/csv?searchName=api_import_export&from=2026-01-01",
        "/simpleleads?Projects=*",
        "/leads/82549084S3064",
    ):
        r = restricted.get(path)
        assert r.status_code == 403, path
        assert "Leads: GET" in r.json()["responseStatus"]["message"]
    assert restricted.lead().status_code == 200


def test_campaign_outside_project_rights_is_403_unknown_is_404(api: Api, restricted: Api) -> None:
    assert api.get("/leads/example?campaignCode=INTERNAL-TEST").status_code == 403
    assert restricted.get("/leads/example?campaignCode=B2B-SE-AUTUMN").status_code == 403
    assert restricted.lead("B2B-SE-AUTUMN", company="X", phone="12345678").status_code == 403
    r = api.get("/leads/example?campaignCode=NOPE")
    assert r.status_code == 404
    assert r.json()["responseStatus"]["errorCode"] == "NotFound"


def test_unknown_route_404_and_wrong_method_405(api: Api, sandbox: Sandbox) -> None:
    assert api.get("/nothing/here").status_code == 404
    assert api.session.delete(api.url + "/leads", timeout=5).status_code == 405
    outside = requests.get(sandbox.root_url + "/other", timeout=5)
    assert outside.status_code == 404


def test_query_parameter_names_are_case_insensitive(api: Api) -> None:
    a = api.get("/leads/example?campaignCode=B2B-DK-SPRING&showAllDataEntries=true").json()
    b = api.get("/leads/example?CAMPAIGNCODE=B2B-DK-SPRING&ShowAllDataEntries=1").json()
    assert a == b
    assert len(a["data"]) == 5


def test_routes_are_case_insensitive(api: Api) -> None:
    assert api.get("/MyAccount").json()["username"] == DEMO_USER


def test_html_rendering_for_browsers(sandbox: Sandbox) -> None:
    r = requests.get(
        sandbox.url + "/myaccount",
        auth=(DEMO_USER, DEMO_PASSWORD),
        headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
        timeout=5,
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "<table>" in r.text
    assert "api@demo.example" in r.text
    assert "B2B*" in r.text


def test_html_escapes_everything(api: Api, sandbox: Sandbox) -> None:
    evil = "<script>alert('x')</script>"
    uid = api.lead(name=evil, phone="+45 12 34 56 78").json()["uniqueId"]
    r = api.session.get(api.url + f"/leads/{uid}", headers={"Accept": "text/html"}, timeout=5)
    assert "<script>" not in r.text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in r.text
    err = api.session.get(api.url + "/x<b>y", headers={"Accept": "text/html"}, timeout=5)
    assert err.status_code == 404
    assert "<b>" not in err.text
    assert "/x&lt;b&gt;y" in err.text


def test_error_in_html_keeps_status(sandbox: Sandbox) -> None:
    r = requests.get(sandbox.url + "/myaccount", headers={"Accept": "text/html"}, timeout=5)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("text/html")
    assert "Unauthorized" in r.text


def test_configurable_base_path() -> None:
    with Sandbox(base_path="/hero/api/") as sb:
        assert sb.url.endswith("/hero/api")
        r = requests.get(sb.url + "/myaccount", auth=(DEMO_USER, DEMO_PASSWORD), timeout=5)
        assert r.status_code == 200
        assert requests.get(sb.root_url + "/api/myaccount", timeout=5).status_code == 404


def test_index_page_points_to_the_api(sandbox: Sandbox) -> None:
    r = requests.get(sandbox.root_url + "/", headers={"Accept": "text/html"}, timeout=5)
    assert r.status_code == 200
    assert "/api/myaccount" in r.text


def test_stop_leaves_no_thread_and_frees_the_port() -> None:
    sb = Sandbox().start()
    port = sb.port
    requests.get(sb.url + "/myaccount", timeout=5).close()
    sb.stop()
    assert not sb.running
    assert not [t for t in threading.enumerate() if t.name == "leadpipe-sandbox"]
    with Sandbox(port=port) as again:  # the port is free again
        assert again.port == port
    sb.stop()  # idempotent


def test_port_in_use_is_a_clear_error(sandbox: Sandbox) -> None:
    from pipeline.errors import StateError

    other = Sandbox(port=sandbox.port)
    try:
        with pytest.raises(StateError, match=rf":{sandbox.port} .*--port"):
            other.start()
    finally:
        other.stop()


def test_fair_use_header_is_accepted(api: Api) -> None:
    r = api.get("/myaccount", headers={"X-Rate-Limit-Fair-Use-Policy": "Minute rated"})
    assert r.status_code == 200
    assert "X-Rate-Limit-Remaining" in r.headers


def test_html_list_page_is_a_table(api: Api) -> None:
    r = api.session.get(api.url + "/campaigns", headers={"Accept": "text/html"}, timeout=5)
    assert r.status_code == 200
    assert "<th>code</th>" in r.text
    assert "<td>B2B-DK-SPRING</td>" in r.text


def test_concurrent_posts_get_distinct_ids(sandbox: Sandbox) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def post(i: int) -> str:
        with requests.Session() as s:
            r = s.post(
                sandbox.url + "/leads",
                json={
                    "campaignCode": "B2B-DK-SPRING",
                    "data": {"name": f"n{i}", "phone": "12345678"},
                },
                auth=(DEMO_USER, DEMO_PASSWORD),
                timeout=10,
            )
            assert r.status_code == 200
            return str(r.json()["uniqueId"])

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(post, range(80)))
    assert len(set(ids)) == 80
    names = {lead["data"]["name"] for lead in sandbox.leads("B2B-DK-SPRING")}
    assert {f"n{i}" for i in range(80)} <= names


def test_root_base_path_keeps_the_controls() -> None:
    with Sandbox(base_path="/") as sb:
        assert sb.url == sb.root_url
        r = requests.get(sb.url + "/myaccount", auth=(DEMO_USER, DEMO_PASSWORD), timeout=5)
        assert r.status_code == 200
        assert (
            requests.get(sb.root_url + "/_sandbox/requests", timeout=5).json()[0]["path"]
            == "/myaccount"
        )
