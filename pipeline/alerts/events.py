"""The alert vocabulary: what can happen (:class:`Event`), how bad it is (:class:`Severity`),
and the record that crosses from the monitor to the notifier (:class:`Alert`).

An alert carries counts, file names and paths only, never a lead's data (docs/alerts.md,
"What an alert says").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """How urgent an alert is; a target takes alerts at or above its ``min_severity``."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Order for comparisons: info < warning < critical."""
        return _RANK[self]

    @classmethod
    def parse(cls, text: str, default: Severity | None = None) -> Severity:
        """A severity from its name (ValueError, or ``default``, when it is none)."""
        for s in cls:
            if s.value == (text or "").strip().lower():
                return s
        if default is None:
            raise ValueError(f"not a severity: {text!r}")
        return default


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Event(StrEnum):
    """What an alert is about (the names a target's ``events`` list uses)."""

    FILE_FAILED = "file_failed"
    REJECT_RATE = "reject_rate"
    ROWS_UNCERTAIN = "rows_uncertain"
    API_DOWN = "api_down"
    BREAKER_OPEN = "breaker_open"
    BUDGET_LOW = "budget_low"
    EXPORT_FAILED = "export_failed"
    EXPORT_LATE = "export_late"
    FILE_MISSING = "file_missing"
    SERVICE_GAP = "service_gap"
    INBOX_UNREACHABLE = "inbox_unreachable"
    DISK_LOW = "disk_low"
    DIGEST = "digest"
    TEST = "test"

    @property
    def severity(self) -> Severity:
        """The severity alerts of this kind are sent with."""
        return _SEVERITY.get(self, Severity.WARNING)

    @property
    def condition(self) -> bool:
        """True for conditions (they last, and get a "resolved" message when they clear);
        False for one-off events (sent once per file or occurrence)."""
        return self in _CONDITIONS


_SEVERITY = {
    Event.API_DOWN: Severity.CRITICAL,
    Event.INBOX_UNREACHABLE: Severity.CRITICAL,
    Event.DISK_LOW: Severity.CRITICAL,
    Event.DIGEST: Severity.INFO,
    Event.TEST: Severity.INFO,
}
_CONDITIONS = frozenset(
    {
        Event.API_DOWN,
        Event.BREAKER_OPEN,
        Event.BUDGET_LOW,
        Event.EXPORT_FAILED,
        Event.EXPORT_LATE,
        Event.FILE_MISSING,
        Event.INBOX_UNREACHABLE,
        Event.DISK_LOW,
    }
)
#: The names a target's ``events`` may list (``digest`` and ``test`` included).
EVENT_NAMES = tuple(e.value for e in Event)
SEVERITY_NAMES = tuple(s.value for s in Severity)


@dataclass(frozen=True)
class Alert:
    """One message to send: a condition raised or resolved, or a one-off event.

    ``key`` names the condition or occurrence (``api_down``, ``file_missing:CAMPAIGN``,
    ``file_failed:CAMPAIGN/<stamp>_<file>``): one alert per key while it lasts.
    """

    kind: Event
    key: str
    title: str
    body: str
    severity: Severity
    campaign: str = ""
    resolved: bool = False
    link: str = ""  #: the status page

    def to_json(self) -> dict[str, Any]:
        """The alert as JSON (the notifier keeps undelivered ones across a restart)."""
        return {
            "kind": self.kind.value,
            "key": self.key,
            "title": self.title,
            "body": self.body,
            "severity": self.severity.value,
            "campaign": self.campaign,
            "resolved": self.resolved,
            "link": self.link,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        """The alert :meth:`to_json` wrote (ValueError/KeyError when it is not one)."""
        return cls(
            Event(data["kind"]),
            str(data["key"]),
            str(data["title"]),
            str(data["body"]),
            Severity(data["severity"]),
            str(data.get("campaign", "")),
            bool(data.get("resolved", False)),
            str(data.get("link", "")),
        )

    def text(self) -> str:
        """The body as sent: the message, then where to look."""
        link = f"\n\nStatus page: {self.link}" if self.link else ""
        return f"{self.body}{link}"

    @property
    def subject(self) -> str:
        """The title as sent (``[leadpipe] ...``, ``RESOLVED`` when it cleared)."""
        mark = "RESOLVED: " if self.resolved else ""
        return f"[leadpipe] {mark}{self.title}"


@dataclass(frozen=True)
class ActiveCondition:
    """A condition that holds now (the status page, ``leadpipe alerts``, the state file)."""

    kind: Event
    key: str
    title: str
    severity: Severity
    since: str  #: when it was raised (ISO 8601, the tenant's zone)
    campaign: str = ""
    notified: bool = True  #: the raise went to the notifier

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "key": self.key,
            "title": self.title,
            "severity": self.severity.value,
            "since": self.since,
            "campaign": self.campaign,
            "notified": self.notified,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActiveCondition | None:
        """One read back (None when it names no known event)."""
        try:
            kind = Event(str(data.get("kind")))
        except ValueError:
            return None
        return cls(
            kind=kind,
            key=str(data.get("key") or kind.value),
            title=str(data.get("title") or ""),
            severity=Severity.parse(str(data.get("severity") or ""), kind.severity),
            since=str(data.get("since") or ""),
            campaign=str(data.get("campaign") or ""),
            notified=bool(data.get("notified", True)),
        )
