"""Fixtures for export tests: a sandbox on a fake clock, a client, settings in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.api import HeroBaseClient
from pipeline.clock import FakeClock
from pipeline.config import ApiSettings, ExportJob, Paths, Settings
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox

TZ = "Europe/Copenhagen"


@dataclass
class Env:
    sb: Sandbox
    client: HeroBaseClient
    clock: FakeClock
    tmp: Path

    def settings(self, *jobs: ExportJob) -> Settings:
        return Settings(
            paths=Paths(
                inbox=self.tmp / "inbox",
                outbox=self.tmp / "outbox",
                state=self.tmp / "state",
                schemas=self.tmp / "schemas",
            ),
            api=ApiSettings(url=self.sb.url, user=DEMO_USER, password=DEMO_PASSWORD),
            exports=list(jobs),
            timezone=TZ,
        )


def api_settings(url: str) -> ApiSettings:
    # few, quick retries: an outage is the scheduler's business, not the client's
    return ApiSettings(
        url=url, user=DEMO_USER, password=DEMO_PASSWORD, max_retries=1, retry_total_seconds=5.0,
        read_timeout=30.0,
    )  # fmt: skip


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[[datetime], Env]]:
    """Start a sandbox whose clock begins at ``start`` (its demo data is seeded around then)."""
    stack = ExitStack()

    def start_env(start: datetime) -> Env:
        clock = FakeClock(start)
        # the client gets its own fake clock: its retry sleeps must not move simulated time
        sb = stack.enter_context(Sandbox(clock=clock))
        client = HeroBaseClient(api_settings(sb.url), clock=FakeClock(start), timezone=TZ)
        stack.callback(client.close)
        return Env(sb, client, clock, tmp_path)

    with stack:
        yield start_env


@pytest.fixture
def env(make_env: Callable[[datetime], Env]) -> Env:
    return make_env(datetime(2026, 10, 1, 12, 0, tzinfo=UTC))
