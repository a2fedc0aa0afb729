"""Set-up that explains itself: no config is an error naming where leadpipe looked; a wrong
password is a setting to fix (exit 3); text in CLI messages is never read as markup."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.sandbox import Sandbox
from pipeline.sandbox.seed import DEMO_USER
from tests.dropfolder.test_real_ingest import CODE, leads_csv, write_config

runner = CliRunner()
NO_ENV = {"LEADPIPE_CONFIG": "", "LEADPIPE_DEMO": ""}


def test_no_config_is_an_error_naming_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["config"], env=NO_ENV)
    assert result.exit_code == 3, result.output
    out = " ".join(result.output.split())
    assert "no configuration file found" in out
    assert "--config (not given)" in out
    assert "$LEADPIPE_CONFIG (not set)" in out
    assert str(tmp_path / "config" / "leadpipe.toml") in out
    assert "--demo" in out
    assert not (tmp_path / "inbox").exists()
    assert not (tmp_path / "state").exists()


def test_the_demo_must_be_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args, env in (
        (["--demo", "config"], NO_ENV),
        (["config"], {**NO_ENV, "LEADPIPE_DEMO": "1"}),
    ):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
        assert "built-in demo" in result.output


def test_markup_like_text_is_printed_as_written(tmp_path: Path) -> None:
    missing = tmp_path / "[bold]x[status].toml"
    result = runner.invoke(app, ["--config", str(missing), "config"], env=NO_ENV)
    assert result.exit_code == 3
    assert "[bold]x[status].toml" in result.output
    folder = tmp_path / "[status]"
    cfg = tmp_path / "[bold]leadpipe.toml"
    cfg.write_text(f'[paths]\ninbox = "{folder.as_posix()}/inbox"\n', encoding="utf-8")
    result = runner.invoke(app, ["--config", str(cfg), "config"], env=NO_ENV)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert f"configuration read from {cfg}: OK" in out
    assert f"{folder}/inbox" in out


def test_run_once_with_a_wrong_password_exits_3(sandbox: Sandbox, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sandbox.url)
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    (inbox / "a.csv").write_bytes(leads_csv("PW", valid=2, invalid=0)[0])
    env = {
        **NO_ENV,
        "LEADPIPE_CONFIG": str(cfg),
        "LEADPIPE_API_USER": DEMO_USER,
        "LEADPIPE_API_PASSWORD": "not-the-password",
    }
    result = runner.invoke(app, ["run", "--once"], env=env)
    assert result.exit_code == 3, result.output
    out = " ".join(result.output.split())
    assert "refused the user name or password (401)" in out
    assert "Fix the credentials" in out
    assert "Run again" not in out
    assert "not-the-password" not in out
