"""Claims in the shared work folder: resumed by one node only, and only once their lease is
free or expired (docs/cluster.md, "How nodes share the drop folder")."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pipeline.cluster.claims import ClaimLeases, claim_key, claim_resource
from pipeline.cluster.node import ClusterNode
from pipeline.config import Settings
from pipeline.dropfolder.claims import Claims
from pipeline.dropfolder.jobs import Job
from pipeline.dropfolder.layout import CLAIM_RECORD, DropFolder, claim_name
from tests.cluster.conftest import expire

SHA = "ab" * 32


def left_claim(inbox: Path, campaign: str = "ALPHA", seq: str = "2026113001020300000001") -> Path:
    """A claim an interrupted node left in the work folder: its file and its record."""
    claim = DropFolder(inbox).work / campaign / claim_name(seq, SHA, False)
    claim.mkdir(parents=True)
    (claim / "leads.csv").write_text("Name\nA\n", encoding="utf-8")
    record = {"size": 8, "mtime_ns": 1, "sha256": SHA, "dropped_as": ""}
    (claim / CLAIM_RECORD).write_text(json.dumps(record), encoding="utf-8")
    return claim


def claims_of(node: ClusterNode, inbox: Path) -> Claims:
    return Claims(DropFolder(inbox), lambda: datetime.now(UTC), ClaimLeases(node))


def resume(claims: Claims) -> list[Job]:
    return claims.interrupted(lambda _: False, lambda folder: folder)


def test_two_nodes_never_both_resume_one_claim(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    claim = left_claim(inbox)
    nodes = [ClusterNode(make_settings(f"n{i}")).start() for i in range(3)]
    found: dict[str, list[Job]] = {}
    go = threading.Barrier(len(nodes))

    def sweep(node: ClusterNode) -> None:
        go.wait()
        found[node.name] = resume(claims_of(node, inbox))

    try:
        threads = [threading.Thread(target=sweep, args=(n,)) for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        winners = [name for name, jobs in found.items() if jobs]
        assert len(winners) == 1
        (job,) = found[winners[0]]
        assert job.resumed
        assert job.path.parent == claim
        assert job.lease is not None
        assert job.lease.check()
        # the next sweeps (every sweep looks again) leave it to its holder
        for n in nodes:
            if n.name != winners[0]:
                assert resume(claims_of(n, inbox)) == []
    finally:
        for n in nodes:
            n.stop()


def test_a_dead_nodes_claim_is_taken_over_once_its_lease_expired(
    make_settings: Callable[..., Settings], cluster_db: str, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    claim = left_claim(inbox)
    dead, alive = (ClusterNode(make_settings(n)).start() for n in ("dead", "alive"))
    try:
        (taken,) = resume(claims_of(dead, inbox))
        assert resume(claims_of(alive, inbox)) == []  # held: never resumed by another node
        expire(cluster_db, claim_resource(claim))  # "dead" stopped renewing it
        (job,) = resume(claims_of(alive, inbox))
        assert job.lease is not None
        assert job.lease.check()
        assert taken.lease is not None
        assert not taken.lease.check()
        assert alive.leases.live() == {claim_resource(claim): "alive"}
    finally:
        dead.stop()
        alive.stop()


def test_a_new_claim_takes_its_lease_before_the_folder_exists(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    a, b = (ClusterNode(make_settings(n)).start() for n in "ab")
    try:
        claims = claims_of(a, inbox)
        claim = DropFolder(inbox).work / "ALPHA" / claim_name("2026113001020300000002", SHA, False)
        hold = claims.leases.take(claim) if claims.leases is not None else None
        assert hold is not None
        claim.mkdir(parents=True)  # the rename into it is under way: b must keep off
        assert resume(claims_of(b, inbox)) == []
        assert claim.is_dir()  # not cleaned up as "empty" by the other node either
        assert claim_key(claim) == f"file:alpha:{SHA[:16]}"  # the campaign, any case
    finally:
        a.stop()
        b.stop()
