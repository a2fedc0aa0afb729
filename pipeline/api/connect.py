"""The client for a given configuration: the real tenant, or the embedded demo sandbox.

With no ``api.url`` configured, leadpipe runs against the sandbox (docs/architecture.md):
:func:`open_client` starts it in-process on 127.0.0.1 and points a client at it with the demo
credentials. Commands, the service and ingest all use this one function, so "which API, which
account" is decided in one place.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from pipeline.api.client import HeroBaseClient
from pipeline.api.quota import DailyPolicy
from pipeline.api.ratelimit import limiter_for
from pipeline.api.retry import RetryPolicy
from pipeline.clock import Clock, SystemClock
from pipeline.config import Settings

if TYPE_CHECKING:  # psycopg is loaded only for a PostgreSQL ledger
    from pipeline.api.shared_budget import SharedBudget

log = logging.getLogger(__name__)


def shared_budget_for(settings: Settings) -> SharedBudget | None:
    """The account's request budget every node shares, for a PostgreSQL ledger (else None).

    docs/cluster.md, "Shared request budget": the counters live in the ledger's database, so
    the nodes that share a ledger share the account's minute and day. Nothing is connected
    here (the first request does); psycopg is imported only for such a ledger.
    """
    if not settings.state.postgresql or settings.api.embedded:
        return None
    try:
        from pipeline.api.shared_budget import SharedBudget
    except ImportError as exc:
        from pipeline.ledger.connect import psycopg_missing

        raise psycopg_missing() from exc
    api = settings.api
    return SharedBudget(settings.state.ledger, settings.state.password, api.url, api.user)


@contextlib.contextmanager
def open_client(
    settings: Settings,
    *,
    clock: Clock | None = None,
    sandbox_db: Path | None = None,
    session: requests.Session | None = None,
    simulate_every: float | None = None,
    stop: threading.Event | None = None,
) -> Iterator[HeroBaseClient]:
    """Yield a client for ``settings``; an embedded sandbox is started and stopped around it.

    ``session`` (e.g. from :func:`pipeline.api.transport.make_session`, with response hooks for
    metrics) is used as given and left open; ``sandbox_db`` persists the embedded tenant;
    ``simulate_every`` makes the embedded tenant's agents close leads every so many seconds.
    A real tenant's rate limiter records its requests in ``settings.paths.state``, so a restart
    starts with the budget the previous process used (the embedded sandbox's budget ends with
    the process: nothing to record), and so does its daily budget (``[api] requests_per_day``,
    ``daily_reserve``, ``daily_reset``). With a PostgreSQL ledger the account's minute and day
    budget is shared there by every node (:func:`shared_budget_for`). Once ``stop`` is set (a
    stopping service), the client starts no request and no retry (docs/architecture.md,
    "Lanes"); the embedded sandbox is stopped only after the client's user has returned, so no
    request of ours outlives it.
    """
    retry = RetryPolicy.from_settings(settings.api, stop=stop)
    if not settings.api.embedded:
        # the account's limiter keeps its recent request times in the state folder, so a
        # restarted process does not spend again the budget the previous one used
        clock = clock or SystemClock()
        api = settings.api
        limiter = limiter_for(
            api.url,
            api.user,
            api.requests_per_minute,
            clock,
            state_dir=settings.paths.state,
            daily=DailyPolicy.from_settings(settings),  # docs/api-contract.md, "The daily quota"
            shared=shared_budget_for(settings),
        )
        client = HeroBaseClient(
            api,
            session=session,
            clock=clock,
            limiter=limiter,
            retry=retry,
            timezone=settings.timezone,
        )
        try:
            yield client
        finally:
            client.close()
        return

    from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox

    seed = Path(settings.sandbox.seed) if settings.sandbox.seed else None
    sandbox = Sandbox(
        seed=seed,
        port=settings.sandbox.port,
        db=sandbox_db,
        clock=clock,
        simulate_every=simulate_every,
    )
    sandbox.start()
    try:
        api = replace(settings.api, url=sandbox.url, user=DEMO_USER, password=DEMO_PASSWORD)
        log.info("no API URL configured: using the embedded sandbox at %s", sandbox.url)
        client = HeroBaseClient(
            api, session=session, clock=clock, retry=retry, timezone=settings.timezone
        )
        try:
            yield client
        finally:
            client.close()
    finally:
        sandbox.stop()
