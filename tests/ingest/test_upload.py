"""The exactly-once protocol over real HTTP, under the sandbox's faults.

Every test ends with the same check a person would make in HeroBase: each row's data exists
exactly once in the campaign, and the ledger claims nothing the API did not acknowledge.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.api import HeroBaseClient
from pipeline.ingest.deliver.upload import Uploader, UploadRow, no_read_right_reason
from pipeline.ledger import FileKey, Ledger, RowState
from pipeline.ledger.fingerprint import fingerprint
from pipeline.outcome import FileOutcome
from pipeline.sandbox import RESTRICTED_PASSWORD, RESTRICTED_USER, Fault, Sandbox
from tests.ingest.conftest import CAMPAIGN

SHA = "f" * 64
KEY = FileKey(SHA, CAMPAIGN)


def rows(n: int, start: int = 0) -> list[UploadRow]:
    out = []
    for i in range(start, start + n):
        data = {"name": f"Firma {i} ApS Ærø", "phone": f"+45 20 {i:06d}"}
        out.append(UploadRow(i + 2, data, fingerprint(CAMPAIGN, data)))
    return out


def uploader(client: HeroBaseClient, ledger: Ledger, **kw: Any) -> Uploader:
    ledger.begin_file(FileKey(kw.pop("sha", SHA), CAMPAIGN), kw.pop("name", "leads.csv"))
    kw.setdefault("reconcile_grace", 0.2)
    return Uploader(client, ledger, sha256=kw.pop("sha256", SHA), campaign=CAMPAIGN, **kw)


def stored(sb: Sandbox) -> Counter[str]:
    """How many leads the sandbox holds per phone number (rows are unique by phone)."""
    return Counter(lead["data"]["phone"] for lead in sb.leads(CAMPAIGN))


def posts(sb: Sandbox) -> int:
    return sum(1 for r in sb.requests() if r["method"] == "POST" and r["path"] == "/leads")


def assert_exactly_once(sb: Sandbox, ledger: Ledger, batch: list[UploadRow]) -> None:
    counts = stored(sb)
    phones = [r.data["phone"] for r in batch]
    assert {p: counts[p] for p in phones} == dict.fromkeys(phones, 1)
    recs = ledger.rows(KEY)
    assert [r.state for r in recs] == [RowState.ACCEPTED] * len(batch)
    by_id = {lead["uniqueId"]: lead["data"]["phone"] for lead in sb.leads(CAMPAIGN)}
    # a 2xx answer without an id is a success; its id is filled in later, never by resending
    assert all(
        by_id[r.unique_id] == batch[i].data["phone"] for i, r in enumerate(recs) if r.unique_id
    )


@pytest.fixture
def baseline(sb: Sandbox) -> Counter[str]:
    return stored(sb)


def test_happy_path_sends_each_row_once(
    sb: Sandbox, client_for: Callable[..., HeroBaseClient], ledger: Ledger
) -> None:
    batch = rows(40)
    up = uploader(client_for(), ledger, concurrency=4)
    up.deliver(batch)
    assert up.report.halt == ""
    assert_exactly_once(sb, ledger, batch)
    assert posts(sb) == 40


def test_429_storm_and_503_retry_after_are_retried_without_duplicates(
    sb: Sandbox, client_for: Callable[..., HeroBaseClient], ledger: Ledger
) -> None:
    sb.add_fault(Fault("status", route="POST /leads", status=429, retry_after=0.05, times=3))
    sb.add_fault(
        Fault("status", route="POST /leads", status=503, retry_after=0.05, after=10, times=3)
    )
    batch = rows(30)
    up = uploader(client_for(), ledger, concurrency=4)
    up.deliver(batch)
    assert up.report.halt == ""
    assert_exactly_once(sb, ledger, batch)
    statuses = Counter(r["status"] for r in sb.requests() if r["method"] == "POST")
    assert (statuses[429], statuses[503], statuses[200]) == (3, 3, 30)


def test_created_then_failed_rows_are_reconciled_not_duplicated(
    sb: Sandbox, client_for: Callable[..., HeroBaseClient], ledger: Ledger
) -> None:
    sb.add_fault(Fault("status_after", route="POST /leads", status=500, after=3, times=2))
    sb.add_fault(Fault("drop_after", route="POST /leads", after=12, times=1))
    sb.add_fault(Fault("garbled", route="POST /leads", after=20, times=1))
    batch = rows(30)
    up = uploader(client_for(), ledger, concurrency=4)
    up.deliver(batch)
    assert up.report.halt == ""
    assert up.report.reconciled_found == 3  # the 500s and the dropped answer
    assert up.report.reconciled_absent == 0
    assert_exactly_once(sb, ledger, batch)
    assert posts(sb) == 30  # nothing was resent: the lookups found every lead
    # the garbled 2xx answer: accepted without an id, never uncertain
    (no_id,) = [r for r in ledger.rows(KEY) if r.unique_id is None]
    assert no_id.state == RowState.ACCEPTED


def test_lost_requests_are_looked_up_then_sent_again(
    sb: Sandbox, client_for: Callable[..., HeroBaseClient], ledger: Ledger
) -> None:
    sb.add_fault(Fault("drop_before", route="POST /leads", after=5, times=2))
    sb.add_fault(Fault("html", route="POST /leads", status=502, after=14, times=1))
    batch = rows(20)
    up = uploader(client_for(), ledger, concurrency=2)
    up.deliver(batch)
    assert (up.report.reconciled_found, up.report.reconciled_absent) == (0, 3)
    assert_exactly_once(sb, ledger, batch)
    assert posts(sb) == 23


def test_read_timeout_waits_for_the_slow_request_then_finds_it(
    sb: Sandbox, client_for: Callable[..., HeroBaseClient], ledger: Ledger
) -> None:
    # The server stores the lead after 1.2 s; the client gives up after 0.5 s.
    sb.add_fault(Fault("delay", route="POST /leads", delay=1.2, after=4, times=1))
    batch = rows(12)
    up = uploader(client_for(read_timeout=0.5), ledger, concurrency=2, reconcile_grace=2.0)
    up.deliver(batch)
    assert (up.report.reconciled_found, up.report.reconciled_absent) == (1, 0)
    assert_exactly_once(sb, ledger, batch)


def test_401_mid_file_stops_at_once_and_a_retry_finishes_without_duplicates(
    sb: Sandbox, client_for: Callable[..., HeroBaseClient], ledger: Ledger
) -> None:
    sb.add_fault(Fault("status", route="POST /leads", status=401, after=15, times=0))
    batch = rows(60)
    up = uploader(client_for(), ledger, concurrency=4)
    up.deliver(batch)
    assert up.report.halt == "not_permitted"
    assert (up.report.outcome, up.report.not_permitted) == (FileOutcome.WAITING, True)
    assert "401" in up.report.reason
    counts = ledger.row_counts(KEY)
    assert counts[RowState.ACCEPTED] == 15
    assert counts[RowState.PENDING] == 45
    assert counts[RowState.SENDING] == counts[RowState.UNCERTAIN] == 0
    accepted = {r.unique_id for r in ledger.rows(KEY, [RowState.ACCEPTED])}
    assert accepted == {lead["uniqueId"] for lead in sb.leads(CAMPAIGN)} - set(_before(sb))
    assert posts(sb) <= 15 + 4  # at most the rows already in flight hit the 401

    sb.clear_faults()
    again = Uploader(client_for(), ledger, sha256=SHA, campaign=CAMPAIGN, concurrency=4)
    again.deliver(batch)
    assert again.report.halt == ""
    assert_exactly_once(sb, ledger, batch)


def _before(sb: Sandbox) -> list[str]:
    """uniqueIds of leads that are not ours (the demo tenant's seeded leads)."""
    return [lead["uniqueId"] for lead in sb.leads(CAMPAIGN) if "Ærø" not in lead["data"]["name"]]


def test_without_leads_get_an_uncertain_row_is_never_resent(
    sb: Sandbox, client_for: Callable[..., HeroBaseClient], ledger: Ledger
) -> None:
    sb.add_fault(Fault("status_after", route="POST /leads", status=500, after=2, times=1))
    batch = rows(6)
    client = client_for(user=RESTRICTED_USER, password=RESTRICTED_PASSWORD)
    up = uploader(client, ledger, concurrency=1)
    up.deliver(batch)
    uncertain = ledger.rows(KEY, [RowState.UNCERTAIN])
    assert [r.row for r in uncertain] == [batch[2].row]
    assert uncertain[0].reason == no_read_right_reason()
    assert ledger.row_counts(KEY)[RowState.ACCEPTED] == 5
    # A rerun does not send it again either.
    Uploader(client, ledger, sha256=SHA, campaign=CAMPAIGN, reconcile_grace=0).deliver(batch)
    assert posts(sb) == 6
    assert stored(sb)[batch[2].data["phone"]] == 1  # the server did store it


def test_unavailable_api_pauses_and_leaves_rows_pending(
    sb: Sandbox, client_for: Callable[..., HeroBaseClient], ledger: Ledger
) -> None:
    sb.add_fault(Fault("status", route="POST /leads", status=503, after=5, times=0))
    batch = rows(20)
    up = uploader(client_for(max_retries=1, retry_total_seconds=1.0), ledger, concurrency=2)
    up.deliver(batch)
    assert up.report.halt == "unavailable"
    assert up.report.outcome is FileOutcome.WAITING
    assert up.report.reason.startswith("waiting for the API")
    counts = ledger.row_counts(KEY)
    assert (counts[RowState.ACCEPTED], counts[RowState.PENDING]) == (5, 15)
    sb.clear_faults()
    Uploader(client_for(), ledger, sha256=SHA, campaign=CAMPAIGN).deliver(batch)
    assert_exactly_once(sb, ledger, batch)


def test_duplicates_from_another_file_are_skipped_or_uploaded_by_setting(
    sb: Sandbox, client_for: Callable[..., HeroBaseClient], ledger: Ledger
) -> None:
    client = client_for()
    uploader(client, ledger).deliver(rows(5))
    second = uploader(client, ledger, sha="e" * 64, name="again.csv", sha256="e" * 64)
    second.deliver(rows(5, start=3))  # rows 3, 4 were sent by the first file
    states = [r.state for r in ledger.rows(FileKey("e" * 64, CAMPAIGN))]
    assert states == [RowState.DUPLICATE] * 2 + [RowState.ACCEPTED] * 3
    dup = ledger.rows(FileKey("e" * 64, CAMPAIGN), [RowState.DUPLICATE])[0]
    assert dup.reason == (
        f"the same data was already accepted for campaign {CAMPAIGN} (file leads.csv, row 5)"
    )
    third = uploader(
        client, ledger, sha="d" * 64, name="third.csv", sha256="d" * 64, skip_duplicates=False
    )
    third.deliver(rows(1))
    assert stored(sb)[rows(1)[0].data["phone"]] == 2


def test_stop_event_sends_nothing_more(
    sb: Sandbox, client_for: Callable[..., HeroBaseClient], ledger: Ledger
) -> None:
    import threading

    stop = threading.Event()
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done >= 8:
            stop.set()

    up = uploader(client_for(), ledger, concurrency=2, stop=stop, progress=progress)
    up.deliver(rows(40))
    assert up.report.halt == "stopped"
    assert up.report.outcome is FileOutcome.INTERRUPTED
    counts = ledger.row_counts(KEY)
    assert counts[RowState.SENDING] == 0
    assert counts[RowState.ACCEPTED] == posts(sb)
    assert counts[RowState.ACCEPTED] + counts[RowState.PENDING] == 40
    assert counts[RowState.ACCEPTED] < 40


def test_rows_lost_every_time_end_pending_after_a_final_lookup(
    sb: Sandbox, client_for: Callable[..., HeroBaseClient], ledger: Ledger
) -> None:
    sb.add_fault(Fault("drop_before", route="POST /leads", after=2, times=0))
    batch = rows(4)
    up = uploader(client_for(), ledger, concurrency=1)
    up.deliver(batch)
    counts = ledger.row_counts(KEY)
    assert (counts[RowState.ACCEPTED], counts[RowState.PENDING]) == (2, 2)
    assert counts[RowState.UNCERTAIN] == 0  # the final lookup proved them absent
    assert posts(sb) == 2 + 2 * 3
    sb.clear_faults()
    Uploader(client_for(), ledger, sha256=SHA, campaign=CAMPAIGN).deliver(batch)
    assert_exactly_once(sb, ledger, batch)


def test_a_lead_with_the_same_data_from_someone_else_is_not_taken_for_ours(
    sb: Sandbox, client_for: Callable[..., HeroBaseClient], ledger: Ledger
) -> None:
    batch = rows(3)
    # a person keyed in row 3's data by hand, just before our POST of it got lost
    sb.tenant.insert_lead(CAMPAIGN, dict(batch[2].data), uploaded_by="agent7@demo.example")
    sb.add_fault(Fault("drop_before", route="POST /leads", after=2, times=1))
    up = uploader(client_for(), ledger, concurrency=1)
    up.deliver(batch)
    assert (up.report.reconciled_found, up.report.reconciled_absent) == (0, 1)
    assert stored(sb)[batch[2].data["phone"]] == 2  # theirs and ours
    ours = ledger.rows(KEY)[2].unique_id
    mine = [lead for lead in sb.leads(CAMPAIGN) if lead["uniqueId"] == ours]
    assert mine[0]["uploadedByUser"]["orgCode"] == "api@demo.example"
