"""The monitor: turns the service's facts into alerts, and :class:`Alerting`, what the service
starts and stops (docs/alerts.md).

Two inputs, both typed: each finished file (:meth:`Monitor.finished`, from the intake's
``on_finished`` hook: one-off events, arrivals, the digest's figures) and the service's status
(:meth:`Monitor.evaluate` with a :class:`~pipeline.service.snapshot.ServiceStatus`, from the
service loop: conditions). A condition whose facts are unknown (no API call yet, no budget
known) is neither raised nor cleared. Nothing here raises into the service: an error is
logged and the service carries on.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path

from pipeline.alerts.absence import last_deadline, missed
from pipeline.alerts.conditions import UNDELIVERED_FILE, ConditionStore, StateFile
from pipeline.alerts.digest import DigestBook
from pipeline.alerts.events import ActiveCondition, Alert, Event, Severity
from pipeline.alerts.notifier import Notifier, Send
from pipeline.alerts.targets import AppriseSender, Target
from pipeline.clock import Clock, shown_time
from pipeline.config import Settings
from pipeline.dropfolder.jobs import Finished
from pipeline.errors import ConfigError, ConfigProblem
from pipeline.export.windows import local_date, zone
from pipeline.outcome import FileOutcome
from pipeline.service.instance import STATUS_FILE
from pipeline.service.snapshot import ServiceStatus

log = logging.getLogger("leadpipe.alerts")

ARRIVALS_FILE = "arrivals.json"
#: Conditions are evaluated at most this often (the service loop ticks faster).
EVERY = 5.0
#: A campaign's arrival time is kept to this precision (fewer writes of its file).
ARRIVAL_PRECISION = timedelta(minutes=1)
#: An export's error message is quoted up to this length.
QUOTE = 300


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        return None
    return found if found.tzinfo is not None else None


@dataclass
class _Facts:
    """What this evaluation could judge (kinds whose facts are unknown clear nothing)."""

    known: set[Event] = field(default_factory=set)
    holding: list[Alert] = field(default_factory=list)


class Monitor:
    """Evaluates conditions and one-off events; hands what is new to ``submit``."""

    def __init__(
        self,
        settings: Settings,
        submit: Callable[[Alert], None],
        *,
        clock: Clock,
        store: ConditionStore | None = None,
        link: str = "",
    ) -> None:
        self.settings = settings
        self.alerts = settings.alerts
        self.submit = submit
        self.clock = clock
        self.tz = zone(settings.timezone)
        state = settings.paths.state
        self.store = store or ConditionStore(state, clock, settings.timezone)
        self.digest = DigestBook(state, clock, settings.timezone, self.alerts.digest_at)
        self.link = link
        self._arrivals_file = StateFile(state, ARRIVALS_FILE)
        self._lock = threading.Lock()
        raw = self._arrivals_file.read()
        camps = raw.get("campaigns")
        if not isinstance(camps, dict):
            camps = {}
        self.arrivals: dict[str, datetime] = {
            str(k).casefold(): t for k, v in camps.items() if (t := _parse(str(v))) is not None
        }
        #: since when arrivals are watched: an earlier deadline is not judged (a first start
        #: knows of no file before it)
        self.watching_since = _parse(raw.get("since")) or clock.now()
        self._save_arrivals()
        self._next = 0.0
        self._first_seen: dict[str, float] = {}  # settling conditions: first seen (monotonic)

    # -- helpers ---------------------------------------------------------------------------

    def _when(self, t: datetime | str) -> str:
        return shown_time(t, self.settings.timezone)

    def _alert(self, kind: Event, key: str, title: str, body: str, campaign: str = "") -> Alert:
        return Alert(kind, key, title, body, kind.severity, campaign, link=self.link)

    def _send(self, alerts: Iterable[Alert]) -> None:
        for a in alerts:
            self.submit(a if a.link or not self.link else _with_link(a, self.link))

    def _arrived(self, campaign: str, when: datetime) -> None:
        key = campaign.casefold()
        with self._lock:
            last = self.arrivals.get(key)
            # a file waiting is seen at every evaluation: a minute's precision is plenty
            if (
                last is not None
                and last >= when - ARRIVAL_PRECISION
                and local_date(last, self.tz) == local_date(when, self.tz)
            ):
                return
            self.arrivals[key] = when
            self._save_arrivals()

    def _save_arrivals(self) -> None:
        self._arrivals_file.write(
            {
                "since": self.watching_since.isoformat(timespec="seconds"),
                "campaigns": {k: v.isoformat(timespec="seconds") for k, v in self.arrivals.items()},
            }
        )

    # -- at the start ------------------------------------------------------------------------

    def started(self, previous: ServiceStatus | None) -> None:
        """At the service's start: a previous run that did not stop cleanly is reported
        ("leadpipe was not running from ... to ...")."""
        try:
            if previous is None or not previous.running:
                return
            last = _parse(previous.at)
            if last is None:
                return
            now = self.clock.now()
            key = f"{Event.SERVICE_GAP.value}:{last.isoformat(timespec='seconds')}"
            if not self.store.once(key):
                return
            self._send(
                [
                    self._alert(
                        Event.SERVICE_GAP,
                        key,
                        "leadpipe stopped unexpectedly",
                        f"leadpipe was not running from {self._when(last)} to "
                        f"{self._when(now)}: the service ended without stopping cleanly "
                        "(a crash, kill -9, or the machine went down). It is running again "
                        "and resumes interrupted files by itself. Look at the service log "
                        "(journalctl -u leadpipe) for the cause.",
                    )
                ]
            )
        except Exception:
            log.exception("could not check how the last run ended")

    # -- finished files ----------------------------------------------------------------------

    def finished(self, done: Finished) -> None:
        """A file ended (the intake's hook): one-off events, arrivals and the digest."""
        try:
            self._finished(done)
        except Exception:
            log.exception("could not evaluate alerts for a finished file")

    def _finished(self, done: Finished) -> None:
        if done.preview or not done.kind.done:
            return
        self._arrived(done.campaign, done.at)
        rejects = [str(p) for p in done.rejects]
        self.digest.file_done(done.campaign, done.kind, done.counts, rejects)
        where = f"{done.campaign}/{done.final.name if done.final else done.name}"
        camp, name = done.campaign, done.name
        out: list[Alert] = []
        if done.kind is FileOutcome.FAILED:
            key = f"{Event.FILE_FAILED.value}:{where}"
            if self.store.once(key):
                why = f" The reason is in {done.error}." if done.error else ""
                out.append(
                    self._alert(
                        Event.FILE_FAILED,
                        key,
                        f"{camp}: file {name} failed",
                        f"The file {name} dropped into campaign {camp} could not be processed "
                        f"and was moved to {done.final or 'failed/'}. Nothing from it was "
                        f"uploaded.{why} Fix the file and drop it into the campaign folder "
                        "again.",
                        camp,
                    )
                )
        counts = done.counts
        read, rejected = counts.get("rows_read", 0), counts.get("rejected", 0)
        limit = self.alerts.reject_rate_percent
        if read > 0 and rejected * 100.0 / read > limit:
            key = f"{Event.REJECT_RATE.value}:{where}"
            if self.store.once(key):
                fix = next((p for p in rejects if p.endswith(".xlsx")), "")
                out.append(
                    self._alert(
                        Event.REJECT_RATE,
                        key,
                        f"{camp}: {rejected * 100 // read}% of {name} rejected",
                        f"{rejected} of {read} rows of {name} (campaign {camp}) were rejected, "
                        f"more than the {limit:g}% alert threshold. The rows to fix, each "
                        f"problem explained: {fix or 'the rejected/ folder'}. Fix them and "
                        "drop the reject file into the campaign folder again; if most rows "
                        "fail the same way, check the file's columns against "
                        f"`leadpipe fields {camp}`.",
                        camp,
                    )
                )
        uncertain = counts.get("uncertain", 0)
        if uncertain:
            key = f"{Event.ROWS_UNCERTAIN.value}:{where}"
            if self.store.once(key):
                receipt = done.receipt or "its receipt in processed/"
                out.append(
                    self._alert(
                        Event.ROWS_UNCERTAIN,
                        key,
                        f"{camp}: {uncertain} row(s) of {name} need a person",
                        f"{uncertain} row(s) of {name} (campaign {camp}) may or may not have "
                        "reached HeroBase, and leadpipe could not prove which, so they were "
                        f"not sent again. The receipt lists them: {receipt}. Look each one "
                        "up in HeroBase; drop the ones missing again.",
                        camp,
                    )
                )
        self._send(out)

    # -- conditions ------------------------------------------------------------------------

    def evaluate(self, status: ServiceStatus, *, force: bool = False) -> None:
        """Raise and clear conditions from the service's status (at most every few
        seconds unless ``force``); send the digest when it is due."""
        now_mono = self.clock.monotonic()
        if not force and now_mono < self._next:
            return
        self._next = now_mono + EVERY
        try:
            facts = self._facts(status)
            facts.holding = self._held_long_enough(facts.holding, now_mono)
            self._send(self.store.reconcile(facts.holding, lambda c: c.kind in facts.known))
            self._digest(status)
        except Exception:
            log.exception("could not evaluate alert conditions; trying again shortly")

    def _held_long_enough(self, holding: list[Alert], now: float) -> list[Alert]:
        """Conditions that come and go by themselves (a breaker that closes at the next probe,
        a share's hiccup) are raised only once they have held for :data:`SETTLE_SECONDS`; one
        raised already stays. Elsewhere a condition is raised at once."""
        seen = {a.key for a in holding}
        for key in list(self._first_seen):
            if key not in seen:
                del self._first_seen[key]  # it went away: the next time starts afresh
        out = []
        for a in holding:
            if a.kind in SETTLING and not self.store.is_active(a.key):
                first = self._first_seen.setdefault(a.key, now)
                if now - first < SETTLE_SECONDS:
                    continue
            out.append(a)
        return out

    def _facts(self, status: ServiceStatus) -> _Facts:
        f = _Facts()
        now = self.clock.now()
        self._api(status, now, f)
        self._budget(status, f)
        self._exports(status, now, f)
        self._absence(status, now, f)
        self._local(status, f)
        return f

    def _api(self, status: ServiceStatus, now: datetime, f: _Facts) -> None:
        if not status.api.url or not status.api.checked:
            # no API wired (tests with a stand-in processor), or no call has ended since the
            # start: whether it answers is not known, so nothing is raised or cleared (a
            # restart while it is down must not say "resolved")
            return
        from pipeline.api.transport import safe_url

        f.known.update({Event.API_DOWN, Event.BREAKER_OPEN})
        url = safe_url(status.api.url)
        key = Event.API_DOWN.value
        if status.api.problem:
            since = _parse(status.api.since) or now
            minutes = (now - since).total_seconds() / 60
            if minutes >= self.alerts.api_down_minutes or self.store.is_active(key):
                f.holding.append(
                    self._alert(
                        Event.API_DOWN,
                        key,
                        "HeroBase API not answering",
                        f"leadpipe cannot use the HeroBase API at {url} since "
                        f"{self._when(since)}: {status.api.problem}. Files wait in the inbox "
                        "(nothing is lost) and are taken when it answers again. Check the "
                        "network and HeroBase; `leadpipe doctor` tells what fails. A "
                        "message follows when it is back.",
                    )
                )
        intake = status.intake
        if intake.waiting_for_api and not intake.resume_at:
            f.holding.append(
                self._alert(
                    Event.BREAKER_OPEN,
                    Event.BREAKER_OPEN.value,
                    "Intake paused: waiting for the API",
                    f"leadpipe stopped taking files: {intake.api_problem or 'the API failed'}. "
                    "It tries again by itself with growing pauses; files wait in the inbox. "
                    "If the API answers but files keep leaving rows uncertain, look at the "
                    "latest receipts.",
                )
            )

    def _budget(self, status: ServiceStatus, f: _Facts) -> None:
        quota = status.quota
        if quota is None or not quota.budget:
            return
        f.known.add(Event.BUDGET_LOW)
        share = quota.used * 100.0 / quota.budget
        if share >= self.alerts.budget_percent:
            paused = (
                f" Uploads are paused until {self._when(status.intake.resume_at)}."
                if status.intake.resume_at
                else ""
            )
            f.holding.append(
                self._alert(
                    Event.BUDGET_LOW,
                    Event.BUDGET_LOW.value,
                    "Daily API request budget nearly spent",
                    f"{quota.used} of today's {quota.budget} requests are used ({share:.0f}%); "
                    f"the day resets at {self._when(quota.resets_at)}.{paused} Rows not sent "
                    "wait and go after the reset. To send more per day, raise the account's "
                    "limit in HeroBase or lower [api] daily_reserve.",
                )
            )

    def _exports(self, status: ServiceStatus, now: datetime, f: _Facts) -> None:
        jobs = {j.name: j for j in self.settings.exports}
        if jobs and not status.exports:
            return  # not evaluated yet
        f.known.update({Event.EXPORT_FAILED, Event.EXPORT_LATE})
        grace = timedelta(minutes=self.alerts.export_grace_minutes)
        for x in status.exports:
            if x.state == "error":
                key = f"{Event.EXPORT_FAILED.value}:{x.name}"
                f.holding.append(
                    self._alert(
                        Event.EXPORT_FAILED,
                        key,
                        f"Export {x.name} failed",
                        f"The scheduled export {x.name} (search {x.search}) failed: "
                        f"{x.message[:QUOTE]}. Fix what it says (`leadpipe exports` shows "
                        "the state); missed windows are caught up by themselves once it works.",
                    )
                )
            job = jobs.get(x.name)
            mark = _day(x.watermark)
            if job is None or mark is None or x.state == "running":
                continue
            due = last_deadline(job.schedule, now - grace, self.tz)
            if due is not None and mark < local_date(due, self.tz):
                f.holding.append(
                    self._alert(
                        Event.EXPORT_LATE,
                        f"{Event.EXPORT_LATE.value}:{x.name}",
                        f"Export {x.name} not written",
                        f"The export {x.name} scheduled for {self._when(due)} has not written "
                        f"its file into {self.settings.paths.outbox / x.name} "
                        f"{self.alerts.export_grace_minutes:g} minutes later; the last one "
                        f"covers up to {x.watermark}. State: {x.state}: {x.message[:QUOTE]}. "
                        "`leadpipe exports` shows why; `leadpipe export "
                        f"{x.name}` runs it now.",
                    )
                )

    def _absence(self, status: ServiceStatus, now: datetime, f: _Facts) -> None:
        if not self.alerts.expect:
            f.known.add(Event.FILE_MISSING)  # expectations removed: what they raised clears
            return
        for code, c in status.intake.campaigns.items():
            if c.waiting or c.settling or c.in_progress:
                self._arrived(code, now)
        f.known.add(Event.FILE_MISSING)
        for exp in self.alerts.expect:
            with self._lock:
                arrived = self.arrivals.get(exp.campaign.casefold())
            deadline = missed(exp, now, self.tz, arrived)
            if deadline is None or deadline < self.watching_since:
                continue
            folder = self.settings.paths.inbox / exp.campaign
            last = f"the last one arrived {self._when(arrived)}" if arrived else "none yet"
            f.holding.append(
                self._alert(
                    Event.FILE_MISSING,
                    f"{Event.FILE_MISSING.value}:{exp.campaign}",
                    f"{exp.campaign}: no file by {exp.by}",
                    f"No file arrived in {folder} by {self._when(deadline)} (expected by "
                    f"{exp.by} on {exp.days}; {last}). Check with whoever sends the "
                    "campaign's leads; this clears when a file arrives.",
                    exp.campaign,
                )
            )

    def _local(self, status: ServiceStatus, f: _Facts) -> None:
        intake = status.intake
        f.known.add(Event.INBOX_UNREACHABLE)
        if not intake.inbox_ok:
            f.holding.append(
                self._alert(
                    Event.INBOX_UNREACHABLE,
                    Event.INBOX_UNREACHABLE.value,
                    "Inbox folder not reachable",
                    f"{intake.inbox_problem or 'The inbox folder is not reachable.'} Nothing "
                    "is taken until it is back (check the share's mount and the service "
                    "account's rights); leadpipe picks up again by itself.",
                )
            )
        paths = self.settings.paths
        seen: set[int] = set()
        judged = True
        for folder in (paths.state, paths.inbox, paths.outbox):
            try:
                dev = folder.stat().st_dev
                if dev in seen:
                    continue
                seen.add(dev)
                usage = shutil.disk_usage(folder)
            except OSError:
                judged = False  # a folder that is away says nothing about its disk
                continue
            free = usage.free * 100.0 / usage.total if usage.total else 100.0
            key = f"{Event.DISK_LOW.value}:{folder}"
            # once raised, it clears only with a margin above the threshold: a disk hovering
            # around it (big temporary files coming and going) does not alert on and off
            margin = DISK_MARGIN if self.store.is_active(key) else 0.0
            if free < self.alerts.disk_free_percent + margin:
                f.holding.append(
                    self._alert(
                        Event.DISK_LOW,
                        key,
                        f"Disk nearly full at {folder}",
                        f"Only {free:.1f}% ({usage.free // 2**20} MB) is free on the disk of "
                        f"{folder} (alert below {self.alerts.disk_free_percent:g}%). Free "
                        "space there (old files in processed/ and outbox/ may go) before "
                        "leadpipe cannot write its results.",
                    )
                )
        if judged:
            f.known.add(Event.DISK_LOW)

    # -- the digest ------------------------------------------------------------------------

    def _digest(self, status: ServiceStatus) -> None:
        for x in status.exports:
            done = _parse(x.last_success)
            if done is not None and x.last_file and done >= self.digest.since:
                self.digest.export_written(x.name, x.last_file)
        day = self.digest.due()
        if day is None:
            return
        title, body = self.digest.take(day)
        self._send(
            [Alert(Event.DIGEST, f"digest:{day}", title, body, Severity.INFO, link=self.link)]
        )


def _with_link(alert: Alert, link: str) -> Alert:
    return replace(alert, link=link)


def _day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def previous_status(state_dir: Path) -> ServiceStatus | None:
    """The status the last run left in the state folder (None: none, or unreadable)."""
    try:
        data = json.loads((state_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return ServiceStatus.from_json(data) if isinstance(data, dict) else None


class Alerting:
    """Alerts for one service run: conditions, notifier and monitor, started and stopped
    together (:func:`open_alerting`)."""

    def __init__(self, settings: Settings, notifier: Notifier, *, clock: Clock) -> None:
        self.settings = settings
        self.notifier = notifier
        self.clock = clock
        self.monitor = Monitor(
            settings, notifier.submit, clock=clock, link=settings.alerts.status_url
        )

    def start(self, link: str = "") -> None:
        """Start delivering; report a previous run that did not stop cleanly. ``link``: the
        status page's address (unless ``[alerts] status_url`` says another)."""
        if link and not self.monitor.link:
            self.monitor.link = link
        previous = previous_status(self.settings.paths.state)
        self.notifier.start()
        self.monitor.started(previous)

    def finished(self, done: Finished) -> None:
        self.monitor.finished(done)

    def evaluate(self, status: ServiceStatus) -> None:
        self.monitor.evaluate(status)

    def active(self) -> tuple[ActiveCondition, ...]:
        """The conditions that hold now (the status page)."""
        return tuple(self.monitor.store.active())

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the notifier within ``timeout`` seconds."""
        self.notifier.stop(timeout)


def targets_of(settings: Settings) -> list[Target]:
    """The configured targets, as the notifier uses them."""
    return [Target.of(t) for t in settings.alerts.targets]


#: Conditions raised only once they have held this long (seconds): they often clear by
#: themselves within a minute, and an alert and its "resolved" for each would be noise.
SETTLE_SECONDS = 120.0
SETTLING = frozenset({Event.BREAKER_OPEN, Event.INBOX_UNREACHABLE})
#: Percentage points above the threshold the free space must reach before disk_low clears.
DISK_MARGIN = 1.0


def checked_sender(settings: Settings) -> AppriseSender:
    """The Apprise sender of the configured targets; a URL Apprise does not understand is a
    config error naming the target (``leadpipe run`` and ``leadpipe config`` both ask)."""
    targets = targets_of(settings)
    sender = AppriseSender(targets)
    problems = [
        ConfigProblem(f"alerts.targets[{i}].url", settings.source, why)
        for i, t in enumerate(targets)
        if (why := sender.check(t))
    ]
    if problems:
        raise ConfigError(problems)
    return sender


def open_alerting(
    settings: Settings,
    *,
    clock: Clock,
    send: Send | None = None,
    attempts: int = 5,
    backoff: float = 30.0,
) -> Alerting | None:
    """The service's alerting, or None when no target is configured. Apprise is loaded here
    (unless ``send`` replaces it); a URL it does not understand is a config error.
    ``attempts`` and ``backoff``: per delivery (docs/alerts.md, "Storm control")."""
    if not settings.alerts.enabled:
        return None
    targets = targets_of(settings)
    if send is None:
        send = checked_sender(settings).send
    notifier = Notifier(
        targets,
        send,
        clock=clock,
        max_per_hour=settings.alerts.max_per_hour,
        attempts=attempts,
        backoff=backoff,
        store=StateFile(settings.paths.state, UNDELIVERED_FILE),
    )
    return Alerting(settings, notifier, clock=clock)


@dataclass(frozen=True)
class TargetTrial:
    """How the test message to one target went (``leadpipe alerts test``)."""

    target: str  #: the target's name, else its redacted URL
    shown: str  #: the redacted URL
    ok: bool
    error: str = ""


def send_test(settings: Settings, *, clock: Clock, send: Send | None = None) -> list[TargetTrial]:
    """Send one test message to every configured target, once each, and say how each went
    (nothing is retried: a person is waiting). Never raises for a target that fails."""
    import socket

    from pipeline.alerts.targets import AppriseSender, DeliveryFailed, apprise_said

    targets = targets_of(settings)
    if send is None and targets:
        send = AppriseSender(targets).send
    link = settings.alerts.status_url or (
        f"http://{settings.status.host}:{settings.status.port}/" if settings.status.enabled else ""
    )
    alert = Alert(
        Event.TEST,
        "test",
        "Test message",
        f"This is a test message from leadpipe on {socket.gethostname()} (config "
        f"{settings.source}), sent by `leadpipe alerts test` at "
        f"{shown_time(clock.now(), settings.timezone)}. Alerts reach this target; nothing "
        "needs doing.",
        Severity.INFO,
        link=link,
    )
    out: list[TargetTrial] = []
    for t in targets:
        assert send is not None
        try:
            with apprise_said() as said:
                send(t, alert)
        except DeliveryFailed as exc:
            reason = f"{exc}: {said[-1]}" if said else str(exc)
            out.append(TargetTrial(t.label, t.shown, False, reason))
        except Exception as exc:  # a sender's surprise is this target's failure
            out.append(TargetTrial(t.label, t.shown, False, type(exc).__name__))
        else:
            out.append(TargetTrial(t.label, t.shown, True))
    return out
