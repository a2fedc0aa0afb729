"""``leadpipe config`` never shows a password, not even one written into the API URL."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_settings

runner = CliRunner()

URL_SECRET = "canary-Url-Pw-4711"
ENV_SECRET = "canary-Env-Pw-0815"
URL = f"https://api%40customer.com:{URL_SECRET}@wshero01.example/api"


def config_file(tmp_path: Path, text: str = "") -> Path:
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text(text, encoding="utf-8")
    return cfg


def env(url: str) -> dict[str, str]:
    return {
        "LEADPIPE_API_URL": url,
        "LEADPIPE_API_USER": "api@customer.com",
        "LEADPIPE_API_PASSWORD": ENV_SECRET,
    }


def test_config_json_leaves_the_password_out_of_the_api_url(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["--config", str(config_file(tmp_path)), "config", "--json"], env=env(URL)
    )
    assert result.exit_code == 0, result.output
    assert URL_SECRET not in result.output
    assert ENV_SECRET not in result.output
    data = json.loads(result.output)
    assert data["api"]["url"] == "https://wshero01.example/api"
    assert data["api"]["password"] == "***"


def test_config_text_leaves_the_password_out_of_the_api_url(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--config", str(config_file(tmp_path)), "config"], env=env(URL))
    assert result.exit_code == 0, result.output
    assert URL_SECRET not in result.output
    assert "API: https://wshero01.example/api" in result.output


def test_a_url_with_a_password_in_the_config_file_is_shown_without_it(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, f'[api]\nurl = "{URL}"\n')
    for args in (["config", "--json"], ["config"]):
        result = runner.invoke(app, ["--config", str(cfg), *args], env=env(""))
        assert result.exit_code == 0, result.output
        assert URL_SECRET not in result.output, args
        assert "wshero01.example/api" in result.output, args


def test_a_refused_url_is_named_without_its_password(tmp_path: Path) -> None:
    bad = f"ftp://api:{URL_SECRET}@wshero01.example/api"
    result = runner.invoke(app, ["--config", str(config_file(tmp_path)), "config"], env=env(bad))
    assert result.exit_code == 3
    assert "api.url" in result.output
    assert URL_SECRET not in result.output


def test_the_settings_repr_leaves_the_password_out_of_the_url(tmp_path: Path) -> None:
    settings = load_settings(config_file(tmp_path), env=env(URL))
    assert settings.api.url == URL  # the client still gets the URL as configured
    assert URL_SECRET not in repr(settings.api)
    assert ENV_SECRET not in repr(settings)
