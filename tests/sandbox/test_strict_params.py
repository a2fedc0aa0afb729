"""Sandbox strict mode and its own API description (seed ``[tenant] strict_params``, ...)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.config import DEFAULT_PARAMS
from pipeline.errors import ConfigError
from pipeline.sandbox import DEMO_SEED_PATH, Sandbox, load_seed
from pipeline.sandbox.declared import PARAM_KEYS
from tests.sandbox.conftest import Api, errors_of


def seed(**tenant: Any) -> dict[str, Any]:
    data = tomllib.loads(DEMO_SEED_PATH.read_text(encoding="utf-8"))
    data["tenant"].update(tenant)
    return data


@pytest.fixture
def strict() -> Iterator[Api]:
    names = {"leads_from": "ModifiedFrom", "leads_to": "ModifiedTo"}
    with Sandbox(seed(strict_params=True, leads_include=True, params=names)) as sb:
        api = Api(sb)
        yield api
        api.close()


def test_the_declared_keys_are_leadpipes_config_keys() -> None:
    assert PARAM_KEYS - {"lead_unique_id"} == set(DEFAULT_PARAMS)


def test_strict_refuses_an_undeclared_name_naming_it(strict: Api) -> None:
    r = strict.get("/leads", params={"searchName": "daily_outcomes", "from": "2026-01-01"})
    assert r.status_code == 400
    assert errors_of(r) == {"from": "UnknownParameter"}
    assert "ModifiedFrom" in r.json()["responseStatus"]["message"]


def test_strict_binds_declared_names_case_insensitively(strict: Api) -> None:
    r = strict.get("/leads", params={"SEARCHNAME": "daily_outcomes", "modifiedfrom": "2000-01-01"})
    assert r.status_code == 200, r.text
    assert r.json()
    assert all("data" not in lead for lead in r.json())
    r = strict.get(
        "/leads",
        params={"searchName": "daily_outcomes", "ModifiedFrom": "2000-01-01", "include": "data"},
    )
    assert r.status_code == 200
    assert all("data" in lead for lead in r.json())


def test_strict_names_a_missing_required_parameter_by_its_declared_name(strict: Api) -> None:
    r = strict.get("/leads", params={"searchName": "daily_outcomes"})
    assert r.status_code == 400
    assert errors_of(r) == {"ModifiedFrom": "InvalidValue"}


def test_strict_checks_the_import_body_and_other_routes(strict: Api) -> None:
    assert strict.lead().status_code in (200, 201)
    body = {"campaignCode": "B2B-DK-SPRING", "data": {"name": "A", "phone": "12345678"}, "x": 1}
    r = strict.post("/leads", json=body)
    assert r.status_code == 400
    assert errors_of(r) == {"x": "UnknownParameter"}
    assert strict.get("/campaigns", params={"foo": "1"}).status_code == 400
    assert strict.get("/simpleleads", params={"modifiedFrom": "2026-01-01"}).status_code == 200


def test_lenient_by_default(api: Api) -> None:
    r = api.get("/leads", params={"searchName": "daily_outcomes", "from": "2000-01-01", "x": "1"})
    assert r.status_code == 200
    assert all("data" in lead for lead in r.json())


def test_the_description_declares_the_seeds_names(strict: Api) -> None:
    meta = strict.get("/types/metadata.json").json()
    get_leads = next(o for o in meta["operations"] if o["request"]["name"] == "GetLeads")
    names = [p["name"] for p in get_leads["request"]["properties"]]
    assert names == ["SearchName", "ModifiedFrom", "ModifiedTo", "Skip", "Take", "Include"]
    spec = strict.get("/openapi").json()
    assert spec["swagger"] == "2.0"
    assert [p["name"] for p in spec["paths"]["/leads"]["get"]["parameters"]] == names
    assert "CampaignCode" in spec["definitions"]["CreateLead"]["required"]


def test_describe_false_serves_no_description() -> None:
    with Sandbox(seed(describe=False)) as sb:
        api = Api(sb)
        assert api.get("/types/metadata.json").status_code == 404
        assert api.get("/openapi").status_code == 404
        api.close()


def test_seed_options_are_validated() -> None:
    with pytest.raises(ConfigError) as caught:
        load_seed(seed(strict_params="yes", params={"leads_frm": "X"}))
    text = str(caught.value)
    assert "tenant.strict_params" in text
    assert "tenant.params.leads_frm" in text
    assert "leads_from" in text
