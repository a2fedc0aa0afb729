"""A corpus of hostile files dropped at once: each ends in one place with its reason in plain
words, and normal files dropped meanwhile are processed as usual (the service, the sandbox)."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import load_settings
from pipeline.dropfolder.layout import safe_name
from pipeline.sandbox import Sandbox
from tests.dropfolder.test_real_ingest import created, env_for, leads_csv, write_config
from tests.hostile import CAMPAIGN, build
from tests.service.conftest import service, wait_for


def test_every_hostile_file_ends_in_one_place_with_a_reason_and_intake_goes_on(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url, campaign_parallelism=2)
    settings = load_settings(cfg, env=env_for(cfg))
    folder = tmp_path / "inbox" / CAMPAIGN
    expected = build(folder)
    total = len(expected)
    with service(settings) as svc:

        def finished() -> int:
            t = svc.snapshot()["totals"]
            return int(t["processed"]) + int(t["failed"])

        wait_for(lambda: finished() >= 3, 60, "the first hostile files")
        normal, names = leads_csv("NORMAL", valid=4, invalid=1)
        (folder / "normal.csv").write_bytes(normal)  # while the corpus is being worked through
        wait_for(lambda: finished() == total + 1, 120, "every file")
        snap = svc.snapshot()
        assert snap["health"]["problems"] == []
        assert snap["totals"]["changed"] == 0
    assert sorted(created(sandbox, "NORMAL")) == sorted(names)
    assert [p for p in (tmp_path / "inbox" / ".leadpipe" / "work").rglob("*") if p.is_file()] == []
    left = [p.name for p in folder.iterdir() if p.is_file()]
    assert left == []  # nothing stays in the inbox
    for name, want in expected.items():
        shown = safe_name(name)
        place = folder / ("processed" if want.outcome == "processed" else "failed")
        originals = [p for p in place.glob(f"*_{shown}") if p.is_file()]
        assert len(originals) == 1, (name, sorted(p.name for p in place.iterdir()))
        suffix = ".receipt.txt" if want.outcome == "processed" else ".error.txt"
        text = originals[0].with_name(originals[0].name + suffix).read_text("utf-8")
        assert want.says in text, (name, text)
        assert "internal error" not in text, (name, text)
    for other in ("processed", "failed"):  # and nowhere else
        names_there = [p.name for p in (folder / other).iterdir()]
        for name, want in expected.items():
            if want.outcome != other:
                assert not any(n.endswith(f"_{safe_name(name)}") for n in names_there), name
