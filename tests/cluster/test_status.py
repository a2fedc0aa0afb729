"""The cluster on the status page, in ``/status.json``, the status file and ``leadpipe status``
(docs/cluster.md, "What to monitor"): every node, alive or not, last seen, what it holds."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pipeline.cluster.node import ClusterNode
from pipeline.cluster.records import NodeStatus
from pipeline.config import IntakeSettings, Settings, StatusSettings
from pipeline.dropfolder.jobs import Job, Outcome
from pipeline.dropfolder.status import IntakeStatus
from pipeline.outcome import FileOutcome
from pipeline.service.instance import read_status
from pipeline.service.snapshot import ServiceStatus
from pipeline.service.status import render_html
from tests.cluster.conftest import age_node
from tests.service.conftest import service, wait_for

NODES = (
    NodeStatus("n1", "host1", 11, "2026-11-30T04:00:00+00:00", "2026-11-30T04:10:00+00:00",
               1.0, alive=True, holds=("claim:ALPHA/2026-abc", "export:daily"), this=True),
    NodeStatus("n2", "host2", 22, "2026-11-30T03:00:00+00:00", "2026-11-30T03:10:00+00:00",
               3600.0, alive=False),
    NodeStatus("n3", "host3", 33, "", "2026-11-30T04:00:00+00:00", 600.0, stopped=True),
)  # fmt: skip


def test_the_page_and_the_json_show_every_node_alive_or_not_and_what_it_holds() -> None:
    status = ServiceStatus(intake=IntakeStatus(inbox="/srv/inbox"), node="n1", nodes=NODES)
    page = render_html(status)
    assert "This is node <b>n1</b>" in page
    assert page.count('<tr class="node">') == 3
    assert '<td>n1 (this node)</td><td class="ok">alive</td>' in page
    assert '<td>n2</td><td class="bad">not alive</td>' in page
    assert '<td>n3</td><td class="bad">stopped</td>' in page
    assert "ALPHA/2026-abc, export:daily" in page
    back = ServiceStatus.from_json(json.loads(json.dumps(status.to_json())))
    assert back.node == "n1"
    assert back.nodes == NODES
    # one node (SQLite): no cluster in the JSON, no section on the page
    single = ServiceStatus(intake=IntakeStatus(inbox="/srv/inbox"))
    assert "cluster" not in single.to_json()
    assert "Nodes" not in render_html(single)


def test_leadpipe_status_reads_the_nodes_from_the_database(
    make_settings: Callable[..., Settings], cluster_db: str
) -> None:
    a, b = (ClusterNode(make_settings(n)).start() for n in ("a", "b"))
    try:
        assert a.acquire("export:daily") is not None
        age_node(cluster_db, "b", 30)  # older than lease_seconds (3)
        found = read_status(make_settings("a"))  # no service ran: the database answers
        assert found.node == "a"
        assert not found.running
        assert {n.name: (n.state, n.holds) for n in found.nodes} == {
            "a": ("alive", ("export:daily",)),
            "b": ("not alive", ()),
        }
        assert next(n for n in found.nodes if n.name == "a").this
    finally:
        a.stop()
        b.stop()
    settings = make_settings("a")
    gone = replace(settings, state=replace(settings.state, ledger="postgresql://x@127.0.0.1:1/x"))
    unreachable = read_status(gone)
    assert unreachable.node == "a"
    assert "cluster's database" in unreachable.nodes_problem


class Held:
    """A processor that notes whether each job came with its claim's lease."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.seen: list[tuple[str, bool, dict[str, str]]] = []

    def __call__(self, job: Job) -> Outcome:
        live = self.node.leases.live()
        self.seen.append((job.name, job.lease is not None and job.lease.check(), live))
        return Outcome(FileOutcome.PROCESSED)


def test_the_running_service_shows_its_node_and_releases_a_finished_claims_lease(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = replace(
        make_settings("solo"),
        intake=IntakeSettings(settle_seconds=0.2, sweep_seconds=0.5),
        status=StatusSettings(port=0),
    )
    watcher = ClusterNode(make_settings("watcher")).start()
    held = Held(watcher)
    (tmp_path / "inbox" / "ALPHA").mkdir(parents=True)
    try:
        with service(settings, processor=held, campaigns=lambda: ["ALPHA"]) as running:
            (tmp_path / "inbox" / "ALPHA" / "leads.csv").write_text("Name\nA\n")
            wait_for(lambda: held.seen, 20, "the file to be processed")
            wait_for(lambda: not watcher.leases.live(), 20, "the claim's lease to be released")
            name, had_lease, live = held.seen[0]
            assert name == "leads.csv"
            assert had_lease
            assert list(live.values()) == ["solo"]
            assert next(iter(live)).startswith("claim:ALPHA/")
            wait_for(lambda: running.snapshot().get("cluster", {}).get("nodes"), 20, "nodes")
            snap = running.snapshot()
            assert snap["cluster"]["node"] == "solo"
            url = running.info.status_url
            assert url is not None
            with urllib.request.urlopen(url + "status.json", timeout=10) as resp:  # noqa: S310
                served = json.loads(resp.read())
            assert {n["name"] for n in served["cluster"]["nodes"]} >= {"solo", "watcher"}
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310
                page = resp.read().decode()
            assert "This is node <b>solo</b>" in page
            assert "watcher" in page
        # the node's own state folder holds its status file; the shared one does not
        assert (tmp_path / "state" / "nodes" / "solo" / "status.json").exists()
        assert not (tmp_path / "state" / "status.json").exists()
    finally:
        watcher.stop()
