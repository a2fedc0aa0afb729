"""HeroBaseClient over a transport fake: requests as the contract says, errors, retries."""

from __future__ import annotations

import base64
import logging

import pytest
import requests

from pipeline import __version__
from pipeline.errors import Invalid, NotFound, NotPermitted, RateLimited, Unavailable, Uncertain
from tests.api.fakes import FakeAdapter, Reply, connect_error, make_client, query_of, reset_error

ACCOUNT = {
    "username": "api@x.example",
    "projectRights": ["B2B*"],
    "resourceRights": {"Account": ["GET"], "Campaigns": ["GET"], "Leads": ["POST"]},
}


def test_every_request_carries_the_contract_headers_and_options() -> None:
    fake = FakeAdapter()
    fake.on(
        "GET /campaigns",
        Reply(
            200,
            [
                {
                    "uniqueId": "CAMP1S1",
                    "code": "C1",
                    "name": "One",
                    "project": "B2B Denmark",
                    "active": True,
                }
            ],
        ),
    )
    client, _ = make_client(fake, connect_timeout=3.0, read_timeout=7.0, ca_bundle="/etc/ca.pem")
    campaigns = client.campaigns()
    assert [c.code for c in campaigns] == ["C1"]
    assert campaigns[0].project == "B2B Denmark"
    req = fake.calls("GET /campaigns")[0]
    assert req.headers["Accept"] == "application/json"
    assert req.headers["X-Rate-Limit-Fair-Use-Policy"] == "Minute rated"
    assert req.headers["User-Agent"] == f"leadpipe/{__version__}"
    token = base64.b64encode(b"api@x.example:s3cret-pw").decode()
    assert req.headers["Authorization"] == f"Basic {token}"
    opts = fake.options[fake.sent.index(req)]
    assert opts["timeout"] == (3.0, 7.0)
    assert opts["verify"] == "/etc/ca.pem"


def test_endpoint_map_and_unique_id_substitution() -> None:
    fake = FakeAdapter()
    fake.on(
        "GET /v2/lead/82549084S3064",
        Reply(200, {"uniqueId": "82549084S3064", "status": "New", "data": {"name": "A"}}),
    )
    from pipeline.config import DEFAULT_ENDPOINTS

    endpoints = dict(DEFAULT_ENDPOINTS, lead="/v2/lead/{uniqueId}")
    client, _ = make_client(fake, endpoints=endpoints)
    lead = client.lead("82549084S3064")
    assert lead.unique_id == "82549084S3064"
    assert lead.data == {"name": "A"}


def test_post_sends_json_and_returns_the_unique_id() -> None:
    fake = FakeAdapter()
    fake.on("POST /leads", Reply(200, {"uniqueId": "1S2", "status": "New"}))
    client, _ = make_client(fake)
    created = client.create_lead("C1", {"name": "Ærø", "phone": "+4512345678"})
    assert created.unique_id == "1S2"
    req = fake.calls("POST /leads")[0]
    assert req.headers["Content-Type"].startswith("application/json")
    import json

    assert json.loads(req.body or b"") == {
        "campaignCode": "C1",
        "data": {"name": "Ærø", "phone": "+4512345678"},
    }


def test_400_parses_field_errors() -> None:
    fake = FakeAdapter()
    body = {
        "responseStatus": {
            "errorCode": "ValidationException",
            "message": "Lead data is invalid",
            "errors": [
                {
                    "errorCode": "RegularExpression",
                    "fieldName": "phone",
                    "message": "'12ab' does not match the field's pattern",
                }
            ],
        }
    }
    fake.on("POST /leads", Reply(400, body))
    client, _ = make_client(fake)
    with pytest.raises(Invalid) as info:
        client.create_lead("C1", {"phone": "12ab"})
    err = info.value
    assert [(e.field_name, e.error_code) for e in err.field_errors] == [
        ("phone", "RegularExpression")
    ]
    assert err.status == 400
    assert err.method == "POST"
    assert err.url == "https://tenant.example/api/leads"
    assert "(phone: RegularExpression)" in str(err)
    assert "12ab" not in str(err)  # lead data stays out of messages (and so out of logs)
    assert err.field_errors[0].message == "'12ab' does not match the field's pattern"


def test_403_names_the_missing_right_from_the_account() -> None:
    fake = FakeAdapter()
    fake.on("GET /myaccount", Reply(200, ACCOUNT))
    fake.on("GET /leads/searches", Reply(403, {"responseStatus": {"message": "Forbidden"}}))
    client, _ = make_client(fake)
    with pytest.raises(NotPermitted) as info:
        client.searches()
    assert info.value.missing_right == "Leads: GET"
    assert "the account lacks Leads: GET" in str(info.value)


def test_403_with_the_right_present_names_the_project() -> None:
    fake = FakeAdapter()
    fake.on("GET /myaccount", Reply(200, ACCOUNT))
    fake.on("GET /leads/example", Reply(403, {}))
    client, _ = make_client(fake)
    client.account()
    with pytest.raises(NotPermitted, match="a project right reaching campaign INTERNAL"):
        client.import_example("INTERNAL")


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, NotPermitted),
        (404, NotFound),
        (503, Unavailable),
        (500, Uncertain),
        (502, Uncertain),
        (429, RateLimited),
    ],
)
def test_status_maps_to_error_class(status: int, cls: type[Exception]) -> None:
    fake = FakeAdapter()
    fake.on("POST /leads", Reply(status, {"responseStatus": {"message": "nope"}}))
    client, _ = make_client(fake, max_retries=0)
    with pytest.raises(cls) as info:
        client.create_lead("C1", {"name": "x"})
    assert type(info.value) is cls
    assert info.value.status == status  # type: ignore[attr-defined]


def test_html_error_page_is_reported_by_title_never_parsed() -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>" + "x" * 9000 + "</body></html>"
    fake = FakeAdapter()
    fake.on("POST /leads", Reply(502, page, {"Content-Type": "text/html"}))
    client, _ = make_client(fake)
    with pytest.raises(Uncertain) as info:
        client.create_lead("C1", {"name": "x"})
    assert info.value.excerpt == "HTML page: 502 Bad Gateway"
    assert info.value.response_status is None
    assert "502" in str(info.value)


def test_excerpt_is_at_most_2_kb() -> None:
    fake = FakeAdapter()
    fake.on("GET /campaigns", Reply(404, "n" * 10_000, {"Content-Type": "text/plain"}))
    client, _ = make_client(fake)
    with pytest.raises(NotFound) as info:
        client.campaigns()
    assert len(info.value.excerpt) == 2048


@pytest.mark.parametrize(
    ("status", "body", "ctype", "uid"),
    [
        (200, "{not json", "application/json", None),  # unreadable: still a success
        (201, "", "", None),  # empty 201
        (204, "", "", None),  # no content
        (200, '{"result": {"UniqueID": "77S1"}}', "application/json", "77S1"),  # wrapped
        (201, '{"Id": 4711}', "application/json", "4711"),  # another key, a number
        (200, '{"UNIQUEID": "5S1", "data": {}}', "application/json", "5S1"),  # any key case
    ],
    ids=["unreadable", "empty-201", "204", "wrapped", "id-key", "key-case"],
)
def test_a_2xx_answer_is_a_created_lead_whatever_its_body(
    status: int, body: str, ctype: str, uid: str | None
) -> None:
    fake = FakeAdapter()
    fake.on("POST /leads", Reply(status, body, {"Content-Type": ctype} if ctype else {}))
    client, clock = make_client(fake)
    created = client.create_lead("C1", {"name": "x"})
    assert created.unique_id == uid
    assert len(fake.calls("POST /leads")) == 1
    assert clock.sleeps == []


def test_an_html_2xx_page_is_uncertain_a_proxy_may_have_answered() -> None:
    fake = FakeAdapter()
    fake.on(
        "POST /leads", Reply(200, "<html><body>Login</body></html>", {"Content-Type": "text/html"})
    )
    client, _ = make_client(fake)
    with pytest.raises(Uncertain, match="not JSON"):
        client.create_lead("C1", {"name": "x"})
    assert len(fake.calls("POST /leads")) == 1


def test_post_redirect_is_an_error_never_followed() -> None:
    fake = FakeAdapter()
    fake.on("POST /leads", Reply(301, "", {"Location": "https://other.example/api/leads"}))
    client, _ = make_client(fake)
    with pytest.raises(Uncertain, match=r"redirect to https://other\.example/api/leads"):
        client.create_lead("C1", {"name": "x"})
    assert len(fake.sent) == 2  # the limits probe and the one POST; nothing followed
    assert fake.options[-1].get("allow_redirects", False) is False


def test_connect_error_is_unavailable_and_reset_is_uncertain() -> None:
    fake = FakeAdapter()
    fake.on("POST /leads", connect_error(), reset_error())
    client, _ = make_client(fake, max_retries=0)
    with pytest.raises(Unavailable) as first:
        client.create_lead("C1", {"name": "x"})
    assert type(first.value) is Unavailable
    with pytest.raises(Uncertain):
        client.create_lead("C1", {"name": "x"})


def test_read_timeout_on_post_is_uncertain_and_not_retried() -> None:
    fake = FakeAdapter()
    fake.on("POST /leads", requests.exceptions.ReadTimeout("read timed out"))
    client, clock = make_client(fake)
    with pytest.raises(Uncertain, match="read timeout"):
        client.create_lead("C1", {"name": "x"})
    assert len(fake.calls("POST /leads")) == 1
    assert clock.sleeps == []


def test_post_is_retried_after_a_certain_refusal() -> None:
    fake = FakeAdapter()
    fake.on(
        "POST /leads",
        connect_error(),
        Reply(503, None, {"Retry-After": "4"}),
        Reply(200, {"uniqueId": "9S9"}),
    )
    client, clock = make_client(fake)
    assert client.create_lead("C1", {"name": "x"}).unique_id == "9S9"
    assert len(fake.calls("POST /leads")) == 3
    assert len(clock.sleeps) == 2
    assert clock.sleeps[1] == 4.0


def test_get_retries_uncertain_faults_with_bounded_jittered_backoff() -> None:
    fake = FakeAdapter()
    fake.on(
        "GET /campaigns",
        Reply(500),
        reset_error(),
        requests.exceptions.ReadTimeout("t"),
        Reply(200, []),
    )
    client, clock = make_client(fake)
    assert client.campaigns() == []
    assert len(fake.calls("GET /campaigns")) == 4
    assert len(clock.sleeps) == 3
    for i, s in enumerate(clock.sleeps):  # full jitter: 0 <= wait <= base * 2**i
        assert 0.0 <= s <= 0.5 * 2**i


def test_retry_after_is_honoured_and_capped() -> None:
    fake = FakeAdapter()
    fake.on("GET /campaigns", Reply(429, None, {"Retry-After": "1000"}), Reply(200, []))
    client, clock = make_client(fake, retry_after_cap=30.0, retry_total_seconds=100.0)
    assert client.campaigns() == []
    assert 30.0 in clock.sleeps
    assert max(clock.sleeps) == 30.0


def test_get_gives_up_after_max_retries() -> None:
    fake = FakeAdapter()
    fake.on("GET /campaigns", Reply(503, None, {"Retry-After": "1"}))
    client, clock = make_client(fake, max_retries=3)
    with pytest.raises(Unavailable):
        client.campaigns()
    assert len(fake.calls("GET /campaigns")) == 4
    assert clock.sleeps == [1.0, 1.0, 1.0]


def test_get_gives_up_when_the_time_budget_is_spent() -> None:
    fake = FakeAdapter()
    fake.on("GET /campaigns", Reply(503, None, {"Retry-After": "50"}))
    client, clock = make_client(fake, max_retries=10, retry_total_seconds=120.0)
    with pytest.raises(Unavailable):
        client.campaigns()
    assert clock.sleeps == [50.0, 50.0]


def test_limiter_starts_from_the_account_limits() -> None:
    fake = FakeAdapter()
    fake.on("GET /myaccount/request/limits", Reply(200, {"perMinute": 120, "perDay": 1000}))
    fake.on("GET /projects", Reply(200, []))
    client, _ = make_client(fake, requests_per_minute=600)
    client.projects()
    assert client.limiter.limit == 120
    fake2 = FakeAdapter()
    fake2.on("GET /myaccount/request/limits", Reply(200, {"perMinute": 5000}))
    fake2.on("GET /projects", Reply(200, []))
    client2, _ = make_client(fake2, requests_per_minute=600)
    client2.projects()
    assert client2.limiter.limit == 600  # never above the configured ceiling


def test_limiter_falls_back_to_config_when_limits_are_forbidden() -> None:
    fake = FakeAdapter()
    fake.on("GET /myaccount/request/limits", Reply(403, {}))
    fake.on("GET /projects", Reply(200, []))
    client, clock = make_client(fake, requests_per_minute=90)
    client.projects()
    assert client.limiter.limit == 90
    assert clock.sleeps == []


def test_paging_stops_on_a_short_page_and_dedupes() -> None:
    fake = FakeAdapter()
    page1 = [{"uniqueId": "1S1"}, {"uniqueId": "2S1"}]
    page2 = [{"uniqueId": "2S1"}, {"uniqueId": "3S1"}]
    page3 = [{"uniqueId": "4S1"}]
    fake.on("GET /leads", Reply(200, page1), Reply(200, page2), Reply(200, page3))
    client, _ = make_client(fake)
    ids = [lead.unique_id for lead in client.iter_leads("s", "2026-03-01", page_size=2)]
    assert ids == ["1S1", "2S1", "3S1", "4S1"]
    skips = [query_of(r)["skip"] for r in fake.calls("GET /leads")]
    assert skips == ["0", "2", "4"]


def test_a_repeated_page_stops_paging_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeAdapter()
    fake.on("GET /simpleleads", Reply(200, [{"uniqueId": "1S1"}, {"uniqueId": "2S1"}]))
    client, _ = make_client(fake)
    with caplog.at_level(logging.WARNING):
        ids = [
            x.unique_id for x in client.iter_simpleleads(modified_from="2026-03-01", page_size=2)
        ]
    assert ids == ["1S1", "2S1"]
    assert len(fake.calls("GET /simpleleads")) == 2
    assert "repeats the previous page" in caplog.text


def test_tls_failure_is_unavailable_names_ca_bundle_and_is_not_retried() -> None:
    fake = FakeAdapter()
    fake.on("GET /campaigns", requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"))
    client, clock = make_client(fake)
    with pytest.raises(Unavailable, match=r"api\.ca_bundle"):
        client.campaigns()
    assert len(fake.calls("GET /campaigns")) == 1
    assert clock.sleeps == []


def test_get_redirect_is_not_followed() -> None:
    fake = FakeAdapter()
    fake.on("GET /campaigns", Reply(302, "", {"Location": "https://login.example/"}))
    client, clock = make_client(fake)
    with pytest.raises(NotFound, match=r"check api\.url"):
        client.campaigns()
    assert len(fake.calls("GET /campaigns")) == 1
    assert clock.sleeps == []
