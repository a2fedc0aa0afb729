"""The node registry (docs/cluster.md, "Nodes"): one row per node name in ``cluster_nodes``.

A node registers at start (host, pid, started), beats every ``heartbeat_seconds`` (last seen)
and says goodbye at a clean stop. A node is alive while it was seen within ``lease_seconds``
(the database's clock) and has not stopped. A name alive on another host is refused at start:
two machines under one name would share leases they each think their own.
"""

from __future__ import annotations

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

    def __init__(self, db: ClusterDb, node: str, host: str, pid: int, lease_seconds: float):
        self.db = db
        self.node, self.host, self.pid = node, host, pid
        self.ttl = float(lease_seconds)

    def register(self) -> None:
        """This node is running now; StateError when its name is alive on another host."""
        with self.db.tx() as cur:
            cur.execute(
                "SELECT host, pid, EXTRACT(EPOCH FROM now() - last_seen)::float8 AS ago,"
                " stopped IS NOT NULL AS stopped FROM cluster_nodes WHERE name = %s FOR UPDATE",
                (self.node,),
            )
            found = cur.fetchone()
            if (
                found is not None
                and found["host"] != self.host
                and not found["stopped"]
                and found["ago"] < self.ttl
            ):
                raise StateError(
                    f"the node name {self.node!r} is in use by a node on {found['host']} "
                    f"(pid {found['pid']}, seen {found['ago']:.0f} s ago). Give each node its "
                    'own name (LEADPIPE_NODE or [cluster] node); docs/cluster.md, "Nodes".'
                )
            cur.execute(
                "INSERT INTO cluster_nodes (name, host, pid, started, last_seen)"
                " VALUES (%s, %s, %s, now(), now()) ON CONFLICT (name) DO UPDATE SET"
                " host = excluded.host, pid = excluded.pid, started = excluded.started,"
                " last_seen = excluded.last_seen, stopped = NULL",
                (self.node, self.host, self.pid),
            )

    def beat(self) -> None:
        """Seen now (the row is made again if someone removed it)."""
        self.db.query(
            "INSERT INTO cluster_nodes (name, host, pid, started, last_seen)"
            " VALUES (%s, %s, %s, now(), now()) ON CONFLICT (name) DO UPDATE SET"
            " host = excluded.host, pid = excluded.pid, last_seen = excluded.last_seen,"
            " stopped = NULL",
            (self.node, self.host, self.pid),
        )

    def goodbye(self) -> None:
        """A clean stop: not alive from now on (its leases expire on their own)."""
        self.db.query(
            "UPDATE cluster_nodes SET stopped = now(), last_seen = now()"
            " WHERE name = %s AND host = %s AND pid = %s",
            (self.node, self.host, self.pid),
        )

    def nodes(self) -> list[NodeStatus]:
        """Every node with its state and what it holds now."""
        return read_nodes(self.db, self.ttl, this=self.node)


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
