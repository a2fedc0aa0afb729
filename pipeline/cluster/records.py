"""One node of the cluster as people see it (docs/cluster.md, "What to monitor").

A value: the status page, ``/status.json``, the status file and ``leadpipe status`` carry it;
JSON only at the edges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NodeStatus:
    """One row of the node registry, with what the node holds now."""

    name: str
    host: str = ""
    pid: int | None = None
    started: str = ""  #: ISO 8601 (the database's clock)
    last_seen: str = ""  #: ISO 8601 (the database's clock)
    seen_ago: float = 0.0  #: seconds since ``last_seen``, by the database's clock
    #: seen within ``[cluster] lease_seconds`` and not stopped
    alive: bool = False
    stopped: bool = False  #: it said goodbye (a clean stop)
    #: the leases it holds: ``claim:<campaign folder>/<claim>``, ``export:<job>[:<window>]``
    holds: tuple[str, ...] = ()
    this: bool = False  #: the node that reports this status

    @property
    def state(self) -> str:
        """``alive``, ``stopped`` or ``not alive``."""
        if self.alive:
            return "alive"
        return "stopped" if self.stopped else "not alive"

    def holds_text(self) -> str:
        """What it holds, in words (claims by file, export jobs and windows)."""
        if not self.holds:
            return "nothing"
        return ", ".join(h.split(":", 1)[1] if h.startswith("claim:") else h for h in self.holds)

    def sentence(self) -> str:
        """One line for ``leadpipe status``."""
        where = f"{self.host} pid {self.pid}" if self.pid is not None else self.host
        return (
            f"{self.name}{' (this node)' if self.this else ''}: {self.state}, {where}, "
            f"last seen {self.seen_ago:.0f} s ago; holds {self.holds_text()}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "last_seen": self.last_seen,
            "seen_ago": round(self.seen_ago, 1),
            "alive": self.alive,
            "stopped": self.stopped,
            "state": self.state,
            "holds": list(self.holds),
            "this": self.this,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeStatus:
        pid = data.get("pid")
        holds = data.get("holds")
        ago = data.get("seen_ago")
        return cls(
            name=str(data.get("name") or ""),
            host=str(data.get("host") or ""),
            pid=pid if isinstance(pid, int) else None,
            started=str(data.get("started") or ""),
            last_seen=str(data.get("last_seen") or ""),
            seen_ago=float(ago) if isinstance(ago, int | float) else 0.0,
            alive=bool(data.get("alive")),
            stopped=bool(data.get("stopped")),
            holds=tuple(str(h) for h in holds) if isinstance(holds, list) else (),
            this=bool(data.get("this")),
        )
