"""Leases with fencing tokens (docs/cluster.md, "Leases and fencing").

A lease is a row of ``cluster_leases``: a resource (``claim:<campaign folder>/<claim>``,
``export:<job>``, ``export:<job>:<from>_<to>``), its holder node and the holder's instance
(process), a fencing token and an expiry, all by the database's clock. Taking one is ONE
statement::

    INSERT ... ON CONFLICT (resource) DO UPDATE ... WHERE the old lease expired
    (or its holder is this very process, or an earlier process of this node's name that is
    not alive any more: a restart after kill -9) RETURNING token

so two nodes can never both take a resource. Every take (first or takeover) draws a new token
from one sequence: a token is never reused, so a holder that lost its lease can never pass a
check with its old token. A lease may carry a ``key``: no two live leases of different nodes
share one (the same file content for one campaign is worked on by one node at a time).

:class:`Hold` is what a node keeps of a lease it holds: the token, when it was last renewed
(this process's monotonic clock, read *before* the renewal was sent: the database's expiry is
never earlier than that plus ``lease_seconds``), and ``lost``, set once the lease is lost or
the node can no longer vouch for it (:meth:`Hold.fenced`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipeline.cluster.db import ClusterDb
from pipeline.errors import StateError

log = logging.getLogger("leadpipe.cluster")

#: A lease this node may not take is live and neither this very process's own nor left by an
#: earlier process under this name that is not alive any more (its registry row is stale or
#: another instance's now: a restart after kill -9 takes its leases back at once).
_ACQUIRE = """
INSERT INTO cluster_leases AS l (resource, holder, instance, token, key, acquired, expires)
SELECT %(resource)s, %(node)s, %(inst)s, nextval('cluster_lease_token'), %(key)s, now(),
       now() + make_interval(secs => %(ttl)s)
WHERE %(key)s = '' OR NOT EXISTS (
    SELECT 1 FROM cluster_leases o WHERE o.key = %(key)s AND o.resource != %(resource)s
    AND o.expires > now() AND NOT (o.holder = %(node)s AND (o.instance = %(inst)s
        OR NOT EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.name = o.holder
            AND n.instance = o.instance AND n.stopped IS NULL
            AND n.last_seen > now() - make_interval(secs => %(ttl)s)))))
ON CONFLICT (resource) DO UPDATE SET holder = excluded.holder, instance = excluded.instance,
    token = excluded.token, key = excluded.key, acquired = excluded.acquired,
    expires = excluded.expires
WHERE l.expires <= now() OR (l.holder = %(node)s AND (l.instance = %(inst)s
    OR NOT EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.name = l.holder
        AND n.instance = l.instance AND n.stopped IS NULL
        AND n.last_seen > now() - make_interval(secs => %(ttl)s))))
RETURNING token
"""


@dataclass
class Hold:
    """A lease this node holds (see the module docstring)."""

    resource: str
    token: int
    key: str
    #: monotonic time the last successful take or renewal was *sent*
    renewed: float
    #: the node's rule: no new POST when the last renewal is older than this (s)
    fence_after: float
    #: checks the lease in the database (renewing it); None: no database check
    verify: Callable[[Hold], bool] | None = field(default=None, repr=False)
    lost: threading.Event = field(default_factory=threading.Event, repr=False)
    monotonic: Callable[[], float] = field(default=time.monotonic, repr=False)

    def fenced(self) -> bool:
        """True (and ``lost`` set for good) once the last renewal is too old to vouch for the
        lease: the database may let it expire before a request started now is answered."""
        if not self.lost.is_set() and self.monotonic() - self.renewed >= self.fence_after:
            log.warning(
                "%s: lease not renewed for %.0f s: no new request for it (self-fencing)",
                self.resource,
                self.monotonic() - self.renewed,
            )
            self.lost.set()
        return self.lost.is_set()

    def held_locally(self) -> bool:
        """True while not fenced (a local look, no database): cheap enough for every step."""
        return not self.fenced()

    def check(self) -> bool:
        """Still ours, with this token, and fresh enough to start requests? (Before each batch
        of sends, and before the file is placed.) The database is asked, which renews the
        lease; when it cannot answer, the local rule alone decides (:meth:`fenced`)."""
        if self.fenced():
            return False
        if self.verify is None:
            return True
        try:
            ok = self.verify(self)
        except StateError as exc:
            log.warning("%s: lease not checked (%s); fresh enough to go on", self.resource, exc)
            return not self.fenced()
        if not ok:
            log.warning("%s: the lease is lost (another node took it over)", self.resource)
            self.lost.set()
        return ok


class LeaseTable:
    """The ``cluster_leases`` table for one node."""

    def __init__(self, db: ClusterDb, node: str, lease_seconds: float, instance: str = "") -> None:
        self.db = db
        self.node = node
        self.instance = instance
        self.ttl = float(lease_seconds)

    def acquire(self, resource: str, key: str = "") -> int | None:
        """Take ``resource`` if free, expired or this process's (or left by a dead earlier
        process of this name): its new token (None: held by a live lease of another node or
        process, or ``key`` is). Raises StateError when unreachable."""
        args = {
            "resource": resource,
            "node": self.node,
            "inst": self.instance,
            "key": key,
            "ttl": self.ttl,
        }
        with self.db.tx() as cur:
            if key:  # two takes of one key never pass the NOT EXISTS at once
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"lease:{key}",))
            cur.execute(_ACQUIRE, args)
            row = cur.fetchone()
        return int(row["token"]) if row else None

    def renew(self, held: Iterable[tuple[str, int]]) -> set[str]:
        """Extend every ``(resource, token)`` still held with that token and not expired; those
        renewed. An expired lease is never revived (a paused node's late beat): it is lost,
        another node may have taken it and found its rows ``sending``."""
        pairs = list(held)
        if not pairs:
            return set()
        rows = self.db.query(
            "UPDATE cluster_leases l SET expires = now() + make_interval(secs => %s)"
            " FROM unnest(%s::text[], %s::bigint[]) AS h(r, t)"
            " WHERE l.resource = h.r AND l.token = h.t AND l.holder = %s AND l.expires > now()"
            " RETURNING l.resource",
            (self.ttl, [r for r, _ in pairs], [t for _, t in pairs], self.node),
        )
        return {r["resource"] for r in rows}

    def verify(self, resource: str, token: int) -> bool:
        """Still held with ``token`` and not expired; renewed when so."""
        rows = self.db.query(
            "UPDATE cluster_leases SET expires = now() + make_interval(secs => %s)"
            " WHERE resource = %s AND token = %s AND holder = %s AND expires > now()"
            " RETURNING 1",
            (self.ttl, resource, token, self.node),
        )
        return bool(rows)

    def release(self, resource: str, token: int) -> bool:
        """Give the lease up (only with its token: never another node's); True if it was."""
        rows = self.db.query(
            "DELETE FROM cluster_leases WHERE resource = %s AND token = %s AND holder = %s"
            " RETURNING 1",
            (resource, token, self.node),
        )
        return bool(rows)

    def live(self) -> dict[str, str]:
        """Every resource under a live lease -> its holder."""
        rows = self.db.query("SELECT resource, holder FROM cluster_leases WHERE expires > now()")
        return {r["resource"]: r["holder"] for r in rows}
