"""The account's request budget shared by every node, kept in PostgreSQL.

docs/cluster.md, "Shared request budget". Several ``leadpipe run`` nodes (or any processes) with
a PostgreSQL ledger send through one HeroBase account, and HeroBase counts the account's
requests per minute and per day whoever sends them (docs/api-contract.md, "The daily quota").
So each node's :class:`~pipeline.api.ratelimit.RateLimiter` keeps its own pacing and turns, and
before each request it sends also takes a permit here, from counters every node shares:

- ``leadpipe_budget_minute``: the account's requests of each minute window, a window being a
  minute of **the database's clock** (``clock_timestamp()``), so node clocks do not matter;
- ``leadpipe_budget_day``: the account's requests of the day as
  :class:`~pipeline.api.quota.DailyBudget` defines it (``[api] daily_reset`` in the tenant's
  time zone; keyed by the instant the day ends), plus ``others``: what the tenant's own count
  (``counts.day``) held beyond ours when a node last read it (other integrations).

The account is a SHA-256 of the API URL and user, never the password; the tables are created
(if missing) in the ledger's database. A permit is ONE statement (an ``INSERT .. ON CONFLICT DO
UPDATE SET used = used + 1 WHERE used < cap .. RETURNING``, the minute's and the day's counter
together), so no two nodes can take the same last permit.

Trade-offs, on purpose:

- one round trip per request, no batches: at a tenant's usual 600-1,200 requests a minute that
  is 10-20 short statements a second for the whole cluster; a batch would let one node sit on
  permits another needs now, and a node that dies loses the rest of its batch (counted, unsent);
- fixed minute windows, as HeroBase counts: a node near the end of a window may not take the
  last :data:`GUARD` seconds of it (a permit given at 59.99 s could reach HeroBase in the next
  window and make that one hold more than the limit); a permit the database gives only after
  the window closed (a lock wait across the boundary) is counted but not used;
- when a permit of the minute is taken but the day turns out spent (another node took its last
  request at the same moment), that minute permit is spent for nothing;
- PostgreSQL unreachable: nothing is sent without a permit (:class:`Permit` ``unavailable``; the
  limiter raises :class:`~pipeline.api.ratelimit.BudgetUnreachable`, a "not sent, try again"
  error); it is said once in the log, and asked again after a back-off (1 s doubling to 15 s).

Only :func:`pipeline.api.connect.open_client` imports this module, and only for a
``postgresql://`` ledger: SQLite users never load psycopg.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pipeline.ledger.postgres import _conninfo as ledger_conninfo
from pipeline.ledger.postgres import _why, safe_location

log = logging.getLogger(__name__)

#: The account's minute window (seconds of the database's clock).
WINDOW = 60.0
#: The last seconds of a window in which no permit is given (a request permitted then would
#: reach HeroBase in the next window).
GUARD = 0.5
#: Seconds to wait for the database (connecting, a statement, a lock) before calling it down.
TIMEOUT = 5
#: Back-off after the database did not answer: first wait, longest wait (seconds).
BACKOFF = (1.0, 15.0)
#: Counters older than this are deleted (minute windows; day rows are kept a week).
KEEP_MINUTES = 60
#: How often (seconds) a node deletes old counters.
PRUNE_EVERY = 600.0
#: Advisory lock of the tables' creation (its own key space: not the ledger's).
_LOCK = (0x1EADB, 1)

_TABLES = (
    """CREATE TABLE IF NOT EXISTS leadpipe_budget_minute (
        account TEXT NOT NULL,
        window_start TIMESTAMPTZ NOT NULL,
        used INTEGER NOT NULL,
        PRIMARY KEY (account, window_start)
    )""",
    """CREATE TABLE IF NOT EXISTS leadpipe_budget_day (
        account TEXT NOT NULL,
        day_end TIMESTAMPTZ NOT NULL,
        used BIGINT NOT NULL DEFAULT 0,
        others BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (account, day_end)
    )""",
)

# One statement: the window of the database's clock; the minute's counter, only while the
# window is open, the cap not reached and the day (as last committed) not spent; then the
# day's counter, only when the minute's was taken and the day's cap is not reached. The last
# two columns: seconds until the window ends, and until it closes (its guard), measured after
# the counters were taken.
_TAKE = """
WITH c AS (
    SELECT clock_timestamp() AS at
), w AS (
    SELECT at, to_timestamp(floor(extract(epoch FROM at)::float8 / %(window)s::float8)
                            * %(window)s::float8) AS start
    FROM c
), seen AS (
    SELECT d.used + d.others AS total FROM leadpipe_budget_day d
    WHERE d.account = %(account)s AND d.day_end = %(day_end)s::timestamptz
), minute AS (
    INSERT INTO leadpipe_budget_minute AS m (account, window_start, used)
    SELECT %(account)s, w.start, 1 FROM w
    WHERE w.at < w.start + make_interval(secs => %(open)s::float8)
      AND %(cap)s::integer >= 1
      AND (%(day_cap)s::bigint IS NULL
           OR coalesce((SELECT total FROM seen), 0) < %(day_cap)s::bigint)
    ON CONFLICT (account, window_start) DO UPDATE SET used = m.used + 1
    WHERE m.used < %(cap)s::integer
    RETURNING m.used
), day AS (
    INSERT INTO leadpipe_budget_day AS d (account, day_end, used, others)
    SELECT %(account)s, %(day_end)s::timestamptz, 1, 0 FROM minute
    WHERE %(day_end)s::timestamptz IS NOT NULL
    ON CONFLICT (account, day_end) DO UPDATE SET used = d.used + 1
    WHERE %(day_cap)s::bigint IS NULL OR d.used + d.others < %(day_cap)s::bigint
    RETURNING d.used + d.others AS total
)
SELECT (SELECT used FROM minute),
       (SELECT total FROM day),
       (SELECT total FROM seen),
       extract(epoch FROM w.start + make_interval(secs => %(window)s::float8)
                         - clock_timestamp())::float8,
       extract(epoch FROM w.start + make_interval(secs => %(open)s::float8)
                         - clock_timestamp())::float8
FROM w
"""

_USED = "SELECT used FROM leadpipe_budget_day WHERE account = %s AND day_end = %s"

_OTHERS = """
INSERT INTO leadpipe_budget_day AS d (account, day_end, used, others) VALUES (%s, %s, 0, %s)
ON CONFLICT (account, day_end) DO UPDATE SET others = greatest(d.others, excluded.others)
"""

_PRUNE = (
    "DELETE FROM leadpipe_budget_minute WHERE window_start < now() - make_interval(mins => %s)",
    "DELETE FROM leadpipe_budget_day WHERE day_end < now() - interval '7 days'",
)


def account_key(url: str, user: str) -> str:
    """The account's key in the tables: a SHA-256 of its API URL and user (no password)."""
    account = f"{url.rstrip('/').lower()}\n{user.lower()}".encode()
    return hashlib.sha256(account).hexdigest()


@dataclass(frozen=True)
class Permit:
    """What the shared budget said about one request."""

    granted: bool
    #: not granted: seconds until the shared window may have room (or the database is asked
    #: again, when ``unavailable``)
    wait: float = 0.0
    #: the day's budget is spent for the account (nothing granted)
    day_spent: bool = False
    #: the account's requests of the day (every node's, and others' when the tenant told), if known
    day_used: int | None = None
    #: why the database could not be asked ("" when it answered)
    unavailable: str = ""


class SharedBudget:
    """The shared minute and day counters of one account (``api_url`` + ``api_user``).

    Thread-safe; one connection, opened on first use and again after a failure. Never raises
    on the hot path: :meth:`take` answers with a :class:`Permit`.
    """

    def __init__(
        self,
        ledger_url: str,
        password: str,
        api_url: str,
        api_user: str,
        *,
        window: float = WINDOW,
        guard: float = GUARD,
        backoff: tuple[float, float] = BACKOFF,
    ) -> None:
        if not 0 <= guard < window:
            raise ValueError("the guard must be shorter than the window")
        self.account = account_key(api_url, api_user)
        self.window = window
        self.guard = guard
        self.location = safe_location(ledger_url)
        self._conninfo = _conninfo(ledger_url, password)
        self._backoff_range = backoff
        self._backoff = backoff[0]
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._down_until = 0.0  # time.monotonic(): the database is not asked before then
        self._down_why = ""  # set while the database is considered down (logged once)
        self._pruned = -math.inf
        self._closed = False

    def __repr__(self) -> str:
        return f"SharedBudget({self.location}, account={self.account[:12]})"

    # -- the hot path -------------------------------------------------------------------------

    def take(self, per_minute: int, *, day_end: datetime | None, day_cap: int | None) -> Permit:
        """One permit of a ``per_minute`` cap (scaled to the window), within the day's cap.

        ``day_end`` is the instant the day (:class:`~pipeline.api.quota.DailyBudget`) ends, the
        key of the day's counter (None: the day is not counted); ``day_cap`` the day's usable
        budget (None: none known, only counted).
        """
        cap = math.floor(per_minute * self.window / WINDOW + 1e-9)
        params = {
            "account": self.account,
            "window": self.window,
            "open": self.window - self.guard,
            "cap": cap,
            "day_end": day_end,
            "day_cap": day_cap,
        }
        with self._lock:
            row, why = self._run(_TAKE, params)
        if row is None:
            return Permit(False, wait=self._wait_down(), unavailable=why)
        minute, day, seen, to_end, to_close = row
        to_end = max(0.0, float(to_end))
        if minute is not None and (day is not None or day_end is None):
            if float(to_close) > 0:
                return Permit(True, day_used=None if day is None else int(day))
            # given after the window closed (a lock wait across its end): counted, not used
            return Permit(False, wait=to_end)
        total = int(seen) if seen is not None else None
        if day_cap is not None and (minute is not None or (total or 0) >= day_cap):
            return Permit(False, day_spent=True, day_used=max(total or 0, day_cap))
        return Permit(False, wait=to_end, day_used=total)

    # -- the day ------------------------------------------------------------------------------

    def day_used(self, day_end: datetime) -> int | None:
        """Our requests of the day over every node (None: the database did not answer)."""
        with self._lock:
            row, why = self._run(_USED, (self.account, day_end))
        if why:
            return None
        return int(row[0]) if row is not None else 0

    def set_others(self, day_end: datetime, others: int) -> None:
        """The tenant's count held ``others`` requests beyond ours (other integrations).

        Kept as the largest figure of the day (a count never goes back within a day).
        """
        with self._lock:
            self._run(_OTHERS, (self.account, day_end, max(0, others)), fetch=False)

    # -- plumbing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent); a later call opens none."""
        with self._lock:
            self._closed = True
            self._drop()

    def __del__(self) -> None:  # a limiter let go: its connection goes with it
        conn = self.__dict__.get("_conn")
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _wait_down(self) -> float:
        with self._lock:
            return max(0.0, self._down_until - time.monotonic())

    def _run(
        self, sql: str, params: Any, *, fetch: bool = True
    ) -> tuple[tuple[Any, ...] | None, str]:
        """One statement (lock held): its first row (None: no row, or the database is down)."""
        if self._closed:
            return None, "the shared request budget is closed"
        if time.monotonic() < self._down_until:
            return None, self._down_why
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                conn = self._connection()
                cur = conn.execute(sql, params)  # constant SQL; values as parameters
                row = cur.fetchone() if fetch else None
                self._prune(conn)
            except psycopg.errors.UndefinedTable:
                self._drop()  # the tables were dropped meanwhile: made again on the next try
                if attempt == 2:
                    return None, self._down("its tables cannot be made")
                continue
            except psycopg.Error as exc:
                self._drop()
                if reused and attempt == 1:
                    continue  # an idle connection the server closed: one fresh try
                return None, self._down(_why(exc))
            self._up()
            return row, ""
        return None, self._down_why  # pragma: no cover - the loop returns

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self._conninfo, autocommit=True)
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _LOCK)
                    for stmt in _TABLES:
                        conn.execute(stmt)  # constant DDL
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _prune(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        now = time.monotonic()
        if now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        conn.execute(_PRUNE[0], (KEEP_MINUTES,))
        conn.execute(_PRUNE[1])

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _down(self, why: str) -> str:
        """The database did not answer (lock held): back off; say so once."""
        if not self._down_why:
            log.warning(
                "the shared request budget in %s cannot be reached (%s); no HeroBase request "
                "is sent until it answers again",
                self.location,
                why,
            )
        self._down_why = why or "no answer"
        self._down_until = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self._backoff_range[1])
        return self._down_why

    def _up(self) -> None:
        if self._down_why:
            log.info("the shared request budget in %s answers again", self.location)
        self._down_why = ""
        self._down_until = 0.0
        self._backoff = self._backoff_range[0]


def _conninfo(url: str, password: str) -> str:
    """The ledger's connection string (:func:`pipeline.ledger.postgres._conninfo`: the password
    from the environment, its session settings) with short timeouts: a database that does not
    answer within :data:`TIMEOUT` seconds is down (nothing is sent meanwhile)."""
    ledger = ledger_conninfo(url, password)  # ConfigError for a URL libpq does not accept
    ms = TIMEOUT * 1000
    ours = f"-c statement_timeout={ms} -c lock_timeout={ms}"
    return make_conninfo(
        ledger,
        options=f"{conninfo_to_dict(ledger).get('options') or ''} {ours}".strip(),
        application_name="leadpipe-budget",
        connect_timeout=TIMEOUT,
        keepalives=1,
        keepalives_idle=TIMEOUT,
        keepalives_interval=1,
        keepalives_count=3,
        tcp_user_timeout=ms,
    )
