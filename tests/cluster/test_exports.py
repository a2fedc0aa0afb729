"""Exports exactly once per window across nodes (docs/cluster.md, "Exports"): two schedulers
on two nodes race over one outbox; a node that died mid-export loses its lease and another
writes the window; catch-up after downtime still works."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from pipeline.api import HeroBaseClient
from pipeline.clock import FakeClock
from pipeline.cluster.exports import (
    ClusterExports,
    job_resource,
    window_resource,
    written_windows,
)
from pipeline.cluster.node import ClusterNode
from pipeline.config import ExportJob, Settings
from pipeline.export.scheduler import ExportScheduler
from pipeline.export.state import JobBusy, JobState, StateStore
from pipeline.export.windows import Window
from pipeline.export.writer import export_window
from pipeline.sandbox import Sandbox
from tests.cluster.conftest import expire
from tests.export.conftest import TZ, api_settings

START = datetime(2026, 10, 8, 12, 0, tzinfo=UTC)
JOB = ExportJob(
    name="daily",
    search="api_import_export",
    schedule="0 2 * * *",
    window="previous-day",
    start="2026-10-01",
)


@pytest.fixture
def sandbox_at_start() -> Iterator[Sandbox]:
    with Sandbox(clock=FakeClock(START)) as sb:
        yield sb


def exports_of(sb: Sandbox) -> Counter[tuple[str, str]]:
    """How often each window was asked of the API (one request per window written)."""
    return Counter(
        (r["query"].get("from", ""), r["query"].get("to", ""))
        for r in sb.requests()
        if r["method"] == "GET" and r["path"].endswith("/leads/csv")
    )


class NodeExports:
    """One node's export scheduler: its own state folder, the shared outbox and database."""

    def __init__(self, settings: Settings, sb: Sandbox) -> None:
        self.settings = replace(settings, exports=[JOB], timezone=TZ)
        self.node = ClusterNode(self.settings).start()
        self.client = HeroBaseClient(api_settings(sb.url), clock=FakeClock(START), timezone=TZ)
        self.scheduler = ExportScheduler(
            self.settings, self.client, clock=FakeClock(START), shared=ClusterExports(self.node)
        )

    def close(self) -> None:
        self.client.close()
        self.node.stop()


@pytest.fixture
def two_nodes(
    make_settings: Callable[..., Settings], sandbox_at_start: Sandbox
) -> Iterator[tuple[NodeExports, NodeExports]]:
    a = NodeExports(make_settings("a"), sandbox_at_start)
    b = NodeExports(make_settings("b"), sandbox_at_start)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def days_written(outbox: Path) -> list[str]:
    return sorted(p.name for p in (outbox / "daily").glob("daily_*.csv"))


EXPECTED = [f"daily_2026-10-0{d}_2026-10-0{d + 1}.csv" for d in range(1, 8)]


def test_two_schedulers_racing_write_each_window_once(
    two_nodes: tuple[NodeExports, NodeExports], sandbox_at_start: Sandbox
) -> None:
    a, b = two_nodes
    go = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(n: NodeExports) -> None:
        go.wait()
        try:
            for _ in range(3):  # the loser comes back, as the service does
                n.scheduler.run_due(START)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert days_written(a.settings.paths.outbox) == EXPECTED
    asked = exports_of(sandbox_at_start)
    assert len(asked) == 7, asked
    assert set(asked.values()) == {1}, asked  # each window written once
    recorded = written_windows(a.node, "daily")
    assert [(f, t) for f, t, _, _ in recorded] == [
        (date(2026, 10, d), date(2026, 10, d + 1)) for d in range(1, 8)
    ]
    # both nodes' watermarks follow the cluster: nothing is due on either any more
    for n in (a, b):
        assert n.scheduler.run_due(START) == []
        assert n.scheduler.planned("daily", START) == []
    assert set(exports_of(sandbox_at_start).values()) == {1}


def test_a_node_dead_mid_export_loses_the_job_and_another_writes_its_windows(
    two_nodes: tuple[NodeExports, NodeExports], sandbox_at_start: Sandbox, cluster_db: str
) -> None:
    a, b = two_nodes
    # node a took the job and died before writing anything (its lease is never renewed)
    dead = a.node.acquire(job_resource("daily"))
    assert dead is not None
    a.node.drop(dead)
    assert b.scheduler.run_due(START) == []  # still a's: b looks again soon
    assert days_written(b.settings.paths.outbox) == []
    expire(cluster_db, job_resource("daily"))
    results = b.scheduler.run_due(START)
    assert [r.status for r in results] == ["written"] * 7
    assert days_written(b.settings.paths.outbox) == EXPECTED
    assert {node for _, _, node, _ in written_windows(b.node, "daily")} == {"b"}


def test_a_window_whose_file_is_in_the_outbox_is_not_written_again_and_catch_up_goes_on(
    two_nodes: tuple[NodeExports, NodeExports], sandbox_at_start: Sandbox
) -> None:
    a, b = two_nodes
    # a wrote three days, then its node stopped before recording the third (a kill -9)
    first = a.scheduler.run_due(datetime(2026, 10, 4, 12, 0, tzinfo=UTC))
    assert [r.status for r in first] == ["written"] * 3
    a.node.db.query("DELETE FROM cluster_exports WHERE window_from = '2026-10-03'")
    # b, after "downtime", catches up from the job's start: only the days not written yet
    later = b.scheduler.run_due(START)
    assert [r.window.start.day for r in later] == [4, 5, 6, 7]
    assert set(exports_of(sandbox_at_start).values()) == {1}
    assert days_written(b.settings.paths.outbox) == EXPECTED
    assert len(written_windows(b.node, "daily")) == 7  # the third recorded from its file


def test_a_single_node_install_turned_cluster_keeps_its_export_watermark(
    two_nodes: tuple[NodeExports, NodeExports], sandbox_at_start: Sandbox
) -> None:
    a, _ = two_nodes
    shared = a.settings.cluster.shared_state
    assert shared is not None
    # before the cluster: one node, its export state in the shared state folder
    StateStore(shared / "exports").save(JobState("daily", watermark="2026-10-05"))
    results = a.scheduler.run_due(START)
    assert [r.window.start.day for r in results] == [5, 6, 7]  # not the days before


def test_a_window_whose_lease_was_lost_mid_write_is_not_renamed_into_place(
    two_nodes: tuple[NodeExports, NodeExports], cluster_db: str
) -> None:
    """A node stalled mid-export (its lease taken over meanwhile) drops its copy: the file is
    the new holder's to write, once."""
    a, b = two_nodes
    window = Window(date(2026, 10, 3), date(2026, 10, 4))
    outbox = a.settings.paths.outbox
    with ClusterExports(a.node).window("daily", window) as mine:
        assert mine is not None
        assert mine()
        expire(cluster_db, window_resource("daily", window))  # a stalled past its lease
        assert b.node.acquire(window_resource("daily", window)) is not None
        with pytest.raises(JobBusy, match="lease of window"):
            export_window(
                JOB, window, client=a.client, outbox=outbox, timezone=TZ, now=START,
                still_mine=mine,
            )  # fmt: skip
    assert days_written(outbox) == []
    assert not list((outbox / "daily").glob("*.manifest.json"))


class OtherNodeWritesFirst(ClusterExports):
    """Node ``other`` writes, records and releases the first window a asks the lease of, in
    the moment between a's first look ("not written yet") and a's lease of the window."""

    def __init__(self, node: ClusterNode, other: NodeExports) -> None:
        super().__init__(node)
        self.other = other
        self.raced: list[Window] = []

    @contextlib.contextmanager
    def window(self, name: str, window: Window) -> Iterator[Callable[[], bool] | None]:
        if not self.raced:
            self.raced.append(window)
            theirs = ClusterExports(self.other.node)
            with theirs.window(name, window) as mine:
                assert mine is not None
                result = export_window(
                    JOB, window, client=self.other.client,
                    outbox=self.other.settings.paths.outbox, timezone=TZ, now=START,
                    still_mine=mine,
                )  # fmt: skip
                assert result.path is not None
                theirs.record(name, window, result.path, result.rows)
        with super().window(name, window) as mine:
            yield mine


def test_a_window_written_by_another_node_before_the_lease_is_taken_is_not_written_again(
    two_nodes: tuple[NodeExports, NodeExports], sandbox_at_start: Sandbox
) -> None:
    a, b = two_nodes
    racing = OtherNodeWritesFirst(a.node, b)
    a.scheduler.shared = racing
    results = a.scheduler.run_due(START)
    assert racing.raced == [Window(date(2026, 10, 1), date(2026, 10, 2))]
    assert [r.window.start.day for r in results] == [2, 3, 4, 5, 6, 7]  # not the first again
    assert set(exports_of(sandbox_at_start).values()) == {1}
    assert days_written(a.settings.paths.outbox) == EXPECTED
    assert [n for _, _, n, _ in written_windows(a.node, "daily")] == ["b"] + ["a"] * 6
    assert a.scheduler.planned("daily", START) == []


def test_the_single_node_watermark_is_recorded_so_a_node_on_another_machine_follows_it(
    two_nodes: tuple[NodeExports, NodeExports], sandbox_at_start: Sandbox
) -> None:
    """[paths] state is each machine's own disk: the former single node's watermark reaches
    the other nodes through the database (docs/cluster.md, "Exports")."""
    a, b = two_nodes
    shared = a.settings.cluster.shared_state
    assert shared is not None
    # the former single node's export state, on its own disk only
    StateStore(shared / "exports").save(JobState("daily", watermark="2026-10-05"))
    b.scheduler.settings = replace(
        b.settings, cluster=replace(b.settings.cluster, shared_state=shared.parent / "b-disk")
    )
    # a starts first, when nothing is due yet: it adopts the watermark, writes nothing
    assert a.scheduler.run_due(datetime(2026, 10, 5, 12, 0, tzinfo=UTC)) == []
    assert exports_of(sandbox_at_start) == Counter()
    # b, on another machine, takes the job first later: only the days after the watermark
    results = b.scheduler.run_due(START)
    assert [r.window.start.day for r in results] == [5, 6, 7]
    assert set(exports_of(sandbox_at_start).values()) == {1}
    assert [f.day for f, _, _, _ in written_windows(b.node, "daily")] == [5, 6, 7]
    assert b.scheduler.planned("daily", START) == []
