"""Exports against a strict sandbox (only declared parameter names), in both naming conventions."""

from __future__ import annotations

import csv
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.api import HeroBaseClient
from pipeline.config import DEFAULT_PARAMS, ApiSettings, ExportJob
from pipeline.export.windows import Window
from pipeline.export.writer import export_window
from pipeline.sandbox import DEMO_PASSWORD, DEMO_SEED_PATH, DEMO_USER, Sandbox

TODAYS = ({}, {}, ())  # the sandbox's and leadpipe's default names, no Include
PASCAL = (
    {"leads_search": "SearchName", "leads_from": "ModifiedFrom", "leads_to": "ModifiedTo",
     "csv_search": "SearchName", "csv_from": "ModifiedFrom", "csv_to": "ModifiedTo"},
    {"leads_search": "SearchName", "leads_from": "ModifiedFrom", "leads_to": "ModifiedTo",
     "csv_search": "SearchName", "csv_from": "ModifiedFrom", "csv_to": "ModifiedTo"},
    ("data",),
)  # fmt: skip


def strict_seed(names: dict[str, str], include: bool) -> dict[str, Any]:
    data = tomllib.loads(DEMO_SEED_PATH.read_text(encoding="utf-8"))
    data["tenant"].update(strict_params=True, leads_include=include, params=names)
    return data


@pytest.mark.parametrize("fmt", ["objects", "csv"])
@pytest.mark.parametrize("convention", [TODAYS, PASCAL], ids=["searchName-from-to", "Modified"])
def test_exports_pass_against_the_strict_sandbox(
    tmp_path: Path, fmt: str, convention: tuple[Any, ...]
) -> None:
    tenant_names, our_names, include = convention
    today = datetime.now(UTC).date()
    window = Window(today - timedelta(days=40), today + timedelta(days=1))
    job = ExportJob(name="strict", search="daily_outcomes", format=fmt)
    with Sandbox(strict_seed(tenant_names, bool(include))) as sb:
        api = ApiSettings(
            url=sb.url,
            user=DEMO_USER,
            password=DEMO_PASSWORD,
            max_retries=0,
            params={**DEFAULT_PARAMS, **our_names},
            leads_include=include,
        )
        with HeroBaseClient(api) as client:
            result = export_window(
                job,
                window,
                client=client,
                outbox=tmp_path / "outbox",
                timezone="Europe/Copenhagen",
                now=datetime.now(UTC),
                page_size=50,
            )
        asked = [e for e in sb.tenant.log.entries() if e["path"] in ("/leads", "/leads/csv")]
    assert result.status == "written"
    assert result.rows > 0
    assert asked
    assert {e["status"] for e in asked} == {200}
    wanted = "ModifiedFrom" if include else "from"
    assert all(wanted in e["query"] for e in asked)
    if fmt == "objects":
        assert result.path is not None
        with result.path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert any(r.get("phone") or r.get("telefon") for r in rows)  # the leads' data
        if include:
            assert all(e["query"].get("Include") == "data" for e in asked)


def test_without_include_the_include_tenant_sends_no_data(tmp_path: Path) -> None:
    names = PASCAL[0]
    with Sandbox(strict_seed(names, True)) as sb:
        api = ApiSettings(
            url=sb.url, user=DEMO_USER, password=DEMO_PASSWORD, params={**DEFAULT_PARAMS, **names}
        )
        with HeroBaseClient(api) as client:
            leads = list(client.iter_leads("daily_outcomes", date(2000, 1, 1), page_size=500))
    assert leads
    assert all(not lead.data for lead in leads)
