"""The running service: intake workers, the sweep loop, exports, the status page and file.

:func:`pipeline.service.run.run_service` wires the API, the ledger and the processor, then runs a
:class:`Service` until ``stop`` is set (or, with ``once``, until nothing is waiting).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from pipeline.api import HeroBaseClient
from pipeline.clock import Clock
from pipeline.config import Settings
from pipeline.dropfolder.intake import Intake
from pipeline.dropfolder.jobs import Finished, Job, Outcome, Processor
from pipeline.dropfolder.layout import clear_empty_work
from pipeline.dropfolder.status import RecentFile
from pipeline.dropfolder.watch import Watcher
from pipeline.errors import LeadpipeError, StateError
from pipeline.export.scheduler import ExportScheduler, JobStatus
from pipeline.files import PRIVATE_FILE_MODE, atomic_write_text
from pipeline.ingest.deliver.verify import Verification, Verifier
from pipeline.outcome import FileOutcome
from pipeline.service.apiwatch import ApiWatch
from pipeline.service.health import Heartbeats, WorkerState, assess
from pipeline.service.instance import STATUS_FILE
from pipeline.service.metrics import Metrics
from pipeline.service.snapshot import ApiStatus, ServiceStatus, VerifiedFile
from pipeline.service.status import StatusServer

if TYPE_CHECKING:
    from pipeline.alerts.monitor import Alerting
    from pipeline.cluster.node import ClusterNode

log = logging.getLogger("leadpipe.service")

#: Exit within 10 s of a stop: workers get this long to record their in-flight rows.
STOP_GRACE = 8.0
#: The heartbeat name of the service loop.
LOOP = "leadpipe-loop"
#: Events come in bursts (our own renames too): sweep at most this often on their account.
HINT_GAP = 0.2
#: How often ``[retention]`` is applied (docs/retention.md, "The daily purge").
RETENTION_EVERY = timedelta(days=1)


@dataclass
class ServiceInfo:
    """Where things are, once the service is ready (the CLI prints it)."""

    inbox: Path
    status_url: str | None
    api_url: str
    embedded: bool
    campaign_folders: list[Path] = field(default_factory=list)
    polling: bool = False
    status: Callable[[], ServiceStatus] | None = None  #: live status (tests, benchmarks)
    outbox: Path | None = None
    exports: list[str] = field(default_factory=list)  #: names of the scheduled export jobs


@dataclass
class ServiceResult:
    """How a run ended."""

    processed: int
    failed: int
    waiting: int  #: files left in the inbox because the API is down
    waiting_reason: str = ""
    #: the API's last answer refused the user name or password: a setting to fix (exit 3)
    credentials_refused: bool = False


@dataclass
class ApiConnection:
    """The HeroBase client the service uses, where it points, and whether it is the sandbox."""

    client: HeroBaseClient
    url: str
    embedded: bool
    #: sees every call of ``client`` (attached to its session where the session is made)
    watch: ApiWatch = field(default_factory=ApiWatch)


def _export_scheduler(
    settings: Settings, client: HeroBaseClient, clock: Clock, cluster: ClusterNode | None = None
) -> ExportScheduler | None:
    """The export scheduler, when export jobs are configured (shared by the cluster's nodes
    when this is one: docs/cluster.md, "Exports")."""
    if not settings.exports:
        return None
    shared = None
    if cluster is not None:
        from pipeline.cluster.exports import ClusterExports

        shared = ClusterExports(cluster)
    return ExportScheduler(settings, client, clock=clock, shared=shared)


class _StatusFile:
    """``<state>/status.json``, rewritten atomically when facts change (``leadpipe status``).

    It names the files and their problems: 0600 (its temp folder 0700), whatever the umask.
    """

    def __init__(self, state_dir: Path, clock: Clock) -> None:
        self.path = state_dir / STATUS_FILE
        self.tmp = state_dir / "tmp"
        self.clock = clock
        self._last = ""
        self._at = 0.0

    def write(self, status: ServiceStatus, *, force: bool = False) -> None:
        """Write at most once a second, and only when something besides the time changed
        (or a minute passed: a heartbeat for ``leadpipe status``)."""
        snap = status.to_json()
        facts = json.dumps(
            {k: v for k, v in snap.items() if k not in ("at", "retry_in")}, default=str
        )
        now = self.clock.monotonic()
        if not force and (now - self._at < 1.0 or (facts == self._last and now - self._at < 60)):
            return
        try:
            atomic_write_text(
                self.path,
                json.dumps(snap, indent=2, default=str),
                tmp_dir=self.tmp,
                mode=PRIVATE_FILE_MODE,
            )
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc)
            return
        self._last, self._at = facts, now


def _earlier_recent(state_dir: Path) -> tuple[RecentFile, ...]:
    """The recent-files list of the previous run (from its status file), if readable."""
    try:
        data = json.loads((state_dir / STATUS_FILE).read_text(encoding="utf-8"))
        return ServiceStatus.from_json(data).intake.recent
    except (OSError, ValueError, AttributeError):
        return ()


class Service:
    """``leadpipe run`` once wired: intake workers, the sweep loop, exports, verification, the
    status page and file. :meth:`run` returns when ``stop`` is set (or, ``once``, when nothing
    waits)."""

    def __init__(
        self,
        settings: Settings,
        *,
        once: bool,
        stop: threading.Event,
        clock: Clock,
        processor: Processor,
        campaigns: Callable[[], list[str]],
        probe: Callable[[], object] | None,
        metrics: Metrics,
        api: ApiConnection | None,
        on_ready: Callable[[ServiceInfo], None] | None,
        status_page: bool,
        inbox: Path,
        beats: Heartbeats | None = None,
        verifier: Verifier | None = None,
        alerting: Alerting | None = None,
        retention: Callable[[datetime], object] | None = None,
        cluster: ClusterNode | None = None,
    ) -> None:
        self.settings = settings
        #: this node of a cluster (docs/cluster.md, "Nodes"); None: the only node (SQLite)
        self.cluster = cluster
        leases = None
        if cluster is not None:
            from pipeline.cluster.claims import ClaimLeases

            leases = ClaimLeases(cluster)
        #: applies ``[retention]`` at ``now`` (docs/retention.md); None: not wired
        self.retention = retention
        self._retention_thread: threading.Thread | None = None
        self._next_retention: datetime | None = None
        #: alerts and the digest (docs/alerts.md); None: no target configured
        self.alerting = alerting
        self.beats = beats or Heartbeats(clock)
        #: checks HeroBase for a done file's leads some minutes later (None: not wired)
        self.verifier = verifier
        self._verify_due: list[tuple[float, Path]] = []
        self._verify_thread: threading.Thread | None = None
        self.verified: deque[Verification] = deque(maxlen=50)
        self.workers: list[threading.Thread] = []
        self.once = once
        self.stop = stop
        self.clock = clock
        self.metrics = metrics
        self.api = api
        self.on_ready = on_ready
        self.status_page = status_page
        self.inbox = inbox
        self.hint = threading.Event()
        self.fatal: LeadpipeError | None = None
        self.intake = Intake(
            inbox,
            self._guard(processor),
            campaigns=campaigns,
            settle_seconds=settings.intake.settle_seconds,
            clock=clock,
            trust_ctime=not settings.intake.polling,
            probe=probe,
            on_finished=self._finished,
            on_claimed=lambda job, delay: metrics.pickup_seconds.observe(delay),
            timezone=settings.timezone,
            quota=api.client.limiter.quota if api is not None else None,
            leases=leases,
        )
        self.exports: ExportScheduler | None = None
        self.export_status: tuple[JobStatus, ...] = ()
        self._export_thread: threading.Thread | None = None
        self._next_export: datetime | None = None
        self.status_file = _StatusFile(settings.paths.state, clock)
        self.earlier = _earlier_recent(settings.paths.state)
        self.watcher = Watcher(inbox, self.hint, polling=settings.intake.polling)

    def _guard(self, processor: Processor) -> Processor:
        """Turn a StateError (ledger unusable, folder unwritable) into a stop of the service."""

        def guarded(job: Job) -> Outcome:
            try:
                return processor(job)
            except StateError as exc:
                log.error("stopping: %s", exc)
                self.fatal = exc
                self.stop.set()
                return Outcome(FileOutcome.INTERRUPTED, message=str(exc))

        return guarded

    def _finished(self, done: Finished) -> None:
        delay = self.settings.intake.verify_after_minutes * 60
        sent = done.counts.get("accepted", 0) + done.counts.get("uncertain", 0)
        if (
            self.verifier is not None
            and delay > 0
            and done.kind is FileOutcome.PROCESSED
            and not done.preview
            and sent > 0
            and done.final is not None
        ):
            self._verify_due.append((self.clock.monotonic() + delay, done.final))
        self._count_finished(done)
        if self.alerting is not None:
            self.alerting.finished(done)

    def _count_finished(self, done: Finished) -> None:
        outcome: str = done.kind.value
        if done.kind is FileOutcome.PROCESSED and done.rejects:
            outcome = "processed_with_rejects"
        # a preview uploads nothing: its rows are not counted as delivered
        self.metrics.file_finished(
            outcome,
            {} if done.preview else done.counts,
            done.seconds,
            run=done.run,  # rows counted while it was in progress are not counted again
            run_counts=None if done.preview else done.run_counts,
            ended=done.kind.done,  # a file read again counts its rejected rows then
        )
        log.info(
            "%s: %s -> %s%s",
            done.campaign,
            done.name,
            done.kind.value,
            f" ({done.message})" if done.message and done.kind is not FileOutcome.PROCESSED else "",
        )

    def status(self, *, running: bool = True) -> ServiceStatus:
        """The service now, for the status page, the status file and ``leadpipe status``."""
        seen = self.api.watch.seen() if self.api else None
        tz = ZoneInfo(self.settings.timezone) if self.settings.timezone else None
        return ServiceStatus(
            intake=self.intake.status(),
            api=ApiStatus(
                url=self.api.url if self.api else "",
                embedded=bool(self.api and self.api.embedded),
                problem=seen.problem if seen else "",
                since=seen.since.astimezone(tz).isoformat(timespec="seconds")
                if seen and seen.since
                else "",
                checked=bool(seen and (seen.problem or seen.status is not None)),
            ),
            watch=self.watcher.mode,
            exports=self.export_status,
            verified=tuple(VerifiedFile.of(v) for v in list(self.verified)),
            problems=tuple(self.health()),
            alerts=self.alerting.active() if self.alerting is not None else (),
            at=self.clock.now().astimezone(tz).isoformat(timespec="seconds"),
            pid=os.getpid(),
            running=running,
            node=self.cluster.name if self.cluster is not None else "",
            nodes=self.cluster.nodes() if self.cluster is not None else (),
        ).with_earlier(self.earlier)  # the recent-files list survives restarts

    def health(self) -> list[str]:
        """What keeps the service from doing its work, in plain words (empty: healthy)."""
        if self.stop.is_set() or not self.workers:
            return []  # stopping, or not started yet
        # an idle worker beats four times a second: a quiet one is busy with a file
        states = [
            WorkerState(t.name, t.is_alive(), (quiet := self.beats.quiet_for(t.name)) > 1.0, quiet)
            for t in self.workers
        ]
        s = self.settings.intake
        found = assess(
            states,
            self.beats.quiet_for(LOOP),
            loop_limit=max(60.0, 3 * s.sweep_seconds),
            stuck_after=s.stuck_seconds,
        )
        return found + self._cluster_health()

    def _cluster_health(self) -> list[str]:
        """In a cluster: a heartbeat that has not reached the database (docs/cluster.md, "What
        to monitor")."""
        node = self.cluster
        if node is None or node.last_beat is None:
            return []
        quiet = node.monotonic() - node.last_beat
        if quiet < 2 * node.heartbeat_seconds + node.db.timeout:
            return []
        return [
            f"this node ({node.name}) has not reached the cluster's database for {quiet:.0f} s: "
            "it sends nothing for files whose lease it cannot renew, and after "
            f"{node.lease_seconds:g} s other nodes take them over"
        ]

    def run(self) -> ServiceResult:
        s = self.settings.intake
        workers = self.workers
        server: StatusServer | None = None
        clear_empty_work(self.inbox)
        try:
            if self.api is not None and self.api.embedded:
                self._prepare_demo_folders()
            if self.api is not None:
                self.exports = _export_scheduler(
                    self.settings, self.api.client, self.clock, self.cluster
                )
            if self.status_page:
                server = StatusServer(
                    self.settings.status.host,
                    self.settings.status.port,
                    self.status,
                    self.metrics,
                    self.inbox,
                    allowed_hosts=self.settings.status.allowed_hosts,
                ).start()
                self.metrics.follow(self.intake.status)
            if self.alerting is not None:  # before the first status file: it tells a crash
                self.alerting.start(server.url if server is not None else "")
            self.watcher.start()
            self.intake.sweep()  # start-up: files already there, claims to resume
            self.watcher.ensure(self.inbox / f for f in self.intake.folders)
            for i in range(max(1, self.settings.intake.campaign_parallelism)):
                # daemon: a file still reading past the stop grace must not hold the exit (the
                # ledger is consistent at every commit; the claim is resumed next time)
                t = threading.Thread(target=self._work, name=f"leadpipe-intake-{i}", daemon=True)
                t.start()
                workers.append(t)
            if self.on_ready is not None:
                self.on_ready(
                    ServiceInfo(
                        inbox=self.inbox,
                        status_url=server.url if server else None,
                        api_url=self.api.url if self.api else "",
                        embedded=bool(self.api and self.api.embedded),
                        campaign_folders=sorted(
                            self.inbox / f for f, c in self.intake.folders.items() if c
                        ),
                        polling=s.polling,
                        status=self.status,
                        outbox=self.settings.paths.outbox,
                        exports=[j.name for j in self.settings.exports],
                    )
                )
            self._loop()
        finally:
            self.stop.set()
            self.intake.stop_taking()
            deadline = self.clock.monotonic() + STOP_GRACE
            for t in workers:
                t.join(max(0.1, deadline - self.clock.monotonic()))
            if any(t.is_alive() for t in workers):
                log.warning("a file was still being read at the stop; it is resumed next time")
            if self._export_thread is not None:
                self._export_thread.join(max(0.1, deadline - self.clock.monotonic()))
            if self._retention_thread is not None:
                self._retention_thread.join(max(0.1, deadline - self.clock.monotonic()))
            self.watcher.stop()
            if server is not None:
                server.stop()
            if self.alerting is not None:  # a target that hangs never holds the stop
                self.alerting.stop(min(1.0, max(0.1, deadline - self.clock.monotonic())))
            self.status_file.write(self.status(running=False), force=True)
        if self.fatal is not None:
            raise self.fatal
        if self.intake.waiting_for_api():
            self.intake.sweep()  # count the files put back into the inbox
        now = self.intake.status()
        waiting = now.waiting + now.arriving
        placed = (  # every file whose original reached processed/ (a preview's: beside it)
            FileOutcome.PROCESSED,
            FileOutcome.PREVIEWED,
            FileOutcome.ALREADY,
            FileOutcome.STOPPED,
            FileOutcome.CANCELLED,
        )
        return ServiceResult(
            processed=sum(now.totals.get(kind, 0) for kind in placed),
            failed=now.totals.get(FileOutcome.FAILED, 0),
            waiting=waiting if self.intake.waiting_for_api() else 0,
            waiting_reason=self.intake.breaker.reason,
            credentials_refused=bool(self.api and self.api.watch.seen().credentials_refused),
        )

    def _work(self) -> None:
        while not self.stop.is_set():
            self.beats.beat()
            try:
                taken = self.intake.take(timeout=0.25)
                if taken is not None:
                    self.beats.beat()
                    self.intake.run(taken)
            except Exception:  # a worker outlives whatever one file does
                log.exception("unexpected error in an intake worker; it carries on")
                self.stop.wait(1.0)

    def _loop(self) -> None:
        s = self.settings.intake
        next_sweep = self.clock.monotonic() + s.sweep_seconds
        last_sweep = 0.0
        while not self.stop.is_set():
            self.beats.beat(LOOP)
            try:
                now = self.clock.monotonic()
                hinted = self.hint.is_set() and now - last_sweep >= HINT_GAP
                if hinted or now >= next_sweep:
                    self.hint.clear()
                    last_sweep = now
                    if now >= next_sweep:
                        next_sweep = now + s.sweep_seconds
                    self.intake.sweep()
                    self.watcher.ensure(self.inbox / f for f in self.intake.folders)
                deadline = self.intake.next_deadline()
                if deadline is not None and now >= deadline:
                    self.intake.check_settling()
                    deadline = self.intake.next_deadline()
                self._tick_exports()
                self._tick_verify()
                self._tick_retention()
                now_status = self.status()
                self.status_file.write(now_status)
                if self.alerting is not None:
                    self.alerting.evaluate(now_status)
                if self.once and self._once_done():
                    return
                soon = now + (HINT_GAP if self.hint.is_set() else 0.5)  # a hint: debouncing
                wake = min(t for t in (next_sweep, deadline, soon) if t is not None)
                pause = max(0.01, wake - self.clock.monotonic())
            except StateError:
                raise  # the state cannot be trusted: stop, loudly
            except Exception:  # a share hiccup or a surprise: the loop goes on
                log.exception("the service loop hit an error; it carries on")
                pause = 1.0
            # a pending hint would end hint.wait() at once: debounce on the stop event instead
            (self.stop if self.hint.is_set() else self.hint).wait(pause)

    def _once_done(self) -> bool:
        if self._exports_busy():
            return False
        if self.intake.waiting_for_api():
            return True
        now = self.intake.status()
        if not now.inbox_ok:
            return True
        return not (now.in_progress or now.queue_depth or now.settling_without_problem)

    def _tick_exports(self) -> None:
        """Run due exports in a thread: at start-up (catch-up) and at each next cron time."""
        exports = self.exports
        if exports is None:
            return
        if self._export_thread is not None and self._export_thread.is_alive():
            return
        now = self.clock.now()
        try:
            self.export_status = tuple(exports.status(now))
        except Exception as exc:  # the status of exports never stops intake
            log.warning("export status unavailable: %s", exc)
        if self._next_export is not None and now < self._next_export:
            return
        self._next_export = now + timedelta(days=3650)  # set properly when the run ends

        def run() -> None:
            try:
                exports.run_due(self.clock.now())
            except Exception:
                log.exception("export run failed")
            try:
                nxt = exports.next_wakeup(self.clock.now())
            except Exception:
                nxt = None
            self._next_export = nxt or self.clock.now() + timedelta(minutes=5)

        self._export_thread = threading.Thread(target=run, name="leadpipe-exports", daemon=True)
        self._export_thread.start()

    def _tick_verify(self) -> None:
        """Run the verification passes that are due, one at a time, in a thread."""
        if self.verifier is None or not self._verify_due:
            return
        if self._verify_thread is not None and self._verify_thread.is_alive():
            return
        now = self.clock.monotonic()
        due = [d for d in self._verify_due if d[0] <= now]
        if not due:
            return
        item = min(due)
        self._verify_due.remove(item)
        verifier = self.verifier

        def run() -> None:
            try:
                result = verifier(item[1])
            except Exception as exc:  # a verification never stops intake
                log.warning("could not verify %s: %s", item[1].name, exc)
                return
            self.verified.appendleft(result)
            if result.duplicates or result.blind:
                log.warning("%s: %s", item[1].name, result.message)

        self._verify_thread = threading.Thread(target=run, name="leadpipe-verify", daemon=True)
        self._verify_thread.start()

    def _tick_retention(self) -> None:
        """Apply ``[retention]`` at start-up and then once a day, in a thread: a purge never
        holds up intake, and its errors are logged (docs/retention.md, "The daily purge")."""
        apply = self.retention
        if apply is None:
            return
        if self._retention_thread is not None and self._retention_thread.is_alive():
            return
        now = self.clock.now()
        if self._next_retention is not None and now < self._next_retention:
            return
        self._next_retention = now + RETENTION_EVERY

        def run() -> None:
            try:
                apply(self.clock.now())
            except Exception:  # a purge never stops the service; tried again tomorrow
                log.exception("retention: the daily purge failed")

        self._retention_thread = threading.Thread(
            target=run, name="leadpipe-retention", daemon=True
        )
        self._retention_thread.start()

    def _exports_busy(self) -> bool:
        return self._export_thread is not None and self._export_thread.is_alive()

    def _prepare_demo_folders(self) -> None:
        assert self.api is not None
        try:
            codes = [c.code for c in self.api.client.campaigns()]
        except LeadpipeError as exc:
            log.warning("cannot list the demo campaigns: %s", exc)
            return
        for code in codes:
            (self.inbox / code).mkdir(parents=True, exist_ok=True)
