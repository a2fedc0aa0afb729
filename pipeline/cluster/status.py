"""The cluster's nodes for ``leadpipe status`` (docs/cluster.md, "What to monitor").

Read from the database directly, so the answer is current whether or not this node runs;
when the database cannot answer, ``leadpipe status`` shows the nodes the service last wrote
into its status file, and says so.
"""

from __future__ import annotations

from pipeline.cluster.db import ClusterDb
from pipeline.cluster.records import NodeStatus
from pipeline.cluster.registry import read_nodes
from pipeline.config import Settings


def current_nodes(settings: Settings, *, timeout: float = 3.0) -> list[NodeStatus]:
    """Every registered node now (StateError when the database does not answer)."""
    db = ClusterDb(settings.state.ledger, settings.state.password, timeout=timeout).open()
    try:
        return read_nodes(db, settings.cluster.lease_seconds, this=settings.cluster.node)
    finally:
        db.close()
