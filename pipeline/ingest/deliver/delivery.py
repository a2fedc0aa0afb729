"""Delivery: what becomes of each chunk's valid rows, chosen once per file.

:class:`UploadDelivery` sends them exactly once through
:class:`~pipeline.ingest.deliver.upload.Uploader` and the ledger; :class:`PreviewDelivery` (a dry
run, a file in ``preview/``) sends nothing and records nothing: it only counts the rows whose
data the ledger already holds as accepted for the campaign. Ingest reads and checks a file the
same way for both (:mod:`pipeline.ingest.chunks`); a dry run is this choice and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd

from pipeline.ingest.deliver.upload import Uploader
from pipeline.ingest.problems import RowProblem
from pipeline.ingest.rows import api_refusals, upload_rows, valid_fingerprints
from pipeline.ledger import FileKey, FileState, Ledger, RowState, mark_changed
from pipeline.outcome import FileOutcome

#: The reason an interrupted run gives (the uploader says the same when it stops sending).
STOP_REASON = "leadpipe was asked to stop; run it again to continue"


@dataclass(frozen=True)
class Halt:
    """Why delivery stopped sending before the end of the file."""

    outcome: FileOutcome  #: what it means for the file: waiting, stopped or interrupted
    reason: str  #: in plain words
    #: the uploader's reason code ("unavailable", "not_permitted", "not_found", "stopped"),
    #: kept as the receipt's ``halt`` for compatibility
    code: str
    not_permitted: bool = False  #: the API refused the credentials or rights: a long pause

    @classmethod
    def asked_to_stop(cls) -> Halt:
        """leadpipe was asked to stop: the file is resumed at the next run."""
        return cls(FileOutcome.INTERRUPTED, STOP_REASON, "stopped")


@dataclass(frozen=True)
class Delivered:
    """Where the file's valid rows stand after the pass over the file."""

    #: the outcome of a pass that read the whole file, with no row left waiting
    complete: FileOutcome
    accepted: int = 0  #: in HeroBase (a preview: would be uploaded)
    refused: int = 0  #: refused by the API
    duplicates: int = 0  #: data already accepted for the campaign (repeats in the file apart)
    uncertain: int = 0  #: may or may not have reached HeroBase
    pending: int = 0  #: not sent yet (sent when the file is processed again)
    uncertain_rows: list[tuple[int, str]] = field(default_factory=list)  #: (row, why)
    halt: Halt | None = None
    #: why uncertain rows were left for a person, when the lookup could not be trusted
    blind_reason: str = ""


class ValidRows(Protocol):
    """One chunk's valid rows (e.g. a :class:`~pipeline.ingest.validate.checks.ChunkResult`):
    how many, and their fields as a frame, which may be made only when asked for."""

    @property
    def valid_rows(self) -> int: ...

    @property
    def valid(self) -> pd.DataFrame: ...


class Delivery(Protocol):
    """The delivery step of ingest: takes each chunk's valid rows, then says where they stand."""

    #: whether rows reach HeroBase (an upload) or not (a preview)
    sends: bool

    def deliver(self, chunk: ValidRows) -> dict[int, list[RowProblem]]:
        """Take one chunk's valid rows; returns the API's refusals among them, by row."""
        ...

    def result(self) -> Delivered:
        """Where the rows stand now (after the last chunk, or after the pass stopped)."""
        ...

    def changed(self, reason: str) -> None:
        """The file changed while it was read: hand the rows it sent over to its next version."""
        ...

    def leave_waiting(self, reason: str) -> None:
        """The file is not done (rows wait, the upload halted): record that it waits."""
        ...


class UploadDelivery:
    """Sends each valid row exactly once (the ledger records intent before each POST)."""

    sends = True

    def __init__(self, uploader: Uploader, header_of: Mapping[str, str]) -> None:
        self.uploader = uploader
        self.ledger: Ledger = uploader.ledger
        self.key: FileKey = uploader.key
        self.header_of = dict(header_of)  #: field -> the column the person sees

    @classmethod
    def begin(
        cls, uploader: Uploader, name: str, header_of: Mapping[str, str], *, hold: str = ""
    ) -> UploadDelivery:
        """Record the file as being processed (rows left ``sending`` become uncertain).

        ``hold``: send nothing, for this reason (rows are still recorded as pending).
        """
        uploader.ledger.begin_file(uploader.key, name)
        uploader.ledger.recover_sending(uploader.key)
        if hold:
            uploader.hold(hold)
        return cls(uploader, header_of)

    def deliver(self, chunk: ValidRows) -> dict[int, list[RowProblem]]:
        """Record the rows, send them while not halted; the API's refusals among them."""
        rows = upload_rows(chunk.valid, self.uploader.campaign)
        self.uploader.deliver(rows)
        return api_refusals(self.ledger, self.key, rows, self.header_of)

    def result(self) -> Delivered:
        """The ledger's counts for the file (an earlier, longer run's rows included)."""
        c = self.ledger.row_counts(self.key)
        report = self.uploader.report
        outcome = report.outcome
        halt = (
            Halt(outcome, report.reason, report.halt, report.not_permitted)
            if outcome is not None
            else None
        )
        uncertain = [(r.row, r.reason) for r in self.ledger.rows(self.key, [RowState.UNCERTAIN])]
        return Delivered(
            complete=FileOutcome.PROCESSED,
            # MOVED: this content was read before while still being written, and that read's
            # lead was handed over to the complete version; it is in HeroBase
            accepted=c[RowState.ACCEPTED] + c[RowState.MOVED],
            refused=c[RowState.REFUSED],
            duplicates=c[RowState.DUPLICATE],
            uncertain=c[RowState.UNCERTAIN],
            pending=c[RowState.PENDING] + c[RowState.SENDING],
            uncertain_rows=uncertain,
            halt=halt,
            blind_reason=report.blind_reason if report.blind and uncertain else "",
        )

    def changed(self, reason: str) -> None:
        """Rows this read sent are handed over to the file's complete version."""
        mark_changed(self.ledger, self.key, False, reason)

    def leave_waiting(self, reason: str) -> None:
        """The file waits in the ledger: the next run sends what is left."""
        self.ledger.set_file_state(self.key, FileState.WAITING, reason)


class PreviewDelivery:
    """Sends nothing, records nothing: counts the rows that would be uploaded.

    Whether the campaign has any accepted row is asked once, when the preview begins: with
    none, no row can be a known duplicate and no fingerprint is computed. A preview is a
    snapshot of the ledger at its start; rows another process accepts meanwhile are not
    counted (the upload itself checks every row again when it claims it).
    """

    sends = False

    def __init__(self, ledger: Ledger, campaign: str, *, skip_duplicates: bool) -> None:
        self.ledger = ledger
        self.campaign = campaign
        #: look rows up only when duplicates are skipped and the ledger holds any to find
        self.skip_duplicates = skip_duplicates and ledger.has_accepted(campaign)
        self.valid = 0
        self.known = 0  #: valid rows whose data is already accepted for the campaign

    def deliver(self, chunk: ValidRows) -> dict[int, list[RowProblem]]:
        """Count the rows, and those the ledger knows as accepted for the campaign (their
        fields are looked at only then)."""
        self.valid += chunk.valid_rows
        if self.skip_duplicates:
            prints = valid_fingerprints(chunk.valid, self.campaign)
            seen = self.ledger.accepted_fingerprints(self.campaign, prints)
            self.known += sum(1 for f in prints if f in seen)
        return {}

    def result(self) -> Delivered:
        """What an upload would do: every valid row but the known ones would be uploaded."""
        return Delivered(
            complete=FileOutcome.PREVIEWED,
            accepted=self.valid - self.known,
            duplicates=self.known,
        )

    def changed(self, reason: str) -> None:
        """Nothing was sent: nothing to hand over."""

    def leave_waiting(self, reason: str) -> None:
        """A preview is not recorded in the ledger."""
