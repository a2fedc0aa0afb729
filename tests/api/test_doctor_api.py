"""``leadpipe doctor --api`` against the sandbox's own description, over real HTTP."""

from __future__ import annotations

import csv
import json
import tomllib
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.doctor_api import NO_DESCRIPTION
from pipeline.sandbox import DEMO_PASSWORD, DEMO_SEED_PATH, DEMO_USER, Fault, Sandbox

runner = CliRunner()
ENV = {"LEADPIPE_API_USER": DEMO_USER, "LEADPIPE_API_PASSWORD": DEMO_PASSWORD, "COLUMNS": "200"}
#: a tenant that names the export window ModifiedFrom/ModifiedTo and wants Include=data
OTHER_NAMES = {
    "leads_search": "SearchName",
    "leads_from": "ModifiedFrom",
    "leads_to": "ModifiedTo",
    "csv_from": "ModifiedFrom",
    "csv_to": "ModifiedTo",
}
FIX_LINES = [
    '[api.params] leads_from = "ModifiedFrom"',
    '[api.params] leads_to = "ModifiedTo"',
    '[api.params] csv_from = "ModifiedFrom"',
    '[api.params] csv_to = "ModifiedTo"',
]


def seed(**tenant: Any) -> dict[str, Any]:
    """The demo tenant with ``[tenant]`` settings changed."""
    data = tomllib.loads(DEMO_SEED_PATH.read_text(encoding="utf-8"))
    data["tenant"].update(tenant)
    return data


def write_config(tmp_path: Path, url: str, extra: str = "", exports: bool = False) -> Path:
    text = 'timezone = "Europe/Copenhagen"\n[paths]\ninbox = "inbox"\noutbox = "outbox"\n'
    text += f'state = "state"\n[api]\nurl = "{url}"\nmax_retries = 0\n{extra}\n'
    if exports:
        for fmt in ("objects", "csv"):
            text += f'[[exports]]\nname = "{fmt}"\nsearch = "daily_outcomes"\nformat = "{fmt}"\n'
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text(text, encoding="utf-8")
    return cfg


def doctor_api(cfg: Path, *more: str) -> Any:
    return runner.invoke(app, ["--config", str(cfg), "doctor", "--api", *more], env=ENV)


def test_default_sandbox_prints_a_clean_table(tmp_path: Path) -> None:
    with Sandbox() as sb:
        result = doctor_api(write_config(tmp_path, sb.url))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "what leadpipe sends" in out
    assert "what the tenant declares" in out
    assert "GetLeads: GET /leads" in out
    assert "GetLead: GET /leads/{UniqueId}" in out  # route templates match by shape
    assert "mismatch" not in out
    assert "Everything leadpipe sends is what the tenant declares." in out


def test_the_embedded_demo_is_clean_too(tmp_path: Path) -> None:
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text('[paths]\nstate = "state"\ninbox = "inbox"\n', encoding="utf-8")
    result = runner.invoke(app, ["--config", str(cfg), "doctor", "--api", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["embedded"]
    assert report["description"] == "metadata"
    assert {r["verdict"] for r in report["rows"]} == {"ok"}


def test_other_names_are_named_with_the_fixing_lines_then_exports_work(tmp_path: Path) -> None:
    strict = seed(strict_params=True, leads_include=True, params=OTHER_NAMES)
    with Sandbox(strict) as sb:
        result = doctor_api(write_config(tmp_path, sb.url))
        assert result.exit_code == 1, result.output
        for line in FIX_LINES:
            assert line in result.output
        assert "4 mismatch(es)" in result.output
        assert '[api] leads_include = ["data"]' in result.output  # the declared Include
        report = json.loads(doctor_api(write_config(tmp_path, sb.url), "--json").output)
        assert report["fixes"] == FIX_LINES
        missing = {r["sent"].strip() for r in report["rows"] if r["verdict"] == "mismatch"}
        assert missing == {"from", "to"}

        fixed = 'leads_include = ["data"]\n[api.params]\n'
        fixed += "\n".join(line.removeprefix("[api.params] ") for line in FIX_LINES)
        cfg = write_config(tmp_path, sb.url, fixed, exports=True)
        clean = doctor_api(cfg)
        assert clean.exit_code == 0, clean.output
        assert "Everything leadpipe sends is what the tenant declares." in clean.output
        start, end = date.today() - timedelta(days=40), date.today() + timedelta(days=1)
        for job in ("objects", "csv"):
            args = ["--config", str(cfg), "export", job, "--from", str(start), "--to", str(end)]
            done = runner.invoke(app, args, env=ENV)
            assert done.exit_code == 0, done.output
        sent = [e for e in sb.tenant.log.entries() if e["path"] in ("/leads", "/leads/csv")]
    assert sent
    assert all(e["status"] == 200 for e in sent)
    assert all("ModifiedFrom" in e["query"] and "from" not in e["query"] for e in sent)
    objects = next((tmp_path / "outbox" / "objects").glob("*.csv"))
    with objects.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows
    assert "phone" in rows[0]
    assert any(r["phone"] for r in rows)
    assert next((tmp_path / "outbox" / "csv").glob("*.csv")).stat().st_size > 0


def test_a_tenant_without_a_description_gets_probes(tmp_path: Path) -> None:
    with Sandbox(seed(describe=False)) as sb:
        cfg = write_config(tmp_path, sb.url, exports=True)
        result = doctor_api(cfg)
        assert result.exit_code == 0, result.output
        assert NO_DESCRIPTION in result.output
        report = json.loads(doctor_api(cfg, "--json").output)
    assert report["description"] is None
    assert [a["note"] for a in report["attempts"]] == ["not served (404)"] * 2
    probes = {p["endpoint"]: p for p in report["probes"]}
    assert set(probes) >= {"myaccount", "campaigns", "import_example", "leads", "leads_csv"}
    assert {p["verdict"] for p in probes.values()} == {"ok"}
    assert probes["leads"]["request"] == "GET /leads (daily_outcomes)"


def test_probes_name_a_parameter_the_tenant_refuses(tmp_path: Path) -> None:
    with Sandbox(seed(describe=False, strict_params=True, params=OTHER_NAMES)) as sb:
        result = doctor_api(write_config(tmp_path, sb.url, exports=True), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    probes = {p["endpoint"]: p for p in report["probes"]}
    assert probes["leads"]["verdict"] == "mismatch"
    assert "'from' is not a parameter of GetLeads" in probes["leads"]["result"]
    assert probes["leads"]["fix"] == ["[api.params] leads_from = the tenant's name for it"]
    assert probes["myaccount"]["verdict"] == "ok"


@pytest.mark.parametrize("broken", ["html", "garbled"])
def test_a_broken_description_falls_back_to_the_other(tmp_path: Path, broken: str) -> None:
    with Sandbox() as sb:
        if broken == "html":
            sb.add_fault(Fault("html", route="GET /types/metadata.json", status=200))
        else:
            sb.add_fault(Fault("garbled", route="GET /types/metadata.json"))
        result = doctor_api(write_config(tmp_path, sb.url), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["description"] == "openapi"
    assert not report["attempts"][0]["served"]


def test_a_moved_route_gets_its_endpoint_line(tmp_path: Path) -> None:
    with Sandbox() as sb:
        cfg = write_config(tmp_path, sb.url, '[api.endpoints]\nsimpleleads = "/leads/simple"\n')
        result = doctor_api(cfg, "--json")
    assert result.exit_code == 1, result.output
    assert json.loads(result.output)["fixes"] == ['[api.endpoints] simpleleads = "/simpleleads"']


def test_an_unreachable_api_exits_5(tmp_path: Path) -> None:
    with Sandbox() as sb:
        url = sb.url
    result = doctor_api(write_config(tmp_path, url))
    assert result.exit_code == 5, result.output
    assert "cannot reach the API" in result.output
    assert DEMO_PASSWORD not in result.output
