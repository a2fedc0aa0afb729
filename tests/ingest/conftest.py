"""Fixtures for ingest tests: a sandbox over real HTTP, a client, settings and a ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.api import HeroBaseClient
from pipeline.config import ApiSettings, IntakeSettings, Paths, Settings
from pipeline.ledger import Ledger
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox
from tests.postgres import LedgerBackend

CAMPAIGN = "B2B-DK-SPRING"


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    """The shared ``sandbox`` fixture (demo tenant, leak-checked) without the 600/min limit."""
    sandbox.set_rate_limit(per_minute=1_000_000, per_day=10_000_000)
    return sandbox


def api_settings(sb: Sandbox, **kw: Any) -> ApiSettings:
    """Client settings for the sandbox: short timeouts and quick retries for tests."""
    base = ApiSettings(
        url=sb.url,
        user=DEMO_USER,
        password=DEMO_PASSWORD,
        connect_timeout=2.0,
        read_timeout=0.5,
        retry_after_cap=1.0,
        max_retries=8,
        retry_total_seconds=20.0,
        requests_per_minute=100_000,
    )
    return replace(base, **kw)


def make_settings(tmp: Path, sb: Sandbox, *, concurrency: int = 4, **api: Any) -> Settings:
    """Settings with every folder under ``tmp`` and the API pointing at the sandbox."""
    paths = Paths(
        inbox=tmp / "inbox", outbox=tmp / "outbox", state=tmp / "state", schemas=tmp / "schemas"
    )
    return Settings(
        paths=paths,
        api=api_settings(sb, **api),
        intake=IntakeSettings(concurrency=concurrency),
    )


@pytest.fixture
def client_for(sb: Sandbox) -> Iterator[Callable[..., HeroBaseClient]]:
    """Factory of clients for the sandbox (closed after the test)."""
    made: list[HeroBaseClient] = []

    def make(**kw: Any) -> HeroBaseClient:
        c = HeroBaseClient(api_settings(sb, **kw), timezone="Europe/Copenhagen")
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def ledger(tmp_path: Path, ledger_backend: LedgerBackend) -> Iterator[Ledger]:
    """A ledger in ``tmp_path / "state"``, on each backend in turn (tests/postgres.py)."""
    led = ledger_backend.open(tmp_path / "state")
    yield led
    led.close()
