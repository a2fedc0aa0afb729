"""Errors from the real API (sandbox): missing search, missing right, retention in the loop."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from pipeline.api import HeroBaseClient
from pipeline.clock import FakeClock
from pipeline.config import ExportJob
from pipeline.errors import Action
from pipeline.export.scheduler import ExportScheduler
from pipeline.sandbox import RESTRICTED_PASSWORD, RESTRICTED_USER
from tests.export.conftest import TZ, Env, api_settings

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def test_missing_search_is_reported_and_the_other_job_still_exports(env: Env) -> None:
    gone = ExportJob(name="gone", search="no_such_search", start="2026-09-29")
    good = ExportJob(name="good", search="api_import_export", start="2026-09-29")
    sched = ExportScheduler(env.settings(gone, good), env.client, clock=env.clock)
    results = sched.run_due(NOW)
    assert [(r.job, r.status) for r in results] == [
        ("gone", "failed"), ("good", "written"), ("good", "written"),
    ]  # fmt: skip
    st = {s.name: s for s in sched.status(NOW)}
    assert st["gone"].state == "error"
    assert st["gone"].message.startswith("search 'no_such_search' was not found by the API")
    assert st["gone"].watermark is None
    assert list((env.tmp / "outbox").glob("gone/*.csv")) == []
    assert (st["good"].state, st["good"].watermark) == ("ok", "2026-10-01")


def test_account_without_leads_get_gets_a_clear_error(env: Env) -> None:
    api = replace(api_settings(env.sb.url), user=RESTRICTED_USER, password=RESTRICTED_PASSWORD)
    client = HeroBaseClient(api, clock=FakeClock(NOW), timezone=TZ)
    try:
        job = ExportJob(name="nightly", search="api_import_export", format="objects")
        sched = ExportScheduler(env.settings(job), client, clock=env.clock)
        [result] = sched.run_due(NOW)
    finally:
        client.close()
    assert result.status == "failed"
    assert result.error_kind is Action.STOP
    assert result.exit_code == 5  # the API refused
    assert "it needs the right 'Leads: GET'" in result.error
    assert sched.status(NOW)[0].state == "error"


def test_retention_runs_after_each_successful_run(env: Env) -> None:
    job = ExportJob(name="kept", search="api_import_export", start="2026-09-24", keep_days=3)
    sched = ExportScheduler(env.settings(job), env.client, clock=env.clock)
    sched.run_due(NOW)
    left = sorted(p.name for p in (env.tmp / "outbox" / "kept").glob("*.csv"))
    assert left == [
        "kept_2026-09-27_2026-09-28.csv", "kept_2026-09-28_2026-09-29.csv",
        "kept_2026-09-29_2026-09-30.csv", "kept_2026-09-30_2026-10-01.csv",
    ]  # fmt: skip
