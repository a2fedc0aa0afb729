"""The intake's status as typed records: what the status page, ``/metrics`` and ``leadpipe
status`` show about the drop folder.

:class:`IntakeStatus` is taken under the intake's lock in one go
(:meth:`pipeline.dropfolder.intake.Intake.status`). Each record renders itself as JSON
(``to_json``) for ``/status.json`` and the status file, and reads itself back (``from_json``) for
``leadpipe status``, which runs in another process; a field missing from an older file takes
its default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.api.quota import QuotaStatus
from pipeline.dropfolder.jobs import Finished
from pipeline.outcome import FileOutcome

Json = dict[str, Any]


def _str(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key)
    return default if value is None else str(value)


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class FileInFolder:
    """A file in a campaign folder that is not being processed: waiting, arriving or ignored."""

    name: str
    preview: bool = False
    size: int | None = None
    problem: str = ""  #: why it is not taken yet
    stable_in: float | None = None  #: seconds until it may have settled (arriving files)
    resumed: bool = False  #: a claim an interrupted run left, taken first
    #: rows estimated from the file's size (docs/dropfolder.md, "Waiting for the daily budget")
    rows_estimate: int | None = None
    #: when it is likely done, at the measured rate and the day's request budget, after the
    #: files ahead of it in its campaign (ISO 8601; "" unknown; docs/dropfolder.md)
    eta: str = ""
    #: when it is likely taken: when the files ahead of it in its campaign are done ("" unknown)
    starts: str = ""

    def to_json(self) -> Json:
        out: Json = {"name": self.name, "preview": self.preview}
        if self.rows_estimate is not None:
            out["rows_estimate"] = self.rows_estimate
        if self.eta:
            out["eta"] = self.eta
        if self.starts:
            out["starts"] = self.starts
        if self.size is not None:
            out["size"] = self.size
        if self.problem:
            out["problem"] = self.problem
        if self.stable_in is not None:
            out["stable_in"] = self.stable_in
        if self.resumed:
            out["resumed"] = True
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileInFolder:
        size, stable = data.get("size"), data.get("stable_in")
        rows = data.get("rows_estimate")
        return cls(
            name=_str(data, "name"),
            preview=bool(data.get("preview")),
            size=int(size) if isinstance(size, int) else None,
            problem=_str(data, "problem"),
            stable_in=float(stable) if isinstance(stable, int | float) else None,
            resumed=bool(data.get("resumed")),
            rows_estimate=rows if isinstance(rows, int) and not isinstance(rows, bool) else None,
            eta=_str(data, "eta"),
            starts=_str(data, "starts"),
        )


def _int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class FileProgress:
    """How far the file being processed in a campaign is (docs/dropfolder.md, "Progress").

    ``rows_total`` is an estimate (a cheap count before reading) until the file has been read
    to the end (``total_exact``). ``rows_sent`` counts rows this run brought to an end at the
    API (uploaded, refused, duplicate, uncertain); ``rate`` is rows sent per second over the
    last minute; ``eta`` when the rest is likely sent at that rate.
    """

    name: str
    run: str = ""  #: this run of the file (one id per claim and start)
    preview: bool = False
    stage: str = ""  #: "starting", "reading", "uploading"
    rows_read: int = 0  #: data rows read and checked so far
    rows_rejected: int = 0  #: of those, rows that failed the checks
    rows_sent: int = 0  #: rows this run brought to an end at the API
    rows_total: int | None = None  #: data rows of the file (estimate until ``total_exact``)
    total_exact: bool = False
    rate: float | None = None  #: rows sent per second over the recent window (None: not yet)
    eta: str = ""  #: the likely finish, ISO 8601 ("" unknown)
    eta_seconds: float | None = None  #: seconds left at ``rate`` (None: unknown)
    started: str = ""  #: when this run began (ISO 8601)
    cancel: str = ""  #: who cancelled it and when, in words ("" not cancelled)
    #: this run's rows by receipt count key (accepted, rejected, refused_by_api, duplicates,
    #: uncertain): what ``/metrics`` counts as the rows go
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def rows_left(self) -> int | None:
        """Rows still to read or send (None: the total is not known)."""
        if self.rows_total is None:
            return None
        return max(0, self.rows_total - self.rows_sent - self.rows_rejected)

    def sentence(self) -> str:
        """In words: ``12,345 of ~200,000 rows sent (6%) · 12.5 rows/s · done by about ...``."""
        total = self.rows_total
        of = ""
        if total is not None:
            mark = "" if self.total_exact else "~"
            share = f" ({100 * self.rows_sent // total}%)" if total else ""
            of = f" of {mark}{total:,}"
        else:
            share = ""
        parts = [f"{self.rows_sent:,}{of} rows sent{share}", f"{self.rows_read:,} read"]
        if self.rows_rejected:
            parts.append(f"{self.rows_rejected:,} rejected")
        if self.rate is not None:
            parts.append(f"{self.rate:,.1f} rows/s")
        if self.eta:
            parts.append(f"done by about {self.eta.replace('T', ' ')[:16]}")
        if self.cancel:
            parts.append(f"cancelling ({self.cancel})")
        return " · ".join(parts)

    def to_json(self) -> Json:
        return {
            "name": self.name,
            "run": self.run,
            "preview": self.preview,
            "stage": self.stage,
            "rows_read": self.rows_read,
            "rows_rejected": self.rows_rejected,
            "rows_sent": self.rows_sent,
            "rows_total": self.rows_total,
            "total_exact": self.total_exact,
            "rate": self.rate,
            "eta": self.eta,
            "eta_seconds": self.eta_seconds,
            "started": self.started,
            "cancel": self.cancel,
            "counts": dict(self.counts),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileProgress:
        rate, left, counts = data.get("rate"), data.get("eta_seconds"), data.get("counts")
        return cls(
            name=_str(data, "name"),
            run=_str(data, "run"),
            preview=bool(data.get("preview")),
            stage=_str(data, "stage"),
            rows_read=_int(data, "rows_read") or 0,
            rows_rejected=_int(data, "rows_rejected") or 0,
            rows_sent=_int(data, "rows_sent") or 0,
            rows_total=_int(data, "rows_total"),
            total_exact=bool(data.get("total_exact")),
            rate=float(rate) if isinstance(rate, int | float) else None,
            eta=_str(data, "eta"),
            eta_seconds=float(left) if isinstance(left, int | float) else None,
            started=_str(data, "started"),
            cancel=_str(data, "cancel"),
            counts=(
                {str(k): int(v) for k, v in counts.items() if isinstance(v, int)}
                if isinstance(counts, dict)
                else {}
            ),
        )


@dataclass(frozen=True)
class CampaignStatus:
    """One campaign folder of the inbox."""

    folder: str = ""  #: its path ("" when only its files are known)
    known: bool = True  #: a campaign this account can reach (or not known yet)
    waiting: tuple[FileInFolder, ...] = ()  #: settled, queued (resumed claims first)
    settling: tuple[FileInFolder, ...] = ()  #: arriving: not settled yet
    ignored: tuple[FileInFolder, ...] = ()  #: never taken (not a regular file)
    in_progress: str | None = None  #: the file being processed
    progress: FileProgress | None = None  #: how far it is (None: not known, e.g. starting)

    def to_json(self) -> Json:
        return {
            "progress": self.progress.to_json() if self.progress is not None else None,
            "folder": self.folder,
            "known": self.known,
            "waiting": [f.to_json() for f in self.waiting],
            "settling": [f.to_json() for f in self.settling],
            "ignored": [f.to_json() for f in self.ignored],
            "in_progress": self.in_progress,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CampaignStatus:
        def files(key: str) -> tuple[FileInFolder, ...]:
            return tuple(FileInFolder.from_json(x) for x in _list(data, key) if isinstance(x, dict))

        busy, progress = data.get("in_progress"), data.get("progress")
        return cls(
            progress=FileProgress.from_json(progress) if isinstance(progress, dict) else None,
            folder=_str(data, "folder"),
            known=bool(data.get("known", True)),
            waiting=files("waiting"),
            settling=files("settling"),
            ignored=files("ignored"),
            in_progress=str(busy) if busy else None,
        )


@dataclass(frozen=True)
class RecentFile:
    """A finished file, as the recent-files list shows it (paths as text: it outlives runs)."""

    campaign: str
    name: str
    outcome: FileOutcome
    at: str  #: local time, ISO 8601
    preview: bool = False
    final: str | None = None
    receipt: str | None = None
    rejects: tuple[str, ...] = ()
    error: str | None = None
    message: str = ""
    counts: Mapping[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def of(cls, f: Finished) -> RecentFile:
        return cls(
            campaign=f.campaign,
            name=f.name,
            outcome=f.kind,
            at=f.at.isoformat(timespec="seconds"),
            preview=f.preview,
            final=str(f.final) if f.final else None,
            receipt=str(f.receipt) if f.receipt else None,
            rejects=tuple(str(p) for p in f.rejects),
            error=str(f.error) if f.error else None,
            message=f.message,
            counts=dict(f.counts),
            seconds=round(f.seconds, 3),
        )

    def to_json(self) -> Json:
        return {
            "campaign": self.campaign,
            "name": self.name,
            "preview": self.preview,
            "outcome": self.outcome.value,
            "at": self.at,
            "final": self.final,
            "receipt": self.receipt,
            "rejects": list(self.rejects),
            "error": self.error,
            "message": self.message,
            "counts": dict(self.counts),
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecentFile:
        counts = data.get("counts")
        seconds = data.get("seconds")
        return cls(
            campaign=_str(data, "campaign"),
            name=_str(data, "name"),
            outcome=FileOutcome.parse(_str(data, "outcome"), FileOutcome.FAILED),
            at=_str(data, "at"),
            preview=bool(data.get("preview")),
            final=data.get("final") or None,
            receipt=data.get("receipt") or None,
            rejects=tuple(str(p) for p in _list(data, "rejects")),
            error=data.get("error") or None,
            message=_str(data, "message"),
            counts=(
                {str(k): int(v) for k, v in counts.items() if isinstance(v, int)}
                if isinstance(counts, dict)
                else {}
            ),
            seconds=float(seconds) if isinstance(seconds, int | float) else 0.0,
        )


@dataclass(frozen=True)
class IntakeStatus:
    """The drop folder now: the inbox, the campaign folders, the breaker, what finished."""

    inbox: str
    inbox_ok: bool = True
    inbox_problem: str = ""
    stray: tuple[str, ...] = ()  #: files at the top of the inbox (never taken)
    waiting_for_api: bool = False
    api_problem: str = ""
    retry_in: float = 0.0  #: seconds until the next try while waiting for the API
    campaigns: Mapping[str, CampaignStatus] = field(default_factory=dict)
    queue_depth: int = 0
    in_progress: int = 0
    totals: Mapping[str, int] = field(default_factory=dict)  #: finished files by outcome
    recent: tuple[RecentFile, ...] = ()  #: newest first
    #: the account's daily request budget (None: not kept, e.g. the embedded sandbox)
    quota: QuotaStatus | None = None
    #: taking files is paused until then (the day's budget resets; ISO 8601, "" not paused)
    resume_at: str = ""

    @property
    def waiting(self) -> int:
        """Files settled and waiting to be taken."""
        return sum(len(c.waiting) for c in self.campaigns.values())

    @property
    def arriving(self) -> int:
        """Files still settling (being copied, or just dropped)."""
        return sum(len(c.settling) for c in self.campaigns.values())

    @property
    def settling_without_problem(self) -> bool:
        """Some file is still settling normally (not held back by a problem)."""
        return any(not f.problem for c in self.campaigns.values() for f in c.settling)

    def to_json(self) -> Json:
        return {
            "inbox": self.inbox,
            "inbox_ok": self.inbox_ok,
            "inbox_problem": self.inbox_problem,
            "stray": list(self.stray),
            "waiting_for_api": self.waiting_for_api,
            "api_problem": self.api_problem,
            "retry_in": self.retry_in,
            "campaigns": {code: c.to_json() for code, c in self.campaigns.items()},
            "queue_depth": self.queue_depth,
            "in_progress": self.in_progress,
            "totals": dict(self.totals),
            "recent": [r.to_json() for r in self.recent],
            "quota": self.quota.to_json() if self.quota is not None else None,
            "resume_at": self.resume_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IntakeStatus:
        campaigns = data.get("campaigns")
        totals = data.get("totals")
        retry = data.get("retry_in")
        quota = data.get("quota")
        return cls(
            inbox=_str(data, "inbox"),
            inbox_ok=bool(data.get("inbox_ok", True)),
            inbox_problem=_str(data, "inbox_problem"),
            stray=tuple(str(n) for n in _list(data, "stray")),
            waiting_for_api=bool(data.get("waiting_for_api")),
            api_problem=_str(data, "api_problem"),
            retry_in=float(retry) if isinstance(retry, int | float) else 0.0,
            campaigns=(
                {
                    str(k): CampaignStatus.from_json(v)
                    for k, v in campaigns.items()
                    if isinstance(v, dict)
                }
                if isinstance(campaigns, dict)
                else {}
            ),
            queue_depth=_int(data, "queue_depth") or 0,
            in_progress=_int(data, "in_progress") or 0,
            totals=(
                {str(k): int(v) for k, v in totals.items() if isinstance(v, int)}
                if isinstance(totals, dict)
                else {}
            ),
            recent=tuple(
                RecentFile.from_json(r) for r in _list(data, "recent") if isinstance(r, dict)
            ),
            quota=QuotaStatus.from_json(quota) if isinstance(quota, dict) else None,
            resume_at=_str(data, "resume_at"),
        )
