"""``leadpipe doctor``, ``campaigns``, ``fields``, ``searches`` through the CLI (CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, RESTRICTED_PASSWORD, RESTRICTED_USER, Sandbox

runner = CliRunner()


def config(tmp_path: Path, folders: list[str], exports: list[str], api: str = "") -> Path:
    for name in [*folders, ".leadpipe"]:
        (tmp_path / "inbox" / name).mkdir(parents=True, exist_ok=True)
    text = '[paths]\ninbox = "inbox"\noutbox = "outbox"\nstate = "state"\n'
    text += f"[api]\n{api}\n"
    for i, search in enumerate(exports):
        text += f'\n[[exports]]\nname = "job{i}"\nsearch = "{search}"\n'
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text(text, encoding="utf-8")
    return cfg


def env_for(sb: Sandbox | None, user: str = "", password: str = "") -> dict[str, str]:
    return {
        "LEADPIPE_API_URL": sb.url if sb else "",
        "LEADPIPE_API_USER": user,
        "LEADPIPE_API_PASSWORD": password,
        "COLUMNS": "200",
    }


def test_doctor_exits_1_naming_the_missing_right_for_the_restricted_account(
    sb: Sandbox, tmp_path: Path
) -> None:
    cfg = config(tmp_path, ["B2B-DK-SPRING"], ["api_import_export"])
    result = runner.invoke(
        app, ["--config", str(cfg), "doctor"], env=env_for(sb, RESTRICTED_USER, RESTRICTED_PASSWORD)
    )
    assert result.exit_code == 1, result.output
    out = result.output
    assert "exports need Leads: GET to read leads; the account lacks it" in out
    assert "inbox/B2B-DK-SPRING: campaign B2B-DK-SPRING" in out
    assert "Leads: POST: the account may upload leads" in out
    assert "1 problem(s)" in out
    assert RESTRICTED_PASSWORD not in out


def test_doctor_names_unreachable_and_unknown_inbox_campaigns(sb: Sandbox, tmp_path: Path) -> None:
    cfg = config(tmp_path, ["INTERNAL-TEST", "NO-SUCH"], [])
    result = runner.invoke(
        app, ["--config", str(cfg), "doctor", "--json"], env=env_for(sb, DEMO_USER, DEMO_PASSWORD)
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["problems"] == [
        "inbox/INTERNAL-TEST: the account lacks a project right reaching campaign INTERNAL-TEST; "
        "ask for its project to be added to the account's project rights",
        "inbox/NO-SUCH: there is no campaign with code NO-SUCH; rename the folder to a "
        "campaign code",
    ]
    assert report["account"]["resource_rights"]["Leads"] == ["GET", "POST"]
    assert report["limits"]["per_minute"] == 1_000_000


def test_doctor_passes_for_the_full_account(sb: Sandbox, tmp_path: Path) -> None:
    cfg = config(tmp_path, ["B2B-DK-SPRING"], ["api_import_export", "daily_outcomes"])
    result = runner.invoke(
        app, ["--config", str(cfg), "doctor"], env=env_for(sb, DEMO_USER, DEMO_PASSWORD)
    )
    assert result.exit_code == 0, result.output
    assert "Everything configured can work." in result.output
    assert "export job1: search 'daily_outcomes' exists" in result.output


def test_doctor_missing_search_fails(sb: Sandbox, tmp_path: Path) -> None:
    cfg = config(tmp_path, [], ["no_such_search"])
    result = runner.invoke(
        app, ["--config", str(cfg), "doctor"], env=env_for(sb, DEMO_USER, DEMO_PASSWORD)
    )
    assert result.exit_code == 1
    assert "export job0: search 'no_such_search' does not exist" in result.output


def test_doctor_wrong_password_and_unreachable_api(sb: Sandbox, tmp_path: Path) -> None:
    cfg = config(tmp_path, [], [], api="max_retries = 0")
    bad = runner.invoke(app, ["--config", str(cfg), "doctor"], env=env_for(sb, DEMO_USER, "nope"))
    assert bad.exit_code == 1
    assert "the credentials were refused" in bad.output
    env = env_for(sb, DEMO_USER, DEMO_PASSWORD)
    env["LEADPIPE_API_URL"] = "http://127.0.0.1:9/api"
    down = runner.invoke(app, ["--config", str(cfg), "doctor"], env=env)
    assert down.exit_code == 1
    assert "cannot reach the API" in down.output


def test_doctor_against_the_embedded_sandbox(tmp_path: Path) -> None:
    cfg = config(tmp_path, ["B2B-DK-SPRING"], ["api_import_export"])
    result = runner.invoke(app, ["--config", str(cfg), "doctor"], env=env_for(None))
    assert result.exit_code == 0, result.output
    assert "embedded sandbox" in result.output


def test_campaigns_searches_and_fields_as_json(sb: Sandbox, tmp_path: Path) -> None:
    cfg = config(tmp_path, [], [])
    env = env_for(sb, DEMO_USER, DEMO_PASSWORD)
    camps = runner.invoke(app, ["--config", str(cfg), "campaigns", "--json"], env=env)
    assert camps.exit_code == 0, camps.output
    codes = {c["code"] for c in json.loads(camps.output)}
    assert codes == {"B2B-DK-SPRING", "B2B-SE-AUTUMN", "CONSUMER-DK-ENERGI"}
    searches = runner.invoke(app, ["--config", str(cfg), "searches", "--json"], env=env)
    assert {s["name"] for s in json.loads(searches.output)} == {
        "api_import_export",
        "daily_outcomes",
    }
    fields = runner.invoke(
        app, ["--config", str(cfg), "fields", "B2B-DK-SPRING", "--json"], env=env
    )
    assert fields.exit_code == 0, fields.output
    specs = {f["name"]: f for f in json.loads(fields.output)}
    assert list(specs) == ["name", "phone", "email", "segment", "note"]
    assert specs["name"]["required"]
    assert specs["phone"]["required"]
    assert not specs["email"]["required"]
    assert specs["phone"]["type"] == "phone"
    assert specs["note"]["regex"] == ".*"


def test_tables_for_people_and_a_clear_error(sb: Sandbox, tmp_path: Path) -> None:
    cfg = config(tmp_path, [], [])
    env = env_for(sb, DEMO_USER, DEMO_PASSWORD)
    table = runner.invoke(app, ["--config", str(cfg), "campaigns"], env=env)
    assert table.exit_code == 0
    assert "B2B spring outreach" in table.output
    fields = runner.invoke(app, ["--config", str(cfg), "fields", "B2B-DK-SPRING"], env=env)
    assert "segment" in fields.output
    assert "dropdown" in fields.output
    missing = runner.invoke(app, ["--config", str(cfg), "fields", "NO-SUCH"], env=env)
    assert missing.exit_code == 5
    assert "the API found no such thing (404)" in missing.output
    assert "Traceback" not in missing.output
