"""Claims: a settled file into the work folder, and out of it to one final place.

::

    settled -> claimed (inbox/.leadpipe/work/...) -> processed/ | failed/
                                                  \\-> back in the inbox (waiting, changed)

A claim is an atomic rename on the inbox's volume, with a record of the file as claimed (size,
mtime, SHA-256, the name it was dropped as) written first. Claims an interrupted run left are
found again by :meth:`Claims.interrupted` and resumed (``docs/dropfolder.md``). In a cluster
each claim also has a lease (:class:`~pipeline.dropfolder.jobs.ClaimLeases`), taken before the
claim folder is made; a claim is resumed only by the node that takes its lease, so never one
another live node works on (docs/cluster.md, "How nodes share the drop folder"). The moves
themselves belong to :class:`pipeline.dropfolder.layout.DropFolder`; this module decides which.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.dropfolder.identity import FileIdentity
from pipeline.dropfolder.jobs import ClaimLeases, Job, LeaseHold, LeasesUnreachable, Outcome
from pipeline.dropfolder.layout import CLAIM_RECORD, DropFolder, error_text, parse_claim, safe_name
from pipeline.dropfolder.scan import SeenFile
from pipeline.errors import FileUnreadable
from pipeline.files import readable
from pipeline.outcome import FileOutcome

log = logging.getLogger("leadpipe.intake")


class NotClaimed(Exception):
    """The file was not claimed: it changed or vanished (``problem`` empty), or it could not be
    moved (``problem`` says why; it is tried again after another settle time)."""

    def __init__(self, problem: str = "") -> None:
        super().__init__(problem or "changed or gone")
        self.problem = problem


@dataclass(frozen=True)
class Placed:
    """Where a finished file went."""

    final: Path | None  #: the original's new place (None: it stays claimed)
    error: Path | None = None  #: its ``.error.txt``, when it failed


class Claims:
    """Claims files into the work folder and puts them in their final place.

    ``local_now`` is the current local time (claim names and result stamps).
    """

    def __init__(
        self,
        layout: DropFolder,
        local_now: Callable[[], datetime],
        leases: ClaimLeases | None = None,
    ) -> None:
        self.layout = layout
        self.local_now = local_now
        #: a cluster's leases on claims (None: one node; every claim is ours)
        self.leases = leases
        self._seq = itertools.count()

    def stamp(self) -> str:
        """``YYYYMMDD-HHMMSS`` now: the prefix of result names."""
        return f"{self.local_now():%Y%m%d-%H%M%S}"

    def place_for(self, e: SeenFile, identity: FileIdentity) -> Path:
        """The new claim folder for ``e`` (not made yet)."""
        now = self.local_now()
        seq = f"{now:%Y%m%d%H%M%S%f}{next(self._seq) % 10000:04d}"
        folder = DropFolder.campaign_folder(e.path.parent, e.preview)
        return self.layout.claim_dir(folder.name, seq, identity.sha256, e.preview)

    @staticmethod
    def identify(e: SeenFile) -> FileIdentity:
        """The file as it is now, hashed; raises :class:`NotClaimed` when it changed or is gone."""
        try:
            found = os.lstat(e.path)
            if (found.st_size, found.st_mtime_ns) != (e.size, e.mtime_ns):
                raise NotClaimed()
            identity = FileIdentity.of(e.path)
        except FileNotFoundError:
            raise NotClaimed() from None
        except (OSError, FileUnreadable) as failure:
            raise NotClaimed(_why(failure)) from failure
        if (identity.size, identity.mtime_ns) != (e.size, e.mtime_ns):
            raise NotClaimed()
        return identity

    def claim(self, e: SeenFile, identity: FileIdentity, claim: Path) -> Job:
        """Rename the file into ``claim`` with its record; raises :class:`NotClaimed`."""
        name = safe_name(e.path.name)  # valid UTF-8, room for stamp and suffix
        dropped_as = readable(e.path.name) if name != e.path.name else ""
        record = json.dumps(
            {
                "size": identity.size,
                "mtime_ns": identity.mtime_ns,
                "sha256": identity.sha256,
                "dropped_as": dropped_as,
            }
        )
        lease: LeaseHold | None = None
        if self.leases is not None:
            # before the folder exists: no other node can take it as an interrupted claim
            try:
                lease = self.leases.take(claim)
            except LeasesUnreachable as exc:
                log.warning("cluster: cannot take the lease of a new claim: %s", exc)
                lease = None
            if lease is None:
                raise NotClaimed(
                    "waits: another node is working on the same file, or the cluster's "
                    "database is not answering (tried again)"
                )
        try:
            target = self.layout.claim(e.path, claim, name, record + "\n")
        except OSError as exc:
            DropFolder.unclaim(claim)
            if self.leases is not None:
                self.leases.release(claim)
            if isinstance(exc, FileNotFoundError):
                raise NotClaimed() from None  # renamed just now: the next sweep sees its name
            log.warning("could not claim %s: %s", e.path, exc)
            raise NotClaimed(_why(exc)) from exc
        return Job(
            campaign=e.campaign,
            name=target.name,
            path=target,
            folder=e.path.parent,
            preview=e.preview,
            stamp=self.stamp(),
            sha256=identity.sha256,
            identity=identity,
            dropped_as=dropped_as,
            lease=lease,
        )

    def finish(self, job: Job, out: Outcome) -> Placed:
        """Move a processed file to the place its outcome names; the claim is released.

        ``interrupted``: it stays claimed (resumed at the next start). Raises ``OSError`` when
        a move fails (the inbox went away mid-move): the claim stays and is resumed later.
        """
        if out.kind is FileOutcome.INTERRUPTED:
            return Placed(None)
        error: Path | None = None
        if out.kind in (FileOutcome.CHANGED, FileOutcome.WAITING):
            final = DropFolder.back_to_inbox(job.path, job.folder, job.name)
        elif out.kind is FileOutcome.FAILED:
            final, error = self.layout.to_failed(
                job.path,
                job.folder,
                job.preview,
                DropFolder.result_name(out.stamp or job.stamp, job.name),
                error_text(job.name, job.campaign, out.message),
            )
        else:
            final = self.layout.to_processed(
                job.path,
                job.folder,
                job.preview,
                DropFolder.result_name(out.stamp or job.stamp, job.name),
                out.destination,
            )
        DropFolder.release(job.path.parent)  # the claim, now without its file
        return Placed(final, error)

    def interrupted(
        self, handled: Callable[[Path], bool], code_for: Callable[[str], str | None]
    ) -> list[Job]:
        """Every claim left in the work folder that is not ``handled`` already, as a job.

        In a cluster, only the claims whose lease this node takes (none held, or expired: its
        node died or could not renew it), each job with its lease. The look ends at the first
        claim whose lease the database cannot answer for: every further one would wait the
        same timeout in the loop's thread (the next sweep looks again).
        """
        try:
            campaign_dirs = [d for d in self.layout.work.iterdir() if d.is_dir()]
        except OSError:
            return []
        jobs: list[Job] = []
        for cdir in campaign_dirs:
            try:
                claims = sorted(cdir.iterdir())
            except OSError:
                continue  # gone meanwhile
            for claim in claims:
                if not claim.is_dir() or handled(claim):
                    continue
                lease: LeaseHold | None = None
                if self.leases is not None:
                    try:
                        lease = self.leases.take(claim)
                    except LeasesUnreachable as exc:
                        log.warning("interrupted claims not looked at now: %s", exc)
                        return jobs
                    if lease is None:
                        continue  # another live node works on it
                try:
                    files = [f for f in claim.iterdir() if f.is_file() and f.name != CLAIM_RECORD]
                except OSError:
                    files = []  # gone meanwhile (its node finished it)
                if not files:
                    with contextlib.suppress(OSError):
                        (claim / CLAIM_RECORD).unlink(missing_ok=True)
                        claim.rmdir()  # the move out finished before an interruption
                    if self.leases is not None:
                        self.leases.release(claim)
                    continue
                stamp, sha, preview = parse_claim(claim.name)
                identity, dropped_as = _claimed_as(claim)
                job = Job(
                    campaign=code_for(cdir.name) or cdir.name,
                    name=files[0].name,
                    path=files[0],
                    folder=DropFolder.drop_folder(self.layout.inbox / cdir.name, preview),
                    preview=preview,
                    stamp=stamp or self.stamp(),
                    sha256=identity.sha256 if identity else sha,
                    resumed=True,
                    identity=identity,
                    dropped_as=dropped_as,
                    lease=lease,
                )
                log.info("resuming %s for %s (interrupted earlier)", job.name, job.campaign)
                jobs.append(job)
        return jobs


def _why(failure: BaseException) -> str:
    exc = failure.__cause__ if isinstance(failure, FileUnreadable) else failure
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return f"could not be moved into the work folder: {why}"


def _claimed_as(claim: Path) -> tuple[FileIdentity | None, str]:
    """The file as it was claimed and the name it was dropped as, from the claim's record."""
    try:
        data = json.loads((claim / CLAIM_RECORD).read_text(encoding="utf-8"))
        found = FileIdentity(int(data["size"]), int(data["mtime_ns"]), str(data["sha256"]))
        return found, str(data.get("dropped_as", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None, ""
