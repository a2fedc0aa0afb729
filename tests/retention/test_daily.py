"""The service applies ``[retention]`` by itself: at start-up (then daily), never blocking."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipeline.config import RetentionSettings
from pipeline.sandbox import Sandbox
from pipeline.service.run import run_service
from tests.ingest.conftest import CAMPAIGN, make_settings


def test_run_once_purges_what_is_due(sb: Sandbox, tmp_path: Path) -> None:
    settings = replace(make_settings(tmp_path, sb), retention=RetentionSettings(originals_days=30))
    processed = settings.paths.inbox / CAMPAIGN / "processed"
    processed.mkdir(parents=True)
    old = processed / "20200101-090000_old.csv"  # stamped six years before this test ran
    old.write_text("Phone\n+4520000001\n", encoding="utf-8")
    receipt = processed / "20200101-090000_old.csv.receipt.txt"  # receipts: 365 days
    receipt.write_text("leadpipe receipt\n", encoding="utf-8")
    never = replace(settings.retention, receipts_days=0)
    result = run_service(replace(settings, retention=never), once=True, status_page=False)
    assert result.failed == 0
    assert not old.exists()
    assert receipt.is_file()  # receipts_days = 0: kept forever
