"""The cluster's tables in the ledger's PostgreSQL database, and a small pool of its own.

Three tables beside the ledger's (docs/cluster.md, "What is stored"):

- ``cluster_nodes``: one row per node name: host, pid (and where it means something: boot
  and pid namespace), instance (a uuid4 per process), started, last seen (the heartbeat),
  stopped (a clean stop);
- ``cluster_leases``: one row per leased resource: holder and its instance, fencing token
  (from one sequence, so never reused), an optional exclusivity key, expiry;
- ``cluster_exports``: one row per export window written (job, window, file, rows, when, by
  which node).

Every time is the database's ``now()``: node clocks never decide who holds what. The pool is
separate from the ledger's, so a heartbeat never waits behind uploads, and every statement
has a timeout, so a dead network cannot hold a heartbeat or a lease check forever. Created
with ``IF NOT EXISTS`` in one transaction under an advisory lock: nodes starting at once
create them once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from pipeline.errors import StateError
from pipeline.ledger.postgres import _conninfo, _why, safe_location

#: The ledger's advisory lock space ("leadpipe's ledger"); the cluster's schema lock is key 2.
_LOCK_SPACE = 0x1EAD
_SCHEMA_LOCK = 2
#: Connections of the cluster's pool: the heartbeat, a sweep, an upload's lease check.
POOL_SIZE = 4

_TABLES = (
    """CREATE TABLE IF NOT EXISTS cluster_nodes (
        name TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL,
        stopped TIMESTAMPTZ
    )""",
    "CREATE SEQUENCE IF NOT EXISTS cluster_lease_token",
    """CREATE TABLE IF NOT EXISTS cluster_leases (
        resource TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        token BIGINT NOT NULL,
        key TEXT NOT NULL DEFAULT '',
        acquired TIMESTAMPTZ NOT NULL,
        expires TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS cluster_leases_holder ON cluster_leases (holder)",
    "CREATE INDEX IF NOT EXISTS cluster_leases_key ON cluster_leases (key) WHERE key != ''",
    # the instance (a uuid4 per process): two processes under one name are told apart;
    # added to tables of an earlier version too (docs/cluster.md, "Nodes")
    "ALTER TABLE cluster_nodes ADD COLUMN IF NOT EXISTS instance TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE cluster_leases ADD COLUMN IF NOT EXISTS instance TEXT NOT NULL DEFAULT ''",
    # where its pid means something (boot id, pid namespace): see registry.py
    "ALTER TABLE cluster_nodes ADD COLUMN IF NOT EXISTS pidspace TEXT NOT NULL DEFAULT ''",
    """CREATE TABLE IF NOT EXISTS cluster_exports (
        job TEXT NOT NULL,
        window_from DATE NOT NULL,
        window_to DATE NOT NULL,
        file TEXT NOT NULL,
        rows INTEGER,
        written TIMESTAMPTZ NOT NULL,
        node TEXT NOT NULL,
        PRIMARY KEY (job, window_from, window_to)
    )""",
)

Conn = psycopg.Connection[tuple[Any, ...]]


class ClusterDb:
    """The cluster's connection pool; every statement its own transaction unless in :meth:`tx`.

    ``timeout``: seconds to wait for a connection or a statement (a heartbeat's worth).
    Errors are :class:`StateError` naming the database without a password.
    """

    def __init__(self, url: str, password: str = "", *, timeout: float = 5.0) -> None:
        self.location = safe_location(url)
        self.timeout = timeout
        # a heartbeat (or `leadpipe status`) never waits the ledger's long connect timeout
        wait = str(max(2, int(timeout)))  # libpq: whole seconds, at least 2
        self._conninfo = make_conninfo(_conninfo(url, password), connect_timeout=wait)
        self._pool: ConnectionPool[Conn] | None = None

    def open(self) -> ClusterDb:
        """Create the tables (if missing) and open the pool; StateError when unreachable."""
        try:
            with psycopg.connect(self._conninfo, autocommit=True) as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_SPACE, _SCHEMA_LOCK))
                for stmt in _TABLES:
                    conn.execute(stmt)  # constant DDL
        except psycopg.Error as exc:
            raise StateError(
                f"the cluster's tables in {self.location} cannot be checked or created "
                f"({_why(exc)}); check that PostgreSQL runs and this user may create tables."
            ) from exc
        ms = int(self.timeout * 1000)

        def configure(conn: Conn) -> None:
            conn.execute(f"SET statement_timeout = {ms}")  # an int: no injection
            conn.execute(f"SET lock_timeout = {ms}")

        self._pool = ConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True},
            configure=configure,
            min_size=1,
            max_size=POOL_SIZE,
            open=True,
            timeout=self.timeout,
            name="leadpipe-cluster",
        )
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close(timeout=1.0)
            self._pool = None

    @contextmanager
    def tx(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        """One transaction (rows as dicts); StateError when the database cannot answer."""
        if self._pool is None:
            raise StateError(f"the cluster database {self.location} is closed")
        try:
            with (
                self._pool.connection(timeout=self.timeout) as conn,
                conn.transaction(),
                conn.cursor(row_factory=dict_row) as cur,
            ):
                yield cur
        except (psycopg.Error, TimeoutError) as exc:
            why = _why(exc) if isinstance(exc, psycopg.Error) else "no connection in time"
            raise StateError(f"the cluster database {self.location} did not answer: {why}") from exc

    def query(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """One statement in its own transaction; its rows (if any)."""
        with self.tx() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []
