"""The drop-folder state machine: discover, settle, queue, claim, process, put in one final place.

A file in ``inbox/<campaign>/`` (or its ``preview/``) moves through::

    seen -> settling -> queued -> claimed (work folder) -> processed/ | failed/
                                         \\-> back in the inbox (waiting for the API, changed)

:class:`Intake` composes the parts, each its own object: what the inbox holds
(:class:`~pipeline.dropfolder.scan.InboxListing`), the settle policy
(:class:`~pipeline.dropfolder.scan.Settling`), which folders are campaigns
(:class:`~pipeline.dropfolder.campaigns.CampaignDirectory`), the per-campaign queues
(:class:`~pipeline.dropfolder.queues.Queues`), claiming and finishing
(:class:`~pipeline.dropfolder.claims.Claims`) and the API breaker
(:class:`~pipeline.dropfolder.breaker.Breaker`). It holds the one lock they share, hands out
work to the service's workers and reports its state as an
:class:`~pipeline.dropfolder.status.IntakeStatus`.

* **Order.** One file at a time per campaign, oldest first (mtime, then name); claims an
  interrupted run left go first; campaigns run in parallel, bounded by the number of workers.
* **Breaker.** When the processor says the API is down (or uncertain outcomes repeat), taking
  stops; files wait in the inbox; a cheap probe (or the next file) closes it again.
* **Daily budget.** When a file waits because the day's request budget is spent, taking
  pauses until the budget resets (``Outcome.resume_at``), then resumes by itself; the status
  shows the budget and each waiting file's likely finish (:mod:`pipeline.dropfolder.eta`).

Nothing here knows about HTTP or spreadsheets: the work is done by an injected ``Processor``
(``docs/dropfolder.md`` has the whole lifecycle).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.api.quota import QuotaExhausted, QuotaStatus
from pipeline.clock import Clock, SystemClock
from pipeline.dropfolder.breaker import Breaker
from pipeline.dropfolder.campaigns import CampaignDirectory
from pipeline.dropfolder.cancel import CancelRequest, find_requests
from pipeline.dropfolder.claims import Claims, NotClaimed
from pipeline.dropfolder.eta import estimate_rows, finish_times, pace_of, queue_times
from pipeline.dropfolder.jobs import ClaimLeases, Finished, Job, Outcome, Processor
from pipeline.dropfolder.layout import DropFolder, safe_name, unknown_folder_text
from pipeline.dropfolder.progress import FileRun, ProgressBoard
from pipeline.dropfolder.queues import Queued, Queues, ResumedClaim
from pipeline.dropfolder.scan import InboxListing, SeenFile, Settling
from pipeline.dropfolder.status import CampaignStatus, FileInFolder, IntakeStatus, RecentFile
from pipeline.errors import LeadpipeError, Unavailable, Uncertain, plain_reason
from pipeline.files import readable
from pipeline.outcome import FileOutcome

log = logging.getLogger("leadpipe.intake")

#: What one worker took: the campaign, and the file or claim.
Taken = tuple[str, Queued]


class Intake:
    """The drop-folder state machine over ``inbox``. Thread-safe; see the module docstring.

    ``campaigns`` returns the campaign codes the account can reach (raise an ``ApiError`` when it
    cannot tell: taking pauses). ``probe`` is a cheap API call that raises while the API is down.
    """

    def __init__(
        self,
        inbox: Path,
        processor: Processor,
        *,
        campaigns: Callable[[], Iterable[str]],
        settle_seconds: float = 5.0,
        clock: Clock | None = None,
        trust_ctime: bool = True,
        probe: Callable[[], object] | None = None,
        breaker: Breaker | None = None,
        on_finished: Callable[[Finished], None] | None = None,
        on_claimed: Callable[[Job, float], None] | None = None,
        recent_size: int = 100,
        timezone: str | None = None,
        quota: Callable[[], QuotaStatus | None] | None = None,
        leases: ClaimLeases | None = None,
    ) -> None:
        self.inbox = Path(inbox)
        self.layout = DropFolder(self.inbox)
        self.processor = processor
        self.clock: Clock = clock or SystemClock()
        self.probe = probe
        #: the account's daily request budget now (None: not kept); read for the status
        self.quota = quota
        self.on_finished = on_finished
        self.on_claimed = on_claimed
        self.tz = ZoneInfo(timezone) if timezone else None
        self.breaker = breaker or Breaker(self.clock)
        self.settling = Settling(settle_seconds, self.clock, trust_ctime=trust_ctime)
        self.campaigns = CampaignDirectory(campaigns, self.clock)
        self.queues = Queues()
        #: a cluster's leases on claims (docs/cluster.md, "How nodes share the drop folder");
        #: None: one node
        self.leases = leases
        self.claims = Claims(self.layout, self._local_now, leases)
        self.recent: deque[Finished] = deque(maxlen=recent_size)
        self.totals: dict[str, int] = {o.value: 0 for o in FileOutcome}
        self.inbox_ok = True
        self.inbox_problem = ""
        self.folders: dict[str, str] = {}  #: folder name -> campaign code ("" = unknown)
        self.stray: tuple[str, ...] = ()  #: files dropped at the top of the inbox
        self._taking = True
        self._probing = False
        #: how far each file in progress is (docs/dropfolder.md, "Progress, rate and finish")
        self.board = ProgressBoard()
        self._running: dict[str, Job] = {}  #: campaign -> the job a worker processes
        #: cancel requests acted on, by the claim folder of their job: removed when it ends
        self._cancels: dict[Path, CancelRequest] = {}
        self._cond = threading.Condition()  # guards all of the above and the parts' state

    @property
    def settle_seconds(self) -> float:
        return self.settling.settle_seconds

    # ------------------------------------------------------------------ discovery
    def sweep(self) -> None:
        """A full listing of the inbox: the truth, whatever events were (not) delivered."""
        try:
            listing = InboxListing.of(self.inbox)
        except OSError as exc:
            self._inbox_lost(exc)
            return
        if not self.inbox_ok:
            log.warning("the inbox %s is back; picking up again", self.inbox)
        self.inbox_ok, self.inbox_problem = True, ""
        problem = self.campaigns.update(listing.folders)
        if problem is not None:
            with self._cond:
                if problem:
                    self.breaker.trip(problem)
                else:
                    self.breaker.success()
        with self._cond:
            busy = self.queues.busy_paths()
        self.stray = listing.stray
        folders: dict[str, str] = {}
        present: set[Path] = set()
        for name, path, preview in listing.inputs:
            code = self.campaigns.code_for(name)
            folders[name] = code or ""
            present.add(path)
            if path not in busy:
                unknown = code is None and self.campaigns.known
                self._observe(path, code or name, preview, unknown=unknown)
        for name in listing.folders:
            folders.setdefault(name, self.campaigns.code_for(name) or "")
        with self._cond:
            self.folders = folders
            for gone in self.settling.forget_all_but(present):
                self.queues.remove(gone)
            self._promote()
        self._recover()
        self._apply_cancels(sorted(listing.folders))

    def check_settling(self) -> None:
        """Re-check only the files still settling (cheap; called at their deadlines)."""
        with self._cond:
            entries = self.settling.settling()
        for e in entries:
            self._observe(e.path, e.campaign, e.preview, unknown=e.unknown)
        with self._cond:
            self._promote()

    def next_deadline(self) -> float | None:
        """Monotonic time at which a settling file may be stable (None: nothing settling)."""
        with self._cond:
            return self.settling.next_deadline()

    def _observe(self, path: Path, campaign: str, preview: bool, *, unknown: bool) -> None:
        found = self.settling.look(path)
        with self._cond:
            if found is None:
                if (gone := self.settling.forget(path)) is not None:
                    self.queues.remove(gone)
                return
            changed = self.settling.record(path, found, campaign, preview, unknown=unknown)
            if changed is not None:
                old = changed[1]
                if old is not None:
                    self.queues.remove(old)  # it changed after all: settle again
                self._cond.notify_all()

    def _promote(self) -> None:
        """Queue every file that has settled (lock held)."""
        for e in self.settling.settled(self.clock.monotonic()):
            if e.unknown:
                self.settling.forget(e.path)
                self._fail_unknown(e)
                continue
            self.queues.add(e.campaign, e)
            self._cond.notify_all()

    def _inbox_lost(self, exc: OSError) -> None:
        if self.inbox_ok:
            log.warning(
                "the inbox %s cannot be read (%s); waiting for it to return", self.inbox, exc
            )
        self.inbox_ok = False
        self.inbox_problem = (
            f"the inbox folder {self.inbox} is not reachable ({exc.strerror or exc}); "
            "waiting for it to come back (a network share outage?)"
        )
        with self._cond:
            for gone in self.settling.forget_all_but(set()):
                self.queues.remove(gone)

    def _recover(self) -> None:
        """Queue every claim left in the work folder that no worker of ours is processing."""

        def handled(claim: Path) -> bool:
            with self._cond:
                return self.queues.handles(claim)

        for job in self.claims.interrupted(handled, self.campaigns.code_for):
            with self._cond:
                self.queues.add(job.campaign, ResumedClaim(job))
                self._cond.notify_all()

    def _fail_unknown(self, e: SeenFile) -> None:
        """A settled file in a folder that is no campaign we can reach: to failed/, explained."""
        folder = DropFolder.campaign_folder(e.path.parent, e.preview)
        name = safe_name(e.path.name)
        message = unknown_folder_text(folder.name, name, self.campaigns.codes())
        self.campaigns.warn_unknown(folder.name)
        started = self.clock.monotonic()
        try:
            # to the folder's failed/, also from its preview/
            final, error = self.layout.to_failed(
                e.path, folder, False, DropFolder.result_name(self.claims.stamp(), name), message
            )
        except OSError as exc:
            log.warning("could not move %s to failed/: %s", e.path, exc)
            return
        self._record(
            Finished.failed(
                folder.name,
                name,
                preview=e.preview,
                at=self._local_now(),
                final=final,
                error=error,
                message=message.splitlines()[0],
                seconds=self.clock.monotonic() - started,
            )
        )

    # ------------------------------------------------------------------ taking and processing
    def stop_taking(self) -> None:
        """Stop handing out files (shutdown); wakes blocked :meth:`take` calls."""
        with self._cond:
            self._taking = False
            self._cond.notify_all()

    def take(self, timeout: float | None = 0.0) -> Taken | None:
        """The next file of a campaign nobody is working on; None when there is none."""
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        with self._cond:
            while True:
                got = self._pick()
                if got is not None or not timeout or not self._taking:
                    return got
                # one deadline for the whole call: wake-ups must not keep a caller waiting
                left = None if deadline is None else deadline - self.clock.monotonic()
                if left is not None and left <= 0:
                    return None
                if not self._cond.wait(left):
                    return self._pick()

    def _pick(self) -> Taken | None:
        if not self._taking or not self.inbox_ok or not self.campaigns.ready:
            return None
        if self.breaker.open and (self._probing or not self.breaker.may_try()):
            return None
        got = self.queues.pick(lambda campaign: True)
        if got is None:
            return None
        if isinstance(got[1], SeenFile):
            self.settling.forget(got[1].path)
        if self.breaker.open:
            self._probing = True
            self.breaker.hold()
        return got

    def run(self, taken: Taken) -> Finished | None:
        """Claim (if new), process and finalise one taken file. Never raises for file problems."""
        campaign, item = taken
        job: Job | None = None
        try:
            if self._probing and self.probe is not None and not self._run_probe():
                self._requeue(item)
                return None
            job = item.job if isinstance(item, ResumedClaim) else self._claim(item)
            if job is None:
                return None
            if isinstance(item, SeenFile) and not job.preview:
                self._cancel_if_asked(job.folder.name, job)
            job = self._with_progress(campaign, job)
            with self._cond:
                self.queues.working_on(campaign, job)
                self._running[campaign] = job
            return self._process(job)
        except Exception as exc:  # one file's trouble never ends a worker
            log.exception("unexpected error while handling a file of %s", campaign)
            return self._fail_unexpected(item, job, exc)
        finally:
            with self._cond:
                if job is not None and self._running.get(campaign) is job:
                    del self._running[campaign]
                self.queues.done(campaign, job)
                self._probing = False
                self._cond.notify_all()

    def _claim(self, e: SeenFile) -> Job | None:
        """Claim ``e`` into the work folder; None when it changed, vanished or cannot move."""
        claim: Path | None = None
        try:
            identity = self.claims.identify(e)
            claim = self.claims.place_for(e, identity)
            with self._cond:
                self.queues.claiming(claim)  # a concurrent sweep must not "resume" it
            job = self.claims.claim(e, identity, claim)
        except NotClaimed as why:
            if claim is not None:
                with self._cond:
                    self.queues.not_claiming(claim)
            if not why.problem:  # changed or gone: look again
                self._observe(e.path, e.campaign, e.preview, unknown=e.unknown)
                return None
            e.problem = why.problem
            e.since = self.clock.monotonic()  # try again after another settle time
            with self._cond:
                self.settling.put_back(e)
            return None
        if self.on_claimed is not None:
            delay = self.clock.monotonic() - e.since - self.settle_seconds
            self.on_claimed(job, max(0.0, delay))
        return job

    def _with_progress(self, campaign: str, job: Job) -> Job:
        """``job`` with a progress record of its own run, tracked on the board."""
        mono = self.clock.monotonic()
        run = FileRun(
            job.name,
            f"{job.path.parent.name}@{mono:.3f}",
            preview=job.preview,
            started=self._local_now(),
            mono=mono,
        )
        self.board.begin(campaign, run)
        return replace(job, progress=run)

    # ------------------------------------------------------------------ cancelling
    def _apply_cancels(self, folders: list[str]) -> None:
        """Act on the cancel requests (docs/dropfolder.md, "Cancelling a file").

        The file in progress: its signal is set (the upload stops before its next row). A file
        waiting (queued, or a claim to resume): taken out of its queue and ended now without
        being read. A file still arriving: the request waits until it has settled. A request
        naming no file of the folder is removed.
        """
        try:
            requests = find_requests(self.layout, folders)
        except Exception:  # a request must never break the sweep
            log.exception("cannot read the cancel requests")
            return
        for req in requests:
            try:
                self._cancel(req)
            except Exception:  # one request's trouble never ends the loop
                log.exception("cannot act on a cancel request for %s", readable(req.name))

    def _cancel(self, req: CancelRequest) -> None:
        code = self.campaigns.code_for(req.folder) or req.folder
        waiting: Queued | None = None
        with self._cond:
            job = self._running.get(code)
            # a preview uploads nothing: a cancel is for the file dropped to be uploaded
            if job is not None and not job.preview and req.name in (job.name, job.dropped_as):
                if not job.cancel.requested:
                    log.warning("%s: %s is cancelled (%s)", code, readable(job.name), req.text)
                    job.cancel.request(req.text)
                    if job.progress is not None:
                        job.progress.cancelling(req.text)
                self._cancels[job.path.parent] = req
                return
            for item in self.queues.queued_in(code):
                name = item.job.name if isinstance(item, ResumedClaim) else item.path.name
                preview = item.job.preview if isinstance(item, ResumedClaim) else item.preview
                if name != req.name or preview:
                    continue
                if isinstance(item, ResumedClaim):
                    # a claim to resume may hold sent rows: the worker that takes it runs it
                    # with the cancel set (in its turn, its campaign busy), never this thread
                    if not item.job.cancel.requested:
                        item.job.cancel.request(req.text)
                    self._cancels[item.job.path.parent] = req
                    return
                self.queues.take_out(code, item)
                self.settling.forget(item.path)
                waiting = item
                break
            arriving = any(
                e.campaign == code and e.path.name == req.name and not e.preview
                for e in self.settling
            )
            busy = self.queues.busy().get(code) == req.name  # taken, not yet claimed
        if waiting is not None:
            self._cancel_waiting(code, waiting, req)
        elif not arriving and not busy:
            log.warning(
                "cancel request for %s/%s: no such file is waiting or in progress; removed",
                req.folder,
                readable(req.name),
            )
            req.done()

    def _cancel_if_asked(self, folder: str, job: Job) -> None:
        """A file just claimed that a request already names is cancelled before it is read.

        Requests are acted on at each sweep; a file that settled between two sweeps is taken
        at once, and would otherwise be read (and sent) before the next sweep sees a request
        dropped with it.
        """
        try:
            requests = find_requests(self.layout, [folder])
        except Exception:  # a request must never keep a file from its turn
            log.exception("cannot read the cancel requests")
            return
        for req in requests:
            if req.name in (job.name, job.dropped_as):
                log.warning("%s: %s is cancelled (%s)", job.campaign, readable(job.name), req.text)
                job.cancel.request(req.text)
                with self._cond:
                    self._cancels[job.path.parent] = req
                return

    def _cancel_waiting(self, campaign: str, item: Queued, req: CancelRequest) -> None:
        """End a waiting file now as cancelled: the processor does not read it."""
        if isinstance(item, ResumedClaim):
            job: Job | None = item.job
        else:
            job = self._claim(item)  # into the work folder, as for any file
        if job is None:
            return  # changed or gone: looked at again (the request stays)
        claim = job.path.parent
        with self._cond:
            self.queues.claiming(claim)
        try:
            job.cancel.request(req.text)
            log.warning("%s: %s is cancelled before it was read (%s)", campaign, job.name, req.text)
            with self._cond:
                self._cancels[claim] = req
            self._process(job)
        finally:
            with self._cond:
                self.queues.not_claiming(claim)
                self._cond.notify_all()

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
        return self._finish(job, outcome, self.clock.monotonic() - started)

    def _finish(self, job: Job, out: Outcome, seconds: float) -> Finished | None:
        run = job.progress
        if run is not None:
            self.board.end(job.campaign, run, self.clock.monotonic())
        if (
            job.lease is not None
            and out.kind is not FileOutcome.INTERRUPTED
            and not job.lease.check()
        ):  # another node took the claim over: it is that node's to place (docs/cluster.md,
            # "How nodes share the drop folder")
            log.warning("%s: the claim's lease is lost; left to the node that holds it", job.name)
            out = Outcome(FileOutcome.INTERRUPTED, message="the claim's lease was lost")
        try:
            placed = self.claims.finish(job, out)
        except OSError as exc:
            # The inbox (a share?) went away mid-move: the claim stays and is resumed later.
            log.warning("could not finish %s (%s); it will be resumed", job.name, exc)
            self._let_go(job, placed=False)
            return None
        self._let_go(job, placed=placed.final is not None)
        if placed.final is None:
            return None  # interrupted: stays claimed; resumed at the next start
        with self._cond:
            req = self._cancels.pop(job.path.parent, None)
        # back in the inbox (waiting, changed): the request stays on disk for the file's next
        # turn; otherwise the file ended (cancelled, or done before the cancel took)
        if req is not None and out.kind not in (FileOutcome.WAITING, FileOutcome.CHANGED):
            req.done()
        with self._cond:
            if out.kind is FileOutcome.CHANGED and out.retry_after > 0:
                # not again before then, unless it changes
                self.settling.hold_back(placed.final, out.retry_after)
            elif out.kind is FileOutcome.WAITING and out.resume_at is not None:
                self.breaker.pause_until(out.message or "the day's budget is spent", out.resume_at)
            elif out.kind is FileOutcome.WAITING:
                reason = out.message or "the API is not answering"
                self.breaker.trip(reason, longest=out.not_permitted)
            elif out.kind not in (FileOutcome.FAILED, FileOutcome.CANCELLED, FileOutcome.ALREADY):
                # a cancelled or already-done file sent nothing: no news about the API
                self.breaker.success(out.uncertain)
        if out.kind is FileOutcome.CHANGED:
            log.warning("%s went back to the inbox: %s", job.name, out.message)
        elif out.kind is FileOutcome.WAITING and out.resume_at is not None:
            log.warning("paused: %s (%s back in the inbox)", out.message, job.name)
        elif out.kind is FileOutcome.WAITING:
            log.warning("waiting for the API: %s (%s back in the inbox)", out.message, job.name)
        done = Finished(
            campaign=job.campaign,
            name=job.name,
            preview=job.preview,
            kind=out.kind,
            at=self._local_now(),
            final=placed.final,
            receipt=out.receipt,
            rejects=list(out.rejects),
            error=placed.error,
            message=out.message,
            counts=dict(out.counts),
            seconds=seconds,
            run=run.run if run is not None else "",
            run_counts=(
                dict(run.snapshot(self.clock.monotonic(), self._local_now()).counts)
                if run is not None
                else None
            ),
        )
        self._record(done)
        return done

    def _fail_unexpected(self, item: Queued, job: Job | None, exc: Exception) -> Finished | None:
        """Put a file whose handling raised into failed/ with the reason (best effort).

        Under a short name (stamp, hash, extension) if need be, so the move itself cannot fail
        for the name; when even that fails the claim stays for the next start.
        """
        if job is None and isinstance(item, ResumedClaim):
            job = item.job
        if job is not None:
            path, drop, preview, campaign = job.path, job.folder, job.preview, job.campaign
        else:
            assert isinstance(item, SeenFile)
            path, drop, preview, campaign = item.path, item.path.parent, item.preview, item.campaign
        if not os.path.lexists(path):  # it already reached its place: nothing to fail
            return None
        if job is not None and job.lease is not None and not job.lease.check():
            # another node took the claim over (or may by now): it is that node's to place
            log.warning("%s: the claim's lease is lost; left to the node that holds it", job.name)
            self._let_go(job, placed=False)
            return None
        stamp = self.claims.stamp()
        message = (
            f"leadpipe hit an internal error while handling this file ({exc!r}). Rows it "
            "already sent are recorded and are not sent again. Tell whoever runs leadpipe."
        )
        name = safe_name(path.name)
        started = self.clock.monotonic()
        final: Path | None = None
        error: Path | None = None
        short = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:8] + path.suffix[:10]
        for base in (f"{stamp}_{name}", f"{stamp}_{readable(short)}"):
            try:
                final, error = self.layout.to_failed(path, drop, preview, base, message)
                break
            except OSError as failure:
                log.warning("could not move %s to failed/: %s", readable(path.name), failure)
        if final is None:
            if job is not None:
                self._let_go(job, placed=False)
            return None
        if job is not None:
            DropFolder.release(job.path.parent)
            self._let_go(job, placed=True)
        done = Finished.failed(
            campaign,
            name,
            preview=preview,
            at=self._local_now(),
            final=final,
            error=error,
            message=message,
            seconds=self.clock.monotonic() - started,
        )
        self._record(done)
        return done

    def _let_go(self, job: Job, *, placed: bool) -> None:
        """In a cluster: release the claim's lease once its file is placed; else (it stays
        claimed) stop renewing it: this node takes it back at its next sweep, any other node
        once it expired (docs/cluster.md, "How nodes share the drop folder")."""
        if self.leases is None or job.lease is None:
            return
        try:
            if placed:
                self.leases.release(job.path.parent)
            else:
                self.leases.drop(job.path.parent)
        except Exception:  # a lease left behind expires by itself
            log.exception("cannot let go of the lease of %s", job.name)

    def drain(self) -> int:
        """Process everything that can be taken now, in this thread. Returns files finished."""
        n = 0
        while (taken := self.take(timeout=0.0)) is not None:
            if self.run(taken) is not None:
                n += 1
        return n

    def pending(self) -> bool:
        """Anything seen, queued or being processed."""
        with self._cond:
            return bool(self.settling) or bool(self.queues)

    def waiting_for_api(self) -> bool:
        """True while the breaker holds files back."""
        return self.breaker.open

    def _run_probe(self) -> bool:
        assert self.probe is not None
        try:
            self.probe()
        except QuotaExhausted as exc:  # still spent (the tenant's count): until its reset
            with self._cond:
                self.breaker.pause_until(str(exc), exc.resume_at)
            return False
        except (Unavailable, Uncertain) as exc:  # any other answer means the API is back
            with self._cond:
                self.breaker.trip(self.breaker.reason or plain_reason(exc))
            return False
        with self._cond:
            self.breaker.success()
        log.info("the API answers again; taking files")
        return True

    def _requeue(self, item: Queued) -> None:
        with self._cond:
            if isinstance(item, SeenFile):
                self.settling.put_back(item)
            self.queues.add(item.campaign, item)

    def _local_now(self) -> datetime:
        return self.clock.now().astimezone(self.tz)

    def _record(self, done: Finished) -> None:
        with self._cond:
            self.recent.appendleft(done)
            self.totals[done.kind.value] = self.totals.get(done.kind.value, 0) + 1
            self._cond.notify_all()
        if self.on_finished is not None:
            self.on_finished(done)

    # ------------------------------------------------------------------ status
    def status(self) -> IntakeStatus:
        """The drop folder now, taken in one go under the lock; the waiting files' likely start
        and finish (at the measured rate and the day's budget) after it."""
        quota = self._read_quota()
        status = self._status()
        rates = {c: r for c in status.campaigns if (r := self.board.last_rate(c))}
        with self._cond:
            held, until = self.breaker.open, self.breaker.until
        now = self._local_now()
        if held and until is None:  # the API is down: when it is back is not known
            return with_finish_times(status, quota, now, rates, paused=True)
        start = max(now, until.astimezone(now.tzinfo)) if held and until is not None else now
        return with_finish_times(status, quota, start, rates)

    def _read_quota(self) -> QuotaStatus | None:
        if self.quota is None:
            return None
        try:
            return self.quota()
        except Exception:  # the status never fails for the budget's figures
            log.debug("the daily budget is not readable", exc_info=True)
            return None

    def _status(self) -> IntakeStatus:
        now = self.clock.monotonic()
        with self._cond:
            files: dict[str, dict[str, list[FileInFolder]]] = {}

            def place(campaign: str, kind: str) -> list[FileInFolder]:
                return files.setdefault(campaign, {}).setdefault(kind, [])

            for x in self.queues.resumed():
                item = FileInFolder(x.job.name, preview=x.job.preview, resumed=True)
                place(x.campaign, "waiting").append(item)
            for e in sorted(self.settling, key=lambda x: x.order):
                name = readable(e.path.name)
                if e.blocked:
                    place(e.campaign, "ignored").append(
                        FileInFolder(name, e.preview, e.size, e.problem)
                    )
                elif e.queued:
                    place(e.campaign, "waiting").append(
                        FileInFolder(name, e.preview, e.size, e.problem)
                    )
                else:
                    stable = round(max(0.0, e.since + self.settle_seconds - now), 1)
                    place(e.campaign, "settling").append(
                        FileInFolder(name, e.preview, e.size, e.problem, stable_in=stable)
                    )
            busy = self.queues.busy()
            folder_of = {(code or folder): folder for folder, code in self.folders.items()}
            unknown = {folder for folder, code in self.folders.items() if not code}
            names = sorted(set(folder_of) | set(files) | set(busy))
            campaigns = {
                c: CampaignStatus(
                    folder=str(self.inbox / folder_of[c]) if c in folder_of else "",
                    known=c not in unknown or not self.campaigns.known,
                    waiting=tuple(files.get(c, {}).get("waiting", [])),
                    settling=tuple(files.get(c, {}).get("settling", [])),
                    ignored=tuple(files.get(c, {}).get("ignored", [])),
                    in_progress=busy.get(c),
                    progress=(
                        run.snapshot(now, self._local_now())
                        if c in busy and (run := self.board.get(c)) is not None
                        else None
                    ),
                )
                for c in names
            }
            return IntakeStatus(
                inbox=str(self.inbox),
                inbox_ok=self.inbox_ok,
                inbox_problem=self.inbox_problem,
                stray=self.stray,
                waiting_for_api=self.breaker.open,
                api_problem=self.breaker.reason,
                retry_in=round(self.breaker.retry_in(), 1),
                campaigns=campaigns,
                queue_depth=self.queues.depth,
                in_progress=self.queues.in_progress,
                totals=dict(self.totals),
                recent=tuple(RecentFile.of(f) for f in self.recent),
                resume_at=(
                    self.breaker.until.astimezone(self.tz).isoformat(timespec="seconds")
                    if self.breaker.open and self.breaker.until is not None
                    else ""
                ),
            )


def with_finish_times(
    status: IntakeStatus,
    quota: QuotaStatus | None,
    now: datetime,
    rates: dict[str, float] | None = None,
    *,
    paused: bool = False,
) -> IntakeStatus:
    """``status`` with the budget, and each waiting file's row estimate, likely start and finish.

    ``now``: when uploads can go (after a pause until a known time, that time). ``paused``:
    uploads wait for the API to come back, at a time nobody knows: no start or finish is
    guessed, only the row estimates.

    A waiting file starts when the files ahead of it in its campaign are done: the rest of the
    file in progress at its measured rate, then each waiting file at the campaign's rate (the
    one measured, else the minute limit). With a daily budget, no file finishes before the
    budget allows (:func:`pipeline.dropfolder.eta.finish_times`). See docs/dropfolder.md.
    """
    order = [
        (code, pos, f)
        for code, c in sorted(status.campaigns.items())
        for pos, f in enumerate(c.waiting)
    ]
    rows = [None if f.preview else estimate_rows(f.name, f.size) for _, _, f in order]
    budget = finish_times(rows, quota, now) if quota is not None else [None] * len(rows)
    per_minute = quota.per_minute if quota is not None else None
    paced: dict[tuple[str, int], tuple[datetime | None, datetime | None]] = {}
    for code, c in status.campaigns.items():
        p = c.progress
        rate = (p.rate if p is not None else None) or (rates or {}).get(code)
        ahead = p.eta_seconds if p is not None and not p.preview else None
        if p is not None and ahead is None and p.rows_left is not None and not p.preview:
            ahead = p.rows_left / pace_of(rate, per_minute)
        first = now + timedelta(seconds=ahead or 0.0)
        mine = [rows[i] for i, (cc, _, _) in enumerate(order) if cc == code]
        for pos, times in enumerate(queue_times(mine, rate, per_minute, first)):
            paced[(code, pos)] = times
    done: dict[tuple[str, int], FileInFolder] = {}
    for i, (code, pos, f) in enumerate(order):
        start, finish = paced.get((code, pos), (None, None))
        if paused:
            done[(code, pos)] = replace(f, rows_estimate=rows[i], eta="", starts="")
            continue
        capped: datetime | None = budget[i]
        if finish is not None and capped is not None:
            finish = max(finish, capped)
        elif quota is not None and rows[i] is not None:
            finish = capped  # the budget does not allow it (None) or sets the pace
        done[(code, pos)] = replace(
            f,
            rows_estimate=rows[i],
            eta=finish.isoformat(timespec="minutes") if finish is not None else "",
            starts=start.isoformat(timespec="minutes") if start is not None else "",
        )
    campaigns = {
        code: replace(c, waiting=tuple(done[(code, pos)] for pos in range(len(c.waiting))))
        for code, c in status.campaigns.items()
    }
    return replace(status, campaigns=campaigns, quota=quota)
