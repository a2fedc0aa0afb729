"""``[alerts]`` in the config: secrets only from the environment, every problem reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.alerts.targets import Target, expand, literal_secret, redact
from pipeline.cli import app
from pipeline.config import load_settings
from pipeline.errors import ConfigError

runner = CliRunner()
CANARY = "canary-Smtp-Pw/4711@x"


def cfg(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "leadpipe.toml"
    path.write_text(text, encoding="utf-8")
    return path


MAIL = """
[alerts]
digest_at = "07:30"
[[alerts.targets]]
name = "ops mail"
url = "mailtos://ops:${LEADPIPE_SMTP_PASSWORD}@smtp.example.com?to=ops@example.com"
events = ["file_failed", "api_down"]
min_severity = "critical"
[[alerts.expect]]
campaign = "B2B-DK-SPRING"
by = "09:00"
days = "mon-fri"
"""


def test_target_password_comes_from_the_environment_and_is_never_shown(tmp_path: Path) -> None:
    path = cfg(tmp_path, MAIL)
    s = load_settings(path, env={"LEADPIPE_SMTP_PASSWORD": CANARY})
    (target,) = s.alerts.targets
    assert s.alerts.enabled
    assert "${LEADPIPE_SMTP_PASSWORD}" in target.url  # the file's text: safe to show
    assert CANARY not in repr(s)
    t = Target.of(target)
    assert "canary-Smtp-Pw%2F4711%40x" in t.url  # percent-encoded inside the URL
    assert t.shown == "mailtos://smtp.example.com"
    assert CANARY not in repr(t)
    assert s.alerts.expect[0].schedule == "0 9 * * mon-fri"
    env = {"LEADPIPE_SMTP_PASSWORD": CANARY, "LEADPIPE_CONFIG": str(path)}
    for args in (["config", "--json"], ["config"]):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
        assert CANARY not in result.output
        assert "4711" not in result.output
    data = json.loads(runner.invoke(app, ["config", "--json"], env=env).output)
    assert data["alerts"]["targets"][0]["name"] == "ops mail"


def test_a_literal_password_and_a_missing_variable_are_config_errors(tmp_path: Path) -> None:
    text = """
[[alerts.targets]]
url = "mailtos://ops:hunter22@smtp.example.com?to=ops@example.com"
[[alerts.targets]]
url = "json://hooks.example.com/x?token=abc123"
[[alerts.targets]]
url = "${LEADPIPE_TEAMS_URL}"
"""
    with pytest.raises(ConfigError) as err:
        load_settings(cfg(tmp_path, text), env={})
    message = str(err.value)
    assert "alerts.targets[0].url" in message
    assert "put it in an environment variable" in message
    assert "alerts.targets[1].url" in message
    assert "LEADPIPE_TEAMS_URL is not set" in message
    assert "hunter22" not in message
    assert "abc123" not in message


def test_leadpipe_config_reports_bad_times_days_events_all_together(tmp_path: Path) -> None:
    text = """
[alerts]
digest_at = "25:00"
reject_rate_percent = 140
[[alerts.targets]]
url = "json://127.0.0.1:9/hook"
events = ["file_failed", "nonsense"]
min_severity = "loud"
[[alerts.expect]]
campaign = "A"
by = "9h"
[[alerts.expect]]
campaign = "B"
by = "09:00"
days = "weekdays-ish"
[[alerts.expect]]
campaign = "C"
by = "00:00"
"""
    result = runner.invoke(app, ["--config", str(cfg(tmp_path, text)), "config"], env={})
    assert result.exit_code == 3
    out = " ".join(result.output.split())
    for key in (
        "alerts.digest_at",
        "alerts.reject_rate_percent",
        "alerts.targets[0].events",
        "alerts.targets[0].min_severity",
        "alerts.expect[0].by",
        "alerts.expect[1].days",
        "alerts.expect[2].by",
    ):
        assert key in out, key
    assert "would have to come before its day begins" in out


def test_no_targets_means_alerts_off() -> None:
    s = load_settings(None, env={"LEADPIPE_DEMO": "1"})
    assert not s.alerts.enabled


def test_expand_redact_and_literal_secret() -> None:
    assert expand("${A}", {"A": "json://h/p?x=1"}) == "json://h/p?x=1"
    assert expand("mailto://u:${A}@h", {"A": "p@ss"}) == "mailto://u:p%40ss@h"
    assert literal_secret("mailto://u:${A}@h") == ""
    assert literal_secret("mailto://u:pw@h") == "a password"
    assert literal_secret("json://h/p?pass=${X}") == ""
    assert redact("mailto://u:pw@127.0.0.1:2525?to=a@b") == "mailto://127.0.0.1:2525"
    assert redact("workflows://prod.example.com:443/abc/sig") == "workflows://prod.example.com:443"
    assert redact("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnl/#ops") == "slack://***"
    assert redact("${X}") == "(not a URL)"
    # credentials in header arguments, signatures, tokens, or a token scheme's path
    for written in (
        "json://h/x?+Authorization=Bearer%20abc",
        "json://h/x?-apikey=abc",
        "json://h/x?signature=abc",
        "json://h/x?access_token=abc",
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnl/#ops",
        "workflows://prod.example.com:443/wf/SIG",
    ):
        assert literal_secret(written), written
    assert literal_secret("json://h/x?+Authorization=${AUTH}") == ""
    assert literal_secret("slack://${SLACK_TOKENS}/#ops") == ""
    assert literal_secret("json://127.0.0.1:9/hook?format=text") == ""


def test_leadpipe_config_refuses_a_target_url_apprise_cannot_use(tmp_path: Path) -> None:
    path = cfg(
        tmp_path,
        '[paths]\nstate = "state"\n[[alerts.targets]]\nname = "typo"\n'
        'url = "mailtoo://ops.example.com"\n'
        '[[alerts.targets]]\nname = "hook"\nurl = "json://127.0.0.1:9/hook"\n',
    )
    result = runner.invoke(app, ["--config", str(path), "config"], env={})
    assert result.exit_code == 3, result.output
    assert "alerts.targets[0].url" in result.output
    assert "Apprise does not understand the URL of target typo" in result.output
    assert "alerts.targets[1]" not in result.output  # the good one is not named
