"""Dynamic text (file names, paths, campaign codes, job names) is printed as written: never
read as rich markup, whichever command prints it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.ingest import messy
from tests.ingest.conftest import CAMPAIGN
from tests.ingest.test_cli_ingest import env_for, write_config

runner = CliRunner()


def test_ingest_prints_a_markup_like_file_name_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path)
    src = tmp_path / "[bold]kunder[status].csv"
    messy.build(src, 5)
    args = ["--config", str(cfg), "ingest", str(src), "--campaign", CAMPAIGN, "--dry-run"]
    result = runner.invoke(app, args, env=env_for(None))
    assert result.exit_code == 0, result.output
    assert "[bold]kunder[status].csv" in result.output


def test_cancel_prints_a_markup_like_file_name_as_written(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    result = runner.invoke(app, ["--config", str(cfg), "cancel", "[status]x.csv"])
    assert result.exit_code == 4
    assert "'[status]x.csv'" in result.output


def test_export_prints_a_markup_like_job_name_as_written(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    result = runner.invoke(app, ["--config", str(cfg), "export", "[bold]nightly"])
    assert result.exit_code != 0
    assert "[bold]nightly" in result.output


def test_api_commands_print_a_markup_like_campaign_code_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path)
    result = runner.invoke(
        app, ["--config", str(cfg), "fields", "[bold]NO-SUCH"], env=env_for(None)
    )
    assert result.exit_code != 0
    assert "[bold]NO-SUCH" in result.output


def test_status_prints_a_markup_like_inbox_path_as_written(tmp_path: Path) -> None:
    home = tmp_path / "[status]"
    home.mkdir()
    cfg = write_config(home)
    result = runner.invoke(app, ["--config", str(cfg), "status"])
    assert "[status]" in result.output, result.output
