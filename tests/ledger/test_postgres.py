"""The ledger on PostgreSQL: configuration, opening safely, schema creation, durability.

Backend-neutral behaviour runs on both backends (``ledger_backend``); the rest is about what
only PostgreSQL has: a URL, a password from the environment, a shared database.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.config import Paths, Settings, StateSettings, load_settings
from pipeline.errors import ConfigError, StateError, exit_code
from pipeline.ledger import FileKey, FileState, Ledger, RowState
from pipeline.ledger.connect import POSTGRES_MARKER, open_ledger_for
from tests.postgres import Cluster, LedgerBackend, _free_port

T = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
A, B = FileKey("a" * 64, "C1"), FileKey("b" * 64, "C1")
CANARY = "canary-Pw-7731"


def _config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "leadpipe.toml"
    p.write_text(text, encoding="utf-8")
    return p


# -- configuration ----------------------------------------------------------------------------


def test_the_default_ledger_is_the_sqlite_file(tmp_path: Path) -> None:
    s = load_settings(_config(tmp_path, ""), env={})
    assert (s.state.ledger, s.state.postgresql) == ("", False)


def test_a_postgresql_ledger_takes_its_password_from_the_environment(tmp_path: Path) -> None:
    p = _config(tmp_path, '[state]\nledger = "postgresql://lp@db.example:5432/leads"\n')
    s = load_settings(p, env={"LEADPIPE_LEDGER_PASSWORD": CANARY})
    assert s.state.postgresql
    assert (s.state.ledger, s.state.password) == ("postgresql://lp@db.example:5432/leads", CANARY)
    assert CANARY not in repr(s)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://lp:{CANARY}@db.example/leads",
        f"postgresql://lp@db.example/leads?password={CANARY}",
    ],
)
def test_a_password_in_the_url_is_a_config_error_that_says_where_it_goes(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(_config(tmp_path, f'[state]\nledger = "{url}"\n'), env={})
    assert "state.ledger" in str(exc.value)
    assert "LEADPIPE_LEDGER_PASSWORD" in str(exc.value)
    assert CANARY not in str(exc.value)


def test_a_password_key_and_another_kind_of_ledger_are_refused(tmp_path: Path) -> None:
    text = f'[state]\nledger = "host=db password={CANARY}"\npassword = "{CANARY}"\n'
    with pytest.raises(ConfigError) as exc:
        load_settings(_config(tmp_path, text), env={})
    message = str(exc.value)
    assert "state.password" in message
    assert "passwords are read only from LEADPIPE_LEDGER_PASSWORD" in message
    assert 'expected "" (the SQLite file in the state folder) or a URL' in message
    assert CANARY not in message


def test_leadpipe_config_shows_the_ledger_never_its_password(tmp_path: Path) -> None:
    from pipeline.cli import app

    p = _config(tmp_path, '[state]\nledger = "postgresql://lp@db.example:5432/leads"\n')
    env = {"LEADPIPE_LEDGER_PASSWORD": CANARY}
    shown = CliRunner().invoke(app, ["--config", str(p), "config"], env=env)
    as_json = CliRunner().invoke(app, ["--config", str(p), "config", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "ledger   postgresql://lp@db.example:5432/leads" in shown.output
    assert '"password": "***"' in as_json.output
    assert CANARY not in shown.output + as_json.output


def test_a_sqlite_ledger_never_imports_psycopg(tmp_path: Path) -> None:
    probe = (
        "import sys; from pathlib import Path\n"
        "from pipeline.config import Paths, Settings\n"
        "from pipeline.ledger.connect import open_ledger_for\n"
        f"open_ledger_for(Settings(paths=Paths(state=Path({str(tmp_path)!r})))).close()\n"
        "print(sorted(m for m in sys.modules if m.startswith('psycopg')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "ledger.sqlite").exists()


# -- on both backends -------------------------------------------------------------------------


def _claim(led: Ledger, key: FileKey, rows: list[int], skip: bool = True) -> list[int]:
    claim = led.claim_for_sending(key, rows, skip_duplicates=skip, attempt_utc=T, attempt_local=T)
    return claim.sending


def test_two_processes_claiming_the_same_data_send_it_once(
    tmp_path: Path, ledger_backend: LedgerBackend
) -> None:
    """Two ledgers on one store (as two processes) claim the same data at once: one wins."""
    first, second = ledger_backend.open(tmp_path), ledger_backend.open(tmp_path)
    try:
        for led, key in ((first, A), (second, B)):
            led.begin_file(key, f"{key.sha256[0]}.csv")
            led.add_rows(key, [(r, f"fp{r}") for r in range(2, 202)])
        won: dict[str, list[int]] = {}
        start = threading.Barrier(2)

        def claim(name: str, led: Ledger, key: FileKey) -> None:
            start.wait()
            won[name] = [
                r for i in range(2, 202, 10) for r in _claim(led, key, list(range(i, i + 10)))
            ]

        threads = [
            threading.Thread(target=claim, args=("a", first, A)),
            threading.Thread(target=claim, args=("b", second, B)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(won["a"] + won["b"]) == list(range(2, 202))  # each row sent by one file
        counts = first.row_counts(A)[RowState.DUPLICATE] + first.row_counts(B)[RowState.DUPLICATE]
        assert counts == 200
    finally:
        first.close()
        second.close()


def test_what_retention_reads_and_scrubs(tmp_path: Path, ledger_backend: LedgerBackend) -> None:
    led = ledger_backend.open(tmp_path)
    try:
        led.begin_file(A, "leads.csv")
        led.begin_file(B, "other.csv")
        led.add_rows(A, [(2, "f2"), (3, "f3")])
        _claim(led, A, [2, 3])
        led.record_accepted(A, 2, "11S1")
        led.record_refused(A, 3, "phone +45 11 22 33 44 is invalid", [{"field": "phone"}])
        led.set_file_state(B, FileState.WAITING, "mail anne_50%@x.dk bounced")
        led.finish_file(A, FileState.DONE, "/r/leads.receipt.txt", '{"rows": "+45 11 22 33 44"}')
        assert [f.name for f in led.every_file()] == ["leads.csv", "other.csv"]
        assert [f.sha256 for f in led.files_named("leads.csv")] == [A.sha256]
        assert [(r.row, r.campaign) for r in led.rows_with_unique_id("11S1")] == [(2, "C1")]
        # LIKE's wildcards in the value are matched as themselves
        assert led.scrub_mentions(["anne_5_%"], str.upper) == 0
        assert led.scrub_mentions(["anne_50%@x.dk"], str.upper) == 1
        assert led.scrub_mentions(["+45 11 22 33 44"], lambda _: "{}") >= 3
        refused = led.rows(A, [RowState.REFUSED])[0]
        assert (refused.reason, refused.details) == ("", [])
        record = led.file(A)
        assert record is not None
        assert record.receipt_json == "{}"
        led.record_refused(A, 3, "again 555", [{"field": "x"}])
        led.scrub_file(A, '{"clean": true}')
        again = led.rows(A, [RowState.REFUSED])[0]
        assert (again.reason, again.details, again.fingerprint) == ("", [], "f3")
        assert led.file(A) is not None
        assert led.file(A).receipt_json == '{"clean": true}'  # type: ignore[union-attr]
        led.compact(vacuum=False)
        led.compact()
        assert led.accepted_unique_ids("C1") == {"11S1"}
    finally:
        led.close()


def test_a_closed_ledger_is_a_state_error(tmp_path: Path, ledger_backend: LedgerBackend) -> None:
    led = ledger_backend.open(tmp_path)
    led.close()
    with pytest.raises(StateError):
        led.file(A)


# -- PostgreSQL only ---------------------------------------------------------------------------


@pytest.fixture
def pg_db(postgres_cluster: Cluster) -> Iterator[str]:
    """A fresh database of the session's cluster (dropped after the test)."""
    name = postgres_cluster.create_database()
    yield name
    postgres_cluster.drop_database(name)


def _settings(cluster: Cluster, db: str, state: Path) -> Settings:
    return Settings(paths=Paths(state=state), state=StateSettings(ledger=cluster.url(db)))


def test_processes_starting_at_once_create_the_schema_once(
    tmp_path: Path, postgres_cluster: Cluster, pg_db: str
) -> None:
    probe = (
        "import sys; from pathlib import Path\n"
        "from pipeline.config import Paths, Settings, StateSettings\n"
        "from pipeline.ledger.connect import open_ledger_for\n"
        "state = StateSettings(ledger=sys.argv[2])\n"
        "s = Settings(paths=Paths(state=Path(sys.argv[1])), state=state)\n"
        "open_ledger_for(s).close()\n"
    )
    url = postgres_cluster.url(pg_db)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", probe, str(tmp_path / f"node{i}"), url],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    import psycopg

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    for i in range(4):
        assert (tmp_path / f"node{i}" / POSTGRES_MARKER).exists()


def test_every_ledger_connection_commits_synchronously(
    tmp_path: Path, postgres_cluster: Cluster, pg_db: str
) -> None:
    """Even where the database's default is off, an intent is on disk when the claim returns."""
    import psycopg

    with psycopg.connect(postgres_cluster.url(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{pg_db}" SET synchronous_commit = off')  # type: ignore[arg-type]
    led = open_ledger_for(_settings(postgres_cluster, pg_db, tmp_path))
    try:
        from pipeline.ledger.postgres import PostgresLedger

        assert isinstance(led, PostgresLedger)
        assert led._query("SHOW synchronous_commit") == [{"synchronous_commit": "on"}]
    finally:
        led.close()


def test_an_unreachable_database_stops_with_what_to_do(tmp_path: Path) -> None:
    url = f"postgresql://lp@127.0.0.1:{_free_port()}/leads"
    settings = Settings(
        paths=Paths(state=tmp_path), state=StateSettings(ledger=url, password=CANARY)
    )
    with pytest.raises(StateError) as exc:
        open_ledger_for(settings)
    message = str(exc.value)
    assert f"the ledger database {url} cannot be reached" in message
    assert "Check that PostgreSQL runs" in message
    assert CANARY not in message
    assert exit_code(exc.value) == 6
    assert not (tmp_path / POSTGRES_MARKER).exists()


def test_a_foreign_database_and_another_version_are_refused(
    tmp_path: Path, postgres_cluster: Cluster, pg_db: str
) -> None:
    import psycopg

    url = postgres_cluster.url(pg_db)
    settings = _settings(postgres_cluster, pg_db, tmp_path)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE files (x TEXT)")
        with pytest.raises(StateError, match="is not a leadpipe ledger"):
            open_ledger_for(settings)
        conn.execute("DROP TABLE files")
        open_ledger_for(settings).close()
        conn.execute("UPDATE schema_version SET version = 3")
        with pytest.raises(StateError, match="has schema version 3; this leadpipe understands"):
            open_ledger_for(settings)


def test_an_empty_database_is_refused_where_a_ledger_was_used(
    tmp_path: Path, postgres_cluster: Cluster, pg_db: str
) -> None:
    settings = _settings(postgres_cluster, pg_db, tmp_path / "state")
    led = open_ledger_for(settings)
    led.begin_file(A, "leads.csv")
    led.close()
    postgres_cluster.drop_database(pg_db)
    other = postgres_cluster.create_database()
    try:
        moved = _settings(postgres_cluster, other, tmp_path / "state")
        with pytest.raises(StateError) as exc:
            open_ledger_for(moved)
        assert "holds no leadpipe ledger" in str(exc.value)
        assert "rather than start fresh" in str(exc.value)
        # another node's fresh state folder may start the ledger
        open_ledger_for(_settings(postgres_cluster, other, tmp_path / "node2")).close()
    finally:
        postgres_cluster.drop_database(other)


def test_a_sqlite_ledger_in_the_state_folder_is_not_silently_left_behind(
    tmp_path: Path, postgres_cluster: Cluster, pg_db: str
) -> None:
    from pipeline.ledger.sqlite import open_ledger

    open_ledger(tmp_path).close()
    with pytest.raises(StateError) as exc:
        open_ledger_for(_settings(postgres_cluster, pg_db, tmp_path))
    assert "holds a SQLite ledger (ledger.sqlite, ledger.created)" in str(exc.value)
    assert "would be sent again" in str(exc.value)


def test_a_url_libpq_refuses_is_a_config_error(tmp_path: Path) -> None:
    settings = Settings(
        paths=Paths(state=tmp_path), state=StateSettings(ledger="postgresql://h/db?colour=red")
    )
    with pytest.raises(ConfigError, match=r'state\.ledger.*invalid URI query parameter: "colour"'):
        open_ledger_for(settings)
