"""The ledger: states, duplicates across files, crash recovery, fail-safe opening.

Tests taking ``ledger_backend`` run on SQLite and on PostgreSQL (tests/postgres.py); the rest
are about the SQLite file itself.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.errors import StateError
from pipeline.ledger import FileKey, FileState, RowState
from pipeline.ledger.fingerprint import fingerprint
from pipeline.ledger.sqlite import open_ledger
from tests.postgres import LedgerBackend

T = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
A, B = FileKey("a" * 64, "C1"), FileKey("b" * 64, "C1")


def _claim(ledger, sha, rows, skip=True):  # type: ignore[no-untyped-def]
    return ledger.claim_for_sending(sha, rows, skip_duplicates=skip, attempt_utc=T, attempt_local=T)


def test_row_states_and_counts(tmp_path: Path, ledger_backend: LedgerBackend) -> None:
    led = ledger_backend.open(tmp_path)
    led.begin_file(A, "leads.csv")
    assert led.add_rows(A, [(2, "f2"), (3, "f3"), (4, "f4")]) == 3
    assert led.add_rows(A, [(2, "f2")]) == 0
    claim = _claim(led, A, [2, 3, 4])
    assert claim.sending == [2, 3, 4]
    led.record_accepted(A, 2, "11S1")
    led.record_refused(A, 3, "phone is invalid", [{"field": "phone", "message": "bad"}])
    led.record_unsent(A, [4], "API unavailable")
    counts = led.row_counts(A)
    assert (counts[RowState.ACCEPTED], counts[RowState.REFUSED], counts[RowState.PENDING]) == (
        1,
        1,
        1,
    )
    refused = led.rows(A, [RowState.REFUSED])[0]
    assert refused.details == [{"field": "phone", "message": "bad"}]
    assert led.accepted_unique_ids("C1") == {"11S1"}
    led.close()


def test_duplicate_from_another_file_is_not_claimed(
    tmp_path: Path, ledger_backend: LedgerBackend
) -> None:
    led = ledger_backend.open(tmp_path)
    led.begin_file(A, "first.csv")
    led.begin_file(B, "second.csv")
    led.add_rows(A, [(2, "same")])
    led.add_rows(B, [(7, "same"), (8, "other")])
    _claim(led, A, [2])
    led.record_accepted(A, 2, "11S1")
    claim = _claim(led, B, [7, 8])
    assert claim.sending == [8]
    assert claim.duplicates == {
        7: "the same data was already accepted for campaign C1 (file first.csv, row 2)"
    }
    assert led.accepted_fingerprints("C1", ["same", "other", "x"]) == {"same"}
    # with duplicates = "upload" the row is sent anyway
    led.add_rows(B, [(9, "same")])
    assert _claim(led, B, [9], skip=False).sending == [9]
    led.close()


def test_sending_rows_become_uncertain_after_a_crash(
    tmp_path: Path, ledger_backend: LedgerBackend
) -> None:
    led = ledger_backend.open(tmp_path)
    led.begin_file(A, "f.csv")
    led.add_rows(A, [(2, "x"), (3, "y")])
    _claim(led, A, [2, 3])
    led.close()  # as if the process died here
    led = ledger_backend.open(tmp_path)
    assert led.recover_sending(A) == 2
    rows = led.rows(A)
    assert [r.state for r in rows] == [RowState.UNCERTAIN, RowState.UNCERTAIN]
    assert rows[0].attempt_utc == T.isoformat()
    led.close()


def test_finished_file_keeps_its_receipt(tmp_path: Path, ledger_backend: LedgerBackend) -> None:
    led = ledger_backend.open(tmp_path)
    led.begin_file(A, "f.csv")
    led.finish_file(A, FileState.DONE, "/x/receipt.txt", '{"accepted": 3}')
    rec = led.file(A)
    assert rec is not None
    assert (rec.state, rec.receipt_json) == (FileState.DONE, '{"accepted": 3}')
    led.close()


def test_a_ledger_with_the_old_watermarks_table_still_opens(tmp_path: Path) -> None:
    led = open_ledger(tmp_path)
    led.begin_file(A, "f.csv")
    led.close()
    with closing(sqlite3.connect(tmp_path / "ledger.sqlite")) as db, db:
        db.execute(
            "CREATE TABLE watermarks (job TEXT PRIMARY KEY, value TEXT NOT NULL,"
            " updated_utc TEXT NOT NULL)"
        )
        db.execute("INSERT INTO watermarks VALUES ('nightly', '2026-11-26', '2026-11-26')")
    again = open_ledger(tmp_path, create=False)
    rec = again.file(A)
    assert rec is not None
    assert rec.name == "f.csv"
    again.close()


def test_the_same_content_for_two_campaigns_is_two_files(
    tmp_path: Path, ledger_backend: LedgerBackend
) -> None:
    led = ledger_backend.open(tmp_path)
    other = FileKey(A.sha256, "C2")
    led.begin_file(A, "leads.csv")
    led.add_rows(A, [(2, "fp-c1")])
    _claim(led, A, [2])
    led.record_accepted(A, 2, "11S1")
    led.finish_file(A, FileState.DONE, "/x/receipt.txt", "{}")
    assert led.file(other) is None  # not "already processed" for C2
    led.begin_file(other, "leads-copy.csv")
    led.add_rows(other, [(2, "fp-c2")])
    assert _claim(led, other, [2]).sending == [2]
    assert [r.state for r in led.rows(A)] == [RowState.ACCEPTED]
    assert [r.state for r in led.rows(other)] == [RowState.SENDING]
    assert [f.campaign for f in led.files_with_content(A.sha256)] == ["C2", "C1"]
    led.close()


def test_rows_sent_by_a_read_of_a_changing_file_are_handed_over_once(
    tmp_path: Path, ledger_backend: LedgerBackend
) -> None:
    led = ledger_backend.open(tmp_path)
    partial, complete = A, B
    led.begin_file(partial, "leads.csv")
    led.add_rows(partial, [(2, "one"), (3, "two"), (4, "three")])
    _claim(led, partial, [2, 3])
    led.record_accepted(partial, 2, "11S1")
    led.record_uncertain(partial, 3, "read timeout")  # row 4 was never sent
    led.set_file_state(partial, FileState.CHANGED, "still being written")
    led.begin_file(complete, "leads.csv")
    led.add_rows(complete, [(2, "one"), (3, "two"), (4, "three"), (5, "one")])
    # duplicates = "upload": even then a handed-over row is not sent a second time
    claim = _claim(led, complete, [2, 3, 4, 5], skip=False)
    assert claim.handed_over == [2, 3]
    assert claim.sending == [4, 5]  # row 5 repeats row 2 in the file: the user's choice
    rows = {r.row: r for r in led.rows(complete)}
    assert (rows[2].state, rows[2].unique_id) == (RowState.ACCEPTED, "11S1")
    assert "still being written" in rows[2].reason
    assert (rows[3].state, rows[3].attempt_utc) == (RowState.UNCERTAIN, T.isoformat())
    old = {r.row: r.state for r in led.rows(partial)}
    assert old == {2: RowState.MOVED, 3: RowState.MOVED, 4: RowState.PENDING}
    led.close()


def test_a_version_1_ledger_is_upgraded_in_place_with_a_backup(tmp_path: Path) -> None:
    v1 = tmp_path / "ledger.sqlite"
    with closing(sqlite3.connect(v1)) as db, db:
        db.executescript(
            """
            CREATE TABLE schema_version (version INTEGER NOT NULL);
            INSERT INTO schema_version VALUES (1);
            CREATE TABLE files (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL,
                campaign TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
                first_seen_utc TEXT NOT NULL, updated_utc TEXT NOT NULL, finished_utc TEXT,
                receipt_path TEXT, receipt_json TEXT);
            CREATE TABLE rows (file_sha256 TEXT NOT NULL REFERENCES files(sha256),
                row INTEGER NOT NULL, campaign TEXT NOT NULL, fingerprint TEXT NOT NULL,
                state TEXT NOT NULL, unique_id TEXT, reason TEXT NOT NULL DEFAULT '',
                details TEXT NOT NULL DEFAULT '[]', attempt_local TEXT, attempt_utc TEXT,
                attempts INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (file_sha256, row));
            CREATE TABLE attempts (id INTEGER PRIMARY KEY, file_sha256 TEXT NOT NULL,
                row INTEGER NOT NULL, at_utc TEXT NOT NULL, outcome TEXT NOT NULL,
                detail TEXT NOT NULL DEFAULT '');
            """
        )
        db.execute(
            "INSERT INTO files VALUES (?, 'leads.csv', 'C1', 'done', '', 't', 't', 't', 'r', '{}')",
            (A.sha256,),
        )
        db.execute(
            "INSERT INTO rows VALUES (?, 2, 'C1', 'fp', 'accepted', '11S1', '', '[]', 'l', 'u', 1)",
            (A.sha256,),
        )
        db.execute("INSERT INTO attempts VALUES (1, ?, 2, 't', 'created', '11S1')", (A.sha256,))
    (tmp_path / "ledger.created").write_text("2026-11-01\n", encoding="utf-8")
    led = open_ledger(tmp_path, create=False)
    record = led.file(A)
    assert record is not None
    assert (record.state, record.name) == (FileState.DONE, "leads.csv")
    assert [(r.row, r.unique_id) for r in led.rows(A)] == [(2, "11S1")]
    assert led.file(FileKey(A.sha256, "C2")) is None
    assert led.accepted_fingerprints("C1", ["fp"]) == {"fp"}
    led.close()
    with closing(sqlite3.connect(tmp_path / "ledger.v1-backup.sqlite")) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM rows").fetchone() == (1,)
    again = open_ledger(tmp_path, create=False)  # already version 2: opens as it is
    assert again.file(A) is not None
    again.close()


def test_missing_ledger_is_refused_not_recreated(tmp_path: Path) -> None:
    open_ledger(tmp_path).close()
    (tmp_path / "ledger.sqlite").unlink()
    with pytest.raises(StateError, match=r"ledger\.sqlite is missing") as exc:
        open_ledger(tmp_path)
    assert "rather than start fresh" in str(exc.value)
    assert not (tmp_path / "ledger.sqlite").exists()


def test_corrupt_ledger_is_refused(tmp_path: Path) -> None:
    open_ledger(tmp_path).close()
    for extra in ("-wal", "-shm"):
        (tmp_path / f"ledger.sqlite{extra}").unlink(missing_ok=True)
    (tmp_path / "ledger.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError, match="unreadable or corrupt"):
        open_ledger(tmp_path)


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="not a leadpipe ledger"):
        open_ledger(tmp_path)


def test_expected_ledger_with_create_false(tmp_path: Path, ledger_backend: LedgerBackend) -> None:
    with pytest.raises(StateError, match="one was expected"):
        ledger_backend.open(tmp_path, create=False)


def test_concurrent_outcomes_from_threads(tmp_path: Path, ledger_backend: LedgerBackend) -> None:
    led = ledger_backend.open(tmp_path)
    led.begin_file(A, "f.csv")
    led.add_rows(A, [(r, f"fp{r}") for r in range(2, 402)])
    _claim(led, A, list(range(2, 402)))

    def work(start: int) -> None:
        for r in range(start, 402, 8):
            led.record_accepted(A, r, f"{r}S1")

    threads = [threading.Thread(target=work, args=(2 + i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert led.row_counts(A)[RowState.ACCEPTED] == 400
    led.close()


def test_fingerprint_is_canonical() -> None:
    a = fingerprint("C1", {"name": "Åse", "phone": "+45 1"})
    b = fingerprint("C1", {"phone": "+45 1", "name": "Åse"})
    assert a == b
    assert a != fingerprint("C2", {"name": "Åse", "phone": "+45 1"})


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_state_folder_is_a_state_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o500)
    try:
        with pytest.raises(StateError, match="is not writable"):
            open_ledger(state)
    finally:
        state.chmod(0o700)


def test_column_fingerprints_equal_the_one_row_definition() -> None:
    """The ledger's fingerprints are durable: the column-wise path must give the same text."""
    import random

    import pyarrow as pa

    from pipeline.ledger.fingerprint import fingerprints

    rng = random.Random(7)
    alphabet = ["a", "Ø", '"', "\\", "\n", "\t", "\x01", "\x1f", "\x7f", " ", "é", "\u2028", "😀"]
    names = ["name", "phone", 'e"mail', "zip", "Navn ø"]
    rows = [
        {
            k: None
            if rng.random() < 0.2
            else "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
            for k in names
        }
        for _ in range(3000)
    ]
    columns = {k: pa.array([r[k] for r in rows], pa.string()) for k in names}
    expected = [fingerprint('B2B"1', {k: v for k, v in r.items() if v}) for r in rows]
    assert fingerprints('B2B"1', columns) == expected
    assert fingerprints('B2B"1', columns, step=257) == expected  # in slices
    part = {k: pa.chunked_array([v.slice(100, 50), v.slice(150, 70)]) for k, v in columns.items()}
    assert fingerprints('B2B"1', part) == expected[100:220]
    assert fingerprints("C", {"name": pa.array(["", None])}) == [fingerprint("C", {})] * 2


def test_only_the_same_file_name_takes_over_rows_of_a_changed_read(
    tmp_path: Path, ledger_backend: LedgerBackend
) -> None:
    led = ledger_backend.open(tmp_path)
    partial, other, complete = A, B, FileKey("c" * 64, "C1")
    led.begin_file(partial, "leads.csv")
    led.add_rows(partial, [(2, "one")])
    _claim(led, partial, [2])
    led.record_accepted(partial, 2, "11S1")
    led.set_file_state(partial, FileState.CHANGED, "still being written")
    led.begin_file(other, "another.csv")  # same data, another file: sent as usual
    led.add_rows(other, [(9, "one")])
    assert _claim(led, other, [9], skip=False).sending == [9]
    led.begin_file(complete, "leads.csv")  # the complete version of leads.csv takes it over
    led.add_rows(complete, [(2, "one")])
    assert _claim(led, complete, [2], skip=False).handed_over == [2]
    # the changed read coming back as it was: its handed-over row still counts as in HeroBase
    assert led.row_counts(partial)[RowState.MOVED] == 1
    led.close()
