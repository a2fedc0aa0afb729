"""The API endpoints of the contract (herobase-api.md), as plain functions of a parsed request.

Each handler takes the :class:`Tenant` and a :class:`Req` and returns a :class:`Reply` or raises
:class:`HttpError`; the ASGI plumbing (auth, rate limits, faults, rendering) lives in ``app.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.sandbox.render import CULTURES, ENCODINGS, csv_chunks
from pipeline.sandbox.seed import Account, Campaign, SearchDef
from pipeline.sandbox.store import CLOSED_STATUSES, OPEN_STATUSES, Lead, fmt_time
from pipeline.sandbox.tenant import Tenant

MAX_TAKE = 10_000
_CULTURE_NAMES = ", ".join(c.name for c in CULTURES.values())


class HttpError(Exception):
    """An API error answered with the ServiceStack error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        errors: Sequence[dict[str, str]] = (),
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = list(errors)
        self.headers = list(headers)


@dataclass
class Req:
    """A parsed API request; query keys are lower-case."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    account: Account
    json_body: Any = None


@dataclass
class Reply:
    """A handler's answer: a JSON payload, or pre-encoded chunks with a content type."""

    payload: Any = None
    status: int = 200
    chunks: Iterator[bytes] | None = None
    content_type: bytes = b"application/json; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


# --- query helpers ----------------------------------------------------------------------------
def q1(req: Req, *names: str) -> str | None:
    """The last value of the first parameter present among ``names`` (case-insensitive)."""
    for name in names:
        values = req.query.get(name.lower())
        if values:
            return values[-1]
    return None


def qlist(req: Req, name: str) -> list[str]:
    """Every value of ``name``, comma lists split, blanks dropped."""
    out: list[str] = []
    for value in req.query.get(name.lower(), []):
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def qbool(req: Req, name: str, default: bool = False) -> bool:
    """A boolean parameter: 1/true/yes or 0/false/no."""
    value = q1(req, name)
    if value is None or value == "":
        return default
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise bad_param(name, f"'{value[:40]}' is not a boolean (use true or false)")


def qint(req: Req, name: str, default: int | None, low: int, high: int) -> int | None:
    """A whole-number parameter within [low, high]."""
    value = q1(req, name)
    if value is None or value == "":
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise bad_param(name, f"'{value[:40]}' is not a whole number") from None
    if not low <= number <= high:
        raise bad_param(name, f"{number} is out of range ({low}..{high})")
    return number


def qdate(tenant: Tenant, req: Req, *names: str, required: bool = False) -> str | None:
    """A date or ISO date-time parameter as a stored-format tenant-local timestamp."""
    value = q1(req, *names)
    if value is None or value.strip() == "":
        if required:
            raise bad_param(names[0], f"'{names[0]}' is required (YYYY-MM-DD or an ISO date-time)")
        return None
    text = value.strip()
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise bad_param(
            names[0], f"'{text[:40]}' is not a date (use YYYY-MM-DD or an ISO date-time)"
        ) from None
    return fmt_time(tenant.to_local(when))


def bad_param(name: str, message: str) -> HttpError:
    """400 naming the parameter."""
    return HttpError(
        400,
        "ArgumentException",
        message,
        [{"errorCode": "InvalidValue", "fieldName": name, "message": message}],
    )


# --- rights -----------------------------------------------------------------------------------
def need(req: Req, resource: str, verb: str) -> None:
    """403 unless the account holds ``verb`` on ``resource``."""
    if not req.account.can(resource, verb):
        raise HttpError(
            403,
            "Forbidden",
            f"the account {req.account.username} lacks the right '{resource}: {verb}'",
        )


def campaign_for(tenant: Tenant, req: Req, code: str | None, param: str) -> Campaign:
    """The campaign named by ``code``: 400 missing, 404 unknown, 403 outside the rights."""
    if code is None or not code.strip():
        raise bad_param(param, f"'{param}' is required")
    campaign = tenant.seed.campaign(code.strip())
    if campaign is None:
        raise HttpError(404, "NotFound", f"campaign '{code[:80]}' does not exist")
    if not req.account.reaches(campaign.project):
        raise HttpError(
            403,
            "Forbidden",
            f"the account {req.account.username} has no right on project '{campaign.project}'",
        )
    return campaign


def search_for(tenant: Tenant, req: Req) -> tuple[SearchDef, list[Campaign]]:
    """The search named by ``searchName``: 400 missing, 404 unknown, 403 unreachable."""
    name = q1(req, "searchName")
    if name is None or not name.strip():
        raise bad_param("searchName", "'searchName' is required")
    search = next((s for s in tenant.seed.searches if s.name.lower() == name.strip().lower()), None)
    if search is None:
        raise HttpError(404, "NotFound", f"lead search '{name[:80]}' does not exist")
    campaigns = tenant.search_campaigns(search, req.account)
    if not campaigns:
        raise HttpError(
            403, "Forbidden", f"the account {req.account.username} may not use search '{name}'"
        )
    return search, campaigns


# --- account ----------------------------------------------------------------------------------
def myaccount(tenant: Tenant, req: Req) -> Reply:
    need(req, "Account", "GET")
    a = req.account
    return Reply(
        {
            "username": a.username,
            "logRequestData": a.log_request_data,
            "projectRights": list(a.project_rights),
            "resourceRights": {k: list(v) for k, v in a.resource_rights.items()},
        }
    )


def limits(tenant: Tenant, req: Req) -> Reply:
    need(req, "Account", "GET")
    return Reply({"perMinute": tenant.limiter.per_minute, "perDay": tenant.limiter.per_day})


def counts(tenant: Tenant, req: Req) -> Reply:
    need(req, "Account", "GET")
    minute, day = tenant.limiter.counts(req.account.username, tenant.now())
    return Reply({"minute": minute, "day": day})


def projects(tenant: Tenant, req: Req) -> Reply:
    need(req, "Campaigns", "GET")
    return Reply(
        [
            {"uniqueId": p.unique_id, "name": p.name}
            for p in tenant.seed.projects
            if req.account.reaches(p.name)
        ]
    )


def campaigns(tenant: Tenant, req: Req) -> Reply:
    need(req, "Campaigns", "GET")
    return Reply(
        [
            {
                "uniqueId": c.unique_id,
                "code": c.code,
                "name": c.name,
                "project": c.project,
                "active": c.active,
            }
            for c in tenant.reachable_campaigns(req.account)
        ]
    )


def example(tenant: Tenant, req: Req) -> Reply:
    if not (req.account.can("Campaigns", "GET") or req.account.can("Leads", "POST")):
        need(req, "Campaigns", "GET")
    campaign = campaign_for(tenant, req, q1(req, "campaignCode"), "campaignCode")
    show_all = qbool(req, "showAllDataEntries")
    data = {
        f.name: f"example {f.name}, type is {f.type}, regex used for validation {f.regex}"
        for f in campaign.fields
        if show_all or f.required
    }
    return Reply({"campaignCode": campaign.code, "data": data})


# --- import -----------------------------------------------------------------------------------
def create_lead(tenant: Tenant, req: Req) -> Reply:
    need(req, "Leads", "POST")
    body = req.json_body
    if not isinstance(body, dict):
        raise HttpError(400, "SerializationException", "the request body must be a JSON object")
    low = {str(k).lower(): v for k, v in body.items()}
    code = low.get("campaigncode")
    if not isinstance(code, str):
        raise bad_param("campaignCode", "'campaignCode' is required and must be a string")
    campaign = campaign_for(tenant, req, code, "campaignCode")
    data = low.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise bad_param("data", "'data' must be an object of field names to strings")
    errors: list[dict[str, str]] = []
    clean: dict[str, str] = {}
    for key, value in data.items():
        f = campaign.field_named(str(key))
        if f is None:
            errors.append(
                _ferr(
                    "UnknownField",
                    str(key),
                    f"'{str(key)[:80]}' is not a field of campaign {campaign.code}",
                )
            )
            continue
        if f.name in clean:
            errors.append(_ferr("Duplicate", f.name, f"'{f.name}' is given twice"))
            continue
        if not isinstance(value, str):
            errors.append(
                _ferr(
                    "InvalidType",
                    f.name,
                    f"'{f.name}' must be a string, not {json.dumps(value)[:40]}",
                )
            )
            continue
        if value and not f.matches(value):
            errors.append(
                _ferr(
                    "RegularExpression",
                    f.name,
                    f"'{value[:100]}' does not match the field's pattern",
                )
            )
            continue
        clean[f.name] = value
    for f in campaign.fields:
        if (
            f.required
            and not clean.get(f.name)
            and not any(e["fieldName"] == f.name for e in errors)
        ):
            errors.append(_ferr("NotEmpty", f.name, f"'{f.name}' is required"))
    if errors:
        raise HttpError(400, "ValidationException", "Lead data is invalid", errors)
    stamp = fmt_time(tenant.now())
    lead = tenant.store.new(
        campaign.code,
        campaign.unique_id,
        clean,
        upload_time=stamp,
        uploaded_by=req.account.username,
    )
    return Reply(lead.render())


def _ferr(code: str, name: str, message: str) -> dict[str, str]:
    return {"errorCode": code, "fieldName": name, "message": message}


# --- exports ----------------------------------------------------------------------------------
def searches(tenant: Tenant, req: Req) -> Reply:
    need(req, "Leads", "GET")
    return Reply(
        [
            {"name": s.name, "description": s.description}
            for s in tenant.visible_searches(req.account)
        ]
    )


def _page(req: Req, leads: list[Lead]) -> list[Lead]:
    skip = qint(req, "skip", 0, 0, 10**9) or 0
    take = qint(req, "take", None, 1, MAX_TAKE)
    leads.sort(key=lambda lead: (lead.last_modified_time, lead.seq))
    return leads[skip : skip + take] if take is not None else leads[skip:]


def _search_leads(tenant: Tenant, req: Req) -> tuple[list[Lead], list[Campaign]]:
    search, camps = search_for(tenant, req)
    start = qdate(tenant, req, "from", "modifiedFrom", required=True)
    end = qdate(tenant, req, "to", "modifiedTo")
    codes = {c.code for c in camps}
    statuses, closures = set(search.statuses), set(search.closures)
    with tenant.store.lock:
        leads = [
            lead
            for lead in tenant.store.all()
            if lead.campaign_code in codes
            and (not statuses or lead.status in statuses)
            and (not closures or lead.closure in closures)
            and (start is None or lead.last_modified_time >= start)
            and (end is None or lead.last_modified_time < end)
        ]
    return leads, camps


def leads_objects(tenant: Tenant, req: Req) -> Reply:
    need(req, "Leads", "GET")
    leads, _ = _search_leads(tenant, req)
    return Reply(tenant.render_leads(_page(req, leads)))


def leads_csv(tenant: Tenant, req: Req) -> Reply:
    need(req, "Leads", "GET")
    enc = (q1(req, "encoding") or "utf-8").strip().lower()
    codec = ENCODINGS.get(enc)
    if codec is None:
        raise bad_param(
            "encoding",
            f"encoding '{enc[:40]}' is not supported (use one of {', '.join(sorted(ENCODINGS))})",
        )
    cul = (q1(req, "culture") or "en-US").strip()
    culture = CULTURES.get(cul.lower())
    if culture is None:
        raise bad_param(
            "culture",
            f"culture '{cul[:40]}' is not supported (use one of {_CULTURE_NAMES})",
        )
    system = qbool(req, "useSystemHeaders", default=True)
    leads, camps = _search_leads(tenant, req)
    fields: list[tuple[str, str]] = []
    for c in camps:
        for f in c.fields:
            if all(f.name != name for name, _ in fields):
                fields.append((f.name, f.label or f.name))
    rows = _page(req, leads)
    with tenant.store.lock:
        chunks = list(csv_chunks(rows, fields, culture=culture, system_headers=system, codec=codec))
    charset = "utf-8" if codec.startswith("utf-8") else enc
    return Reply(
        chunks=iter(chunks),
        content_type=f"text/csv; charset={charset}".encode(),
        headers=[(b"content-disposition", b'attachment; filename="leads.csv"')],
    )


def simpleleads(tenant: Tenant, req: Req) -> Reply:
    need(req, "Leads", "GET")
    reach = tenant.reachable_campaigns(req.account)
    patterns = qlist(req, "projects")
    if patterns:
        reach = [c for c in reach if any(_project_match(p, c.project) for p in patterns)]
    wanted = qlist(req, "campaigns")
    if wanted:
        picked = {campaign_for(tenant, req, w, "Campaigns").code for w in wanted}
        reach = [c for c in reach if c.code in picked]
    codes = {c.code for c in reach}
    statuses = set(qlist(req, "statuses"))
    closures = set(qlist(req, "leadClosures"))
    all_closed, all_open = qbool(req, "allClosedStatuses"), qbool(req, "allOpenStatuses")
    groups: set[str] = set()
    if all_closed:
        groups |= CLOSED_STATUSES
    if all_open:
        groups |= OPEN_STATUSES
    unique_id = (q1(req, "uniqueId") or "").strip().upper()
    start = qdate(tenant, req, "modifiedFrom", "from")
    end = qdate(tenant, req, "modifiedTo", "to")
    with tenant.store.lock:
        leads = [
            lead
            for lead in tenant.store.all()
            if lead.campaign_code in codes
            and (not statuses or lead.status in statuses)
            and (not groups or lead.status in groups)
            and (not closures or lead.closure in closures)
            and (not unique_id or lead.unique_id.upper() == unique_id)
            and (start is None or lead.last_modified_time >= start)
            and (end is None or lead.last_modified_time < end)
        ]
    return Reply(tenant.render_leads(_page(req, leads)))


def _project_match(pattern: str, project: str) -> bool:
    if pattern.endswith("*"):
        return project.startswith(pattern[:-1])
    return pattern == project


def one_lead(tenant: Tenant, req: Req, unique_id: str) -> Reply:
    need(req, "Leads", "GET")
    lead = tenant.store.get(unique_id)
    if lead is None:
        raise HttpError(404, "NotFound", f"lead '{unique_id[:40]}' does not exist")
    campaign = tenant.seed.campaign(lead.campaign_code)
    if campaign is None or not req.account.reaches(campaign.project):
        raise HttpError(
            403, "Forbidden", f"the account {req.account.username} may not read this lead"
        )
    return Reply(tenant.render_leads([lead])[0])


Handler = Callable[[Tenant, Req], Reply]

#: (method, lower-case path relative to the base path) -> handler.
ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/myaccount"): myaccount,
    ("GET", "/myaccount/request/limits"): limits,
    ("GET", "/myaccount/request/counts"): counts,
    ("GET", "/projects"): projects,
    ("GET", "/campaigns"): campaigns,
    ("GET", "/leads/example"): example,
    ("POST", "/leads"): create_lead,
    ("GET", "/leads"): leads_objects,
    ("GET", "/leads/searches"): searches,
    ("GET", "/leads/csv"): leads_csv,
    ("GET", "/simpleleads"): simpleleads,
}
KNOWN_PATHS = frozenset(path for _, path in ROUTES)
