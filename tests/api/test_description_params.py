"""``[api.params]`` / ``leads_include`` at load, and parsing both description formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.api.client import SENT_OPERATIONS
from pipeline.api.description import parse_description, route_shape
from pipeline.config import DEFAULT_PARAMS, Settings, load_settings
from pipeline.errors import ConfigError


def load(tmp_path: Path, text: str) -> Settings:
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text(text, encoding="utf-8")
    return load_settings(cfg, env={})


def test_params_default_to_todays_names_and_override_one_by_one(tmp_path: Path) -> None:
    s = load(tmp_path, '[api]\nleads_include = ["data", "campaign"]\n[api.params]\n'
                       'leads_from = "ModifiedFrom"\n')  # fmt: skip
    assert s.api.params == {**DEFAULT_PARAMS, "leads_from": "ModifiedFrom"}
    assert s.api.params["leads_search"] == "searchName"
    assert s.api.leads_include == ("data", "campaign")
    assert load(tmp_path, "").api.leads_include == ()


def test_unknown_or_bad_param_keys_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '[api.params]\nleads_frm = "X"\nleads_to = "a b"\n')
    text = str(caught.value)
    assert "api.params.leads_frm" in text
    assert "leads_from" in text
    assert "skip" in text
    assert "api.params.leads_to" in text


def test_every_param_key_is_sent_somewhere() -> None:
    sent = {n for op in SENT_OPERATIONS for n in (*op.query, *op.body)}
    assert sent == set(DEFAULT_PARAMS)


def test_route_shapes_ignore_variable_names_and_case() -> None:
    assert route_shape("/leads/{uniqueId}") == route_shape("/Leads/{Id}")
    assert route_shape("/leads/example") != route_shape("/leads/{Id}")


METADATA = {
    "operations": [
        {
            "request": {
                "name": "QueryLeads",
                "properties": [{"name": "SearchName", "type": "String", "isRequired": True}],
                "inherits": {"name": "QueryBase"},
            },
            "routes": [{"path": "/api/leads/search", "verbs": "GET,POST"}, {"path": "/x"}],
        },
        {"request": {"name": "Broken"}, "routes": "nope"},
    ],
    "types": [
        {"name": "QueryBase", "properties": [{"name": "Skip"}, {"name": "Take"},
                                              {"name": "Include"}]},
    ],
}  # fmt: skip


def test_servicestack_metadata_with_inherited_properties() -> None:
    desc = parse_description(METADATA, "metadata", base_path="/api")
    assert desc is not None
    op = desc.find("GET", "/leads/search")
    assert op is not None
    assert op.name == "QueryLeads"
    assert [p.name for p in op.params] == ["SearchName", "Skip", "Take", "Include"]
    assert op.param("searchname") is not None
    assert op.params[0].required
    assert desc.find("POST", "/leads/search") is not None
    assert desc.find("DELETE", "/x") is not None  # a route without verbs answers any


OPENAPI = {
    "swagger": "2.0",
    "paths": {
        "/leads": {
            "post": {"operationId": "CreateLead",
                     "parameters": [{"in": "body", "name": "body",
                                     "schema": {"$ref": "#/definitions/CreateLead"}}]},
            "get": {"parameters": [{"name": "ModifiedFrom", "in": "query", "required": True},
                                   {"name": "X-Key", "in": "header"}]},
        },
    },
    "definitions": {"CreateLead": {"required": ["CampaignCode"],
                                   "properties": {"CampaignCode": {"type": "string"},
                                                  "Data": {"type": "object"}}}},
}  # fmt: skip


def test_openapi_body_references_and_query_parameters() -> None:
    desc = parse_description(OPENAPI, "openapi")
    assert desc is not None
    post = desc.find("POST", "/leads")
    assert post is not None
    assert [(p.name, p.required) for p in post.params] == [
        ("CampaignCode", True),
        ("Data", False),
    ]
    get = desc.find("GET", "/leads")
    assert get is not None
    assert [p.name for p in get.params] == ["ModifiedFrom"]


@pytest.mark.parametrize("doc", [None, [], "text", {"paths": {}}, {"operations": "x"}])
def test_garbage_is_not_a_description(doc: object) -> None:
    assert parse_description(doc, "openapi") is None
    assert parse_description(doc, "metadata") is None
