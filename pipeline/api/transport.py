"""The HTTP layer: session set-up, authentication, and response/exception -> error mapping.

This package is the only place that imports ``requests`` (docs/architecture.md). Everything
above it gets typed records and :mod:`pipeline.errors` classes. The password is kept in one
private object whose ``repr`` hides it; every message built here passes through
:meth:`Redactor.clean`.
"""

from __future__ import annotations

import base64
import email.utils
import html
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from pipeline import __version__
from pipeline.config import ApiSettings
from pipeline.errors import (
    ApiError,
    Invalid,
    NotFound,
    NotPermitted,
    RateLimited,
    ResponseStatus,
    Unavailable,
    Uncertain,
)

EXCERPT_LIMIT = 2048
USER_AGENT = f"leadpipe/{__version__}"
FAIR_USE_HEADER = "X-Rate-Limit-Fair-Use-Policy"
FAIR_USE_VALUE = "Minute rated"
MIN_SECRET = 4
_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


class BasicAuth(AuthBase):
    """Pre-emptive HTTP Basic auth whose ``repr`` never shows the password."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self.__header = f"Basic {token}"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self.__header
        return r

    def __repr__(self) -> str:
        return f"BasicAuth(user={self.user!r}, password=***)"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickle the secret along
        raise TypeError("BasicAuth cannot be pickled")


class Redactor:
    """Removes a secret (and its Basic-auth encodings) from any text."""

    def __init__(self, user: str, password: str) -> None:
        secrets = []
        if password:
            secrets.append(password)
            pair = f"{user}:{password}".encode()
            secrets.append(base64.b64encode(pair).decode("ascii"))
            secrets.append(base64.b64encode(pair).decode("ascii").rstrip("="))
        # a secret shorter than 4 characters cannot be hidden without garbling every message;
        # such a password is refused by any real tenant anyway
        self._secrets = tuple(s for s in secrets if len(s) >= MIN_SECRET)

    def clean(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for s in self._secrets:
            if s in text:
                text = text.replace(s, "***")
        return text

    def __repr__(self) -> str:
        return "Redactor(***)"


def make_session(settings: ApiSettings) -> requests.Session:
    """A Session with a connection pool sized for ``settings.pool_size`` concurrent requests."""
    session = requests.Session()
    adapter = HTTPAdapter(
        pool_connections=4, pool_maxsize=max(1, settings.pool_size), max_retries=0
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def request_headers(accept: str = "application/json") -> dict[str, str]:
    """The headers every request carries (docs/api-contract.md, "Transport, rights, limits")."""
    return {
        "Accept": accept,
        FAIR_USE_HEADER: FAIR_USE_VALUE,
        "User-Agent": USER_AGENT,
    }


def safe_url(url: str) -> str:
    """``url`` without any ``user:password@`` part."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def html_title(text: str) -> str:
    """The ``<title>`` of an HTML page, unescaped and squeezed ('' when it has none)."""
    m = _TITLE_RE.search(text)
    return " ".join(html.unescape(m.group(1)).split())[:200] if m else ""


def is_html(content_type: str, text: str) -> bool:
    """True when a body is an HTML page (by type or by its first characters)."""
    if "html" in content_type.lower():
        return True
    head = text.lstrip()[:100].lower()
    return head.startswith(("<!doctype html", "<html"))


def body_excerpt(resp: requests.Response) -> tuple[str, Any]:
    """(excerpt <= 2 KB, parsed JSON or None). An HTML page is summarised, never parsed."""
    try:
        raw = resp.content or b""
    except requests.RequestException:
        return "", None
    text = raw[: EXCERPT_LIMIT * 4].decode(resp.encoding or "utf-8", errors="replace")
    ctype = resp.headers.get("Content-Type", "")
    if is_html(ctype, text):
        title = html_title(raw[:65536].decode(resp.encoding or "utf-8", errors="replace"))
        return (f"HTML page: {title}" if title else "HTML page (no title)"), None
    parsed: Any = None
    if raw:
        try:
            parsed = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            parsed = None
    return text[:EXCERPT_LIMIT], parsed


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if now is None or when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def _status_phrase(resp: requests.Response) -> str:
    return f"{resp.status_code} {resp.reason or ''}".strip()


def error_from_response(
    resp: requests.Response,
    method: str,
    url: str,
    *,
    redactor: Redactor,
    now: datetime | None = None,
    missing_right: str | None = None,
) -> ApiError:
    """The :mod:`pipeline.errors` class for a non-2xx answer (or a redirect)."""
    status = resp.status_code
    excerpt, parsed = body_excerpt(resp)
    excerpt = redactor.clean(excerpt)
    rs = ResponseStatus.from_body(parsed)
    url = safe_url(url)
    kw: dict[str, Any] = {
        "method": method,
        "url": url,
        "status": status,
        "response_status": rs,
        "excerpt": excerpt,
    }
    server_says = redactor.clean(rs.message) if rs and rs.message else ""
    detail = f": {server_says}" if server_says else ""
    if excerpt.startswith("HTML page"):
        detail = f" ({excerpt})"
    if 300 <= status < 400:
        where = safe_url(resp.headers.get("Location", "")) or "another address"
        msg = (
            f"the API answered {_status_phrase(resp)}, a redirect to {where}; "
            "leadpipe does not follow redirects: check api.url (scheme, host and /api path)"
        )
        if method.upper() == "POST":
            return Uncertain(msg + "; the request may have been processed", **kw)
        return NotFound(msg, **kw)
    if status == 400:
        errs = rs.errors if rs else []
        # names and codes only: the per-field messages echo lead data, which stays out of
        # messages that end up in logs (it is in ``field_errors`` for the reject file)
        fields = "; ".join(f"{e.field_name}: {e.error_code or 'invalid'}" for e in errs)
        msg = "the API refused the request as invalid" + detail
        if fields:
            msg += f" ({fields})"
        return Invalid(msg, **kw)
    if status == 401:
        return NotPermitted(
            "the API refused the credentials (401): check LEADPIPE_API_USER and "
            "LEADPIPE_API_PASSWORD",
            **kw,
        )
    if status == 403:
        msg = (
            f"the account lacks {missing_right}"
            if missing_right
            else "the account lacks a right for this request (403)"
        )
        if server_says:
            msg += f" (the API said: {server_says})"
        msg += "; ask the HeroBase administrator to grant it"
        return NotPermitted(msg, missing_right=missing_right, **kw)
    if status == 404:
        return NotFound("the API found no such thing (404)" + detail, **kw)
    if status == 429:
        ra = parse_retry_after(resp.headers.get("Retry-After"), now)
        wait = f"; retry after {ra:g} s" if ra is not None else ""
        return RateLimited(f"the API rate limit was exceeded (429){wait}", retry_after=ra, **kw)
    if status == 503:
        ra = parse_retry_after(resp.headers.get("Retry-After"), now)
        return Unavailable(
            f"the API is unavailable ({_status_phrase(resp)}){detail}; nothing was processed",
            retry_after=ra,
            **kw,
        )
    if status == 408:
        return Uncertain(f"the API timed out ({_status_phrase(resp)}){detail}", **kw)
    if status >= 500:
        return Uncertain(
            f"the API failed ({_status_phrase(resp)}){detail}; the request may have been processed",
            **kw,
        )
    return Invalid(f"the API refused the request ({_status_phrase(resp)}){detail}", **kw)


def error_from_exception(
    exc: requests.RequestException, method: str, url: str, *, redactor: Redactor
) -> ApiError:
    """Map a ``requests`` exception: did the request certainly not reach the server?"""
    url = safe_url(url)
    kw: dict[str, Any] = {"method": method, "url": url}
    reason = redactor.clean(_root_reason(exc))
    if isinstance(exc, requests.exceptions.SSLError):
        return Unavailable(
            f"the TLS check of the API failed ({reason}); if the tenant uses its own CA, "
            "set api.ca_bundle",
            **kw,
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Unavailable(f"could not connect to the API in time ({reason})", **kw)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return Uncertain(
            "the API did not answer in time (read timeout); the request may have been processed",
            **kw,
        )
    if isinstance(exc, requests.exceptions.ConnectionError) and _is_connect_failure(exc):
        return Unavailable(f"could not connect to the API ({reason})", **kw)
    if isinstance(
        exc,
        requests.exceptions.ConnectionError
        | requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError,
    ):
        return Uncertain(
            f"the connection to the API broke ({reason}); the request may have been processed",
            **kw,
        )
    return Uncertain(f"the request to the API failed ({reason})", **kw)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        reason = getattr(cur, "reason", None)
        if isinstance(reason, BaseException):
            cur = reason
            continue
        if cur.args and isinstance(cur.args[-1], BaseException):
            cur = cur.args[-1]
            continue
        cur = cur.__cause__ or cur.__context__
    return seen


def _is_connect_failure(exc: BaseException) -> bool:
    """True when the connection was never established (so nothing was sent)."""
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    for e in _chain(exc):
        if isinstance(e, NewConnectionError | NameResolutionError | ConnectionRefusedError):
            return True
    return False


def _root_reason(exc: BaseException) -> str:
    chain = _chain(exc)
    root = chain[-1]
    name = type(root).__name__
    text = str(root)
    # urllib3 messages repeat the pool and URL; the class name and errno are what a person needs
    m = re.search(r"\[Errno -?\d+\][^)'\"]*", text)
    return f"{name}: {m.group(0).strip()}" if m else name


def content_type(headers: Mapping[str, str]) -> str:
    """The media type of a response, lower case, without parameters."""
    return headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
