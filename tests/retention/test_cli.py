"""``leadpipe purge`` and ``leadpipe forget`` as a person runs them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.ledger.sqlite import open_ledger


def config(tmp: Path, retention: str) -> Path:
    cfg = tmp / "leadpipe.toml"
    cfg.write_text(
        '[paths]\ninbox = "inbox"\noutbox = "outbox"\nstate = "state"\nschemas = "schemas"\n'
        f"[retention]\n{retention}\n",
        encoding="utf-8",
    )
    open_ledger(tmp / "state").close()
    return cfg


def test_purge_dry_run_lists_and_purge_deletes(tmp_path: Path) -> None:
    cfg = config(tmp_path, "failed_days = 7\nreceipts_days = 0")
    failed = tmp_path / "inbox" / "B2B-DK-SPRING" / "failed"
    failed.mkdir(parents=True)
    old = failed / "20200101-090000_x.csv"
    old.write_text("Phone\n+4520000001\n", encoding="utf-8")
    receipt = failed.parent / "processed" / "20200101-090000_y.csv.receipt.txt"
    receipt.parent.mkdir()
    receipt.write_text("receipt\n", encoding="utf-8")
    runner = CliRunner()
    listed = runner.invoke(app, ["--config", str(cfg), "purge", "--dry-run"])
    assert listed.exit_code == 0, listed.output
    assert "failed" in listed.output
    assert str(old) in listed.output
    assert "1 file(s) would be deleted" in listed.output
    assert old.is_file()
    as_json = json.loads(
        runner.invoke(app, ["--config", str(cfg), "purge", "--dry-run", "--json"]).output
    )
    assert as_json["counts"]["failed"] == 1
    assert as_json["dry_run"] is True
    done = runner.invoke(app, ["--config", str(cfg), "purge"])
    assert done.exit_code == 0, done.output
    assert "1 file(s) were deleted" in done.output
    assert not old.exists()
    assert receipt.is_file()
    again = runner.invoke(app, ["--config", str(cfg), "purge"])
    assert "Nothing is past its retention period." in again.output


def test_forget_reports_what_it_changed(tmp_path: Path) -> None:
    cfg = config(tmp_path, 'forget_originals = "rewrite"')
    rejected = tmp_path / "inbox" / "B2B-DK-SPRING" / "rejected"
    rejected.mkdir(parents=True)
    rejects = rejected / "20260101-090000_x.csv.rejects.csv"
    rejects.write_text("Name;Phone\nJane;+45 20 00 00 01\nBob;+4520000002\n", encoding="utf-8")
    runner = CliRunner()
    done = runner.invoke(app, ["--config", str(cfg), "forget", "0045-2000-0001"])
    assert done.exit_code == 0, done.output
    assert f"rewritten {rejects} (1 row(s))" in done.output
    assert "never calls the API" in done.output
    assert rejects.read_text(encoding="utf-8") == "Name;Phone\nBob;+4520000002\n"
    none = runner.invoke(app, ["--config", str(cfg), "forget", "nobody@example.dk", "--json"])
    assert json.loads(none.output)["changes"] == []


def test_forget_refuses_a_value_too_short_to_name_a_person(tmp_path: Path) -> None:
    cfg = config(tmp_path, "")
    done = CliRunner().invoke(app, ["--config", str(cfg), "forget", "SMB"])
    assert done.exit_code == 2
    assert "too short to name one person" in done.output
