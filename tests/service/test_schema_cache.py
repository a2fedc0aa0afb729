"""The service reuses a campaign's live schema for ``intake.schema_ttl_seconds``."""

from __future__ import annotations

from pathlib import Path

from pipeline.api import HeroBaseClient
from pipeline.clock import FakeClock
from pipeline.config import load_settings
from pipeline.ingest.schema_cache import SchemaCache
from pipeline.sandbox import Fault, Sandbox
from pipeline.service.run import run_service
from tests.dropfolder.test_real_ingest import CODE, env_for, leads_csv, write_config


def example_fetches(sb: Sandbox) -> int:
    """GET requests for the import example (each fetch of a schema makes two)."""
    return sum(
        1 for r in sb.requests() if r["method"] == "GET" and r["path"].endswith("/leads/example")
    )


def two_files(sb: Sandbox, tmp_path: Path, **intake: object) -> int:
    sb.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sb.url, **intake)
    settings = load_settings(cfg, env=env_for(cfg))
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    for n in range(2):
        data, _ = leads_csv(f"TTL{n}", valid=2, invalid=1)
        (inbox / f"file-{n}.csv").write_bytes(data)
    result = run_service(settings, once=True, status_page=False)
    assert (result.processed, result.failed) == (2, 0)
    return example_fetches(sb)


def test_two_files_in_a_row_fetch_the_example_once(sandbox: Sandbox, tmp_path: Path) -> None:
    assert two_files(sandbox, tmp_path) == 2  # plain + every field, once for both files


def test_a_ttl_of_0_fetches_the_example_for_every_file(sandbox: Sandbox, tmp_path: Path) -> None:
    assert two_files(sandbox, tmp_path, schema_ttl_seconds=0) == 4


def test_the_cache_keeps_a_live_schema_for_the_ttl_only(sandbox: Sandbox, tmp_path: Path) -> None:
    from tests.ingest.conftest import api_settings

    clock = FakeClock()
    cache = SchemaCache(60, clock=clock)
    settings = api_settings(sandbox, max_retries=0, retry_total_seconds=1.0)
    client = HeroBaseClient(settings, timezone="Europe/Copenhagen")
    try:
        first = cache.get(client, CODE, tmp_path)
        clock.advance(59)
        again = cache.get(client, CODE, tmp_path)
        assert example_fetches(sandbox) == 2
        assert (again.source, again.hash, again.drift) == ("live", first.hash, None)
        clock.advance(2)  # past the TTL: fetched again
        cache.get(client, CODE, tmp_path)
        assert example_fetches(sandbox) == 4

        # a snapshot (API down) is never kept: the next file asks the API again
        clock.advance(61)
        sandbox.add_fault(Fault("status", route="GET /leads/example", status=503, times=0))
        assert cache.get(client, CODE, tmp_path).source == "snapshot"
        sandbox.clear_faults()
        sandbox.clear_requests()
        assert cache.get(client, CODE, tmp_path).source == "live"
        assert example_fetches(sandbox) == 2
    finally:
        client.close()
