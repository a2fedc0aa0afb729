"""kill -9 in the middle of an export (subprocess): nothing partial is visible, reruns finish."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipeline.clock import SystemClock
from pipeline.errors import StateError
from pipeline.export.state import StateStore
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox

CPH = ZoneInfo("Europe/Copenhagen")
CAMPAIGN = "B2B-DK-SPRING"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:  # real clock: the child process runs `leadpipe export` for real
        yield sb


def today() -> date:
    return SystemClock().now().astimezone(CPH).date()


def write_config(folder: Path, sb: Sandbox, fmt: str, start: date) -> Path:
    cfg = folder / "leadpipe.toml"
    cfg.write_text(
        f'timezone = "Europe/Copenhagen"\n[api]\nurl = "{sb.url}"\nmax_retries = 0\n'
        f'[[exports]]\nname = "nightly"\nsearch = "api_import_export"\nformat = "{fmt}"\n'
        f'start = "{start}"\n',
        encoding="utf-8",
    )
    return cfg


def leadpipe(
    cfg: Path, *args: str, crash_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEADPIPE_API_USER": DEMO_USER, "LEADPIPE_API_PASSWORD": DEMO_PASSWORD}
    env.pop("LEADPIPE_CRASH_AT", None)
    if crash_at:
        env["LEADPIPE_CRASH_AT"] = crash_at
    code = "from pipeline.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(cfg), *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def sandbox_ids(sb: Sandbox, start: date, end: date) -> list[str]:
    lo, hi = start.isoformat(), end.isoformat()
    return sorted(
        lead["uniqueId"]
        for lead in sb.leads(CAMPAIGN)
        if lead["status"] == "UserProcessed"
        and lead["closure"] == "Success"
        and lo <= lead["lastModifiedTime"] < hi
    )


def visible_exports(folder: Path) -> dict[str, list[str]]:
    """Data files a consumer can see, each parsed: name -> uniqueIds."""
    out: dict[str, list[str]] = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("*.csv")):
        text = p.read_bytes().decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline="")))
        out[p.name] = sorted(r[0] for r in rows[1:])
    return out


@pytest.mark.parametrize(
    ("fmt", "point"),
    [
        ("objects", "export_midstream"),
        ("csv", "export_midstream"),
        ("objects", "export_before_manifest"),
        ("csv", "export_before_state"),
    ],
)
def test_kill_9_then_rerun(sandbox: Sandbox, tmp_path: Path, fmt: str, point: str) -> None:
    start = today() - timedelta(days=5)
    busy = start + timedelta(days=2)  # the first two windows are empty, the third is not
    for i in range(300):
        d = busy + timedelta(days=i % 3)
        sandbox.insert_lead(
            CAMPAIGN, {"name": f"Crash {fmt} {point} {i}", "phone": f"+45 {30000000 + i}"},
            status="UserProcessed", closure="Success",
            last_modified_time=datetime(d.year, d.month, d.day, 10, i % 60),
        )  # fmt: skip
    cfg = write_config(tmp_path, sandbox, fmt, start)
    folder = tmp_path / "outbox" / "nightly"
    state = tmp_path / "state" / "exports" / "nightly.json"

    crashed = leadpipe(cfg, "export", "nightly", crash_at=point)
    assert crashed.returncode == -9, crashed.stderr

    # every file a consumer can see is complete: exactly the sandbox's answer for its window
    seen = visible_exports(folder)
    for name, ids in seen.items():
        lo, hi = (date.fromisoformat(x) for x in name.removesuffix(".csv").split("_")[1:])
        assert ids == sandbox_ids(sandbox, lo, hi), name
    mark = json.loads(state.read_text())["watermark"] if state.exists() else None
    # the watermark never runs ahead of the files
    for k in range((date.fromisoformat(mark) - start).days if mark else 0):
        d = start + timedelta(days=k)
        assert f"nightly_{d}_{d + timedelta(days=1)}.csv.manifest.json" in os.listdir(folder)
    if point == "export_midstream":
        # csv dies after its first download; objects in the first window that has rows
        crashed_window = start
        while fmt == "objects" and not sandbox_ids(
            sandbox, crashed_window, crashed_window + timedelta(days=1)
        ):
            crashed_window += timedelta(days=1)
        assert f"nightly_{crashed_window}_{crashed_window + timedelta(days=1)}.csv" not in seen
        assert mark == (str(crashed_window) if crashed_window > start else None)

    rerun = leadpipe(cfg, "export", "nightly")
    assert rerun.returncode == 0, rerun.stderr
    seen = visible_exports(folder)
    assert len(seen) == 5
    for i in range(5):
        d = start + timedelta(days=i)
        name = f"nightly_{d}_{d + timedelta(days=1)}.csv"
        assert seen[name] == sandbox_ids(sandbox, d, d + timedelta(days=1))
        manifest = json.loads((folder / f"{name}.manifest.json").read_text("utf-8"))
        assert manifest["rows"] == len(seen[name])
    assert sum(len(v) for v in seen.values()) == len(sandbox_ids(sandbox, start, today()))
    assert json.loads(state.read_text())["watermark"] == str(today())
    assert [p for p in (folder / ".leadpipe").rglob("*") if p.is_file()] == []


def test_second_process_cannot_run_the_same_job(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from pipeline.export.state import StateStore\n"
        f"with StateStore(Path({str(tmp_path)!r})).lock('nightly'):\n"
        "    print('locked', flush=True); sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        with (
            pytest.raises(StateError, match="already running in another leadpipe process"),
            StateStore(tmp_path).lock("nightly"),
        ):
            pass
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    with StateStore(tmp_path).lock("nightly"):  # free again once the other process ended
        pass
