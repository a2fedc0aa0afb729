"""Searches, lead exports (objects, CSV), /simpleleads and /leads/{uniqueId} (sections 8 and 9)."""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from pipeline.clock import FakeClock
from pipeline.sandbox import DEMO_SEED_PATH, Sandbox
from tests.sandbox.conftest import START, Api, errors_of

SEARCH = "/leads?searchName=api_import_export"


@pytest.fixture
def quiet() -> Iterator[tuple[Sandbox, Api]]:
    """The demo tenant without generated leads, on a fake clock: exports are exact."""
    seed = tomllib.loads(DEMO_SEED_PATH.read_text(encoding="utf-8"))
    seed["tenant"]["demo_leads"] = 0
    with Sandbox(seed, clock=FakeClock(START)) as sb:
        api = Api(sb)
        yield sb, api
        api.close()


def _success(sb: Sandbox, day: int, hour: int = 10, name: str = "Søren") -> str:
    when = datetime(2026, 3, day, hour, 0)
    return sb.insert_lead(
        "B2B-DK-SPRING",
        {"name": name, "phone": "+45 12 34 56 78"},
        status="UserProcessed",
        closure="Success",
        upload_time=datetime(2026, 3, 1, 8, 0),
        last_modified_time=when,
        agent="agent7",
    )


def test_searches_lists_those_the_account_may_use(api: Api) -> None:
    assert api.get("/leads/searches").json() == [
        {"name": "api_import_export", "description": "Successful calls of the B2B spring campaign"},
        {
            "name": "daily_outcomes",
            "description": "Every lead of the reachable campaigns, open or closed",
        },
    ]


def test_search_errors(api: Api) -> None:
    assert api.get("/leads?searchName=nope&from=2026-01-01").status_code == 404
    assert api.get("/leads?searchName=internal_only&from=2026-01-01").status_code == 403
    assert errors_of(api.get("/leads?from=2026-01-01")) == {"searchName": "InvalidValue"}
    assert errors_of(api.get(SEARCH)) == {"from": "InvalidValue"}
    assert errors_of(api.get(SEARCH + "&from=yesterday")) == {"from": "InvalidValue"}
    assert errors_of(api.get(SEARCH + "&from=2026-13-45")) == {"from": "InvalidValue"}
    assert errors_of(api.get(SEARCH + "&from=2026-01-01&to=soon")) == {"to": "InvalidValue"}


def test_objects_filter_by_search_and_window_to_exclusive(quiet: tuple[Sandbox, Api]) -> None:
    sb, api = quiet
    a, b, c = _success(sb, 10), _success(sb, 11), _success(sb, 12)
    sb.insert_lead(
        "B2B-DK-SPRING", {"name": "open", "phone": "12345678"}, upload_time=datetime(2026, 3, 11, 9)
    )
    sb.insert_lead(
        "B2B-DK-SPRING",
        {"name": "no", "phone": "12345678"},
        status="UserProcessed",
        closure="NotInterested",
        last_modified_time=datetime(2026, 3, 11, 9),
    )
    got = api.get(SEARCH + "&from=2026-03-10&to=2026-03-12").json()
    assert [lead["uniqueId"] for lead in got] == [a, b]  # to is exclusive; filters applied
    assert got[0]["lastModifiedTime"] == "2026-03-10T10:00:00.0000000"
    assert got[0]["lastModifiedByUser"] == {"orgCode": "agent7"}
    assert got[0]["firstProcessedByUser"] == {"orgCode": "agent7"}
    # aliases, date-times, the exact boundary
    alias = api.get(
        "/leads?searchName=api_import_export&ModifiedFrom=2026-03-10T10:00:00&modifiedTo=2026-03-12T10:00:00"
    )
    assert [lead["uniqueId"] for lead in alias.json()] == [a, b]
    assert [lead["uniqueId"] for lead in api.get(SEARCH + "&from=2026-03-12").json()] == [c]
    # a UTC date-time is converted to tenant time (10:00 CET = 09:00Z)
    utc = api.get(SEARCH + "&from=2026-03-12T09:00:00Z").json()
    assert [lead["uniqueId"] for lead in utc] == [c]


def test_paging_edges(quiet: tuple[Sandbox, Api]) -> None:
    sb, api = quiet
    ids = [_success(sb, 1 + i) for i in range(6)]
    page = SEARCH + "&from=2026-03-01"
    assert [x["uniqueId"] for x in api.get(page + "&skip=0&take=3").json()] == ids[:3]
    assert [x["uniqueId"] for x in api.get(page + "&skip=3&take=3").json()] == ids[3:]
    assert api.get(page + "&skip=6&take=3").json() == []  # exact multiple: last page empty
    assert api.get(page + "&skip=100&take=3").json() == []  # skip beyond the end
    assert [x["uniqueId"] for x in api.get(page + "&skip=4&take=5").json()] == ids[4:]
    assert api.get(SEARCH + "&from=2027-01-01&take=10").json() == []  # empty
    assert api.get(page + "&take=0").status_code == 400
    assert api.get(page + "&skip=-1").status_code == 400
    assert api.get(page + "&take=abc").status_code == 400


def _csv(api: Api, query: str) -> tuple[bytes, str]:
    r = api.session.get(
        api.url + "/leads/csv?searchName=api_import_export&from=2026-03-01" + query,
        headers={"Accept": "text/csv"},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    return r.content, r.headers["content-type"]


def test_csv_defaults_system_headers_utf8_en_us(quiet: tuple[Sandbox, Api]) -> None:
    sb, api = quiet
    uid = _success(sb, 10, hour=14, name="Søren Ærø")
    content, ctype = _csv(api, "")
    assert ctype == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    assert rows[0] == [
        "uniqueId",
        "campaignCode",
        "status",
        "closure",
        "uploadTime",
        "lastModifiedTime",
        "name",
        "phone",
        "email",
        "segment",
        "note",
    ]
    assert rows[1] == [
        uid,
        "B2B-DK-SPRING",
        "UserProcessed",
        "Success",
        "3/1/2026 8:00:00 AM",
        "3/10/2026 2:00:00 PM",
        "Søren Ærø",
        "+45 12 34 56 78",
        "",
        "",
        "",
    ]


@pytest.mark.parametrize(
    ("culture", "sep", "stamp", "label"),
    [
        ("en-US", ",", "3/10/2026 2:00:00 PM", "Last modified"),
        ("da-DK", ";", "10-03-2026 14:00:00", "Sidst ændret"),
        ("sv-SE", ";", "2026-03-10 14:00:00", "Senast ändrad"),
        ("nb-NO", ";", "10.03.2026 14:00:00", "Sist endret"),
        ("de-DE", ";", "10.03.2026 14:00:00", "Zuletzt geändert"),
    ],
)
def test_csv_cultures(
    quiet: tuple[Sandbox, Api], culture: str, sep: str, stamp: str, label: str
) -> None:
    sb, api = quiet
    _success(sb, 10, hour=14)
    content, _ = _csv(api, f"&culture={culture}&useSystemHeaders=false")
    rows = list(csv.reader(io.StringIO(content.decode("utf-8")), delimiter=sep))
    assert rows[0][5] == label
    assert rows[0][6:8] == ["Name", "Phone"]  # field labels from the seed
    assert rows[1][5] == stamp
    system, _ = _csv(api, f"&culture={culture}")
    assert system.decode().splitlines()[0].split(sep)[0] == "uniqueId"


@pytest.mark.parametrize(
    ("encoding", "codec", "bom"),
    [
        ("utf-8", "utf-8", False),
        ("utf-8-sig", "utf-8", True),
        ("windows-1252", "cp1252", False),
        ("ISO-8859-1", "latin-1", False),
    ],
)
def test_csv_encodings(quiet: tuple[Sandbox, Api], encoding: str, codec: str, bom: bool) -> None:
    sb, api = quiet
    _success(sb, 10, name="Søren Ærø Åse")
    content, ctype = _csv(api, f"&encoding={encoding}&culture=da-DK")
    assert content.startswith(b"\xef\xbb\xbf") == bom
    text = content[3:].decode(codec) if bom else content.decode(codec)
    assert "Søren Ærø Åse" in text
    assert "charset=" in ctype


def test_csv_bad_encoding_culture_and_bool_are_400(api: Api) -> None:
    base = "/leads/csv?searchName=api_import_export&from=2026-01-01"
    assert errors_of(api.get(base + "&encoding=ebcdic")) == {"encoding": "InvalidValue"}
    assert errors_of(api.get(base + "&culture=xx-YY")) == {"culture": "InvalidValue"}
    assert errors_of(api.get(base + "&useSystemHeaders=perhaps")) == {
        "useSystemHeaders": "InvalidValue"
    }


def test_csv_streams_every_row(api: Api) -> None:
    content, _ = _csv(api, "&encoding=utf-8")
    objects = api.get("/leads?searchName=api_import_export&from=2026-03-01").json()
    assert len(content.decode().splitlines()) == len(objects) + 1


def test_simpleleads_filters(quiet: tuple[Sandbox, Api]) -> None:
    sb, api = quiet
    s1 = _success(sb, 10)
    new = sb.insert_lead(
        "B2B-DK-SPRING",
        {"name": "n", "phone": "12345678"},
        last_modified_time=datetime(2026, 3, 11),
    )
    se = sb.insert_lead(
        "B2B-SE-AUTUMN",
        {"company": "AB", "phone": "12345678"},
        status="Depleted",
        closure="NotInterested",
        last_modified_time=datetime(2026, 3, 12),
    )
    dk = sb.insert_lead(
        "CONSUMER-DK-ENERGI",
        {"fornavn": "Åse", "telefon": "12345678", "by": "Ærø", "samtykke": "true"},
        status="UserProcessed",
        closure="InvalidLead",
        last_modified_time=datetime(2026, 3, 13),
    )

    def ids(query: str) -> list[str]:
        r = api.get("/simpleleads?" + query)
        assert r.status_code == 200, r.text
        return [x["uniqueId"] for x in r.json()]

    assert ids("Projects=*&ModifiedFrom=2026-03-01") == [s1, new, se, dk]
    assert ids("Projects=B2B*&ModifiedFrom=2026-03-01") == [s1, new, se]
    assert ids("Projects=Consumer Denmark") == [dk]
    assert ids("Projects=B2B Denmark,Consumer Denmark") == [s1, new, dk]
    assert ids("Campaigns=CAMP10063S3064") == [se]
    assert ids("Campaigns=B2B-SE-AUTUMN,CONSUMER-DK-ENERGI") == [se, dk]
    assert ids("Statuses=UserProcessed&LeadClosures=Success") == [s1]
    assert ids("LeadClosures=Success,InvalidLead") == [s1, dk]
    assert ids("AllOpenStatuses=true") == [new]
    assert ids("AllClosedStatuses=true") == [s1, se, dk]
    assert ids(f"UniqueId={se}") == [se]
    assert ids(f"uniqueid={se.lower()}") == [se]
    assert ids("ModifiedFrom=2026-03-11&ModifiedTo=2026-03-13") == [new, se]
    assert ids("Projects=*&skip=1&take=2") == [new, se]
    assert ids("Projects=*&skip=4&take=2") == []
    assert ids("Projects=Internal Tests") == []  # outside the rights: nothing
    assert api.get("/simpleleads?Campaigns=NOPE").status_code == 404
    assert api.get("/simpleleads?Campaigns=INTERNAL-TEST").status_code == 403
    assert api.get("/simpleleads?ModifiedFrom=notadate").status_code == 400
    assert api.get("/simpleleads?AllOpenStatuses=maybe").status_code == 400


def test_find_own_uploads_since_t(quiet: tuple[Sandbox, Api]) -> None:
    """The contract's reconciliation recipe finds a freshly imported lead."""
    _sb, api = quiet
    t = "2026-03-30T09:00:00"
    uid = api.lead().json()["uniqueId"]
    got = api.get(
        f"/simpleleads?Campaigns=CAMP10062S3064&ModifiedFrom={t}&AllOpenStatuses=true"
    ).json()
    assert [x["uniqueId"] for x in got] == [uid]
    assert got[0]["data"] == {"name": "Søren", "phone": "+45 12 34 56 78"}


def test_one_lead(api: Api, quiet: tuple[Sandbox, Api]) -> None:
    uid = api.lead().json()["uniqueId"]
    assert api.get(f"/leads/{uid}").json()["uniqueId"] == uid
    r = api.get("/leads/1S3064")
    assert r.status_code == 404
    assert r.json()["responseStatus"]["errorCode"] == "NotFound"
    sb, _ = quiet
    hidden = sb.insert_lead("INTERNAL-TEST", {"name": "x", "phone": "12345678"})
    assert quiet[1].get(f"/leads/{hidden}").status_code == 403


def test_demo_leads_span_thirty_days(fake_sb: Sandbox) -> None:
    leads = fake_sb.leads()
    assert len(leads) >= 300
    uploads = sorted(lead["uploadTime"] for lead in leads)
    assert uploads[0] >= "2026-02-28"
    assert uploads[-1] <= "2026-03-30T09:00"
    assert {lead["status"] for lead in leads} == {"New", "UserProcessed", "Depleted"}
    # exports have data
    assert any(
        lead["closure"] == "Success" and lead["campaign"]["code"] == "B2B-DK-SPRING"
        for lead in leads
    )


def test_demo_leads_are_deterministic_for_a_seed() -> None:
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    a = Sandbox(clock=clock)
    b = Sandbox(clock=clock)
    try:
        assert a.leads() == b.leads()
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize(
    "path",
    [
        "/leads",
        "/leads/csv",
        "/simpleleads",
        "/leads/example",
        "/leads/searches",
        "/campaigns",
        "/leads/%00%ff",
    ],
)
def test_garbage_parameters_never_500(api: Api, path: str) -> None:
    garbage = [
        {"searchName": "api_import_export", "from": "2026-02-30"},
        {"searchName": "api_import_export", "from": "2026-01-01", "skip": "1e9", "take": "-5"},
        {"searchName": "\x00", "from": "%ff%fe"},
        {"Projects": "***", "Campaigns": ",,,", "UniqueId": "<script>", "Statuses": " , "},
        {"ModifiedFrom": "9999-12-31T23:59:59.9999999", "ModifiedTo": "0001-01-01"},
        {"campaignCode": "ÆØÅ", "showAllDataEntries": "2"},
        {"searchName": "api_import_export", "from": "2026-01-01", "culture": "", "encoding": ""},
        {"x" * 200: "y" * 5000},
    ]
    for params in garbage:
        r = api.get(path, params=params)
        assert r.status_code < 500, (path, params, r.text[:200])
        assert "Traceback" not in r.text
