"""Fixtures of the client tests: an in-process sandbox and clients on a fake clock."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline.api import HeroBaseClient, RateLimiter, RetryPolicy
from pipeline.clock import FakeClock
from pipeline.config import ApiSettings
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox

MakeClient = Callable[..., HeroBaseClient]


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    """The demo tenant on 127.0.0.1, its own rate limit out of the way."""
    with Sandbox() as sandbox:
        sandbox.set_rate_limit(per_minute=1_000_000, per_day=100_000_000)
        yield sandbox


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(sb: Sandbox, clock: FakeClock) -> Iterator[MakeClient]:
    """Build clients of ``sb`` on the fake clock (a limiter of their own that keeps history)."""
    made: list[HeroBaseClient] = []

    def make(
        *, user: str = DEMO_USER, password: str = DEMO_PASSWORD, url: str = "", **api: Any
    ) -> HeroBaseClient:
        settings = ApiSettings(url=url or sb.url, user=user, password=password, **api)
        client = HeroBaseClient(
            settings,
            clock=clock,
            limiter=RateLimiter(settings.requests_per_minute, clock, keep_history=True),
            retry=RetryPolicy.from_settings(settings, rng=random.Random(3)),
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
