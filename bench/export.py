"""Benchmark: export 1M leads vs a raw streaming download of the same endpoint, same run.

A sandbox runs in its own process, seeded through its Python API with ``--leads`` closed leads
in one day. Each measurement runs in a fresh child process so that its peak RSS is its own:

- ``raw csv``: ``requests`` streams ``GET /leads/csv`` to /dev/null (64 KiB chunks);
- ``export csv``: ``export_window`` of a ``csv`` job (client download into the hidden temp
  folder, fsync, SHA-256 and row count, rename, manifest);
- ``raw objects``: ``requests`` pages ``GET /leads`` (take = ``--page``) to /dev/null;
- ``export objects``: ``export_window`` of an ``objects`` job (paged JSON -> spool -> CSV).

Rounds alternate raw/export so machine noise hits both; the best round of each is compared.
Targets: peak RSS of the exporting process <= 200 MB; throughput >= 0.8x raw.

    .venv/bin/python bench/export.py [--leads 1000000] [--rounds 2] [--objects-leads N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from multiprocessing.connection import Connection

DAY = date(2026, 10, 20)
SEARCH = "api_import_export"


def serve(n: int, conn: Connection) -> None:
    """Child process: a sandbox holding ``n`` closed leads modified on DAY."""
    from pipeline.clock import FakeClock
    from pipeline.sandbox import Sandbox

    # demo data is seeded around the clock's now: far from DAY, so the window holds only ours
    sb = Sandbox(clock=FakeClock(datetime(2027, 6, 1, 12, 0, tzinfo=UTC)))
    for i in range(n):
        sb.insert_lead(
            "B2B-DK-SPRING",
            {
                "name": f"Bench Firma {i} ApS",
                "phone": f"+45 {20000000 + i}",
                "email": f"lead{i}@example.dk",
                "segment": "SMB",
                "note": "Ringet op; vil have tilbud på Århus-kontoret",
            },
            status="UserProcessed",
            closure="Success",
            last_modified_time=datetime(DAY.year, DAY.month, DAY.day, 8 + i % 12, i % 60, i % 60),
        )
    sb.start()
    conn.send(sb.url)
    conn.recv()  # wait until told to stop
    sb.stop()


RAW_CSV = """
import requests, sys, time, json, resource
url, user, pw = sys.argv[1:4]
t0 = time.perf_counter(); size = 0
with requests.get(url + "/leads/csv", params={"searchName": "%(search)s", "from": "%(day)s",
        "to": "%(next)s"}, auth=(user, pw), headers={"Accept": "text/csv"}, stream=True,
        timeout=(5, 600)) as r, open("/dev/null", "wb") as out:
    r.raise_for_status()
    for chunk in r.iter_content(65536):
        out.write(chunk); size += len(chunk)
print(json.dumps({"seconds": time.perf_counter() - t0, "bytes": size,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

RAW_OBJECTS = """
import requests, sys, time, json, resource
url, user, pw, take = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t0 = time.perf_counter(); size = 0; skip = 0
s = requests.Session()
with open("/dev/null", "wb") as out:
    while True:
        with s.get(url + "/leads", params={"searchName": "%(search)s", "from": "%(day)s",
                "to": "%(next)s", "skip": skip, "take": take}, auth=(user, pw),
                headers={"Accept": "application/json"}, stream=True, timeout=(5, 600)) as r:
            r.raise_for_status()
            body = r.content
        out.write(body); size += len(body)
        n = len(json.loads(body))
        skip += n
        if n < take:
            break
print(json.dumps({"seconds": time.perf_counter() - t0, "bytes": size, "leads": skip,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

EXPORT = """
import json, resource, sys, time
from datetime import UTC, date, datetime
from pathlib import Path
from pipeline.api import HeroBaseClient
from pipeline.config import ApiSettings, ExportJob
from pipeline.export.writer import export_window
from pipeline.export.windows import Window
url, user, pw, fmt, out, take = sys.argv[1:7]
api = ApiSettings(url=url, user=user, password=pw, read_timeout=600.0, requests_per_minute=100000)
client = HeroBaseClient(api, timezone="Europe/Copenhagen")
job = ExportJob(name="bench_" + fmt, search="%(search)s", format=fmt)
t0 = time.perf_counter()
r = export_window(job, Window(date.fromisoformat("%(day)s"), date.fromisoformat("%(next)s")),
                  client=client, outbox=Path(out), timezone="Europe/Copenhagen",
                  now=datetime.now(UTC), page_size=int(take))
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "bytes": r.bytes, "rows": r.rows,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(code: str, *args: str) -> dict[str, float]:
    subs = {"search": SEARCH, "day": DAY.isoformat(), "next": date(2026, 10, 21).isoformat()}
    proc = subprocess.run(
        [sys.executable, "-c", code % subs, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def compare(name: str, raw: list[dict[str, float]], ours: list[dict[str, float]], n: int) -> bool:
    best_raw = min(r["seconds"] for r in raw)
    best_ours = min(r["seconds"] for r in ours)
    ratio = best_raw / best_ours
    rss = max(r["rss_mb"] for r in ours)
    print(
        f"{name}: {n:,} leads; raw best {best_raw:.1f} s ({n / best_raw:,.0f} leads/s), "
        f"export best {best_ours:.1f} s ({n / best_ours:,.0f} leads/s); "
        f"throughput ratio {ratio:.2f}x raw (target >= 0.80); "
        f"export peak RSS {rss:.0f} MB (target <= 200); raw peak RSS "
        f"{max(r['rss_mb'] for r in raw):.0f} MB"
    )
    return ratio >= 0.8 and rss <= 200


def main() -> None:
    from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--page", type=int, default=10_000, help="take for the objects format")
    ap.add_argument("--skip-objects", action="store_true")
    ap.add_argument("--skip-csv", action="store_true")
    args = ap.parse_args()

    ctx = mp.get_context("spawn")
    parent, kid = ctx.Pipe()
    t0 = time.perf_counter()
    server = ctx.Process(target=serve, args=(args.leads, kid), daemon=True)
    server.start()
    url = parent.recv()
    print(f"sandbox with {args.leads:,} leads ready in {time.perf_counter() - t0:.0f} s")
    ok = True
    try:
        with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
            creds = (url, DEMO_USER, DEMO_PASSWORD)
            raw: list[dict[str, float]] = []
            ours: list[dict[str, float]] = []
            for _ in range(0 if args.skip_csv else args.rounds):
                raw.append(child(RAW_CSV, *creds))
                ours.append(child(EXPORT, *creds, "csv", tmp, str(args.page)))
            if not args.skip_csv:
                assert all(o["rows"] == args.leads for o in ours), ours
                ok &= compare("csv format", raw, ours, args.leads)
            if not args.skip_objects:
                raw, ours = [], []
                for _ in range(args.rounds):
                    raw.append(child(RAW_OBJECTS, *creds, str(args.page)))
                    ours.append(child(EXPORT, *creds, "objects", tmp, str(args.page)))
                assert all(o["rows"] == args.leads for o in ours), ours
                ok &= compare("objects format", raw, ours, args.leads)
    finally:
        parent.send("stop")
        server.join(60)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"bench process peak RSS {own:.0f} MB")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
