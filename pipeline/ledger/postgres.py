"""The PostgreSQL backend of the ledger (docs/architecture.md, "The ledger on PostgreSQL").

The same tables, states and transitions as :mod:`pipeline.ledger.sqlite`, in plain SQL over a
``psycopg_pool.ConnectionPool``. Every connection runs with ``synchronous_commit = on``, whatever
the server's default: a transaction that records an intent has reached the server's disk (and
its synchronous standbys) before the method returns. Outcomes are committed the same way (one
statement each, one round trip), so nothing the ledger says is ever lost to a crash of the
database server; SQLite lets outcomes skip the fsync instead, as an fsync there costs more than
a round trip here.

Only :func:`pipeline.ledger.connect.open_ledger_for` imports this module, and only for a
``postgresql://`` ledger: SQLite users never load psycopg.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from pipeline.errors import ConfigError, ConfigProblem, StateError
from pipeline.files import readable
from pipeline.ledger import Claim, FileKey, FileRecord, FileState, RowRecord, RowState

#: Numbered as SQLite's ledger (:data:`pipeline.ledger.sqlite.SCHEMA_VERSION`), so a version
#: means the same tables on both backends. PostgreSQL ledgers start at 2.
SCHEMA_VERSION = 2
#: Most connections the pool opens (upload threads of every campaign share them).
POOL_SIZE = 8
#: Seconds to wait for a connection (from the pool or the server) before stopping.
CONNECT_TIMEOUT = 15
#: First key of the advisory locks (any fixed number: "leadpipe's ledger" in this database).
_LOCK_SPACE = 0x1EAD
_SCHEMA_LOCK = 1  #: second key: creating or upgrading the schema
#: Claims for one campaign take the transaction lock (_LOCK_SPACE, hashtext(campaign)): two
#: processes never judge the same data "not yet sent" at once (SQLite serialises every write).

_TABLES = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE files (
        sha256 TEXT NOT NULL,
        campaign TEXT NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        first_seen_utc TEXT COLLATE "C" NOT NULL,
        updated_utc TEXT COLLATE "C" NOT NULL,
        finished_utc TEXT COLLATE "C",
        receipt_path TEXT,
        receipt_json TEXT,
        PRIMARY KEY (sha256, campaign)
    )""",
    """CREATE TABLE rows (
        file_sha256 TEXT NOT NULL,
        campaign TEXT NOT NULL,
        row INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL,
        unique_id TEXT,
        reason TEXT NOT NULL DEFAULT '',
        details TEXT NOT NULL DEFAULT '[]',
        attempt_local TEXT,
        attempt_utc TEXT COLLATE "C",
        attempts INTEGER NOT NULL DEFAULT 0,
        ended_utc TEXT COLLATE "C",
        PRIMARY KEY (file_sha256, campaign, row),
        FOREIGN KEY (file_sha256, campaign) REFERENCES files (sha256, campaign)
    )""",
    "CREATE INDEX rows_fingerprint ON rows (campaign, fingerprint, state)",
    "CREATE INDEX rows_state ON rows (file_sha256, campaign, state)",
    "CREATE INDEX rows_attempt ON rows (campaign, state, attempt_utc)",
    "CREATE INDEX rows_unique_id ON rows (unique_id)",
    "CREATE INDEX files_state ON files (campaign, state)",
    "CREATE INDEX files_name ON files (name)",
    """CREATE TABLE attempts (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        file_sha256 TEXT NOT NULL,
        campaign TEXT NOT NULL DEFAULT '',
        row INTEGER NOT NULL,
        at_utc TEXT COLLATE "C" NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX attempts_file ON attempts (file_sha256, campaign)",
)
_OURS = ("files", "rows", "attempts")

#: Steps from one schema version to the next, run in the schema's transaction under its lock
#: (none yet: every PostgreSQL ledger was created at version 2).
_MIGRATIONS: dict[int, tuple[str, ...]] = {}

Cursor = psycopg.Cursor[tuple[Any, ...]]


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _text(value: str) -> str:
    """PostgreSQL text holds no NUL character (SQLite's does): shown as U+FFFD instead."""
    return value.replace("\x00", "\ufffd")


def safe_location(url: str) -> str:
    """The URL without a password (config refuses one; this is for every message anyway)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=user + host))
    except ValueError:
        return "the configured PostgreSQL database"


def _file(r: dict[str, Any]) -> FileRecord:
    return FileRecord(
        sha256=r["sha256"],
        name=r["name"],
        campaign=r["campaign"],
        state=FileState(r["state"]),
        reason=r["reason"],
        first_seen_utc=r["first_seen_utc"],
        updated_utc=r["updated_utc"],
        finished_utc=r["finished_utc"],
        receipt_path=r["receipt_path"],
        receipt_json=r["receipt_json"],
    )


def _row(r: dict[str, Any]) -> RowRecord:
    return RowRecord(
        file_sha256=r["file_sha256"],
        row=r["row"],
        campaign=r["campaign"],
        fingerprint=r["fingerprint"],
        state=RowState(r["state"]),
        unique_id=r["unique_id"],
        reason=r["reason"],
        details=json.loads(r["details"] or "[]"),
        attempt_local=r["attempt_local"],
        attempt_utc=r["attempt_utc"],
        attempts=r["attempts"],
        ended_utc=r["ended_utc"],
    )


class PostgresLedger:
    """:class:`Ledger` on PostgreSQL: a pool of connections, each ``synchronous_commit = on``.

    Build it with :func:`open_postgres_ledger` (which creates or checks the schema).
    """

    def __init__(self, url: str, password: str = "") -> None:
        self.location = safe_location(url)
        self._conninfo = _conninfo(url, password)
        self._closed = threading.Event()
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] | None = None

    # -- plumbing -----------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        """One connection outside the pool (schema work, VACUUM); a StateError if refused."""
        try:
            return psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StateError(
                f"the ledger database {self.location} cannot be reached ({_why(exc)}); "
                "leadpipe stopped rather than send leads it cannot record. Check that "
                "PostgreSQL runs and accepts this user ([state] ledger, and the password in "
                "LEADPIPE_LEDGER_PASSWORD or PGPASSWORD)."
            ) from exc

    def open_pool(self) -> None:
        """Start the pool (after the schema is known good) and wait for its first connection."""
        self._pool = ConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=POOL_SIZE,
            open=True,
            timeout=CONNECT_TIMEOUT,
            name="leadpipe-ledger",
        )
        self._pool.wait(timeout=CONNECT_TIMEOUT)

    @contextmanager
    def _conn(self, doing: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        if self._pool is None or self._closed.is_set():
            raise StateError(f"the ledger {self.location} is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise StateError(
                f"the ledger {self.location} cannot be {doing}: {_why(exc)}. leadpipe stopped "
                "rather than send leads it cannot record; check the database, then start again."
            ) from exc

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        """One transaction, committed (flushed to disk: ``synchronous_commit``) or rolled back."""
        with self._conn("written") as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    def _write(self, sql: str, args: Sequence[Any]) -> None:
        """One statement, its own transaction (committed as every other: flushed to disk).

        An outcome is one statement (its row and its attempt, in a ``WITH``): one round trip.
        """
        with self._conn("written") as conn:
            conn.execute(sql, args)

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts by column name (the records are built by name, as SQLite's)."""
        with self._conn("read") as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, args).fetchall()

    def init_schema(self, *, create: bool, fresh_refused: str = "") -> bool:
        """Create the tables (new ledger) or check the version (existing one); True if created.

        Runs in one transaction under an advisory lock, so two processes starting at once
        neither create the tables twice nor see half of them. ``fresh_refused`` (a reason)
        refuses to create an empty ledger, as ``create=False`` does.
        """
        with self._connect() as conn:
            try:
                with conn.transaction():
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_SPACE, _SCHEMA_LOCK)
                    )
                    return self._schema(conn, create=create, fresh_refused=fresh_refused)
            except psycopg.Error as exc:
                raise StateError(
                    f"the ledger {self.location} could not be checked or created "
                    f"({_why(exc)}); it is unchanged. Check that this user may create tables "
                    "in the database."
                ) from exc

    def _schema(
        self, conn: psycopg.Connection[tuple[Any, ...]], *, create: bool, fresh_refused: str
    ) -> bool:
        found = {
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename = ANY(%s)",
                (["schema_version", *_OURS],),
            )
        }
        if "schema_version" not in found:
            if found:
                raise StateError(
                    f"{self.location} is not a leadpipe ledger (tables {', '.join(sorted(found))}"
                    " but no schema_version); leadpipe stopped rather than start fresh. Point "
                    "[state] ledger at leadpipe's own database."
                )
            if not create or fresh_refused:
                raise StateError(
                    f"the database {self.location} holds no leadpipe ledger, but "
                    + (fresh_refused or "one was expected")
                    + ". leadpipe stopped rather than start fresh and resend leads already "
                    "delivered. Point [state] ledger at the database that holds the ledger."
                )
            for stmt in _TABLES:
                conn.execute(stmt)  # constant DDL
            conn.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION,))
            return True
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        version = row[0] if row else None
        while version in _MIGRATIONS:
            for stmt in _MIGRATIONS[version]:
                conn.execute(stmt)  # constant DDL
            version += 1
            conn.execute("UPDATE schema_version SET version = %s", (version,))
        if version != SCHEMA_VERSION:
            raise StateError(
                f"the ledger {self.location} has schema version {version}; this leadpipe "
                f"understands version {SCHEMA_VERSION}. Use a matching leadpipe version."
            )
        missing = [t for t in _OURS if t not in found]
        if missing:
            raise StateError(
                f"the ledger {self.location} lacks its tables {', '.join(missing)}; "
                "restore the database from a backup before leadpipe continues."
            )
        return False

    def close(self) -> None:
        """Close every connection of the pool (its threads end too)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._pool is not None:
            self._pool.close()

    # -- files --------------------------------------------------------------------------------

    def file(self, key: FileKey) -> FileRecord | None:
        """The record of a file, or None when it was never seen."""
        rows = self._query(
            "SELECT * FROM files WHERE sha256 = %s AND campaign = %s",
            (key.sha256, key.campaign),
        )
        return _file(rows[0]) if rows else None

    def files_with_content(self, sha256: str) -> list[FileRecord]:
        """Every file record of this content, in any campaign (newest first)."""
        q = "SELECT * FROM files WHERE sha256 = %s ORDER BY updated_utc DESC"
        return [_file(r) for r in self._query(q, (sha256,))]

    def begin_file(self, key: FileKey, name: str) -> FileRecord:
        """Record that a file is being processed (first time or again)."""
        now = _utc_now()
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO files (sha256, campaign, name, state, first_seen_utc, updated_utc)"
                " VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (sha256, campaign) DO UPDATE SET state = excluded.state,"
                " reason = '', updated_utc = excluded.updated_utc",
                (*_key(key), _text(readable(name)), FileState.PROCESSING, now, now),
            )
        record = self.file(key)
        if record is None:  # pragma: no cover - the insert above just made it
            raise StateError(f"the ledger {self.location} lost the file it just recorded")
        return record

    def set_file_state(self, key: FileKey, state: FileState, reason: str = "") -> None:
        """Move a file to ``state`` (with a plain reason when it waits or failed)."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE files SET state = %s, reason = %s, updated_utc = %s"
                " WHERE sha256 = %s AND campaign = %s",
                (state, _text(reason), _utc_now(), key.sha256, key.campaign),
            )

    def finish_file(
        self, key: FileKey, state: FileState, receipt_path: str, receipt_json: str
    ) -> None:
        """Record the final state of a file and where its receipt is."""
        now = _utc_now()
        with self._tx() as cur:
            cur.execute(
                "UPDATE files SET state = %s, updated_utc = %s, finished_utc = %s,"
                " receipt_path = %s, receipt_json = %s WHERE sha256 = %s AND campaign = %s",
                (state, now, now if state == FileState.DONE else None, _text(receipt_path),
                 _text(receipt_json), key.sha256, key.campaign),
            )  # fmt: skip

    # -- rows ---------------------------------------------------------------------------------

    def add_rows(self, key: FileKey, rows: Iterable[tuple[int, str]]) -> int:
        """Record ``(row, fingerprint)`` as pending unless known; returns how many were new."""
        numbers: list[int] = []
        prints: list[str] = []
        for row, fp in rows:
            numbers.append(row)
            prints.append(fp)
        if not numbers:
            return 0
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO rows (file_sha256, campaign, row, fingerprint, state)"
                " SELECT %s, %s, n, fp, 'pending' FROM unnest(%s::integer[], %s::text[])"
                " AS t(n, fp) ON CONFLICT DO NOTHING",
                (key.sha256, key.campaign, numbers, prints),
            )
            return max(cur.rowcount, 0)

    def rows(self, key: FileKey, states: Sequence[RowState] | None = None) -> list[RowRecord]:
        """The rows of a file (optionally only in ``states``), in row order."""
        if states:
            q = (
                "SELECT * FROM rows WHERE file_sha256 = %s AND campaign = %s"
                " AND state = ANY(%s) ORDER BY row"
            )
            return [_row(r) for r in self._query(q, (*_key(key), [str(s) for s in states]))]
        q = "SELECT * FROM rows WHERE file_sha256 = %s AND campaign = %s ORDER BY row"
        return [_row(r) for r in self._query(q, _key(key))]

    def row_counts(self, key: FileKey) -> dict[RowState, int]:
        """How many rows of a file are in each state."""
        counts = dict.fromkeys(RowState, 0)
        q = (
            "SELECT state, count(*) AS n FROM rows WHERE file_sha256 = %s AND campaign = %s"
            " GROUP BY state"
        )
        for r in self._query(q, _key(key)):
            counts[RowState(r["state"])] = r["n"]
        return counts

    def recover_sending(self, key: FileKey | None = None) -> int:
        """Rows left ``sending`` by a crash become ``uncertain``; returns how many."""
        reason = "leadpipe stopped while this row was being sent"
        with self._tx() as cur:
            # the request may still be processed: the wait before a lookup counts from now
            now = _utc_now()
            if key is None:
                cur.execute(
                    "UPDATE rows SET state = 'uncertain', reason = %s, ended_utc = %s"
                    " WHERE state = 'sending'",
                    (reason, now),
                )
            else:
                cur.execute(
                    "UPDATE rows SET state = 'uncertain', reason = %s, ended_utc = %s"
                    " WHERE file_sha256 = %s AND campaign = %s AND state = 'sending'",
                    (reason, now, *_key(key)),
                )
            return max(cur.rowcount, 0)

    def claim_for_sending(
        self,
        key: FileKey,
        rows: Sequence[int],
        *,
        skip_duplicates: bool,
        attempt_utc: datetime,
        attempt_local: datetime,
    ) -> Claim:
        """In one transaction: flip pending rows to ``sending`` (the durable intent).

        Claims of one campaign take turns (a transaction advisory lock), so the duplicate check
        sees every row another process has in flight.
        """
        utc, local = attempt_utc.isoformat(), attempt_local.isoformat()
        with self._tx() as cur:
            cur.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_SPACE, key.campaign)
            )
            cur.execute(
                "SELECT row, fingerprint FROM rows WHERE file_sha256 = %s AND campaign = %s"
                " AND row = ANY(%s) AND state = 'pending'",
                (*_key(key), list(rows)),
            )
            pending: dict[int, str] = dict(cur.fetchall())
            if not pending:
                return Claim([], {})
            cur.execute(
                "SELECT 1 FROM files WHERE campaign = %s AND state = 'changed' LIMIT 1",
                (key.campaign,),
            )
            if cur.fetchone() is not None:
                return _claim_row_by_row(cur, key, rows, pending, skip_duplicates, utc, local)
            return _claim_at_once(cur, key, rows, pending, skip_duplicates, utc, local)

    def _outcome(
        self,
        key: FileKey,
        row: int,
        state: RowState,
        outcome: str,
        *,
        unique_id: str | None = None,
        reason: str = "",
        details: Sequence[dict[str, str]] = (),
        ended: bool = False,
    ) -> None:
        now = _utc_now()
        self._write(
            "WITH outcome AS (UPDATE rows SET state = %s, unique_id = coalesce(%s, unique_id),"
            " reason = %s, details = %s, ended_utc = CASE WHEN %s THEN %s ELSE ended_utc END"
            " WHERE file_sha256 = %s AND campaign = %s AND row = %s)"
            " INSERT INTO attempts (file_sha256, campaign, row, at_utc, outcome, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (state, unique_id, _text(reason), _text(json.dumps(list(details))), ended, now,
             *_key(key), row, *_key(key), row, now, outcome, _text(unique_id or reason)),
        )  # fmt: skip

    def record_accepted(
        self, key: FileKey, row: int, unique_id: str | None, how: str = "created"
    ) -> None:
        """The API created the lead (or a lookup found it); ``unique_id`` None: not given."""
        self._outcome(key, row, RowState.ACCEPTED, how, unique_id=unique_id)

    def record_refused(
        self, key: FileKey, row: int, reason: str, details: Sequence[dict[str, str]] = ()
    ) -> None:
        """The API refused the row (400); ``details`` are its field errors."""
        self._outcome(key, row, RowState.REFUSED, "refused", reason=reason, details=details)

    def record_uncertain(self, key: FileKey, row: int, reason: str) -> None:
        """The POST may have reached the server: never resend without a lookup.

        The moment is kept (``ended_utc``): the request may still be processed after the
        client gave up on it, so the wait before a lookup counts from here.
        """
        self._outcome(key, row, RowState.UNCERTAIN, "uncertain", reason=reason, ended=True)

    def accepted_between(self, campaign: str, since_utc: str, until_utc: str) -> list[RowRecord]:
        """Rows of any file accepted for ``campaign`` whose attempt lies in the window."""
        q = (
            "SELECT * FROM rows WHERE campaign = %s AND state = 'accepted'"
            " AND attempt_utc >= %s AND attempt_utc <= %s ORDER BY attempt_utc"
        )
        return [_row(r) for r in self._query(q, (campaign, since_utc, until_utc))]

    def last_accepted_before(self, campaign: str, before_utc: str) -> RowRecord | None:
        """The latest row accepted with an id for ``campaign`` before the moment (any file)."""
        found = self._query(
            "SELECT * FROM rows WHERE campaign = %s AND state = 'accepted'"
            " AND unique_id IS NOT NULL AND attempt_utc < %s ORDER BY attempt_utc DESC LIMIT 1",
            (campaign, before_utc),
        )
        return _row(found[0]) if found else None

    def fill_unique_id(self, key: FileKey, row: int, unique_id: str) -> None:
        """Record the uniqueId of an accepted lead whose answer did not give it (a lookup)."""
        self._write(
            "WITH filled AS (UPDATE rows SET unique_id = %s WHERE file_sha256 = %s"
            " AND campaign = %s AND row = %s AND unique_id IS NULL)"
            " INSERT INTO attempts (file_sha256, campaign, row, at_utc, outcome, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (unique_id, *_key(key), row, *_key(key), row, _utc_now(), "id found by lookup",
             _text(unique_id)),
        )  # fmt: skip

    def record_unsent(self, key: FileKey, rows: Sequence[int], reason: str = "") -> None:
        """Rows flipped to ``sending`` that certainly did not reach the server: back to pending."""
        if not rows:
            return
        reason = _text(reason)
        self._write(
            "WITH unsent AS (UPDATE rows SET state = 'pending', reason = %s"
            " WHERE file_sha256 = %s AND campaign = %s AND row = ANY(%s)"
            " AND state IN ('sending', 'uncertain'))"
            " INSERT INTO attempts (file_sha256, campaign, row, at_utc, outcome, detail)"
            " SELECT %s, %s, n, %s, 'not sent', %s FROM unnest(%s::integer[]) AS t(n)",
            (reason, *_key(key), list(rows), *_key(key), _utc_now(), reason, list(rows)),
        )

    def accepted_unique_ids(self, campaign: str) -> set[str]:
        """Every uniqueId the ledger already holds for a campaign."""
        q = "SELECT unique_id FROM rows WHERE campaign = %s AND unique_id IS NOT NULL"
        return {r["unique_id"] for r in self._query(q, (campaign,))}

    def accepted_fingerprints(self, campaign: str, fingerprints: Iterable[str]) -> set[str]:
        """Which of ``fingerprints`` are already accepted for the campaign (any file)."""
        wanted = list(dict.fromkeys(fingerprints))
        if not wanted:
            return set()
        q = (
            "SELECT DISTINCT fingerprint FROM rows WHERE campaign = %s AND state = 'accepted'"
            " AND fingerprint = ANY(%s)"
        )
        return {r["fingerprint"] for r in self._query(q, (campaign, wanted))}

    def has_accepted(self, campaign: str) -> bool:
        """Whether any row of any file is accepted for the campaign (one index lookup)."""
        q = "SELECT 1 FROM rows WHERE campaign = %s AND state = 'accepted' LIMIT 1"
        return bool(self._query(q, (campaign,)))

    # -- data kept, and for how long (docs/retention.md) --------------------------------------

    def every_file(self) -> list[FileRecord]:
        """Every file record, in any state and campaign (oldest first)."""
        q = "SELECT * FROM files ORDER BY first_seen_utc"
        return [_file(r) for r in self._query(q)]

    def files_named(self, name: str) -> list[FileRecord]:
        """The file records of files dropped under ``name`` (newest first)."""
        q = "SELECT * FROM files WHERE name = %s ORDER BY updated_utc DESC"
        return [_file(r) for r in self._query(q, (name,))]

    def rows_with_unique_id(self, unique_id: str) -> list[RowRecord]:
        """The rows whose lead has this uniqueId (normally one)."""
        q = "SELECT * FROM rows WHERE unique_id = %s ORDER BY attempt_utc"
        return [_row(r) for r in self._query(q, (unique_id,))]

    def scrub_file(self, key: FileKey, receipt_json: str | None) -> None:
        """Remove the values a file's records may quote, keeping what exactly-once needs.

        The old row versions stay in the table files until VACUUM (:meth:`compact`).
        """
        with self._tx() as cur:
            cur.execute(
                "UPDATE rows SET reason = '', details = '[]' WHERE file_sha256 = %s"
                " AND campaign = %s AND (reason != '' OR details != '[]')",
                _key(key),
            )
            cur.execute(
                "UPDATE attempts SET detail = '' WHERE file_sha256 = %s AND campaign = %s"
                " AND detail != ''",
                _key(key),
            )
            cur.execute(
                "UPDATE files SET reason = '', receipt_json = coalesce(%s, receipt_json)"
                " WHERE sha256 = %s AND campaign = %s",
                (None if receipt_json is None else _text(receipt_json), *_key(key)),
            )

    def scrub_mentions(self, texts: Sequence[str], clean_receipt: Callable[[str], str]) -> int:
        """Clear every reason and detail containing one of ``texts``; clean stored receipts."""
        wanted = [t for t in dict.fromkeys(texts) if t]
        if not wanted:
            return 0
        changed = 0
        with self._tx() as cur:
            for text in wanted:
                esc = _text(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                pat = f"%{esc}%"
                cur.execute(
                    "UPDATE rows SET reason = '', details = '[]'"
                    " WHERE reason LIKE %s ESCAPE '\\' OR details LIKE %s ESCAPE '\\'",
                    (pat, pat),
                )
                changed += max(cur.rowcount, 0)
                cur.execute(
                    "UPDATE attempts SET detail = '' WHERE detail LIKE %s ESCAPE '\\'", (pat,)
                )
                changed += max(cur.rowcount, 0)
                cur.execute("UPDATE files SET reason = '' WHERE reason LIKE %s ESCAPE '\\'", (pat,))
                changed += max(cur.rowcount, 0)
                cur.execute(
                    "SELECT sha256, campaign, receipt_json FROM files"
                    " WHERE receipt_json LIKE %s ESCAPE '\\'",
                    (pat,),
                )
                for sha, campaign, old in cur.fetchall():
                    cur.execute(
                        "UPDATE files SET receipt_json = %s WHERE sha256 = %s AND campaign = %s",
                        (_text(clean_receipt(old)), sha, campaign),
                    )
                    changed += 1
        return changed

    def compact(self, *, vacuum: bool = True) -> None:
        """VACUUM the ledger's tables (old row versions removed); ``vacuum``: VACUUM FULL,
        which rewrites them (slower, takes an exclusive lock while it runs).

        Copies outside the tables (the server's WAL archive, base backups, standbys) are the
        database administrator's to expire.
        """
        verb = "VACUUM (FULL)" if vacuum else "VACUUM"
        try:
            with self._connect() as conn:
                conn.execute(f"{verb} files, rows, attempts")
        except psycopg.Error as exc:
            raise StateError(f"the ledger {self.location} cannot be written: {_why(exc)}") from exc


def _key(key: FileKey) -> tuple[str, str]:
    return (key.sha256, key.campaign)


def _why(exc: psycopg.Error) -> str:
    """The first line of the server's or libpq's message (no connection string in it)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _conninfo(url: str, password: str) -> str:
    """The connection string: ``url``, the password from the environment, and the session
    settings every ledger connection needs (kept beside any ``options`` in the URL)."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.Error as exc:
        problem = f"not a connection URL libpq accepts ({_why(exc)})"
        raise ConfigError([ConfigProblem("state.ledger", "config", problem)]) from exc
    # plans made for each query's own values: campaigns differ by orders of magnitude in size,
    # so a generic plan (psycopg prepares repeated queries) can be far off for some of them
    ours = "-c synchronous_commit=on -c plan_cache_mode=force_custom_plan"
    options = f"{given.get('options') or ''} {ours}".strip()
    extra: dict[str, Any] = {
        "options": options,
        "application_name": "leadpipe",
        "connect_timeout": given.get("connect_timeout") or CONNECT_TIMEOUT,
    }
    if password:
        extra["password"] = password
    return make_conninfo(url, **extra)


def _attempt(cur: Cursor, key: FileKey, row: int, outcome: str, detail: str) -> None:
    cur.execute(
        "INSERT INTO attempts (file_sha256, campaign, row, at_utc, outcome, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (*_key(key), row, _utc_now(), outcome, _text(detail)),
    )


def _duplicate_reason(campaign: str, state: str, name: str, row: int) -> str:
    how = "already accepted" if state == "accepted" else "being sent"
    return f"the same data was {how} for campaign {campaign} (file {name}, row {row})"


def _claim_at_once(
    cur: Cursor,
    key: FileKey,
    rows: Sequence[int],
    pending: dict[int, str],
    skip_duplicates: bool,
    utc: str,
    local: str,
) -> Claim:
    """The usual claim (no changed read in the campaign): a few statements for the batch.

    Decides row by row exactly as :func:`_claim_row_by_row`, on rows read once: a row flipped to
    ``sending`` earlier in the batch counts as "being sent" for the rows after it.
    """
    others: dict[str, list[tuple[str, int, str, str]]] = {}
    name = ""
    if skip_duplicates:
        cur.execute(
            "SELECT r.fingerprint, r.file_sha256, r.row, f.name, r.state FROM rows r"
            " JOIN files f ON f.sha256 = r.file_sha256 AND f.campaign = r.campaign"
            " WHERE r.campaign = %s AND r.fingerprint = ANY(%s)"
            " AND r.state IN ('accepted', 'sending', 'uncertain')"
            " ORDER BY r.state, r.file_sha256, r.row",
            (key.campaign, list(set(pending.values()))),
        )
        for fp, sha, row, other_name, state in cur.fetchall():
            others.setdefault(fp, []).append((sha, row, other_name, state))
        cur.execute("SELECT name FROM files WHERE sha256 = %s AND campaign = %s", _key(key))
        found = cur.fetchone()
        name = found[0] if found else ""
    sending: list[int] = []
    dups: dict[int, str] = {}
    for row in rows:
        fp = pending.pop(row, None)  # popped: a row named twice is claimed once
        if fp is None:
            continue
        if skip_duplicates:
            earlier = next(
                (o for o in others.get(fp, ()) if not (o[0] == key.sha256 and o[1] == row)), None
            )
            if earlier is not None:
                dups[row] = _duplicate_reason(key.campaign, earlier[3], earlier[2], earlier[1])
                continue
            others.setdefault(fp, []).append((key.sha256, row, name, "sending"))
        sending.append(row)
    if dups:
        cur.execute(
            "UPDATE rows SET state = 'duplicate', reason = d.why"
            " FROM unnest(%s::integer[], %s::text[]) AS d(n, why)"
            " WHERE rows.file_sha256 = %s AND rows.campaign = %s AND rows.row = d.n",
            (list(dups), list(dups.values()), *_key(key)),
        )
    if sending:
        cur.execute(
            "UPDATE rows SET state = 'sending', attempt_utc = %s, attempt_local = %s,"
            " attempts = attempts + 1 WHERE file_sha256 = %s AND campaign = %s"
            " AND row = ANY(%s)",
            (utc, local, *_key(key), sending),
        )
    return Claim(sending, dups)


def _claim_row_by_row(
    cur: Cursor,
    key: FileKey,
    rows: Sequence[int],
    pending: dict[int, str],
    skip_duplicates: bool,
    utc: str,
    local: str,
) -> Claim:
    """The claim while a changed read of a file exists in the campaign: each row in turn,
    since a hand-over changes which rows count as sent (as the SQLite backend does it)."""
    sending: list[int] = []
    dups: dict[int, str] = {}
    handed: list[int] = []
    for row in rows:
        fp = pending.pop(row, None)
        if fp is None:
            continue
        if _hand_over(cur, key, row, fp):
            handed.append(row)
            continue
        if skip_duplicates:
            cur.execute(
                "SELECT r.row, f.name, r.state FROM rows r JOIN files f"
                " ON f.sha256 = r.file_sha256 AND f.campaign = r.campaign"
                " WHERE r.campaign = %s AND r.fingerprint = %s"
                " AND r.state IN ('accepted', 'sending', 'uncertain')"
                " AND NOT (r.file_sha256 = %s AND r.row = %s)"
                " ORDER BY r.state, r.file_sha256, r.row LIMIT 1",
                (key.campaign, fp, key.sha256, row),
            )
            other = cur.fetchone()
            if other is not None:
                reason = _duplicate_reason(key.campaign, other[2], other[1], other[0])
                cur.execute(
                    "UPDATE rows SET state = 'duplicate', reason = %s"
                    " WHERE file_sha256 = %s AND campaign = %s AND row = %s",
                    (reason, *_key(key), row),
                )
                dups[row] = reason
                continue
        cur.execute(
            "UPDATE rows SET state = 'sending', attempt_utc = %s, attempt_local = %s,"
            " attempts = attempts + 1 WHERE file_sha256 = %s AND campaign = %s AND row = %s",
            (utc, local, *_key(key), row),
        )
        sending.append(row)
    return Claim(sending, dups, handed)


def _hand_over(cur: Cursor, key: FileKey, row: int, fp: str) -> bool:
    """Let ``row`` take over a lead an earlier, changed read of the file sent.

    As :func:`pipeline.ledger.sqlite._hand_over`: the earlier row's state (accepted with its
    uniqueId, or uncertain with its attempt time) moves to this row; the earlier row becomes
    ``moved``. Each earlier row is handed over once.
    """
    cur.execute(
        "SELECT r.file_sha256, r.row, r.state, r.unique_id, r.reason, r.attempt_utc,"
        " r.attempt_local, r.attempts, r.ended_utc, f.name FROM rows r JOIN files f"
        " ON f.sha256 = r.file_sha256 AND f.campaign = r.campaign"
        " WHERE r.campaign = %s AND r.fingerprint = %s AND r.state IN ('accepted', 'uncertain')"
        " AND f.state = 'changed' AND r.file_sha256 != %s"
        " AND f.name = (SELECT name FROM files WHERE sha256 = %s AND campaign = %s)"
        " ORDER BY r.attempt_utc LIMIT 1",
        (key.campaign, fp, key.sha256, key.sha256, key.campaign),
    )
    prev = cur.fetchone()
    if prev is None:
        return False
    old_sha, old_row, state, uid, reason, att_utc, att_local, attempts, ended, name = prev
    if state == RowState.ACCEPTED:
        reason = f"sent while {name} was still being written (that read's row {old_row})"
    cur.execute(
        "UPDATE rows SET state = %s, unique_id = %s, reason = %s, attempt_utc = %s,"
        " attempt_local = %s, attempts = %s, ended_utc = %s"
        " WHERE file_sha256 = %s AND campaign = %s AND row = %s",
        (state, uid, reason, att_utc, att_local, attempts, ended, *_key(key), row),
    )
    cur.execute(
        "UPDATE rows SET state = 'moved', reason = %s WHERE file_sha256 = %s AND campaign = %s"
        " AND row = %s",
        (f"handed over to row {row} of the file's complete version", old_sha, key.campaign,
         old_row),
    )  # fmt: skip
    _attempt(cur, key, row, "handed over", f"{old_sha[:16]} row {old_row}")
    return True


def open_postgres_ledger(
    url: str, password: str = "", *, create: bool = True, fresh_refused: str = ""
) -> PostgresLedger:
    """Open the ledger in the PostgreSQL database ``url`` (its schema created on first use).

    Fails safe with :class:`StateError` when the database cannot be reached, holds something
    else, has another schema version, or holds no ledger although one was expected
    (``create=False``, or a reason in ``fresh_refused``): leadpipe never silently starts fresh.
    """
    ledger = PostgresLedger(url, password)
    ledger.init_schema(create=create, fresh_refused=fresh_refused)
    try:
        ledger.open_pool()
    except psycopg.Error as exc:
        ledger.close()
        raise StateError(
            f"the ledger database {ledger.location} cannot be reached ({_why(exc)}); check "
            "that PostgreSQL runs and accepts this many connections."
        ) from exc
    return ledger
