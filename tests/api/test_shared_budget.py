"""The account's request budget shared through PostgreSQL (docs/cluster.md, "Shared request
budget"), against the throwaway cluster of tests/postgres.py.

Minute windows here are a few seconds long (``SharedBudget(window=...)``, the per-minute cap
scaled to it), so a test sees several windows quickly; every assertion counts permits per
window, never a duration.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.api import HeroBaseClient, RetryPolicy
from pipeline.api.quota import DailyBudget, DailyPolicy, QuotaExhausted
from pipeline.api.ratelimit import BudgetUnreachable, RateLimiter
from pipeline.clock import FakeClock, SystemClock
from pipeline.config import ApiSettings, Paths, Settings, StateSettings
from pipeline.errors import Unavailable
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox
from tests.postgres import Cluster
from tests.tcprelay import TcpRelay

psycopg = pytest.importorskip("psycopg")

from pipeline.api.shared_budget import SharedBudget, account_key  # noqa: E402

API = "https://tenant.example/api"
USER = "api@customer.example"
#: a short window and its guard (seconds): the minute's logic, several windows a test
WINDOW, GUARD = 2.0, 0.5
#: per-minute limit whose share of a WINDOW-second window is CAP
PER_MINUTE, CAP = 300, 10


@pytest.fixture
def db_url(postgres_cluster: Cluster) -> Iterator[str]:
    """A fresh database on the session's throwaway PostgreSQL cluster."""
    with postgres_cluster.fresh_database() as url:
        yield url


def budget(url: str, **kw: Any) -> SharedBudget:
    kw.setdefault("window", WINDOW)
    kw.setdefault("guard", GUARD)
    return SharedBudget(url, "", kw.pop("api", API), kw.pop("user", USER), **kw)


def shared_limiter(url: str, *, per_minute: int = PER_MINUTE, **kw: Any) -> RateLimiter:
    limiter = RateLimiter(per_minute, SystemClock())
    limiter.use_shared(budget(url, **kw))
    return limiter


def per_window(times: list[float], window: float = WINDOW) -> Counter[int]:
    """Grants per window of ``window`` seconds (epoch-aligned, as the database's windows)."""
    return Counter(math.floor(t / window) for t in times)


class CountingBudget(SharedBudget):
    """A shared budget that counts how often the database was asked for a permit."""

    asked = 0

    def take(self, per_minute: int, **kw: Any) -> Any:
        CountingBudget.asked += 1
        return super().take(per_minute, **kw)


# -- the minute window --------------------------------------------------------------------------


def test_a_permit_is_refused_at_the_cap_and_priority_requests_keep_their_headroom(
    db_url: str,
) -> None:
    shared = budget(db_url, window=600.0, guard=0.0)  # one window for the whole test
    if time.time() % 600 > 590:  # not at the very end of one
        time.sleep(600 - time.time() % 600)
    cap = 200  # a 20-a-minute limit, scaled to 600 s
    upload_cap = cap - 20  # what uploads may take: the rest is kept for priority requests
    granted = [shared.take(upload_cap // 10, day_end=None, day_cap=None) for _ in range(190)]
    assert sum(p.granted for p in granted) == upload_cap
    refused = [p for p in granted if not p.granted]
    assert all(p.wait > 0 and not p.unavailable and not p.day_spent for p in refused)
    priority = [shared.take(cap // 10, day_end=None, day_cap=None) for _ in range(25)]
    assert sum(p.granted for p in priority) == cap - upload_cap
    shared.close()


def test_limiters_of_one_process_share_the_window(db_url: str) -> None:
    CountingBudget.asked = 0
    limiters = []
    for _ in range(3):
        limiter = RateLimiter(PER_MINUTE, SystemClock())
        limiter.use_shared(CountingBudget(db_url, "", API, USER, window=WINDOW, guard=GUARD))
        limiters.append(limiter)
    times: list[float] = []
    lock = threading.Lock()

    def work(limiter: RateLimiter) -> None:
        for _ in range(5):
            limiter.acquire()
            with lock:
                times.append(time.time())

    threads = [threading.Thread(target=work, args=(lim,)) for lim in limiters for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(times) == 30
    counts = per_window(times)
    assert max(counts.values()) <= CAP, counts
    assert len(counts) >= 30 // CAP  # they had to wait for later windows
    # waiting for the next window is one sleep per limiter, not polling the database
    assert CountingBudget.asked <= 30 + 3 * 3 * len(counts), CountingBudget.asked


_WORKER = """
import json, sys, threading, time
from pipeline.api.ratelimit import RateLimiter
from pipeline.api.shared_budget import SharedBudget
from pipeline.clock import SystemClock

url, api, user, start = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
limiter = RateLimiter({per_minute}, SystemClock())
limiter.use_shared(SharedBudget(url, "", api, user, window={window}, guard={guard}))
times, lock = [], threading.Lock()

def work():
    for _ in range({each}):
        limiter.acquire(priority=True)
        with lock:
            times.append(time.time())

time.sleep(max(0.0, start - time.time()))
threads = [threading.Thread(target=work) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(times))
"""


def test_processes_sharing_one_account_never_exceed_the_window_limit(db_url: str) -> None:
    each = 6  # per thread; two threads in each of three processes: 36 permits, 4 windows
    code = _WORKER.format(per_minute=PER_MINUTE, window=WINDOW, guard=GUARD, each=each)
    start = time.time() + 3  # all three begin together, once imported
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, db_url, API, USER, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        for _ in range(3)
    ]
    times: list[float] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        mine = json.loads(out)
        assert len(mine) == 2 * each
        times += mine
    counts = per_window(times)
    assert max(counts.values()) <= CAP, counts
    assert sum(counts.values()) == 3 * 2 * each
    assert max(counts.values()) == CAP  # they wanted more than a window's budget


def test_the_account_is_a_hash_of_url_and_user_never_the_password(db_url: str) -> None:
    secret = "pw-Canary-4471"
    shared = SharedBudget(db_url, "", API, USER)
    assert shared.take(100, day_end=None, day_cap=None).granted
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute("SELECT account, used FROM leadpipe_budget_minute").fetchall()
    expected = hashlib.sha256(f"{API}\n{USER}".lower().encode()).hexdigest()
    assert rows == [(expected, 1)]
    assert account_key(API + "/", USER.upper()) == expected
    assert secret not in repr(shared)
    assert API not in repr(shared)


# -- the day ------------------------------------------------------------------------------------


def day_limiter(url: str, clock: SystemClock, per_day: int, reserve: float) -> RateLimiter:
    limiter = RateLimiter(6000, clock)
    limiter.use_daily(DailyBudget(DailyPolicy(per_day=per_day, reserve=reserve), clock))
    limiter.use_shared(SharedBudget(url, "", API, USER))
    return limiter


def test_the_day_budget_is_shared_and_refused_with_quota_exhausted(db_url: str) -> None:
    clock = SystemClock()
    a = day_limiter(db_url, clock, per_day=10, reserve=0.2)  # a budget of 8 a day
    b = day_limiter(db_url, clock, per_day=10, reserve=0.2)
    granted = 0
    refused: list[QuotaExhausted] = []
    for limiter in [a, b] * 6:
        try:
            limiter.acquire()
            granted += 1
        except QuotaExhausted as exc:
            refused.append(exc)
    assert granted == 8
    assert len(refused) == 4
    assert refused[-1].resume_at > datetime.now(UTC)
    assert refused[-1].resume_at - datetime.now(UTC) <= timedelta(days=1, hours=2)
    for limiter in (a, b):  # each node's status shows the account's day
        quota = limiter.quota()
        assert quota is not None
        assert quota.used == 8
        assert quota.spent


def test_the_tenants_count_of_other_integrations_is_shared(db_url: str) -> None:
    clock = SystemClock()
    a = day_limiter(db_url, clock, per_day=10, reserve=0.0)
    b = day_limiter(db_url, clock, per_day=10, reserve=0.0)
    a.acquire()
    b.acquire()
    assert a.daily is not None
    mark = a.daily.mark()  # every node's requests of the day: 2
    assert mark == 2
    # the tenant counted ours (2), the request that asked (not made here) and 3 of others
    a.configure(None, used_today=mark + 1 + 3, mark=mark)
    granted = 0
    for limiter in [b, a] * 5:
        try:
            limiter.acquire()
            granted += 1
        except QuotaExhausted:
            pass
    assert granted == 10 - 2 - 3


# -- PostgreSQL down ----------------------------------------------------------------------------


def test_herobases_daily_header_count_is_kept_and_shared_with_every_node(db_url: str) -> None:
    """A daily X-Rate-Limit-* window counts every integration on the account: a shared permit
    does not hide it (docs/api-contract.md, "The daily quota"), and the other nodes learn it."""
    clock = SystemClock()
    a = day_limiter(db_url, clock, per_day=1000, reserve=0.0)
    b = day_limiter(db_url, clock, per_day=1000, reserve=0.0)
    for _ in range(3):
        a.acquire()
    spent_day = {
        "X-Rate-Limit-Limit": "1000",
        "X-Rate-Limit-Remaining": "0",
        "X-Rate-Limit-Reset": "36000",
    }
    a.observe(spent_day, 200)
    with pytest.raises(QuotaExhausted):
        a.acquire()  # the shared counter says 4, HeroBase said 1000: refused
    quota = a.quota()
    assert quota is not None
    assert quota.used >= 1000
    assert quota.spent
    # b never saw the headers: the others of the account reached it through the database
    with pytest.raises(QuotaExhausted):
        b.acquire()
    with psycopg.connect(db_url, autocommit=True) as conn:
        others = conn.execute("SELECT others FROM leadpipe_budget_day").fetchall()
    assert others == [(1000 - 3,)]


def test_a_mark_the_database_did_not_give_is_not_shared_as_others(
    postgres_cluster: Cluster, db_url: str
) -> None:
    """A database blip while asking the tenant's count: that node's figure holds the other
    nodes' requests, so it is not shared as "others" (it would stay all day)."""
    proxy = TcpRelay(("127.0.0.1", postgres_cluster.port))
    db = db_url.rsplit("/", 1)[1]
    via_proxy = f"postgresql://leadpipe@127.0.0.1:{proxy.port}/{db}"
    clock = SystemClock()
    b = day_limiter(db_url, clock, per_day=10, reserve=0.0)
    for _ in range(5):
        b.acquire()
    c = RateLimiter(6000, clock)
    daily = c.use_daily(DailyBudget(DailyPolicy(per_day=10, reserve=0.0), clock))
    c.use_shared(SharedBudget(via_proxy, "", API, USER, backoff=(0.0, 0.0)))
    try:
        mark = daily.mark()  # the database does not answer: this process's own count
        assert mark == 0
        assert not mark.shared
        proxy.up()
        # the tenant counted b's 5, the request that asked and 2 of other integrations
        c.configure(None, used_today=5 + 1 + 2, mark=mark)
        with psycopg.connect(db_url, autocommit=True) as conn:
            others = conn.execute("SELECT others FROM leadpipe_budget_day").fetchall()
        assert others == [(0,)]
        granted = 0
        for _ in range(8):
            try:
                b.acquire()
                granted += 1
            except QuotaExhausted:
                pass
        assert granted == 10 - 5
    finally:
        proxy.down()


def test_postgresql_down_nothing_is_sent_no_thread_dies_and_it_resumes(
    postgres_cluster: Cluster, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = TcpRelay(("127.0.0.1", postgres_cluster.port))
    proxy.up()
    db = db_url.rsplit("/", 1)[1]
    via_proxy = f"postgresql://leadpipe@127.0.0.1:{proxy.port}/{db}"
    dead: list[BaseException] = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: dead.append(args.exc_value or Exception())
    with Sandbox() as sb:
        sb.set_rate_limit(per_minute=10**6, per_day=10**8)
        settings = ApiSettings(url=sb.url, user=DEMO_USER, password=DEMO_PASSWORD)
        limiter = RateLimiter(6000, SystemClock(), pace_uploads=True)
        limiter.use_shared(
            SharedBudget(via_proxy, "", sb.url, DEMO_USER, backoff=(0.2, 0.4), guard=0.0)
        )
        client = HeroBaseClient(settings, limiter=limiter, retry=RetryPolicy(max_retries=0))
        try:
            assert client.campaigns()  # the budget answers: requests go out
            assert sb.requests()
            proxy.down()
            sb.clear_requests()
            caplog.set_level(logging.INFO, logger="pipeline.api.shared_budget")
            errors: list[BaseException] = []

            def work() -> None:
                for _ in range(5):
                    try:
                        client.create_lead("B2B-DK-SPRING", {"name": "x", "phone": "+4520000000"})
                    except Unavailable as exc:
                        errors.append(exc)
                    try:
                        client.campaigns()
                    except Unavailable as exc:
                        errors.append(exc)
                    time.sleep(0.05)

            threads = [threading.Thread(target=work) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not any(t.is_alive() for t in threads)
            assert dead == []  # no thread ended by an exception
            assert sb.requests() == []  # nothing sent without a permit
            assert len(errors) == 40
            assert all(isinstance(e, BudgetUnreachable) for e in errors)
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1  # said once
            assert "cannot be reached" in warnings[0].getMessage()

            proxy.up()  # back: the next request after the back-off goes out
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert client.campaigns()
                    break
                except BudgetUnreachable:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            assert [r["method"] for r in sb.requests()] == ["GET"]
            assert any("answers again" in r.getMessage() for r in caplog.records)
        finally:
            client.close()
            proxy.down()
            threading.excepthook = old_hook


# -- wiring -------------------------------------------------------------------------------------


def test_open_client_shares_the_budget_for_a_postgresql_ledger_only(tmp_path: Path) -> None:
    from pipeline.api.connect import open_client

    api = ApiSettings(url=API, user=USER, password="pw")
    pg = StateSettings(ledger="postgresql://leadpipe@db.example:5432/leadpipe", password="x")
    settings = Settings(api=api, paths=Paths(state=tmp_path / "pg"), state=pg)
    with open_client(settings, clock=FakeClock()) as client:
        shared = client.limiter.shared
        assert shared is not None
        assert shared.account == account_key(API, USER)
        assert client.limiter.daily is not None
        assert client.limiter.daily.shared is shared
    sqlite = Settings(api=api, paths=Paths(state=tmp_path / "lite"))
    with open_client(sqlite, clock=FakeClock()) as client:
        assert client.limiter.shared is None


def test_a_sqlite_ledger_never_loads_psycopg(tmp_path: Path) -> None:
    code = f"""
import sys
from pipeline.api.connect import open_client
from pipeline.config import ApiSettings, Paths, Settings
settings = Settings(api=ApiSettings(url={API!r}, user="u", password="p"),
                    paths=Paths(state=__import__("pathlib").Path({str(tmp_path)!r})))
with open_client(settings) as client:
    assert client.limiter.shared is None
print(sorted(m for m in sys.modules if m.startswith(("psycopg", "pipeline.api.shared"))))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stdout.strip() == "[]"
