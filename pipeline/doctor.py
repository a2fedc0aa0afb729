"""``leadpipe doctor``: can everything configured work with this API account?

:func:`diagnose` checks reachability, credentials, rights and rate limits, lists the reachable
campaigns and searches, and then says in plain words what intake and exports need and lack.
It returns a :class:`DoctorReport`; the CLI only prints it (exit 0 when ``report.ok``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.api import Account, Campaign, Counts, HeroBaseClient, Limits, Search
from pipeline.config import Settings
from pipeline.errors import ApiError, NotFound, NotPermitted, Unavailable, Uncertain

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    """One line of the verdict: ``ok``, ``warn`` (works, with a caveat) or ``fail``."""

    level: Level
    text: str


@dataclass
class DoctorReport:
    """Everything ``leadpipe doctor`` found; ``ok`` when everything configured can work."""

    api_url: str
    embedded: bool
    reachable: bool = False
    credentials_ok: bool = False
    account: Account | None = None
    limits: Limits | None = None
    counts: Counts | None = None
    campaigns: list[Campaign] | None = None
    searches: list[Search] | None = None
    connection: list[Finding] = field(default_factory=list)
    intake: list[Finding] = field(default_factory=list)
    exports: list[Finding] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        """Every finding, connection first."""
        return [*self.connection, *self.intake, *self.exports]

    @property
    def problems(self) -> list[str]:
        """The failing findings, as text."""
        return [f.text for f in self.findings if f.level == "fail"]

    @property
    def ok(self) -> bool:
        """True when nothing configured is blocked."""
        return self.reachable and self.credentials_ok and not self.problems

    @property
    def exit_code(self) -> int:
        """0 when everything configured can work, 1 otherwise."""
        return 0 if self.ok else 1

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for programs."""
        acc = self.account
        return {
            "ok": self.ok,
            "api_url": self.api_url,
            "embedded": self.embedded,
            "reachable": self.reachable,
            "credentials_ok": self.credentials_ok,
            "account": None
            if acc is None
            else {
                "username": acc.username,
                "project_rights": list(acc.project_rights),
                "resource_rights": {k: list(v) for k, v in acc.resource_rights.items()},
            },
            "limits": None
            if self.limits is None
            else {"per_minute": self.limits.per_minute, "per_day": self.limits.per_day},
            "counts": None
            if self.counts is None
            else {"minute": self.counts.minute, "day": self.counts.day},
            "campaigns": None
            if self.campaigns is None
            else [
                {"code": c.code, "name": c.name, "project": c.project, "active": c.active}
                for c in self.campaigns
            ],
            "searches": None
            if self.searches is None
            else [{"name": s.name, "description": s.description} for s in self.searches],
            "findings": {
                section: [{"level": f.level, "text": f.text} for f in items]
                for section, items in (
                    ("connection", self.connection),
                    ("intake", self.intake),
                    ("exports", self.exports),
                )
            },
            "problems": self.problems,
        }


def inbox_folders(inbox: Path) -> list[str]:
    """Campaign folders of the inbox: its subdirectories not starting with '.'."""
    if not inbox.is_dir():
        return []
    return sorted(p.name for p in inbox.iterdir() if p.is_dir() and not p.name.startswith("."))


def diagnose(settings: Settings, client: HeroBaseClient) -> DoctorReport:
    """Check the API account against what the configuration needs."""
    report = DoctorReport(api_url=client.url, embedded=settings.api.embedded)
    con = report.connection
    try:
        report.account = client.account()
        report.reachable = report.credentials_ok = True
        con.append(Finding("ok", f"reached {client.url} as {report.account.username}"))
    except (Unavailable, Uncertain) as exc:
        con.append(Finding("fail", f"cannot reach the API: {exc}"))
        return report
    except NotPermitted as exc:
        report.reachable = True
        if exc.status == 401:
            con.append(Finding("fail", f"the credentials were refused: {exc}"))
            return report
        report.credentials_ok = True
        con.append(
            Finding(
                "warn",
                "the account may not read its own rights (Account: GET); "
                "rights are judged by trying each endpoint",
            )
        )
    except NotFound as exc:
        report.reachable = True
        con.append(
            Finding(
                "fail",
                f"the account endpoint was not found ({exc}); check api.url "
                "(it must end in /api) and api.endpoints.myaccount",
            )
        )
        return report
    except ApiError as exc:
        report.reachable = True
        con.append(Finding("fail", f"the account check failed: {exc}"))
        return report

    _rate_limits(client, report)
    try:
        report.campaigns = client.campaigns()
    except NotPermitted as exc:
        con.append(Finding("warn", f"cannot list campaigns: {_why(exc)}"))
    except ApiError as exc:
        con.append(Finding("warn", f"cannot list campaigns: {exc}"))
    try:
        report.searches = client.searches()
    except NotPermitted as exc:
        con.append(Finding("warn", f"cannot list searches: {_why(exc)}"))
    except ApiError as exc:
        con.append(Finding("warn", f"cannot list searches: {exc}"))

    _intake(settings, client, report)
    _exports(settings, report)
    return report


def _why(exc: NotPermitted) -> str:
    return f"the account lacks {exc.missing_right}" if exc.missing_right else str(exc)


def _can(report: DoctorReport, resource: str, verb: str) -> bool | None:
    """The right as the account lists it; None when the rights are unknown."""
    return None if report.account is None else report.account.can(resource, verb)


def _rate_limits(client: HeroBaseClient, report: DoctorReport) -> None:
    try:
        report.limits = client.limits()
        report.counts = client.counts()
    except ApiError as exc:
        report.connection.append(Finding("warn", f"cannot read the request limits: {exc}"))
        return
    lim, cnt = report.limits, report.counts
    ceiling = client.limiter.ceiling
    text = f"rate limits: {lim.per_minute}/minute, {lim.per_day}/day (leadpipe uses at most "
    text += f"{ceiling}/minute); used now: {cnt.minute} this minute, {cnt.day} today"
    level: Level = "ok"
    if lim.per_day and cnt.day is not None and cnt.day >= 0.9 * lim.per_day:
        level = "warn"
        text += " - the daily quota is nearly used up"
    report.connection.append(Finding(level, text))


def _intake(settings: Settings, client: HeroBaseClient, report: DoctorReport) -> None:
    out = report.intake
    can_post = _can(report, "Leads", "POST")
    if can_post is False:
        out.append(
            Finding("fail", "intake needs Leads: POST to upload leads; the account lacks it")
        )
    elif can_post:
        out.append(Finding("ok", "Leads: POST: the account may upload leads"))
    if _can(report, "Leads", "GET") is False:
        out.append(
            Finding(
                "warn",
                "without Leads: GET, uploads whose outcome is uncertain (timeouts) "
                "cannot be checked automatically; they are listed for a person instead",
            )
        )
    folders = inbox_folders(settings.paths.inbox)
    if not folders:
        out.append(
            Finding(
                "ok",
                f"no campaign folders in {settings.paths.inbox} yet "
                "(create inbox/<campaignCode>/ to start)",
            )
        )
    by_code = {c.code.lower(): c for c in report.campaigns or []}
    for code in folders:
        camp = by_code.get(code.lower())
        where = f"inbox/{code}"
        if camp is not None:
            level: Level = "ok" if camp.active else "warn"
            note = "" if camp.active else " (the campaign is inactive)"
            out.append(
                Finding(
                    level,
                    f"{where}: campaign {camp.code} ({camp.name}) in project "
                    f"'{camp.project}' is reachable{note}",
                )
            )
            continue
        try:
            client.import_example(code)
            out.append(Finding("ok", f"{where}: campaign {code} is reachable"))
        except NotFound:
            out.append(
                Finding(
                    "fail",
                    f"{where}: there is no campaign with code {code}; "
                    "rename the folder to a campaign code",
                )
            )
        except NotPermitted as exc:
            right = exc.missing_right or "a project right"
            if right.startswith("a project right") or right.startswith("Campaigns"):
                text = (
                    f"{where}: the account lacks a project right reaching campaign {code}; "
                    "ask for its project to be added to the account's project rights"
                )
            else:
                text = f"{where}: the account lacks {right}"
            out.append(Finding("fail", text))
        except ApiError as exc:
            out.append(Finding("fail", f"{where}: cannot check campaign {code}: {exc}"))


def _exports(settings: Settings, report: DoctorReport) -> None:
    out = report.exports
    can_get = _can(report, "Leads", "GET")
    if not settings.exports:
        text = "no exports configured ([[exports]])"
        if can_get is False:
            text += "; exports would need Leads: GET, which the account lacks"
        out.append(Finding("ok", text))
        return
    if can_get is False or (can_get is None and report.searches is None):
        out.append(
            Finding(
                "fail",
                f"exports need Leads: GET to read leads; the account lacks it "
                f"({len(settings.exports)} export(s) configured)",
            )
        )
        return
    out.append(Finding("ok", "Leads: GET: the account may export leads"))
    names = {s.name for s in report.searches or []}
    for job in settings.exports:
        if job.search in names:
            out.append(Finding("ok", f"export {job.name}: search '{job.search}' exists"))
        else:
            avail = ", ".join(sorted(names)) or "none"
            out.append(
                Finding(
                    "fail",
                    f"export {job.name}: search '{job.search}' does not exist or the "
                    f"account may not use it (available: {avail})",
                )
            )
