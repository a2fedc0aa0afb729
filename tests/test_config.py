"""Settings: file + environment, every problem reported together."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import DEFAULT_ENDPOINTS, load_settings
from pipeline.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "conf" / "leadpipe.toml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


def test_paths_are_relative_to_the_config_folder(tmp_path: Path) -> None:
    p = write(tmp_path, '[paths]\ninbox = "../drop"\nstate = "/var/lib/lp"\n')
    s = load_settings(p, env={})
    assert s.paths.inbox == (tmp_path / "drop").resolve()
    assert s.paths.state == Path("/var/lib/lp")
    assert s.paths.outbox == (tmp_path / "conf" / "outbox").resolve()
    assert s.api.embedded


def test_environment_overrides_file_and_password_only_from_env(tmp_path: Path) -> None:
    p = write(tmp_path, '[api]\nurl = "https://a.example/api"\nuser = "file@x"\n')
    env = {
        "LEADPIPE_API_URL": "https://b.example/api",
        "LEADPIPE_API_USER": "env@x",
        "LEADPIPE_API_PASSWORD": "canary-Pw-123",
    }
    s = load_settings(p, env=env)
    assert (s.api.url, s.api.user, s.api.password) == (
        "https://b.example/api",
        "env@x",
        "canary-Pw-123",
    )
    assert "canary-Pw-123" not in repr(s)
    assert "canary-Pw-123" not in repr(s.api)


def test_config_file_chosen_by_environment(tmp_path: Path) -> None:
    p = write(tmp_path, "[intake]\nsettle_seconds = 1.5\n")
    s = load_settings(None, env={"LEADPIPE_CONFIG": str(p)})
    assert s.intake.settle_seconds == 1.5
    assert s.source == str(p)


def test_every_problem_is_reported_together(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
[api]
url = "ftp://nope"
password = "secret-in-file"
read_timeout = "slow"
[api.endpoints]
leads = "no-slash"
bogus = "/x"
[intake]
concurrency = 0
settle = 3
[whatever]
""",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(p, env={})
    keys = {pr.key for pr in info.value.problems}
    assert {
        "api.url",
        "api.password",
        "api.read_timeout",
        "api.endpoints.leads",
        "api.endpoints.bogus",
        "intake.concurrency",
        "intake.settle",
        "whatever",
    } <= keys
    assert all(pr.source == str(p) for pr in info.value.problems if pr.key != "api.user")
    assert "secret-in-file" not in str(info.value)


def test_endpoints_default_to_the_contract_and_can_be_corrected(tmp_path: Path) -> None:
    p = write(tmp_path, '[api.endpoints]\nimport_example = "/leads/importexample"\n')
    s = load_settings(p, env={})
    assert s.api.endpoints["import_example"] == "/leads/importexample"
    assert s.api.endpoints["simpleleads"] == DEFAULT_ENDPOINTS["simpleleads"]


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_campaign_and_export_sections(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
[campaigns.B2B-DK-SPRING]
columns = { "Tlf." = "phone" }
delimiter = ";"
[[exports]]
name = "daily"
search = "api_import_export"
[[exports]]
name = "daily"
search = "x"
format = "xml"
""",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(p, env={})
    keys = {pr.key for pr in info.value.problems}
    assert keys == {"exports[1].name", "exports[1].format"}
