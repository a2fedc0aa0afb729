"""This process as a node of the cluster (docs/cluster.md, "Nodes").

:class:`ClusterNode` composes the registry, the lease table and the heartbeat: it registers
at start, takes and releases leases for the intake and the export scheduler, renews them all
at every beat, and marks a lease ``lost`` when the database refuses its renewal (another node
took it over) or when too long passed since its last renewal (self-fencing: ``fence_after`` =
``lease_seconds`` less the longest a request can take, so a request started before then is
answered or given up before the lease could expire).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from pipeline.cluster.db import ClusterDb
from pipeline.cluster.heartbeat import Heartbeat
from pipeline.cluster.leases import Hold, LeaseTable
from pipeline.cluster.records import NodeStatus
from pipeline.cluster.registry import NodeRegistry
from pipeline.config import Settings
from pipeline.errors import StateError

log = logging.getLogger("leadpipe.cluster")


def fence_after(settings: Settings) -> float:
    """Seconds after a lease's last renewal when this node stops starting requests for it.

    A request may take ``connect_timeout + read_timeout``; the config refuses a
    ``lease_seconds`` that leaves less than a heartbeat beyond that (docs/cluster.md, "Leases
    and fencing").
    """
    c, api = settings.cluster, settings.api
    return max(c.heartbeat_seconds, c.lease_seconds - api.connect_timeout - api.read_timeout)


class ClusterNode:
    """One node: its name, its leases, its heartbeat. Thread-safe."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: ClusterDb | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        c = settings.cluster
        self.name = c.node
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.heartbeat_seconds = c.heartbeat_seconds
        self.lease_seconds = c.lease_seconds
        self.fence_after = fence_after(settings)
        self.db = db or ClusterDb(
            settings.state.ledger, settings.state.password, timeout=max(2.0, c.heartbeat_seconds)
        )
        self.monotonic = monotonic
        #: this process (a uuid4): two processes under one name are told apart
        self.instance = uuid.uuid4().hex
        self.leases = LeaseTable(self.db, self.name, c.lease_seconds, self.instance)
        self.registry = NodeRegistry(
            self.db, self.name, self.host, self.pid, c.lease_seconds, self.instance
        )
        self._held: dict[str, Hold] = {}
        self._lock = threading.Lock()
        self._nodes: tuple[NodeStatus, ...] = ()
        self._heartbeat: Heartbeat | None = None
        self.last_beat: float | None = None  #: monotonic time of the last good beat

    # -- life ---------------------------------------------------------------------------------

    def start(self) -> ClusterNode:
        """Open the tables, register (StateError: the name is alive elsewhere), start beating."""
        self.db.open()
        try:
            self.registry.register()
            self._refresh()
            self.last_beat = self.monotonic()
        except BaseException:
            self.db.close()
            raise
        log.info(
            "cluster node %s on %s (heartbeat %g s, leases %g s)",
            self.name,
            self.db.location,
            self.heartbeat_seconds,
            self.lease_seconds,
        )
        self._heartbeat = Heartbeat(self.beat, self.heartbeat_seconds).start()
        return self

    def stop(self) -> None:
        """Stop beating; say goodbye. Held leases are not released: they expire by themselves
        (a request whose answer was not waited for may still be out; docs/cluster.md, "Leases
        and fencing")."""
        if self._heartbeat is not None:
            self._heartbeat.stop(timeout=1.0)
        # only while the database answers: a stop never waits out its timeouts (the service
        # exits within 10 s; an unreachable node shows "not alive" after lease_seconds anyway)
        answering = self.last_beat is not None and (
            self.monotonic() - self.last_beat < 2 * self.heartbeat_seconds + 1
        )
        if answering or self._heartbeat is None:
            try:
                self.registry.goodbye()
            except StateError as exc:
                log.warning("cluster: could not record the stop: %s", exc)
        self.db.close()

    # -- leases -------------------------------------------------------------------------------

    def acquire(self, resource: str, key: str = "", *, strict: bool = False) -> Hold | None:
        """Take ``resource`` (None: another live node holds it, or the database is down).

        ``strict``: the database being down raises StateError instead, so a caller going
        through many resources can stop at the first (each try waits the pool's timeout).
        """
        sent = self.monotonic()
        try:
            token = self.leases.acquire(resource, key)
        except StateError as exc:
            if strict:
                raise
            log.warning("cluster: cannot take %s: %s", resource, exc)
            return None
        if token is None:
            return None
        hold = Hold(
            resource,
            token,
            key,
            renewed=sent,
            fence_after=self.fence_after,
            verify=self._verify,
            monotonic=self.monotonic,
        )
        with self._lock:
            old = self._held.get(resource)
            if old is not None:
                old.lost.set()  # taken again (a restart of this node's own work)
            self._held[resource] = hold
        return hold

    def held(self, resource: str) -> Hold | None:
        with self._lock:
            return self._held.get(resource)

    def release(self, hold: Hold) -> None:
        """Give the lease up now (its work is finished); best effort: else it expires."""
        self.drop(hold)
        try:
            self.leases.release(hold.resource, hold.token)
        except StateError as exc:
            log.warning("cluster: could not release %s (it expires): %s", hold.resource, exc)

    def drop(self, hold: Hold) -> None:
        """Stop renewing the lease: it expires ``lease_seconds`` after its last renewal."""
        with self._lock:
            if self._held.get(hold.resource) is hold:
                del self._held[hold.resource]

    def _verify(self, hold: Hold) -> bool:
        sent = self.monotonic()
        ok = self.leases.verify(hold.resource, hold.token)
        if ok:
            hold.renewed = max(hold.renewed, sent)
        return ok

    # -- heartbeat ----------------------------------------------------------------------------

    def beat(self) -> None:
        """Renew the registry row and every lease held; mark lost those refused or too old.

        Raises StateError when the database does not answer (the heartbeat logs it); the
        leases then fence themselves by their age.
        """
        with self._lock:
            holds = list(self._held.values())
        sent = self.monotonic()
        try:
            mine = self.registry.beat()
            renewed = (
                self.leases.renew((h.resource, h.token) for h in holds if not h.lost.is_set())
                if mine
                else set()
            )
        except StateError:
            for h in holds:
                h.fenced()  # too old now? no new request for it
            raise
        if not mine:
            log.error(
                "cluster: the node name %s is registered by another process now: every lease "
                'of this one is lost (docs/cluster.md, "Nodes")',
                self.name,
            )
        with self._lock:
            for h in holds:
                if self._held.get(h.resource) is not h:
                    continue  # released (or taken again) while this beat was out: not lost
                if h.resource in renewed:
                    h.renewed = max(h.renewed, sent)
                elif not h.lost.is_set():
                    log.warning("%s: the lease is lost (another node took it over)", h.resource)
                    h.lost.set()
        self.last_beat = sent
        self._refresh()

    def _refresh(self) -> None:
        self._nodes = tuple(self.registry.nodes())

    def nodes(self) -> tuple[NodeStatus, ...]:
        """The nodes as of the last beat (the status page asks often; the database is not)."""
        return self._nodes


def open_node(settings: Settings) -> ClusterNode:
    """This process as a started node of the configured cluster (StateError if it cannot)."""
    if not settings.cluster.enabled:
        raise StateError("not a cluster: [state] ledger is not a PostgreSQL database")
    return ClusterNode(settings).start()
