"""Request helpers and the account, campaign and import endpoints (docs/api-contract.md).

Each handler takes the :class:`Tenant` and a :class:`Req` and returns a :class:`Reply` or raises
:class:`HttpError`; the ASGI plumbing (auth, rate limits, faults, rendering) lives in ``app.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.sandbox.render import CULTURES
from pipeline.sandbox.seed import Account, Campaign
from pipeline.sandbox.store import fmt_time
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
    now: datetime
    json_body: Any = None


@dataclass
class Reply:
    """A handler's answer: a JSON payload (NO_BODY: none at all), or pre-encoded chunks.

    A list payload is shaped by the tenant's profile (``Profile.list_answer``) when sent.
    """

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


# --- account ----------------------------------------------------------------------------------
def myaccount(tenant: Tenant, req: Req) -> Reply:
    """GET /myaccount: the login and its rights."""
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
    """GET /myaccount/request/limits."""
    need(req, "Account", "GET")
    return Reply({"perMinute": tenant.limiter.per_minute, "perDay": tenant.limiter.per_day})


def counts(tenant: Tenant, req: Req) -> Reply:
    """GET /myaccount/request/counts (this request included)."""
    need(req, "Account", "GET")
    minute, day = tenant.limiter.counts(req.account.username, req.now)
    return Reply({"minute": minute, "day": day})


def projects(tenant: Tenant, req: Req) -> Reply:
    """GET /projects: the projects the account reaches."""
    need(req, "Campaigns", "GET")
    return Reply(
        [
            {"uniqueId": p.unique_id, "name": p.name}
            for p in tenant.seed.projects
            if req.account.reaches(p.name)
        ]
    )


def campaigns(tenant: Tenant, req: Req) -> Reply:
    """GET /campaigns: the campaigns the account reaches."""
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
    """GET /leads/example: the import example (needs Campaigns: GET or Leads: POST)."""
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
    """POST /leads: validate and store one lead; answers as the profile's ``post_answer`` says."""
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
    lead = tenant.store_posted(
        campaign, clean, upload_time=fmt_time(req.now), uploaded_by=req.account.username
    )
    status, payload = tenant.profile.created(tenant.render_leads([lead])[0])
    return Reply(payload, status)


def _ferr(code: str, name: str, message: str) -> dict[str, str]:
    return {"errorCode": code, "fieldName": name, "message": message}
