"""A real SMTP server (aiosmtpd) and a webhook receiver on 127.0.0.1, and a config that sends
alerts to both."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.dropfolder.test_real_ingest import env_for as service_env

#: The SMTP password: it must appear in no message, log line, status or state file.
CANARY = "canary-Smtp-Pw-4711"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mailbox:
    """What the SMTP server received (whole messages, as sent)."""

    port: int
    messages: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(envelope.content.decode("utf-8", "replace"))
        return "250 OK"

    def texts(self) -> list[str]:
        with self.lock:
            return list(self.messages)


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.password == CANARY.encode()
    return AuthResult(success=ok)


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    """A plain SMTP server (no TLS) on 127.0.0.1 that takes the canary password."""
    box = Mailbox(free_port())
    ctl = Controller(
        box,
        hostname="127.0.0.1",
        port=box.port,
        authenticator=_auth,
        auth_require_tls=False,
    )
    ctl.start()
    try:
        yield box
    finally:
        ctl.stop()


@dataclass
class Hook:
    """What the webhook received: the JSON bodies Apprise posted."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    status: int = 200

    def got(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.bodies)

    def titles(self) -> list[str]:
        return [str(b.get("title", "")) for b in self.got()]


@pytest.fixture
def webhook() -> Iterator[Hook]:
    """An HTTP receiver on 127.0.0.1 that keeps each JSON body (answers ``Hook.status``)."""
    hook = Hook("")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(size) or b"{}")
            if hook.status == 200:
                with hook.lock:
                    hook.bodies.append(body)
            self.send_response(hook.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"json://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, name="test-webhook", daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def write_config(root: Path, api_url: str, mail_port: int, hook_url: str, **alerts: object) -> Path:
    """A config for the sandbox with both targets (the mail one in plain SMTP)."""
    values: dict[str, object] = {"api_down_minutes": 0, "digest_at": ""}
    values.update(alerts)
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
    mail = (
        f"mailto://ops:${{LEADPIPE_SMTP_PASSWORD}}@127.0.0.1:{mail_port}"
        "?to=ops@example.com&from=leadpipe@example.com"
    )
    cfg = root / "leadpipe.toml"
    cfg.write_text(
        f'[paths]\ninbox = "inbox"\noutbox = "outbox"\nstate = "state"\nschemas = "schemas"\n'
        f'[api]\nurl = "{api_url}"\nrequests_per_minute = 60000\nread_timeout = 5\n'
        "max_retries = 0\nretry_total_seconds = 1\n"
        "[intake]\nsettle_seconds = 0.2\nsweep_seconds = 1\n[status]\nport = 0\n"
        f"[alerts]\n{lines}\n"
        f'[[alerts.targets]]\nname = "ops mail"\nurl = "{mail}"\n'
        f'[[alerts.targets]]\nname = "webhook"\nurl = "{hook_url}"\nmin_severity = "info"\n',
        encoding="utf-8",
    )
    return cfg


def env_for(cfg: Path) -> dict[str, str]:
    """The service's environment (as the drop-folder tests build it) with the SMTP password."""
    return {**service_env(cfg), "LEADPIPE_SMTP_PASSWORD": CANARY}
