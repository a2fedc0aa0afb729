"""Benchmark: ledger operations per second on PostgreSQL vs SQLite, same run, same machine.

Both ledgers are opened as leadpipe opens them (``open_ledger_for``): SQLite in WAL mode with
``synchronous=FULL`` in a temporary state folder; PostgreSQL in a fresh database of a throwaway
cluster started here (``initdb``/``pg_ctl`` as in tests/postgres.py, fsync on), or ``--url``
(an existing server: a database of its own, emptied before). Workloads, each timed apart:

1. **upload**: ``--rows`` rows of one file in the uploader's pattern (pipeline/ingest/deliver/
   upload.py): ``add_rows`` per chunk of 1,000; ``claim_for_sending`` per batch of 16 rows (the
   durable intent, duplicates skipped) in one thread while 4 threads record each row's outcome
   (``record_accepted``; 2 % ``record_uncertain``), at most 32 rows in flight. Reported as rows
   per second (a row: its share of add + claim + outcome).
2. **lookups**: ``accepted_fingerprints`` of 1,000 fingerprints (half accepted), as a preview
   asks per chunk; reported as fingerprints per second.
3. **has_accepted**: the one-row query a preview starts with; calls per second.

The ratio printed is PostgreSQL / SQLite (above 1: PostgreSQL is faster). ``uptime`` load
averages are printed before and after: figures from a busy machine are not comparable.

    .venv/bin/python bench/ledger.py [--rows 10000] [--url postgresql://user@host:port/db]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path

from pipeline.config import Paths, Settings, StateSettings
from pipeline.ledger import FileKey, Ledger, RowState
from pipeline.ledger.connect import open_ledger_for

CAMPAIGN = "B2B-DK-SPRING"
BATCH = 16  # the uploader claims concurrency x 4 rows at a time (concurrency 4)
CHUNK = 1_000
WORKERS = 4


def uptime() -> str:
    done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "(uptime unavailable)"


def timed(fn: Callable[[], int]) -> float:
    """Operations per second of ``fn`` (which returns how many it did)."""
    start = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - start)


def upload(ledger: Ledger, rows: int, tag: str) -> int:
    """The uploader's pattern for one file of ``rows`` rows; returns rows done."""
    key = FileKey(tag.ljust(64, "0"), CAMPAIGN)
    ledger.begin_file(key, f"{tag}.csv")
    numbers = list(range(2, rows + 2))
    for i in range(0, rows, CHUNK):
        ledger.add_rows(key, ((n, f"{tag}-fp{n}") for n in numbers[i : i + CHUNK]))
    now = datetime.now(UTC)
    room = threading.Semaphore(32)

    def outcome(n: int) -> None:
        try:
            if n % 50 == 0:
                ledger.record_uncertain(key, n, "read timeout")
            else:
                ledger.record_accepted(key, n, f"{n}S1")
        finally:
            room.release()

    with ThreadPoolExecutor(WORKERS) as pool:
        futures = []
        for i in range(0, rows, BATCH):
            claim = ledger.claim_for_sending(
                key, numbers[i : i + BATCH], skip_duplicates=True, attempt_utc=now,
                attempt_local=now,
            )  # fmt: skip
            for n in claim.sending:
                room.acquire()
                futures.append(pool.submit(outcome, n))
        wait(futures)
        for f in futures:
            f.result()
    counts = ledger.row_counts(key)
    assert counts[RowState.ACCEPTED] + counts[RowState.UNCERTAIN] == rows, counts
    return rows


def lookups(ledger: Ledger, tag: str, calls: int) -> int:
    """``accepted_fingerprints`` of 1,000 (half accepted: rows of the uploaded file)."""
    ask = [f"{tag}-fp{n}" for n in range(2, 502)] + [f"absent-{n}" for n in range(500)]
    for _ in range(calls):
        found = ledger.accepted_fingerprints(CAMPAIGN, ask)
        assert len(found) >= 400, len(found)
    return calls * len(ask)


def has_accepted(ledger: Ledger, calls: int) -> int:
    for _ in range(calls):
        assert ledger.has_accepted(CAMPAIGN)
    return calls


def measure(ledger: Ledger, rows: int) -> dict[str, float]:
    tag = f"bench{time.monotonic_ns()}"
    upload(ledger, min(rows, 500), tag + "w")  # warm-up: connections, caches, plans
    return {
        "upload rows/s": timed(lambda: upload(ledger, rows, tag)),
        "fingerprint lookups/s": timed(lambda: lookups(ledger, tag, 200)),
        "has_accepted calls/s": timed(lambda: has_accepted(ledger, 2_000)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--url", default="", help="an existing PostgreSQL database to use")
    args = ap.parse_args()
    print("load before:", uptime())
    cluster = None
    url = args.url
    if not url:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository
        from tests.postgres import start_cluster

        made = start_cluster()
        if isinstance(made, str):
            raise SystemExit(f"no PostgreSQL here: {made}")
        cluster = made
        url = cluster.url(cluster.create_database())
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS attempts, rows, files, schema_version")
    results: dict[str, dict[str, float]] = {}
    try:
        for name, state in (("sqlite", StateSettings()), ("postgresql", StateSettings(url))):
            with tempfile.TemporaryDirectory(prefix="leadpipe-bench-") as tmp:
                ledger = open_ledger_for(Settings(paths=Paths(state=Path(tmp)), state=state))
                try:
                    results[name] = measure(ledger, args.rows)
                finally:
                    ledger.close()
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"{args.rows} rows; claims of {BATCH}, {WORKERS} outcome threads")
    print(f"{'operation':24} {'SQLite':>12} {'PostgreSQL':>12} {'PG/SQLite':>10}")
    for op, lite in results["sqlite"].items():
        pg = results["postgresql"][op]
        print(f"{op:24} {lite:12,.0f} {pg:12,.0f} {pg / lite:10.2f}")
    print("load after: ", uptime())


if __name__ == "__main__":
    main()
