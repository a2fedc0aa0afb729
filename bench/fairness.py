"""Benchmark: a preview in one campaign while another uploads at the full budget, and a stop.

``leadpipe run`` runs as a user runs it (a child process, its own config) against the sandbox
on 127.0.0.1 with a per-minute limit (default 600, the demo account's). Measured, as wall time:

1. **Preview latency, idle** (the baseline, same run): a 3-row file dropped into
   ``inbox/B2B-SE-AUTUMN/preview/`` with nothing else to do, from the moment it is written to
   the moment its receipt appears. It includes the settle time (0.2 s here) and the schema
   fetch (two requests).
2. **Preview latency under load**: the same, while campaign B2B-DK-SPRING uploads a big file
   at the full budget. The load first runs for ``--warm`` seconds (default 65: the minute
   window is full of its uploads), then ``--previews`` files are dropped one after the other,
   at moments spread over a minute (a burst of uploads blocks some moments of a minute and not
   others, so the maximum matters as much as the median). Target: median within 2 s.
3. **Stop under load**: SIGTERM while the upload goes on with 8 requests in flight, to the
   process's exit (the service promises 10 s), against a stop when idle.

``--pythonpath DIR`` runs leadpipe from another tree (e.g. a worktree of an older commit), to
compare before and after on the same machine.

    .venv/bin/python bench/fairness.py [--limit 600] [--rows 20000] [--previews 7] [--warm 65]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox  # noqa: E402

UPLOADING = "B2B-DK-SPRING"
PREVIEWING = "B2B-SE-AUTUMN"
PREVIEW = "company,phone,email\nAcme AB,+46 70 123 45 67,a@acme.se\nBeta AB,+46 70 123 45 68,\n,\n"


def big_csv(rows: int) -> bytes:
    lines = ["Name,Phone,Email,Segment"]
    lines += [f"Fair company {i},+45{20000000 + i:08d},row{i}@example.dk,SMB" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def write_config(root: Path, url: str, limit: int) -> Path:
    cfg = root / "leadpipe.toml"
    cfg.write_text(
        '[paths]\ninbox = "inbox"\noutbox = "outbox"\nstate = "state"\nschemas = "schemas"\n'
        f'[api]\nurl = "{url}"\nrequests_per_minute = {limit}\nread_timeout = 5\n'
        "[intake]\nsettle_seconds = 0.2\nsweep_seconds = 1\nconcurrency = 8\n"
        "[status]\nport = 0\n",
        encoding="utf-8",
    )
    return cfg


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.02)


class Run:
    """One ``leadpipe run`` child in a fresh folder against ``sandbox``."""

    def __init__(self, sandbox: Sandbox, limit: int, pythonpath: str | None) -> None:
        self.sandbox = sandbox
        self.tmp = tempfile.TemporaryDirectory(prefix="leadpipe-fairness-")
        self.root = Path(self.tmp.name)
        cfg = write_config(self.root, sandbox.url, limit)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPIPE_")}
        env.update(
            LEADPIPE_CONFIG=str(cfg),
            LEADPIPE_API_USER=DEMO_USER,
            LEADPIPE_API_PASSWORD=DEMO_PASSWORD,
        )
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        self.log = self.root / "run.log"
        for code in (UPLOADING, PREVIEWING):
            (self.root / "inbox" / code / "preview").mkdir(parents=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from pipeline.cli import main; main()", "run"],
                env=env,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: "Stop with Ctrl+C" in self.text(), 60, "leadpipe run to start")

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def preview(self, name: str) -> float:
        """Drop a small file into the previewing campaign's preview/; seconds to its receipt."""
        folder = self.root / "inbox" / PREVIEWING / "preview"
        tmp = folder / f".{name}.part"
        tmp.write_text(PREVIEW, encoding="utf-8")
        start = time.monotonic()
        tmp.rename(folder / name)
        wait_for(lambda: any(folder.glob(f"*_{name}.receipt.json")), 300, f"{name}'s receipt")
        return time.monotonic() - start

    def stop(self) -> float:
        """SIGTERM; seconds to the exit."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return time.monotonic() - start

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.tmp.cleanup()


def posts(sandbox: Sandbox) -> int:
    return sum(1 for r in sandbox.requests() if r["method"] == "POST")


def uptime() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=600, help="requests per minute of the account")
    ap.add_argument("--rows", type=int, default=20_000, help="rows of the big file")
    ap.add_argument("--previews", type=int, default=7)
    ap.add_argument("--warm", type=float, default=65.0, help="seconds of upload before previews")
    ap.add_argument("--pythonpath", help="run leadpipe from this tree (before/after)")
    args = ap.parse_args()
    print(f"load average at start: {uptime()}")
    sandbox = Sandbox(port=0).start()
    sandbox.set_rate_limit(per_minute=args.limit, per_day=10**8)
    try:
        run = Run(sandbox, args.limit, args.pythonpath)
        try:
            idle = [run.preview(f"idle{i}.csv") for i in range(args.previews)]
            time.sleep(1.0)
            idle_stop_probe = posts(sandbox)
            (run.root / "inbox" / UPLOADING / "big.csv").write_bytes(big_csv(args.rows))
            warm_end = time.monotonic() + args.warm
            wait_for(lambda: time.monotonic() > warm_end, args.warm + 5, "the warm-up")
            sent_before = posts(sandbox) - idle_stop_probe
            loaded = []
            previews_began = time.monotonic()
            for i in range(args.previews):  # dropped at moments spread over a whole minute
                due = time.monotonic() + 60.0 / args.previews
                loaded.append(run.preview(f"busy{i}.csv"))
                time.sleep(max(0.5, due - time.monotonic()))
            sent = posts(sandbox) - idle_stop_probe
            if sent >= args.rows:
                print("warning: the big file finished during the previews; use more --rows")
            rate = (sent - sent_before) / (time.monotonic() - previews_began)
            stop_busy = run.stop()
            refused = sum(1 for r in sandbox.requests() if r["status"] == 429)
        finally:
            run.close()
        idle_run = Run(sandbox, args.limit, args.pythonpath)
        try:
            time.sleep(2.0)
            stop_idle = idle_run.stop()
        finally:
            idle_run.close()
    finally:
        sandbox.stop()
    med_idle, med_busy = statistics.median(idle), statistics.median(loaded)
    print(f"account limit {args.limit}/min; the big file sent {sent_before} rows in the warm-up")
    print(f"upload rate while previewing: {rate:.1f} rows/s (limit {args.limit / 60:.1f}/s)")
    print(
        f"preview latency idle:  median {med_idle:.2f} s  "
        f"(min {min(idle):.2f}, max {max(idle):.2f})  [baseline]"
    )
    print(
        f"preview latency busy:  median {med_busy:.2f} s  (min {min(loaded):.2f}, "
        f"max {max(loaded):.2f})  ratio {med_busy / med_idle:.2f}x  target <= 2 s: "
        f"{'met' if med_busy <= 2.0 else 'MISSED'}"
    )
    print(
        f"stop under load: {stop_busy:.2f} s; stop idle: {stop_idle:.2f} s [baseline]  "
        f"ratio {stop_busy / stop_idle:.2f}x  target <= 10 s: "
        f"{'met' if stop_busy <= 10.0 else 'MISSED'}"
    )
    print(f"requests answered 429: {refused}")
    print(f"load average at end: {uptime()}")


if __name__ == "__main__":
    main()
