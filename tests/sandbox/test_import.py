"""The import example and POST /leads (docs/api-contract.md)."""

from __future__ import annotations

import re

import regex
import requests

from pipeline.sandbox import Sandbox
from pipeline.sandbox.seed import PHONE_REGEX
from tests.sandbox.conftest import Api, errors_of

EXAMPLE = re.compile(
    r"^example (?P<field>.+?), type is (?P<type>\w+), regex used for validation (?P<regex>.*)$"
)


def _parse(example: dict[str, str]) -> dict[str, tuple[str, str]]:
    out = {}
    for name, text in example.items():
        m = EXAMPLE.match(text)
        assert m is not None, text
        assert m["field"] == name
        out[name] = (m["type"], m["regex"])
    return out


def test_plain_example_lists_required_fields_in_documented_form(api: Api) -> None:
    r = api.get("/leads/example?campaignCode=B2B-DK-SPRING")
    assert r.status_code == 200
    body = r.json()
    assert body["campaignCode"] == "B2B-DK-SPRING"
    assert body["data"] == {
        "name": "example name, type is varchar, regex used for validation .*",
        "phone": f"example phone, type is phone, regex used for validation {PHONE_REGEX}",
    }


def test_show_all_data_entries_with_1_or_true(api: Api) -> None:
    for flag in ("1", "true", "True"):
        data = api.get(
            f"/leads/example?campaignCode=B2B-DK-SPRING&showAllDataEntries={flag}"
        ).json()["data"]
        fields = _parse(data)
        assert list(fields) == ["name", "phone", "email", "segment", "note"]
        assert fields["segment"] == ("dropdown", "^(SMB|Enterprise)$")
    plain = api.get("/leads/example?campaignCode=B2B-DK-SPRING&showAllDataEntries=false").json()
    assert list(plain["data"]) == ["name", "phone"]
    bad = api.get("/leads/example?campaignCode=B2B-DK-SPRING&showAllDataEntries=maybe")
    assert bad.status_code == 400


def test_demo_tenant_has_every_type_net_regexes_and_danish_names(api: Api) -> None:
    types = set()
    for code in ("B2B-DK-SPRING", "B2B-SE-AUTUMN", "CONSUMER-DK-ENERGI"):
        data = api.get(f"/leads/example?campaignCode={code}&showAllDataEntries=1").json()["data"]
        fields = _parse(data)
        types |= {t for t, _ in fields.values()}
        for _, rx in fields.values():
            regex.compile(rx)  # every regex compiles with the `regex` package
    assert types == {
        "varchar",
        "text",
        "phone",
        "email",
        "date",
        "integer",
        "decimal",
        "boolean",
        "dropdown",
    }
    fields = _parse(
        api.get("/leads/example?campaignCode=CONSUMER-DK-ENERGI&showAllDataEntries=1").json()[
            "data"
        ]
    )
    assert "område" in fields
    assert "fødselsdato" in fields
    assert "\\p{L}" in fields["by"][1]
    assert "(?<postnr>" in fields["postnr"][1]
    # Python's `re` refuses the .NET syntax; that is the point of this field
    for name in ("by", "postnr"):
        try:
            re.compile(fields[name][1])
        except re.error:
            pass
        else:  # pragma: no cover
            raise AssertionError(f"{name} should need the regex package")


def test_example_needs_campaign_code(api: Api) -> None:
    r = api.get("/leads/example")
    assert r.status_code == 400
    assert errors_of(r) == {"campaignCode": "InvalidValue"}


def test_post_lead_stores_new_notset_with_equal_times(fapi: Api, fake_sb: Sandbox) -> None:
    r = fapi.lead(name="Søren Ærø", phone="+45 12 34 56 78", email="s@example.dk", segment="SMB")
    assert r.status_code == 200
    lead = r.json()
    assert re.fullmatch(r"\d+S3064", lead["uniqueId"])
    assert lead["status"] == "New"
    assert lead["closure"] == "NotSet"
    # FakeClock 07:00 UTC = 09:00 Copenhagen summer time; seven fractional digits
    assert lead["uploadTime"] == "2026-03-30T09:00:00.0000000"
    assert lead["lastModifiedTime"] == lead["uploadTime"]
    assert lead["firstProcessedTime"] is None
    assert lead["campaign"] == {"code": "B2B-DK-SPRING", "uniqueId": "CAMP10062S3064"}
    assert lead["data"] == {
        "name": "Søren Ærø",
        "phone": "+45 12 34 56 78",
        "email": "s@example.dk",
        "segment": "SMB",
    }
    assert lead["uploadedByUser"] == {"orgCode": "api@demo.example"}
    stored = fapi.get(f"/leads/{lead['uniqueId']}").json()
    assert stored == lead
    assert fake_sb.leads("B2B-DK-SPRING")[-1] == lead


def test_times_have_seven_fraction_digits_with_system_clock(api: Api) -> None:
    lead = api.lead().json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}", lead["uploadTime"])


def test_unique_ids_are_distinct(api: Api) -> None:
    ids = {api.lead().json()["uniqueId"] for _ in range(5)}
    assert len(ids) == 5


def test_property_names_bind_case_insensitively(api: Api) -> None:
    r = api.post(
        "/leads", json={"CampaignCode": "B2B-DK-SPRING", "DATA": {"Name": "A", "PHONE": "12345678"}}
    )
    assert r.status_code == 200
    assert r.json()["data"] == {"name": "A", "phone": "12345678"}


def test_required_empty_missing_regex_unknown_and_types_are_named(api: Api) -> None:
    r = api.post(
        "/leads",
        json={
            "campaignCode": "B2B-DK-SPRING",
            "data": {"name": "", "phone": "12ab", "segment": "Huge", "fax": "1", "note": 5},
        },
    )
    assert r.status_code == 400
    status = r.json()["responseStatus"]
    assert status["errorCode"] == "ValidationException"
    assert status["message"] == "Lead data is invalid"
    assert errors_of(r) == {
        "name": "NotEmpty",
        "phone": "RegularExpression",
        "segment": "RegularExpression",
        "fax": "UnknownField",
        "note": "InvalidType",
    }
    phone = next(e for e in status["errors"] if e["fieldName"] == "phone")
    assert phone["message"] == "'12ab' does not match the field's pattern"
    missing = api.post("/leads", json={"campaignCode": "B2B-DK-SPRING", "data": {"name": "A"}})
    assert errors_of(missing) == {"phone": "NotEmpty"}


def test_regex_must_match_the_whole_value(api: Api) -> None:
    # dropdown ^(SMB|Enterprise)$: "SMB extra" contains a match but is not one
    r = api.lead(name="A", phone="12345678", segment="SMBX")
    assert errors_of(r) == {"segment": "RegularExpression"}
    r = api.lead(
        "CONSUMER-DK-ENERGI",
        fornavn="Søren",
        telefon="12345678",
        by="Ærø",
        samtykke="true",
        postnr="50000",
    )
    assert errors_of(r) == {"postnr": "RegularExpression"}


def test_net_regex_fields_accept_danish_letters(api: Api) -> None:
    r = api.lead(
        "CONSUMER-DK-ENERGI",
        fornavn="Søren",
        telefon="+45 12 34 56 78",
        by="Ærøskøbing",
        postnr="5970",
        område="Sjælland",
        samtykke="true",
        årsforbrug_kwh="4500,5",
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["by"] == "Ærøskøbing"
    bad = api.lead(
        "CONSUMER-DK-ENERGI", fornavn="S", telefon="12345678", by="B3rlin", samtykke="true"
    )
    assert errors_of(bad) == {"by": "RegularExpression"}


def test_optional_empty_value_is_accepted(api: Api) -> None:
    r = api.lead(name="A", phone="12345678", email="")
    assert r.status_code == 200


def test_bad_bodies_get_400_never_500(api: Api) -> None:
    cases = [
        b"{not json",
        b"[1, 2]",
        b'"just a string"',
        b"\xff\xfe",
        b'{"campaignCode": 5, "data": {}}',
        b'{"campaignCode": "B2B-DK-SPRING", "data": ["name"]}',
        b'{"data": {"name": "A"}}',
        b"[" * 100_000,
        b"",
    ]
    for body in cases:
        r = api.post("/leads", data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (body[:30], r.status_code, r.text[:200])
        assert "responseStatus" in r.json()
        assert "Traceback" not in r.text


def test_unknown_campaign_404_and_no_post_right_403(api: Api, sandbox: Sandbox) -> None:
    assert api.lead("NOPE").status_code == 404
    seed = {
        "projects": [{"name": "P"}],
        "campaigns": [{"code": "C", "project": "P", "fields": [{"name": "a", "required": True}]}],
        "accounts": [
            {
                "username": "reader@x",
                "password": "pw",
                "project_rights": ["*"],
                "resource_rights": {"Leads": ["GET"]},
            }
        ],
    }
    with Sandbox(seed) as sb:
        r = requests.post(
            sb.url + "/leads",
            json={"campaignCode": "C", "data": {"a": "1"}},
            auth=("reader@x", "pw"),
            timeout=5,
        )
        assert r.status_code == 403
        assert "Leads: POST" in r.json()["responseStatus"]["message"]


def test_oversized_body_is_413(api: Api) -> None:
    big = {
        "campaignCode": "B2B-DK-SPRING",
        "data": {"name": "A", "phone": "12345678", "note": "x" * 1_100_000},
    }
    r = api.post("/leads", json=big)
    assert r.status_code == 413
    assert r.json()["responseStatus"]["errorCode"] == "RequestEntityTooLarge"
    assert api.lead().status_code == 200  # the server is fine afterwards


def test_oversized_chunked_body_is_413(api: Api) -> None:
    def gen():  # no Content-Length: the limit is enforced while reading
        for _ in range(20):
            yield b"x" * 100_000

    r = api.post("/leads", data=gen(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
