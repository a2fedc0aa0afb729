"""``leadpipe alerts test`` and ``leadpipe alerts`` against a real SMTP server and webhook."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.alerts.conditions import ConditionStore
from pipeline.alerts.events import Alert, Event
from pipeline.cli import app
from pipeline.clock import FakeClock
from tests.alerts.conftest import CANARY, Hook, Mailbox, env_for, write_config

runner = CliRunner()


def test_alerts_test_reports_each_target_and_never_shows_the_password(
    tmp_path: Path, smtp: Mailbox, webhook: Hook
) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9/api", smtp.port, webhook.url)
    result = runner.invoke(app, ["alerts", "test"], env=env_for(cfg))
    assert result.exit_code == 0, result.output
    assert "sent   ops mail (mailto://127.0.0.1:" in result.output
    assert "sent   webhook (json://127.0.0.1:" in result.output
    assert CANARY not in result.output
    assert webhook.titles() == ["[leadpipe] Test message"]
    (mail,) = smtp.texts()
    assert "Test message" in mail
    assert CANARY not in mail

    webhook.status = 500
    result = runner.invoke(app, ["alerts", "test"], env=env_for(cfg))
    assert result.exit_code == 1, result.output
    assert "failed webhook (json://127.0.0.1:" in " ".join(result.output.split())
    assert CANARY not in result.output


def test_alerts_lists_the_conditions_that_hold(tmp_path: Path, webhook: Hook) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9/api", 9, webhook.url)
    result = runner.invoke(app, ["alerts"], env=env_for(cfg))
    assert result.exit_code == 0, result.output
    assert "No alert condition holds." in result.output
    clock = FakeClock(datetime(2026, 3, 30, 7, tzinfo=UTC))
    store = ConditionStore(tmp_path / "state", clock, "Europe/Copenhagen")
    title = "Inbox folder not reachable <b>"
    store.reconcile(
        [Alert(Event.INBOX_UNREACHABLE, "inbox_unreachable", title, "b", Event.DISK_LOW.severity)],
        lambda c: True,
    )
    result = runner.invoke(app, ["alerts"], env=env_for(cfg))
    assert result.exit_code == 0, result.output
    assert "critical: Inbox folder not reachable <b> (since 2026-03-30 09:00 (UTC+02:00))" in (
        result.output
    )
    data = json.loads(runner.invoke(app, ["alerts", "--json"], env=env_for(cfg)).output)
    assert data[0]["key"] == "inbox_unreachable"


@pytest.mark.parametrize("args", [["alerts"], ["alerts", "test"]])
def test_without_targets_it_says_alerts_are_off(tmp_path: Path, args: list[str]) -> None:
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text('[paths]\nstate = "state"\n', encoding="utf-8")
    result = runner.invoke(app, args, env={"LEADPIPE_CONFIG": str(cfg)})
    assert "alert" in result.output.lower()
    assert "[[alerts.targets]]" in result.output
