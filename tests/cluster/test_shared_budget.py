"""Three ``leadpipe run`` nodes, one HeroBase account, one request budget (PostgreSQL).

docs/cluster.md, "Shared request budget": under a 1,200-a-minute account limit, three nodes
that each have more than a minute's worth of leads to send never send more than 1,200 requests
in one minute window between them, counted on the sandbox's side (its own request log, every
request of the account, refused ones included), and HeroBase never has to refuse one.

Each node is its own ``leadpipe run`` child process with its own config, drop folder and state
folder (and its own ``LEADPIPE_NODE`` name); what they share is the PostgreSQL ledger database
and the sandbox account, which is what the budget is about.

The nodes reach the sandbox through a reverse proxy on 127.0.0.1 that drops the answers'
``X-Rate-Limit-*`` headers: a tenant whose headers say nothing about the minute (they are
assumed, docs/api-contract.md, "The daily quota"). With the sandbox's headers each node would
learn the account's count of the minute from its own answers and keep under the limit
without any budget; without them, only the shared budget keeps three nodes within it.
"""

from __future__ import annotations

import http.client
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pipeline.api.ratelimit import headroom
from pipeline.sandbox import DEMO_USER, Sandbox
from tests.dropfolder.test_real_ingest import CODE, env_for, leads_csv, start_run, write_config
from tests.postgres import Cluster
from tests.service.conftest import wait_for

#: The account's limit a minute (the sandbox's; leadpipe learns it from /myaccount/request/limits)
LIMIT = 1200
#: Leads per file, files per node: each node alone would want more than the whole budget.
ROWS, FILES = 1500, 2
NODES = ("alpha", "bravo", "charlie")


#: Headers a proxy does not pass on (hop by hop), and the rate-limit ones this one drops.
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class _Forward(BaseHTTPRequestHandler):
    """One client connection: each request sent on to the sandbox, its answer sent back
    without ``X-Rate-Limit-*`` headers."""

    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int] = ("127.0.0.1", 0)
    _up: http.client.HTTPConnection | None = None  # this connection's own to the sandbox

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP | {"host"}}
        for attempt in (1, 2):
            up = self._up
            reused = up is not None
            if up is None:
                up = self._up = http.client.HTTPConnection(*self.upstream, timeout=30)
            try:
                up.request(self.command, self.path, body=body, headers=headers)
                resp = up.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException):
                up.close()
                self._up = None
                if reused and attempt == 1:
                    continue  # the sandbox closed an idle connection: once more, on a new one
                self.send_error(502)
                return
        self.send_response_only(resp.status, resp.reason)
        for key, value in resp.getheaders():
            low = key.lower()
            if low in _HOP or low == "content-length" or low.startswith("x-rate-limit-"):
                continue
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def handle(self) -> None:
        try:
            super().handle()
        finally:  # the client's connection ended: so does ours to the sandbox
            if self._up is not None:
                self._up.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def headerless(sandbox: Sandbox) -> Iterator[str]:
    """The API URL of ``sandbox`` behind a proxy that drops its rate-limit headers."""
    parts = urlsplit(sandbox.url)
    handler = type("Forward", (_Forward,), {"upstream": (parts.hostname, parts.port)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{parts.path}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _windows(entries: list[dict[str, Any]]) -> Counter[str]:
    """The account's requests per minute window, as the sandbox logged them (its clock)."""
    return Counter(str(e["time"])[:16] for e in entries if e.get("user") == DEMO_USER)


def _posts_by_node(entries: list[dict[str, Any]], window: str) -> Counter[str]:
    """The uploads of ``window`` per node (each node's leads carry its name)."""
    found: Counter[str] = Counter()
    for e in entries:
        if e["method"] != "POST" or not str(e["time"]).startswith(window):
            continue
        body = e.get("body")
        data = body.get("data") if isinstance(body, dict) else None
        name = str(data.get("name", "")) if isinstance(data, dict) else ""
        found[name.split(" ", 1)[0].lower()] += 1
    return found


def _full(windows: Counter[str]) -> list[str]:
    """The windows whose uploads took their whole share (the rest is kept for reads)."""
    return sorted(w for w, n in windows.items() if n >= LIMIT - headroom(LIMIT))


def _saturated(sandbox: Sandbox) -> bool:
    """True once two windows, one after the other, had the uploads' whole share."""
    return len(_full(_windows(sandbox.requests()))) >= 2


@pytest.mark.slow
def test_three_nodes_never_send_more_than_the_account_limit_in_a_minute(
    sandbox: Sandbox, headerless: str, postgres_cluster: Cluster, tmp_path: Path
) -> None:
    sandbox.set_rate_limit(per_minute=LIMIT, per_day=10**8)
    db = postgres_cluster.create_database()
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for node in NODES:
            root = tmp_path / node
            inbox = root / "inbox" / CODE
            inbox.mkdir(parents=True)
            cfg = write_config(root, headerless)  # the account's limit comes from the tenant
            with cfg.open("a", encoding="utf-8") as fh:
                fh.write(f'[state]\nledger = "{postgres_cluster.url(db)}"\n')
            for n in range(FILES):
                data, _ = leads_csv(node.upper(), valid=ROWS, invalid=0)
                # distinct content per file: the second file's leads are numbered on
                data = data.replace(b" company ", f" company {n}-".encode())
                (inbox / f"{node}-{n}.csv").write_bytes(data)
            env = env_for(cfg)
            env["LEADPIPE_NODE"] = node
            proc, log = start_run(env, root)
            procs.append(proc)
            logs.append(log)
        # a window has had the budget spent, and the next one too: about 1.5-2 minutes
        try:
            wait_for(lambda: _saturated(sandbox), 170, "two minute windows with the budget spent")
        except BaseException as exc:
            exc.add_note(f"requests per window: {sorted(_windows(sandbox.requests()).items())}")
            raise
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        postgres_cluster.drop_database(db)

    entries = sandbox.requests()
    windows = _windows(entries)
    outputs = "\n".join(log.read_text(encoding="utf-8", errors="replace")[-3000:] for log in logs)
    # never more than the account's limit in a minute window, and never a refusal
    assert max(windows.values()) <= LIMIT, (sorted(windows.items()), outputs)
    assert not [e for e in entries if e.get("status") == 429], sorted(windows.items())
    # the nodes wanted more: two windows in a row were filled up to the uploads' share (the
    # rest is the headroom kept for reads), each by every node, and leads were left to send
    full = _full(windows)
    assert len(full) >= 2, sorted(windows.items())
    for window in full:
        senders = _posts_by_node(entries, window)
        assert all(senders[n] > 0 for n in NODES), (window, senders)
    posts = sum(1 for e in entries if e["method"] == "POST")
    assert posts < len(NODES) * FILES * ROWS
    assert all(proc.returncode == 0 for proc in procs), outputs
