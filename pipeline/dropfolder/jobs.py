"""The records at the seam between the drop folder and its processor.

The intake claims a file and hands the processor a :class:`Job`; the processor answers with an
:class:`Outcome`; the intake moves the file accordingly and records a :class:`Finished`, which
the status page, ``/metrics`` and ``leadpipe status`` read (through
:class:`pipeline.dropfolder.status.RecentFile`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pipeline.dropfolder.cancel import CancelSignal
from pipeline.dropfolder.identity import FileIdentity
from pipeline.outcome import FileOutcome

if TYPE_CHECKING:
    from pipeline.dropfolder.progress import FileRun


class LeaseHold(Protocol):
    """A claim's lease held by this node of a cluster (docs/cluster.md, "Leases and fencing").

    ``lost`` is set once the node may no longer start requests for the file (another node took
    the lease over, or it could not be renewed in time); :meth:`check` asks again (before each
    batch of sends and before the file is placed).
    """

    lost: threading.Event

    def fenced(self) -> bool:
        """Lost, or not renewed for too long (a local look, no database): send nothing more."""
        ...

    def check(self) -> bool:
        """Still held with its token and fresh enough to start requests (asks the database)."""
        ...


class LeasesUnreachable(Exception):
    """The cluster's database did not answer a lease's take: nothing is known of who holds it."""


class ClaimLeases(Protocol):
    """What the intake asks of a cluster: a lease per claim folder (docs/cluster.md, "How
    nodes share the drop folder").

    Without one (SQLite, one node) every claim in the work folder is this node's own.
    """

    def take(self, claim: Path) -> LeaseHold | None:
        """Take the lease of ``claim`` (a claim folder, made or not yet): None when another
        live node holds it (or the same file's content); raises :class:`LeasesUnreachable`
        when the database cannot say."""
        ...

    def release(self, claim: Path) -> None:
        """The claim's file reached its place: give the lease up."""
        ...

    def drop(self, claim: Path) -> None:
        """The claim stays (interrupted): stop renewing; the lease expires by itself."""
        ...


@dataclass(frozen=True)
class Job:
    """One claimed file, handed to the processor."""

    campaign: str  #: the campaign code (as the API spells it)
    name: str  #: the file name as dropped
    path: Path  #: where the file is now (inside the work folder)
    folder: Path  #: where results go: ``inbox/<campaign>`` or ``inbox/<campaign>/preview``
    preview: bool  #: validate only, upload nothing
    stamp: str  #: claim time, ``YYYYMMDD-HHMMSS``: prefix for names of results
    sha256: str  #: the content hash the claim is keyed by
    resumed: bool = False  #: found in the work folder at start-up (an interrupted run)
    #: size, mtime and hash when it was claimed (None: an old claim without a record)
    identity: FileIdentity | None = None
    #: the name as dropped, when it had to change (not UTF-8, too long; see :func:`safe_name`)
    dropped_as: str = ""
    #: where the processor reports how far it is (None: nobody asks, e.g. a direct call)
    progress: FileRun | None = field(default=None, compare=False)
    #: set when a person asks to cancel the file (docs/dropfolder.md, "Cancelling a file")
    cancel: CancelSignal = field(default_factory=CancelSignal, compare=False)
    #: this node's lease on the claim, in a cluster (None: one node, the claim is ours)
    lease: LeaseHold | None = field(default=None, compare=False)


@dataclass
class Outcome:
    """What the processor did with a file.

    ``processed``: the original goes to ``processed/`` (preview: stays beside its receipt).
    ``failed``: to ``failed/`` with ``message`` as its ``.error.txt``. ``wait``: the API is down;
    the file goes back to the inbox and taking pauses. ``interrupted``: the service is stopping;
    the file stays claimed and is resumed at the next start. ``changed``: the file changed while
    it was read (a copy still under way): it goes back to the inbox to settle again.
    """

    kind: FileOutcome
    message: str = ""
    receipt: Path | None = None
    rejects: list[Path] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    stamp: str | None = None  #: the stamp the processor used for its result files, if any
    uncertain: int = 0  #: rows left uncertain (repeated uncertainty opens the breaker)
    not_permitted: bool = False  #: the API refused our credentials/rights (long pause)
    destination: Path | None = None  #: where the original goes (``processed``), if chosen
    retry_after: float = 0.0  #: ``changed``: take the file again no sooner than this (s)
    #: ``waiting`` for the day's request budget: take no file before this (its reset)
    resume_at: datetime | None = None


Processor = Callable[[Job], Outcome]


@dataclass
class Finished:
    """One entry of the recent-files list (what the status page shows)."""

    campaign: str
    name: str
    preview: bool
    kind: FileOutcome
    at: datetime
    final: Path | None
    receipt: Path | None
    rejects: list[Path]
    error: Path | None
    message: str
    counts: dict[str, int]
    seconds: float
    run: str = ""  #: the run's id (its progress record's), "" when none was kept
    #: this run's own rows by receipt count key (``counts`` may include an earlier run's):
    #: ``/metrics`` counts these, less what it counted while the rows went
    run_counts: dict[str, int] | None = None

    @classmethod
    def failed(
        cls,
        campaign: str,
        name: str,
        *,
        preview: bool,
        at: datetime,
        final: Path,
        error: Path | None,
        message: str,
        seconds: float,
    ) -> Finished:
        """A file that ended in ``failed/`` (nothing uploaded), with its error text."""
        return cls(
            campaign,
            name,
            preview,
            FileOutcome.FAILED,
            at,
            final,
            None,
            [],
            error,
            message,
            {},
            seconds,
        )
