"""The node registry (docs/cluster.md, "Nodes"): one row per node name in ``cluster_nodes``.

A node registers at start (host, pid, instance, started), beats every ``heartbeat_seconds``
(last seen) and says goodbye at a clean stop. A node is alive while it was seen within
``lease_seconds`` (the database's clock) and has not stopped. The instance is a uuid4 drawn
by each process: a name alive in another instance is refused at start, on another host or on
this one (cloned machines share a host name, the default node name), unless that instance's
pid on this host (its boot and pid namespace: cloned containers share host names) runs no
more (a restart after ``kill -9``). Two processes under one name
would share leases they each think their own.
"""

from __future__ import annotations

import os
import uuid

from pipeline.cluster.db import ClusterDb
from pipeline.cluster.records import NodeStatus
from pipeline.errors import StateError

_NODES = """
SELECT n.name, n.host, n.pid, n.started, n.last_seen, n.stopped IS NOT NULL AS stopped,
       EXTRACT(EPOCH FROM now() - n.last_seen)::float8 AS ago,
       n.stopped IS NULL AND n.last_seen > now() - make_interval(secs => %s) AS alive,
       coalesce(array_agg(l.resource ORDER BY l.resource)
                FILTER (WHERE l.resource IS NOT NULL), '{}') AS holds
FROM cluster_nodes n
LEFT JOIN cluster_leases l ON l.holder = n.name AND l.expires > now()
GROUP BY n.name ORDER BY n.name
"""


class NodeRegistry:
    """``cluster_nodes`` as one node uses it."""

    def __init__(
        self,
        db: ClusterDb,
        node: str,
        host: str,
        pid: int,
        lease_seconds: float,
        instance: str = "",
    ):
        self.db = db
        self.node, self.host, self.pid = node, host, pid
        self.instance = instance or uuid.uuid4().hex
        self.pidspace = pid_space()
        self.ttl = float(lease_seconds)

    def register(self) -> None:
        """This process is the node now; StateError when its name is alive in another process.

        A live row (seen within ``lease_seconds``, not stopped) of another instance is refused,
        on another host or this one, unless it is on this host and its pid runs no more: a
        restart after ``kill -9`` (docs/cluster.md, "Nodes").
        """
        with self.db.tx() as cur:
            cur.execute(
                "SELECT host, pid, pidspace, instance,"
                " EXTRACT(EPOCH FROM now() - last_seen)::float8 AS ago,"
                " stopped IS NOT NULL AS stopped FROM cluster_nodes WHERE name = %s FOR UPDATE",
                (self.node,),
            )
            found = cur.fetchone()
            if (
                found is not None
                and found["instance"] != self.instance
                and not found["stopped"]
                and found["ago"] < self.ttl
                and not (
                    found["host"] == self.host
                    and found["pidspace"] == self.pidspace
                    and not pid_running(int(found["pid"]))
                )
            ):
                where = "this host" if found["host"] == self.host else found["host"]
                raise StateError(
                    f"the node name {self.node!r} is in use by a node on {where} "
                    f"(pid {found['pid']}, seen {found['ago']:.0f} s ago). Give each node its "
                    'own name (LEADPIPE_NODE or [cluster] node); docs/cluster.md, "Nodes".'
                )
            cur.execute(
                "INSERT INTO cluster_nodes (name, host, pid, pidspace, instance, started,"
                " last_seen) VALUES (%s, %s, %s, %s, %s, now(), now()) ON CONFLICT (name) DO"
                " UPDATE SET host = excluded.host, pid = excluded.pid,"
                " pidspace = excluded.pidspace, instance = excluded.instance,"
                " started = excluded.started, last_seen = excluded.last_seen, stopped = NULL",
                (self.node, self.host, self.pid, self.pidspace, self.instance),
            )

    def beat(self) -> bool:
        """Seen now; False when the row is not this instance's any more (another process took
        the name over: every lease of this one is lost). A removed row is made again (still
        False: what this node held is not vouched for)."""
        rows = self.db.query(
            "UPDATE cluster_nodes SET last_seen = now(), stopped = NULL"
            " WHERE name = %s AND instance = %s RETURNING 1",
            (self.node, self.instance),
        )
        if rows:
            return True
        self.db.query(
            "INSERT INTO cluster_nodes (name, host, pid, pidspace, instance, started, last_seen)"
            " VALUES (%s, %s, %s, %s, %s, now(), now()) ON CONFLICT (name) DO NOTHING",
            (self.node, self.host, self.pid, self.pidspace, self.instance),
        )
        return False

    def goodbye(self) -> None:
        """A clean stop: not alive from now on (its leases expire on their own)."""
        self.db.query(
            "UPDATE cluster_nodes SET stopped = now(), last_seen = now()"
            " WHERE name = %s AND instance = %s",
            (self.node, self.instance),
        )

    def nodes(self) -> list[NodeStatus]:
        """Every node with its state and what it holds now."""
        return read_nodes(self.db, self.ttl, this=self.node)


def pid_space() -> str:
    """Where this process's pids mean something: the boot and the pid namespace ("" when
    unknown). Cloned containers share a host name, not a pid namespace: a pid of another
    one's that runs no more here says nothing of it."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def pid_running(pid: int) -> bool:
    """Is a process ``pid`` running on this host? (One we may not signal runs too.)"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def read_nodes(db: ClusterDb, lease_seconds: float, *, this: str = "") -> list[NodeStatus]:
    """Every registered node (alive or not) and the leases each holds now."""
    return [
        NodeStatus(
            name=r["name"],
            host=r["host"],
            pid=r["pid"],
            started=r["started"].isoformat(timespec="seconds"),
            last_seen=r["last_seen"].isoformat(timespec="seconds"),
            seen_ago=max(0.0, float(r["ago"])),
            alive=bool(r["alive"]),
            stopped=bool(r["stopped"]),
            holds=tuple(r["holds"]),
            this=r["name"] == this,
        )
        for r in db.query(_NODES, (float(lease_seconds),))
    ]
