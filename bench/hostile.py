"""Benchmark: time and peak memory of each hostile file, one fresh process per file.

Each file of the generated hostile corpus (``tests/hostile.py``: forged and honest zip bombs,
an entity bomb, corrupt and cut-short workbooks, 100,000 columns, a 3 MB value, binary files
named ``.csv``, odd names ...) goes through ``leadpipe ingest FILE --campaign B2B-DK-SPRING
--dry-run`` in a fresh child process against an in-process sandbox, as an ops person's file
would go through the service. The child's wall time and peak RSS (``wait4``) are printed as
ratios against a baseline measured in the same run: the same command on a normal 50-row CSV.
The budget per file is 5 s and 256 MB; a file over it is marked ``OVER``.

    .venv/bin/python bench/hostile.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox  # noqa: E402
from tests.hostile import CAMPAIGN, HEADER, build  # noqa: E402

BUDGET_S, BUDGET_MB = 5.0, 256.0


def run_one(path: Path, env: dict[str, str], out: Path) -> tuple[int, float, float]:
    """(exit code, seconds, peak RSS in MB) of one ``leadpipe ingest --dry-run``."""
    cmd = [
        sys.executable,
        "-c",
        "from pipeline.cli import main; main()",
        "ingest",
        os.fsdecode(path),
        "--campaign",
        CAMPAIGN,
        "--dry-run",
        "--out",
        str(out),
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, seconds, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3, help="runs per file (the median counts)")
    args = ap.parse_args()
    sb = Sandbox(port=0).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            cfg = root / "leadpipe.toml"
            cfg.write_text(
                f'[paths]\nstate = "{root / "state"}"\nschemas = "{root / "schemas"}"\n'
                f'[api]\nurl = "{sb.url}"\n',
                encoding="utf-8",
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPIPE_")}
            env.update(
                LEADPIPE_CONFIG=str(cfg),
                LEADPIPE_API_USER=DEMO_USER,
                LEADPIPE_API_PASSWORD=DEMO_PASSWORD,
            )
            corpus = root / "corpus"
            expected = build(corpus)
            normal = root / "normal.csv"
            normal.write_text(
                HEADER + "".join(f"Normal {i},+45{70000000 + i},,SMB\n" for i in range(50)),
                encoding="utf-8",
            )
            out = root / "out"

            def measure(path: Path) -> tuple[int, float, float]:
                runs = [run_one(path, env, out) for _ in range(args.repeat)]
                return (
                    runs[-1][0],
                    statistics.median(r[1] for r in runs),
                    statistics.median(r[2] for r in runs),
                )

            _, base_s, base_mb = measure(normal)
            load = os.getloadavg()
            print(
                f"baseline (normal 50-row CSV): {base_s:.2f} s, {base_mb:.0f} MB peak RSS; "
                f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
            )
            print(f"{'file':32} {'exit':>4} {'s':>6} {'x base':>7} {'MB':>6} {'x base':>7}")
            worst_s = worst_mb = 0.0
            for name, want in sorted(expected.items()):
                code, secs, mb = measure(corpus / name)
                worst_s, worst_mb = max(worst_s, secs), max(worst_mb, mb)
                over = " OVER" if secs > BUDGET_S or mb > BUDGET_MB else ""
                shown = name.encode("utf-8", "replace").decode()[:32]
                print(
                    f"{shown:32} {code:>4} {secs:6.2f} {secs / base_s:7.2f} {mb:6.0f} "
                    f"{mb / base_mb:7.2f}  ({want.outcome}){over}"
                )
            print(
                f"worst: {worst_s:.2f} s ({worst_s / base_s:.2f}x baseline), {worst_mb:.0f} MB "
                f"({worst_mb / base_mb:.2f}x); budget {BUDGET_S:.0f} s and {BUDGET_MB:.0f} MB"
            )
    finally:
        sb.stop()


if __name__ == "__main__":
    main()
