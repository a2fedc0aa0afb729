"""Typed records for what HeroBase answers (docs/api-contract.md).

Parsing is tolerant of key case (ServiceStack binds case-insensitively) and keeps the raw object
where callers may need more than the typed fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _low(obj: Any) -> dict[str, Any]:
    """A dict's keys lower-cased (non-dicts become an empty dict)."""
    if not isinstance(obj, Mapping):
        return {}
    return {str(k).lower(): v for k, v in obj.items()}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _opt_text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


@dataclass(frozen=True)
class Account:
    """The API account (``GET /myaccount``) and its rights."""

    username: str
    project_rights: tuple[str, ...] = ()
    resource_rights: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any) -> Account:
        """Build from the ``/myaccount`` answer."""
        low = _low(obj)
        rights_raw = low.get("resourcerights")
        rights: dict[str, tuple[str, ...]] = {}
        if isinstance(rights_raw, Mapping):
            for res, verbs in rights_raw.items():
                if isinstance(verbs, list | tuple):
                    rights[str(res)] = tuple(str(v).upper() for v in verbs)
        projects = low.get("projectrights")
        return cls(
            username=_text(low.get("username")),
            project_rights=tuple(str(p) for p in projects) if isinstance(projects, list) else (),
            resource_rights=rights,
        )

    def can(self, resource: str, verb: str) -> bool:
        """True when ``resourceRights[resource]`` allows ``verb`` (case-insensitive)."""
        verb = verb.upper()
        for res, verbs in self.resource_rights.items():
            if res.lower() == resource.lower() and verb in verbs:
                return True
        return False


@dataclass(frozen=True)
class Limits:
    """The account's request limits (``/myaccount/request/limits``)."""

    per_minute: int | None
    per_day: int | None

    @classmethod
    def from_json(cls, obj: Any) -> Limits:
        """Build from the limits answer."""
        low = _low(obj)
        return cls(_opt_int(low.get("perminute")), _opt_int(low.get("perday")))


@dataclass(frozen=True)
class Counts:
    """Requests counted so far in this minute and day (``/myaccount/request/counts``)."""

    minute: int | None
    day: int | None

    @classmethod
    def from_json(cls, obj: Any) -> Counts:
        """Build from the counts answer."""
        low = _low(obj)
        return cls(_opt_int(low.get("minute")), _opt_int(low.get("day")))


def _opt_int(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Project:
    """A project (``GET /projects``)."""

    unique_id: str
    name: str

    @classmethod
    def from_json(cls, obj: Any) -> Project:
        """Build from one element of the projects answer."""
        low = _low(obj)
        return cls(_text(low.get("uniqueid")), _text(low.get("name")))


@dataclass(frozen=True)
class Campaign:
    """A campaign the account may reach (``GET /campaigns``)."""

    unique_id: str
    code: str
    name: str
    project: str
    active: bool

    @classmethod
    def from_json(cls, obj: Any) -> Campaign:
        """Build from one element of the campaigns answer."""
        low = _low(obj)
        active = low.get("active", True)
        return cls(
            unique_id=_text(low.get("uniqueid")),
            code=_text(low.get("code")),
            name=_text(low.get("name")),
            project=_text(low.get("project")),
            active=active if isinstance(active, bool) else str(active).lower() == "true",
        )


@dataclass(frozen=True)
class Search:
    """A saved lead search (export view) the account may use."""

    name: str
    description: str

    @classmethod
    def from_json(cls, obj: Any) -> Search:
        """Build from one element of the searches answer."""
        low = _low(obj)
        return cls(_text(low.get("name")), _text(low.get("description")))


@dataclass(frozen=True)
class CreatedLead:
    """The answer to ``POST /leads``: the new lead's ``uniqueId`` and the raw object.

    ``unique_id`` is None when the (successful) answer did not carry one.
    """

    unique_id: str | None
    raw: Mapping[str, Any]

    def __repr__(self) -> str:  # lead data stays out of logs
        return f"CreatedLead(unique_id={self.unique_id!r})"


@dataclass(frozen=True)
class Lead:
    """A lead object (docs/api-contract.md, "Exports").

    Times are strings exactly as the API sent them.
    """

    unique_id: str
    status: str
    closure: str
    priority: int | None
    upload_time: str
    last_modified_time: str
    first_processed_time: str | None
    campaign_code: str
    campaign_id: str
    data: Mapping[str, str]
    raw: Mapping[str, Any]

    @classmethod
    def from_json(cls, obj: Any) -> Lead:
        """Build from a lead object (``/leads``, ``/simpleleads``, ``/leads/{id}``)."""
        low = _low(obj)
        camp = _low(low.get("campaign"))
        data_raw = low.get("data")
        data = (
            {str(k): _text(v) for k, v in data_raw.items()} if isinstance(data_raw, Mapping) else {}
        )
        return cls(
            unique_id=_text(low.get("uniqueid")),
            status=_text(low.get("status")),
            closure=_text(low.get("closure")),
            priority=_opt_int(low.get("priority")),
            upload_time=_text(low.get("uploadtime")),
            last_modified_time=_text(low.get("lastmodifiedtime")),
            first_processed_time=_opt_text(low.get("firstprocessedtime")),
            campaign_code=_text(camp.get("code") or low.get("campaigncode")),
            campaign_id=_text(camp.get("uniqueid") or low.get("campaignid")),
            data=data,
            raw=dict(obj) if isinstance(obj, Mapping) else {},
        )

    def __repr__(self) -> str:  # lead data stays out of logs
        return (
            f"Lead(unique_id={self.unique_id!r}, campaign_code={self.campaign_code!r}, "
            f"status={self.status!r}, closure={self.closure!r})"
        )
