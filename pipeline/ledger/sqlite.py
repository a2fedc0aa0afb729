"""The SQLite backend of the ledger: WAL mode, ``synchronous=FULL``, one connection, one lock."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import StateError
from pipeline.files import PRIVATE_FILE_MODE, make_private, open_private, private_dir, readable
from pipeline.ledger import (
    LEDGER_FILE,
    MARKER_FILE,
    Claim,
    FileKey,
    FileRecord,
    FileState,
    RowRecord,
    RowState,
)

SCHEMA_VERSION = 2


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


_TABLES = """
CREATE TABLE IF NOT EXISTS files (
    sha256 TEXT NOT NULL,
    campaign TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    first_seen_utc TEXT NOT NULL,
    updated_utc TEXT NOT NULL,
    finished_utc TEXT,
    receipt_path TEXT,
    receipt_json TEXT,
    PRIMARY KEY (sha256, campaign)
);
CREATE TABLE IF NOT EXISTS rows (
    file_sha256 TEXT NOT NULL,
    campaign TEXT NOT NULL,
    row INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    unique_id TEXT,
    reason TEXT NOT NULL DEFAULT '',
    details TEXT NOT NULL DEFAULT '[]',
    attempt_local TEXT,
    attempt_utc TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    ended_utc TEXT,
    PRIMARY KEY (file_sha256, campaign, row),
    FOREIGN KEY (file_sha256, campaign) REFERENCES files (sha256, campaign)
);
CREATE INDEX IF NOT EXISTS rows_fingerprint ON rows (campaign, fingerprint, state);
CREATE INDEX IF NOT EXISTS rows_state ON rows (file_sha256, campaign, state);
CREATE INDEX IF NOT EXISTS rows_attempt ON rows (campaign, state, attempt_utc);
CREATE INDEX IF NOT EXISTS files_state ON files (campaign, state);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    file_sha256 TEXT NOT NULL,
    campaign TEXT NOT NULL DEFAULT '',
    row INTEGER NOT NULL,
    at_utc TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""
_SCHEMA = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);\n" + _TABLES

#: Version 1 keyed files by their content alone, so the same content dropped for a second
#: campaign was taken as "already processed". Version 2 keys them by content and campaign; each
#: v1 file keeps the campaign it was recorded for. Run in one transaction, foreign keys off.
_MIGRATE_1_TO_2 = (
    "ALTER TABLE files RENAME TO files_v1",
    "ALTER TABLE rows RENAME TO rows_v1",
    "ALTER TABLE attempts RENAME TO attempts_v1",
    "DROP INDEX IF EXISTS rows_fingerprint",
    "DROP INDEX IF EXISTS rows_state",
    *(stmt for stmt in _TABLES.split(";") if stmt.strip()),
    "INSERT INTO files (sha256, campaign, name, state, reason, first_seen_utc, updated_utc,"
    " finished_utc, receipt_path, receipt_json) SELECT sha256, campaign, name, state, reason,"
    " first_seen_utc, updated_utc, finished_utc, receipt_path, receipt_json FROM files_v1",
    "INSERT INTO rows (file_sha256, campaign, row, fingerprint, state, unique_id, reason,"
    " details, attempt_local, attempt_utc, attempts) SELECT r.file_sha256, f.campaign, r.row,"
    " r.fingerprint, r.state, r.unique_id, r.reason, r.details, r.attempt_local,"
    " r.attempt_utc, r.attempts FROM rows_v1 r JOIN files_v1 f ON f.sha256 = r.file_sha256",
    "INSERT INTO attempts (id, file_sha256, campaign, row, at_utc, outcome, detail)"
    " SELECT a.id, a.file_sha256, coalesce(f.campaign, ''), a.row, a.at_utc, a.outcome,"
    " a.detail FROM attempts_v1 a LEFT JOIN files_v1 f ON f.sha256 = a.file_sha256",
    "DROP TABLE rows_v1",
    "DROP TABLE files_v1",
    "DROP TABLE attempts_v1",
    "UPDATE schema_version SET version = 2",
)
# Ledgers created before 2026-11-27 also hold an empty, unused ``watermarks`` table (export
# state lives elsewhere). It is left in place and ignored.


class SqliteLedger:
    """:class:`Ledger` on SQLite (WAL, ``synchronous=FULL``): one connection behind a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute("PRAGMA busy_timeout = 30000")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StateError(f"the ledger {path} cannot use WAL mode (got {mode})")
            self._db.execute("PRAGMA synchronous = FULL")
            self._durable = True
            self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"the ledger {path} is unreadable or corrupt ({exc}); leadpipe stopped so it "
                "never resends leads blindly. Restore it from a backup, or move it away only "
                "if you accept that rows already sent may be sent again."
            ) from exc

    # -- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``), committed or rolled back.

        ``durable`` commits are fsynced (``synchronous=FULL``): every intent is. Outcomes may
        skip the fsync (``NORMAL``, still safe against a killed process): an outcome lost to a
        power cut leaves its row ``sending``, which start-up turns into ``uncertain`` and
        reconciliation resolves. The next durable commit persists all earlier ones (WAL order).
        """
        with self._lock:
            try:
                if durable != self._durable:
                    self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                    self._durable = durable
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise StateError(f"the ledger {self.path} cannot be written: {exc}") from exc
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise StateError(f"the ledger {self.path} cannot be written: {exc}") from exc

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                cur = self._db.execute(sql, args)
                cur.row_factory = sqlite3.Row
                return list(cur.fetchall())
            except sqlite3.DatabaseError as exc:
                raise StateError(f"the ledger {self.path} cannot be read: {exc}") from exc

    def init_schema(self, *, create: bool) -> None:
        """Create the tables (new ledger) or check the version (existing one)."""
        rows = self._query("SELECT name FROM sqlite_master WHERE name = 'schema_version'")
        if not rows:
            if not create:
                raise StateError(
                    f"{self.path} is not a leadpipe ledger (no schema_version table); "
                    "leadpipe stopped rather than start fresh. Check the state folder."
                )
            with self._lock:
                self._db.executescript(_SCHEMA)
                self._db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            return
        version = self._query("SELECT max(version) AS v FROM schema_version")[0]["v"]
        if version == 1:
            self._migrate_from_1()
            version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            raise StateError(
                f"the ledger {self.path} has schema version {version}; this leadpipe "
                f"understands version {SCHEMA_VERSION}. Use a matching leadpipe version."
            )
        check = self._query("PRAGMA quick_check")
        if not check or check[0][0] != "ok":
            what = check[0][0] if check else "?"
            raise StateError(
                f"the ledger {self.path} failed its integrity check ({what}); "
                "restore it from a backup before leadpipe continues."
            )

    def _migrate_from_1(self) -> None:
        """Key files by content *and* campaign (a copy of the v1 ledger is kept beside it)."""
        backup = self.path.with_name(self.path.stem + ".v1-backup" + self.path.suffix)
        with self._lock:
            try:
                if not backup.exists():
                    _create_private(backup)  # the copy holds cell values too
                    with closing(sqlite3.connect(backup)) as copy:
                        self._db.backup(copy)
                self._db.execute("PRAGMA foreign_keys = OFF")
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in _MIGRATE_1_TO_2:
                        self._db.execute(stmt)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                finally:
                    self._db.execute("PRAGMA foreign_keys = ON")
            except sqlite3.DatabaseError as exc:
                raise StateError(
                    f"the ledger {self.path} could not be upgraded to version {SCHEMA_VERSION} "
                    f"({exc}); it is unchanged. Tell whoever runs leadpipe."
                ) from exc

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite)."""
        with self._lock:
            self._db.close()

    # -- files --------------------------------------------------------------------------------

    @staticmethod
    def _file(r: sqlite3.Row) -> FileRecord:
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

    def file(self, key: FileKey) -> FileRecord | None:
        """The record of a file, or None when it was never seen."""
        rows = self._query(
            "SELECT * FROM files WHERE sha256 = ? AND campaign = ?", (key.sha256, key.campaign)
        )
        return self._file(rows[0]) if rows else None

    def files_with_content(self, sha256: str) -> list[FileRecord]:
        """Every file record of this content, in any campaign (newest first)."""
        rows = self._query(
            "SELECT * FROM files WHERE sha256 = ? ORDER BY updated_utc DESC", (sha256,)
        )
        return [self._file(r) for r in rows]

    def begin_file(self, key: FileKey, name: str) -> FileRecord:
        """Record that a file is being processed (first time or again)."""
        now = _utc_now()
        with self._tx() as db:
            db.execute(
                "INSERT INTO files (sha256, campaign, name, state, first_seen_utc, updated_utc)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (sha256, campaign) DO UPDATE SET state = excluded.state,"
                " reason = '', updated_utc = excluded.updated_utc",
                (key.sha256, key.campaign, readable(name), FileState.PROCESSING, now, now),
            )
        record = self.file(key)
        if record is None:  # pragma: no cover - the insert above just made it
            raise StateError(f"the ledger {self.path} lost the file it just recorded")
        return record

    def set_file_state(self, key: FileKey, state: FileState, reason: str = "") -> None:
        """Move a file to ``state`` (with a plain reason when it waits or failed)."""
        with self._tx() as db:
            db.execute(
                "UPDATE files SET state = ?, reason = ?, updated_utc = ?"
                " WHERE sha256 = ? AND campaign = ?",
                (state, reason, _utc_now(), key.sha256, key.campaign),
            )

    def finish_file(
        self, key: FileKey, state: FileState, receipt_path: str, receipt_json: str
    ) -> None:
        """Record the final state of a file and where its receipt is."""
        now = _utc_now()
        with self._tx() as db:
            db.execute(
                "UPDATE files SET state = ?, updated_utc = ?, finished_utc = ?,"
                " receipt_path = ?, receipt_json = ? WHERE sha256 = ? AND campaign = ?",
                (state, now, now if state == FileState.DONE else None, receipt_path,
                 receipt_json, key.sha256, key.campaign),
            )  # fmt: skip

    # -- rows ---------------------------------------------------------------------------------

    def add_rows(self, key: FileKey, rows: Iterable[tuple[int, str]]) -> int:
        """Record ``(row, fingerprint)`` as pending unless known; returns how many were new."""
        with self._tx() as db:
            before = db.total_changes
            db.executemany(
                "INSERT INTO rows (file_sha256, campaign, row, fingerprint, state)"
                " VALUES (?, ?, ?, ?, 'pending') ON CONFLICT DO NOTHING",
                ((key.sha256, key.campaign, row, fp) for row, fp in rows),
            )
            return db.total_changes - before

    @staticmethod
    def _row(r: sqlite3.Row) -> RowRecord:
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

    def rows(self, key: FileKey, states: Sequence[RowState] | None = None) -> list[RowRecord]:
        """The rows of a file (optionally only in ``states``), in row order."""
        sql = "SELECT * FROM rows WHERE file_sha256 = ? AND campaign = ?"
        args: list[Any] = [key.sha256, key.campaign]
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += [str(s) for s in states]
        return [self._row(r) for r in self._query(sql + " ORDER BY row", args)]

    def row_counts(self, key: FileKey) -> dict[RowState, int]:
        """How many rows of a file are in each state."""
        counts = dict.fromkeys(RowState, 0)
        q = (
            "SELECT state, count(*) AS n FROM rows WHERE file_sha256 = ? AND campaign = ?"
            " GROUP BY state"
        )
        for r in self._query(q, (key.sha256, key.campaign)):
            counts[RowState(r["state"])] = r["n"]
        return counts

    def recover_sending(self, key: FileKey | None = None) -> int:
        """Rows left ``sending`` by a crash become ``uncertain``; returns how many."""
        reason = "leadpipe stopped while this row was being sent"
        with self._tx() as db:
            # the request may still be processed: the wait before a lookup counts from now
            now = _utc_now()
            if key is None:
                cur = db.execute(
                    "UPDATE rows SET state = 'uncertain', reason = ?, ended_utc = ?"
                    " WHERE state = 'sending'",
                    (reason, now),
                )
            else:
                cur = db.execute(
                    "UPDATE rows SET state = 'uncertain', reason = ?, ended_utc = ?"
                    " WHERE file_sha256 = ? AND campaign = ? AND state = 'sending'",
                    (reason, now, key.sha256, key.campaign),
                )
            return cur.rowcount

    def claim_for_sending(
        self,
        key: FileKey,
        rows: Sequence[int],
        *,
        skip_duplicates: bool,
        attempt_utc: datetime,
        attempt_local: datetime,
    ) -> Claim:
        """In one transaction: flip pending rows to ``sending`` (the durable intent)."""
        sending: list[int] = []
        dups: dict[int, str] = {}
        handed: list[int] = []
        utc, local = attempt_utc.isoformat(), attempt_local.isoformat()
        sha, campaign = key.sha256, key.campaign
        this = (sha, campaign)
        with self._tx() as db:
            changed = db.execute(
                "SELECT 1 FROM files WHERE campaign = ? AND state = 'changed' LIMIT 1",
                (campaign,),
            ).fetchone()
            for row in rows:
                found = db.execute(
                    "SELECT fingerprint, state FROM rows"
                    " WHERE file_sha256 = ? AND campaign = ? AND row = ?",
                    (*this, row),
                ).fetchone()
                if found is None or found[1] != RowState.PENDING:
                    continue
                fp = found[0]
                if changed is not None and _hand_over(db, key, row, fp):
                    handed.append(row)
                    continue
                if skip_duplicates:
                    other = db.execute(
                        "SELECT r.row, f.name, r.state FROM rows r JOIN files f"
                        " ON f.sha256 = r.file_sha256 AND f.campaign = r.campaign"
                        " WHERE r.campaign = ? AND r.fingerprint = ?"
                        " AND r.state IN ('accepted', 'sending', 'uncertain')"
                        " AND NOT (r.file_sha256 = ? AND r.row = ?) LIMIT 1",
                        (campaign, fp, sha, row),
                    ).fetchone()
                    if other is not None:
                        how = "already accepted" if other[2] == "accepted" else "being sent"
                        reason = (
                            f"the same data was {how} for campaign {campaign} "
                            f"(file {other[1]}, row {other[0]})"
                        )
                        db.execute(
                            "UPDATE rows SET state = 'duplicate', reason = ?"
                            " WHERE file_sha256 = ? AND campaign = ? AND row = ?",
                            (reason, *this, row),
                        )
                        dups[row] = reason
                        continue
                db.execute(
                    "UPDATE rows SET state = 'sending', attempt_utc = ?, attempt_local = ?,"
                    " attempts = attempts + 1 WHERE file_sha256 = ? AND campaign = ? AND row = ?",
                    (utc, local, *this, row),
                )
                sending.append(row)
        return Claim(sending, dups, handed)

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
        with self._tx(durable=False) as db:
            db.execute(
                "UPDATE rows SET state = ?, unique_id = coalesce(?, unique_id), reason = ?,"
                " details = ?, ended_utc = CASE WHEN ? THEN ? ELSE ended_utc END"
                " WHERE file_sha256 = ? AND campaign = ? AND row = ?",
                (state, unique_id, reason, json.dumps(list(details)), ended, _utc_now(),
                 key.sha256, key.campaign, row),
            )  # fmt: skip
            _attempt(db, key, row, outcome, unique_id or reason)

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
        return [
            self._row(r)
            for r in self._query(
                "SELECT * FROM rows WHERE campaign = ? AND state = 'accepted'"
                " AND attempt_utc >= ? AND attempt_utc <= ? ORDER BY attempt_utc",
                (campaign, since_utc, until_utc),
            )
        ]

    def last_accepted_before(self, campaign: str, before_utc: str) -> RowRecord | None:
        """The latest row accepted with an id for ``campaign`` before the moment (any file)."""
        found = self._query(
            "SELECT * FROM rows WHERE campaign = ? AND state = 'accepted'"
            " AND unique_id IS NOT NULL AND attempt_utc < ? ORDER BY attempt_utc DESC LIMIT 1",
            (campaign, before_utc),
        )
        return self._row(found[0]) if found else None

    def fill_unique_id(self, key: FileKey, row: int, unique_id: str) -> None:
        """Record the uniqueId of an accepted lead whose answer did not give it (a lookup)."""
        with self._tx(durable=False) as db:
            db.execute(
                "UPDATE rows SET unique_id = ? WHERE file_sha256 = ? AND campaign = ?"
                " AND row = ? AND unique_id IS NULL",
                (unique_id, key.sha256, key.campaign, row),
            )
            _attempt(db, key, row, "id found by lookup", unique_id)

    def record_unsent(self, key: FileKey, rows: Sequence[int], reason: str = "") -> None:
        """Rows flipped to ``sending`` that certainly did not reach the server: back to pending."""
        if not rows:
            return
        with self._tx(durable=False) as db:
            for row in rows:
                db.execute(
                    "UPDATE rows SET state = 'pending', reason = ? WHERE file_sha256 = ?"
                    " AND campaign = ? AND row = ? AND state IN ('sending', 'uncertain')",
                    (reason, key.sha256, key.campaign, row),
                )
                _attempt(db, key, row, "not sent", reason)

    def accepted_unique_ids(self, campaign: str) -> set[str]:
        """Every uniqueId the ledger already holds for a campaign."""
        q = "SELECT unique_id FROM rows WHERE campaign = ? AND unique_id IS NOT NULL"
        return {r[0] for r in self._query(q, (campaign,))}

    def accepted_fingerprints(self, campaign: str, fingerprints: Iterable[str]) -> set[str]:
        """Which of ``fingerprints`` are already accepted for the campaign (any file)."""
        wanted = list(dict.fromkeys(fingerprints))
        found: set[str] = set()
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            marks = ",".join("?" * len(part))  # placeholders only
            q = f"SELECT DISTINCT fingerprint FROM rows WHERE campaign = ? AND state = 'accepted' AND fingerprint IN ({marks})"  # noqa: S608, E501
            found.update(r[0] for r in self._query(q, [campaign, *part]))
        return found

    def has_accepted(self, campaign: str) -> bool:
        """Whether any row of any file is accepted for the campaign (one index lookup)."""
        q = "SELECT 1 FROM rows WHERE campaign = ? AND state = 'accepted' LIMIT 1"
        return bool(self._query(q, (campaign,)))

    # -- data kept, and for how long (docs/retention.md) --------------------------------------

    def every_file(self) -> list[FileRecord]:
        """Every file record, in any state and campaign (oldest first)."""
        return [self._file(r) for r in self._query("SELECT * FROM files ORDER BY first_seen_utc")]

    def files_named(self, name: str) -> list[FileRecord]:
        """The file records of files dropped under ``name`` (newest first)."""
        q = "SELECT * FROM files WHERE name = ? ORDER BY updated_utc DESC"
        return [self._file(r) for r in self._query(q, (name,))]

    def rows_with_unique_id(self, unique_id: str) -> list[RowRecord]:
        """The rows whose lead has this uniqueId (normally one)."""
        q = "SELECT * FROM rows WHERE unique_id = ? ORDER BY attempt_utc"
        return [self._row(r) for r in self._query(q, (unique_id,))]

    def scrub_file(self, key: FileKey, receipt_json: str | None) -> None:
        """Remove the values a file's records may quote, keeping what exactly-once needs."""
        this = (key.sha256, key.campaign)
        with self._tx() as db:
            db.execute("PRAGMA secure_delete = ON")  # freed cell space is zeroed, not left
            db.execute(
                "UPDATE rows SET reason = '', details = '[]' WHERE file_sha256 = ?"
                " AND campaign = ? AND (reason != '' OR details != '[]')",
                this,
            )
            db.execute(
                "UPDATE attempts SET detail = '' WHERE file_sha256 = ? AND campaign = ?"
                " AND detail != ''",
                this,
            )
            db.execute(
                "UPDATE files SET reason = '', receipt_json = coalesce(?, receipt_json)"
                " WHERE sha256 = ? AND campaign = ?",
                (receipt_json, *this),
            )

    def scrub_mentions(self, texts: Sequence[str], clean_receipt: Callable[[str], str]) -> int:
        """Clear every reason and detail containing one of ``texts``; clean stored receipts."""
        wanted = [t for t in dict.fromkeys(texts) if t]
        if not wanted:
            return 0
        changed = 0
        with self._tx() as db:
            db.execute("PRAGMA secure_delete = ON")
            for text in wanted:
                esc = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                pat = f"%{esc}%"
                changed += db.execute(
                    "UPDATE rows SET reason = '', details = '[]'"
                    " WHERE reason LIKE ?1 ESCAPE '\\' OR details LIKE ?1 ESCAPE '\\'",
                    (pat,),
                ).rowcount
                changed += db.execute(
                    "UPDATE attempts SET detail = '' WHERE detail LIKE ? ESCAPE '\\'", (pat,)
                ).rowcount
                changed += db.execute(
                    "UPDATE files SET reason = '' WHERE reason LIKE ? ESCAPE '\\'", (pat,)
                ).rowcount
                found = db.execute(
                    "SELECT sha256, campaign, receipt_json FROM files"
                    " WHERE receipt_json LIKE ? ESCAPE '\\'",
                    (pat,),
                ).fetchall()
                for sha, campaign, old in found:
                    db.execute(
                        "UPDATE files SET receipt_json = ? WHERE sha256 = ? AND campaign = ?",
                        (clean_receipt(old), sha, campaign),
                    )
                    changed += 1
        return changed

    def compact(self, *, vacuum: bool = True) -> None:
        """Empty the write-ahead log into the database (old page images gone) and, with
        ``vacuum``, rewrite the database without free pages."""
        with self._lock:
            try:
                self._db.execute("PRAGMA secure_delete = ON")
                self._checkpoint()
                if vacuum:
                    self._db.execute("VACUUM")
                    self._checkpoint()
            except sqlite3.DatabaseError as exc:
                raise StateError(f"the ledger {self.path} cannot be written: {exc}") from exc

    def _checkpoint(self, wait_ms: int = 3000) -> None:
        """Empty the write-ahead log; another process reading the ledger holds old page images
        in it: wait a little (SQLite waits for readers up to the busy timeout), then say so
        rather than report the values gone (lock held)."""
        before = self._db.execute("PRAGMA busy_timeout").fetchone()[0]
        self._db.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")
        try:
            busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {int(before)}")
        if not busy or not busy[0]:
            return
        raise StateError(
            f"the ledger's log {self.path}-wal still holds removed values: another process "
            "(leadpipe run, a leadpipe command) is reading the ledger. Stop it and run the "
            "command again."
        )


def _attempt(db: sqlite3.Connection, key: FileKey, row: int, outcome: str, detail: str) -> None:
    db.execute(
        "INSERT INTO attempts (file_sha256, campaign, row, at_utc, outcome, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (key.sha256, key.campaign, row, _utc_now(), outcome, detail),
    )


def _hand_over(db: sqlite3.Connection, key: FileKey, row: int, fp: str) -> bool:
    """Let ``row`` take over a lead an earlier, changed read of the file sent (in a transaction).

    A file that changed while it was read (still being written) may already have sent some of
    its rows. When its complete version arrives, each of its rows with the same data in the
    same campaign takes over that earlier row's state (accepted with its uniqueId, or
    uncertain with its attempt time, so reconciliation looks it up); the earlier row becomes
    ``moved``. Each earlier row is handed over once.
    """
    prev = db.execute(
        "SELECT r.file_sha256, r.row, r.state, r.unique_id, r.reason, r.attempt_utc,"
        " r.attempt_local, r.attempts, r.ended_utc, f.name FROM rows r JOIN files f"
        " ON f.sha256 = r.file_sha256 AND f.campaign = r.campaign"
        " WHERE r.campaign = ? AND r.fingerprint = ? AND r.state IN ('accepted', 'uncertain')"
        " AND f.state = 'changed' AND r.file_sha256 != ?"
        " AND f.name = (SELECT name FROM files WHERE sha256 = ? AND campaign = ?)"
        " ORDER BY r.attempt_utc LIMIT 1",
        (key.campaign, fp, key.sha256, key.sha256, key.campaign),
    ).fetchone()
    if prev is None:
        return False
    old_sha, old_row, state, uid, reason, att_utc, att_local, attempts, ended, name = prev
    if state == RowState.ACCEPTED:
        reason = f"sent while {name} was still being written (that read's row {old_row})"
    db.execute(
        "UPDATE rows SET state = ?, unique_id = ?, reason = ?, attempt_utc = ?,"
        " attempt_local = ?, attempts = ?, ended_utc = ?"
        " WHERE file_sha256 = ? AND campaign = ? AND row = ?",
        (state, uid, reason, att_utc, att_local, attempts, ended, key.sha256, key.campaign, row),
    )
    db.execute(
        "UPDATE rows SET state = 'moved', reason = ? WHERE file_sha256 = ? AND campaign = ?"
        " AND row = ?",
        (f"handed over to row {row} of the file's complete version", old_sha, key.campaign,
         old_row),
    )  # fmt: skip
    _attempt(db, key, row, "handed over", f"{old_sha[:16]} row {old_row}")
    return True


def open_ledger(state_dir: Path, *, create: bool = True) -> SqliteLedger:
    """Open the ledger ``<state_dir>/ledger.sqlite`` (created on first use when ``create``).

    Fails safe with :class:`StateError` when a ledger is expected but missing (the marker file
    says one was created), unreadable or corrupt: leadpipe never silently starts fresh, since
    that would resend every lead it already delivered.

    The ledger holds cell values: the state folder is made 0700 and the ledger, its ``-wal`` and
    ``-shm`` files and the marker 0600, whatever the umask (SQLite gives its side files the
    database file's mode); what an earlier run left open is repaired here too.
    """
    state_dir = Path(state_dir)
    db_path = state_dir / LEDGER_FILE
    marker = state_dir / MARKER_FILE
    exists = db_path.exists()
    if not exists and (marker.exists() or not create):
        raise StateError(
            f"the ledger {db_path} is missing, but "
            + (f"{marker.name} says one was created on {_marker_date(marker)}" if marker.exists()
               else "one was expected")
            + ". leadpipe stopped rather than start fresh and resend leads already delivered. "
            "Restore the state folder from a backup (or delete the marker file only if you "
            "accept that)."
        )  # fmt: skip
    if exists and db_path.stat().st_size == 0 and marker.exists():
        raise StateError(f"the ledger {db_path} is empty; restore it from a backup")
    try:
        private_dir(state_dir)
    except OSError as exc:
        raise StateError(f"the state folder {state_dir} cannot be created: {exc}") from exc
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise StateError(
            f"the state folder {state_dir} is not writable; leadpipe keeps its ledger there. "
            "Fix the folder's permissions (or point [paths] state elsewhere)."
        )
    make_private(state_dir)  # ledger files an earlier run (or another umask) left open
    if not exists:
        try:
            _create_private(db_path)  # before SQLite creates it with the umask's mode
        except OSError as exc:
            raise StateError(f"the state folder {state_dir} is not writable: {exc}") from exc
    ledger = SqliteLedger(db_path)
    try:
        ledger.init_schema(create=not exists or db_path.stat().st_size == 0)
    except sqlite3.DatabaseError as exc:
        ledger.close()
        raise StateError(
            f"the ledger {db_path} is unreadable or corrupt ({exc}); restore it from a backup"
        ) from exc
    except BaseException:
        ledger.close()
        raise
    if not marker.exists():
        try:
            fd = open_private(marker, os.O_WRONLY | os.O_TRUNC)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(
                    f"{_utc_now()}\nleadpipe's ledger lives in {LEDGER_FILE} beside this file."
                    " Do not delete it: it records which leads were already sent.\n"
                )
        except OSError as exc:
            ledger.close()
            raise StateError(f"the state folder {state_dir} is not writable: {exc}") from exc
    return ledger


def _create_private(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist (SQLite then keeps that mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def _marker_date(marker: Path) -> str:
    try:
        return marker.read_text(encoding="utf-8").splitlines()[0][:19].replace("T", " ")
    except (OSError, IndexError):
        return "an earlier run"
