"""``leadpipe ledger migrate``: a SQLite ledger moved into PostgreSQL, checked, or refused.

docs/architecture.md, "The ledger on PostgreSQL". The PostgreSQL cases use the throwaway
cluster of tests/postgres.py and are skipped (with the reason) where none can run.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.api import HeroBaseClient
from pipeline.config import CampaignSettings, Paths, Settings, StateSettings
from pipeline.errors import ConfigError, StateError, exit_code
from pipeline.ingest.report.place import ReceiptWriter, ResultPlaces
from pipeline.ingest.report.receipt import Receipt
from pipeline.ingest.run import IngestContext, IngestRequest, ingest_file
from pipeline.ledger import FileKey, FileState, Ledger
from pipeline.ledger.connect import POSTGRES_MARKER, open_ledger_for
from pipeline.ledger.migrate import TABLES, migrate_ledger
from pipeline.outcome import FileOutcome
from pipeline.sandbox import Sandbox
from pipeline.service.instance import InstanceLock
from tests.ingest import messy
from tests.ingest.conftest import CAMPAIGN, make_settings
from tests.postgres import Cluster

T = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CANARY = "canary-Pw-5512"


@pytest.fixture
def target(postgres_cluster: Cluster) -> Iterator[str]:
    """The URL of a fresh, empty database (dropped after the test)."""
    with postgres_cluster.fresh_database() as url:
        yield url


def _ingest(settings: Settings, client: HeroBaseClient, ledger: Ledger, path: Path) -> Receipt:
    """As ``leadpipe ingest``: ingest the file, then place its receipt."""
    places = ResultPlaces.for_ingest(path, CAMPAIGN, settings, path.parent / "results")
    request = IngestRequest(path, CAMPAIGN, results=places.rejects, tmp=places.tmp)
    result = ingest_file(request, IngestContext(settings, client, ledger))
    return ReceiptWriter(ledger).place(result.receipt, result.rejects, places, result.base).receipt


def _small_ledger(state: Path) -> None:
    """A SQLite ledger made through the ledger API: one file, two rows, one sent."""
    key = FileKey("a" * 64, "C1")
    led = open_ledger_for(Settings(paths=Paths(state=state)))
    try:
        led.begin_file(key, "leads.csv")
        led.add_rows(key, [(2, "fp-2"), (3, "fp-3")])
        led.claim_for_sending(key, [2], skip_duplicates=True, attempt_utc=T, attempt_local=T)
        led.record_accepted(key, 2, "L-1")
        led.finish_file(key, FileState.DONE, "receipt.txt", "{}")
    finally:
        led.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tables(url: str) -> dict[str, int]:
    """The tables in the database and their row counts."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url) as conn:
        names = [
            n
            for (n,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        counts: dict[str, int] = {}
        for name in names:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))
            row = conn.execute(query).fetchone()
            counts[name] = row[0] if row else 0
        return counts


def _values(
    sqlite_file: Path, url: str, table: str, columns: Sequence[str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every row of ``table`` in the SQLite file and in the database, sorted the same way."""
    import psycopg
    from psycopg import sql

    names = ", ".join(columns)
    with closing(sqlite3.connect(sqlite_file)) as db:
        here = sorted(db.execute(f"SELECT {names} FROM {table}").fetchall())  # noqa: S608
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
    )
    with psycopg.connect(url) as conn:
        there = sorted(conn.execute(query).fetchall())
    return here, there


def _settings(state: Path) -> Settings:
    return Settings(paths=Paths(state=state))


# -- the move, end to end ---------------------------------------------------------------------


def test_a_migrated_ledger_matches_and_a_redrop_is_not_sent_again(
    sandbox: Sandbox, tmp_path: Path, target: str
) -> None:
    sandbox.set_rate_limit(per_minute=1_000_000, per_day=10_000_000)
    settings = replace(
        make_settings(tmp_path, sandbox),
        campaigns={CAMPAIGN: CampaignSettings(columns=dict(messy.SYNONYMS))},
    )
    state = settings.paths.state
    client = HeroBaseClient(settings.api, timezone=settings.timezone)
    try:
        drops = tmp_path / "drops"
        drops.mkdir()
        first, second = drops / "first.csv", drops / "second.csv"
        messy.build(first, 30)
        messy.build(second, 45)
        ledger = open_ledger_for(settings)
        try:
            done = [_ingest(settings, client, ledger, p) for p in (first, second)]
        finally:
            ledger.close()
        assert [r.outcome for r in done] == [FileOutcome.PROCESSED] * 2
        accepted = sum(r.accepted for r in done)
        assert accepted > 0

        result = migrate_ledger(settings, target)

        assert (result.committed, result.matches, result.dry_run) == (True, True, False)
        by_table = {t.table: t for t in result.tables}
        assert list(by_table) == ["files", "rows", "attempts"]
        assert by_table["files"].source_rows == 2
        assert by_table["rows"].source_rows >= accepted
        assert by_table["attempts"].source_rows >= accepted
        for t in result.tables:
            assert (t.target_rows, t.target_sha256) == (t.source_rows, t.source_sha256)
            assert len(t.source_sha256) == 64
        counts = _tables(target)
        assert {k: counts[k] for k in ("files", "rows", "attempts")} == {
            t.table: t.source_rows for t in result.tables
        }
        # the state folder switched over: the SQLite file kept under a new name, the marker
        assert not (state / "ledger.sqlite").exists()
        assert result.renamed_to is not None
        assert result.renamed_to.name.startswith("ledger.sqlite.migrated-")
        assert (state / POSTGRES_MARKER).exists()
        # every value of every column, read back on both sides (not only the checksums)
        for table, columns, _key in TABLES:
            here, there = _values(result.renamed_to, target, table, columns)
            assert len(here) == by_table[table].source_rows
            assert here == there, table

        # through the PostgreSQL ledger: a re-drop of the same content is already processed
        on_pg = replace(settings, state=StateSettings(ledger=target))
        posts = len([r for r in sandbox.requests() if r["method"] == "POST"])
        again = drops / "first-again.csv"
        shutil.copyfile(first, again)
        third = drops / "third.csv"
        messy.build(third, 60)  # the rows of second.csv, then 15 new ones
        ledger = open_ledger_for(on_pg)
        try:
            redrop = _ingest(on_pg, client, ledger, again)
            assert redrop.outcome is FileOutcome.ALREADY
            assert len([r for r in sandbox.requests() if r["method"] == "POST"]) == posts
            # data sent before the move is a duplicate; new rows are sent and recorded
            # (their attempts numbered after the copied ones)
            fresh = _ingest(on_pg, client, ledger, third)
            assert fresh.outcome is FileOutcome.PROCESSED
            assert fresh.duplicates >= done[1].accepted
            assert fresh.accepted > 0
        finally:
            ledger.close()

        # and the state folder is not used with SQLite again by mistake
        with pytest.raises(StateError) as refused:
            open_ledger_for(settings)
        assert "was moved to PostgreSQL" in str(refused.value)
        assert "Set [state] ledger to that database" in str(refused.value)
    finally:
        client.close()


def test_a_dry_run_copies_checks_and_keeps_nothing(tmp_path: Path, target: str) -> None:
    state = tmp_path / "state"
    _small_ledger(state)
    before = _digest(state / "ledger.sqlite")

    result = migrate_ledger(_settings(state), target, dry_run=True)

    assert (result.dry_run, result.committed, result.matches) == (True, False, True)
    assert [(t.table, t.source_rows) for t in result.tables] == [
        ("files", 1),
        ("rows", 2),
        ("attempts", 1),
    ]
    assert _tables(target) == {}  # even the schema was rolled back
    assert _digest(state / "ledger.sqlite") == before
    assert not (state / POSTGRES_MARKER).exists()


def test_checks_that_differ_roll_the_copy_back(
    tmp_path: Path, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.ledger import migrate

    state = tmp_path / "state"
    _small_ledger(state)
    before = _digest(state / "ledger.sqlite")
    real = migrate._postgres_summary

    def one_value_off(*args: object, **kw: object) -> tuple[int, str]:
        rows, digest = real(*args, **kw)  # type: ignore[arg-type]
        return (rows, "0" * 64) if args[1] == "rows" else (rows, digest)

    monkeypatch.setattr(migrate, "_postgres_summary", one_value_off)

    result = migrate_ledger(_settings(state), target)

    assert (result.matches, result.committed) == (False, False)
    assert [t.table for t in result.tables if not t.matches] == ["rows"]
    assert _tables(target) == {}
    assert _digest(state / "ledger.sqlite") == before
    assert not (state / POSTGRES_MARKER).exists()

    from pipeline.cli import app

    (tmp_path / "leadpipe.toml").write_text('[paths]\nstate = "state"\n', encoding="utf-8")
    args = ["--config", str(tmp_path / "leadpipe.toml"), "ledger", "migrate", "--to", target]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 6
    assert "DIFFERENT" in done.output
    assert "error: the copy does not match the SQLite ledger" in done.output
    assert (state / "ledger.sqlite").is_file()


# -- refusals ---------------------------------------------------------------------------------


def test_refused_while_a_leadpipe_run_holds_the_state_folder(tmp_path: Path, target: str) -> None:
    state = tmp_path / "state"
    _small_ledger(state)
    before = _digest(state / "ledger.sqlite")
    lock = InstanceLock(state).acquire()  # as `leadpipe run` holds it
    try:
        with pytest.raises(StateError) as exc:
            migrate_ledger(_settings(state), target)
    finally:
        lock.release()
    message = str(exc.value)
    assert "is already running on the state folder" in message
    assert "stop it, then run `leadpipe ledger migrate` again. Nothing was copied." in message
    assert exit_code(exc.value) == 6
    assert _digest(state / "ledger.sqlite") == before
    assert not (state / POSTGRES_MARKER).exists()
    assert _tables(target) == {}


def test_refused_when_the_target_holds_a_ledger_already(tmp_path: Path, target: str) -> None:
    state = tmp_path / "state"
    _small_ledger(state)
    before = _digest(state / "ledger.sqlite")
    other = Settings(paths=Paths(state=tmp_path / "other"), state=StateSettings(ledger=target))
    led = open_ledger_for(other)
    try:
        led.begin_file(FileKey("b" * 64, "C2"), "theirs.csv")
    finally:
        led.close()
    held = _tables(target)

    with pytest.raises(StateError) as exc:
        migrate_ledger(_settings(state), target)

    message = str(exc.value)
    assert "is not empty (it holds 1 files); leadpipe never merges two ledgers" in message
    assert exit_code(exc.value) == 6
    assert _tables(target) == held
    assert _digest(state / "ledger.sqlite") == before
    assert not (state / POSTGRES_MARKER).exists()


def test_refused_without_a_sqlite_ledger(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with pytest.raises(StateError) as exc:
        migrate_ledger(_settings(state), "postgresql://lp@db.example/leads")
    assert f"there is no SQLite ledger to move: {state / 'ledger.sqlite'} does not exist" in str(
        exc.value
    )
    assert exit_code(exc.value) == 6


def test_a_password_in_the_url_is_refused_and_never_shown(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _small_ledger(state)
    with pytest.raises(ConfigError) as exc:
        migrate_ledger(_settings(state), f"postgresql://lp:{CANARY}@db.example/leads")
    assert "state.ledger (--to): the URL holds a password" in str(exc.value)
    assert CANARY not in str(exc.value)
    assert exit_code(exc.value) == 3


# -- the command ------------------------------------------------------------------------------


def test_the_command_prints_counts_and_checksums_never_the_password(
    tmp_path: Path, target: str
) -> None:
    from pipeline.cli import app

    state = tmp_path / "state"
    _small_ledger(state)
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text('[paths]\nstate = "state"\n', encoding="utf-8")
    env = {"LEADPIPE_LEDGER_PASSWORD": CANARY}

    done = CliRunner().invoke(
        app, ["--config", str(cfg), "ledger", "migrate", "--to", target], env=env
    )

    assert done.exit_code == 0, done.output
    assert CANARY not in done.output
    assert f"to   {target}" in done.output
    lines = [line.split() for line in done.output.splitlines()]
    assert ["rows", "SQLite", "2", "rows", "sha256"] in [w[:5] for w in lines]
    assert ["PostgreSQL", "2", "rows", "sha256"] in [w[:4] for w in lines]
    assert done.output.count("  same") == 3
    assert "ledger.sqlite is now ledger.sqlite.migrated-" in done.output
    assert f'Set [state] ledger = "{target}"' in done.output


def test_the_command_exits_non_zero_when_refused(tmp_path: Path, target: str) -> None:
    from pipeline.cli import app

    for name in ("one", "two"):
        _small_ledger(tmp_path / name)
        (tmp_path / f"{name}.toml").write_text(f'[paths]\nstate = "{name}"\n', encoding="utf-8")
    move = ["ledger", "migrate", "--to", target]
    assert CliRunner().invoke(app, ["--config", str(tmp_path / "one.toml"), *move]).exit_code == 0

    second = CliRunner().invoke(app, ["--config", str(tmp_path / "two.toml"), *move])

    assert second.exit_code == 6
    assert "error: the PostgreSQL ledger" in second.output
    assert "leadpipe never merges two ledgers" in second.output
    assert (tmp_path / "two" / "ledger.sqlite").is_file()


def test_a_nul_character_is_stored_as_postgresql_stores_it_and_counted(
    tmp_path: Path, target: str
) -> None:
    state = tmp_path / "state"
    _small_ledger(state)
    led = open_ledger_for(_settings(state))
    try:
        led.record_refused(FileKey("a" * 64, "C1"), 3, "bad value 'x\x00y'")
    finally:
        led.close()

    result = migrate_ledger(_settings(state), target, dry_run=True)

    assert result.matches
    assert result.nul_replaced == 2  # the row's reason and its attempt's detail


def test_another_configured_postgresql_ledger_is_a_config_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _small_ledger(state)
    configured = replace(
        _settings(state), state=StateSettings(ledger="postgresql://lp@db.example/leads")
    )
    with pytest.raises(ConfigError) as exc:
        migrate_ledger(configured, "postgresql://lp@other.example/leads")
    assert "the configuration names another PostgreSQL ledger" in str(exc.value)
