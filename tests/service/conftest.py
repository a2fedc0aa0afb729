"""Helpers for the service tests: settings in a temp folder, a service running in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import IntakeSettings, Paths, SandboxSettings, Settings, StatusSettings
from pipeline.dropfolder.jobs import Job, Outcome
from pipeline.outcome import FileOutcome
from pipeline.service.loop import ServiceInfo, ServiceResult
from pipeline.service.run import run_service

CAMPAIGNS = ["ALPHA", "BETA", "GAMMA"]


def make_settings(root: Path, **intake: Any) -> Settings:
    """Settings with every folder under ``root``; short settle/sweep times by default."""
    values: dict[str, Any] = {"settle_seconds": 0.3, "sweep_seconds": 1.0}
    values.update(intake)
    return Settings(
        paths=Paths(
            inbox=root / "inbox",
            outbox=root / "outbox",
            state=root / "state",
            schemas=root / "schemas",
        ),
        intake=IntakeSettings(**values),
        status=StatusSettings(port=0),
        sandbox=SandboxSettings(simulate_every=3600),
    )


class Recorder:
    """A thread-safe processor that records each file's campaign, name and content."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, bytes]] = []
        self.outcome = Outcome(FileOutcome.PROCESSED)

    def __call__(self, job: Job) -> Outcome:
        data = job.path.read_bytes()
        with self.lock:
            self.seen.append((job.campaign, job.name, data))
        return self.outcome

    def names(self, campaign: str | None = None) -> list[str]:
        with self.lock:
            return [n for c, n, _ in self.seen if campaign is None or c == campaign]


@dataclass
class Running:
    settings: Settings
    info: ServiceInfo
    stop: threading.Event
    thread: threading.Thread
    result: list[ServiceResult | BaseException] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        """The service's status as ``/status.json`` carries it."""
        assert self.info.status is not None
        return self.info.status().to_json()


def wait_for(cond: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    """Poll ``cond`` (tests only) until true; fail with ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what or cond}")


@contextmanager
def service(settings: Settings, **kw: Any) -> Iterator[Running]:
    """``run_service`` in a thread; stopped (and checked to exit within 10 s) afterwards."""
    ready = threading.Event()
    box: dict[str, ServiceInfo] = {}
    stop = threading.Event()
    result: list[ServiceResult | BaseException] = []

    def on_ready(info: ServiceInfo) -> None:
        box["info"] = info
        ready.set()

    def target() -> None:
        try:
            result.append(run_service(settings, stop=stop, on_ready=on_ready, **kw))
        except BaseException as exc:
            result.append(exc)
            ready.set()

    before = set(threading.enumerate())
    t = threading.Thread(target=target, name="test-service")
    t.start()
    try:
        ready.wait(30)
        if result and isinstance(result[0], BaseException):
            raise result[0]
        yield Running(settings, box["info"], stop, t, result)
    finally:
        stop.set()
        started = time.monotonic()
        t.join(15)
        assert not t.is_alive(), "the service did not stop"
        assert time.monotonic() - started < 10.0
        leaked = [th.name for th in threading.enumerate() if th not in before and th.is_alive()]
        assert not leaked, f"threads left running: {leaked}"
