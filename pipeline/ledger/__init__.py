"""The ledger: durable state that makes reruns safe (docs/architecture.md, "Exactly once").

Small, boring SQL. Each data row of an input file has one record whose state moves
``pending -> sending -> accepted | refused | uncertain`` (plus ``duplicate`` for rows whose data
was already accepted for the campaign). The intent (``sending``) is committed before the POST and
the outcome after it, so the ledger is never ahead of what the API acknowledged.

:class:`Ledger` is the interface the rest of leadpipe uses; :class:`SqliteLedger` implements it
on SQLite in WAL mode under the state folder, :class:`PostgresLedger` (``postgres.py``) in a
PostgreSQL database (docs/architecture.md, "The ledger on PostgreSQL"); ``connect.py`` opens the
one ``[state] ledger`` names.
A file is keyed by the SHA-256 of its content *and* the campaign it was dropped for
(:class:`FileKey`): the same content dropped for two campaigns is two files, each uploaded to
its own campaign. Rows are keyed by ``(file key, row number)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

LEDGER_FILE = "ledger.sqlite"
#: Written beside the database when it is created: a ledger is then *expected* to exist.
MARKER_FILE = "ledger.created"


class RowState(StrEnum):
    """Where one row stands on its way to HeroBase."""

    PENDING = "pending"
    SENDING = "sending"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    UNCERTAIN = "uncertain"
    DUPLICATE = "duplicate"
    #: a row of a file that changed while it was read (:attr:`FileState.CHANGED`), whose lead
    #: was handed over to the same row of the file's next, complete version
    MOVED = "moved"


class FileState(StrEnum):
    """Where one input file stands."""

    PROCESSING = "processing"
    WAITING = "waiting"  # API down, schema only from a snapshot, stopped, or not permitted
    DONE = "done"
    FAILED = "failed"
    #: the file changed while it was read (still being written): rows it sent are handed over
    #: to the next version of the file in the same campaign, never sent again
    CHANGED = "changed"


@dataclass(frozen=True)
class FileKey:
    """One input file as the ledger knows it: its content (SHA-256) for one campaign.

    "Already processed" means the same content *for the same campaign*; the same content
    dropped into another campaign's folder is another file.
    """

    sha256: str
    campaign: str

    def __str__(self) -> str:
        return f"{self.sha256[:16]} for {self.campaign}"


@dataclass(frozen=True)
class FileRecord:
    """One input file, keyed by the SHA-256 of its content and its campaign."""

    sha256: str
    name: str
    campaign: str
    state: FileState
    reason: str
    first_seen_utc: str
    updated_utc: str
    finished_utc: str | None
    receipt_path: str | None
    receipt_json: str | None

    @property
    def key(self) -> FileKey:
        """The ledger key of this file."""
        return FileKey(self.sha256, self.campaign)


@dataclass(frozen=True)
class RowRecord:
    """One data row of an input file and its delivery state."""

    file_sha256: str
    row: int
    campaign: str
    fingerprint: str
    state: RowState
    unique_id: str | None
    reason: str
    details: list[dict[str, str]]
    attempt_local: str | None
    attempt_utc: str | None
    attempts: int
    #: when the last uncertain attempt ended (the client gave up on its answer)
    ended_utc: str | None = None


@dataclass(frozen=True)
class Claim:
    """Result of :meth:`Ledger.claim_for_sending`: rows now ``sending``, and duplicates."""

    sending: list[int]
    duplicates: dict[int, str]  # row -> plain reason naming the earlier row
    #: rows whose lead an earlier read of the same file (one that changed while it was read)
    #: already sent: they take over that row's state and are not sent again
    handed_over: list[int] = field(default_factory=list)


class Ledger(Protocol):
    """What leadpipe needs of its durable state (SQLite or PostgreSQL, same semantics)."""

    location: str

    def close(self) -> None:
        """Release the database."""
        ...

    def file(self, key: FileKey) -> FileRecord | None:
        """The record of a file, or None when it was never seen."""
        ...

    def files_with_content(self, sha256: str) -> list[FileRecord]:
        """Every file record of this content, in any campaign (newest first)."""
        ...

    def begin_file(self, key: FileKey, name: str) -> FileRecord:
        """Record that a file is being processed (first time or again)."""
        ...

    def set_file_state(self, key: FileKey, state: FileState, reason: str = "") -> None:
        """Move a file to ``state`` (with a plain reason when it waits or failed)."""
        ...

    def finish_file(
        self, key: FileKey, state: FileState, receipt_path: str, receipt_json: str
    ) -> None:
        """Record the final state of a file and where its receipt is."""
        ...

    def add_rows(self, key: FileKey, rows: Iterable[tuple[int, str]]) -> int:
        """Record ``(row, fingerprint)`` as pending unless known; returns how many were new."""
        ...

    def rows(self, key: FileKey, states: Sequence[RowState] | None = None) -> list[RowRecord]:
        """The rows of a file (optionally only in ``states``), in row order."""
        ...

    def row_counts(self, key: FileKey) -> dict[RowState, int]:
        """How many rows of a file are in each state."""
        ...

    def recover_sending(self, key: FileKey | None = None) -> int:
        """Rows left ``sending`` by a crash become ``uncertain``; returns how many."""
        ...

    def claim_for_sending(
        self,
        key: FileKey,
        rows: Sequence[int],
        *,
        skip_duplicates: bool,
        attempt_utc: datetime,
        attempt_local: datetime,
    ) -> Claim:
        """In one transaction: flip pending rows to ``sending`` (the durable intent).

        A row whose lead an earlier read of the same file already sent (a file of the campaign
        in state ``changed`` holding the same data, accepted or uncertain) takes over that
        row's state instead of being sent (``handed_over``). With ``skip_duplicates``, a row
        whose fingerprint is accepted (or in flight) for the campaign in another row, from any
        file, becomes ``duplicate`` instead.
        """
        ...

    def record_accepted(
        self, key: FileKey, row: int, unique_id: str | None, how: str = "created"
    ) -> None:
        """The API created the lead (or a lookup found it); ``unique_id`` None: not given."""
        ...

    def accepted_between(self, campaign: str, since_utc: str, until_utc: str) -> list[RowRecord]:
        """Rows of any file accepted for ``campaign`` whose attempt lies in the window."""
        ...

    def last_accepted_before(self, campaign: str, before_utc: str) -> RowRecord | None:
        """The latest row accepted with an id for ``campaign`` before the moment (any file)."""
        ...

    def fill_unique_id(self, key: FileKey, row: int, unique_id: str) -> None:
        """Record the uniqueId of an accepted lead whose answer did not give it (a lookup)."""
        ...

    def record_refused(
        self, key: FileKey, row: int, reason: str, details: Sequence[dict[str, str]] = ()
    ) -> None:
        """The API refused the row (400); ``details`` are its field errors."""
        ...

    def record_uncertain(self, key: FileKey, row: int, reason: str) -> None:
        """The POST may have reached the server: never resend without a lookup."""
        ...

    def record_unsent(self, key: FileKey, rows: Sequence[int], reason: str = "") -> None:
        """Rows flipped to ``sending`` that certainly did not reach the server: back to pending."""
        ...

    def accepted_unique_ids(self, campaign: str) -> set[str]:
        """Every uniqueId the ledger already holds for a campaign."""
        ...

    def accepted_fingerprints(self, campaign: str, fingerprints: Iterable[str]) -> set[str]:
        """Which of ``fingerprints`` are already accepted for the campaign (any file)."""
        ...

    def has_accepted(self, campaign: str) -> bool:
        """Whether any row of any file is accepted for the campaign (one cheap query).

        Lets a caller skip computing fingerprints when :meth:`accepted_fingerprints` could
        only answer "none". The answer is a snapshot: rows may be accepted right after.
        """
        ...

    # -- data kept, and for how long (docs/retention.md) --------------------------------------

    def every_file(self) -> list[FileRecord]:
        """Every file record, in any state and campaign (oldest first)."""
        ...

    def files_named(self, name: str) -> list[FileRecord]:
        """The file records of files dropped under ``name`` (newest first)."""
        ...

    def rows_with_unique_id(self, unique_id: str) -> list[RowRecord]:
        """The rows whose lead has this uniqueId (normally one)."""
        ...

    def scrub_file(self, key: FileKey, receipt_json: str | None) -> None:
        """Remove the values a file's records may quote, keeping what exactly-once needs.

        Cleared: the file's reason, its rows' reasons and API details, its attempts' details;
        ``receipt_json`` replaces the stored receipt (the caller's copy without quoted
        values; None leaves it). Kept: fingerprints, states, uniqueIds, times, counts.
        """
        ...

    def scrub_mentions(self, texts: Sequence[str], clean_receipt: Callable[[str], str]) -> int:
        """Clear every reason, detail and attempt detail that contains one of ``texts``, and
        replace each stored receipt that contains one by ``clean_receipt(receipt_json)``;
        returns how many records changed (``leadpipe forget``)."""
        ...

    def compact(self, *, vacuum: bool = True) -> None:
        """Make removed values unrecoverable from the storage: old page images and logs
        rewritten; ``vacuum``: the whole store too (slower; ``leadpipe forget``)."""
        ...


def mark_changed(ledger: Ledger, key: FileKey, dry_run: bool, reason: str) -> None:
    """Record that this content was a read of a file still being written (if it sent rows).

    Rows it left ``sending`` become uncertain, and its accepted or uncertain rows are handed over
    to the rows with the same data of the file's complete version (same name, same campaign):
    never sent twice.
    """
    if dry_run or ledger.file(key) is None:
        return
    ledger.recover_sending(key)
    ledger.set_file_state(key, FileState.CHANGED, reason)
