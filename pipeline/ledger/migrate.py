"""``leadpipe ledger migrate``: move a state folder's SQLite ledger into PostgreSQL.

docs/architecture.md, "The ledger on PostgreSQL" (moving an existing install). Every table of
the ledger (``files``, ``rows``, ``attempts``, every column) is copied into an *empty*
PostgreSQL ledger in ONE transaction, then checked: per table, the row count and a SHA-256 over
the rows in primary-key order (each row's values as one JSON line) must be the same on both
sides. Only then is the transaction committed; a difference or any error rolls it back, so the
target is left exactly as it was. A dry run does the same copy and check, then rolls back.

After the commit the state folder is switched over: ``ledger.sqlite`` is renamed to
``ledger.sqlite.migrated-<UTC time>`` (kept, never deleted) and ``ledger.postgresql`` is
written, so the PostgreSQL configuration is accepted there and a SQLite configuration is
refused (``ledger.created`` stays and says a SQLite ledger was expected).

Export state is not part of the ledger: it is ``<state>/exports/<job>.json`` in the state
folder, which both backends use as it is (each node keeps its own state folder), so it stays.

Refused, with what to do: while a ``leadpipe run`` holds the state folder (the instance lock,
taken here for the whole move so none starts meanwhile), when the state folder holds no SQLite
ledger, and when the target already holds any file, row or attempt (never merged).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from pipeline.errors import ConfigError, StateError
from pipeline.ledger import LEDGER_FILE

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

    from pipeline.ledger.postgres import PostgresLedger

#: The copied tables, each with every column (in a fixed order) and its primary key.
TABLES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "files",
        ("sha256", "campaign", "name", "state", "reason", "first_seen_utc", "updated_utc",
         "finished_utc", "receipt_path", "receipt_json"),
        ("sha256", "campaign"),
    ),
    (
        "rows",
        ("file_sha256", "campaign", "row", "fingerprint", "state", "unique_id", "reason",
         "details", "attempt_local", "attempt_utc", "attempts", "ended_utc"),
        ("file_sha256", "campaign", "row"),
    ),
    (
        "attempts",
        ("id", "file_sha256", "campaign", "row", "at_utc", "outcome", "detail"),
        ("id",),
    ),
)  # fmt: skip
#: Rows read and written per batch (the copy streams: a large ledger never sits in memory).
BATCH = 5_000
#: Prefix of the name ``ledger.sqlite`` gets once its records live in PostgreSQL.
MIGRATED_SUFFIX = ".migrated-"


def migrated_ledgers(state_dir: Path) -> list[Path]:
    """The SQLite ledgers of ``state_dir`` moved to PostgreSQL (renamed), oldest first."""
    return sorted(state_dir.glob(f"{LEDGER_FILE}{MIGRATED_SUFFIX}*[0-9]Z"))


@dataclass(frozen=True)
class TableCheck:
    """One table, counted and checksummed on both sides."""

    table: str
    source_rows: int
    source_sha256: str
    target_rows: int
    target_sha256: str

    @property
    def matches(self) -> bool:
        """The target holds exactly the source's rows."""
        return (self.source_rows, self.source_sha256) == (self.target_rows, self.target_sha256)


@dataclass(frozen=True)
class MigrationResult:
    """What ``migrate_ledger`` did: the checks, and whether the copy was kept."""

    source: Path  #: the SQLite ledger copied
    target: str  #: the PostgreSQL ledger, without a password
    tables: tuple[TableCheck, ...]
    dry_run: bool
    #: the copy was committed (False: rolled back, the target is as it was)
    committed: bool
    #: where ``ledger.sqlite`` went once the copy was committed
    renamed_to: Path | None = None
    #: text values holding a NUL character, which PostgreSQL text cannot: stored (and counted
    #: in the source's checksum) with U+FFFD instead, as the PostgreSQL ledger stores every value
    nul_replaced: int = 0

    @property
    def matches(self) -> bool:
        """Every table's count and checksum are the same on both sides."""
        return all(t.matches for t in self.tables)


def migrate_ledger(settings: Settings, to: str, *, dry_run: bool = False) -> MigrationResult:
    """Copy ``settings``' SQLite ledger into the empty PostgreSQL ledger ``to`` and verify it.

    ``to`` is checked as ``[state] ledger`` is (no password in it: that comes from
    ``LEADPIPE_LEDGER_PASSWORD`` or libpq's own). Raises :class:`ConfigError` for a bad ``to``
    and :class:`StateError` for every refusal (a service running, no SQLite ledger, a target
    not empty, a database that cannot be reached); returns the checks otherwise, also when they
    differ (then nothing was kept: ``committed`` is False).
    """
    from pipeline.service.instance import InstanceLock

    target = _target(settings, to)
    state_dir = settings.paths.state
    source = state_dir / LEDGER_FILE
    _check_source(state_dir)
    try:
        lock = InstanceLock(state_dir).acquire()
    except StateError as exc:
        raise StateError(
            f"{exc} The ledger cannot be moved while the service uses it: stop it, then run "
            "`leadpipe ledger migrate` again. Nothing was copied."
        ) from None
    try:
        from pipeline.ledger.sqlite import open_ledger

        # the usual checks of the source (integrity, schema version, an older version upgraded)
        open_ledger(state_dir, create=False).close()
        result = _copy(source, target, dry_run=dry_run)
        if result.committed:
            result = replace(result, renamed_to=_switch_over(state_dir, source, result.target))
        return result
    finally:
        lock.release()


def _target(settings: Settings, to: str) -> tuple[str, str]:
    """``to`` checked as ``[state] ledger`` (URL and password), and the password to use."""
    from pipeline.config import _Collector, _state

    col = _Collector("--to")
    state = _state({"ledger": to}, os.environ, col)
    if not col.problems and not state.postgresql:
        col.add("state.ledger", "name the PostgreSQL database to move the ledger into")
    configured = settings.state.ledger
    if not col.problems and configured and configured != state.ledger:
        col.add(
            "state.ledger",
            "the configuration names another PostgreSQL ledger ([state] ledger); move the "
            "ledger into that one, or change the configuration first",
        )
    if col.problems:
        raise ConfigError(col.problems)
    return state.ledger, state.password


def _check_source(state_dir: Path) -> None:
    """Refuse a state folder without a SQLite ledger (and say why there is none)."""
    from pipeline.ledger.connect import POSTGRES_MARKER

    if (state_dir / LEDGER_FILE).is_file():
        return
    moved = migrated_ledgers(state_dir)
    if moved or (state_dir / POSTGRES_MARKER).exists():
        why = (
            f"its ledger was already moved to PostgreSQL ({moved[-1].name} is the old SQLite "
            f"file; {POSTGRES_MARKER} names the database)"
            if moved
            else f"{POSTGRES_MARKER} says it uses a PostgreSQL ledger"
        )
        raise StateError(
            f"the state folder {state_dir} holds no SQLite ledger to move: {why}. Set "
            "[state] ledger to that database; there is nothing to migrate."
        )
    raise StateError(
        f"there is no SQLite ledger to move: {state_dir / LEDGER_FILE} does not exist. Check "
        "[paths] state (the state folder of the install being moved)."
    )


def _copy(source: Path, target: tuple[str, str], *, dry_run: bool) -> MigrationResult:
    """The copy and its check in one PostgreSQL transaction (rolled back unless all match).

    The source is read in one SQLite transaction that holds its write lock, so a ``leadpipe
    ingest`` started meanwhile waits instead of recording rows the copy would miss.
    """
    import psycopg

    from pipeline.ledger.postgres import PostgresLedger

    url, password = target
    ledger = PostgresLedger(url, password)
    try:
        src = sqlite3.connect(source, isolation_level=None, timeout=30.0)
    except sqlite3.DatabaseError as exc:
        raise StateError(f"the ledger {source} cannot be read: {exc}") from exc
    with closing(src):
        try:
            src.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"the ledger {source} is in use by another leadpipe process ({exc}); stop "
                "every leadpipe command on this state folder, then try again."
            ) from exc
        try:
            _check_columns(src, source)
            with ledger._connect() as conn:
                try:
                    return _copy_in_transaction(src, conn, ledger, source, dry_run=dry_run)
                except psycopg.Error as exc:
                    from pipeline.ledger.postgres import _why

                    raise StateError(
                        f"the ledger could not be copied into {ledger.location} ({_why(exc)}); "
                        "the copy was rolled back, the database is as it was and the SQLite "
                        "ledger unchanged."
                    ) from exc
                except sqlite3.DatabaseError as exc:
                    raise StateError(
                        f"the ledger {source} could not be read ({exc}); nothing was copied "
                        f"into {ledger.location}."
                    ) from exc
        finally:
            src.execute("ROLLBACK")  # only read: nothing to keep


def _copy_in_transaction(
    src: sqlite3.Connection,
    conn: psycopg.Connection[tuple[Any, ...]],
    ledger: PostgresLedger,
    source: Path,
    *,
    dry_run: bool,
) -> MigrationResult:
    import psycopg

    from pipeline.ledger.postgres import _LOCK_SPACE, _SCHEMA_LOCK

    checks: list[TableCheck] = []
    nul = 0
    committed = False
    with conn.transaction():
        # the schema lock: nodes starting now wait for the copy instead of seeing half of it
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_SPACE, _SCHEMA_LOCK))
        ledger._schema(conn, create=True, fresh_refused="")
        # no other node may write while the target is checked empty and filled
        conn.execute("LOCK TABLE files, rows, attempts IN EXCLUSIVE MODE")
        _refuse_not_empty(conn, ledger.location)
        for table, columns, key in TABLES:
            nul += _copy_table(src, conn, table, columns, key)
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('attempts', 'id'), max(id))"
            " FROM attempts HAVING max(id) IS NOT NULL"
        )  # new attempts are numbered after the copied ones
        for table, columns, key in TABLES:
            rows, digest = _sqlite_summary(src, table, columns, key)
            t_rows, t_digest = _postgres_summary(conn, table, columns, key)
            checks.append(TableCheck(table, rows, digest, t_rows, t_digest))
        if dry_run or not all(c.matches for c in checks):
            raise psycopg.Rollback  # leaves the block rolled back, and goes on
        committed = True
    return MigrationResult(source, ledger.location, tuple(checks), dry_run, committed, None, nul)


def _refuse_not_empty(conn: psycopg.Connection[tuple[Any, ...]], location: str) -> None:
    from psycopg import sql

    held = []
    for table, _columns, _key in TABLES:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        row = conn.execute(query).fetchone()
        if row and row[0]:
            held.append(f"{row[0]} {table}")
    if held:
        raise StateError(
            f"the PostgreSQL ledger {location} is not empty (it holds {', '.join(held)}); "
            "leadpipe never merges two ledgers. Name an empty database (or one without "
            "leadpipe's tables) in --to. Nothing was copied."
        )


def _check_columns(src: sqlite3.Connection, source: Path) -> None:
    """The source has exactly the columns copied (every one of them is copied)."""
    for table, columns, _key in TABLES:
        found = {r[1] for r in src.execute(f"PRAGMA table_info({table})")}
        if found != set(columns):
            raise StateError(
                f"the ledger {source} table {table} has the columns {', '.join(sorted(found))}; "
                f"this leadpipe copies {', '.join(columns)}. Use a matching leadpipe version."
            )


def _stored(value: Any) -> tuple[Any, bool]:
    """A value as the PostgreSQL ledger stores it (text without NUL), and whether it changed."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd"), True
    return value, False


def _source_rows(
    src: sqlite3.Connection, table: str, columns: Sequence[str], key: Sequence[str]
) -> Iterator[tuple[list[Any], int]]:
    """The source's rows in primary-key order (text in byte order, as "C" sorts it)."""
    cur = src.execute(
        f"SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(key)}"  # noqa: S608
    )
    while batch := cur.fetchmany(BATCH):
        for raw in batch:
            stored = [_stored(v) for v in raw]
            yield [v for v, _ in stored], sum(changed for _, changed in stored)


def _copy_table(
    src: sqlite3.Connection,
    conn: psycopg.Connection[tuple[Any, ...]],
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
) -> int:
    """COPY one table (identity values kept as they are); returns the NUL values replaced."""
    from psycopg import sql

    query = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), _names(columns))
    nul = 0
    with conn.cursor() as cur, cur.copy(query) as copy:
        for values, changed in _source_rows(src, table, columns, key):
            copy.write_row(values)
            nul += changed
    return nul


def _names(columns: Sequence[str]) -> sql.Composed:
    from psycopg import sql

    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def _line(values: Iterable[Any]) -> bytes:
    """One row as the checksum reads it: its values as a JSON array, one line."""
    text = json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


def _sqlite_summary(
    src: sqlite3.Connection, table: str, columns: Sequence[str], key: Sequence[str]
) -> tuple[int, str]:
    """Rows and SHA-256 of the source table, its values as the target stores them."""
    digest, count = hashlib.sha256(), 0
    for values, _ in _source_rows(src, table, columns, key):
        digest.update(_line(values))
        count += 1
    return count, digest.hexdigest()


def _postgres_summary(
    conn: psycopg.Connection[tuple[Any, ...]],
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
) -> tuple[int, str]:
    """Rows and SHA-256 of the target table, read back in the same order (text in "C")."""
    from psycopg import sql

    numbers = {"row", "id"}
    order = sql.SQL(", ").join(
        sql.Identifier(k) if k in numbers else sql.SQL('{} COLLATE "C"').format(sql.Identifier(k))
        for k in key
    )
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        _names(columns), sql.Identifier(table), order
    )
    digest, count = hashlib.sha256(), 0
    with conn.cursor(name=f"leadpipe_check_{table}") as cur:
        cur.execute(query)
        while batch := cur.fetchmany(BATCH):
            for values in batch:
                digest.update(_line(values))
                count += 1
    return count, digest.hexdigest()


def _switch_over(state_dir: Path, source: Path, location: str) -> Path:
    """After the commit: ``ledger.sqlite`` (and any side file) renamed, the marker written."""
    from pipeline.ledger.connect import _mark

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    renamed = source.with_name(f"{source.name}{MIGRATED_SUFFIX}{stamp}")
    try:
        for side in ("-wal", "-shm"):  # normally gone: the last connection checkpointed them
            extra = source.with_name(source.name + side)
            if extra.exists():
                extra.rename(renamed.with_name(renamed.name + side))
        source.rename(renamed)
        _mark(state_dir, location)
    except OSError as exc:
        raise StateError(
            f"the ledger was copied into {location} and checked, but the state folder "
            f"{state_dir} could not be switched over ({exc}). Rename {source.name} to "
            f"{renamed.name} yourself, then set [state] ledger to that database."
        ) from exc
    return renamed
