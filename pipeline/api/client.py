"""``HeroBaseClient``: typed methods for every endpoint of the contract (herobase-api.md).

Every request goes through one path (:meth:`HeroBaseClient._call`): the shared rate limiter,
the contract's headers and pre-emptive Basic auth, no redirects, then error mapping and the
retry policy. GETs are retried on ``Unavailable`` and ``Uncertain``; ``POST /leads`` only on
``Unavailable`` (certainly not processed), never after an ``Uncertain`` fault: that is for the
ledger-driven caller to reconcile.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, TypeVar, cast
from urllib.parse import quote
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
from pipeline.api.retry import RetryPolicy
from pipeline.api.transport import (
    BasicAuth,
    Redactor,
    body_excerpt,
    content_type,
    error_from_exception,
    error_from_response,
    is_html,
    make_session,
    request_headers,
    safe_url,
)
from pipeline.clock import Clock, SystemClock
from pipeline.config import ApiSettings
from pipeline.errors import ApiError, RateLimited, Unavailable, Uncertain
from pipeline.fsutil import atomic_open

log = logging.getLogger(__name__)

T = TypeVar("T")
When = date | datetime | str
CSV_CHUNK = 64 * 1024

#: The resource right each endpoint needs (section 3), to name it when a 403 comes back.
RIGHTS: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "myaccount"): ("Account", "GET"),
    ("GET", "limits"): ("Account", "GET"),
    ("GET", "counts"): ("Account", "GET"),
    ("GET", "projects"): ("Campaigns", "GET"),
    ("GET", "campaigns"): ("Campaigns", "GET"),
    ("GET", "import_example"): ("Campaigns", "GET"),
    ("POST", "leads"): ("Leads", "POST"),
    ("GET", "leads"): ("Leads", "GET"),
    ("GET", "lead"): ("Leads", "GET"),
    ("GET", "searches"): ("Leads", "GET"),
    ("GET", "leads_csv"): ("Leads", "GET"),
    ("GET", "simpleleads"): ("Leads", "GET"),
}


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
        self._base = settings.url.rstrip("/")
        self._endpoints = dict(settings.endpoints)
        self._user = settings.user
        self._own_session = session is None
        self._session = session if session is not None else make_session(settings)
        self._clock: Clock = clock or SystemClock()
        self._auth = BasicAuth(settings.user, settings.password)
        self._redactor = Redactor(settings.user, settings.password)
        self.limiter = limiter or limiter_for(
            settings.url, settings.user, settings.requests_per_minute, self._clock
        )
        self.retry = retry or RetryPolicy.from_settings(settings)
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        self._verify: bool | str = settings.ca_bundle or True
        self._tz = ZoneInfo(timezone)
        self._account: Account | None = None
        self._account_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HeroBaseClient(url={safe_url(self._base)!r}, user={self._user!r})"

    def __enter__(self) -> HeroBaseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if the client created it."""
        if self._own_session:
            self._session.close()

    @property
    def url(self) -> str:
        """The API base URL (without credentials)."""
        return safe_url(self._base)

    # -- account ----------------------------------------------------------------------------

    def account(self) -> Account:
        """The account and its rights (``GET /myaccount``); cached for naming 403s."""
        account = Account.from_json(self._get_json("myaccount"))
        with self._account_lock:
            self._account = account
        return account

    def limits(self) -> Limits:
        """The account's request limits."""
        return Limits.from_json(self._get_json("limits"))

    def counts(self) -> Counts:
        """Requests counted in the current minute and day."""
        return Counts.from_json(self._get_json("counts"))

    # -- projects, campaigns, fields --------------------------------------------------------

    def projects(self) -> list[Project]:
        """Projects visible to the account."""
        return [Project.from_json(o) for o in self._get_list("projects")]

    def campaigns(self) -> list[Campaign]:
        """Campaigns the account may reach."""
        return [Campaign.from_json(o) for o in self._get_list("campaigns")]

    def import_example(self, code: str, all_fields: bool = False) -> dict[str, str]:
        """The example's ``data`` map, verbatim (required fields; all with ``all_fields``)."""
        params = {"campaignCode": code}
        if all_fields:
            params["showAllDataEntries"] = "true"
        url = self._url("import_example")
        body = self._get_json("import_example", params=params, campaign=code)
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
        body = {"campaignCode": code, "data": dict(data)}
        url = self._url("leads")

        def parse(resp: requests.Response) -> CreatedLead:
            obj = _parse_json(resp, "POST", url, self._redactor)
            uid = _ci_get(obj, "uniqueId") if isinstance(obj, Mapping) else None
            if not uid:
                raise Uncertain(
                    "the API accepted the lead but its answer has no uniqueId; the lead may "
                    "have been created",
                    method="POST",
                    url=url,
                    status=resp.status_code,
                )
            return CreatedLead(str(uid), dict(obj))

        return self._call("POST", "leads", json_body=body, parse=parse, campaign=code)

    def lead(self, unique_id: str) -> Lead:
        """One lead by its uniqueId."""
        obj = self._get_json("lead", path={"uniqueId": unique_id})
        return Lead.from_json(obj)

    def searches(self) -> list[Search]:
        """The saved searches the account may use."""
        return [Search.from_json(o) for o in self._get_list("searches")]

    def iter_leads(
        self, search: str, from_: When, to: When | None = None, *, page_size: int = 1000
    ) -> Iterator[Lead]:
        """Every lead of saved search ``search`` in ``[from_, to)``, paged, each once."""
        params: dict[str, str] = {"searchName": search, "from": self._when(from_)}
        if to is not None:
            params["to"] = self._when(to)
        for obj in self._pages("leads", params, page_size):
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
        params: dict[str, str] = {"Projects": projects, "ModifiedFrom": self._when(modified_from)}
        if modified_to is not None:
            params["ModifiedTo"] = self._when(modified_to)
        if campaigns:
            params["Campaigns"] = ",".join(campaigns)
        if statuses:
            params["Statuses"] = ",".join(statuses)
        if closures:
            params["LeadClosures"] = ",".join(closures)
        if all_open:
            params["AllOpenStatuses"] = "true"
        if all_closed:
            params["AllClosedStatuses"] = "true"
        if unique_id:
            params["UniqueId"] = unique_id
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
        params: dict[str, str] = {
            "searchName": search,
            "from": self._when(from_),
            "useSystemHeaders": "true" if use_system_headers else "false",
            "encoding": encoding,
            "culture": culture,
        }
        if to is not None:
            params["to"] = self._when(to)
        url = self._url("leads_csv")

        def parse(resp: requests.Response) -> int:
            ctype = content_type(resp.headers)
            if "html" in ctype or "json" in ctype:
                excerpt, _ = body_excerpt(resp)
                raise Uncertain(
                    f"the CSV export answered {ctype} instead of CSV ({excerpt[:200]})",
                    method="GET",
                    url=url,
                    status=resp.status_code,
                    excerpt=self._redactor.clean(excerpt),
                )
            size = 0
            with atomic_open(Path(dest), "wb") as fh:
                out = cast(IO[bytes], fh)
                for chunk in resp.iter_content(CSV_CHUNK):
                    if chunk:
                        out.write(chunk)
                        size += len(chunk)
            return size

        return self._call(
            "GET", "leads_csv", params=params, accept="text/csv", stream=True, parse=parse
        )

    # -- the one request path ---------------------------------------------------------------

    def _url(self, key: str, path: Mapping[str, str] | None = None) -> str:
        route = self._endpoints[key]
        for name, value in (path or {}).items():
            route = route.replace("{" + name + "}", quote(value, safe=""))
        return self._base + route

    def _when(self, value: When) -> str:
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(self._tz).replace(tzinfo=None)
            return value.isoformat(timespec="seconds" if not value.microsecond else "microseconds")
        if isinstance(value, date):
            return value.isoformat()
        return str(value)

    def _get_json(
        self,
        key: str,
        *,
        params: Mapping[str, str] | None = None,
        path: Mapping[str, str] | None = None,
        campaign: str | None = None,
    ) -> Any:
        url = self._url(key, path)
        return self._call(
            "GET",
            key,
            params=params,
            path=path,
            campaign=campaign,
            parse=lambda resp: _parse_json(resp, "GET", url, self._redactor),
        )

    def _get_list(self, key: str) -> list[Any]:
        body = self._get_json(key)
        if not isinstance(body, list):
            raise Uncertain(
                "the API answered something other than a list",
                method="GET",
                url=self._url(key),
                status=200,
            )
        return body

    def _pages(self, key: str, params: Mapping[str, str], take: int) -> Iterator[Mapping[str, Any]]:
        def fetch(skip: int, n: int) -> list[Any]:
            body = self._get_json(key, params={**params, "skip": str(skip), "take": str(n)})
            if not isinstance(body, list):
                raise Uncertain(
                    "a page of leads is not a list", method="GET", url=self._url(key), status=200
                )
            return body

        return iter_pages(fetch, take, what=key)

    def _call(
        self,
        method: str,
        key: str,
        *,
        parse: Callable[[requests.Response], T],
        params: Mapping[str, str] | None = None,
        path: Mapping[str, str] | None = None,
        json_body: Any = None,
        accept: str = "application/json",
        stream: bool = False,
        campaign: str | None = None,
        retries: bool = True,
    ) -> T:
        """Send with the limiter, map errors, and retry what the policy allows."""
        url = self._url(key, path)
        idempotent = method == "GET"
        start = self._clock.monotonic()
        done = 0
        while True:
            try:
                return self._attempt(
                    method, key, url, params, json_body, accept, stream, parse, campaign
                )
            except ApiError as exc:
                if not retries or not self.retry.retryable(exc, idempotent=idempotent):
                    raise
                if "TLS check" in str(exc):
                    raise
                ra = exc.retry_after if isinstance(exc, Unavailable) else None
                wait = self.retry.delay(done, self._clock.monotonic() - start, ra)
                if wait is None:
                    raise
                log.info(
                    "%s %s failed (%s); retry %d in %.1f s",
                    method,
                    self._redactor.clean(safe_url(url)),
                    type(exc).__name__,
                    done + 1,
                    wait,
                )
                self._clock.sleep(wait)
                done += 1

    def _attempt(
        self,
        method: str,
        key: str,
        url: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        accept: str,
        stream: bool,
        parse: Callable[[requests.Response], T],
        campaign: str | None,
    ) -> T:
        if key != "limits":
            self._initialise_limiter()
        self.limiter.acquire()
        data = None
        headers = request_headers(accept)
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json; charset=utf-8"
        try:
            resp = self._session.request(
                method,
                url,
                params=dict(params) if params else None,
                data=data,
                headers=headers,
                auth=self._auth,
                timeout=self._timeout,
                verify=self._verify,
                allow_redirects=False,
                stream=stream,
            )
        except requests.RequestException as exc:
            err = error_from_exception(exc, method, url, redactor=self._redactor)
            log.debug("%s %s: %s", method, err.url, type(err).__name__)
            raise err from exc
        try:
            self.limiter.observe(resp.headers, resp.status_code)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s %s -> %d", method, self._redactor.clean(safe_url(url)), resp.status_code
                )
            if 200 <= resp.status_code < 300:
                try:
                    return parse(resp)
                except requests.RequestException as exc:
                    raise error_from_exception(exc, method, url, redactor=self._redactor) from exc
            right = self._missing_right(method, key, campaign) if resp.status_code == 403 else None
            err = error_from_response(
                resp,
                method,
                url,
                redactor=self._redactor,
                now=self._clock.now(),
                missing_right=right,
            )
        finally:
            resp.close()
        if isinstance(err, RateLimited):
            ra = err.retry_after
            self.limiter.penalise(min(ra, self.retry.retry_after_cap) if ra is not None else None)
        raise err

    def _initialise_limiter(self) -> None:
        """Once per account: start the limiter from ``/myaccount/request/limits``."""
        if not self.limiter.claim_initialisation():
            return
        per_minute: int | None = None
        try:
            obj = self._call(
                "GET",
                "limits",
                retries=False,
                parse=lambda r: _parse_json(r, "GET", self._url("limits"), self._redactor),
            )
            per_minute = Limits.from_json(obj).per_minute
        except ApiError as exc:
            log.info("request limits not readable (%s); using api.requests_per_minute", exc)
        finally:
            self.limiter.configure(per_minute)

    def _missing_right(self, method: str, key: str, campaign: str | None) -> str | None:
        """Name the right a 403 points at, from the account's (cached) rights."""
        need = RIGHTS.get((method, key))
        if need is None:
            return None
        resource, verb = need
        with self._account_lock:
            account = self._account
        if account is None and key != "myaccount":
            try:
                account = self.account()
            except ApiError:
                account = None
        if account is None:
            if campaign:
                return f"{resource}: {verb} or a project right reaching campaign {campaign}"
            return f"{resource}: {verb}"
        if not account.can(resource, verb):
            return f"{resource}: {verb}"
        if campaign:
            return f"a project right reaching campaign {campaign}"
        return None


def _ci_get(obj: Mapping[str, Any], name: str) -> Any:
    low = name.lower()
    for k, v in obj.items():
        if str(k).lower() == low:
            return v
    return None


def _parse_json(resp: requests.Response, method: str, url: str, redactor: Redactor) -> Any:
    """The JSON body of a 2xx answer; an unreadable one is ``Uncertain``."""
    raw = resp.content
    text_head = raw[:200].decode("utf-8", errors="replace")
    ctype = resp.headers.get("Content-Type", "")
    if is_html(ctype, text_head):
        excerpt, _ = body_excerpt(resp)
        raise Uncertain(
            f"the API answered {resp.status_code} with an {excerpt}, not JSON",
            method=method,
            url=safe_url(url),
            status=resp.status_code,
            excerpt=redactor.clean(excerpt),
        )
    try:
        return json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise Uncertain(
            f"the API answered {resp.status_code} with a body that is not JSON; the request "
            "may have been processed",
            method=method,
            url=safe_url(url),
            status=resp.status_code,
            excerpt=redactor.clean(raw[:2048].decode("utf-8", errors="replace")),
        ) from None
