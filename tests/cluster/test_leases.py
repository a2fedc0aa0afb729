"""Leases against a real PostgreSQL: take, renew, expire, takeover with tokens; self-fencing;
the heartbeat that never dies; node names (docs/cluster.md, "Leases and fencing")."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.cluster.heartbeat import Heartbeat
from pipeline.cluster.leases import Hold
from pipeline.cluster.node import ClusterNode, fence_after
from pipeline.config import Settings
from pipeline.errors import StateError
from tests.cluster.conftest import age_node, expire
from tests.cluster.test_node_identity import dead_pid


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def started(settings: Settings, ticks: Ticks | None = None) -> ClusterNode:
    node = ClusterNode(settings, monotonic=ticks or Ticks())
    node.db.open()
    node.registry.register()
    return node  # no heartbeat thread: the test beats


def test_take_renew_expire_takeover_with_new_tokens(
    make_settings: Callable[..., Settings], cluster_db: str
) -> None:
    a, b = started(make_settings("a")), started(make_settings("b"))
    try:
        first = a.acquire("claim:X/1", "file:X:abc")
        assert first is not None
        assert b.acquire("claim:X/1") is None  # live: never two holders
        a.beat()  # renewed with its token
        assert not first.lost.is_set()
        assert first.check()

        expire(cluster_db, "claim:X/1")  # a stops renewing (dead, or cut off)
        second = b.acquire("claim:X/1", "file:X:abc")
        assert second is not None
        assert second.token > first.token
        assert not first.check()
        assert first.lost.is_set()
        a.beat()  # its renewal is refused too
        assert first.lost.is_set()
        a.release(first)  # with the old token: B's lease stays
        assert second.check()
        assert b.leases.live() == {"claim:X/1": "b"}

        b.release(second)
        assert b.leases.live() == {}
        third = a.acquire("claim:X/1")
        assert third is not None
        assert third.token > second.token
    finally:
        a.stop()
        b.stop()


def test_a_key_is_held_by_one_node_at_a_time_and_a_node_takes_back_its_own(
    make_settings: Callable[..., Settings], cluster_db: str
) -> None:
    a, b = started(make_settings("a")), started(make_settings("b"))
    try:
        assert a.acquire("claim:X/1", "file:X:same") is not None
        # the same content for the same campaign in another claim: not while a works on it
        assert b.acquire("claim:X/2", "file:X:same") is None
        assert b.acquire("claim:X/3", "file:X:other") is not None
        # a restart of node a (same name) after kill -9 takes its own lease back at once
        a.db.query("UPDATE cluster_nodes SET pid = %s WHERE name = 'a'", (dead_pid(),))
        again = started(make_settings("a"))
        try:
            assert again.acquire("claim:X/1", "file:X:same") is not None
        finally:
            again.db.close()
        expire(cluster_db)
        assert b.acquire("claim:X/2", "file:X:same") is not None
    finally:
        a.stop()
        b.stop()


def test_two_nodes_racing_for_one_resource_one_wins(
    make_settings: Callable[..., Settings],
) -> None:
    nodes = [started(make_settings(f"n{i}")) for i in range(4)]
    won: list[str] = []
    go = threading.Barrier(len(nodes))

    def race(node: ClusterNode) -> None:
        go.wait()
        if node.acquire("export:daily:2026-11-01_2026-11-02") is not None:
            won.append(node.name)

    try:
        threads = [threading.Thread(target=race, args=(n,)) for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(won) == 1
    finally:
        for n in nodes:
            n.stop()


def test_a_node_that_cannot_renew_fences_itself_before_the_lease_can_expire(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings("a", heartbeat=1.0, lease=10.0)
    ticks = Ticks()
    a = started(settings, ticks)
    try:
        hold = a.acquire("claim:X/1")
        assert hold is not None
        limit = fence_after(settings)  # 10 - 0.5 - 1.0: a whole request still fits
        assert limit == pytest.approx(8.5)
        a.db.close()  # PostgreSQL unreachable from here on
        ticks.t += limit - 1
        with pytest.raises(StateError):
            a.beat()
        assert hold.check()  # fresh enough: the database cannot have let it expire yet
        ticks.t += 1
        with pytest.raises(StateError):
            a.beat()
        assert hold.lost.is_set()  # no new request for it, even before any check
        assert not hold.check()
    finally:
        a.registry.db.close()


def test_a_hold_checked_against_an_unreachable_database_trusts_only_its_age() -> None:
    ticks = Ticks()

    def unreachable(_: Hold) -> bool:
        raise StateError("the cluster database did not answer")

    hold = Hold("claim:X/1", 7, "", renewed=ticks(), fence_after=5, verify=unreachable)
    hold.monotonic = ticks
    assert hold.check()
    ticks.t += 5
    assert not hold.check()
    assert hold.lost.is_set()


def test_the_heartbeat_thread_survives_every_exception() -> None:
    beats: list[int] = []
    enough = threading.Event()

    def beat() -> None:
        beats.append(1)
        if len(beats) >= 5:
            enough.set()
        raise [StateError("db down"), RuntimeError("surprise"), KeyError("x")][len(beats) % 3]

    hb = Heartbeat(beat, 0.01).start()
    try:
        assert enough.wait(10)
        assert hb.alive
    finally:
        hb.stop()
    assert not hb.alive


def test_the_heartbeat_renews_every_lease_and_the_registry(
    make_settings: Callable[..., Settings], cluster_db: str
) -> None:
    a = ClusterNode(make_settings("a", heartbeat=0.05, lease=3.0)).start()
    try:
        hold = a.acquire("claim:X/1")
        assert hold is not None
        first = hold.renewed
        age_node(cluster_db, "a", 100)
        deadline = threading.Event()
        for _ in range(200):
            if hold.renewed > first and a.nodes() and a.nodes()[0].seen_ago < 50:
                break
            deadline.wait(0.05)
        assert hold.renewed > first
        (me,) = a.nodes()
        assert me.alive
        assert me.this
        assert me.holds == ("claim:X/1",)
    finally:
        a.stop()


def test_a_node_name_alive_on_another_host_is_refused(
    make_settings: Callable[..., Settings], cluster_db: str
) -> None:
    a = started(make_settings("a"))
    a.db.query("UPDATE cluster_nodes SET host = 'elsewhere' WHERE name = 'a'")
    twin = ClusterNode(make_settings("a"))
    with pytest.raises(StateError, match="in use by a node on elsewhere"):
        twin.start()
    age_node(cluster_db, "a", 60)  # not seen for longer than a lease: it may be taken over
    twin = ClusterNode(make_settings("a")).start()
    twin.stop()
    a.db.close()


def test_nodes_show_alive_stopped_and_not_alive(
    make_settings: Callable[..., Settings], cluster_db: str, tmp_path: Path
) -> None:
    a, b, c = (started(make_settings(n)) for n in "abc")
    try:
        assert a.acquire("claim:X/1") is not None
        c.stop()
        age_node(cluster_db, "b", 10)  # older than lease_seconds (3)
        a.beat()
        states = {n.name: n.state for n in a.nodes()}
        assert states == {"a": "alive", "b": "not alive", "c": "stopped"}
        assert next(n for n in a.nodes() if n.name == "a").holds == ("claim:X/1",)
    finally:
        a.stop()
        b.db.close()
