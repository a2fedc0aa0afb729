"""``leadpipe run``: the drop-folder intake, the export schedules and the status page.

:func:`run_service` is the one library call behind ``leadpipe run``. It holds an OS lock on
the state folder (one instance per state folder; in a cluster, per node: each node has its own
state folder, docs/cluster.md, "Nodes"), sweeps the inbox at start-up and every
``intake.sweep_seconds`` (file-system events only wake it early), processes files with
``campaign_parallelism`` workers, runs due exports, and serves the status page. Setting
``stop`` (the CLI does on SIGTERM/SIGINT) stops taking files; in-flight uploads halt after the
rows already sent are recorded; the claimed files stay in the work folder and are resumed at
the next start.

With no API URL configured it starts the demo sandbox in-process, simulates call outcomes, and
creates ``inbox/<code>/`` for each demo campaign. This module wires the API, the ledger and
the processor; the running loop itself is :mod:`pipeline.service.loop`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.api.connect import open_client
from pipeline.api.transport import make_session
from pipeline.clock import Clock, SystemClock
from pipeline.config import Settings
from pipeline.dropfolder.jobs import Processor
from pipeline.dropfolder.processing import IngestProcessor
from pipeline.export.scheduler import demo_exports
from pipeline.ingest.deliver.verify import Verification, Verifier
from pipeline.service.apiwatch import ApiWatch
from pipeline.service.health import Heartbeats
from pipeline.service.instance import InstanceLock
from pipeline.service.loop import ApiConnection, Service, ServiceInfo, ServiceResult
from pipeline.service.metrics import Metrics


@contextlib.contextmanager
def _open_api(
    settings: Settings, metrics: Metrics, clock: Clock | None, stop: threading.Event
) -> Iterator[ApiConnection]:
    """The client (the embedded sandbox when no URL is set), its calls counted in ``metrics``.

    Once ``stop`` is set the client starts no request and no retry; the embedded sandbox stops
    when this context ends, after the service has returned (docs/architecture.md, "Lanes").
    """
    session = make_session(settings.api)
    session.hooks["response"].append(metrics.api_response)
    watch = ApiWatch(clock)  # the page turns red at the first failed call
    watch.attach(session)
    # no upload leaves without its file's lease (docs/cluster.md, "Leases and fencing")
    if settings.cluster.enabled:
        from pipeline.service import fencing

        fencing.attach(session)
    embedded = settings.api.embedded
    if embedded:
        settings.paths.state.mkdir(parents=True, exist_ok=True)
    try:
        with open_client(
            settings,
            clock=clock,
            session=session,
            sandbox_db=settings.paths.state / "sandbox.sqlite" if embedded else None,
            simulate_every=settings.sandbox.simulate_every if embedded else None,
            stop=stop,
        ) as client:
            yield ApiConnection(client, client.url, embedded, watch)
    finally:
        session.close()


def run_service(
    settings: Settings,
    *,
    once: bool = False,
    stop: threading.Event | None = None,
    clock: Clock | None = None,
    processor: Processor | None = None,
    campaigns: Callable[[], list[str]] | None = None,
    on_ready: Callable[[ServiceInfo], None] | None = None,
    status_page: bool | None = None,
) -> ServiceResult:
    """Run the service until ``stop`` is set (or, with ``once``, until nothing is waiting).

    ``processor`` and ``campaigns`` replace the ingest/API wiring (tests, benchmarks); without
    them the API (or the embedded sandbox) and the ledger are opened here. Raises
    :class:`StateError` when another instance holds the state folder or state is unusable.
    """
    stop = stop or threading.Event()
    clock = clock or SystemClock()
    settings = demo_exports(settings, clock)
    state_dir = settings.paths.state
    inbox = settings.paths.inbox
    lock = InstanceLock(state_dir).acquire()  # in a cluster: the node's own state folder
    cluster = None
    try:
        if settings.cluster.enabled:  # a node of a cluster (docs/cluster.md, "Nodes")
            from pipeline.cluster.node import open_node

            cluster = open_node(settings)
        metrics = Metrics()
        beats = Heartbeats(clock)
        alerting = None
        if settings.alerts.enabled:  # Apprise is loaded only then (docs/alerts.md)
            from pipeline.alerts.monitor import open_alerting

            alerting = open_alerting(settings, clock=clock)
        with contextlib.ExitStack() as stack:
            api: ApiConnection | None = None
            ledger: Any = None
            verifier: Verifier | None = None
            retention: Callable[[datetime], object] | None = None
            if processor is None or campaigns is None:
                api = stack.enter_context(_open_api(settings, metrics, clock, stop))
            if processor is None:
                from pipeline.ledger.connect import open_ledger_for

                assert api is not None
                ledger = open_ledger_for(settings)
                stack.callback(ledger.close)
                processor = IngestProcessor(
                    settings, api.client, ledger, stop=stop, clock=clock, beats=beats
                )
                verifier = _verifier(settings, api.client, ledger)
                retention = _retention(settings, ledger)
            if campaigns is None:
                assert api is not None
                client = api.client

                def campaigns() -> list[str]:
                    return [c.code for c in client.campaigns()]

            probe = (lambda: api.client.limits()) if api is not None else None
            return Service(
                settings,
                once=once,
                stop=stop,
                clock=clock,
                processor=processor,
                campaigns=campaigns,
                probe=probe,
                metrics=metrics,
                api=api,
                on_ready=on_ready,
                status_page=settings.status.enabled if status_page is None else status_page,
                inbox=inbox,
                beats=beats,
                verifier=verifier,
                alerting=alerting,
                retention=retention,
                cluster=cluster,
            ).run()
    finally:
        if cluster is not None:
            cluster.stop()
        lock.release()


def _retention(settings: Settings, ledger: Any) -> Callable[[datetime], object]:
    """``[retention]`` applied at ``now`` with the service's ledger (docs/retention.md)."""

    def apply(now: datetime) -> object:
        from pipeline.retention.purge import purge_quietly

        return purge_quietly(settings, ledger, now)

    return apply


def _verifier(settings: Settings, client: Any, ledger: Any) -> Verifier:
    def verify(path: Path) -> Verification:
        from pipeline.ingest.deliver.verify import verify_file

        return verify_file(path, settings, client=client, ledger=ledger)

    return verify
