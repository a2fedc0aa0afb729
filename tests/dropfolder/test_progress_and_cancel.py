"""Progress, rate and ETA of a file in progress; cancelling a file (docs/dropfolder.md).

The service runs with the real ingest against the sandbox over HTTP on 127.0.0.1; a delay
fault on POST /leads makes a file slow enough to watch and cancel.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_settings
from pipeline.crashpoints import CRASH_ENV
from pipeline.dropfolder.status import CampaignStatus, FileInFolder, FileProgress
from pipeline.sandbox import Fault, Sandbox
from tests.dropfolder.test_real_ingest import (
    CODE,
    created,
    env_for,
    leads_csv,
    run_once,
    start_run,
    write_config,
)
from tests.service.conftest import Running, service, wait_for

runner = CliRunner()


def _progress(svc: Running) -> dict[str, Any] | None:
    camp = svc.snapshot()["campaigns"].get(CODE) or {}
    p = camp.get("progress")
    return p if isinstance(p, dict) else None


def _metric(svc: Running, name: str, outcome: str) -> float:
    assert svc.info.status_url is not None
    url = svc.info.status_url.rstrip("/") + "/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 (the local status page)
        text = r.read().decode()
    found = re.search(rf'^{name}\{{outcome="{outcome}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _slow(sandbox: Sandbox, delay: float = 0.05) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    sandbox.add_fault(Fault("delay", route="POST /leads", delay=delay, times=0))


def _start(tmp_path: Path, sandbox: Sandbox, **intake: object) -> tuple[Any, Path]:
    cfg = write_config(tmp_path, sandbox.url, **{"concurrency": 2, **intake})
    settings = load_settings(cfg, env=env_for(cfg))
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    return settings, inbox


def test_status_round_trips_progress_and_reads_old_files() -> None:
    p = FileProgress("big.csv", run="r1", rows_read=10, rows_sent=5, rows_total=20, rate=2.5)
    c = CampaignStatus(in_progress="big.csv", progress=p, waiting=(FileInFolder("x", starts="s"),))
    assert CampaignStatus.from_json(json.loads(json.dumps(c.to_json()))) == c
    old = CampaignStatus.from_json({"in_progress": "big.csv", "waiting": [{"name": "x"}]})
    assert old.progress is None
    assert old.waiting[0].starts == ""
    assert "5 of ~20 rows sent (25%)" in p.sentence()


@pytest.mark.slow
def test_progress_rate_eta_in_status_and_metrics_move_before_the_file_ends(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    _slow(sandbox, 0.03)
    settings, inbox = _start(tmp_path, sandbox)
    data, _names = leads_csv("PROG", valid=240, invalid=3)
    later, _later_names = leads_csv("LATER", valid=4, invalid=0)
    with service(settings) as svc:
        (inbox / "big.csv").write_bytes(data)
        wait_for(
            lambda: (p := _progress(svc)) is not None and p["rows_sent"] >= 20 and p["rate"],
            60,
            "progress with a rate",
        )
        (inbox / "later.csv").write_bytes(later)
        wait_for(
            lambda: any(
                w["name"] == "later.csv" and w.get("starts") and w.get("eta")
                for w in svc.snapshot()["campaigns"][CODE]["waiting"]
            ),
            30,
            "the waiting file's start and finish",
        )
        p = _progress(svc)
        assert p is not None
        assert p["name"] == "big.csv"
        assert p["rows_total"] == 243  # the CSV's lines (an estimate, then exact)
        assert 0 < p["rows_sent"] < 240
        assert p["eta"]
        assert p["eta_seconds"] is not None
        waiting = svc.snapshot()["campaigns"][CODE]["waiting"][0]
        assert waiting["starts"] >= svc.snapshot()["at"][:16] or waiting["starts"]
        mid = _metric(svc, "leadpipe_rows_total", "accepted")
        assert 0 < mid < 240  # counted while the file is in progress
        url = svc.info.status_url or ""
        page = urllib.request.urlopen(url, timeout=10).read().decode()  # noqa: S310
        assert "rows sent" in page
        assert "rows/s" in page
        wait_for(lambda: svc.snapshot()["totals"]["processed"] == 2, 120, "both files")
        assert _metric(svc, "leadpipe_rows_total", "accepted") == 244  # no double count
        assert _metric(svc, "leadpipe_rows_total", "rejected") == 3
    assert set(created(sandbox, "PROG").values()) == {1}


def _receipt(folder: Path, name: str) -> dict[str, Any]:
    [found] = list((folder / "processed").glob(f"*_{name}.receipt.json"))
    data: dict[str, Any] = json.loads(found.read_text("utf-8"))
    return data


def _not_sent_names(folder: Path, name: str) -> list[str]:
    [found] = list((folder / "rejected").glob(f"*_{name}.not-sent.rejects.csv"))
    with found.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(r["_problems"].startswith("not sent: cancelled by ") for r in rows)
    return [r["Name"] for r in rows]


@pytest.mark.slow
def test_cancel_in_progress_by_a_dropped_cancel_file_then_redrop_the_not_sent_rows(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    _slow(sandbox)
    settings, inbox = _start(tmp_path, sandbox)
    data, names = leads_csv("CNL", valid=400, invalid=0)
    with service(settings) as svc:
        (inbox / "big.csv").write_bytes(data)
        wait_for(lambda: (p := _progress(svc)) is not None and p["rows_sent"] >= 20, 60, "sending")
        (inbox / "big.csv.cancel").write_bytes(b"")
        wait_for(lambda: svc.snapshot()["totals"].get("cancelled") == 1, 60, "the cancel")
        receipt = _receipt(inbox, "big.csv")
        sent = created(sandbox, "CNL")
        assert receipt["outcome"] == "cancelled"
        assert receipt["accepted"] == len(sent)
        assert 0 < len(sent) < 400
        assert receipt["uncertain"] == 0
        assert receipt["waiting"] == 400 - len(sent)
        assert "cancelled by a big.csv.cancel file" in receipt["messages"][0]
        unsent = _not_sent_names(inbox, "big.csv")
        assert sorted(unsent) == sorted(set(names) - set(sent))
        assert not (inbox / "big.csv.cancel").exists()
        assert len(list((inbox / "processed").glob("*_big.csv"))) == 1
        assert set(sent.values()) == {1}
        # drop the not-sent rows again: exactly those are uploaded
        sandbox.clear_faults()
        [again] = list((inbox / "rejected").glob("*.not-sent.rejects.csv"))
        (inbox / "again.csv").write_bytes(again.read_bytes())
        wait_for(lambda: svc.snapshot()["totals"]["processed"] == 1, 60, "the re-drop")
        assert _receipt(inbox, "again.csv")["accepted"] == len(unsent)
    final = created(sandbox, "CNL")
    assert sorted(final) == sorted(names)
    assert set(final.values()) == {1}


@pytest.mark.slow
def test_leadpipe_cancel_of_a_queued_file_reads_nothing_and_of_an_unknown_file_exits_4(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    _slow(sandbox)
    settings, inbox = _start(tmp_path, sandbox)
    env = env_for(tmp_path / "leadpipe.toml")
    first, _ = leads_csv("Q1", valid=300, invalid=0)
    second, _ = leads_csv("Q2", valid=5, invalid=0)
    with service(settings) as svc:
        (inbox / "first.csv").write_bytes(first)
        wait_for(lambda: (p := _progress(svc)) is not None and p["rows_sent"] >= 5, 60, "first")
        (inbox / "second.csv").write_bytes(second)
        wait_for(
            lambda: (
                [w["name"] for w in svc.snapshot()["campaigns"][CODE]["waiting"]] == ["second.csv"]
            ),
            30,
            "second to wait",
        )
        unknown = runner.invoke(app, ["cancel", "nothing-like-it.csv"], env=env)
        assert unknown.exit_code == 4, unknown.output
        assert "no file named 'nothing-like-it.csv'" in unknown.output
        done = runner.invoke(app, ["cancel", str(inbox / "second.csv")], env=env)
        assert done.exit_code == 0, done.output
        wait_for(lambda: svc.snapshot()["totals"].get("cancelled") == 1, 60, "the cancel")
        receipt = _receipt(inbox, "second.csv")
        assert receipt["outcome"] == "cancelled"
        assert receipt["accepted"] == 0
        assert receipt["rows_read"] == 0
        assert "before it was read" in receipt["messages"][0]
        assert (inbox / "processed").glob("*_second.csv")
        assert not created(sandbox, "Q2")
        assert _progress(svc) is not None  # the first file goes on
        sandbox.clear_faults()
        wait_for(lambda: svc.snapshot()["totals"]["processed"] == 1, 120, "the first file")
    assert set(created(sandbox, "Q1").values()) == {1}


@pytest.mark.slow
def test_a_cancel_dropped_while_the_file_still_arrives_cancels_it_before_it_is_read(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    settings, inbox = _start(tmp_path, sandbox, settle_seconds=3.0)
    data, _names = leads_csv("EARLY", valid=20, invalid=0)
    with service(settings) as svc:
        (inbox / "early.csv").write_bytes(data)
        (inbox / "early.csv.cancel").write_bytes(b"")  # before the file has settled
        wait_for(lambda: svc.snapshot()["totals"].get("cancelled") == 1, 60, "the cancel")
        receipt = _receipt(inbox, "early.csv")
        assert receipt["outcome"] == "cancelled"
        assert receipt["rows_read"] == 0
        assert not (inbox / "early.csv.cancel").exists()  # the request ended with its file
    assert not created(sandbox, "EARLY")
    assert not (inbox / "rejected").exists()  # nothing was read: no not-sent file either


@pytest.mark.slow
def test_killed_while_writing_the_not_sent_file_the_restart_ends_the_cancel_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A kill -9 in the middle of a cancel: the claim is resumed with its cancel request, and
    every row ends up either sent once or in the one not-sent file, never both."""
    _slow(sandbox)
    cfg = write_config(tmp_path, sandbox.url, concurrency=2)
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    data, names = leads_csv("KILLC", valid=300, invalid=0)
    (inbox / "big.csv").write_bytes(data)
    env = env_for(cfg)
    env[CRASH_ENV] = "rejects:40"  # the 40th row written to the not-sent file
    proc, _log = start_run(env, tmp_path)
    try:
        wait_for(lambda: len(created(sandbox, "KILLC")) >= 20, 60, "uploads")
        (inbox / "big.csv.cancel").write_bytes(b"")
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not list((inbox / "processed").glob("*.receipt.json"))
    del env[CRASH_ENV]
    sandbox.clear_faults()
    run_once(env, tmp_path, 120)
    receipt = _receipt(inbox, "big.csv")
    assert receipt["outcome"] == "cancelled"
    sent = created(sandbox, "KILLC")
    assert set(sent.values()) == {1}
    not_sent = _not_sent_names(inbox, "big.csv")
    assert not set(sent) & set(not_sent)
    assert sorted([*sent, *not_sent]) == sorted(names)
    assert not (inbox / "big.csv.cancel").exists()


@pytest.mark.slow
def test_a_cancelled_files_not_sent_rows_keep_their_own_problems_and_leave_out_repeats(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    _slow(sandbox)
    settings, inbox = _start(tmp_path, sandbox)
    data, names = leads_csv("WHY", valid=300, invalid=2)
    lines = data.decode().splitlines(keepends=True)
    data = "".join([*lines, lines[-3]]).encode()  # the last valid row once more, at the end
    with service(settings) as svc:
        (inbox / "why.csv").write_bytes(data)
        wait_for(lambda: (p := _progress(svc)) is not None and p["rows_sent"] >= 20, 60, "sending")
        (inbox / "why.csv.cancel").write_bytes(b"")
        wait_for(lambda: svc.snapshot()["totals"].get("cancelled") == 1, 60, "the cancel")
    sent = created(sandbox, "WHY")
    [found] = list((inbox / "rejected").glob("*_why.csv.not-sent.rejects.csv"))
    with found.open(encoding="utf-8-sig", newline="") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    assert sorted(n for n in rows if "broken" not in n) == sorted(set(names) - set(sent))
    broken = [r for n, r in rows.items() if "broken" in n]
    assert len(broken) == 2
    for r in broken:  # what to fix first, then why it was not sent
        first, *_, last = r["_problems"].splitlines()
        assert first.startswith(f"Row {r['_row']}, column 'Phone': "), r["_problems"]
        assert last.startswith("not sent: cancelled by a why.csv.cancel file"), r["_problems"]
    # the repeated row is not sent on its own: it is not in the file (row 304 of the sheet)
    assert "304" not in {r["_row"] for r in rows.values()}
    assert set(sent.values()) == {1}


@pytest.mark.slow
def test_rows_herobase_refused_before_a_cancel_are_in_the_not_sent_file_with_its_reasons(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.add_fault(Fault("status", route="POST /leads", status=400, after=3, times=2))
    _slow(sandbox)  # added after the refusals, which are matched first
    settings, inbox = _start(tmp_path, sandbox)
    data, names = leads_csv("REF", valid=300, invalid=0)
    with service(settings) as svc:
        (inbox / "ref.csv").write_bytes(data)
        wait_for(lambda: (p := _progress(svc)) is not None and p["rows_sent"] >= 20, 60, "sending")
        (inbox / "ref.csv.cancel").write_bytes(b"")
        wait_for(lambda: svc.snapshot()["totals"].get("cancelled") == 1, 60, "the cancel")
    receipt = _receipt(inbox, "ref.csv")
    assert receipt["refused_by_api"] == 2
    sent = created(sandbox, "REF")
    [found] = list((inbox / "rejected").glob("*_ref.csv.not-sent.rejects.csv"))
    with found.open(encoding="utf-8-sig", newline="") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    refused = [r for r in rows.values() if "refused by HeroBase" in r["_problems"]]
    assert len(refused) == 2, rows
    assert all("not sent" not in r["_problems"] for r in refused)
    # every row is in HeroBase or in the file, never both
    assert not set(sent) & set(rows)
    assert sorted([*sent, *rows]) == sorted(names)
    assert receipt["waiting"] == len(rows) - 2
    assert any("refused by HeroBase" in m for m in receipt["messages"])
