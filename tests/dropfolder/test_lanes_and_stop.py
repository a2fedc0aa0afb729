"""Campaigns never wait on each other, and a stop under a full upload takes seconds.

Over real HTTP to the sandbox on 127.0.0.1 (docs/architecture.md, "Lanes"): the order permits
are granted in is asserted, not timing, except for the stop's own bound (generous for CI).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.sandbox import Fault, Sandbox
from tests.dropfolder.test_real_ingest import (
    CODE,
    created,
    env_for,
    leads_csv,
    run_once,
    sigterm_while_uploading,
    write_config,
)

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
    assert len(list((tmp_path / "inbox" / ".leadpipe" / "work").rglob("big.csv"))) == 1
    sandbox.clear_faults()
    run_once(env, tmp_path, 180)
    counts = created(sandbox, "STOP")
    assert sorted(counts) == sorted(names)
    assert set(counts.values()) == {1}
