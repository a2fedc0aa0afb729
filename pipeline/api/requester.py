"""The one request path of the client: limiter, headers and auth, error mapping, retries.

:class:`Requester` sends every request of :class:`~pipeline.api.client.HeroBaseClient`:

1. waits for the account's shared rate limiter (started once from the account's limits) in
   its lane (docs/architecture.md, "Lanes"): ``POST /leads`` in its campaign's lane, every
   other request (a preview's or a schema's reads, lookups) as a priority request;
2. sends with the contract's headers, pre-emptive Basic auth, timeouts, TLS settings and
   no redirects;
3. maps the answer or the exception to :mod:`pipeline.errors` (naming the missing right of a
   403 from the account's rights);
4. retries what the policy allows: GETs on ``Unavailable`` and ``Uncertain``, other methods
   only on ``Unavailable`` (certainly not processed), waiting on the injected clock;
5. once the retry policy's ``stop`` is set, starts no request and no retry: it raises
   :class:`~pipeline.api.ratelimit.Stopping` (certainly not sent) instead.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from pipeline.api.models import Account, Counts, Limits
from pipeline.api.ratelimit import RateLimiter, Stopping
from pipeline.api.retry import RetryPolicy
from pipeline.api.transport import (
    BasicAuth,
    Redactor,
    body_excerpt,
    error_from_exception,
    error_from_response,
    is_html,
    request_headers,
    safe_url,
)
from pipeline.clock import Clock
from pipeline.config import ApiSettings
from pipeline.errors import ApiError, RateLimited, Unavailable, Uncertain

log = logging.getLogger("pipeline.api.client")

T = TypeVar("T")

#: The resource right each endpoint needs (docs/api-contract.md), to name it when a 403 comes back.
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


class Requester:
    """Sends requests for one account; thread-safe. The password lives only in its auth."""

    def __init__(
        self,
        settings: ApiSettings,
        session: requests.Session,
        clock: Clock,
        limiter: RateLimiter,
        retry: RetryPolicy,
    ) -> None:
        self.base = settings.url.rstrip("/")
        self._endpoints = dict(settings.endpoints)
        self.session = session
        self.clock = clock
        self.limiter = limiter
        self.retry = retry
        self._auth = BasicAuth(settings.user, settings.password)
        self.redactor = Redactor(settings.user, settings.password)
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        self._verify: bool | str = settings.ca_bundle or True
        self._account: Account | None = None
        self._account_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Requester(url={safe_url(self.base)!r}, user={self._auth.user!r})"

    def url(self, key: str, path: Mapping[str, str] | None = None) -> str:
        """The URL of endpoint ``key`` (``[api.endpoints]``), ``{name}`` filled from ``path``."""
        route = self._endpoints[key]
        for name, value in (path or {}).items():
            route = route.replace("{" + name + "}", quote(value, safe=""))
        return self.base + route

    def get_json(
        self,
        key: str,
        *,
        params: Mapping[str, str] | None = None,
        path: Mapping[str, str] | None = None,
        campaign: str | None = None,
        retries: bool = True,
    ) -> Any:
        """GET endpoint ``key`` and return its JSON (retried per the policy)."""
        url = self.url(key, path)
        return self.call(
            "GET",
            key,
            params=params,
            path=path,
            campaign=campaign,
            retries=retries,
            parse=lambda resp: self.parse_json(resp, "GET", url),
        )

    def fetch_account(self) -> Account:
        """``GET /myaccount``, remembered for naming the right behind a later 403."""
        account = Account.from_json(self.get_json("myaccount"))
        with self._account_lock:
            self._account = account
        return account

    def call(
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
        url = self.url(key, path)
        idempotent = method == "GET"
        start = self.clock.monotonic()
        done = 0
        while True:
            try:
                return self._attempt(
                    method, key, url, params, json_body, accept, stream, parse, campaign
                )
            except ApiError as exc:
                if not retries or not self.retry.retryable(exc, idempotent=idempotent):
                    raise
                if isinstance(exc.__cause__, requests.exceptions.SSLError):
                    raise  # a certificate problem does not go away by retrying
                ra = exc.retry_after if isinstance(exc, Unavailable) else None
                if self.retry.stopping:
                    raise Stopping(f"leadpipe is stopping: {method} not retried") from exc
                wait = self.retry.delay(done, self.clock.monotonic() - start, ra)
                if wait is None:
                    raise
                log.info(
                    "%s %s failed (%s); retry %d in %.1f s",
                    method,
                    safe_url(url),
                    type(exc).__name__,
                    done + 1,
                    wait,
                )
                if not self.retry.pause(self.clock, wait):
                    raise Stopping(f"leadpipe is stopping: {method} not retried") from exc
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
        if key not in ("limits", "counts"):
            self._refresh_daily_count()
        upload = method == "POST" and key == "leads"
        self.limiter.acquire(
            campaign or "" if upload else "", priority=not upload, cancel=self.retry.stop
        )
        data = None
        headers = request_headers(accept)
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json; charset=utf-8"
        try:
            resp = self.session.request(
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
            err = error_from_exception(exc, method, url, redactor=self.redactor)
            log.debug("%s %s: %s", method, err.url, type(err).__name__)
            raise err from exc
        try:
            self.limiter.observe(resp.headers, resp.status_code)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s -> %d", method, safe_url(url), resp.status_code)
            if 200 <= resp.status_code < 300:
                try:
                    return parse(resp)
                except requests.RequestException as exc:
                    raise error_from_exception(exc, method, url, redactor=self.redactor) from exc
            right = self._missing_right(method, key, campaign) if resp.status_code == 403 else None
            err = error_from_response(
                resp,
                method,
                url,
                redactor=self.redactor,
                now=self.clock.now(),
                missing_right=right,
            )
        finally:
            resp.close()
        if isinstance(err, RateLimited):
            ra = err.retry_after
            self.limiter.penalise(min(ra, self.retry.retry_after_cap) if ra is not None else None)
        raise err

    def _initialise_limiter(self) -> None:
        """Once per account: start the limiter from ``/myaccount/request/limits``.

        With a daily budget, the tenant's count of the day (``/myaccount/request/counts``) is
        read too: the day's budget starts from what every integration used.
        """
        if not self.limiter.claim_initialisation():
            return
        per_minute: int | None = None
        per_day: int | None = None
        used: int | None = None
        mark: int | None = None
        try:
            limits = Limits.from_json(self.get_json("limits", retries=False))
            per_minute, per_day = limits.per_minute, limits.per_day
            if self.limiter.daily is not None:
                mark = self.limiter.daily.mark()
                used = Counts.from_json(self.get_json("counts", retries=False)).day
        except ApiError as exc:
            log.info("request limits not readable (%s); using the configured limits", exc)
        finally:
            self.limiter.configure(per_minute, per_day=per_day, used_today=used, mark=mark)

    def _refresh_daily_count(self) -> None:
        """After the day's reset, start the new day from the tenant's count once more."""
        daily = self.limiter.daily
        if daily is None or not daily.claim_refresh():
            return
        try:
            mark = daily.mark()
            used = Counts.from_json(self.get_json("counts", retries=False)).day
        except ApiError as exc:
            log.info("the tenant's request count is not readable (%s)", exc)
            return
        daily.configure(used_today=used, mark=mark)

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
                account = self.fetch_account()
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

    def parse_json(self, resp: requests.Response, method: str, url: str) -> Any:
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
                excerpt=self.redactor.clean(excerpt),
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
                excerpt=self.redactor.clean(raw[:2048].decode("utf-8", errors="replace")),
            ) from None
