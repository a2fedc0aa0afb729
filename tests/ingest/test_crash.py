"""``kill -9`` at named points, then a rerun: nothing lost, nothing created twice.

The sandbox runs in this test process; ``leadpipe ingest`` runs in a subprocess that
``LEADPIPE_CRASH_AT=<point>:<n>`` kills with SIGKILL at the n-th time it reaches the point.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox
from tests.ingest import messy
from tests.ingest.conftest import CAMPAIGN

ROWS = 200
OURS = re.compile(r"\+45 [23]0 \d{6}")
VOLATILE = ("duration_s", "receipt_file", "reject_files", "started_at", "finished_at", "file")


def config(tmp: Path) -> Path:
    cfg = tmp / "leadpipe.toml"
    cfg.write_text(
        f"""
[paths]
inbox = "{tmp / "inbox"}"
state = "{tmp / "state"}"
schemas = "{tmp / "schemas"}"
outbox = "{tmp / "outbox"}"

[api]
read_timeout = 1
retry_after_cap = 1
requests_per_minute = 1000000

[intake]
concurrency = 4

[campaigns.{CAMPAIGN}]
columns = {{ Navn = "name", Telefon = "phone" }}
""",
        encoding="utf-8",
    )
    return cfg


def run_ingest(
    sb: Sandbox, tmp: Path, src: Path, crash: str | None = None, *, wait: bool = True
) -> Any:
    env = {
        **os.environ,
        "LEADPIPE_API_URL": sb.url,
        "LEADPIPE_API_USER": DEMO_USER,
        "LEADPIPE_API_PASSWORD": DEMO_PASSWORD,
        "LEADPIPE_CONFIG": str(config(tmp)),
    }
    env.pop("LEADPIPE_CRASH_AT", None)
    if crash:
        env["LEADPIPE_CRASH_AT"] = crash
    cmd = [
        sys.executable,
        "-c",
        "from pipeline.cli import main; main()",
        "ingest",
        str(src),
        "--campaign",
        CAMPAIGN,
        "--json",
        "--out",
        str(tmp / "results"),
    ]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def stable(receipt_json: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(receipt_json)
    for key in VOLATILE:
        data.pop(key)
    return data


def ours(sb: Sandbox) -> Counter[str]:
    return Counter(
        lead["data"]["phone"]
        for lead in sb.leads(CAMPAIGN)
        if OURS.fullmatch(lead["data"].get("phone", ""))
    )


def new_sandbox(profile: dict[str, Any] | None = None) -> Sandbox:
    sb = Sandbox(profile=profile or {}).start()
    sb.set_rate_limit(per_minute=1_000_000, per_day=10_000_000)
    return sb


@pytest.fixture(scope="module")
def fault_free(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The receipt of a run without faults (its own sandbox and state)."""
    tmp = tmp_path_factory.mktemp("fault-free")
    src = tmp / "kunder.csv"
    messy.build(src, ROWS)
    sb = new_sandbox()
    try:
        done = run_ingest(sb, tmp, src)
    finally:
        sb.stop()
    assert done.returncode == 0, done.stderr
    return stable(done.stdout)


@pytest.fixture
def sbx() -> Iterator[Sandbox]:
    sb = new_sandbox()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.mark.parametrize("point", ["before_post:57", "after_response:57", "rejects:5"])
def test_kill_9_then_rerun_creates_every_row_exactly_once(
    point: str, sbx: Sandbox, tmp_path: Path, fault_free: dict[str, Any]
) -> None:
    src = tmp_path / "kunder.csv"
    exp = messy.build(src, ROWS)
    crashed = run_ingest(sbx, tmp_path, src, crash=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    # complete or absent: nothing half-written is visible
    results = tmp_path / "results"
    visible = sorted(p.name for p in results.iterdir() if p.is_file()) if results.exists() else []
    assert visible == []

    rerun = run_ingest(sbx, tmp_path, src)
    assert rerun.returncode == 0, rerun.stderr
    assert stable(rerun.stdout) == fault_free
    assert ours(sbx) == Counter(d["phone"] for d in exp.valid.values())
    created = [r for r in sbx.requests() if r["method"] == "POST" and r["status"] == 200]
    assert len(created) == len(exp.valid)


PROFILES: dict[str, dict[str, Any]] = {
    "empty-201-wrapped-lists": {"post_answer": "empty201", "lists": "wrapped"},
    "204-other-uploader": {"post_answer": "204", "uploaded_by": "other"},
    "no-data-in-lookup": {"simpleleads_data": False},
}


@pytest.mark.parametrize("profile", list(PROFILES), ids=list(PROFILES))
@pytest.mark.parametrize("point", ["before_post:57", "after_response:57", "rejects:5"])
def test_kill_9_then_rerun_on_every_tenant_profile(
    point: str, profile: str, tmp_path: Path
) -> None:
    """Per profile: after a kill -9 at each named point and a rerun, each valid row is in
    HeroBase once; a row whose fate the lookup cannot see is left for a person, not resent."""
    sb = new_sandbox(PROFILES[profile])
    try:
        src = tmp_path / "kunder.csv"
        exp = messy.build(src, ROWS)
        crashed = run_ingest(sb, tmp_path, src, crash=point)
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        rerun = run_ingest(sb, tmp_path, src)
        assert rerun.returncode == 0, rerun.stderr
        receipt = json.loads(rerun.stdout)
        stored = ours(sb)
        assert set(stored.values()) == {1}  # nothing created twice
        created = [r for r in sb.requests() if r["method"] == "POST" and 200 <= r["status"] < 300]
        assert len(created) == len(stored)
        uncertain = {
            int(m.split()[1]) for m in receipt["messages"] if re.match(r"Row \d+ is uncertain", m)
        }
        missing = {row for row, d in exp.valid.items() if d["phone"] not in stored}
        if profile == "no-data-in-lookup" and not point.startswith("rejects"):
            # the lookup cannot see: rows whose POST may have happened are left for a person
            assert receipt["uncertain"] == len(uncertain) >= 1
            assert missing <= uncertain  # a row not in HeroBase is listed, never silently lost
            assert receipt["accepted"] + receipt["uncertain"] == len(exp.valid)
        else:
            assert (missing, receipt["uncertain"]) == (set(), 0)  # none lost, none left
            assert receipt["accepted"] == len(exp.valid)
    finally:
        sb.stop()


@pytest.mark.slow
def test_kill_9_at_random_moments_in_a_loop(
    sbx: Sandbox, tmp_path: Path, fault_free: dict[str, Any]
) -> None:
    src = tmp_path / "kunder.csv"
    exp = messy.build(src, ROWS)
    rng = random.Random(4)
    for _ in range(3):
        before = _posts(sbx)
        target = before + rng.randint(1, 40)
        proc = run_ingest(sbx, tmp_path, src, wait=False)
        deadline = time.monotonic() + 60
        # kill it at a random moment of the upload: after a random number of POSTs
        while _posts(sbx) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert len(ours(sbx)) < len(exp.valid)  # the loop really stopped it mid-upload
    rerun = run_ingest(sbx, tmp_path, src)
    assert rerun.returncode == 0, rerun.stderr
    assert stable(rerun.stdout) == fault_free
    assert ours(sbx) == Counter(d["phone"] for d in exp.valid.values())


def _posts(sb: Sandbox) -> int:
    return sum(1 for r in sb.requests() if r["method"] == "POST")
