"""``run_service`` in real time with a recording processor: events, sweeps, stop, lock."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from pipeline.errors import StateError
from pipeline.outcome import FileOutcome
from pipeline.service.instance import read_status
from pipeline.service.run import run_service
from tests.service.conftest import CAMPAIGNS, Recorder, make_settings, service, wait_for


def setup_folders(root: Path) -> None:
    for c in CAMPAIGNS:
        (root / "inbox" / c).mkdir(parents=True, exist_ok=True)


def final_files(inbox: Path) -> list[Path]:
    return [p for p in inbox.rglob("*") if p.is_file() and ".leadpipe" not in p.parts]


@pytest.mark.slow
def test_a_file_written_slowly_is_taken_once_after_it_is_complete(tmp_path: Path) -> None:
    setup_folders(tmp_path)
    rec = Recorder()
    settings = make_settings(tmp_path, settle_seconds=1.5, sweep_seconds=0.5)
    with service(settings, processor=rec, campaigns=lambda: CAMPAIGNS):
        target = tmp_path / "inbox" / "ALPHA" / "slow.csv"
        expected = b""
        with target.open("wb") as fh:
            for i in range(25):  # 25 chunks, 0.4 s apart: 10 s of writing
                chunk = f"row {i},+4512345{i:03d}\n".encode()
                fh.write(chunk)
                fh.flush()
                expected += chunk
                time.sleep(0.4)
        wait_for(lambda: rec.names(), 10, "the slow file to be taken")
        time.sleep(1.5)
    assert rec.seen == [("ALPHA", "slow.csv", expected)]


def test_fifty_files_at_once_each_once_in_order_per_campaign(tmp_path: Path) -> None:
    setup_folders(tmp_path)
    rec = Recorder()
    settings = make_settings(tmp_path, campaign_parallelism=3)
    with service(settings, processor=rec, campaigns=lambda: CAMPAIGNS):
        expected: dict[str, list[str]] = {c: [] for c in CAMPAIGNS}
        for i in range(50):
            c = CAMPAIGNS[i % 3]
            name = f"drop-{i:02d}.csv"
            (tmp_path / "inbox" / c / name).write_text(f"n,p\nx{i},1\n", encoding="utf-8")
            expected[c].append(name)
        wait_for(lambda: len(rec.names()) >= 50, 30, "50 files")
        time.sleep(0.5)
    assert len(rec.names()) == 50
    for c in CAMPAIGNS:
        assert rec.names(c) == expected[c]
    assert len(final_files(tmp_path / "inbox")) == 50
    assert not any((tmp_path / "inbox" / ".leadpipe" / "work").rglob("*.csv"))


def test_files_present_before_start_are_processed_by_once(tmp_path: Path) -> None:
    setup_folders(tmp_path)
    for c in CAMPAIGNS:
        (tmp_path / "inbox" / c / "early.csv").write_text("a\n", encoding="utf-8")
    rec = Recorder()
    result = run_service(
        make_settings(tmp_path), once=True, processor=rec, campaigns=lambda: CAMPAIGNS
    )
    assert sorted(rec.names()) == ["early.csv"] * 3
    assert (result.processed, result.failed, result.waiting) == (3, 0, 0)
    status = read_status(make_settings(tmp_path))
    assert status.running is False
    assert status.intake.totals["processed"] == 3


@pytest.mark.parametrize("polling", [False, True], ids=["events", "polling"])
def test_inbox_removed_and_recreated_while_running(tmp_path: Path, polling: bool) -> None:
    setup_folders(tmp_path)
    rec = Recorder()
    settings = make_settings(tmp_path, polling=polling, sweep_seconds=0.3)
    inbox = tmp_path / "inbox"
    with service(settings, processor=rec, campaigns=lambda: CAMPAIGNS) as svc:
        (inbox / "ALPHA" / "before.csv").write_text("a\n", encoding="utf-8")
        wait_for(lambda: rec.names() == ["before.csv"], 10, "the first file")
        shutil.rmtree(inbox)
        wait_for(lambda: not svc.snapshot()["inbox_ok"], 10, "the outage to be noticed")
        assert "is not reachable" in svc.snapshot()["inbox_problem"]
        (inbox / "BETA").mkdir(parents=True)
        (inbox / "BETA" / "after.csv").write_text("b\n", encoding="utf-8")
        wait_for(lambda: "after.csv" in rec.names(), 10, "the file dropped after the outage")
        assert svc.snapshot()["inbox_ok"]
        (inbox / "BETA" / "later.csv").write_text("c\n", encoding="utf-8")
        wait_for(lambda: "later.csv" in rec.names(), 10, "a file after the watch was re-armed")
    assert rec.names() == ["before.csv", "after.csv", "later.csv"]


def test_a_second_instance_on_the_same_state_folder_is_refused(tmp_path: Path) -> None:
    setup_folders(tmp_path)
    settings = make_settings(tmp_path)
    with service(settings, processor=Recorder(), campaigns=lambda: CAMPAIGNS):
        with pytest.raises(StateError) as err:
            run_service(settings, once=True, processor=Recorder(), campaigns=lambda: CAMPAIGNS)
        assert "another `leadpipe run` (pid " in str(err.value)
        assert f"is already running on the state folder {settings.paths.state}" in str(err.value)
        assert read_status(settings).running is True
    # the lock is released on exit: a new run starts fine
    run_service(settings, once=True, processor=Recorder(), campaigns=lambda: CAMPAIGNS)


def test_stop_lets_the_file_in_progress_finish_its_step_and_keeps_it_claimed(
    tmp_path: Path,
) -> None:
    setup_folders(tmp_path)
    started = threading.Event()
    release = threading.Event()
    stop_seen: list[bool] = []
    box: dict[str, threading.Event] = {}

    def slow(job: object) -> object:
        from pipeline.dropfolder.jobs import Outcome

        started.set()
        release.wait(5)
        stop_seen.append(box["stop"].is_set())
        return Outcome(FileOutcome.INTERRUPTED)

    settings = make_settings(tmp_path)
    with service(settings, processor=slow, campaigns=lambda: CAMPAIGNS) as svc:  # type: ignore[arg-type]
        box["stop"] = svc.stop
        (tmp_path / "inbox" / "GAMMA" / "big.csv").write_text("a\n", encoding="utf-8")
        assert started.wait(10)
        svc.stop.set()
        release.set()
    assert stop_seen == [True]
    claimed = list((tmp_path / "inbox" / ".leadpipe" / "work" / "GAMMA").rglob("big.csv"))
    assert len(claimed) == 1  # resumed at the next start, never lost
    rec = Recorder()
    run_service(settings, once=True, processor=rec, campaigns=lambda: CAMPAIGNS)
    assert rec.names() == ["big.csv"]
    assert [p.name.split("_", 1)[1] for p in final_files(tmp_path / "inbox")] == ["big.csv"]


def test_once_with_the_api_down_leaves_files_waiting_in_the_inbox(tmp_path: Path) -> None:
    from pipeline.dropfolder.jobs import Outcome

    setup_folders(tmp_path)
    (tmp_path / "inbox" / "ALPHA" / "a.csv").write_text("a\n", encoding="utf-8")
    rec = Recorder()
    rec.outcome = Outcome(FileOutcome.WAITING, message="waiting for the API: 503")
    result = run_service(
        make_settings(tmp_path), once=True, processor=rec, campaigns=lambda: CAMPAIGNS
    )
    assert result.waiting == 1
    assert "503" in result.waiting_reason
    assert (tmp_path / "inbox" / "ALPHA" / "a.csv").read_text(encoding="utf-8") == "a\n"
    assert os.listdir(tmp_path / "inbox" / "ALPHA") == ["a.csv"]


def test_leadpipe_status_shows_the_last_run_in_the_terminal(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    setup_folders(tmp_path)
    (tmp_path / "inbox" / "BETA" / "one.csv").write_text("a\n", encoding="utf-8")
    settings = make_settings(tmp_path)
    run_service(settings, once=True, processor=Recorder(), campaigns=lambda: CAMPAIGNS)
    (tmp_path / "inbox" / "GAMMA" / "two.csv").write_text("a\n", encoding="utf-8")
    run_service(settings, once=True, processor=Recorder(), campaigns=lambda: CAMPAIGNS)
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text(
        f'[paths]\ninbox = "{tmp_path / "inbox"}"\nstate = "{tmp_path / "state"}"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["--config", str(cfg), "status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "leadpipe run is not running."
    assert f"Inbox: {tmp_path / 'inbox'}" in lines
    assert "  BETA: 0 waiting, 0 arriving, in progress: -" in lines
    recent = [line.split("  ", 2)[-1] for line in lines if line.endswith(": processed")]
    assert recent == ["GAMMA  two.csv: processed", "BETA  one.csv: processed"]
    # every time in the tenant's zone (Copenhagen by default), with its offset
    stamps = [line for line in lines if line.startswith(("Last status: ", "  20"))]
    assert len(stamps) == 3, lines
    offset = r"\d{4}-\d\d-\d\d \d\d:\d\d \(UTC\+0[12]:00\)"
    assert all(re.search(offset, line) for line in stamps), stamps


def test_due_exports_run_with_intake_and_show_on_the_status(tmp_path: Path) -> None:
    from dataclasses import replace
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from pipeline.config import ExportJob

    base = make_settings(tmp_path)
    # three whole days ago in the tenant's time zone, run at local midnight: three windows are
    # due at any hour of the day (a 02:00 schedule has not fired yet between 00:00 and 02:00)
    today = datetime.now(ZoneInfo(base.timezone)).date()
    start = (today - timedelta(days=3)).isoformat()
    job = ExportJob(
        name="daily",
        search="api_import_export",
        schedule="0 0 * * *",
        window="previous-day",
        start=start,
    )
    settings = replace(base, exports=[job])
    result = run_service(settings, once=True, status_page=False)  # embedded demo sandbox
    assert (result.processed, result.failed) == (0, 0)
    files = sorted(p.name for p in (tmp_path / "outbox").rglob("daily_*.csv"))
    assert len(files) == 3  # one file per missed day, caught up
    status = read_status(settings)
    assert [x.name for x in status.exports] == ["daily"]
    assert status.exports[0].next_run


def test_a_status_port_in_use_is_a_config_problem_not_locked_state(tmp_path: Path) -> None:
    import dataclasses
    import socket

    from pipeline.errors import ConfigError, exit_code

    setup_folders(tmp_path)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        settings = make_settings(tmp_path)
        port = busy.getsockname()[1]
        settings = dataclasses.replace(
            settings, status=dataclasses.replace(settings.status, port=port)
        )
        with pytest.raises(ConfigError, match=rf"cannot listen on 127\.0\.0\.1:{port}") as info:
            run_service(settings, once=True, processor=Recorder(), campaigns=lambda: CAMPAIGNS)
        assert exit_code(info.value) == 3
        assert not isinstance(info.value, StateError)
    finally:
        busy.close()
