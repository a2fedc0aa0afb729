"""Delivery: bounded concurrency and the exactly-once protocol.

See docs/architecture.md, "Exactly once".

For each row: the intent (``sending``) is committed to the ledger before its POST, the outcome
after it. What certainly did not reach the server goes back to ``pending`` (the client already
retried it); anything ambiguous becomes ``uncertain`` and is resent only after a lookup through
``/simpleleads`` proved the lead absent. Without the right to read leads an uncertain row is never
resent: it is left for a person.

The upload stops at once on 401/403 (nothing is marked sent that was not) and pauses on an
unavailable API ("waiting for the API") or a spent daily request budget (refused before the
POST, so the row is cleanly "not sent"; docs/dropfolder.md); all leave the file resumable from
the ledger.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from pipeline.api.quota import QuotaExhausted
from pipeline.api.ratelimit import Stopping
from pipeline.clock import Clock, SystemClock
from pipeline.crashpoints import crash_point
from pipeline.errors import (
    ApiError,
    Invalid,
    NotFound,
    NotPermitted,
    Unavailable,
    Uncertain,
)
from pipeline.ingest.deliver.tenantproof import ProofStore, is_ours, learn_identity
from pipeline.ledger import FileKey, Ledger, RowState
from pipeline.outcome import FileOutcome


class LeadApi(Protocol):
    """The part of :class:`pipeline.api.HeroBaseClient` that delivery needs."""

    def create_lead(self, code: str, data: Mapping[str, str]) -> Any:
        """POST one lead; returns an object with ``unique_id``."""
        ...

    def iter_simpleleads(
        self,
        *,
        modified_from: Any,
        campaigns: Sequence[str] | None = None,
        all_open: bool = False,
        all_closed: bool = False,
    ) -> Iterator[Any]:
        """Leads modified since a time (objects with ``unique_id``, ``data``)."""
        ...

    def account(self) -> Any:
        """The account, with ``can(resource, verb)``."""
        ...

    def campaigns(self) -> Sequence[Any]:
        """Campaigns, with ``code`` and ``unique_id``."""
        ...

    def import_example(self, code: str, all_fields: bool = False) -> dict[str, str]:
        """The campaign's import example (its fields)."""
        ...


@dataclass(frozen=True)
class UploadRow:
    """One valid row ready to send: its row number, the field data and its fingerprint."""

    row: int
    data: Mapping[str, str]
    fingerprint: str

    def __repr__(self) -> str:  # lead data stays out of logs
        return f"UploadRow(row={self.row})"


#: Why an upload pass stopped sending ("" while it did not): the uploader's own reason code.
#: What it means for the file is :attr:`UploadReport.outcome`; outside ``deliver/`` the code
#: appears only as the receipt's ``halt`` (kept in its JSON for compatibility).
HaltKind = Literal["", "unavailable", "quota", "not_permitted", "not_found", "stopped"]

#: The file outcome each halt leads to.
_LEADS_TO: dict[HaltKind, FileOutcome] = {
    "unavailable": FileOutcome.WAITING,  # sent when the API answers again
    "quota": FileOutcome.WAITING,  # sent after the day's request budget resets
    "not_permitted": FileOutcome.WAITING,  # likewise, after a long pause (password, rights)
    "not_found": FileOutcome.STOPPED,  # a person must act (e.g. the campaign is gone)
    "stopped": FileOutcome.INTERRUPTED,  # leadpipe was asked to stop: resumed at the next run
}


@dataclass
class UploadReport:
    """What an upload pass did, beyond the row states kept in the ledger."""

    posts: int = 0
    halt: HaltKind = ""
    reason: str = ""  # plain words when halted
    reconciled_found: int = 0
    reconciled_absent: int = 0
    blind: int = 0  #: uncertain rows left for a person because the lookup was blind
    blind_reason: str = ""  #: why, in plain words
    errors: list[BaseException] = field(default_factory=list)
    #: halted for the daily budget: when it resets (the file waits until then)
    resume_at: datetime | None = None

    @property
    def outcome(self) -> FileOutcome | None:
        """What the halt means for the file (None: the pass was not halted)."""
        return _LEADS_TO[self.halt] if self.halt else None

    @property
    def not_permitted(self) -> bool:
        """Halted because the API refused the credentials or the account's rights."""
        return self.halt == "not_permitted"


@dataclass(frozen=True)
class _Sight:
    """Whether a lookup may declare rows absent: ``blind`` says why not ("" = it may)."""

    blind: str = ""
    identity: tuple[str, str] | None = None  #: how the tenant marks this account's leads
    #: leads matched to rows accepted without an id (by data): not free for other rows
    claimed: frozenset[str] = frozenset()


#: progress(done, total): rows finished so far in this pass.
Progress = Callable[[int, int], None]

#: The name prefix of the upload threads (a stopping ``leadpipe run`` looks for them).
UPLOAD_THREADS = "leadpipe-upload"
#: How often the sending loop looks at the stop while every thread waits for an answer (s).
_POLL = 0.25
_RECONCILE_MARGIN = timedelta(minutes=5)
#: How far back a lookup reaches for a lead the ledger knows, to prove it sees our leads.
_ANCHOR_REACH = timedelta(hours=24)
_MAX_ROUNDS = 3


def normalise(value: str) -> str:
    """Loose form of a value for matching a sent row to a stored lead."""
    return " ".join(unicodedata.normalize("NFC", value).split()).casefold()


def data_key(data: Mapping[str, str], fields: Sequence[str]) -> tuple[str, ...]:
    """The loose values of ``fields`` in ``data``: equal keys mean the same lead data."""
    return tuple(normalise(data.get(f, "")) for f in fields)


def filled(data: Mapping[str, str]) -> list[str]:
    """The fields of ``data`` that hold a value (what a row sends)."""
    return sorted(k for k, v in data.items() if normalise(v))


def campaign_leads_since(client: LeadApi, campaign_id: str, since_local: datetime) -> list[Any]:
    """Every lead of the campaign modified since ``since_local`` (tenant time), open or closed.

    The one lookup reconciliation, the verification pass and ``doctor --test-upload`` use.
    """
    found: dict[str, Any] = {}
    for is_open in (True, False):  # a lead may already have been called and closed
        for lead in client.iter_simpleleads(
            modified_from=since_local,
            campaigns=[campaign_id],
            all_open=is_open,
            all_closed=not is_open,
        ):
            found[lead.unique_id] = lead
    return list(found.values())


def campaign_id(client: LeadApi, code: str) -> str:
    """The uniqueId of campaign ``code``; NotPermitted when the account cannot see it."""
    ids = [c.unique_id for c in client.campaigns() if c.code == code]
    if not ids:
        raise NotPermitted(f"campaign {code} is not visible to the account")
    return str(ids[0])


class Uploader:
    """Sends one file's valid rows exactly once (per chunk: :meth:`deliver`)."""

    def __init__(
        self,
        client: LeadApi,
        ledger: Ledger,
        *,
        sha256: str,
        campaign: str,
        concurrency: int = 4,
        skip_duplicates: bool = True,
        timezone: str = "Europe/Copenhagen",
        reconcile_grace: float = 2.0,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
        proof: ProofStore | None = None,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.sha256 = sha256
        self.campaign = campaign
        self.key = FileKey(sha256, campaign)
        self.concurrency = max(1, concurrency)
        self.skip_duplicates = skip_duplicates
        self.tz = ZoneInfo(timezone)
        self.reconcile_grace = reconcile_grace
        self.clock = clock or SystemClock()
        self.stop = stop or threading.Event()
        self.progress = progress
        #: what was proven about this tenant's lookup (None: nothing recorded, nothing kept)
        self.proof = proof
        self._rows_now: Mapping[int, UploadRow] = {}
        self.report = UploadReport()
        self._halted = threading.Event()
        self._can_read: bool | None = None
        self._campaign_id: str | None = None

    @property
    def halted(self) -> bool:
        """True once the upload stopped (API unavailable, not permitted, or asked to stop)."""
        return self._halted.is_set()

    def hold(self, reason: str) -> None:
        """Send nothing (rows are still recorded as pending): e.g. the schema is a snapshot."""
        self._halt("unavailable", reason)

    def _halt(self, kind: HaltKind, reason: str) -> None:
        if not self._halted.is_set():
            self.report.halt, self.report.reason = kind, reason
            self._halted.set()

    def _halt_for_quota(self, exc: QuotaExhausted) -> None:
        if not self._halted.is_set():
            self.report.resume_at = exc.resume_at
        self._halt("quota", str(exc))

    # -- one chunk ----------------------------------------------------------------------------

    def deliver(self, rows: Sequence[UploadRow]) -> None:
        """Record the rows (pending unless known) and bring each to a final state if possible."""
        if not rows:
            return
        self.ledger.add_rows(self.key, ((r.row, r.fingerprint) for r in rows))
        by_row = {r.row: r for r in rows}
        self._rows_now = by_row  # their data can prove a lookup sees leads without ids
        for _ in range(_MAX_ROUNDS):
            if self.halted:
                return
            self._check_stop()
            states = {
                rec.row: rec
                for rec in self.ledger.rows(self.key, [RowState.PENDING, RowState.UNCERTAIN])
                if rec.row in by_row
            }
            uncertain = [r for r, rec in states.items() if rec.state == RowState.UNCERTAIN]
            if uncertain:
                self._reconcile([by_row[r] for r in uncertain], states)
                if self.halted:
                    return
                states = {
                    rec.row: rec
                    for rec in self.ledger.rows(self.key, [RowState.PENDING])
                    if rec.row in by_row
                }
            pending = [by_row[r] for r, rec in states.items() if rec.state == RowState.PENDING]
            if not pending:
                return
            self._send(pending)
            if self._can_read is False or not any(
                rec.row in by_row for rec in self.ledger.rows(self.key, [RowState.UNCERTAIN])
            ):
                return
        # Out of rounds: look the last uncertain rows up once more, but send nothing now; rows
        # proved absent go back to pending and the file waits for its next run.
        if not self.halted and self._can_read:
            left = {
                rec.row: rec
                for rec in self.ledger.rows(self.key, [RowState.UNCERTAIN])
                if rec.row in by_row
            }
            if left:
                self._reconcile([by_row[r] for r in left], left)

    def _check_stop(self) -> None:
        if self.stop.is_set():
            self._halt("stopped", "leadpipe was asked to stop; run it again to continue")

    # -- sending ------------------------------------------------------------------------------

    def _send(self, rows: Sequence[UploadRow]) -> None:
        total, done = len(rows), 0
        todo: Iterator[UploadRow] = iter(rows)
        inflight: dict[Future[None], int] = {}  # -> its row
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix=UPLOAD_THREADS) as pool:
            exhausted = False
            while True:
                self._check_stop()
                if self.halted:
                    done += self._unsend_queued(inflight)
                if not exhausted and not self.halted and len(inflight) <= 2 * self.concurrency:
                    batch = _take(todo, self.concurrency * 4)
                    exhausted = not batch
                    if batch:
                        now = self.clock.now()
                        claim = self.ledger.claim_for_sending(
                            self.key,
                            [r.row for r in batch],
                            skip_duplicates=self.skip_duplicates,
                            attempt_utc=now,
                            attempt_local=now.astimezone(self.tz),
                        )
                        done += len(batch) - len(claim.sending)
                        claimed = set(claim.sending)
                        for r in batch:
                            if r.row in claimed:
                                inflight[pool.submit(self._post, r)] = r.row
                        continue
                if not inflight:
                    break
                # a bounded wait: a stop is seen while every thread waits for an answer
                finished, _ = wait(inflight, timeout=_POLL, return_when=FIRST_COMPLETED)
                for fut in finished:
                    del inflight[fut]
                for fut in finished:
                    exc = fut.exception()
                    if exc is not None:
                        self.report.errors.append(exc)
                        self._halt("stopped", f"an internal error stopped the upload: {exc!r}")
                done += len(finished)
                if self.progress is not None:
                    self.progress(done, total)
        if self.report.errors:
            raise self.report.errors[0]

    def _unsend_queued(self, inflight: dict[Future[None], int]) -> int:
        """After a halt: rows queued for a thread but not yet started are not sent; record so
        now (a stop may not wait for the threads that wait for answers); how many."""
        dropped = [row for fut, row in list(inflight.items()) if fut.cancel()]
        for fut in [f for f in inflight if f.cancelled()]:
            del inflight[fut]
        if dropped:
            self.ledger.record_unsent(self.key, dropped, "not sent: the upload stopped")
        return len(dropped)

    def _post(self, row: UploadRow) -> None:
        """One row, in a worker thread: POST, then commit the outcome before moving on."""
        if self._halted.is_set():
            self.ledger.record_unsent(self.key, [row.row], "not sent: the upload stopped")
            return
        crash_point("before_post")
        self.report.posts += 1  # a race on this counter only blurs a statistic
        try:
            created = self.client.create_lead(self.campaign, dict(row.data))
        except Invalid as exc:
            details = [
                {"field": e.field_name, "code": e.error_code, "message": e.message}
                for e in exc.field_errors
            ]
            self.ledger.record_refused(self.key, row.row, _short(exc), details)
            return
        except NotPermitted as exc:
            self.ledger.record_unsent(self.key, [row.row], "not sent: not permitted")
            self._halt("not_permitted", str(exc))
            return
        except NotFound as exc:
            self.ledger.record_unsent(self.key, [row.row], "not sent: not found")
            self._halt("not_found", str(exc))
            return
        except QuotaExhausted as exc:  # refused before sending: certainly not sent
            self.ledger.record_unsent(self.key, [row.row], "not sent: the day's budget is spent")
            self._halt_for_quota(exc)
            return
        except Stopping:  # leadpipe is stopping: refused before sending, certainly not sent
            self.ledger.record_unsent(self.key, [row.row], "not sent: the upload stopped")
            self._halt("stopped", "leadpipe was asked to stop; run it again to continue")
            return
        except Unavailable as exc:
            self.ledger.record_unsent(self.key, [row.row], "not sent: the API is unavailable")
            self._halt("unavailable", f"waiting for the API: {exc}")
            return
        except Uncertain as exc:
            self.ledger.record_uncertain(self.key, row.row, _short(exc))
            return
        except ApiError as exc:  # anything else: it may have been processed
            self.ledger.record_uncertain(self.key, row.row, _short(exc))
            return
        crash_point("after_response")
        how = "created" if created.unique_id else "accepted, id not given"
        self.ledger.record_accepted(self.key, row.row, created.unique_id, how)

    # -- reconciliation -----------------------------------------------------------------------

    def _reconcile(self, rows: Sequence[UploadRow], states: Mapping[int, Any]) -> None:
        """Look uncertain rows up among the campaign's leads: found -> accepted, else pending.

        A row is judged absent (and sent again) only when the same lookup demonstrably sees
        this account's leads with their data (:meth:`_sight`); otherwise it stays uncertain,
        for a person. The wait before the lookup counts from when each attempt ended.
        """
        if not self._may_read():
            if not self.halted:
                self._leave_uncertain(rows, no_read_right_reason())
            return
        refs = [_reference(states[r.row]) for r in rows]
        known = [a for a in refs if a is not None]
        if known:  # give a request that is still being processed time to land
            wait_s = self.reconcile_grace - (self.clock.now() - max(known)).total_seconds()
            if wait_s > 0 and self.stop.wait(wait_s):
                self._check_stop()
                return
        starts = [_parse(states[r.row].attempt_utc) for r in rows]
        first = min((a for a in starts if a is not None), default=self.clock.now())
        since = first - _RECONCILE_MARGIN
        # reach back to the last lead the ledger knows we created (within a day), so that the
        # lookup can prove it sees our leads even when none was created right around the attempt
        anchor = self.ledger.last_accepted_before(self.campaign, since.astimezone(UTC).isoformat())
        anchored = _parse(anchor.attempt_utc) if anchor is not None else None
        if anchored is not None and first - anchored <= _ANCHOR_REACH:
            since = anchored - _RECONCILE_MARGIN
        since_local = since.astimezone(self.tz).replace(tzinfo=None)
        until = max(known) if known else self.clock.now()
        try:
            leads = self._leads_since(since_local)
        except NotPermitted as exc:
            if exc.status == 401:
                self._halt("not_permitted", str(exc))
                return
            self._can_read = False
            self._leave_uncertain(rows, no_read_right_reason())
            return
        except QuotaExhausted as exc:
            self._halt_for_quota(exc)
            return
        except Unavailable as exc:
            self._halt("unavailable", f"waiting for the API: {exc}")
            return
        except ApiError as exc:
            self._halt("unavailable", f"cannot check uncertain rows yet: {exc}")
            return
        sight = self._sight(leads, since, until)
        if sight.blind:
            self.report.blind += len(rows)
            self.report.blind_reason = sight.blind
            self._leave_uncertain(rows, f"{sight.blind}; so it was not sent again")
            return
        taken = self.ledger.accepted_unique_ids(self.campaign) | sight.claimed
        groups: dict[tuple[str, ...], list[UploadRow]] = {}
        for r in rows:
            groups.setdefault(tuple(filled(r.data)), []).append(r)
        absent: list[int] = []
        for fields, members in groups.items():
            index: dict[tuple[str, ...], list[str]] = {}
            for lead in leads:
                if lead.unique_id in taken or not is_ours(lead.raw, sight.identity):
                    continue
                index.setdefault(data_key(lead.data, fields), []).append(lead.unique_id)
            for r in members:
                key = data_key(r.data, fields)
                ids = index.get(key) or []
                uid = next((i for i in ids if i not in taken), None)
                if uid is None:
                    absent.append(r.row)
                    continue
                taken.add(uid)
                self.ledger.record_accepted(self.key, r.row, uid, "found by lookup")
                self.report.reconciled_found += 1
        self.ledger.record_unsent(
            self.key, absent, "not found by lookup after an uncertain attempt: sent again"
        )
        self.report.reconciled_absent += len(absent)

    def _sight(self, leads: Sequence[Any], since: datetime, until: datetime) -> _Sight:
        """May this lookup declare a row absent? It must see this account's leads, with data.

        Proof: every lead the ledger knows was accepted for the campaign in the lookup's window
        (by uniqueId) is among the lookup's leads, and they carry their data. When the window
        holds no such lead, a proof recorded earlier for this tenant (``leadpipe doctor
        --test-upload``, or an earlier lookup) must say the lookup sees our leads with data.
        The uploader identity is learned from our own leads, never assumed.
        """
        window = self.ledger.accepted_between(
            self.campaign, since.astimezone(UTC).isoformat(), until.astimezone(UTC).isoformat()
        )
        ids = {r.unique_id for r in window if r.unique_id}
        seen = {lead.unique_id: lead for lead in leads}
        # accepted without an id in the answer: known by their data, where this chunk has it
        by_data = [
            self._rows_now[r.row]
            for r in window
            if not r.unique_id and r.file_sha256 == self.sha256 and r.row in self._rows_now
        ]
        recorded = self.proof.load() if self.proof is not None else None
        if ids or by_data:
            missing = len(ids - seen.keys())
            by_id = [seen[i] for i in sorted(ids) if i in seen]
            ours = list(by_id)
            taken = set(ids)
            for row in by_data:
                fields = filled(row.data)
                want = data_key(row.data, fields)
                hit = next(
                    (
                        x
                        for x in leads
                        if x.unique_id not in taken and data_key(x.data, fields) == want
                    ),
                    None,
                )
                if hit is None:
                    missing += 1
                else:
                    taken.add(hit.unique_id)
                    ours.append(hit)
            if missing:
                return _Sight(
                    blind=f"the lookup in HeroBase did not return {missing} of the "
                    f"{len(ids) + len(by_data)} lead(s) leadpipe knows it created in campaign "
                    f"{self.campaign} in that time (filtered out, without their data, or "
                    "deleted?)"
                )
            if not any(any(normalise(v) for v in lead.data.values()) for lead in ours):
                return _Sight(
                    blind="the lookup's answers carry no lead data, so a lead that is missing "
                    "cannot be told from one that is there"
                )
            # who uploaded: learned only from leads known by their id (a lead matched by data
            # alone might be another account's)
            identity = learn_identity(lead.raw for lead in by_id) if by_id else None
            if identity is None and recorded is not None:
                identity = recorded.identity
            if self.proof is not None and by_id:
                self.proof.record_sight(
                    identity, f"a lookup found {len(ids)} lead(s) of campaign {self.campaign}"
                )
            claimed = frozenset(x.unique_id for x in ours if x.unique_id not in ids)
            return _Sight(identity=identity, claimed=claimed)
        if recorded is not None and recorded.lookup_proven:
            if leads and not any(any(normalise(v) for v in x.data.values()) for x in leads):
                return _Sight(blind="the lookup's answers carry no lead data")
            return _Sight(identity=recorded.identity)
        return _Sight(
            blind="no lead leadpipe knows it created falls in the lookup's time window, and "
            "the lookup was never proven on this tenant (run `leadpipe doctor --test-upload "
            "<a test campaign>` once)"
        )

    def _may_read(self) -> bool:
        if self._can_read is None:
            try:
                account = self.client.account()
                self._can_read = bool(account.can("Leads", "GET"))
            except NotPermitted as exc:
                self._halt("not_permitted", str(exc))
                return False
            except QuotaExhausted as exc:
                self._halt_for_quota(exc)
                return False
            except ApiError as exc:
                self._halt("unavailable", f"waiting for the API: {exc}")
                return False
        return self._can_read

    def _leave_uncertain(self, rows: Sequence[UploadRow], reason: str) -> None:
        for r in rows:
            self.ledger.record_uncertain(self.key, r.row, reason)

    def _leads_since(self, since_local: datetime) -> list[Any]:
        if self._campaign_id is None:
            self._campaign_id = campaign_id(self.client, self.campaign)
        return campaign_leads_since(self.client, self._campaign_id, since_local)


def no_read_right_reason() -> str:
    """Why an uncertain row is left for a person when the account cannot read leads."""
    return (
        "the API account lacks Leads: GET, so leadpipe cannot check whether this lead was "
        "created; it was not sent again. Check in HeroBase, and add the row by hand if missing"
    )


def _take(it: Iterator[UploadRow], n: int) -> list[UploadRow]:
    out: list[UploadRow] = []
    for r in it:
        out.append(r)
        if len(out) >= n:
            break
    return out


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _reference(rec: Any) -> datetime | None:
    """When the row's last attempt may still have been processed: its end, else its start."""
    times = [t for t in (_parse(rec.attempt_utc), _parse(rec.ended_utc)) if t is not None]
    return max(times) if times else None


def _short(exc: BaseException) -> str:
    return str(exc).split(" [", 1)[0][:300]
