"""``leadpipe run`` nodes as real processes on one drop folder and one PostgreSQL ledger,
against the sandbox over HTTP on 127.0.0.1 (docs/cluster.md).

Each node runs from the SAME config file, named by ``LEADPIPE_NODE``; its own state lives in
``state/nodes/<node>/``. A node killed with ``kill -9`` mid-upload stops renewing its claim's
lease; once it expired another node resumes the file from the ledger and finishes it, every
row once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.sandbox import Fault, Sandbox
from tests.dropfolder.test_real_ingest import CODE, created, env_for, leadpipe, leads_csv
from tests.service.conftest import wait_for

#: heartbeat 0.5 s; lease 5 s: more than heartbeat + connect 1 s + read timeout 2 s
CLUSTER = "[cluster]\nheartbeat_seconds = 0.5\nlease_seconds = 5\n"


def write_config(root: Path, api_url: str, ledger: str) -> Path:
    """ONE config file for every node."""
    cfg = root / "leadpipe.toml"
    cfg.write_text(
        f'[paths]\ninbox = "inbox"\noutbox = "outbox"\nstate = "state"\nschemas = "schemas"\n'
        f'[api]\nurl = "{api_url}"\nrequests_per_minute = 600000\nread_timeout = 2\n'
        "connect_timeout = 1\n"
        "[intake]\nsettle_seconds = 0.2\nsweep_seconds = 0.5\nconcurrency = 4\n"
        "verify_after_minutes = 0\n"
        f"[status]\nport = 0\n[state]\nledger = {json.dumps(ledger)}\n{CLUSTER}",
        encoding="utf-8",
    )
    return cfg


class Nodes:
    """Node processes of one test; every one still running is killed at the end."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str) -> subprocess.Popen[bytes]:
        log = self.root / f"{name}-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                leadpipe("run"),
                env={**self.env, "LEADPIPE_NODE": name},
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def status(self, name: str) -> dict[str, object]:
        done = subprocess.run(
            leadpipe("status", "--json"),
            env={**self.env, "LEADPIPE_NODE": name},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        data: dict[str, object] = json.loads(done.stdout)
        return data

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')}"
            for p in sorted(self.root.glob("*.log"))
        )

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


@pytest.fixture
def nodes(sandbox: Sandbox, cluster_db: str, tmp_path: Path) -> Iterator[Nodes]:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url, cluster_db)
    running = Nodes(tmp_path, env_for(cfg))
    try:
        yield running
    finally:
        running.stop_all()


def alive_nodes(status: dict[str, object]) -> set[str]:
    cluster = status.get("cluster")
    assert isinstance(cluster, dict), status
    return {n["name"] for n in cluster["nodes"] if n["alive"]}


@pytest.mark.slow
def test_three_nodes_start_on_one_config_and_a_name_twice_is_refused(
    nodes: Nodes, tmp_path: Path
) -> None:
    for name in ("n1", "n2", "n3"):
        nodes.start(name)
    wait_for(
        lambda: alive_nodes(nodes.status("n1")) == {"n1", "n2", "n3"},
        60,
        "three nodes alive",
    )
    twin = nodes.start("n2")  # the same node name again: its state folder is taken
    assert twin.wait(60) == 6, nodes.logs()
    assert "already running" in nodes.logs()
    status = nodes.status("n2")
    assert status["running"] is True
    assert status["cluster"]["node"] == "n2"
    for name in ("n1", "n2", "n3"):  # node-local state, each in its own folder
        assert (tmp_path / "state" / "nodes" / name / "leadpipe.lock").exists()
    assert not (tmp_path / "state" / "leadpipe.lock").exists()
    # the plain words of `leadpipe status`, node by node
    done = subprocess.run(
        leadpipe("status"),
        env={**nodes.env, "LEADPIPE_NODE": "n3"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "running as node n3" in done.stdout
    assert "Cluster nodes (this is n3):" in done.stdout
    for name in ("n1", "n2", "n3"):
        assert f"  {name}" in done.stdout
    assert "n3 (this node): alive" in done.stdout


@pytest.mark.slow
def test_a_killed_nodes_file_is_resumed_by_another_node_after_its_lease_every_row_once(
    nodes: Nodes, sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.add_fault(Fault("delay", route="POST /leads", delay=0.03, times=0))
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    data, names = leads_csv("TAKEOVER", valid=240, invalid=2)
    (inbox / "big.csv").write_bytes(data)

    first = nodes.start("a")

    def posts() -> int:
        return sum(1 for r in sandbox.requests() if r["method"] == "POST")

    wait_for(lambda: posts() >= 40, 60, "uploads to be under way")
    first.send_signal(signal.SIGKILL)  # dies mid-file: its claim and its lease stay
    first.wait(10)
    killed_at = time.monotonic()
    work = tmp_path / "inbox" / ".leadpipe" / "work"
    assert [p for p in work.rglob("big.csv")], "the file stays claimed"
    # two nodes race for the dead node's claim: one resumes it, after the lease expired
    nodes.start("b")
    nodes.start("c")
    processed = inbox / "processed"
    wait_for(
        lambda: (  # the receipt is written first, the original moved last
            list(processed.glob("*big.csv.receipt.json"))
            and list(processed.glob("*_big.csv"))
            and not [p for p in work.rglob("*") if p.is_file()]
        ),
        90,
        "the file finished",
    )
    assert time.monotonic() - killed_at >= 2  # not before the dead node's lease ran out

    counts = created(sandbox, "TAKEOVER")
    assert sorted(counts) == sorted(names), nodes.logs()
    assert set(counts.values()) == {1}, [n for n, c in counts.items() if c > 1]
    assert not [p for p in work.rglob("*") if p.is_file()]
    (receipt,) = processed.glob("*big.csv.receipt.json")
    r = json.loads(receipt.read_text(encoding="utf-8"))
    assert r["outcome"] == "processed"
    resumed_by = [
        p.name.split("-")[0]
        for p in tmp_path.glob("*.log")
        if "resuming big.csv" in p.read_text(errors="replace")
    ]
    assert len(resumed_by) == 1, nodes.logs()
    assert resumed_by[0] in ("b", "c"), nodes.logs()
