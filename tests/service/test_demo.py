"""The README walkthrough: `leadpipe run --once` against the embedded sandbox with the demo file."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "B2B-DK-SPRING-demo.xlsx"


def test_the_committed_demo_files_are_what_make_demo_writes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "make_demo.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in ("B2B-DK-SPRING-demo.xlsx", "B2B-DK-SPRING-demo.csv"):
        assert (tmp_path / name).read_bytes() == (REPO / "examples" / name).read_bytes(), name


def test_demo_file_dropped_as_the_readme_says_ends_processed_with_its_mistakes_rejected(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text(
        '[paths]\ninbox = "inbox"\noutbox = "outbox"\nstate = "state"\nschemas = "schemas"\n'
        "[intake]\nsettle_seconds = 0.2\n[status]\nport = 0\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPIPE_")}
    folder = tmp_path / "inbox" / "B2B-DK-SPRING"
    folder.mkdir(parents=True)
    shutil.copy(DEMO, folder / DEMO.name)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pipeline.cli import main; main()",
            "--config",
            str(cfg),
            "run",
            "--once",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "running against the built-in demo sandbox" in out
    assert f"Drop CSV or XLSX files into a campaign folder under {tmp_path / 'inbox'}" in out
    assert "1 file(s) processed, 0 failed." in out

    processed = sorted(p.name for p in (folder / "processed").iterdir() if p.is_file())
    stamp = processed[0].split("_", 1)[0]
    base = f"{stamp}_{DEMO.name}"
    assert processed == [base, f"{base}.receipt.json", f"{base}.receipt.txt"]
    rejected = sorted(p.name for p in (folder / "rejected").iterdir() if p.is_file())
    assert rejected == [f"{base}.rejects.csv", f"{base}.rejects.xlsx"]
    assert [p.name for p in folder.iterdir() if p.is_file()] == []

    receipt = json.loads((folder / "processed" / f"{base}.receipt.json").read_text("utf-8"))
    assert (receipt["rows_read"], receipt["accepted"], receipt["rejected"]) == (10, 6, 4)
    assert receipt["reject_files"][0] == str(folder / "rejected" / f"{base}.rejects.xlsx")
    with (folder / "rejected" / f"{base}.rejects.csv").open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["_row"], r["Note"]) for r in rows] == [
        ("4", "phone too short"),
        ("6", "name missing"),
        ("8", "e-mail has two @"),
        ("10", "segment not a choice"),
    ]
    text = (folder / "processed" / f"{base}.receipt.txt").read_text("utf-8")
    assert text.startswith(f"leadpipe receipt for {DEMO.name} (campaign B2B-DK-SPRING)")

    # the embedded default also runs a demo export: the last week of simulated call outcomes,
    # one complete file per day with its manifest
    assert "Exports (demo_daily_outcomes) are written to" in out
    exports = tmp_path / "outbox" / "demo_daily_outcomes"
    files = sorted(p.name for p in exports.glob("*.csv"))
    assert len(files) == 7, files
    total = 0
    for name in files:
        manifest = json.loads((exports / f"{name}.manifest.json").read_text("utf-8"))
        assert manifest["search"] == "daily_outcomes"
        with (exports / name).open(encoding="utf-8", newline="") as fh:
            assert len(list(csv.reader(fh))) == manifest["rows"] + 1
        total += manifest["rows"]
    assert total > 0
