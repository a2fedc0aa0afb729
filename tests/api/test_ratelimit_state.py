"""The rate limiter's budget survives restarts: recent grant times kept in the state folder."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest

from pipeline.api import HeroBaseClient, ratelimit
from pipeline.api.connect import open_client
from pipeline.api.ratelimit import GrantLog, RateLimiter, grant_log_path
from pipeline.clock import FakeClock
from pipeline.config import ApiSettings, Paths, Settings
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox

CODE = "B2B-DK-SPRING"
TENANT_LIMIT = 20  # requests per minute the sandbox allows the account
PROCESSES = 5  # consecutive runs, as in a crash loop of `leadpipe run --once`
BURST = TENANT_LIMIT - 2  # POSTs per run: with its /limits and /counts calls (the daily
# budget starts from the tenant's count), a whole minute's budget
# With 4 threads the control (no record) typically draws 2-9 429s over the 4 restarts: the
# first requests of a new process go out before any answer brings the server's headers.
RESTART_GAP = 2.0  # seconds between a run ending and the next one starting


class ProcessClock:
    """One process's view of the shared fake time.

    The wall clock is the shared one; the monotonic scale is the process's own (a new process
    starts its monotonic clock elsewhere), so nothing can carry over through it. A new object
    per "process" also gives it a limiter of its own (``limiter_for`` keys test clocks by id).
    """

    def __init__(self, shared: FakeClock, mono_offset: float) -> None:
        self.shared = shared
        self.offset = mono_offset

    def now(self) -> datetime:
        return self.shared.now()

    def monotonic(self) -> float:
        return self.shared.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        self.shared.sleep(seconds)


@pytest.fixture
def shared() -> FakeClock:
    # half past: no grant falls on a minute boundary of the sandbox's fixed windows
    return FakeClock(datetime(2026, 3, 30, 7, 0, 30, tzinfo=UTC))


@pytest.fixture
def tenant(shared: FakeClock) -> Iterator[Sandbox]:
    """A sandbox on the shared fake clock that answers 429 beyond ``TENANT_LIMIT`` a minute."""
    sb = Sandbox(port=0, clock=shared).start()
    try:
        sb.set_rate_limit(per_minute=TENANT_LIMIT, per_day=1_000_000)
        yield sb
    finally:
        sb.stop()


def settings_for(sb: Sandbox, state: Path) -> Settings:
    """The service's settings: the real-tenant path of ``open_client``, state in ``state``."""
    api = ApiSettings(
        url=sb.url,
        user=DEMO_USER,
        password=DEMO_PASSWORD,
        requests_per_minute=TENANT_LIMIT,
        retry_after_cap=120.0,
        retry_total_seconds=600.0,
    )
    return Settings(paths=Paths(state=state), api=api)


def send_lead(client: HeroBaseClient, run: int, i: int) -> None:
    client.create_lead(CODE, {"name": f"Run {run} lead {i} ApS", "phone": f"+45 {20000000 + i}"})


def read_example(client: HeroBaseClient, run: int, i: int) -> None:
    client.import_example(CODE)  # a priority read: not spaced like the uploads


def crash_loop(
    sb: Sandbox,
    shared: FakeClock,
    states: list[Path],
    *,
    forget: bool = False,
    work: Callable[[HeroBaseClient, int, int], None] = send_lead,
) -> Counter[int]:
    """Consecutive runs, run i with state folder ``states[i]``; the sandbox's answer statuses.

    Each run is a new client built by ``open_client`` (as ``leadpipe run`` builds it) on a
    clock of its own, so it has a new limiter, as a new process would. With ``forget``, the
    grant record is emptied before each run: it exists but holds none of the earlier grants.

    Reads go from 4 threads, like the uploader's. Uploads go from one: they are spaced, so
    their threads sleep all the time, and on a fake clock a sleep moves time at once, for the
    requests of other threads already granted but not yet sent too; a request granted at
    00:59 could then reach the sandbox at 01:05, in a minute the limiter did not give it to.
    """
    threads = 1 if work is send_lead else 4
    clocks = []  # kept alive: a collected clock's id could be reused for the next one
    for run, state in enumerate(states):
        if forget:
            path = grant_log_path(state, sb.url, DEMO_USER)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        clock = ProcessClock(shared, mono_offset=-900.0 + 1234.5 * run)
        clocks.append(clock)
        with open_client(settings_for(sb, state), clock=clock) as client:
            send = partial(work, client, run)
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(send, range(BURST)))
        shared.advance(RESTART_GAP)
    log = sb.requests()
    if work is send_lead:
        leads = [r for r in log if r["method"] == "POST" and r["status"] == 200]
        assert len(leads) == len(states) * BURST  # every lead made it, 429s or not
    return Counter(int(r["status"]) for r in log)


def test_consecutive_runs_share_the_minute_budget_through_the_state_folder(
    tenant: Sandbox, shared: FakeClock, tmp_path: Path
) -> None:
    start = shared.monotonic()
    statuses = crash_loop(tenant, shared, [tmp_path / "state"] * PROCESSES)
    assert statuses[429] == 0, statuses
    assert sum(statuses.values()) == PROCESSES * TENANT_LIMIT
    # each restart found the minute's budget spent and waited for it instead of bursting
    assert shared.monotonic() - start >= 60.0 * (PROCESSES - 1)
    # the file holds times only, is private, and was compacted at each start
    path = grant_log_path(tmp_path / "state", tenant.url, DEMO_USER)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_bytes().splitlines()
    assert lines
    assert all(line.lstrip(b"~").isdigit() for line in lines)
    assert len(lines) <= 2 * TENANT_LIMIT + 1


def crash_loop_of_reads(
    sb: Sandbox, shared: FakeClock, state: Path, *, forget: bool
) -> Counter[int]:
    """Runs of priority reads, which go at once while the window has room: a minute's budget
    spent within a second, then a restart ``RESTART_GAP`` later in the same server minute."""
    path = grant_log_path(state, sb.url, DEMO_USER)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # an existing, empty record: the first run starts at full speed
    return crash_loop(sb, shared, [state] * PROCESSES, forget=forget, work=read_example)


def test_a_burst_of_reads_then_restarts_keep_the_budget_through_the_record(
    tenant: Sandbox, shared: FakeClock, tmp_path: Path
) -> None:
    statuses = crash_loop_of_reads(tenant, shared, tmp_path / "state", forget=False)
    assert statuses[429] == 0, statuses
    assert sum(statuses.values()) == PROCESSES * TENANT_LIMIT


def test_without_the_recorded_budget_the_same_runs_exceed_the_tenant_limit(
    tenant: Sandbox, shared: FakeClock, tmp_path: Path
) -> None:
    """The control of the test above: the record emptied before each restart draws 429s.

    The restart's first request goes before any answer brings the server's count, into the
    server minute the previous run spent; only the record could have held it back.
    """
    statuses = crash_loop_of_reads(tenant, shared, tmp_path / "state", forget=True)
    assert statuses[429] > 0, statuses


# -- the conservative start ----------------------------------------------------------------


def grant_times(limiter: RateLimiter, n: int) -> list[float]:
    times = []
    for _ in range(n):
        limiter.acquire()
        times.append(limiter.clock.monotonic())
    return times


def test_a_corrupt_file_gives_a_conservative_start_and_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state" / "grants.times"
    path.parent.mkdir()
    path.write_bytes(b"1000\n\x00\x00garbage\xff\n17748")
    clock = FakeClock()
    limiter = RateLimiter(60, clock)
    with caplog.at_level(logging.INFO, logger="pipeline.api.ratelimit"):
        limiter.use_state(path)
        limiter.use_state(path)  # said once, done once
        start = clock.monotonic()
        times = grant_times(limiter, 90)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "corrupt" in warnings[0].getMessage()
    assert "conservative" in warnings[0].getMessage()
    # as if the last minute had been spent evenly: one grant a second, never a burst
    offsets = [t - start for t in times]
    assert offsets[:60] == pytest.approx([float(i) for i in range(60)])
    assert offsets[60:] == pytest.approx([float(i) for i in range(60, 90)])
    # the file was repaired: times only, 0600, and the next process reads it without a word
    assert all(line.lstrip(b"~").isdigit() for line in path.read_bytes().splitlines())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.api.ratelimit"):
        RateLimiter(60, clock).use_state(path)
    assert not caplog.records


def test_a_corrupt_file_never_stops_a_client_built_like_the_service(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with Sandbox(port=0) as sb:
        sb.set_rate_limit(per_minute=1_000_000, per_day=100_000_000)
        path = grant_log_path(state, sb.url, DEMO_USER)
        path.write_bytes(b"\x89PNG\r\n\x1a\n not a list of times")
        base = settings_for(sb, state)
        settings = replace(base, api=replace(base.api, requests_per_minute=600))
        with (
            caplog.at_level(logging.WARNING, logger="pipeline.api.ratelimit"),
            open_client(settings) as client,
        ):
            for i in range(5):
                client.create_lead(CODE, {"name": f"After {i} ApS", "phone": "+45 12345678"})
    assert [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(path.read_bytes().splitlines()) >= 5


def test_a_missing_file_starts_conservatively_and_the_next_run_inherits_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "new-state" / "grants.times"  # the folder does not exist yet either
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="pipeline.api.ratelimit"):
        first = RateLimiter(30, clock)
        first.use_state(path)
        times = grant_times(first, 3)
    assert [t - times[0] for t in times] == pytest.approx([0.0, 2.0, 4.0])
    assert any("no record of recent API requests" in r.getMessage() for r in caplog.records)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # a restart 1 s later: the unknown minute before the first start still counts, so the
    # new process goes on at the same pace (grant n+1 at mark + 2n s) instead of bursting
    clock.advance(1)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.api.ratelimit"):
        second = RateLimiter(30, ProcessClock(clock, 5000.0))
        second.use_state(path)
    assert any("still applies" in r.getMessage() for r in caplog.records)
    assert [second.acquire() for _ in range(4)] == pytest.approx([1.0, 2.0, 2.0, 2.0])


def test_server_headers_end_the_conservative_start(tmp_path: Path) -> None:
    path = tmp_path / "grants.times"
    clock = FakeClock()
    limiter = RateLimiter(60, clock)
    limiter.use_state(path)
    assert path.read_bytes().startswith(b"~")  # the conservative start is recorded
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(1.0)  # paced: 60 a minute, evenly
    limiter.observe({"X-Rate-Limit-Remaining": "4", "X-Rate-Limit-Reset": "30"}, 429)
    assert limiter.acquire() == pytest.approx(1.0)  # a refusal's headers change nothing
    limiter.observe({"X-Rate-Limit-Remaining": "4", "X-Rate-Limit-Reset": "30"}, 200)
    assert [limiter.acquire() for _ in range(4)] == [0.0] * 4  # the server's count rules
    assert limiter.acquire() == pytest.approx(30.0)  # ... and its window
    # ... for the next process too: it starts from the 8 recorded grants, not cautiously
    assert b"~" not in path.read_bytes()
    nxt = RateLimiter(60, ProcessClock(clock, 42.0))
    nxt.use_state(path)
    assert [nxt.acquire() for _ in range(52)] == [0.0] * 52
    assert nxt.acquire() > 0


def test_an_unreadable_file_is_a_conservative_start_without_recording(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "grants.times"
    path.mkdir()  # a folder where the file should be
    clock = FakeClock()
    limiter = RateLimiter(60, clock)
    with caplog.at_level(logging.WARNING, logger="pipeline.api.ratelimit"):
        limiter.use_state(path)
    assert len(caplog.records) == 1
    assert "cannot be opened" in caplog.records[0].getMessage()
    assert [limiter.acquire() for _ in range(3)] == pytest.approx([0.0, 1.0, 1.0])


def test_no_state_folder_keeps_the_limiter_in_memory(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, clock)
    assert [limiter.acquire() for _ in range(5)] == [0.0] * 5
    assert limiter.acquire() == 60.0
    assert list(tmp_path.iterdir()) == []


# -- the file ----------------------------------------------------------------------------


def test_a_restart_waits_for_the_grants_of_the_previous_process(tmp_path: Path) -> None:
    path = tmp_path / "grants.times"
    path.write_bytes(b"")  # an existing, empty record: nothing was sent lately
    clock = FakeClock()
    a = RateLimiter(10, ProcessClock(clock, 0.0))
    a.use_state(path)
    assert [a.acquire() for _ in range(10)] == [0.0] * 10  # no conservative start
    clock.advance(15)
    b = RateLimiter(10, ProcessClock(clock, -777.0))
    b.use_state(path)
    assert b.acquire() == pytest.approx(45.0)  # the oldest of a's grants leaves the window
    clock.advance(120)
    c = RateLimiter(10, ProcessClock(clock, 3.0))
    c.use_state(path)
    assert c.acquire() == 0.0
    assert len(path.read_bytes().splitlines()) == 1  # compacted at start: only c's grant


def test_old_lines_are_compacted_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "COMPACT_EVERY", 50)
    monkeypatch.setattr(ratelimit, "COMPACT_MIN_BYTES", 1000)
    path = tmp_path / "grants.times"
    path.write_bytes(b"")
    clock = FakeClock()
    limiter = RateLimiter(1000, clock)
    limiter.use_state(path)
    for _ in range(400):
        limiter.acquire()
        clock.advance(1.0)
    lines = path.read_bytes().splitlines()
    assert 60 <= len(lines) <= 2 * 60 + 50  # compacted when it doubled: never far above


APPENDER = """
import sys, threading, time
from pipeline.api import ratelimit
ratelimit.COMPACT_EVERY = 97  # frequent compactions, racing the other appends
ratelimit.COMPACT_MIN_BYTES = 0
log = ratelimit.GrantLog(sys.argv[1])
log.load(time.time())
def work(age):  # stale lines (an hour old) make every compaction rewrite the file
    for _ in range(int(sys.argv[2])):
        log.append(time.time() - age)
threads = [threading.Thread(target=work, args=(age,)) for age in (0, 0, 3600, 3600)]
for t in threads: t.start()
for t in threads: t.join()
"""


def test_processes_and_threads_appending_at_once_lose_and_mangle_nothing(tmp_path: Path) -> None:
    path = tmp_path / "grants.times"
    path.write_bytes(b"")
    per_thread = 3000
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(path), str(per_thread)], env=env)
        for _ in range(4)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    now = time.time()
    lines = path.read_bytes().split(b"\n")
    assert lines.pop() == b""  # whole lines only
    assert all(line.isdigit() for line in lines)
    stale = sum(1 for line in lines if int(line) / 1000 < now - 60)
    assert stale < 4 * 2 * per_thread  # compactions ran (and rewrote the file)
    loaded = GrantLog(path).load(now)
    assert loaded.status == "ok"
    assert len(loaded.times) == 4 * 2 * per_thread  # not one recent grant lost


def test_only_one_load_per_limiter_even_from_many_threads(tmp_path: Path) -> None:
    path = tmp_path / "grants.times"
    path.write_bytes(b"")
    limiter = RateLimiter(100, FakeClock())
    threads = [threading.Thread(target=limiter.use_state, args=(path,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    limiter.acquire()
    assert len(path.read_bytes().splitlines()) == 1
