"""A node whose claim's lease was lost leaves the claim to its new holder (docs/cluster.md,
"Leases and fencing" and "How nodes share the drop folder"): it never rewrites the file's
state in the ledger, never moves the file to failed/ after an internal error, the content
key ignores the campaign folder's case as campaigns do, and a sweep with the database cut off
stops at the first claim instead of waiting the timeout for each."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from pipeline.cluster.claims import ClaimLeases, claim_key, claim_resource
from pipeline.cluster.db import ClusterDb
from pipeline.cluster.node import ClusterNode
from pipeline.config import Settings
from pipeline.dropfolder.intake import Intake
from pipeline.dropfolder.jobs import Job, Outcome
from pipeline.dropfolder.processing import FencedLedger
from pipeline.ledger import FileKey, FileState, Ledger, RowState, mark_changed
from pipeline.ledger.sqlite import open_ledger
from tests.cluster.conftest import expire
from tests.cluster.test_claims import SHA, claims_of, left_claim, resume
from tests.tcprelay import TcpRelay


def registered(settings: Settings, db: ClusterDb | None = None) -> ClusterNode:
    node = ClusterNode(settings, db=db)
    node.db.open()
    node.registry.register()
    return node  # no heartbeat thread: the test beats


def test_a_stale_node_never_rewrites_the_file_another_node_finished(
    make_settings: Callable[..., Settings], cluster_db: str, tmp_path: Path
) -> None:
    a, b = registered(make_settings("a")), registered(make_settings("b"))
    ledger = open_ledger(tmp_path / "ledger")
    key = FileKey(SHA, "ALPHA")
    try:
        lease_a = a.acquire("claim:ALPHA/1", "file:alpha:" + SHA)
        assert lease_a is not None
        fenced_a = cast(Ledger, FencedLedger(ledger, lease_a))
        fenced_a.begin_file(key, "leads.csv")
        fenced_a.add_rows(key, [(2, "fp2"), (3, "fp3")])
        now = datetime.now(UTC)
        args: dict[str, Any] = {"skip_duplicates": True, "attempt_utc": now, "attempt_local": now}
        assert fenced_a.claim_for_sending(key, [2], **args).sending == [2]

        expire(cluster_db)  # a is paused past its lease; b resumes the claim and finishes it
        lease_b = b.acquire("claim:ALPHA/1", "file:alpha:" + SHA)
        assert lease_b is not None
        fenced_b = cast(Ledger, FencedLedger(ledger, lease_b))
        fenced_b.begin_file(key, "leads.csv")
        assert fenced_b.recover_sending(key) == 1  # a's row 2 is uncertain now
        assert fenced_b.claim_for_sending(key, [3], **args).sending == [3]
        fenced_b.record_accepted(key, 3, "u3")
        fenced_b.finish_file(key, FileState.DONE, "receipt.txt", "{}")

        # a wakes up: its upload halts, and what ingest then writes about the file is not done
        assert not lease_a.check()
        fenced_a.set_file_state(key, FileState.WAITING, "halted")
        mark_changed(fenced_a, key, False, "changed since the claim")
        fenced_a.begin_file(key, "leads.csv")
        fenced_a.finish_file(key, FileState.FAILED, "", "")
        assert fenced_a.add_rows(key, [(4, "fp4")]) == 0
        assert fenced_a.recover_sending(key) == 0
        record = ledger.file(key)
        assert record is not None
        assert record.state is FileState.DONE
        # what a's own request got back is true: recorded
        fenced_a.record_accepted(key, 2, "u2")
        states = {r.row: r.state for r in ledger.rows(key)}
        assert states == {2: RowState.ACCEPTED, 3: RowState.ACCEPTED}
    finally:
        ledger.close()
        a.stop()
        b.stop()


def test_the_content_key_ignores_the_campaign_folders_case(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    lower = left_claim(inbox, "alpha", "2026113001020300000001")
    upper = left_claim(inbox, "ALPHA", "2026113001020300000002")
    assert claim_key(lower) == claim_key(upper)
    a, b = registered(make_settings("a")), registered(make_settings("b"))
    try:
        assert a.acquire(claim_resource(lower), claim_key(lower)) is not None
        # the same file dropped into ALPHA/ and alpha/ (one campaign): one node at a time
        assert b.acquire(claim_resource(upper), claim_key(upper)) is None
        assert [j.name for j in resume(claims_of(b, inbox))] == []
    finally:
        a.stop()
        b.stop()


class TakenOver:
    """A processor that hits an internal error after another node took its claim over."""

    def __init__(self, other: ClusterNode, cluster_db: str) -> None:
        self.other, self.url = other, cluster_db
        self.taken: list[object] = []

    def __call__(self, job: Job) -> Outcome:
        expire(self.url)  # this node was paused past its lease ...
        claim = job.path.parent
        self.taken.append(self.other.acquire(claim_resource(claim), claim_key(claim)))
        raise RuntimeError("boom")  # ... and fails when it wakes


def test_an_internal_error_after_the_lease_was_lost_leaves_the_file_claimed(
    make_settings: Callable[..., Settings], cluster_db: str, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "ALPHA").mkdir(parents=True)
    (inbox / "ALPHA" / "leads.csv").write_text("Name\nA\n", encoding="utf-8")
    a, b = registered(make_settings("a")), registered(make_settings("b"))
    processor = TakenOver(b, cluster_db)
    try:
        intake = Intake(
            inbox,
            processor,
            campaigns=lambda: ["ALPHA"],
            settle_seconds=0.0,
            leases=ClaimLeases(a),
        )
        for _ in range(3):
            intake.sweep()
            intake.drain()
            if processor.taken:
                break
            time.sleep(0.1)
        assert processor.taken
        assert processor.taken[0] is not None
        assert not (inbox / "ALPHA" / "failed").exists()
        claimed = [p.name for p in (inbox / ".leadpipe" / "work" / "ALPHA").rglob("leads.csv")]
        assert claimed == ["leads.csv"]  # left for b to resume
        assert set(a.leases.live().values()) == {"b"}
    finally:
        a.stop()
        b.stop()


def relayed(url: str) -> tuple[TcpRelay, str]:
    """A relay in front of the database at ``url``, and the URL through it."""
    parts = urlsplit(url)
    relay = TcpRelay((parts.hostname or "127.0.0.1", parts.port or 5432)).up()
    netloc = parts.netloc.rsplit(":", 1)[0] + f":{relay.port}"
    return relay, urlunsplit(parts._replace(netloc=netloc))


def test_a_sweep_with_the_database_cut_off_stops_at_the_first_claim(
    make_settings: Callable[..., Settings], cluster_db: str, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    for i in range(8):
        left_claim(inbox, "ALPHA", f"20261130010203000000{i:02d}")
    hole, via_hole = relayed(cluster_db)
    a = registered(make_settings("a"), ClusterDb(via_hole, timeout=1.0))
    try:
        hole.go_dark()
        started = time.monotonic()
        assert resume(claims_of(a, inbox)) == []
        # one wait of the pool's timeout, not one per claim (8 s)
        assert time.monotonic() - started < 4.0
    finally:
        a.db.close()
        hole.down()
