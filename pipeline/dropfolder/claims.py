"""Claiming and finishing one file: into the work folder, processed, put in one final place.

The work-folder side of the drop-folder state machine (see :mod:`pipeline.dropfolder.intake`)::

    queued -> claimed (work folder) -> processed/ | failed/
                                    \\-> back in the inbox (API down: "waiting for the API")
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from pipeline.dropfolder.identity import FileIdentity
from pipeline.dropfolder.layout import (
    DropFolder,
    Finished,
    Job,
    Outcome,
    error_text,
    safe_name,
)
from pipeline.dropfolder.scan import Settling, _Entry
from pipeline.errors import FileUnreadable, LeadpipeError
from pipeline.files import readable
from pipeline.outcome import FileOutcome

log = logging.getLogger("leadpipe.intake")


class Claims(Settling):
    """Claim, process and finalise one file (the work-folder side of ``Intake``)."""

    def _claim(self, e: _Entry) -> Job | None:
        """Rename the file into the work folder; None when it changed or vanished meanwhile."""
        claim: Path | None = None
        try:
            st = os.lstat(e.path)
            if (st.st_size, st.st_mtime_ns) != (e.size, e.mtime_ns):
                self._observe(e.path, e.campaign, e.preview, unknown=e.unknown)
                return None
            identity = FileIdentity.of(e.path)
            if (identity.size, identity.mtime_ns) != (e.size, e.mtime_ns):
                self._observe(e.path, e.campaign, e.preview, unknown=e.unknown)
                return None
            digest = identity.sha256
            now = self._local_now()
            seq = f"{now:%Y%m%d%H%M%S%f}{next(self._seq) % 10000:04d}"
            folder = DropFolder.campaign_folder(e.path.parent, e.preview)
            claim = self.layout.claim_dir(folder.name, seq, digest, e.preview)
            with self._cond:
                self._active_claims.add(claim)  # a concurrent sweep must not "resume" it
            name = safe_name(e.path.name)  # valid UTF-8, room for stamp and suffix
            dropped_as = readable(e.path.name) if name != e.path.name else ""
            record = json.dumps(
                {
                    "size": identity.size,
                    "mtime_ns": identity.mtime_ns,
                    "sha256": digest,
                    "dropped_as": dropped_as,
                }
            )
            target = self.layout.claim(e.path, claim, name, record + "\n")
        except (OSError, FileUnreadable) as failure:
            exc = failure.__cause__ if isinstance(failure, FileUnreadable) else failure
            if claim is not None:
                DropFolder.unclaim(claim)
                with self._cond:
                    self._active_claims.discard(claim)
            if isinstance(exc, FileNotFoundError):
                return None  # deleted or renamed just now: the next sweep sees its new name
            log.warning("could not claim %s: %s", e.path, exc)
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            e.problem = f"could not be moved into the work folder: {why}"
            e.since = self.clock.monotonic()  # try again after another settle time
            with self._cond:
                self._seen[e.path] = e
            return None
        job = Job(
            campaign=e.campaign,
            name=target.name,
            path=target,
            folder=e.path.parent,
            preview=e.preview,
            stamp=f"{now:%Y%m%d-%H%M%S}",
            sha256=digest,
            identity=identity,
            dropped_as=dropped_as,
        )
        if self.on_claimed is not None:
            self.on_claimed(job, max(0.0, self.clock.monotonic() - e.since - self.settle_seconds))
        return job

    def _process(self, job: Job) -> Finished | None:
        started = self.clock.monotonic()
        try:
            outcome = self.processor(job)
        except LeadpipeError as exc:
            outcome = Outcome(FileOutcome.FAILED, message=str(exc))
        except Exception as exc:
            log.exception("unexpected error while processing %s", job.name)
            outcome = Outcome(
                FileOutcome.FAILED,
                message=(
                    f"leadpipe hit an internal error while processing this file ({exc!r}). "
                    "Nothing more will happen to it; tell whoever runs leadpipe."
                ),
            )
        return self._finalise(job, outcome, self.clock.monotonic() - started)

    def _finalise(self, job: Job, out: Outcome, seconds: float) -> Finished | None:
        stamp = out.stamp or job.stamp
        error: Path | None = None
        final: Path | None = None
        try:
            if out.kind is FileOutcome.INTERRUPTED:
                return None  # stays claimed; resumed at the next start
            if out.kind is FileOutcome.CHANGED:
                final = DropFolder.back_to_inbox(job.path, job.folder, job.name)
                if out.retry_after > 0:  # not again before then, unless it changes
                    st = os.stat(final)
                    until = self.clock.monotonic() + out.retry_after
                    with self._cond:
                        self._not_before[final] = (until, st.st_size, st.st_mtime_ns)
                log.warning("%s went back to the inbox: %s", job.name, out.message)
            elif out.kind is FileOutcome.WAITING:
                final = DropFolder.back_to_inbox(job.path, job.folder, job.name)
                with self._cond:
                    self.breaker.trip(
                        out.message or "the API is not answering", longest=out.not_permitted
                    )
                log.warning("waiting for the API: %s (%s back in the inbox)", out.message, job.name)
            elif out.kind is FileOutcome.FAILED:
                final, error = self.layout.to_failed(
                    job.path,
                    job.folder,
                    job.preview,
                    DropFolder.result_name(stamp, job.name),
                    error_text(job, out.message),
                )
            else:
                final = self.layout.to_processed(
                    job.path,
                    job.folder,
                    job.preview,
                    DropFolder.result_name(stamp, job.name),
                    out.destination,
                )
                with self._cond:
                    self.breaker.success(out.uncertain)
            DropFolder.release(job.path.parent)  # the claim, now without its file
        except OSError as exc:
            # The inbox (a share?) went away mid-move: the claim stays and is resumed later.
            log.warning("could not finish %s (%s); it will be resumed", job.name, exc)
            return None
        done = Finished(
            campaign=job.campaign,
            name=job.name,
            preview=job.preview,
            kind=out.kind,
            at=self._local_now(),
            final=final,
            receipt=out.receipt,
            rejects=list(out.rejects),
            error=error,
            message=out.message,
            counts=dict(out.counts),
            seconds=seconds,
        )
        self._record(done)
        return done
