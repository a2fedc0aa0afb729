"""A node sends only under its claim's lease (docs/cluster.md, "Leases and fencing"): no row
goes ``sending`` once the lease is lost, the upload sees the loss like a stop, and a claim
whose lease was lost while it waited is not even read (reading it would turn the rows the
new holder is sending into ``uncertain``)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from requests.adapters import BaseAdapter

from pipeline.api import HeroBaseClient
from pipeline.api.ratelimit import Stopping
from pipeline.config import Paths, Settings
from pipeline.dropfolder.jobs import Job
from pipeline.dropfolder.processing import (
    FencedClient,
    FencedLedger,
    IngestProcessor,
    LeaseFence,
)
from pipeline.ledger import FileKey, Ledger, RowState
from pipeline.ledger.sqlite import open_ledger
from pipeline.outcome import FileOutcome
from pipeline.service import fencing


class FakeLease:
    """A lease the test takes away."""

    def __init__(self) -> None:
        self.lost = threading.Event()
        self.held = True
        self.checks = 0

    def fenced(self) -> bool:
        return self.lost.is_set()

    def check(self) -> bool:
        self.checks += 1
        if not self.held:
            self.lost.set()
        return self.held


def test_no_row_goes_sending_once_the_lease_is_lost(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "state")
    key = FileKey("ab" * 32, "ALPHA")
    ledger.begin_file(key, "leads.csv")
    ledger.add_rows(key, [(2, "fp2"), (3, "fp3"), (4, "fp4")])
    lease = FakeLease()
    fenced = cast(Ledger, FencedLedger(ledger, lease))
    now = datetime.now(UTC)
    args: dict[str, Any] = {"skip_duplicates": True, "attempt_utc": now, "attempt_local": now}
    assert fenced.claim_for_sending(key, [2], **args).sending == [2]
    stop = LeaseFence(lease)
    assert not stop.is_set()
    lease.held = False  # another node took the claim over
    assert fenced.claim_for_sending(key, [3, 4], **args).sending == []
    assert stop.is_set()  # the upload halts as for a stop
    states = {r.row: r.state for r in fenced.rows(key)}  # everything else goes through
    assert states == {2: RowState.SENDING, 3: RowState.PENDING, 4: RowState.PENDING}
    ledger.close()


def test_a_claim_whose_lease_was_lost_while_it_waited_is_not_read(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "state")
    claim = tmp_path / "work" / "ALPHA" / "claim"
    claim.mkdir(parents=True)
    (claim / "leads.csv").write_text("Name\nA\n", encoding="utf-8")
    lease = FakeLease()
    lease.held = False
    job = Job(
        campaign="ALPHA",
        name="leads.csv",
        path=claim / "leads.csv",
        folder=tmp_path / "inbox" / "ALPHA",
        preview=False,
        stamp="20261130-040000",
        sha256="ab" * 32,
        resumed=True,
        lease=lease,
    )
    settings = Settings(paths=Paths(state=tmp_path / "state"))
    processor = IngestProcessor(
        settings, cast(HeroBaseClient, None), ledger, stop=threading.Event()
    )
    out = processor(job)
    assert out.kind is FileOutcome.INTERRUPTED  # stays claimed, for the node that holds it
    assert ledger.every_file() == []  # not read: nothing recorded, nothing recovered
    ledger.close()


class Client:
    """Counts the uploads that reach it."""

    def __init__(self) -> None:
        self.posts = 0

    def create_lead(self, code: str, data: object) -> object:
        self.posts += 1
        return object()


def test_rows_queued_for_the_upload_threads_are_not_posted_after_the_lease_is_lost(
    tmp_path: Path,
) -> None:
    """A node paused past its lease wakes up with rows already ``sending`` waiting in its
    upload threads: none of them is POSTed, and the new holder's rows are left alone."""
    ledger = open_ledger(tmp_path / "state")
    key = FileKey("ab" * 32, "ALPHA")
    ledger.begin_file(key, "leads.csv")
    ledger.add_rows(key, [(2, "fp2"), (3, "fp3")])
    now = datetime.now(UTC)
    args: dict[str, Any] = {"skip_duplicates": True, "attempt_utc": now, "attempt_local": now}
    lease = FakeLease()
    inner = Client()
    client = FencedClient(cast(HeroBaseClient, inner), lease)
    fenced = cast(Ledger, FencedLedger(ledger, lease))
    assert fenced.claim_for_sending(key, [2, 3], **args).sending == [2, 3]
    client.create_lead("ALPHA", {"name": "A"})  # row 2 goes while the lease holds
    lease.lost.set()  # paused past the lease: another node took the file over
    with pytest.raises(Stopping):
        client.create_lead("ALPHA", {"name": "B"})  # row 3 waited in a thread: not sent
    assert inner.posts == 1
    fenced.record_unsent(key, [3], "not sent: the upload stopped")
    assert {r.row: r.state for r in ledger.rows(key)}[3] is RowState.SENDING  # the new holder's
    ledger.close()


class Counting(BaseAdapter):
    """An adapter that counts what would reach the network."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def send(self, request: requests.PreparedRequest, *args: Any, **kw: Any) -> Any:
        self.sent += 1
        response = requests.Response()
        response.status_code = 201
        return response

    def close(self) -> None:
        pass


def test_the_last_look_is_right_before_the_request_goes_out() -> None:
    """A thread that passed the client's look and then waited (the rate limiter) while its
    node stalled past the lease sends nothing: the service's session looks again."""
    inner = Counting()
    session = requests.Session()
    session.mount("http://", inner)
    fencing.attach(session)
    lease = FakeLease()
    with fencing.sending_under(lease):
        session.post("http://127.0.0.1:9/leads")
        lease.lost.set()  # stalled past the lease while waiting for its turn
        with pytest.raises(fencing.LeaseLost):
            session.post("http://127.0.0.1:9/leads")
    session.post("http://127.0.0.1:9/leads")  # not an upload under a lease: sent as always
    assert inner.sent == 2
