"""Benchmark: POST /leads through HeroBaseClient vs a bare requests.Session loop, same run.

The client runs with everything on (shared rate limiter with a ceiling above the load, error
mapping, retry policy); the baseline sends the same request with the same headers and parses
the JSON answer. Many short rounds alternate between the two (ABBA order) so that the sandbox's
growing store and the noise of a shared machine hit both alike; the overhead is the ratio of the
summed times, and the median per-round ratio is printed beside it. Target: overhead <= 15 %.

    .venv/bin/python bench/client.py [--leads 5000] [--rounds 50]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time

import requests

from pipeline.api import HeroBaseClient
from pipeline.api.transport import BasicAuth, request_headers
from pipeline.config import ApiSettings
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox

CODE = "B2B-DK-SPRING"


def lead(i: int) -> dict[str, str]:
    return {"name": f"Bench Firma {i} ApS", "phone": f"+45 {20000000 + i}", "segment": "SMB"}


def bare_round(session: requests.Session, url: str, start: int, n: int) -> float:
    auth = BasicAuth(DEMO_USER, DEMO_PASSWORD)
    headers = request_headers()
    headers["Content-Type"] = "application/json; charset=utf-8"
    t0 = time.perf_counter()
    for i in range(start, start + n):
        body = json.dumps({"campaignCode": CODE, "data": lead(i)}).encode()
        r = session.post(url + "/leads", data=body, headers=headers, auth=auth, timeout=(5, 30))
        r.raise_for_status()
        assert r.json()["uniqueId"]
    return time.perf_counter() - t0


def client_round(client: HeroBaseClient, start: int, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + n):
        assert client.create_lead(CODE, lead(i)).unique_id
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=5000, help="leads per contender")
    ap.add_argument("--rounds", type=int, default=50, help="alternating rounds")
    args = ap.parse_args()
    per_round = args.leads // args.rounds
    with Sandbox() as sb:
        sb.set_rate_limit(per_minute=10_000_000, per_day=100_000_000)
        settings = ApiSettings(
            url=sb.url, user=DEMO_USER, password=DEMO_PASSWORD, requests_per_minute=1_000_000
        )
        client = HeroBaseClient(settings)
        bare = requests.Session()
        # warm-up: connections, the limiter's limits probe, code paths
        bare_round(bare, sb.url, 0, 50)
        client_round(client, 50, 50)
        t_bare = t_client = 0.0
        ratios: list[float] = []
        n = 100
        gc.collect()
        for r in range(args.rounds):
            if r % 2 == 0:
                tb = bare_round(bare, sb.url, n, per_round)
                tc = client_round(client, n + per_round, per_round)
            else:
                tc = client_round(client, n, per_round)
                tb = bare_round(bare, sb.url, n + per_round, per_round)
            t_bare += tb
            t_client += tc
            ratios.append(tc / tb)
            n += 2 * per_round
        client.close()
        bare.close()
        sent = per_round * args.rounds
        posts = sum(1 for x in sb.requests() if x["method"] == "POST")
    overhead = t_client / t_bare - 1.0
    print(f"POST /leads x {sent} each (sandbox on 127.0.0.1, {args.rounds} alternating rounds)")
    print(f"bare requests.Session : {t_bare:7.2f} s  {sent / t_bare:7.0f} leads/s")
    print(f"HeroBaseClient        : {t_client:7.2f} s  {sent / t_client:7.0f} leads/s")
    print(f"client overhead       : {overhead * 100:+.1f} %  (target <= 15 %)")
    print(f"median round ratio    : {statistics.median(ratios) * 100 - 100:+.1f} %")
    print(f"server saw {posts} POSTs (expected {2 * sent + 100})")
    ok = overhead <= 0.15 and posts == 2 * sent + 100
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
