"""Tenant profiles: the sandbox answering in each plausible alternative shape, over real HTTP."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from pipeline.clock import FakeClock
from pipeline.errors import ConfigError
from pipeline.sandbox import (
    DEMO_SEED_PATH,
    DEMO_USER,
    RESTRICTED_PASSWORD,
    RESTRICTED_USER,
    Fault,
    Profile,
    ProfileError,
    Sandbox,
    load_seed,
)
from tests.sandbox.conftest import START, Api

CODE = "B2B-DK-SPRING"
_names = itertools.count(1)


def _lead_body(name: str) -> dict[str, Any]:
    return {"campaignCode": CODE, "data": {"name": name, "phone": "+45 12 34 56 78"}}


def _stored(sb: Sandbox, name: str) -> list[dict[str, Any]]:
    """The stored leads (as ``sb.leads`` shows them) whose name is ``name``."""
    return [lead for lead in sb.leads(CODE) if lead["data"]["name"] == name]


def _post(api: Api, name: str | None = None) -> tuple[requests.Response, dict[str, Any]]:
    """POST one lead; returns the answer and the one lead stored with that name."""
    name = name or f"Profile Row {next(_names)}"
    r = api.post("/leads", json=_lead_body(name))
    stored = _stored(api.sb, name)
    assert len(stored) == 1, r.text
    return r, stored[0]


@pytest.fixture
def profiled(request: pytest.FixtureRequest) -> Iterator[Api]:
    """An Api on a demo sandbox started with ``request.param`` as its profile."""
    with Sandbox(port=0, profile=request.param) as sb:
        client = Api(sb)
        yield client
        client.close()


# --- post_answer ------------------------------------------------------------------------------
def test_default_profile_is_todays_behaviour() -> None:
    assert load_seed().profile == Profile()
    assert Profile().as_dict() == {
        "post_answer": "lead",
        "lists": "bare",
        "simpleleads_data": True,
        "uploaded_by": "login",
        "commit_delay": 0.0,
    }


@pytest.mark.parametrize("profiled", [{"post_answer": "lead"}], indirect=True)
def test_post_answer_lead(profiled: Api) -> None:
    r, stored = _post(profiled)
    assert r.status_code == 200
    assert r.json() == stored
    assert r.json()["uniqueId"].endswith("S3064")


@pytest.mark.parametrize("profiled", [{"post_answer": "wrapped"}], indirect=True)
def test_post_answer_wrapped(profiled: Api) -> None:
    r, stored = _post(profiled)
    assert r.status_code == 200
    assert r.json() == {"result": stored}


@pytest.mark.parametrize("profiled", [{"post_answer": "empty201"}], indirect=True)
def test_post_answer_empty201(profiled: Api) -> None:
    r, stored = _post(profiled)
    assert r.status_code == 201
    assert r.content == b""
    assert "Content-Type" not in r.headers
    assert r.headers["Content-Length"] == "0"
    assert stored["uniqueId"]


@pytest.mark.parametrize("profiled", [{"post_answer": "204"}], indirect=True)
def test_post_answer_204(profiled: Api) -> None:
    r, stored = _post(profiled)
    assert r.status_code == 204
    assert r.content == b""
    assert "Content-Type" not in r.headers
    assert stored["uniqueId"]
    assert profiled.get("/myaccount").status_code == 200  # the connection is still usable


@pytest.mark.parametrize("profiled", [{"post_answer": "id_only"}], indirect=True)
def test_post_answer_id_only(profiled: Api) -> None:
    r, stored = _post(profiled)
    assert r.status_code == 201
    assert r.json() == {"Id": stored["uniqueId"]}


@pytest.mark.parametrize(
    "profiled",
    [{"post_answer": v} for v in ("wrapped", "empty201", "204", "id_only")]
    + [{"lists": "wrapped", "uploaded_by": "absent", "commit_delay": 5}],
    indirect=True,
)
def test_validation_errors_keep_the_servicestack_shape(profiled: Api) -> None:
    r = profiled.post("/leads", json={"campaignCode": CODE, "data": {"name": "No Phone"}})
    assert r.status_code == 400
    assert r.headers["Content-Type"].startswith("application/json")
    status = r.json()["responseStatus"]
    assert status["errorCode"] == "ValidationException"
    assert status["errors"] == [
        {"errorCode": "NotEmpty", "fieldName": "phone", "message": "'phone' is required"}
    ]
    assert _stored(profiled.sb, "No Phone") == []


# --- lists ------------------------------------------------------------------------------------
LIST_PATHS = (
    "/campaigns",
    "/projects",
    "/leads/searches",
    "/leads?searchName=daily_outcomes&from=2000-01-01&take=5",
    "/simpleleads?take=5",
)


def _lists_of(api: Api, unwrap: Any) -> dict[str, list[Any]]:
    out = {}
    for path in LIST_PATHS:
        r = api.get(path)
        assert r.status_code == 200, (path, r.text)
        out[path] = unwrap(r.json())
    return out


@pytest.mark.parametrize("profiled", [{"lists": "bare"}], indirect=True)
def test_lists_bare(profiled: Api) -> None:
    lists = _lists_of(profiled, lambda body: body)
    assert all(isinstance(items, list) and items for items in lists.values()), lists
    _post(profiled)


@pytest.mark.parametrize("profiled", [{"lists": "wrapped"}], indirect=True)
def test_lists_wrapped_capital_results(profiled: Api) -> None:
    def unwrap(body: Any) -> list[Any]:
        assert isinstance(body, dict)
        assert list(body) == ["Results"]
        assert isinstance(body["Results"], list)
        return body["Results"]

    lists = _lists_of(profiled, unwrap)
    assert {c["code"] for c in lists["/campaigns"]} >= {CODE}
    assert all(items for items in lists.values())
    r, stored = _post(profiled)
    assert r.json() == stored  # a single lead is not a list: not wrapped
    one = profiled.get(f"/leads/{stored['uniqueId']}").json()
    assert one == stored
    found = profiled.get(f"/simpleleads?uniqueId={stored['uniqueId']}").json()
    assert found == {"Results": [stored]}


@pytest.mark.parametrize("profiled", [{"lists": "wrapped_lower"}], indirect=True)
def test_lists_wrapped_lower_results(profiled: Api) -> None:
    def unwrap(body: Any) -> list[Any]:
        assert isinstance(body, dict)
        assert list(body) == ["results"]
        return list(body["results"])

    lists = _lists_of(profiled, unwrap)
    assert all(items for items in lists.values())
    _, stored = _post(profiled)
    found = profiled.get(f"/simpleleads?uniqueId={stored['uniqueId']}").json()
    assert found == {"results": [stored]}


@pytest.mark.parametrize("profiled", [{"lists": "wrapped"}], indirect=True)
def test_wrapped_lists_leave_errors_and_csv_alone(profiled: Api) -> None:
    r = profiled.get("/leads?searchName=nope&from=2026-01-01")
    assert r.status_code == 404
    assert "responseStatus" in r.json()
    csv = profiled.get("/leads/csv?searchName=daily_outcomes&from=2000-01-01&take=2")
    assert csv.status_code == 200
    assert csv.text.startswith("uniqueId,")


# --- simpleleads_data -------------------------------------------------------------------------
@pytest.mark.parametrize("profiled", [{"simpleleads_data": True}], indirect=True)
def test_simpleleads_rows_carry_data(profiled: Api) -> None:
    _, stored = _post(profiled, "With Data")
    rows = profiled.get(f"/simpleleads?uniqueId={stored['uniqueId']}").json()
    assert rows[0]["data"] == {"name": "With Data", "phone": "+45 12 34 56 78"}


@pytest.mark.parametrize("profiled", [{"simpleleads_data": False}], indirect=True)
def test_simpleleads_rows_without_data(profiled: Api) -> None:
    r, stored = _post(profiled, "Without Data")
    assert r.json()["data"]["name"] == "Without Data"  # the POST answer is a full lead
    assert stored["data"]["name"] == "Without Data"  # and the data is stored
    rows = profiled.get(f"/simpleleads?uniqueId={stored['uniqueId']}").json()
    assert len(rows) == 1
    row = rows[0]
    assert "data" not in row
    assert row["uniqueId"] == stored["uniqueId"]
    assert row["campaign"] == {"code": CODE, "uniqueId": stored["campaign"]["uniqueId"]}
    assert row["status"] == "New"
    assert row["uploadTime"] == stored["uploadTime"]
    assert row["uploadedByUser"] == {"orgCode": DEMO_USER}
    everything = profiled.get("/simpleleads?take=50").json()
    assert all("data" not in row for row in everything)
    # the lead-object export is not /simpleleads: it keeps the data
    objects = profiled.get("/leads?searchName=daily_outcomes&from=2000-01-01").json()
    assert any(o["uniqueId"] == stored["uniqueId"] and o["data"] for o in objects)


# --- uploaded_by ------------------------------------------------------------------------------
def _renderings(api: Api, unique_id: str) -> list[dict[str, Any]]:
    """The same lead as every endpoint that renders leads shows it."""
    simple = api.get(f"/simpleleads?uniqueId={unique_id}").json()
    objects = api.get("/leads?searchName=daily_outcomes&from=2000-01-01").json()
    return [
        api.get(f"/leads/{unique_id}").json(),
        *simple,
        *(o for o in objects if o["uniqueId"] == unique_id),
        *(lead for lead in api.sb.leads(CODE) if lead["uniqueId"] == unique_id),
    ]


@pytest.mark.parametrize("profiled", [{"uploaded_by": "login"}], indirect=True)
def test_uploaded_by_login(profiled: Api) -> None:
    r, stored = _post(profiled)
    views = [r.json(), *_renderings(profiled, stored["uniqueId"])]
    assert len(views) == 5
    assert all(v["uploadedByUser"] == {"orgCode": DEMO_USER} for v in views)


@pytest.mark.parametrize("profiled", [{"uploaded_by": "absent"}], indirect=True)
def test_uploaded_by_absent(profiled: Api) -> None:
    r, stored = _post(profiled)
    views = [r.json(), *_renderings(profiled, stored["uniqueId"])]
    assert len(views) == 5
    assert all("uploadedByUser" not in v for v in views)
    assert all(v["lastModifiedByUser"] == {"orgCode": DEMO_USER} for v in views)
    demo = profiled.get("/simpleleads?take=20").json()
    assert demo
    assert all("uploadedByUser" not in v for v in demo)


@pytest.mark.parametrize("profiled", [{"uploaded_by": "other"}], indirect=True)
def test_uploaded_by_other(profiled: Api) -> None:
    r, stored = _post(profiled)
    views = [r.json(), *_renderings(profiled, stored["uniqueId"])]
    assert len(views) == 5
    user = views[0]["uploadedByUser"]
    assert re.fullmatch(r"ORG-\d{4}", user["orgCode"])
    assert user["name"]
    assert DEMO_USER not in user.values()
    assert all(v["uploadedByUser"] == user for v in views)  # stable for the account
    restricted = Api(profiled.sb, RESTRICTED_USER, RESTRICTED_PASSWORD)
    try:
        other = restricted.post("/leads", json=_lead_body("By Restricted")).json()
    finally:
        restricted.close()
    assert other["uploadedByUser"]["orgCode"] != user["orgCode"]  # another account, another code
    # stable across sandboxes too: a second server names the same account the same way
    with Sandbox(port=0, profile={"uploaded_by": "other"}) as again:
        second = Api(again)
        try:
            assert second.post("/leads", json=_lead_body("Again")).json()["uploadedByUser"] == user
        finally:
            second.close()


# --- selecting a profile ----------------------------------------------------------------------
def test_seed_file_profile_table_selects_the_profile(tmp_path: Path) -> None:
    seed = tmp_path / "tenant.toml"
    seed.write_text(
        DEMO_SEED_PATH.read_text(encoding="utf-8")
        + '\n[tenant.profile]\npost_answer = "id_only"\nlists = "wrapped_lower"\n'
        'simpleleads_data = false\nuploaded_by = "absent"\ncommit_delay = 0.25\n',
        encoding="utf-8",
    )
    assert load_seed(seed).profile == Profile("id_only", "wrapped_lower", False, "absent", 0.25)
    with Sandbox(seed, port=0) as sb:
        assert sb.profile.post_answer == "id_only"
        api = Api(sb)
        try:
            r, stored = _post(api)
            assert r.status_code == 201
            assert r.json() == {"Id": stored["uniqueId"]}
            assert list(api.get("/campaigns").json()) == ["results"]
        finally:
            api.close()


def test_constructor_profile_applies_over_the_seed_profile() -> None:
    data = {"tenant": {"profile": {"lists": "wrapped", "uploaded_by": "other"}}}
    with Sandbox(data, port=0, profile={"uploaded_by": "absent"}) as sb:
        assert sb.profile == Profile(lists="wrapped", uploaded_by="absent")


@pytest.mark.parametrize(
    ("profile", "key", "words"),
    [
        ({"post_answer": "created"}, "tenant.profile.post_answer", "'created' is not one of"),
        ({"post_answer": 204}, "tenant.profile.post_answer", "204 is not a string"),
        ({"lists": "Wrapped"}, "tenant.profile.lists", "'Wrapped' is not one of"),
        ({"simpleleads_data": "no"}, "tenant.profile.simpleleads_data", "not true or false"),
        ({"uploaded_by": "email"}, "tenant.profile.uploaded_by", "'email' is not one of"),
        ({"commit_delay": -1}, "tenant.profile.commit_delay", "-1 is not a number of seconds"),
        ({"commit_delay": "2s"}, "tenant.profile.commit_delay", "not a number of seconds"),
        ({"post_anwser": "lead"}, "tenant.profile.post_anwser", "unknown profile setting"),
    ],
)
def test_bad_seed_profile_is_refused_naming_the_key(
    profile: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_seed({"tenant": {"profile": profile}})
    assert [p.key for p in info.value.problems] == [key]
    assert words in str(info.value)
    assert key in str(info.value)


def test_bad_seed_file_profile_is_refused(tmp_path: Path) -> None:
    seed = tmp_path / "bad.toml"
    seed.write_text('[tenant]\nprofile = "wrapped"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tenant\.profile \(.*bad\.toml\): expected a table"):
        load_seed(seed)


def test_set_profile_while_running(sandbox: Sandbox) -> None:
    api = Api(sandbox)
    try:
        assert isinstance(api.get("/campaigns").json(), list)
        changed = sandbox.set_profile(lists="wrapped", post_answer="204")
        assert changed == sandbox.profile == Profile(post_answer="204", lists="wrapped")
        assert list(api.get("/campaigns").json()) == ["Results"]
        r, _ = _post(api)
        assert r.status_code == 204
        with pytest.raises(ProfileError, match="post_answr: unknown profile setting"):
            sandbox.set_profile(post_answr="lead")
        with pytest.raises(ProfileError, match="lists: 'Results' is not one of"):
            sandbox.set_profile(lists="Results", post_answer="lead")
        assert sandbox.profile.post_answer == "204"  # a refused change changes nothing
        sandbox.set_profile(lists="bare", post_answer="lead")
        assert sandbox.profile == Profile()
        assert isinstance(api.get("/campaigns").json(), list)
    finally:
        api.close()


def test_unknown_constructor_profile_is_refused() -> None:
    with pytest.raises(ProfileError, match="uploaded_by: 'nobody' is not one of"):
        Sandbox(port=0, profile={"uploaded_by": "nobody"})


def test_profile_over_the_http_controls(api: Api, sandbox: Sandbox) -> None:
    control = sandbox.root_url + "/_sandbox/profile"
    assert requests.get(control, timeout=5).json() == Profile().as_dict()
    r = requests.post(control, json={"post_answer": "wrapped"}, timeout=5)
    assert r.status_code == 200
    assert r.json()["post_answer"] == "wrapped"
    assert set(api.lead().json()) == {"result"}
    bad = requests.post(control, json={"commit_delay": -2}, timeout=5)
    assert bad.status_code == 400
    assert "commit_delay" in bad.json()["responseStatus"]["message"]
    assert sandbox.profile.post_answer == "wrapped"


# --- commit_delay -----------------------------------------------------------------------------
def _seen(api: Api, unique_id: str) -> dict[str, bool]:
    """Whether each lookup shows the lead."""
    simple = api.get(f"/simpleleads?uniqueId={unique_id}").json()
    objects = api.get("/leads?searchName=daily_outcomes&from=2000-01-01").json()
    csv = api.get("/leads/csv?searchName=daily_outcomes&from=2000-01-01").text
    one = api.get(f"/leads/{unique_id}")
    return {
        "simpleleads": any(row["uniqueId"] == unique_id for row in simple),
        "leads": any(o["uniqueId"] == unique_id for o in objects),
        "csv": unique_id in csv,
        "one": one.status_code == 200,
    }


def test_commit_delay_on_the_sandbox_clock() -> None:
    clock = FakeClock(START)
    with Sandbox(port=0, clock=clock, profile={"commit_delay": 30}) as sb:
        api = Api(sb)
        try:
            r, stored = _post(api)  # stored at once (sb.leads shows it) ...
            assert r.status_code == 200
            uid = stored["uniqueId"]
            assert _seen(api, uid) == dict.fromkeys(("simpleleads", "leads", "csv", "one"), False)
            assert api.get(f"/leads/{uid}").status_code == 404
            clock.advance(29.9)
            assert not any(_seen(api, uid).values())
            clock.advance(0.1)  # ... and visible from answer time + 30 s
            assert all(_seen(api, uid).values())
            sb.set_profile(commit_delay=0)  # later leads show at once again
            _, now = _post(api)
            assert all(_seen(api, now["uniqueId"]).values())
        finally:
            api.close()


def test_commit_delay_in_real_time_does_not_hold_the_answer() -> None:
    delay = 0.6
    with Sandbox(port=0, profile={"commit_delay": delay}) as sb:
        api = Api(sb)
        try:
            began = time.monotonic()
            r, stored = _post(api)
            assert r.status_code == 200
            assert time.monotonic() - began < delay  # answered before the lead shows
            uid = stored["uniqueId"]
            assert api.get(f"/simpleleads?uniqueId={uid}").json() == []
            time.sleep(delay)
            assert [row["uniqueId"] for row in api.get(f"/simpleleads?uniqueId={uid}").json()] == [
                uid
            ]
        finally:
            api.close()


# --- the store_late fault ---------------------------------------------------------------------
def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp[:26])  # seven fractional digits -> six


def _wait_for(check: Any, seconds: float = 5.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    return check()


def test_store_late_stores_after_the_client_gave_up(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("store_late", route="POST /leads", delay=1.0))
    name = "Late Row 1"
    began = time.monotonic()
    with pytest.raises(requests.Timeout):
        api.session.post(api.url + "/leads", json=_lead_body(name), timeout=0.3)
    assert time.monotonic() - began < 0.9
    assert _stored(sandbox, name) == []  # the client gave up; nothing is stored yet
    late = _wait_for(lambda: _stored(sandbox, name))
    assert len(late) == 1  # ... and then the lead appears

    def entry() -> dict[str, Any] | None:
        return next((e for e in sandbox.requests() if e["body"] == _lead_body(name)), None)

    logged = _wait_for(lambda: (entry() or {}).get("status") is not None and entry())
    assert logged["status"] == 0  # handled, but nobody got an answer
    arrived = _parse(logged["time"])
    assert _parse(late[0]["uploadTime"]) >= arrived + timedelta(seconds=0.9)  # stamped late
    rows = api.get(f"/simpleleads?uniqueId={late[0]['uniqueId']}").json()
    assert [row["uniqueId"] for row in rows] == [late[0]["uniqueId"]]
    r, _ = _post(api)  # times=1: the next request is normal
    assert r.status_code == 200


def test_store_late_answers_a_patient_client(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault.from_json({"kind": "store_late", "route": "POST /leads", "delay": 0.3}))
    began = sandbox.tenant.now()
    r, stored = _post(api, "Late Row 2")
    assert r.status_code == 200
    assert r.json() == stored
    assert _parse(stored["uploadTime"]) >= began + timedelta(seconds=0.25)
    assert sandbox.requests()[-1]["status"] == 200


def test_delay_fault_keeps_the_arrival_time(api: Api, sandbox: Sandbox) -> None:
    sandbox.add_fault(Fault("delay", route="POST /leads", delay=0.3))
    r, stored = _post(api, "Delayed Row")
    assert r.status_code == 200
    assert stored["uploadTime"] == sandbox.requests()[-1]["time"]
