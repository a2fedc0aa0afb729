"""Sandbox throughput: POST /leads per second on loopback .

The sandbox runs in this process (as in tests and the embedded default); the load generator is
an aiohttp client with 32 requests in flight in a *separate process*, so it is not the
bottleneck. Baseline, measured in the same run: a bare "hello" ASGI app on the same uvicorn
stack (the ceiling of the server stack on this machine).

Run: ``.venv/bin/python bench/sandbox.py [--seconds 2 --rounds 4]`` (on a machine shared with
other jobs, ``nice -n -15`` keeps their load from dominating the figure).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import statistics
import threading
import time
from typing import Any

import uvicorn

from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox

IN_FLIGHT = 32
TARGET = 3000.0


def _load(url: str, method: str, body: bytes | None, seconds: float, out: Any) -> None:
    """Child process: hammer ``url`` with IN_FLIGHT concurrent requests for ``seconds``."""
    import aiohttp

    auth = "Basic " + base64.b64encode(f"{DEMO_USER}:{DEMO_PASSWORD}".encode()).decode()
    headers = {
        "Authorization": auth,
        "Accept": "application/json",
        "Content-Type": "application/json",
    }

    async def main() -> tuple[int, int]:
        ok = bad = 0
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            # warm-up
            async with session.request(method, url, data=body) as r:
                await r.read()
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal ok, bad
                while time.perf_counter() < deadline:
                    async with session.request(method, url, data=body) as r:
                        await r.read()
                        if r.status == 200:
                            ok += 1
                        else:
                            bad += 1

            await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        return ok, bad

    started = time.perf_counter()
    ok, bad = asyncio.run(main())
    out.put((ok, bad, time.perf_counter() - started))


def _measure(url: str, method: str, body: bytes | None, seconds: float) -> tuple[float, int]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_load, args=(url, method, body, seconds, queue))
    proc.start()
    ok, bad, elapsed = queue.get(timeout=seconds + 60)
    proc.join()
    return ok / max(elapsed, 1e-9), bad


async def _hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"uniqueId":"1S1"}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"18")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Baseline:
    """The bare ASGI app on uvicorn in a thread (same stack as the sandbox)."""

    def __init__(self) -> None:
        config = uvicorn.Config(
            _hello,
            host="127.0.0.1",
            port=0,
            http="httptools",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/api/leads"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each (ABBA order)")
    args = parser.parse_args()
    body = json.dumps(
        {
            "campaignCode": "B2B-DK-SPRING",
            "data": {
                "name": "Søren Østergaard",
                "phone": "+45 12 34 56 78",
                "email": "soren@example.dk",
                "segment": "SMB",
                "note": "benchmark",
            },
        }
    ).encode()
    base_rates: list[float] = []
    post_rates: list[float] = []
    bad_total = 0
    with _Baseline() as base_url, Sandbox() as sb:
        sb.set_rate_limit(per_minute=10**9, per_day=10**12)
        before = len(sb.leads("B2B-DK-SPRING"))
        for i in range(args.rounds * 2):
            # ABBA: base, post, post, base, base, post, ... so drifting load hits both alike
            if (i % 4) in (0, 3):
                base_rates.append(_measure(base_url, "POST", body, args.seconds)[0])
            else:
                rate, bad = _measure(sb.url + "/leads", "POST", body, args.seconds)
                post_rates.append(rate)
                bad_total += bad
        stored = len(sb.leads("B2B-DK-SPRING")) - before
        get, _ = _measure(sb.url + "/myaccount", "GET", None, args.seconds)
    base, post = statistics.median(base_rates), statistics.median(post_rates)
    print(f"rounds of {args.seconds:g} s, {args.rounds} of each, ABBA order; medians (best)")
    print(f"baseline, bare ASGI on the same stack: {base:8.0f} req/s ({max(base_rates):.0f})")
    print(
        f"sandbox POST /leads, validated+stored: {post:8.0f} req/s ({max(post_rates):.0f})"
        f"  ratio {post / base:.2f}  ({stored} leads stored, {bad_total} non-200)"
    )
    print(f"sandbox GET /myaccount, one round:     {get:8.0f} req/s")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load} (other jobs share the cores)")
    verdict = "PASS" if post >= TARGET else "BELOW TARGET"
    print(f"target >= {TARGET:.0f} POST /leads per second (median): {verdict}")


if __name__ == "__main__":
    main()
