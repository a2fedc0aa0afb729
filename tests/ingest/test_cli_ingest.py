"""``leadpipe ingest``: exit codes, one-line reasons, --json, where results go."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from pipeline.cli import app
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox
from tests.ingest import messy
from tests.ingest.conftest import CAMPAIGN
from tests.ingest.stage_helpers import writer_children

runner = CliRunner()
JSON_FIELDS = {
    "file", "sha256", "campaign", "rows_read", "accepted", "rejected", "refused_by_api",
    "duplicates", "uncertain", "blank_skipped", "reject_files", "receipt_file",
    "schema_source", "duration_s",
}  # fmt: skip


def write_config(tmp: Path) -> Path:
    cfg = tmp / "leadpipe.toml"
    cfg.write_text(
        '[paths]\ninbox = "inbox"\nstate = "state"\nschemas = "schemas"\noutbox = "outbox"\n'
        f'[campaigns.{CAMPAIGN}]\ncolumns = {{ Navn = "name", Telefon = "phone" }}\n',
        encoding="utf-8",
    )
    return cfg


def env_for(sb: Sandbox | None) -> dict[str, str]:
    if sb is None:  # the embedded demo sandbox
        return {"LEADPIPE_API_URL": "", "LEADPIPE_API_USER": "", "LEADPIPE_API_PASSWORD": ""}
    return {
        "LEADPIPE_API_URL": sb.url,
        "LEADPIPE_API_USER": DEMO_USER,
        "LEADPIPE_API_PASSWORD": DEMO_PASSWORD,
    }


def test_json_receipt_against_the_embedded_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path)
    src = tmp_path / "kunder.csv"
    messy.build(src, 40)
    result = runner.invoke(
        app,
        ["--config", str(cfg), "ingest", str(src), "--campaign", CAMPAIGN, "--json"],
        env=env_for(None),
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= JSON_FIELDS
    assert (data["rows_read"], data["accepted"], data["rejected"], data["duplicates"]) == (
        40,
        34,
        5,
        1,
    )
    assert data["schema_source"] == "live"
    # default results folder: ./leadpipe-results/
    assert Path(data["receipt_file"]).parent == tmp_path / "leadpipe-results"
    assert all(Path(p).parent == tmp_path / "leadpipe-results" for p in data["reject_files"])


def test_file_in_the_inbox_gets_design_folders_and_stays_put(sb: Sandbox, tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    folder = tmp_path / "inbox" / CAMPAIGN
    folder.mkdir(parents=True)
    src = folder / "kunder.csv"
    messy.build(src, 40)
    args = ["--config", str(cfg), "ingest", str(src), "--campaign", CAMPAIGN, "--json"]
    result = runner.invoke(app, args, env=env_for(sb))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    receipt = Path(data["receipt_file"])
    assert receipt.parent == folder / "processed"
    assert receipt.name.endswith("_kunder.csv.receipt.txt")
    assert receipt.with_suffix(".json").is_file()
    assert sorted(Path(p).name.split("_", 1)[1] for p in data["reject_files"]) == [
        "kunder.csv.rejects.csv",
        "kunder.csv.rejects.xlsx",
    ]
    assert all(Path(p).parent == folder / "rejected" for p in data["reject_files"])
    assert src.is_file()  # moving the original is the drop-folder service's job
    text = runner.invoke(app, args[:-1], env=env_for(sb))
    assert text.exit_code == 0
    assert "already processed" in text.stdout


def test_missing_required_column_is_one_line_and_non_zero(sb: Sandbox, tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    src = tmp_path / "x.csv"
    src.write_text("Navn;By\nSøren;Aarhus\n", encoding="utf-8")
    result = runner.invoke(
        app, ["--config", str(cfg), "ingest", str(src), "--campaign", CAMPAIGN], env=env_for(sb)
    )
    assert result.exit_code == 4
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: x.csv: ")
    assert "phone" in lines[0]
    assert [r for r in sb.requests() if r["method"] == "POST"] == []


def test_missing_ledger_stops_with_a_state_error(sb: Sandbox, tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "ledger.created").write_text("2026-11-01T10:00:00\n", encoding="utf-8")
    src = tmp_path / "kunder.csv"
    messy.build(src, 10)
    result = runner.invoke(
        app, ["--config", str(cfg), "ingest", str(src), "--campaign", CAMPAIGN], env=env_for(sb)
    )
    assert result.exit_code == 6
    assert "ledger.sqlite is missing" in result.output
    assert "rather than start fresh" in result.output
    assert [r for r in sb.requests() if r["method"] == "POST"] == []


def test_dry_run_and_a_stopped_upload_exit_codes(sb: Sandbox, tmp_path: Path) -> None:
    from pipeline.sandbox import Fault

    cfg = write_config(tmp_path)
    src = tmp_path / "kunder.csv"
    messy.build(src, 40)
    base = ["--config", str(cfg), "ingest", str(src), "--campaign", CAMPAIGN]
    base += ["--out", str(tmp_path / "r")]  # not ./r: the tests leave nothing in the repo
    dry = runner.invoke(app, [*base, "--dry-run", "--json"], env=env_for(sb))
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["dry_run"] is True
    sb.add_fault(Fault("status", route="POST /leads", status=403, after=3, times=0))
    stopped = runner.invoke(app, base, env=env_for(sb))
    assert stopped.exit_code == 5
    assert "upload stopped:" in stopped.output
    sb.clear_faults()
    again = runner.invoke(app, [*base, "--json"], env=env_for(sb))
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["accepted"] == 34


def test_the_reject_files_process_starts_with_the_command_and_ends_with_it(
    sb: Sandbox, tmp_path: Path
) -> None:
    """ingest starts the reject files' process as it begins (it loads meanwhile); the file's
    writer takes it. Whether the command ends with reject files or refuses the file before any
    row is read, no such process is left."""
    cfg = write_config(tmp_path)
    messy.build(tmp_path / "kunder.csv", 40)
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")

    def ingest(name: str) -> Result:
        args = ["--config", str(cfg), "ingest", str(tmp_path / name), "--campaign", CAMPAIGN]
        args += ["--json", "--dry-run", "--out", str(tmp_path / "out")]
        return runner.invoke(app, args, env=env_for(sb))

    done = ingest("kunder.csv")
    assert done.exit_code == 0, done.output
    assert len(json.loads(done.stdout)["reject_files"]) == 2
    assert writer_children() == []
    refused = ingest("empty.csv")
    assert refused.exit_code != 0
    assert "empty" in refused.output
    assert writer_children() == []
