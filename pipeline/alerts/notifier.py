"""The notifier: a background thread that delivers alerts to their targets.

Callers hand alerts over with :meth:`Notifier.submit`, which never blocks and never raises: the
queue is bounded (an alert that does not fit is logged and dropped). Each target gets each
alert it wants (:meth:`Target.wants`); a delivery that fails is tried again after a backoff
that doubles up to a ceiling, a few times, and then given up with a line in the log. A target
takes at most ``max_per_hour`` messages an hour; what the cap holds back is counted and said
in the next message that goes (docs/alerts.md, "Storm control"). No exception ends the thread,
and a target that hangs delays only the notifier, never intake or exports.

With a ``store`` (a file in the state folder), every delivery not yet made is kept there until
it succeeds or is given up: a stop (or a crash) while a target is down does not lose the
alert; the next start delivers it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pipeline.alerts.events import Alert
from pipeline.alerts.targets import DeliveryFailed, Target

if TYPE_CHECKING:
    from pipeline.alerts.conditions import StateFile
from pipeline.clock import Clock

log = logging.getLogger("leadpipe.alerts")

Send = Callable[[Target, Alert], None]
HOUR = 3600.0


@dataclass(frozen=True)
class Delivery:
    """One alert for one target, and how many attempts it has had."""

    target: Target
    alert: Alert
    attempt: int = 0


@dataclass(frozen=True)
class Result:
    """How one attempt ended (kept for ``leadpipe alerts test`` and the tests)."""

    target: str  #: the target's label (redacted)
    key: str
    resolved: bool
    ok: bool
    error: str = ""


class Notifier:
    """Delivers alerts from a daemon thread until :meth:`stop`."""

    def __init__(
        self,
        targets: Sequence[Target],
        send: Send,
        *,
        clock: Clock,
        max_per_hour: int = 20,
        attempts: int = 5,
        backoff: float = 30.0,
        backoff_cap: float = 900.0,
        queue_size: int = 500,
        store: StateFile | None = None,
    ) -> None:
        self.targets = list(targets)
        self.send = send
        self.clock = clock
        self.max_per_hour = max_per_hour
        self.attempts = attempts
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self._queue: queue.Queue[Alert] = queue.Queue(maxsize=queue_size)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()
        self._sent: dict[str, deque[float]] = {}
        self._held: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self.results: deque[Result] = deque(maxlen=200)
        self._idle = threading.Event()
        self._idle.set()
        self._store = store
        self._undelivered: dict[str, dict[str, Any]] = {}  # -> target, alert, attempt

    def start(self) -> Notifier:
        self._resume()
        self._thread = threading.Thread(target=self._run, name="leadpipe-alerts", daemon=True)
        self._thread.start()
        return self

    def submit(self, alert: Alert) -> None:
        """Queue ``alert`` for delivery (never blocks, never raises)."""
        try:
            self._idle.clear()
            self._queue.put_nowait(alert)
        except queue.Full:
            log.warning("alert queue full: %s not sent (%s)", alert.kind.value, alert.title)
        self._wake.set()

    def idle(self) -> bool:
        """Nothing queued, nothing waiting for a retry (tests wait on this)."""
        return self._idle.is_set() and self._queue.empty()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread; what is due now is tried once more within ``timeout`` seconds,
        and a delivery that still hangs is left to its (daemon) thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))
            if self._thread.is_alive():
                log.warning("an alert target did not answer at the stop; its message is dropped")

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._take_queued()
                self._deliver_due()
                if self._stop.is_set():
                    return
                self._idle_check()
                self._wake.wait(self._pause())
                self._wake.clear()
            except Exception:  # the notifier outlives whatever one delivery does
                log.exception("the alert notifier hit an error; it carries on")
                if self._stop.wait(1.0):
                    return

    def _idle_check(self) -> None:
        if not self._pending and self._queue.empty():
            self._idle.set()

    def _pause(self) -> float:
        if not self._pending:
            return 5.0
        return min(5.0, max(0.01, self._pending[0][0] - self.clock.monotonic()))

    def _take_queued(self) -> None:
        now = self.clock.monotonic()
        while True:
            try:
                alert = self._queue.get_nowait()
            except queue.Empty:
                return
            for target in self.targets:
                if target.wants(alert):
                    item = Delivery(target, alert)
                    heapq.heappush(self._pending, (now, next(self._seq), item))
                    self._keep(item)

    def _deliver_due(self) -> None:
        while self._pending and self._pending[0][0] <= self.clock.monotonic():
            _, _, item = heapq.heappop(self._pending)
            self._deliver(item)
            if self._stop.is_set():
                # one last try of what is due at the stop; retries end here
                while self._pending and self._pending[0][0] <= self.clock.monotonic():
                    _, _, rest = heapq.heappop(self._pending)
                    if rest.attempt == 0:
                        self._deliver(rest)
                self._pending.clear()
                return

    def _deliver(self, item: Delivery) -> None:
        target, alert = item.target, item.alert
        label = target.label
        if item.attempt == 0 and not self._allowed(label):
            self._held[label] = self._held.get(label, 0) + 1
            log.warning(
                "alert to %s held back: at most %d messages an hour go to one target (%s)",
                label,
                self.max_per_hour,
                alert.title,
            )
            self._drop(item)
            return
        held = self._held.pop(label, 0)
        sent = alert
        if held:
            sent = replace(
                alert,
                body=f"{alert.body}\n\n({held} earlier alert(s) to this target were held back: "
                f"at most {self.max_per_hour} an hour. The status page lists what holds now.)",
            )
        try:
            self.send(target, sent)
        except Exception as exc:  # DeliveryFailed, or a sender's surprise
            if held:
                self._held[label] = self._held.get(label, 0) + held
            reason = str(exc) if isinstance(exc, DeliveryFailed) else type(exc).__name__
            self.results.append(Result(label, alert.key, alert.resolved, False, reason))
            if item.attempt + 1 < self.attempts and not self._stop.is_set():
                wait = min(self.backoff * 2**item.attempt, self.backoff_cap)
                log.warning(
                    "could not send an alert to %s (%s); trying again in %.0f s",
                    label,
                    reason,
                    wait,
                )
                due = self.clock.monotonic() + wait
                nxt = replace(item, attempt=item.attempt + 1)
                heapq.heappush(self._pending, (due, next(self._seq), nxt))
            elif self._stop.is_set():  # kept in the store: the next start sends it
                log.warning("could not send an alert to %s (%s) before the stop", label, reason)
            else:
                log.error(
                    "gave up sending an alert to %s after %d attempt(s): %s (%s)",
                    label,
                    item.attempt + 1,
                    alert.title,
                    reason,
                )
                self._drop(item)
            return
        self._drop(item)
        self._sent.setdefault(label, deque()).append(self.clock.now().timestamp())
        self._save()
        self.results.append(Result(label, alert.key, alert.resolved, True))

    # -- deliveries kept across a restart ----------------------------------------------------

    @staticmethod
    def _id(item: Delivery) -> str:
        return f"{item.target.label}\n{item.alert.key}\n{item.alert.resolved}"

    def _keep(self, item: Delivery) -> None:
        if self._store is None:
            return
        entry = {"target": item.target.label, "alert": item.alert.to_json()}
        self._undelivered[self._id(item)] = entry
        self._save()

    def _drop(self, item: Delivery) -> None:
        if self._store is None or self._undelivered.pop(self._id(item), None) is None:
            return
        self._save()

    def _save(self) -> None:
        """The deliveries not made yet, and each target's sends of the last hour (the cap
        holds across a restart, even a crash loop)."""
        if self._store is None:
            return
        sent = {label: list(times) for label, times in self._sent.items() if times}
        self._store.write({"undelivered": list(self._undelivered.values()), "sent": sent})

    def _resume(self) -> None:
        """Queue what an earlier run did not deliver (its targets still configured)."""
        if self._store is None:
            return
        by_label = {t.label: t for t in self.targets}
        now = self.clock.monotonic()
        saved = self._store.read()
        sent = saved.get("sent")
        wall = self.clock.now().timestamp()
        for label, times in (sent if isinstance(sent, dict) else {}).items():
            if label in by_label and isinstance(times, list):
                recent = [float(t) for t in times if isinstance(t, int | float)]
                self._sent[label] = deque(t for t in sorted(recent) if wall - t < HOUR)
        entries = saved.get("undelivered", [])
        for entry in entries if isinstance(entries, list) else []:
            try:
                target = by_label[entry["target"]]
                alert = Alert.from_json(entry["alert"])
            except (KeyError, TypeError, ValueError):
                continue  # a target no longer configured, or an entry not understood
            item = Delivery(target, alert)
            self._undelivered[self._id(item)] = entry
            heapq.heappush(self._pending, (now, next(self._seq), item))
        if self._pending:
            self._idle.clear()
            log.info("%d alert(s) an earlier run did not deliver are sent now", len(self._pending))

    def _allowed(self, label: str) -> bool:
        sent = self._sent.setdefault(label, deque())
        now = self.clock.now().timestamp()
        while sent and now - sent[0] >= HOUR:
            sent.popleft()
        return len(sent) < self.max_per_hour
