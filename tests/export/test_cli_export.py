"""``leadpipe export`` / ``leadpipe exports``: thin shell, clear messages, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox

runner = CliRunner()


def config(tmp_path: Path, url: str = "") -> Path:
    cfg = tmp_path / "leadpipe.toml"
    api = f'[api]\nurl = "{url}"\nmax_retries = 0\n' if url else ""
    cfg.write_text(
        'timezone = "Europe/Copenhagen"\n' + api + "[[exports]]\n"
        'name = "nightly"\nsearch = "api_import_export"\nstart = "2026-01-01"\n'
        '[[exports]]\nname = "broken"\nsearch = "x"\nwindow = "weekly"\n',
        encoding="utf-8",
    )
    return cfg


ENV = {"LEADPIPE_API_USER": DEMO_USER, "LEADPIPE_API_PASSWORD": DEMO_PASSWORD}


def test_exports_json_lists_every_job(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--config", str(config(tmp_path)), "exports", "--json"])
    assert result.exit_code == 0, result.output
    jobs = {j["name"]: j for j in json.loads(result.output)}
    assert jobs["nightly"]["state"] == "never run"
    assert jobs["nightly"]["watermark"] is None
    assert jobs["nightly"]["next_run"].endswith(("T02:00:00+01:00", "T02:00:00+02:00"))
    assert jobs["broken"]["state"] == "error"
    assert jobs["broken"]["message"].startswith("exports.broken.window: unknown window 'weekly'")


def test_exports_table(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--config", str(config(tmp_path)), "exports"])
    assert result.exit_code == 0, result.output
    assert "nightly: no export written yet" in result.output


def test_export_from_without_to_is_refused(tmp_path: Path) -> None:
    cfg = str(config(tmp_path))
    result = runner.invoke(app, ["--config", cfg, "export", "nightly", "--from", "2026-01-01"])
    assert result.exit_code == 3
    assert "give both (YYYY-MM-DD, --to exclusive)" in result.output
    result = runner.invoke(
        app, ["--config", cfg, "export", "nightly", "--from", "2026-01-05", "--to", "2026-01-01"]
    )
    assert result.exit_code == 3
    assert "a window must end after it starts" in result.output


def test_unknown_job_and_bad_job(tmp_path: Path) -> None:
    cfg = str(config(tmp_path))
    result = runner.invoke(app, ["--config", cfg, "export", "nope", "--dry-run"])
    assert result.exit_code == 3
    assert "no job called 'nope' (known: broken, nightly)" in result.output
    result = runner.invoke(app, ["--config", cfg, "export", "broken", "--dry-run"])
    assert result.exit_code == 3
    assert "unknown window 'weekly'" in result.output


def test_export_window_now_against_the_sandbox(tmp_path: Path) -> None:
    with Sandbox() as sb:
        cfg = str(config(tmp_path, sb.url))
        args = ["--config", cfg, "export", "nightly", "--from", "2026-01-01", "--to", "2026-01-03"]
        dry = runner.invoke(app, [*args, "--dry-run"], env=ENV)
        assert dry.exit_code == 0, dry.output
        assert "would write" in dry.output
        assert not (tmp_path / "outbox").exists()
        result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    assert "row(s) ->" in result.output
    out = tmp_path / "outbox" / "nightly" / "nightly_2026-01-01_2026-01-03.csv"
    assert out.is_file()
    assert Path(f"{out}.manifest.json").is_file()


def test_export_without_a_window_is_refused_in_a_cluster(tmp_path: Path) -> None:
    """A catch-up by hand would start from this node's own watermark, uncoordinated with the
    other nodes (docs/cluster.md, "Exports"): refused, and nothing is asked of the database."""
    cfg = config(tmp_path)
    ledger = '\n[state]\nledger = "postgresql://leadpipe@127.0.0.1:1/leadpipe"\n'
    cfg.write_text(cfg.read_text(encoding="utf-8") + ledger, encoding="utf-8")
    for extra in ([], ["--dry-run"]):
        result = runner.invoke(app, ["--config", str(cfg), "export", "nightly", *extra])
        assert result.exit_code == 3, result.output
        assert "in a cluster" in result.output
        assert "--from/--to" in result.output
    assert not (tmp_path / "outbox").exists()
