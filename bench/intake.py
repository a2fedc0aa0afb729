"""Benchmark: drop-folder pickup latency and throughput of ``leadpipe run``'s intake.

1. Pickup latency (file complete -> claimed) with native events and in polling mode, as a
   multiple of the settle time plus the sweep interval (the configured worst case for
   polling; events should land near the settle time alone).
2. Throughput for 1,000 small files across 3 campaigns with a no-op processor (the intake's own
   cost: listing, settling, hashing, two renames and a receipt-free final move per file), against
   a baseline measured in the same run: one bare ``os.rename`` per file on the same disk.
3. Throughput with the real ingest (100 files of 5 rows): against a sandbox without rate limit,
   and against the embedded demo sandbox, whose 600 requests/minute are the bound there.

    .venv/bin/python bench/intake.py [--files 1000] [--settle 0.5] [--sweep 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.config import IntakeSettings, Paths, SandboxSettings, Settings, StatusSettings
from pipeline.dropfolder.jobs import Job, Outcome
from pipeline.service.loop import ServiceInfo
from pipeline.service.run import run_service

CAMPAIGNS = ["ALPHA", "BETA", "GAMMA"]


def settings_for(root: Path, **intake: Any) -> Settings:
    return Settings(
        paths=Paths(
            inbox=root / "inbox",
            outbox=root / "outbox",
            state=root / "state",
            schemas=root / "schemas",
        ),
        intake=IntakeSettings(**intake),
        status=StatusSettings(enabled=False),
        sandbox=SandboxSettings(simulate_every=3600),
    )


class Service:
    """run_service in a thread with a processor that notes when each file was claimed."""

    def __init__(self, settings: Settings, processor: Any = None) -> None:
        self.claimed: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.info: ServiceInfo | None = None
        kw: dict[str, Any] = {}
        if processor is None:
            kw = {"processor": self.note, "campaigns": lambda: CAMPAIGNS}
        self.thread = threading.Thread(
            target=run_service,
            args=(settings,),
            kwargs={"stop": self.stop, "on_ready": self._ready, **kw},
        )

    def _ready(self, info: ServiceInfo) -> None:
        self.info = info
        self.ready.set()

    def note(self, job: Job) -> Outcome:
        with self.lock:
            self.claimed[job.name] = time.monotonic()
        return Outcome("processed")

    def __enter__(self) -> Service:
        self.thread.start()
        self.ready.wait(60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def wait(cond: Any, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.005)


def pickup(root: Path, *, polling: bool, settle: float, sweep: float, n: int) -> list[float]:
    """Latencies of ``n`` files dropped one at a time (each waits for the previous)."""
    for c in CAMPAIGNS:
        (root / "inbox" / c).mkdir(parents=True, exist_ok=True)
    s = settings_for(root, settle_seconds=settle, sweep_seconds=sweep, polling=polling)
    out = []
    with Service(s) as svc:
        for i in range(n):
            time.sleep(0.137 * (i % 7))  # drop at varying phases of the sweep timer
            name = f"pick-{i}.csv"
            path = root / "inbox" / CAMPAIGNS[i % 3] / name
            path.write_text("name,phone\nx,+4512345678\n", encoding="utf-8")
            done = time.monotonic()
            wait(lambda name=name: name in svc.claimed, settle + sweep + 10)
            out.append(svc.claimed[name] - done)
    return out


def throughput(root: Path, files: int) -> tuple[float, float]:
    """Seconds for ``files`` small files (no-op processor) and for bare renames of as many."""
    for c in CAMPAIGNS:
        (root / "inbox" / c).mkdir(parents=True, exist_ok=True)
    base = root / "baseline"
    base.mkdir()
    for i in range(files):
        (base / f"f{i}.csv").write_text("name,phone\nx,+4512345678\n", encoding="utf-8")
    t0 = time.perf_counter()
    for i in range(files):
        (base / f"f{i}.csv").rename(base / f"g{i}.csv")
    bare = time.perf_counter() - t0
    s = settings_for(root, settle_seconds=0.2, sweep_seconds=1.0, campaign_parallelism=3)
    for i in range(files):  # dropped before start: the start-up sweep finds them all
        p = root / "inbox" / CAMPAIGNS[i % 3] / f"drop-{i:04d}.csv"
        p.write_text(f"name,phone\nx{i},+4512345678\n", encoding="utf-8")
    time.sleep(0.3)
    t0 = time.perf_counter()
    with Service(s) as svc:
        wait(lambda: len(svc.claimed) >= files, 600)
        wait(lambda: not any((root / "inbox" / ".leadpipe" / "work").rglob("*.csv")), 60)
        took = time.perf_counter() - t0
    return took, bare


def real_ingest(root: Path, files: int, *, unlimited: bool) -> tuple[float, int]:
    """Seconds for ``files`` 5-row CSVs through the real ingest; and the API requests made.

    ``unlimited``: a sandbox without rate limit and a client ceiling far above the load;
    otherwise the embedded demo sandbox with the demo tenant's 600 requests/minute.
    """
    from dataclasses import replace

    from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox

    s = settings_for(root, settle_seconds=0.2, sweep_seconds=1.0, campaign_parallelism=3)
    sb = None
    if unlimited:
        sb = Sandbox(port=0).start()
        sb.set_rate_limit(per_minute=10**6, per_day=10**8)
        api = replace(
            s.api, url=sb.url, user=DEMO_USER, password=DEMO_PASSWORD, requests_per_minute=10**6
        )
        s = replace(s, api=api)
    folder = root / "inbox" / "B2B-DK-SPRING"
    folder.mkdir(parents=True)
    for i in range(files):
        rows = "".join(f"Co {i}-{r},+45{30000000 + i * 10 + r}\n" for r in range(5))
        (folder / f"real-{i:03d}.csv").write_text("Name,Phone\n" + rows, encoding="utf-8")
    time.sleep(0.3)
    try:
        t0 = time.perf_counter()
        run_service(s, once=True, status_page=False)
        took = time.perf_counter() - t0
        requests = len(sb.requests()) if sb is not None else 0
    finally:
        if sb is not None:
            sb.stop()
    done = len(list((folder / "processed").glob("*.csv")))
    assert done == files, f"only {done} of {files} processed"
    return took, requests


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--sweep", type=float, default=2.0)
    ap.add_argument("--drops", type=int, default=12)
    a = ap.parse_args()
    bound = a.settle + a.sweep
    print(f"settle {a.settle} s, sweep {a.sweep} s (settle + sweep = {bound} s)")
    for polling in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            lat = pickup(Path(tmp), polling=polling, settle=a.settle, sweep=a.sweep, n=a.drops)
        mode = "polling" if polling else "events "
        print(
            f"pickup {mode}: median {statistics.median(lat):.3f} s, max {max(lat):.3f} s"
            f" = {statistics.median(lat) / bound:.2f}x / {max(lat) / bound:.2f}x of settle+sweep"
            f" ({statistics.median(lat) / a.settle:.2f}x of settle alone)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        took, bare = throughput(Path(tmp), a.files)
    print(
        f"throughput, {a.files} small files, no-op processor: {took:.2f} s "
        f"({a.files / took:.0f} files/s); bare os.rename of as many: {bare * 1000:.1f} ms; "
        f"ratio {took / bare:.0f}x"
    )
    for unlimited in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            real, requests = real_ingest(Path(tmp), 100, unlimited=unlimited)
        label = (
            f"sandbox without rate limit, {requests} API requests"
            if unlimited
            else "embedded demo sandbox, 600 requests/min"
        )
        print(
            f"throughput, 100 files x 5 rows, real ingest ({label}): {real:.2f} s "
            f"({100 / real:.1f} files/s, {500 / real:.0f} rows/s)"
        )


if __name__ == "__main__":
    main()
