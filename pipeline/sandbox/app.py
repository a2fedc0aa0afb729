"""The sandbox's ASGI application: routing, Basic auth, rate limits, faults and rendering.

A plain ASGI callable (no framework) keeps the per-request path lean: one dict lookup for the
route, a cached ``Authorization`` header -> account, no logging on success.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from pipeline.sandbox import exports as x
from pipeline.sandbox import handlers as h
from pipeline.sandbox.faults import AFTER_KINDS, HOLD_KINDS, Fault
from pipeline.sandbox.profile import NO_BODY
from pipeline.sandbox.render import error_body, to_html, to_json
from pipeline.sandbox.routes import KNOWN_PATHS, ONE_LEAD, ROUTES, check_params
from pipeline.sandbox.seed import Account
from pipeline.sandbox.tenant import Tenant

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("pipeline.sandbox")

MAX_BODY = 1024 * 1024
REALM = b'Basic realm="HeroBase sandbox"'
JSON_TYPE = b"application/json; charset=utf-8"
HTML_TYPE = b"text/html; charset=utf-8"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_AUTH_CACHE_MAX = 1024
_DEFAULT_STATUS = {"html": 502, "empty": 502, "status_after": 500}


class Dropped(Exception):
    """The connection was aborted on purpose (a drop fault)."""


class SandboxApp:
    """ASGI app serving one tenant under ``base_path``."""

    def __init__(self, tenant: Tenant, base_path: str = "/api") -> None:
        self.tenant = tenant
        self.base = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self.stopping = asyncio.Event()
        self._auth_cache: dict[bytes, Account | None] = {}

    # --- entry ------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        base = self.base
        if path.startswith("/_sandbox/"):
            await self._control(scope, receive, send, path)
            return
        if base and not (path == base or path.startswith(base + "/")):
            if path == "/":
                await self._index(scope, send)
            else:
                await _send(
                    send, 404, to_json(error_body("NotFound", f"no route {path}")), JSON_TYPE
                )
            return
        rel = path[len(base) :] or "/"
        await self._api(scope, receive, send, rel)

    async def _api(self, scope: Scope, receive: Receive, send: Send, rel: str) -> None:
        tenant = self.tenant
        method: str = scope["method"]
        headers = dict(scope["headers"])
        accept = headers.get(b"accept", b"")
        want_html = b"text/html" in accept and b"application/json" not in accept
        raw_query = parse_qsl(
            scope["query_string"].decode("utf-8", "replace"), keep_blank_values=True
        )
        query: dict[str, list[str]] = {}
        for key, value in raw_query:
            query.setdefault(key.lower(), []).append(value)
        account = self._authenticate(headers.get(b"authorization"))
        now = tenant.now()
        entry = tenant.log.add(
            {
                "method": method,
                "path": rel,
                "query": dict(raw_query),
                "status": None,
                "user": account.username if account else None,
                "body": None,
                "time": now,
            }
        )
        status = 500
        try:
            try:
                body = await _read_body(receive, headers)
            except h.HttpError as exc:
                status = exc.status
                await self._send_error(send, exc, rel, want_html, [])
                return
            parsed: Any = None
            body_ok = True
            if body:
                try:
                    parsed = json.loads(body)
                except (ValueError, UnicodeDecodeError, RecursionError):
                    body_ok = False
                entry["body"] = parsed
            fault = tenant.faults.take(method, rel) if tenant.faults else None
            if fault is not None and fault.kind not in AFTER_KINDS:
                status = await self._fault_before(fault, send, want_html)
                if status != 0 or fault.kind not in HOLD_KINDS:
                    return
                if fault.kind == "store_late":
                    now = tenant.now()  # handled (a lead stored) as of the end of the hold
            status, out, ctype, extra = self._handle(
                method, rel, query, account, want_html, body, parsed, body_ok, now
            )
            if fault is not None and fault.kind in AFTER_KINDS:
                status = await self._fault_after(fault, send, want_html)
                return
            if fault is not None and fault.kind == "store_late" and _client_gone(send):
                status = 0  # handled, but nobody is left to answer
                return
            await _send(send, status, out, ctype, extra)
        except Dropped:
            status = 0
        finally:
            entry["status"] = status

    async def _send_error(
        self,
        send: Send,
        exc: h.HttpError,
        rel: str,
        want_html: bool,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        payload = error_body(exc.code, exc.message, exc.errors)
        if want_html:
            await _send(send, exc.status, to_html(rel, payload, exc.status), HTML_TYPE, extra)
        else:
            await _send(send, exc.status, to_json(payload), JSON_TYPE, extra)

    # --- request handling ------------------------------------------------------------------
    def _handle(
        self,
        method: str,
        rel: str,
        query: dict[str, list[str]],
        account: Account | None,
        want_html: bool,
        body: bytes,
        parsed: Any,
        body_ok: bool,
        now: datetime,
    ) -> tuple[int, Any, bytes | None, list[tuple[bytes, bytes]]]:
        tenant = self.tenant
        extra: list[tuple[bytes, bytes]] = []
        try:
            if account is None:
                raise h.HttpError(
                    401,
                    "Unauthorized",
                    "missing or wrong credentials: send HTTP Basic auth with a valid login",
                    headers=[(b"www-authenticate", REALM)],
                )
            verdict = tenant.limiter.hit(account.username, now)
            extra += [
                (b"x-rate-limit-limit", str(verdict.limit).encode()),
                (b"x-rate-limit-remaining", str(verdict.remaining).encode()),
                (b"x-rate-limit-reset", str(verdict.reset).encode()),
            ]
            if not verdict.allowed:
                raise h.HttpError(
                    429,
                    "TooManyRequests",
                    f"rate limit exceeded; retry after {verdict.retry_after} s",
                    headers=[(b"retry-after", str(verdict.retry_after).encode())],
                )
            low = rel.lower().rstrip("/") or "/"
            handler = ROUTES.get((method, low))
            req = h.Req(method, rel, query, body, account, now)
            if handler is None:
                if method == "GET" and low.startswith("/leads/") and low.count("/") == 2:
                    if tenant.seed.strict_params:
                        check_params(tenant, *ONE_LEAD, req)
                    reply = x.one_lead(tenant, req, rel.rstrip("/").rsplit("/", 1)[1])
                elif low in KNOWN_PATHS or (low.startswith("/leads/") and low.count("/") == 2):
                    allowed = ", ".join(m for m, p in ROUTES if p == low) or "GET"
                    raise h.HttpError(
                        405,
                        "MethodNotAllowed",
                        f"{method} is not allowed on {rel}",
                        headers=[(b"allow", allowed.encode())],
                    )
                else:
                    raise h.HttpError(404, "NotFound", f"no route {method} {rel}")
            else:
                if method == "POST":
                    if not body_ok:
                        raise h.HttpError(
                            400, "SerializationException", "the request body is not valid JSON"
                        )
                    req.json_body = parsed
                if tenant.seed.strict_params:  # only declared parameter names (routes.py)
                    check_params(tenant, method, low, req)
                reply = handler(tenant, req)
        except h.HttpError as exc:
            payload = error_body(exc.code, exc.message, exc.errors)
            extra += exc.headers
            if want_html:
                return exc.status, to_html(rel, payload, exc.status), HTML_TYPE, extra
            return exc.status, to_json(payload), JSON_TYPE, extra
        except Exception:
            log.exception("sandbox: unexpected error on %s %s", method, rel)
            payload = error_body("InternalServerError", "the sandbox failed unexpectedly")
            return 500, to_json(payload), JSON_TYPE, extra
        extra += reply.headers
        if reply.chunks is not None:
            return reply.status, reply.chunks, reply.content_type, extra
        payload = reply.payload
        if payload is NO_BODY:
            return reply.status, b"", None, extra
        if isinstance(payload, list):
            payload = tenant.profile.list_answer(payload)
        if want_html:
            return reply.status, to_html(rel, payload), HTML_TYPE, extra
        return reply.status, to_json(payload), JSON_TYPE, extra

    def _authenticate(self, header: bytes | None) -> Account | None:
        if not header:
            return None
        cache = self._auth_cache
        if header in cache:
            return cache[header]
        account = None
        if header[:6].lower() == b"basic ":
            try:
                user, _, password = (
                    base64.b64decode(header[6:].strip(), validate=True)
                    .decode("utf-8")
                    .partition(":")
                )
            except (binascii.Error, UnicodeDecodeError, ValueError):
                user, password = "", ""
            candidate = self.tenant.accounts.get(user.lower())
            if candidate is not None and hmac.compare_digest(
                candidate.password.encode(), password.encode()
            ):
                account = candidate
        if len(cache) >= _AUTH_CACHE_MAX:
            cache.clear()
        cache[header] = account
        return account

    # --- faults ---------------------------------------------------------------------------
    async def _fault_before(self, fault: Fault, send: Send, want_html: bool) -> int:
        """Apply a before-kind fault; returns the status sent (0 = nothing sent yet)."""
        if fault.kind == "drop_before":
            _abort(send)
        if fault.kind in HOLD_KINDS:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=fault.delay)
            return 0
        return await self._fault_status(fault, send, want_html)

    async def _fault_after(self, fault: Fault, send: Send, want_html: bool) -> int:
        if fault.kind == "drop_after":
            _abort(send)
        if fault.kind == "garbled":
            await _send(send, 200, b'{"uniqueId": "8254\x00<<garbled', JSON_TYPE)
            return 200
        return await self._fault_status(fault, send, want_html)

    async def _fault_status(self, fault: Fault, send: Send, want_html: bool) -> int:
        status = fault.status if fault.status is not None else _DEFAULT_STATUS.get(fault.kind, 503)
        extra = []
        if fault.retry_after is not None:
            extra.append((b"retry-after", f"{fault.retry_after:g}".encode()))
        if fault.kind == "empty":
            await _send(send, status, b"", b"text/plain", extra)
            return status
        if fault.kind == "html":
            phrase = f"{status} {_reason(status)}"
            page = (
                f"<html><head><title>{phrase}</title></head><body><center>"
                f"<h1>{phrase}</h1></center><hr><center>nginx</center></body></html>"
            )
            await _send(send, status, page.encode(), HTML_TYPE, extra)
            return status
        payload = error_body(
            "ServiceUnavailable" if status == 503 else "ServerError",
            f"injected fault: HTTP {status}",
        )
        if want_html:
            await _send(send, status, to_html("error", payload, status), HTML_TYPE, extra)
        else:
            await _send(send, status, to_json(payload), JSON_TYPE, extra)
        return status

    # --- outside the base path ------------------------------------------------------------
    async def _control(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        client = scope.get("client") or ("", 0)
        if client[0] not in LOOPBACK:
            await _send(send, 403, to_json(error_body("Forbidden", "loopback only")), JSON_TYPE)
            return
        method = scope["method"]
        tenant = self.tenant
        try:
            raw = await _read_body(receive, dict(scope["headers"]))
            body = json.loads(raw) if raw.strip() else {}
            if path == "/_sandbox/faults" and method == "POST":
                fid = tenant.faults.add(Fault.from_json(body))
                result: Any = {"id": fid}
            elif path == "/_sandbox/faults" and method == "GET":
                result = tenant.faults.listing()
            elif path == "/_sandbox/faults" and method == "DELETE":
                tenant.faults.clear()
                result = {"cleared": True}
            elif path == "/_sandbox/requests" and method == "GET":
                result = tenant.log.entries()
            elif path == "/_sandbox/requests" and method == "DELETE":
                tenant.log.clear()
                result = {"cleared": True}
            elif path == "/_sandbox/simulate" and method == "POST":
                low = {str(k).lower(): v for k, v in (body or {}).items()}
                fraction = float(low.get("fraction", 0.3))
                at = datetime.fromisoformat(str(low["at"])) if low.get("at") else None
                result = {"closed": tenant.simulate(fraction, at)}
            elif path == "/_sandbox/profile" and method == "GET":
                result = tenant.profile.as_dict()
            elif path == "/_sandbox/profile" and method == "POST":
                result = tenant.set_profile(body).as_dict()
            elif path == "/_sandbox/ratelimit" and method == "POST":
                low = {str(k).lower(): v for k, v in (body or {}).items()}
                tenant.limiter.set_limits(low.get("perminute"), low.get("perday"))
                result = {"perMinute": tenant.limiter.per_minute, "perDay": tenant.limiter.per_day}
            else:
                raise h.HttpError(404, "NotFound", f"no control route {method} {path}")
        except h.HttpError as exc:
            await _send(send, exc.status, to_json(error_body(exc.code, exc.message)), JSON_TYPE)
            return
        except (ValueError, TypeError, AttributeError) as exc:
            await _send(send, 400, to_json(error_body("ArgumentException", str(exc))), JSON_TYPE)
            return
        await _send(send, 200, to_json(result), JSON_TYPE)

    async def _index(self, scope: Scope, send: Send) -> None:
        headers = dict(scope["headers"])
        payload = {
            "service": "HeroBase sandbox (leadpipe)",
            "api": self.base or "/",
            "try": [
                f"{self.base}/myaccount",
                f"{self.base}/campaigns",
                f"{self.base}/leads/searches",
            ],
        }
        if b"text/html" in headers.get(b"accept", b""):
            await _send(send, 200, to_html("HeroBase sandbox", payload), HTML_TYPE)
        else:
            await _send(send, 200, to_json(payload), JSON_TYPE)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _read_body(receive: Receive, headers: dict[bytes, bytes]) -> bytes:
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise h.HttpError(
            413, "RequestEntityTooLarge", f"the request body is over {MAX_BODY} bytes"
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Dropped()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise h.HttpError(
                413, "RequestEntityTooLarge", f"the request body is over {MAX_BODY} bytes"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _client_gone(send: Send) -> bool:
    """True when the client closed the connection before its answer (uvicorn's cycle)."""
    return bool(getattr(getattr(send, "__self__", None), "disconnected", False))


def _abort(send: Send) -> None:
    """Reset the TCP connection without an answer (uvicorn: ``send`` is bound to the cycle)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:  # pragma: no cover - only with an unexpected server
        raise RuntimeError("cannot drop the connection: unknown ASGI server")
    transport.abort()
    cycle.disconnected = True  # type: ignore[union-attr]
    raise Dropped()


async def _send(
    send: Send,
    status: int,
    body: Any,
    content_type: bytes | None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer ``body`` (bytes or an iterable of chunks); no Content-Type when it is None."""
    headers = [(b"content-type", content_type)] if content_type is not None else []
    if extra:
        headers.extend(extra)
    if isinstance(body, bytes):
        if status not in (204, 304):
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    for chunk in body:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
