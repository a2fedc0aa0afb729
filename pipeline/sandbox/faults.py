"""Fault injection and the request log: the sandbox's test controls.

A :class:`Fault` matches requests by route (``"*"`` or ``"METHOD /path-glob"`` relative to the
base path), lets ``after`` matching requests through, then hits ``times`` of them (0 = until
cleared).
"""

from __future__ import annotations

import fnmatch
import threading
from collections import deque
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from pipeline.sandbox.store import fmt_time

FAULT_KINDS = frozenset(
    {
        "status",
        "delay",
        "store_late",
        "drop_before",
        "drop_after",
        "status_after",
        "html",
        "empty",
        "garbled",
    }
)
#: Kinds that hold the request for ``delay`` s, then handle it (a POSTed lead is stored).
HOLD_KINDS = frozenset({"delay", "store_late"})
#: Kinds that act after the request was handled (a POSTed lead is stored).
AFTER_KINDS = frozenset({"drop_after", "status_after", "garbled"})
#: The request log keeps at most this many entries (oldest dropped first).
MAX_LOG = 100_000


@dataclass(frozen=True)
class Fault:
    """One scheduled fault (see ``pipeline.sandbox`` for the meaning of each kind)."""

    kind: str
    route: str = "*"
    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    after: int = 0
    times: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in FAULT_KINDS:
            problems.append(f"kind {self.kind!r} is not one of {', '.join(sorted(FAULT_KINDS))}")
        if self.route != "*" and len(self.route.split(" ", 1)) != 2:
            problems.append(f"route {self.route!r} should be '*' or 'METHOD /path-glob'")
        if self.status is not None and not 100 <= self.status <= 599:
            problems.append(f"status {self.status} is not an HTTP status")
        if self.after < 0 or self.times < 0 or self.delay < 0:
            problems.append("after, times and delay must be >= 0")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_json(cls, body: Any) -> Fault:
        """Build from a JSON object with the dataclass's field names (any key case)."""
        if not isinstance(body, dict):
            raise ValueError("a fault is a JSON object with at least 'kind'")
        names = {f.name.replace("_", ""): f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in body.items():
            name = names.get(str(key).lower().replace("_", ""))
            if name is None:
                raise ValueError(f"unknown fault property {key!r}")
            kwargs[name] = value
        try:
            fault = cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"bad fault: {exc}") from None
        return fault

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


class _Armed:
    __slots__ = ("fault", "hits", "id", "method", "path", "seen")

    def __init__(self, fid: int, fault: Fault) -> None:
        self.id = fid
        self.fault = fault
        self.seen = 0
        self.hits = 0
        if fault.route == "*":
            self.method, self.path = "*", "*"
        else:
            method, path = fault.route.split(" ", 1)
            self.method, self.path = method.upper(), path.strip().lower()

    def matches(self, method: str, path: str) -> bool:
        """True when this fault's route covers ``method path``."""
        if self.method not in ("*", method):
            return False
        return self.path == "*" or fnmatch.fnmatchcase(path.lower(), self.path)


class FaultBook:
    """The scheduled faults; ``take`` decides (atomically) whether a request is hit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self._next_id = 1

    def __bool__(self) -> bool:
        return bool(self._armed)

    def add(self, fault: Fault) -> int:
        """Schedule ``fault``; returns its id."""
        with self._lock:
            fid = self._next_id
            self._next_id += 1
            self._armed.append(_Armed(fid, fault))
            return fid

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._armed.clear()

    def listing(self) -> list[dict[str, Any]]:
        """The armed faults with their counters."""
        with self._lock:
            return [
                {"id": a.id, **a.fault.as_dict(), "seen": a.seen, "hits": a.hits}
                for a in self._armed
            ]

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault that hits this request, counting it; None when none does."""
        with self._lock:
            hit: Fault | None = None
            for armed in self._armed:
                if not armed.matches(method, path):
                    continue
                armed.seen += 1
                if hit is not None or armed.seen <= armed.fault.after:
                    continue
                armed.hits += 1
                hit = armed.fault
            self._armed = [a for a in self._armed if a.fault.times == 0 or a.hits < a.fault.times]
            return hit


class RequestLog:
    """Every request received (bounded), for tests that count calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=MAX_LOG)
        self._n = 0

    def add(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Number and append ``entry``; returns it (its ``status`` is filled in later)."""
        with self._lock:
            self._n += 1
            entry["n"] = self._n
            self._entries.append(entry)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """A copy of the log, oldest first."""
        with self._lock:
            copies = [dict(e) for e in self._entries]
        for entry in copies:  # formatted here, not on the request path
            if isinstance(entry.get("time"), datetime):
                entry["time"] = fmt_time(entry["time"])
        return copies

    def clear(self) -> None:
        """Forget every entry (numbering goes on)."""
        with self._lock:
            self._entries.clear()
