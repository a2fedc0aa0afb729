"""``Sandbox``: the stand-in HeroBase server, run by uvicorn in a background thread.

Start and stop from Python (port 0 picks a free port)::

    with Sandbox() as sb:
        requests.get(sb.url + "/myaccount", auth=(DEMO_USER, DEMO_PASSWORD))

``stop`` ends the server thread and closes every socket; nothing is left behind.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from pipeline.clock import Clock
from pipeline.errors import StateError
from pipeline.sandbox.app import SandboxApp
from pipeline.sandbox.faults import Fault
from pipeline.sandbox.profile import Profile
from pipeline.sandbox.seed import Seed
from pipeline.sandbox.tenant import Tenant

START_TIMEOUT = 15.0
STOP_GRACE = 2.0


class _Server(uvicorn.Server):
    """uvicorn's server, waking on an event instead of polling, with a quick shutdown."""

    def __init__(self, config: uvicorn.Config, app: SandboxApp, simulate_every: float | None):
        super().__init__(config)
        self.app = app
        self.simulate_every = simulate_every
        self.loop: asyncio.AbstractEventLoop | None = None
        self.exit_event: asyncio.Event | None = None
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Remember the loop, then start listening."""
        self.loop = asyncio.get_running_loop()
        self.exit_event = asyncio.Event()
        await super().startup(sockets=sockets)
        self.ready.set()

    async def main_loop(self) -> None:
        """Sleep until asked to exit; run call simulation every ``simulate_every`` s."""
        assert self.exit_event is not None
        while not self.should_exit:
            try:
                await asyncio.wait_for(self.exit_event.wait(), timeout=self.simulate_every or 3600)
            except TimeoutError:
                if self.simulate_every:
                    self.app.tenant.simulate()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Close listeners and connections, give handlers STOP_GRACE s, then cancel."""
        loop = asyncio.get_running_loop()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()
        deadline = loop.time() + STOP_GRACE
        while (state.connections or state.tasks) and loop.time() < deadline:
            await asyncio.sleep(0.005)
        for task in list(state.tasks):
            task.cancel()
        for connection in list(state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await asyncio.sleep(0)
        for server in self.servers:
            await server.wait_closed()

    def request_exit(self) -> None:
        """Ask the server (from any thread) to stop."""
        self.should_exit = True
        loop, event = self.loop, self.exit_event
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
                loop.call_soon_threadsafe(self.app.stopping.set)
            except RuntimeError:  # the loop closed meanwhile
                pass


class Sandbox:
    """The HeroBase sandbox (see ``pipeline.sandbox`` for the whole interface)."""

    def __init__(
        self,
        seed: Path | str | Mapping[str, Any] | Seed | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        base_path: str = "/api",
        db: Path | None = None,
        clock: Clock | None = None,
        *,
        simulate_every: float | None = None,
        profile: Mapping[str, Any] | Profile | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tenant = Tenant(
            seed, db=Path(db) if db is not None else None, clock=clock, profile=profile
        )
        self.app = SandboxApp(self.tenant, base_path)
        self.simulate_every = simulate_every
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Sandbox:
        """Serve in a background thread; returns once the server is listening."""
        if self._thread is not None or self._stopped:
            raise RuntimeError("a Sandbox starts once; create a new one")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise StateError(
                f"the sandbox cannot listen on {self.host}:{self.port} ({exc.strerror}); "
                "choose another --port"
            ) from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            loop="auto",
            http="httptools",
            ws="none",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
            backlog=2048,
            timeout_keep_alive=30,
        )
        server = _Server(config, self.app, self.simulate_every)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="leadpipe-sandbox", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.ready.wait(0.05):
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise StateError("the sandbox server failed to start; see the log above")
        return self

    def stop(self) -> None:
        """Stop serving and wait for the server thread to end (idempotent)."""
        server, thread = self._server, self._thread
        self._stopped = True
        if server is not None and thread is not None:
            server.request_exit()
            thread.join(timeout=START_TIMEOUT)
            if thread.is_alive():  # pragma: no cover - a wedged loop
                server.force_exit = True
                thread.join(timeout=START_TIMEOUT)
            if thread.is_alive():  # pragma: no cover
                raise StateError("the sandbox server thread did not stop within 30 s")
        self._thread = None
        self.tenant.close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the server thread serves."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def root_url(self) -> str:
        """``http://host:port`` (no base path)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The API base URL including the base path, e.g. ``http://127.0.0.1:54321/api``."""
        return self.root_url + self.app.base

    # --- test controls --------------------------------------------------------------------
    def add_fault(self, fault: Fault) -> int:
        """Schedule a fault; returns its id."""
        return self.tenant.faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every scheduled fault."""
        self.tenant.faults.clear()

    def requests(self) -> list[dict[str, Any]]:
        """Every API request received so far (oldest first)."""
        return self.tenant.log.entries()

    def clear_requests(self) -> None:
        """Forget the request log."""
        self.tenant.log.clear()

    def simulate(self, fraction: float = 0.3, at: datetime | None = None) -> int:
        """Close about ``fraction`` of the open leads (deterministic per seed); returns how many."""
        return self.tenant.simulate(fraction, at)

    def insert_lead(
        self,
        campaign_code: str,
        data: Mapping[str, str],
        *,
        status: str = "New",
        closure: str = "NotSet",
        upload_time: datetime | None = None,
        last_modified_time: datetime | None = None,
        agent: str | None = None,
    ) -> str:
        """Store a lead directly (no validation, no request logged); returns its uniqueId."""
        lead = self.tenant.insert_lead(
            campaign_code,
            data,
            status=status,
            closure=closure,
            upload_time=upload_time,
            last_modified_time=last_modified_time,
            agent=agent,
        )
        return lead.unique_id

    def leads(self, campaign_code: str | None = None) -> list[dict[str, Any]]:
        """Stored leads as the API renders lead objects, in upload order."""
        wanted = campaign_code.lower() if campaign_code else None
        chosen = [
            lead
            for lead in self.tenant.store.all()
            if wanted is None or lead.campaign_code.lower() == wanted
        ]
        return self.tenant.render_leads(chosen)

    @property
    def profile(self) -> Profile:
        """The answer shapes served now (the seed's ``[tenant.profile]`` plus any changes)."""
        return self.tenant.profile

    def set_profile(self, **settings: Any) -> Profile:
        """Change profile settings, also while serving (others are kept); returns the profile.

        Unknown keys or values raise :class:`~pipeline.sandbox.profile.ProfileError` naming the
        key, and nothing changes. Requests already being handled may still see the old profile.
        """
        return self.tenant.set_profile(settings)

    def set_rate_limit(self, per_minute: int | None = None, per_day: int | None = None) -> None:
        """Change the per-account limits (None keeps the current value)."""
        self.tenant.limiter.set_limits(per_minute, per_day)
