"""``HeroBaseClient``: typed methods for every endpoint of the contract (docs/api-contract.md).

Every request goes through one path (:class:`~pipeline.api.requester.Requester`): the shared
rate limiter, the contract's headers and pre-emptive Basic auth, no redirects, then error
mapping and the retry policy. GETs are retried on ``Unavailable`` and ``Uncertain``;
``POST /leads`` only on ``Unavailable`` (certainly not processed), never after an ``Uncertain``
fault: that is for the ledger-driven caller to reconcile.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, cast
from zoneinfo import ZoneInfo

import requests

from pipeline.api.models import (
    Account,
    Campaign,
    Counts,
    CreatedLead,
    Lead,
    Limits,
    Project,
    Search,
)
from pipeline.api.paging import iter_pages
from pipeline.api.ratelimit import RateLimiter, limiter_for
from pipeline.api.requester import Requester
from pipeline.api.retry import RetryPolicy
from pipeline.api.transport import (
    body_excerpt,
    content_type,
    is_html,
    make_session,
    safe_url,
)
from pipeline.clock import Clock, SystemClock
from pipeline.config import DEFAULT_PARAMS, ApiSettings
from pipeline.errors import Uncertain
from pipeline.files import atomic_open

When = date | datetime | str
CSV_CHUNK = 64 * 1024


class HeroBaseClient:
    """The one client of the HeroBase API. Thread-safe; share one per account."""

    def __init__(
        self,
        settings: ApiSettings,
        *,
        session: requests.Session | None = None,
        clock: Clock | None = None,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        timezone: str = "Europe/Copenhagen",
    ) -> None:
        self._own_session = session is None
        clock = clock or SystemClock()
        self._http = Requester(
            settings,
            session if session is not None else make_session(settings),
            clock,
            limiter
            or limiter_for(settings.url, settings.user, settings.requests_per_minute, clock),
            retry or RetryPolicy.from_settings(settings),
        )
        self._user = settings.user
        self._tz = ZoneInfo(timezone)
        self._p = {**DEFAULT_PARAMS, **settings.params}
        self._include = ",".join(settings.leads_include)

    @property
    def limiter(self) -> RateLimiter:
        """The account's shared rate limiter."""
        return self._http.limiter

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy."""
        return self._http.retry

    def __repr__(self) -> str:
        return f"HeroBaseClient(url={self.url!r}, user={self._user!r})"

    def __enter__(self) -> HeroBaseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if the client created it."""
        if self._own_session:
            self._http.session.close()

    @property
    def url(self) -> str:
        """The API base URL (without credentials)."""
        return safe_url(self._http.base)

    def endpoint(self, key: str) -> str:
        """The configured path of endpoint ``key`` (``[api.endpoints]``), as a template."""
        return self._http.url(key)[len(self._http.base) :]

    # -- account ----------------------------------------------------------------------------

    def account(self) -> Account:
        """The account and its rights (``GET /myaccount``); cached for naming 403s."""
        return self._http.fetch_account()

    def limits(self) -> Limits:
        """The account's request limits."""
        return Limits.from_json(self._http.get_json("limits"))

    def counts(self) -> Counts:
        """Requests counted in the current minute and day."""
        return Counts.from_json(self._http.get_json("counts"))

    # -- projects, campaigns, fields --------------------------------------------------------

    def projects(self) -> list[Project]:
        """Projects visible to the account."""
        return [Project.from_json(o) for o in self._get_list("projects")]

    def campaigns(self) -> list[Campaign]:
        """Campaigns the account may reach."""
        return [Campaign.from_json(o) for o in self._get_list("campaigns")]

    def import_example(self, code: str, all_fields: bool = False) -> dict[str, str]:
        """The example's ``data`` map, verbatim (required fields; all with ``all_fields``)."""
        params = self._example_params(code, all_fields)
        url = self._http.url("import_example")
        body = self._http.get_json("import_example", params=params, campaign=code)
        data = _ci_get(body, "data") if isinstance(body, Mapping) else None
        if not isinstance(data, Mapping):
            raise Uncertain(
                "the import example has no 'data' object; the answer is not what the contract "
                "describes",
                method="GET",
                url=url,
                status=200,
            )
        return {str(k): "" if v is None else str(v) for k, v in data.items()}

    # -- leads ------------------------------------------------------------------------------

    def create_lead(self, code: str, data: Mapping[str, str]) -> CreatedLead:
        """Import one lead. Retried only when certainly not processed; ``Uncertain`` is raised."""
        body = {self._p["create_campaign_code"]: code, self._p["create_data"]: dict(data)}
        url = self._http.url("leads")

        def parse(resp: requests.Response) -> CreatedLead:
            # A 2xx answer means the lead was created, whatever its body says: the id is taken
            # when the answer carries one; an empty, unreadable or id-less body is still a
            # success (the id is looked up later for the audit trail, never by sending again).
            head = resp.content[:200].decode("utf-8", errors="replace")
            if is_html(resp.headers.get("Content-Type", ""), head):
                # an HTML page: a proxy may have answered, not HeroBase (raises Uncertain)
                self._http.parse_json(resp, "POST", url)
            try:
                obj = json.loads(resp.content) if resp.content else None
            except (ValueError, UnicodeDecodeError):
                obj = None
            uid = created_id(obj)
            return CreatedLead(uid, dict(obj) if isinstance(obj, Mapping) else {})

        return self._http.call("POST", "leads", json_body=body, parse=parse, campaign=code)

    def lead(self, unique_id: str) -> Lead:
        """One lead by its uniqueId."""
        obj = self._http.get_json("lead", path={"uniqueId": unique_id})
        return Lead.from_json(obj)

    def searches(self) -> list[Search]:
        """The saved searches the account may use."""
        return [Search.from_json(o) for o in self._get_list("searches")]

    def iter_leads(
        self, search: str, from_: When, to: When | None = None, *, page_size: int = 1000
    ) -> Iterator[Lead]:
        """Every lead of saved search ``search`` in ``[from_, to)``, paged, each once."""
        for obj in self._pages("leads", self._leads_params(search, from_, to), page_size):
            yield Lead.from_json(obj)

    def iter_simpleleads(
        self,
        *,
        modified_from: When,
        modified_to: When | None = None,
        campaigns: Sequence[str] | None = None,
        projects: str = "*",
        statuses: Sequence[str] | None = None,
        closures: Sequence[str] | None = None,
        all_open: bool = False,
        all_closed: bool = False,
        unique_id: str | None = None,
        page_size: int = 1000,
    ) -> Iterator[Lead]:
        """The flat lead export (``/simpleleads``), paged, each uniqueId once."""
        p = self._p
        params: dict[str, str] = {
            p["simpleleads_projects"]: projects,
            p["simpleleads_from"]: self._when(modified_from),
        }
        if modified_to is not None:
            params[p["simpleleads_to"]] = self._when(modified_to)
        if campaigns:
            params[p["simpleleads_campaigns"]] = ",".join(campaigns)
        if statuses:
            params[p["simpleleads_statuses"]] = ",".join(statuses)
        if closures:
            params[p["simpleleads_closures"]] = ",".join(closures)
        if all_open:
            params[p["simpleleads_all_open"]] = "true"
        if all_closed:
            params[p["simpleleads_all_closed"]] = "true"
        if unique_id:
            params[p["simpleleads_unique_id"]] = unique_id
        for obj in self._pages("simpleleads", params, page_size):
            yield Lead.from_json(obj)

    def download_leads_csv(
        self,
        search: str,
        from_: When,
        to: When | None,
        dest: Path,
        *,
        encoding: str = "utf-8",
        culture: str = "en-US",
        use_system_headers: bool = True,
    ) -> int:
        """Stream the CSV export of ``search`` to ``dest`` atomically; returns its size in bytes."""
        params = self._csv_params(search, from_, to, encoding, culture, use_system_headers)
        url = self._http.url("leads_csv")

        def parse(resp: requests.Response) -> int:
            ctype = content_type(resp.headers)
            if "html" in ctype or "json" in ctype:
                excerpt, _ = body_excerpt(resp)
                raise Uncertain(
                    f"the CSV export answered {ctype} instead of CSV ({excerpt[:200]})",
                    method="GET",
                    url=url,
                    status=resp.status_code,
                    excerpt=self._http.redactor.clean(excerpt),
                )
            size = 0
            with atomic_open(Path(dest), "wb") as fh:
                out = cast(IO[bytes], fh)
                for chunk in resp.iter_content(CSV_CHUNK):
                    if chunk:
                        out.write(chunk)
                        size += len(chunk)
            return size

        return self._http.call(
            "GET", "leads_csv", params=params, accept="text/csv", stream=True, parse=parse
        )

    # -- the API's own description and probes (``leadpipe doctor --api``) -------------------

    def description_document(self, key: str) -> Any:
        """The JSON the tenant serves at description endpoint ``key`` (``openapi`` or
        ``metadata_json``), fetched once without retries; errors are raised as ApiError."""
        return self._http.get_json(key, retries=False)

    def probe(
        self, key: str, *, search: str = "", campaign: str = "", since: When | None = None
    ) -> int:
        """One harmless GET of read-only endpoint ``key`` with the parameters leadpipe sends
        (one row at most, no retries); the status of a 2xx, else the ApiError is raised."""
        day = since if since is not None else datetime.now(self._tz).date()
        params: dict[str, str] = {}
        accept = "application/json"
        p = self._p
        if key == "import_example":
            params = self._example_params(campaign, False)
        elif key == "leads":
            params = {**self._leads_params(search, day, None), p["skip"]: "0", p["take"]: "1"}
        elif key == "leads_csv":
            params = self._csv_params(search, day, None, "utf-8", "en-US", True)
            accept = "text/csv"
        elif key == "simpleleads":
            params = {p["simpleleads_from"]: self._when(day), p["skip"]: "0", p["take"]: "1"}
        return self._http.call(
            "GET",
            key,
            params=params,
            accept=accept,
            stream=True,
            retries=False,
            parse=lambda resp: resp.status_code,
        )

    # -- the parameters each endpoint is sent (their names: ``[api.params]``) --------------

    def _example_params(self, code: str, all_fields: bool) -> dict[str, str]:
        params = {self._p["example_campaign_code"]: code}
        if all_fields:
            params[self._p["example_show_all"]] = "true"
        return params

    def _leads_params(self, search: str, from_: When, to: When | None) -> dict[str, str]:
        p = self._p
        params = {p["leads_search"]: search, p["leads_from"]: self._when(from_)}
        if to is not None:
            params[p["leads_to"]] = self._when(to)
        if self._include:
            params[p["leads_include"]] = self._include
        return params

    def _csv_params(
        self,
        search: str,
        from_: When,
        to: When | None,
        encoding: str,
        culture: str,
        use_system_headers: bool,
    ) -> dict[str, str]:
        p = self._p
        params = {
            p["csv_search"]: search,
            p["csv_from"]: self._when(from_),
            p["csv_use_system_headers"]: "true" if use_system_headers else "false",
            p["csv_encoding"]: encoding,
            p["csv_culture"]: culture,
        }
        if to is not None:
            params[p["csv_to"]] = self._when(to)
        return params

    # -- the one request path ---------------------------------------------------------------

    def _when(self, value: When) -> str:
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(self._tz).replace(tzinfo=None)
            return value.isoformat(timespec="seconds" if not value.microsecond else "microseconds")
        if isinstance(value, date):
            return value.isoformat()
        return str(value)

    def _get_list(self, key: str) -> list[Any]:
        body = unwrap_list(self._http.get_json(key))
        if not isinstance(body, list):
            raise Uncertain(
                "the API answered something other than a list",
                method="GET",
                url=self._http.url(key),
                status=200,
            )
        return body

    def _pages(self, key: str, params: Mapping[str, str], take: int) -> Iterator[Mapping[str, Any]]:
        def fetch(skip: int, n: int) -> list[Any]:
            page = {**params, self._p["skip"]: str(skip), self._p["take"]: str(n)}
            body = self._http.get_json(key, params=page)
            body = unwrap_list(body)
            if not isinstance(body, list):
                raise Uncertain(
                    "a page of leads is not a list",
                    method="GET",
                    url=self._http.url(key),
                    status=200,
                )
            return body

        return iter_pages(fetch, take, what=key)


@dataclass(frozen=True)
class SentOperation:
    """One request leadpipe sends: endpoint key, verb, and the parameters by logical name."""

    key: str
    method: str
    query: tuple[str, ...] = ()  #: logical names of query parameters (``[api.params]``)
    body: tuple[str, ...] = ()  #: logical names of JSON body properties


#: Every request the client sends and the parameters it may carry (what ``doctor --api``
#: compares with the tenant's description). ``leads_include`` is sent only when configured.
SENT_OPERATIONS: tuple[SentOperation, ...] = (
    SentOperation("myaccount", "GET"),
    SentOperation("limits", "GET"),
    SentOperation("counts", "GET"),
    SentOperation("projects", "GET"),
    SentOperation("campaigns", "GET"),
    SentOperation("import_example", "GET", ("example_campaign_code", "example_show_all")),
    SentOperation("leads", "POST", body=("create_campaign_code", "create_data")),
    SentOperation(
        "leads", "GET", ("leads_search", "leads_from", "leads_to", "leads_include", "skip", "take")
    ),
    SentOperation("lead", "GET"),
    SentOperation("searches", "GET"),
    SentOperation(
        "leads_csv",
        "GET",
        (
            "csv_search",
            "csv_from",
            "csv_to",
            "csv_use_system_headers",
            "csv_encoding",
            "csv_culture",
        ),
    ),
    SentOperation(
        "simpleleads",
        "GET",
        (
            "simpleleads_projects",
            "simpleleads_from",
            "simpleleads_to",
            "simpleleads_campaigns",
            "simpleleads_statuses",
            "simpleleads_closures",
            "simpleleads_all_open",
            "simpleleads_all_closed",
            "simpleleads_unique_id",
            "skip",
            "take",
        ),
    ),
)

#: Keys a list may come wrapped in (any case): ServiceStack's ``Results`` and its kin.
_LIST_KEYS = ("results", "result", "items", "data", "leads", "value")
#: Keys the new lead's id may have in the answer to ``POST /leads`` (any case), best first.
_ID_KEYS = ("uniqueId", "leadUniqueId", "leadId", "id")
#: Objects an answer may wrap the new lead in (any case); other nested objects are not the lead.
_WRAPPERS = ("result", "lead", "data", "value", "item", "response")


def unwrap_list(body: Any) -> Any:
    """A list as it is, or the list inside a one-list wrapper object (``{"Results": [...]}``)."""
    if isinstance(body, Mapping):
        lists = [v for k, v in body.items() if isinstance(v, list)]
        named = [v for k, v in body.items() if str(k).lower() in _LIST_KEYS and isinstance(v, list)]
        if len(named) == 1:
            return named[0]
        if len(lists) == 1:
            return lists[0]
    return body


def created_id(obj: Any) -> str | None:
    """The new lead's uniqueId in a ``POST /leads`` answer: top level or one object deep."""
    if not isinstance(obj, Mapping):
        return None
    wrapped = [w for k in _WRAPPERS if isinstance(w := _ci_get(obj, k), Mapping)]
    for key in _ID_KEYS:  # the best key first, at the top level, then inside a wrapper
        for level in (obj, *wrapped):
            found = _ci_get(level, key)
            if isinstance(found, (str, int)) and not isinstance(found, bool) and str(found):
                return str(found)
    return None


def _ci_get(obj: Mapping[str, Any], name: str) -> Any:
    low = name.lower()
    for k, v in obj.items():
        if str(k).lower() == low:
            return v
    return None
