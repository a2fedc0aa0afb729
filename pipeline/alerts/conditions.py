"""The active conditions, kept in the state folder so they survive a restart.

A condition is raised once (one alert) and cleared once (one "resolved" message), however
often it is evaluated in between; a one-off event (a failed file) is sent once per key. Both
live in ``<state>/alerts/conditions.json``, written temp-then-rename after every change
(docs/alerts.md, "Where the state lives"). Thread-safe: intake workers report one-off events
while the service loop evaluates conditions.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.alerts.events import ActiveCondition, Alert
from pipeline.clock import Clock, shown_time
from pipeline.files import PRIVATE_FILE_MODE, atomic_write_text, private_dir

log = logging.getLogger("leadpipe.alerts")

#: The alerts' folder under the state folder.
ALERTS_DIR = "alerts"
CONDITIONS_FILE = "conditions.json"
#: The notifier's deliveries not yet made (kept across a restart).
UNDELIVERED_FILE = "undelivered.json"
#: One-off keys are remembered this long (a file dropped again after that alerts again).
SENT_KEEP = timedelta(days=30)


class StateFile:
    """One small JSON file in ``<state>/alerts/``: read whole, written whole, atomically."""

    def __init__(self, state_dir: Path, name: str) -> None:
        self.folder = Path(state_dir) / ALERTS_DIR
        self.path = self.folder / name

    def read(self) -> dict[str, Any]:
        """The file's content ({} when it is missing or unreadable: the log says so)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s); alert state starts afresh", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, data: dict[str, Any]) -> None:
        """Replace the file (never raises: an unwritable state folder is logged)."""
        try:
            private_dir(self.folder)
            atomic_write_text(
                self.path,
                json.dumps(data, indent=1, sort_keys=True),
                tmp_dir=self.folder,
                mode=PRIVATE_FILE_MODE,
            )
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc)


def read_conditions(state_dir: Path) -> list[ActiveCondition]:
    """The active conditions as the service last wrote them (``leadpipe alerts``)."""
    raw = StateFile(state_dir, CONDITIONS_FILE).read().get("active")
    found = [ActiveCondition.from_json(c) for c in raw.values()] if isinstance(raw, dict) else []
    return sorted((c for c in found if c is not None), key=lambda c: (c.since, c.key))


class ConditionStore:
    """Raise, clear and once, persisted: what decides that an alert goes out."""

    def __init__(self, state_dir: Path, clock: Clock, timezone: str = "UTC") -> None:
        self.clock = clock
        self.tz = ZoneInfo(timezone)
        self.file = StateFile(state_dir, CONDITIONS_FILE)
        self._lock = threading.Lock()
        data = self.file.read()
        raw = data.get("active")
        self._active: dict[str, ActiveCondition] = {}
        for value in (raw or {}).values() if isinstance(raw, dict) else ():
            if isinstance(value, dict) and (c := ActiveCondition.from_json(value)) is not None:
                self._active[c.key] = c
        sent = data.get("sent")
        self._sent: dict[str, str] = (
            {str(k): str(v) for k, v in sent.items()} if isinstance(sent, dict) else {}
        )

    def active(self) -> list[ActiveCondition]:
        """The conditions that hold now, oldest first."""
        with self._lock:
            return sorted(self._active.values(), key=lambda c: (c.since, c.key))

    def is_active(self, key: str) -> bool:
        with self._lock:
            return key in self._active

    def once(self, key: str) -> bool:
        """True the first time ``key`` is seen (a one-off event to send), recorded."""
        with self._lock:
            if key in self._sent:
                return False
            now = self.clock.now()
            self._sent[key] = now.isoformat(timespec="seconds")
            cutoff = (now - SENT_KEEP).isoformat(timespec="seconds")
            self._sent = {k: v for k, v in self._sent.items() if v >= cutoff}
            self._save()
            return True

    def reconcile(
        self, holding: Iterable[Alert], judged: Callable[[ActiveCondition], bool]
    ) -> list[Alert]:
        """Bring the store in line with what holds now; returns the alerts to send.

        ``holding``: the conditions that hold now (each raised once: an alert the first
        time). An active condition not among them is cleared (one "resolved" alert) when
        ``judged(condition)``: the monitor could tell (facts it depends on may be unknown
        just after a start, and an unknown fact clears nothing).
        """
        out: list[Alert] = []
        with self._lock:
            now = self.clock.now().astimezone(self.tz).isoformat(timespec="seconds")
            keys: set[str] = set()
            for alert in holding:
                keys.add(alert.key)
                if alert.key in self._active:
                    continue
                self._active[alert.key] = ActiveCondition(
                    alert.kind, alert.key, alert.title, alert.severity, now, alert.campaign
                )
                out.append(alert)
            for key, cond in list(self._active.items()):
                if key not in keys and judged(cond):
                    del self._active[key]
                    out.append(_resolved(cond, now))
            if out:
                self._save()
        return out

    def _save(self) -> None:
        self.file.write(
            {
                "active": {k: c.to_json() for k, c in self._active.items()},
                "sent": dict(self._sent),
            }
        )


def _resolved(cond: ActiveCondition, now: str) -> Alert:
    return Alert(
        kind=cond.kind,
        key=cond.key,
        title=cond.title,
        body=(
            f"Resolved: {cond.title}. It held from {shown_time(cond.since)} to "
            f"{shown_time(now)}; nothing more to do for it."
        ),
        severity=cond.severity,
        campaign=cond.campaign,
        resolved=True,
    )
