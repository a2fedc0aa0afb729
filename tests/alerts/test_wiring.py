"""Apprise is loaded only when alerts are configured; the status page lists the conditions,
escaped; the status file carries them to ``leadpipe status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.alerts.events import ActiveCondition, Event, Severity
from pipeline.dropfolder.status import IntakeStatus
from pipeline.service.snapshot import ServiceStatus
from pipeline.service.status import render_html

_PROBE = """
import contextlib, io, sys
from pathlib import Path
cfg = Path(sys.argv[1])
sys.argv = ["leadpipe", *sys.argv[2:]]
from pipeline.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main()
    except SystemExit:
        pass
print("apprise" in sys.modules)
from pipeline.config import load_settings
from pipeline.alerts.monitor import open_alerting
from pipeline.clock import SystemClock
open_alerting(load_settings(cfg, env={}), clock=SystemClock())
print("apprise" in sys.modules)
"""


def _apprise_loaded(cfg: Path, *args: str) -> tuple[bool, bool]:
    """Was Apprise loaded by ``leadpipe ARGS``, and then by the service's alert wiring?"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPIPE_")}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(cfg), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "LEADPIPE_CONFIG": str(cfg)},
    )
    by_cli, by_service = done.stdout.splitlines()[-2:]
    return by_cli == "True", by_service == "True"


def test_apprise_is_loaded_only_when_targets_are_configured(tmp_path: Path) -> None:
    off = tmp_path / "off.toml"
    off.write_text("[alerts]\ndigest_at = '07:00'\n", encoding="utf-8")
    assert _apprise_loaded(off, "--help") == (False, False)
    assert _apprise_loaded(off, "alerts", "--help") == (False, False)
    on = tmp_path / "on.toml"
    on.write_text('[[alerts.targets]]\nurl = "json://127.0.0.1:9/x"\n', encoding="utf-8")
    assert _apprise_loaded(on, "--help") == (False, True)
    assert _apprise_loaded(on, "alerts", "test", "--help") == (False, True)


def test_status_page_lists_conditions_escaped_and_the_status_file_keeps_them() -> None:
    cond = ActiveCondition(
        Event.FILE_MISSING,
        "file_missing:<x>",
        "<script>alert(1)</script>: no file by 09:00",
        Severity.WARNING,
        "2026-03-30T09:00:00+02:00",
        "<x>",
    )
    status = ServiceStatus(intake=IntakeStatus(inbox="/in"), alerts=(cond,))
    page = render_html(status)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;: no file by 09:00" in page
    assert "2026-03-30 09:00 (UTC+02:00)" in page
    back = ServiceStatus.from_json(json.loads(json.dumps(status.to_json())))
    assert back.alerts == (cond,)
    assert "Alerts" not in render_html(ServiceStatus(intake=IntakeStatus(inbox="/in")))


def test_leadpipe_status_names_the_conditions_that_hold(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.service.instance import STATUS_FILE

    cond = ActiveCondition(
        Event.API_DOWN,
        "api_down",
        "HeroBase [down] since 02:00",
        Severity.CRITICAL,
        "2026-03-30T02:00:00+02:00",
    )
    state = tmp_path / "state"
    state.mkdir()
    status = ServiceStatus(intake=IntakeStatus(inbox=str(tmp_path / "inbox")), alerts=(cond,))
    (state / STATUS_FILE).write_text(json.dumps(status.to_json()), encoding="utf-8")
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text(f'[paths]\nstate = "{state}"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(cfg), "status"], env={})
    assert result.exit_code == 0, result.output
    line = "Alert (critical, since 2026-03-30 02:00 (UTC+02:00)): HeroBase [down] since 02:00"
    assert line in result.output  # the title as written: no markup eaten
