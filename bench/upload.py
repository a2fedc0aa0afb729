"""Benchmark: delivery throughput of ``pipeline.ingest.deliver.upload.Uploader`` against the
sandbox.

The sandbox runs in a separate process (as a real API would), the uploader in this one, with the
ledger on disk (SQLite WAL, synchronous=FULL) and the real client (shared rate limiter, retries).

1. Latency: a ``delay`` fault adds 20 ms to every ``POST /leads``. Baseline, same run: the mean
   round-trip time of sequential POSTs through the same client. Target: 20,000 rows at
   concurrency 8 reach >= 0.9 x 8 / RTT rows per second.
2. Rate limit: the sandbox allows 6,000 requests/minute; 5,000 rows at concurrency 8. Target:
   >= 0.95 x the limit (100 rows/s), <= 1 % of requests answered 429, every row accepted once.
   ``--binding`` adds a run where the limit binds (more rows than one minute's quota).

    .venv/bin/python bench/upload.py [--rows 20000] [--limit-rows 5000] [--binding]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import requests

from pipeline.api import HeroBaseClient
from pipeline.config import ApiSettings
from pipeline.ingest.deliver.upload import Uploader, UploadRow
from pipeline.ledger import FileKey, RowState
from pipeline.ledger.fingerprint import fingerprint
from pipeline.ledger.sqlite import open_ledger
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER

CODE = "B2B-DK-SPRING"
SERVER = """
import sys
from pipeline.sandbox import Sandbox
sb = Sandbox().start()
sb.set_rate_limit(per_minute=int(sys.argv[1]), per_day=100_000_000)
print(sb.url, sb.root_url, flush=True)
sys.stdin.read()
sb.stop()
"""


class Server:
    """A sandbox in its own process; stopped by closing its stdin."""

    def __init__(self, per_minute: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(per_minute)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url, self.root = self.proc.stdout.readline().split()

    def control(self, method: str, path: str, body: Any = None) -> Any:
        resp = requests.request(method, self.root + path, json=body, timeout=60)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def cpu(self) -> float:
        """CPU seconds the sandbox process used so far."""
        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def rows(n: int, tag: str) -> list[UploadRow]:
    out = []
    for i in range(n):
        data = {"name": f"Bench {tag} {i} ApS", "phone": f"+45 {20000000 + i}", "segment": "SMB"}
        out.append(UploadRow(i + 2, data, fingerprint(CODE, data)))
    return out


def client_for(server: Server) -> HeroBaseClient:
    api = ApiSettings(
        url=server.url,
        user=DEMO_USER,
        password=DEMO_PASSWORD,
        requests_per_minute=1_000_000,  # the server's own limit is learned from /limits
        pool_size=16,
    )
    return HeroBaseClient(api)


def deliver(server: Server, batch: list[UploadRow], state: Path, concurrency: int) -> float:
    client = client_for(server)
    ledger = open_ledger(state)
    sha = f"{len(batch):064d}"
    ledger.begin_file(FileKey(sha, CODE), "bench.csv")
    up = Uploader(client, ledger, sha256=sha, campaign=CODE, concurrency=concurrency)
    client.account()  # warm up: connection, limits
    t0 = time.perf_counter()
    up.deliver(batch)
    elapsed = time.perf_counter() - t0
    counts = ledger.row_counts(FileKey(sha, CODE))
    ledger.close()
    client.close()
    assert up.report.halt == "", up.report.reason
    assert counts[RowState.ACCEPTED] == len(batch), counts
    return elapsed


def stored_once(server: Server, tag: str, n: int) -> bool:
    log = server.control("GET", "/_sandbox/requests")
    created = Counter(
        r["body"]["data"]["name"]
        for r in log
        if r["method"] == "POST" and r["status"] == 200 and tag in r["body"]["data"]["name"]
    )
    return len(created) == n and max(created.values()) == 1


def latency_run(n: int, concurrency: int, delay: float, state: Path) -> None:
    server = Server(per_minute=100_000_000)
    try:
        server.control(
            "POST", "/_sandbox/faults", {"kind": "delay", "route": "POST /leads", "delay": delay,
                                         "times": 0},
        )  # fmt: skip
        rtt = sequential_rtt(server, "rtt-before")
        cpu0, srv0 = time.process_time(), server.cpu()
        elapsed = deliver(server, rows(n, "lat"), state / "lat", concurrency)
        cpu, srv_cpu = time.process_time() - cpu0, server.cpu() - srv0
        rtt_after = sequential_rtt(server, "rtt-after")
        rate = n / elapsed
        ideal = concurrency / rtt
        once = stored_once(server, "Bench lat", n)
    finally:
        server.stop()
    print(
        f"latency: {n} rows, concurrency {concurrency}, injected {delay * 1000:.0f} ms: "
        f"RTT {rtt * 1000:.1f} ms (after the run: {rtt_after * 1000:.1f} ms), ideal 8/RTT "
        f"{ideal:.0f} rows/s, got {rate:.0f} rows/s in {elapsed:.1f} s = {rate / ideal:.2f}x "
        f"(target >= 0.90x; vs the RTT after the run {rate / (concurrency / rtt_after):.2f}x); "
        f"CPU: uploader {cpu / elapsed:.0%}, sandbox {srv_cpu / elapsed:.0%} of one core; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; each row once: {once}"
    )


def sequential_rtt(server: Server, tag: str) -> float:
    """Mean time of one POST through the same client, one at a time (after 50 warm-ups)."""
    client = client_for(server)
    client.account()
    batch = rows(300, tag)
    for r in batch[:50]:
        client.create_lead(CODE, r.data)
    t0 = time.perf_counter()
    for r in batch[50:]:
        client.create_lead(CODE, r.data)
    rtt = (time.perf_counter() - t0) / 250
    client.close()
    return rtt


def limit_run(n: int, per_minute: int, concurrency: int, state: Path, label: str) -> None:
    server = Server(per_minute=per_minute)
    try:
        elapsed = deliver(server, rows(n, label), state / label, concurrency)
        log = server.control("GET", "/_sandbox/requests")
        statuses = Counter(r["status"] for r in log)
        once = stored_once(server, f"Bench {label}", n)
    finally:
        server.stop()
    rate = n / elapsed
    limit = per_minute / 60
    share = statuses[429] / max(1, sum(statuses.values()))
    print(
        f"rate limit ({label}): {n} rows under {per_minute}/minute ({limit:.0f}/s), concurrency "
        f"{concurrency}: {rate:.1f} rows/s in {elapsed:.1f} s = {rate / limit:.2f}x of the limit "
        f"(target >= 0.95x); 429 answers {statuses[429]} of {sum(statuses.values())} = "
        f"{share:.2%} (target <= 1 %); each row once: {once}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--limit-rows", type=int, default=5_000)
    ap.add_argument("--binding", action="store_true", help="also run a binding rate limit")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        latency_run(args.rows, 8, 0.020, state)
        limit_run(args.limit_rows, 6000, 8, state, "limit")
        if args.binding:
            limit_run(2_500, 1200, 8, state, "binding")


if __name__ == "__main__":
    main()
