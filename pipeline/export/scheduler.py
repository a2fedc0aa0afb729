"""Export jobs over time: durable state per job, one run at a time, catch-up, status.

State lives in ``<state>/exports/<job>.json`` (one small JSON file per job, written
atomically): the watermark (end of the last successful window, a tenant-local date), the last
success and the last error. The watermark moves only after a window's file and manifest are
renamed into place, so a crash at any moment leaves it pointing at a complete file.

Never two runs of one job at once: an in-process lock plus an OS file lock on
``<state>/exports/<job>.lock`` (so a second process, e.g. ``leadpipe export`` next to
``leadpipe run``, cannot run it either).

In a cluster (several ``leadpipe run`` nodes, docs/cluster.md, "Exports"), a run of a job also
holds the job's lease (another node running it: :class:`JobBusy`, looked at again soon), each
window is written under its own lease, and each window written is recorded in the database: a
window recorded there, or whose file and manifest are already in the outbox, is not written
again, and the watermark follows the windows recorded (so ``since-last`` windows agree across
nodes). The coordination is :class:`SharedExports`; without one, a job is this process's alone.

Failures stay inside their job: API down (``Unavailable``/``Uncertain``) retries with
exponential backoff; a missing search or right, or a bad job setting, is a clear error in the
status and the log, retried at a slow pace; other jobs run on regardless.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from pipeline.clock import Clock, SystemClock
from pipeline.config import ExportJob, Settings
from pipeline.crashpoints import crash_point
from pipeline.errors import (
    Action,
    ConfigError,
    ConfigProblem,
    LeadpipeError,
    NotFound,
    NotPermitted,
    StateError,
    exit_code,
)
from pipeline.export.state import JobBusy, JobState, StateStore
from pipeline.export.windows import (
    ScheduleError,
    Window,
    WindowRule,
    check_cron,
    local_date,
    next_run,
    parse_day,
    parse_window,
    windows_due,
    zone,
)
from pipeline.export.writer import (
    ExportClient,
    ExportResult,
    apply_retention,
    destination,
    export_window,
    manifest_path,
)

log = logging.getLogger("leadpipe.export")

#: Backoff while the API is down: 1 min, 2, 4, ... capped at 30 min.
BACKOFF_FIRST = 60.0
BACKOFF_CAP = 1800.0
#: A job skipped because another run held its lock is looked at again after this long.
BUSY_RETRY = 60.0
#: Errors a person must fix (a search, a setting) are retried this often.
FIX_RETRY = 3600.0


@dataclass
class JobStatus:
    """One line of the status page / ``leadpipe exports``."""

    name: str
    search: str
    schedule: str
    window: str
    format: str
    state: str  # "ok" | "never run" | "waiting for the API" | "error" | "running"
    watermark: str | None
    last_success: str | None
    last_rows: int | None
    last_file: str | None
    next_run: str | None
    retry_at: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobStatus:
        """Read one back (``leadpipe status`` reads the service's status file)."""

        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        rows = data.get("last_rows")
        return cls(
            name=text("name") or "",
            search=text("search") or "",
            schedule=text("schedule") or "",
            window=text("window") or "",
            format=text("format") or "",
            state=text("state") or "",
            watermark=text("watermark"),
            last_success=text("last_success"),
            last_rows=rows if isinstance(rows, int) else None,
            last_file=text("last_file"),
            next_run=text("next_run"),
            retry_at=text("retry_at"),
            message=text("message") or "",
        )


class SharedExports(Protocol):
    """What the scheduler asks of a cluster (docs/cluster.md, "Exports").

    Database trouble is raised as :class:`JobBusy`: the job is looked at again soon.
    """

    def job(self, name: str) -> AbstractContextManager[Callable[[], bool]]:
        """Hold the job's lease while in the block (yields a check "still this node's?");
        JobBusy when another node runs the job."""
        ...

    def window(
        self, name: str, window: Window
    ) -> AbstractContextManager[Callable[[], bool] | None]:
        """Hold the window's lease while in the block: yields a check "still this node's?"
        (asked before the file is renamed into place), or None: another node has it."""
        ...

    def written_until(self, name: str) -> date | None:
        """The end (exclusive) of the latest window recorded as written for the job, or the
        watermark adopted for it (:meth:`adopt`), whichever is later."""
        ...

    def adopt(self, name: str, watermark: date) -> None:
        """Record that the job was exported up to ``watermark`` (exclusive) before the install
        became a cluster: every node's :meth:`written_until` is at least that (idempotent)."""
        ...

    def written(self, name: str, window: Window) -> bool:
        """True when the window is recorded as written (by any node)."""
        ...

    def record(self, name: str, window: Window, path: Path, rows: int | None) -> None:
        """Record the window as written (idempotent)."""
        ...


def job_rule(job: ExportJob, source: str) -> tuple[WindowRule, date | None]:
    """The job's window rule and start day; ConfigError naming the setting that is wrong."""
    key = f"exports.{job.name}"
    try:
        key = f"exports.{job.name}.schedule"
        check_cron(job.schedule)
        key = f"exports.{job.name}.window"
        rule = parse_window(job.window)
        key = f"exports.{job.name}.start"
        start = parse_day(job.start, "start") if job.start else None
    except ScheduleError as exc:
        raise ConfigError([ConfigProblem(key, source, str(exc))]) from None
    return rule, start


def check_jobs(settings: Settings) -> None:
    """Raise one ConfigError listing every export job setting a run would refuse (schedule,
    window, start): ``leadpipe config`` says so before the night the job runs."""
    problems: list[ConfigProblem] = []
    for job in settings.exports:
        try:
            job_rule(job, settings.source)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


class ExportScheduler:
    """Runs every configured export job when due; the service calls :meth:`run_due`."""

    def __init__(
        self,
        settings: Settings,
        client: ExportClient | None,
        *,
        clock: Clock | None = None,
        jobs: Sequence[ExportJob] | None = None,
        page_size: int = 1000,
        shared: SharedExports | None = None,
    ) -> None:
        self.settings = settings
        #: a cluster's coordination of exports (None: this process's jobs are its own)
        self.shared = shared
        self.client = client
        self.clock = clock or SystemClock()
        self.jobs = {j.name: j for j in (settings.exports if jobs is None else jobs)}
        self.tz = zone(settings.timezone)
        self.store = StateStore(settings.paths.state / "exports")
        self.page_size = page_size
        self._running: set[str] = set()
        self._problems: dict[str, str] = {}
        self._logged: set[str] = set()
        self._soon: dict[str, datetime] = {}
        #: jobs stopped by corrupt state: (the state file's size and mtime then, the reason);
        #: such a job runs again once the file changes (fixed or deleted)
        self._broken: dict[str, tuple[tuple[int, int] | None, str]] = {}
        for job in self.jobs.values():
            try:
                self._rule(job)
            except ConfigError as exc:
                self._problems[job.name] = "; ".join(f"{p.key}: {p.message}" for p in exc.problems)

    def _rule(self, job: ExportJob) -> tuple[WindowRule, date | None]:
        return job_rule(job, self.settings.source)

    def job(self, name: str) -> ExportJob:
        """The job called ``name`` (ConfigError naming the known ones)."""
        try:
            return self.jobs[name]
        except KeyError:
            known = ", ".join(sorted(self.jobs)) or "none configured"
            raise ConfigError(
                [
                    ConfigProblem(
                        "exports", self.settings.source, f"no job called {name!r} (known: {known})"
                    )
                ]
            ) from None

    # -- running --------------------------------------------------------------------------

    def run_due(self, now: datetime | None = None) -> list[ExportResult]:
        """Run every job that is due at ``now``: catch-up of all missed windows, in order."""
        now = now or self.clock.now()
        results: list[ExportResult] = []
        for name in self.jobs:
            if name in self._problems:
                if name not in self._logged:
                    self._logged.add(name)
                    log.error("export %s cannot run: %s", name, self._problems[name])
                continue
            self._soon.pop(name, None)
            broken = self._broken.get(name)
            if broken is not None and broken[0] == self._state_stamp(name):
                continue  # still the same broken state: nothing to retry until it is fixed
            self._broken.pop(name, None)
            try:
                state = self.store.load(name)
                if state.retry_at and datetime.fromisoformat(state.retry_at) > now:
                    continue
                results.extend(self._run(name, now, force=False))
            except JobBusy as exc:  # another run holds the lock: look again soon
                self._soon[name] = now + timedelta(seconds=BUSY_RETRY)
                log.warning("export %s skipped: %s", name, exc)
            except StateError as exc:  # corrupt or unreadable state: stop this job, loudly
                self._broken[name] = (self._state_stamp(name), str(exc))
                log.error("export %s stopped until its state is fixed: %s", name, exc)
            except Exception as exc:  # one job's surprise never stops the others
                log.exception("export %s failed unexpectedly: %s", name, type(exc).__name__)
        return results

    def run_job(
        self,
        name: str,
        now: datetime | None = None,
        *,
        window: Window | None = None,
        dry_run: bool = False,
    ) -> list[ExportResult]:
        """Run one job now (``leadpipe export``): what is due as if scheduled now, or ``window``.

        An explicit ``window`` is a re-export: it never moves the watermark.
        Raises ConfigError / StateError (bad job, lock held).
        """
        job = self.job(name)
        if name in self._problems:
            self._rule(job)  # raises the ConfigError again, with its key
        now = now or self.clock.now()
        if window is not None:
            if dry_run:
                return [ExportResult(name, window, "dry-run", path=self._dest(job, window))]
            with self.store.lock(name):
                return [self._export(job, window, now)]
        return self._run(name, now, force=True, dry_run=dry_run)

    def _dest(self, job: ExportJob, window: Window) -> Path:
        return destination(job, window, self.settings.paths.outbox)

    def planned(
        self, name: str, now: datetime | None = None, *, force: bool = False
    ) -> list[Window]:
        """The windows the job would export at ``now`` (no side effects)."""
        job = self.job(name)
        rule, start = self._rule(job)
        state = self.store.load(name)
        return windows_due(
            rule,
            job.schedule,
            self.tz,
            now or self.clock.now(),
            state.watermark_date,
            start=start,
            force=force,
        )

    def _run(
        self, name: str, now: datetime, *, force: bool, dry_run: bool = False
    ) -> list[ExportResult]:
        job = self.jobs[name]
        if dry_run:
            return [
                ExportResult(name, w, "dry-run", path=self._dest(job, w))
                for w in self.planned(name, now, force=force)
            ]
        results: list[ExportResult] = []
        held = self.shared.job(name) if self.shared is not None else contextlib.nullcontext(_always)
        with self.store.lock(name), held as ours:
            self._running.add(name)
            try:
                self._follow_shared(name)
                for window in self.planned(name, now, force=force):
                    if not ours():  # stalled past the job's lease: another node has it now
                        raise JobBusy(f"export {name!r}: the job's lease was lost to another node")
                    if self._written_elsewhere(job, window):
                        continue
                    with self._window(name, window) as mine:
                        if mine is None:  # another node writes it: look again soon
                            self._soon[name] = now + timedelta(seconds=BUSY_RETRY)
                            break
                        if self._written_meanwhile(name, window):
                            continue  # written, recorded and released since the first look
                        result = self._export(job, window, now, still_mine=mine)
                        if result.status == "written" and self.shared is not None:
                            assert result.path is not None
                            self.shared.record(name, window, result.path, result.rows)
                    results.append(result)
                    state = self.store.load(name)
                    if result.status != "written":
                        self._record_failure(state, result, now)
                        break
                    crash_point("export_before_state")
                    self._record_success(state, result, now)
                if results and results[-1].status == "written" and job.keep_days > 0:
                    folder = results[-1].path.parent if results[-1].path else None
                    if folder is not None:
                        for gone in apply_retention(
                            folder, name, job.keep_days, local_date(now, self.tz)
                        ):
                            log.info("export %s: retention removed %s", name, gone.name)
            finally:
                self._running.discard(name)
        return results

    def _window(
        self, name: str, window: Window
    ) -> AbstractContextManager[Callable[[], bool] | None]:
        if self.shared is None:
            return contextlib.nullcontext(_always)
        return self.shared.window(name, window)

    def _follow_shared(self, name: str) -> None:
        """In a cluster: move the watermark up to the windows other nodes wrote (the database's
        record first), and record the single-node watermark this node has, if later."""
        if self.shared is None:
            return
        end = self.shared.written_until(name)
        before = self._single_node_watermark(name)
        if before is not None and (end is None or before > end):
            # in the database, so a node on another machine (its own [paths] state) follows it
            # too and does not export again windows `keep_days` removed (docs/cluster.md,
            # "Exports")
            log.info("export %s: the single-node watermark %s is the cluster's now", name, before)
            self.shared.adopt(name, before)
            end = before
        state = self.store.load(name)
        if end is not None and (state.watermark_date is None or end > state.watermark_date):
            log.info("export %s: windows up to %s were written by the cluster", name, end)
            state.watermark = end.isoformat()
            self.store.save(state)

    def _single_node_watermark(self, name: str) -> date | None:
        """The watermark the job had before this install became a cluster (``exports/<job>.json``
        in the configured ``[paths] state``, on the former single node's disk), so windows long
        deleted by ``keep_days`` are not exported again (docs/cluster.md, "Exports")."""
        shared = self.settings.cluster.shared_state
        if shared is None or shared / "exports" == self.store.root:
            return None
        try:
            return StateStore(shared / "exports").load(name).watermark_date
        except (StateError, ValueError) as exc:
            log.warning("export %s: the single-node state is not readable: %s", name, exc)
            return None

    def _written_meanwhile(self, name: str, window: Window) -> bool:
        """In a cluster, the window's lease held: True when another node wrote and recorded the
        window (and let its lease go) between the first look and this lease (docs/cluster.md,
        "Exports"); the watermark then passes it."""
        if self.shared is None or not self.shared.written(name, window):
            return False
        log.info("export %s: %s was written by another node meanwhile; not again", name, window)
        state = self.store.load(name)
        if state.watermark_date is None or window.end > state.watermark_date:
            state.watermark = window.end.isoformat()
            self.store.save(state)
        return True

    def _written_elsewhere(self, job: ExportJob, window: Window) -> bool:
        """In a cluster: the window is recorded as written, or its file and manifest are in the
        outbox already (then recorded now): not written again, the watermark moves past it."""
        if self.shared is None:
            return False
        dest = self._dest(job, window)
        done = self.shared.written(job.name, window)
        if not done and dest.is_file() and manifest_path(dest).is_file():
            self.shared.record(job.name, window, dest, None)
            done = True
        if done:
            log.info("export %s: %s was written already; not again", job.name, window)
            state = self.store.load(job.name)
            if state.watermark_date is None or window.end > state.watermark_date:
                state.watermark = window.end.isoformat()
                self.store.save(state)
        return done

    def _export(
        self,
        job: ExportJob,
        window: Window,
        now: datetime,
        *,
        still_mine: Callable[[], bool] | None = None,
    ) -> ExportResult:
        if self.client is None:
            raise StateError("this export scheduler has no API client (status/dry-run only)")
        try:
            result = export_window(
                job,
                window,
                client=self.client,
                outbox=self.settings.paths.outbox,
                timezone=self.settings.timezone,
                now=self.clock.now(),
                page_size=self.page_size,
                still_mine=still_mine,
            )
        except JobBusy:
            raise  # the window's lease was lost: another node writes it (looked at again soon)
        except (LeadpipeError, OSError) as exc:
            kind, message = self._explain(job, exc)
            return ExportResult(
                job.name, window, "failed", error=message, error_kind=kind, exit_code=exit_code(exc)
            )
        except Exception as exc:  # a surprise: keep it in this job, say what it was
            log.exception("export %s: window %s failed unexpectedly", job.name, window)
            message = f"unexpected {type(exc).__name__}: {exc}"
            return ExportResult(
                job.name, window, "failed", error=message, error_kind=Action.STOP, exit_code=1
            )
        log.info("export %s: %s: %d row(s) -> %s", job.name, window, result.rows, result.path)
        return result

    def _explain(self, job: ExportJob, exc: Exception) -> tuple[Action, str]:
        """What to do about a failed window (the error's own :class:`Action`), in words."""
        if isinstance(exc, NotFound):
            return exc.action, (
                f"search {job.search!r} was not found by the API ({exc}); "
                "check the 'search' of this [[exports]] job against `leadpipe` searches"
            )
        if isinstance(exc, NotPermitted):
            return exc.action, (
                f"the API account may not export search {job.search!r} ({exc}); "
                "it needs the right 'Leads: GET' and access to the search's project"
            )
        if isinstance(exc, LeadpipeError):
            return exc.action, str(exc)
        return Action.STOP, f"cannot write the export file ({exc}); check the outbox folder"

    def _record_success(self, state: JobState, result: ExportResult, now: datetime) -> None:
        end = result.window.end
        if state.watermark_date is None or end > state.watermark_date:
            state.watermark = end.isoformat()
        state.last_success = _iso(now)
        state.last_file = str(result.path) if result.path else None
        state.last_rows = result.rows
        state.last_error = state.error_kind = state.last_error_at = state.retry_at = None
        state.failures = 0
        self.store.save(state)

    def _record_failure(self, state: JobState, result: ExportResult, now: datetime) -> None:
        kind, message = result.error_kind, result.error
        state.failures += 1
        if kind is Action.FIX_CONFIG:
            delay = FIX_RETRY  # nothing changes until a person fixes it
        else:  # the API back, rights granted, a folder writable again: soon, then less often
            delay = min(BACKOFF_FIRST * 2 ** (state.failures - 1), BACKOFF_CAP)
        retry = now + timedelta(seconds=delay)
        state.last_error = message
        state.error_kind = kind
        state.last_error_at = _iso(now)
        state.retry_at = _iso(retry)
        self.store.save(state)
        mark = state.watermark or "none yet"
        log.error(
            "export %s: window %s failed: %s; retry at %s; the watermark stays at %s",
            state.name,
            result.window,
            message,
            retry.astimezone(self.tz).isoformat(),
            mark,
        )

    # -- reporting ------------------------------------------------------------------------

    def next_wakeup(self, now: datetime | None = None) -> datetime | None:
        """The earliest instant any job may need to run (next cron time or retry time)."""
        now = now or self.clock.now()
        times: list[datetime] = []
        for name, job in self.jobs.items():
            if name in self._problems:
                continue
            try:
                state = self.store.load(name)
            except StateError:
                continue
            times.append(next_run(job.schedule, now, self.tz))
            soon = self._soon.get(name)
            if soon is not None:
                times.append(max(soon, now))
            if state.retry_at:
                times.append(max(datetime.fromisoformat(state.retry_at), now))
        return min(times) if times else None

    def status(self, now: datetime | None = None) -> list[JobStatus]:
        """Every job's state for the status page and ``leadpipe exports``."""
        now = now or self.clock.now()
        out: list[JobStatus] = []
        for name, job in self.jobs.items():
            nxt: str | None = None
            state = JobState(name)
            if name in self._problems:
                kind, message = "error", self._problems[name]
            else:
                try:
                    state = self.store.load(name)
                    nxt = next_run(job.schedule, now, self.tz).astimezone(self.tz).isoformat()
                    kind, message = self._describe(state)
                except StateError as exc:
                    kind, message = "error", str(exc)
            if name in self._running:
                kind = "running"
            out.append(
                JobStatus(
                    name=name,
                    search=job.search,
                    schedule=job.schedule,
                    window=job.window,
                    format=job.format,
                    state=kind,
                    watermark=state.watermark,
                    last_success=state.last_success,
                    last_rows=state.last_rows,
                    last_file=state.last_file,
                    next_run=nxt,
                    retry_at=state.retry_at,
                    message=message,
                )
            )
        return out

    def _state_stamp(self, name: str) -> tuple[int, int] | None:
        try:
            st = self.store.path(name).stat()
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns)

    def _describe(self, state: JobState) -> tuple[str, str]:
        if state.last_error:
            retry = state.retry_at or "?"
            mark = state.watermark or "none yet"
            if state.error_kind is Action.RETRY_LATER:
                return "waiting for the API", (
                    f"{state.last_error}; retrying at {retry} "
                    f"(attempt {state.failures}); exported up to {mark}"
                )
            return "error", f"{state.last_error}; next attempt at {retry}"
        if state.watermark is None:
            return "never run", "no export written yet"
        return "ok", f"exported up to {state.watermark} (exclusive)"


def _always() -> bool:
    return True


DEMO_EXPORT_DAYS = 7
#: The demo export runs daily at this local hour.
DEMO_EXPORT_HOUR = 2


def demo_exports(settings: Settings, clock: Clock) -> Settings:
    """With the embedded sandbox and no ``[[exports]]``, add a nightly demo export.

    It exports the demo tenant's ``daily_outcomes`` search (simulated call outcomes) one file a
    day into ``outbox/demo_daily_outcomes/``, catching up the last week at start-up, so the
    whole cycle runs on a fresh machine. A configured job or a real API disables it.
    """
    if not settings.api.embedded or settings.exports:
        return settings
    local = clock.now().astimezone(zone(settings.timezone))
    # the day of the last 02:00 run: before 02:00 that is yesterday, and a start counted from
    # today would give one file less (a week is a week at any hour)
    last_run = local.date() - timedelta(days=1 if local.hour < DEMO_EXPORT_HOUR else 0)
    job = ExportJob(
        name="demo_daily_outcomes",
        search="daily_outcomes",
        schedule=f"0 {DEMO_EXPORT_HOUR} * * *",
        window="previous-day",
        start=(last_run - timedelta(days=DEMO_EXPORT_DAYS)).isoformat(),
        keep_days=30,
    )
    return replace(settings, exports=[job])
