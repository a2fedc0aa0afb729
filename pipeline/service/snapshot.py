"""The service's status as one typed record: the drop folder, the API, exports, verification,
health.

:class:`ServiceStatus` is what the status page renders, ``/status.json`` and the status file
(``<state>/status.json``) carry, and ``leadpipe status`` reads back in another process. The JSON
keeps the intake's fields at its top level (``inbox``, ``campaigns``, ``recent``, ``quota``, ...),
beside
``api``, ``watch``, ``exports``, ``verified``, ``health``, ``at``, ``pid`` and ``running``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.alerts.events import ActiveCondition
from pipeline.api.quota import QuotaStatus
from pipeline.cluster.records import NodeStatus
from pipeline.dropfolder.status import IntakeStatus, RecentFile
from pipeline.export.scheduler import JobStatus
from pipeline.ingest.deliver.verify import Verification

Json = dict[str, Any]


@dataclass(frozen=True)
class ApiStatus:
    """Which HeroBase the service talks to."""

    url: str = ""
    embedded: bool = False  #: the built-in demo sandbox (nothing reaches a real dialer)
    #: the last call got no answer (or a 5xx): why, in words; empty while it answers
    #: (:mod:`pipeline.service.apiwatch`)
    problem: str = ""
    since: str = ""  #: since when it does not answer (ISO 8601, the tenant's zone)
    #: a call has ended since the service started (answered or not): until then whether the
    #: API answers is not known
    checked: bool = False


@dataclass(frozen=True)
class VerifiedFile:
    """What a verification pass found for one finished file."""

    file: str  #: the file's name
    campaign: str
    message: str
    duplicates: tuple[Mapping[str, Any], ...] = ()  #: {"row", "unique_ids"} per doubled row
    checked_at: str = ""
    blind: bool = False  #: the check could not run

    @property
    def alarming(self) -> bool:
        """Worth a red line: leads doubled, or the check could not run."""
        return bool(self.duplicates) or self.blind

    @classmethod
    def of(cls, v: Verification) -> VerifiedFile:
        return cls(
            file=Path(v.file).name,
            campaign=v.campaign,
            message=v.message,
            duplicates=tuple(v.duplicates),
            checked_at=v.checked_at,
            blind=bool(v.blind),
        )

    def to_json(self) -> Json:
        return {
            "file": self.file,
            "campaign": self.campaign,
            "message": self.message,
            "duplicates": [dict(d) for d in self.duplicates],
            "checked_at": self.checked_at,
            "blind": self.blind,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerifiedFile:
        dups = data.get("duplicates")
        message = str(data.get("message") or "")
        return cls(
            file=str(data.get("file") or ""),
            campaign=str(data.get("campaign") or ""),
            message=message,
            duplicates=tuple(d for d in dups if isinstance(d, dict))
            if isinstance(dups, list)
            else (),
            checked_at=str(data.get("checked_at") or ""),
            blind=bool(data.get("blind", "could not run" in message)),
        )


@dataclass(frozen=True)
class ServiceStatus:
    """Everything the status page shows, at one moment."""

    intake: IntakeStatus
    api: ApiStatus = field(default_factory=ApiStatus)
    watch: str = ""  #: how the inbox is watched (events or polling)
    exports: tuple[JobStatus, ...] = ()
    verified: tuple[VerifiedFile, ...] = ()
    problems: tuple[str, ...] = ()  #: what keeps the service from its work (empty: healthy)
    alerts: tuple[ActiveCondition, ...] = ()  #: alert conditions that hold (docs/alerts.md)
    at: str = ""  #: when this was taken (ISO 8601)
    pid: int | None = None
    running: bool = True
    #: this node's name, in a cluster (docs/cluster.md, "Nodes"); "" for one node (SQLite)
    node: str = ""
    #: every node of the cluster: alive or not, last seen, what it holds
    nodes: tuple[NodeStatus, ...] = ()
    #: why the nodes shown may be out of date (the cluster's database did not answer)
    nodes_problem: str = ""

    @property
    def quota(self) -> QuotaStatus | None:
        """The account's daily request budget (None: not kept); carried by the intake's
        status, whose waiting files' finish times it gives."""
        return self.intake.quota

    def with_earlier(self, earlier: Sequence[RecentFile], keep: int = 100) -> ServiceStatus:
        """The recent-files list continued with an earlier run's (it survives restarts)."""
        recent = (*self.intake.recent, *earlier)[:keep]
        return replace(self, intake=replace(self.intake, recent=recent))

    def to_json(self) -> Json:
        out = self.intake.to_json()
        out.update(
            {
                "api": {
                    "url": self.api.url,
                    "embedded": self.api.embedded,
                    "problem": self.api.problem,
                    "since": self.api.since,
                    "checked": self.api.checked,
                },
                "watch": self.watch,
                "exports": [x.to_dict() for x in self.exports],
                "verified": [v.to_json() for v in self.verified],
                "health": {"problems": list(self.problems)},
                "alerts": [a.to_json() for a in self.alerts],
                "at": self.at,
                "pid": self.pid,
                "running": self.running,
            }
        )
        if self.node:
            out["cluster"] = {
                "node": self.node,
                "nodes": [n.to_json() for n in self.nodes],
                "problem": self.nodes_problem,
            }
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServiceStatus:
        api = data.get("api") if isinstance(data.get("api"), dict) else {}
        health = data.get("health") if isinstance(data.get("health"), dict) else {}
        exports = data.get("exports") if isinstance(data.get("exports"), list) else []
        verified = data.get("verified") if isinstance(data.get("verified"), list) else []
        alerts = data.get("alerts") if isinstance(data.get("alerts"), list) else []
        problems = health.get("problems") if isinstance(health, dict) else None
        pid = data.get("pid")
        cluster = data.get("cluster") if isinstance(data.get("cluster"), dict) else {}
        nodes = (cluster or {}).get("nodes")
        return cls(
            intake=IntakeStatus.from_json(data),
            api=ApiStatus(
                url=str((api or {}).get("url") or ""),
                embedded=bool((api or {}).get("embedded")),
                problem=str((api or {}).get("problem") or ""),
                since=str((api or {}).get("since") or ""),
                checked=bool((api or {}).get("checked")),
            ),
            watch=str(data.get("watch") or ""),
            exports=tuple(JobStatus.from_dict(x) for x in exports or [] if isinstance(x, dict)),
            verified=tuple(
                VerifiedFile.from_json(v) for v in verified or [] if isinstance(v, dict)
            ),
            problems=tuple(str(p) for p in problems) if isinstance(problems, list) else (),
            alerts=tuple(
                a
                for a in (ActiveCondition.from_json(x) for x in alerts or [] if isinstance(x, dict))
                if a is not None
            ),
            at=str(data.get("at") or ""),
            pid=pid if isinstance(pid, int) else None,
            running=bool(data.get("running", False)),
            node=str((cluster or {}).get("node") or ""),
            nodes=tuple(NodeStatus.from_json(n) for n in nodes or [] if isinstance(n, dict))
            if isinstance(nodes, list)
            else (),
            nodes_problem=str((cluster or {}).get("problem") or ""),
        )
