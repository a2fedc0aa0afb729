"""Campaigns never wait on each other, and a stop under a full upload takes seconds.

Over real HTTP to the sandbox on 127.0.0.1 (docs/architecture.md, "Lanes"): the order permits
are granted in is asserted, not timing, except for the stop's own bound (generous for CI).
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.api.ratelimit import headroom
from pipeline.sandbox import Fault, Sandbox
from tests.dropfolder.test_real_ingest import (
    CODE,
    created,
    env_for,
    leads_csv,
    run_once,
    sigterm_while_uploading,
    start_run,
    write_config,
)
from tests.service.conftest import wait_for

OTHER = "B2B-SE-AUTUMN"


@pytest.mark.slow
def test_sigterm_with_8_uploads_in_flight_exits_0_fast_without_retries_and_reruns_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    sandbox.add_fault(Fault("delay", route="POST /leads", delay=2.0, times=0))
    cfg = write_config(tmp_path, sandbox.url, concurrency=8)
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    data, names = leads_csv("STOP", valid=400, invalid=0)
    (inbox / "big.csv").write_bytes(data)
    env = env_for(cfg)
    env["LEADPIPE_LOG_LEVEL"] = "INFO"
    stopped = sigterm_while_uploading(sandbox, env, tmp_path, posts=24, wait=30)
    took, code, text = stopped.seconds, stopped.code, stopped.log
    assert code == 0, text
    assert took < 15.0, (took, text)  # the promise is 10 s; the bound leaves room for CI load
    # no request was retried (nothing failed but the stop): no retry line at all
    assert not re.search(r"; retry \d+ in", text), text
    # log lines as people read them: "leadpipe: <message>", no timings or thread names
    logged = [line for line in text.splitlines() if "leadpipe: " in line]
    assert logged, text
    assert all(line.startswith("leadpipe: ") for line in logged), logged
    assert len(list((tmp_path / "inbox" / ".leadpipe" / "work").rglob("big.csv"))) == 1
    sandbox.clear_faults()
    run_once(env, tmp_path, 180)
    counts = created(sandbox, "STOP")
    assert sorted(counts) == sorted(names)
    assert set(counts.values()) == {1}


@pytest.mark.slow
def test_a_preview_in_another_campaign_is_not_queued_behind_a_full_budget_upload(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """B's preview reads its live schema between A's uploads, not after the ones queued, and
    is done long before A has spent the minute's budget: A's uploads are spaced over the
    minute, not sent in a burst that leaves nothing for anyone until the minute is over."""
    limit = 120  # uploads spaced 0.5 s apart
    sandbox.set_rate_limit(per_minute=limit, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url, requests_per_minute=limit, concurrency=8)
    inbox = tmp_path / "inbox"
    (inbox / CODE).mkdir(parents=True)
    data, _names = leads_csv("FAIR", valid=400, invalid=0)
    (inbox / CODE / "big.csv").write_bytes(data)
    preview = inbox / OTHER / "preview"
    preview.mkdir(parents=True)

    def uploads() -> int:
        return sum(1 for r in sandbox.requests() if r["method"] == "POST")

    proc, log = start_run(env_for(cfg), tmp_path)
    try:
        wait_for(lambda: uploads() >= 12, 90, "A's upload to go at the minute's pace")
        before = len(sandbox.requests())
        (preview / "small.csv").write_text(
            "company,phone\nAcme AB,+46 70 123 45 67\nBeta AB,+46 70 123 45 68\n,\n",
            encoding="utf-8",
        )
        wait_for(lambda: any(preview.glob("*.receipt.json")), 60, "B's preview receipt")
        sent_by_then = uploads()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = log.read_text(encoding="utf-8")
    after = sandbox.requests()[before:]
    mine = [i for i, r in enumerate(after) if OTHER in json.dumps(r.get("query", {}))]
    assert mine, ("the preview read no live schema", after)
    a_between = [r for r in after[mine[0] : mine[-1]] if r["method"] == "POST"]
    # the preview's reads took their turns before A's waiting uploads: at most one of A's
    # uploads (already granted) between them, where queued behind them they would be 8+
    assert len(a_between) <= 1, (a_between, text)
    receipt = json.loads(next(preview.glob("*.receipt.json")).read_text(encoding="utf-8"))
    assert receipt["outcome"] == "previewed"
    # done before A's uploads reached the minute's budget; a burst would have spent it at once
    assert sent_by_then < limit - headroom(limit), (sent_by_then, text)
    assert not any(r["status"] == 429 for r in sandbox.requests()), text


@pytest.mark.slow
def test_a_stop_does_not_wait_for_answers_a_hanging_api_holds_and_nothing_is_sent_twice(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Requests sent before the stop hang for 18 s (read timeout 22 s): the process exits
    without their answers, and the rerun looks those rows up instead of sending them again."""
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url, read_timeout=22, concurrency=4)
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    data, names = leads_csv("HANG", valid=300, invalid=0)
    (inbox / "big.csv").write_bytes(data)
    sandbox.add_fault(Fault("delay", route="POST /leads", delay=0.05, times=0))
    env = env_for(cfg)
    proc, log = start_run(env, tmp_path)
    try:
        wait_for(lambda: len(created(sandbox, "HANG")) >= 20, 60, "uploads")
        sandbox.clear_faults()
        sandbox.add_fault(Fault("delay", route="POST /leads", delay=18.0, times=0))
        time.sleep(0.5)  # let requests go out into the hang
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(40)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text(encoding="utf-8")
    assert code == 0, text
    assert took < 14.0, (took, text)  # 8 s grace + 1 s for answers; CI room on top
    assert "still wait for HeroBase's answer" in text, text
    # only the rows whose requests hang wait for a lookup: the ones queued behind them were
    # put back as not sent before the exit (else they would need a lookup, and on a tenant
    # where a lookup proves nothing, a person)
    with sqlite3.connect(tmp_path / "state" / "ledger.sqlite") as db:
        states = dict(db.execute("SELECT state, count(*) FROM rows GROUP BY state").fetchall())
    assert states.get("sending", 0) <= 4, states  # concurrency 4: the requests in flight
    # the rerun finds the hung rows' answers unknown: it looks them up (once their answers
    # are surely in) instead of sending them again
    sandbox.clear_faults()
    run_once(env, tmp_path, 180)
    counts = created(sandbox, "HANG")
    assert sorted(counts) == sorted(names)
    assert set(counts.values()) == {1}
