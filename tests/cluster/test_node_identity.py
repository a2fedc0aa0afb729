"""One process per node name, its leases renewed only while live (docs/cluster.md, "Nodes"
and "Leases and fencing"): a second process under a name alive on the same host is refused
(cloned machines share the host name, the default node name) and never takes the first one's
leases; a restart after kill -9 takes its own back at once; an expired lease is never revived
by a late heartbeat; a lease released while a heartbeat is out is not reported lost."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Iterable

import pytest

from pipeline.cluster.leases import LeaseTable
from pipeline.cluster.node import ClusterNode
from pipeline.config import Settings
from pipeline.errors import StateError
from tests.cluster.conftest import expire


def registered(settings: Settings) -> ClusterNode:
    node = ClusterNode(settings)
    node.db.open()
    node.registry.register()
    return node  # no heartbeat thread: the test beats


def dead_pid() -> int:
    """The pid of a process of this host that ran and is gone (as after kill -9)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    return proc.pid


def test_a_second_process_under_a_live_name_on_the_same_host_is_refused(
    make_settings: Callable[..., Settings], cluster_db: str
) -> None:
    a = registered(make_settings("a"))
    try:
        held = a.acquire("claim:X/1", "file:x:abc")
        assert held is not None
        twin = ClusterNode(make_settings("a"))  # same name, same host, this (running) pid
        with pytest.raises(StateError, match="in use by a node on this host"):
            twin.start()
        # even one that skipped the registration never takes the live process's leases
        stray = registered_without_check(make_settings("a"))
        try:
            assert stray.acquire("claim:X/1", "file:x:abc") is None
            assert stray.acquire("claim:X/2", "file:x:abc") is None  # nor its content's key
        finally:
            stray.db.close()
        a.beat()
        assert not held.lost.is_set()
        assert a.leases.live() == {"claim:X/1": "a"}
    finally:
        a.stop()


def registered_without_check(settings: Settings) -> ClusterNode:
    node = ClusterNode(settings)
    node.db.open()
    return node


def test_a_restart_after_kill_9_on_the_same_host_takes_its_leases_back_at_once(
    make_settings: Callable[..., Settings], cluster_db: str
) -> None:
    old = registered(make_settings("a"))
    held = old.acquire("claim:X/1", "file:x:abc")
    assert held is not None
    # the old process is killed: its row still looks live, but its pid runs no more
    old.db.query("UPDATE cluster_nodes SET pid = %s WHERE name = 'a'", (dead_pid(),))
    new = ClusterNode(make_settings("a")).start()
    try:
        again = new.acquire("claim:X/1", "file:x:abc")  # at once, not after lease_seconds
        assert again is not None
        assert again.token > held.token
        # had the old process only been paused: its beat finds the name taken, holds lost
        old.beat()
        assert held.lost.is_set()
        assert not again.lost.is_set()
        assert again.check()
    finally:
        new.stop()
        old.db.close()


def test_a_heartbeat_never_revives_an_expired_lease(
    make_settings: Callable[..., Settings], cluster_db: str
) -> None:
    a = registered(make_settings("a"))
    try:
        held = a.acquire("claim:X/1")
        assert held is not None
        expire(cluster_db, "claim:X/1")  # paused past its lease: nobody took it over yet
        a.beat()
        assert held.lost.is_set()
        assert a.leases.live() == {}  # not renewed: still free for any node
    finally:
        a.stop()


class ReleasingLeaseTable(LeaseTable):
    """The lease table, with the file's end (its release) landing while a beat is out."""

    owner: ClusterNode

    def renew(self, held: Iterable[tuple[str, int]]) -> set[str]:
        pairs = list(held)
        for resource, _ in pairs:
            hold = self.owner.held(resource)
            if hold is not None:
                self.owner.release(hold)
        return super().renew(pairs)


def test_a_lease_released_while_a_beat_is_out_is_not_reported_lost(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    a = registered(make_settings("a"))
    table = ReleasingLeaseTable(a.db, a.name, a.lease_seconds, a.instance)
    table.owner = a
    a.leases = table
    try:
        held = a.acquire("claim:X/1")
        assert held is not None
        with caplog.at_level(logging.WARNING, logger="leadpipe.cluster"):
            a.beat()
        assert "the lease is lost" not in caplog.text
        assert not held.lost.is_set()
        assert a.leases.live() == {}
    finally:
        a.stop()


def test_a_clone_with_the_same_host_name_is_refused_though_its_pid_runs_not_here(
    make_settings: Callable[..., Settings], cluster_db: str
) -> None:
    clone = registered(make_settings("a"))
    # another container of the same image: the same host name, its own pids
    clone.db.query(
        "UPDATE cluster_nodes SET pid = %s, pidspace = 'other-boot:1' WHERE name = 'a'",
        (dead_pid(),),
    )
    try:
        with pytest.raises(StateError, match="in use by a node on this host"):
            ClusterNode(make_settings("a")).start()
    finally:
        clone.db.close()


def test_tables_of_an_earlier_version_gain_the_instance(
    make_settings: Callable[..., Settings], cluster_db: str
) -> None:
    import psycopg

    with psycopg.connect(cluster_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE cluster_nodes (name TEXT PRIMARY KEY, host TEXT NOT NULL,"
            " pid INTEGER NOT NULL, started TIMESTAMPTZ NOT NULL,"
            " last_seen TIMESTAMPTZ NOT NULL, stopped TIMESTAMPTZ)"
        )
        conn.execute(
            "CREATE TABLE cluster_leases (resource TEXT PRIMARY KEY, holder TEXT NOT NULL,"
            " token BIGINT NOT NULL, key TEXT NOT NULL DEFAULT '',"
            " acquired TIMESTAMPTZ NOT NULL, expires TIMESTAMPTZ NOT NULL)"
        )
        conn.execute(
            "INSERT INTO cluster_leases VALUES ('claim:X/1', 'a', 1, '', now(),"
            " now() - interval '1 second')"
        )
    a = ClusterNode(make_settings("a")).start()
    try:
        held = a.acquire("claim:X/1")
        assert held is not None
        a.beat()
        assert not held.lost.is_set()
    finally:
        a.stop()
