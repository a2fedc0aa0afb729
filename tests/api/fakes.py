"""A transport fake for unit tests: a requests adapter answering from a script (no patching)."""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import NewConnectionError, ProtocolError

from pipeline.api import HeroBaseClient, RetryPolicy
from pipeline.api.ratelimit import RateLimiter
from pipeline.clock import FakeClock
from pipeline.config import ApiSettings

BASE = "https://tenant.example/api"


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def build(self, request: requests.PreparedRequest) -> requests.Response:
        raw = self.body
        headers = dict(self.headers)
        if isinstance(raw, bytes):
            data = raw
        elif isinstance(raw, str):
            data = raw.encode("utf-8")
        elif raw is None:
            data = b""
        else:
            data = json.dumps(raw).encode("utf-8")
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        resp = requests.Response()
        resp.status_code = self.status
        resp.headers = CaseInsensitiveDict(headers)
        resp.raw = io.BytesIO(data)
        resp.url = request.url or ""
        resp.request = request
        resp.reason = {200: "OK", 503: "Service Unavailable"}.get(self.status, "")
        resp.encoding = "utf-8"
        return resp


Answer = Reply | BaseException


class FakeAdapter(HTTPAdapter):
    """Answers ``METHOD /path`` (relative to /api) from queued replies; the last one repeats."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[str, list[Answer]] = {}
        self.sent: list[requests.PreparedRequest] = []
        self.options: list[dict[str, Any]] = []

    def on(self, route: str, *answers: Answer) -> None:
        self.routes.setdefault(route, []).extend(answers)

    def calls(self, route: str) -> list[requests.PreparedRequest]:
        return [r for r in self.sent if route_of(r) == route]

    def send(self, request: requests.PreparedRequest, **kw: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        self.options.append(kw)
        key = route_of(request)
        queue = self.routes.get(key)
        if queue:
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
        elif key == "GET /myaccount/request/limits":
            answer = Reply(200, {"perMinute": 600, "perDay": 100000})
        else:
            answer = Reply(404, {"responseStatus": {"errorCode": "NotFound", "message": key}})
        if isinstance(answer, BaseException):
            raise answer
        return answer.build(request)


def route_of(request: requests.PreparedRequest) -> str:
    path = urlsplit(request.url or "").path
    return f"{request.method} {path.removeprefix('/api')}"


def query_of(request: requests.PreparedRequest) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url or "").query).items()}


def connect_error() -> requests.exceptions.ConnectionError:
    inner = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(inner)


def reset_error() -> requests.exceptions.ConnectionError:
    inner = ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset"))
    return requests.exceptions.ConnectionError(inner)


def make_client(
    adapter: FakeAdapter,
    clock: FakeClock | None = None,
    *,
    password: str = "s3cret-pw",  # noqa: S107
    **api: Any,
) -> tuple[HeroBaseClient, FakeClock]:
    clock = clock or FakeClock()
    settings = ApiSettings(url=BASE, user="api@x.example", password=password, **api)
    session = requests.Session()
    session.mount("https://", adapter)
    limiter = RateLimiter(settings.requests_per_minute, clock)
    client = HeroBaseClient(
        settings,
        session=session,
        clock=clock,
        limiter=limiter,
        retry=RetryPolicy.from_settings(settings, rng=random.Random(7)),
    )
    return client, clock
