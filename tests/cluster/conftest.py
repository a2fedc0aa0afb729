"""Helpers for the cluster tests: a fresh database per test, nodes made in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.config import ApiSettings, ClusterSettings, Paths, Settings, StateSettings
from tests.postgres import Cluster


@pytest.fixture
def cluster_db(postgres_cluster: Cluster) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's throwaway PostgreSQL cluster."""
    with postgres_cluster.fresh_database() as url:
        yield url


def node_settings(
    root: Path, url: str, node: str, *, heartbeat: float = 0.2, lease: float = 3.0
) -> Settings:
    """Settings of node ``node`` sharing ``root`` (inbox, outbox) and the database ``url``."""
    return Settings(
        paths=Paths(
            inbox=root / "inbox",
            outbox=root / "outbox",
            state=root / "state" / "nodes" / node,
            schemas=root / "schemas",
        ),
        api=ApiSettings(connect_timeout=0.5, read_timeout=1.0),
        state=StateSettings(ledger=url),
        cluster=ClusterSettings(
            node=node,
            heartbeat_seconds=heartbeat,
            lease_seconds=lease,
            shared_state=root / "state",
        ),
    )


@pytest.fixture
def make_settings(tmp_path: Path, cluster_db: str) -> Callable[..., Settings]:
    """``make_settings("n1", lease=...)``: a node's settings in ``tmp_path`` on the test's DB."""

    def make(node: str, **kw: float) -> Settings:
        return node_settings(tmp_path, cluster_db, node, **kw)

    return make


def expire(url: str, resource: str | None = None) -> None:
    """Let leases expire now (the database's clock), as if their holder stopped renewing them."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        if resource is None:
            conn.execute("UPDATE cluster_leases SET expires = now() - interval '1 second'")
        else:
            conn.execute(
                "UPDATE cluster_leases SET expires = now() - interval '1 second'"
                " WHERE resource = %s",
                (resource,),
            )


def age_node(url: str, node: str, seconds: float) -> None:
    """Make a node's last heartbeat ``seconds`` old (by the database's clock)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE cluster_nodes SET last_seen = now() - make_interval(secs => %s)"
            " WHERE name = %s",
            (seconds, node),
        )


__all__ = ["age_node", "expire", "node_settings", "replace"]
