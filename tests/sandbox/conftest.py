"""Fixtures for the sandbox tests: an authenticated session and a sandbox on a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from pipeline.clock import FakeClock
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, RESTRICTED_PASSWORD, RESTRICTED_USER, Sandbox

#: 2026-03-30 07:00 UTC = 09:00 in Copenhagen (summer time).
START = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)


class Api:
    """A tiny client for tests: base URL + session with Basic auth and JSON accept."""

    def __init__(self, sb: Sandbox, user: str = DEMO_USER, password: str = DEMO_PASSWORD):
        self.sb = sb
        self.url = sb.url
        self.session = requests.Session()
        self.session.auth = (user, password)
        self.session.headers["Accept"] = "application/json"

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(self.url + path, timeout=10, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.session.post(self.url + path, timeout=10, **kw)

    def lead(self, code: str = "B2B-DK-SPRING", **data: str) -> requests.Response:
        body = {"campaignCode": code, "data": data or {"name": "Søren", "phone": "+45 12 34 56 78"}}
        return self.post("/leads", json=body)

    def close(self) -> None:
        self.session.close()


@pytest.fixture(autouse=True)
def _no_leaked_servers() -> Iterator[None]:
    """Every sandbox a test starts is stopped by the end of the test."""
    before = set(threading.enumerate())
    yield
    alive = [t for t in threading.enumerate() if t.name == "leadpipe-sandbox" and t not in before]
    assert not alive, f"{len(alive)} sandbox server thread(s) left running"


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[Api]:
    """The full-rights demo account against the demo sandbox."""
    client = Api(sandbox)
    yield client
    client.close()


@pytest.fixture
def restricted(sandbox: Sandbox) -> Iterator[Api]:
    """The restricted demo account (no Leads: GET, only project 'B2B Denmark')."""
    client = Api(sandbox, RESTRICTED_USER, RESTRICTED_PASSWORD)
    yield client
    client.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def fake_sb(clock: FakeClock) -> Iterator[Sandbox]:
    """A demo sandbox whose 'now' is the fake clock (demo leads relative to START)."""
    with Sandbox(clock=clock) as sb:
        yield sb


@pytest.fixture
def fapi(fake_sb: Sandbox) -> Iterator[Api]:
    client = Api(fake_sb)
    yield client
    client.close()


def errors_of(response: requests.Response) -> dict[str, str]:
    """fieldName -> errorCode of a ServiceStack error body."""
    body = response.json()["responseStatus"]
    return {e["fieldName"]: e["errorCode"] for e in body["errors"]}
