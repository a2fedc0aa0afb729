"""``forget``: a person's value leaves every kept file and the ledger; the rest stays."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.config import RetentionSettings
from pipeline.errors import InputError
from pipeline.ingest.read.grid import records
from pipeline.ledger import FileKey, RowState
from pipeline.outcome import FileOutcome
from pipeline.retention.forget import forget
from pipeline.sandbox import Sandbox
from pipeline.trace.values import Needle
from tests.retention.helpers import CAMPAIGN, Env, env_for, leads_csv

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
#: the spellings of Jane's phone in the files below (the last one fails the field's regex)
JANE = ("+4520000001", "(+45) 2000-0001", "2000-0001", "20000001")


def everything(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "schemas" not in p.parts)


def holds(path: Path, needle: Needle) -> bool:
    """Does ``path`` still hold the value: as a cell, or as text anywhere in it?"""
    data = path.read_bytes()
    if any(s.encode() in data for s in JANE[:3]):
        return True
    if path.suffix.lower() in (".csv", ".xlsx"):
        try:
            return any(needle.in_any(r.cells) for r in records(path))
        except InputError:
            return False
    return False


def setup(env: Env) -> dict[str, Path]:
    a = env.drop("alpha.csv", leads_csv("Alpha", ["+4520000001", "+4520000002"]), T0)
    b = env.drop(
        "beta.csv",
        leads_csv("Beta", ["+4520000005"], ["(+45) 2000-0001", "12ab"]),
        T0 + timedelta(hours=1),
    )
    assert a.receipt.accepted == 2
    assert b.receipt.rejected == 2
    assert any("(+45) 2000-0001" in s for s in b.receipt.problems_sample)
    export = env.settings.paths.outbox / "daily" / "daily_2026-03-01.csv"
    export.parent.mkdir(parents=True)
    export.write_text(
        "uniqueId;Phone;Name\r\nU1;+45 20 00 00 01;Jane\r\nU2;+4520000002;Other\r\n",
        encoding="utf-8",
    )
    manifest = export.with_name(export.name + ".manifest.json")
    manifest.write_text(json.dumps({"rows": 2, "sha256": "?", "bytes": 0}), encoding="utf-8")
    failed = env.folder / "failed" / "20260302-100000_gamma.csv"
    failed.parent.mkdir()
    failed.write_text("Phone,Name\n+4520000001,Jane\n", encoding="utf-8")
    error = failed.with_name(failed.name + ".error.txt")
    error.write_text("leadpipe could not process it: +4520000001 ...\n", encoding="utf-8")
    return {
        "a": a.original,
        "b": b.original,
        "a_receipt": a.receipt_txt,
        "b_receipt": b.receipt_txt,
        "export": export,
        "error": error,
        "failed": failed,
        "b_rejects": b.rejects[-1],  # the .csv
    }


def test_forget_removes_the_value_everywhere_and_leaves_the_rest(
    sb: Sandbox, tmp_path: Path
) -> None:
    policy = RetentionSettings(forget_originals="rewrite")
    with env_for(sb, tmp_path, policy, T0) as env:
        paths = setup(env)
        needle = Needle.of("0045 2000 0001")
        a_bytes = paths["a"].read_bytes()
        key_a = FileKey(hashlib.sha256(a_bytes).hexdigest(), CAMPAIGN)
        ids = [r.unique_id for r in env.ledger.rows(key_a)]
        state = env.settings.paths.state
        inbox_and_outbox = [env.settings.paths.inbox, env.settings.paths.outbox]
        holding = [p for root in inbox_and_outbox for p in everything(root) if holds(p, needle)]
        assert len(holding) >= 8  # originals, rejects, receipts, export, failed, error text
        ledger_bytes = b"".join(p.read_bytes() for p in state.glob("ledger.sqlite*"))
        assert b"(+45) 2000-0001" in ledger_bytes  # the receipt's problem samples quote it

        report = forget(env.settings, env.ledger, "0045 2000 0001")

        for root in inbox_and_outbox:
            still = [p for p in everything(root) if holds(p, needle)]
            assert still == [], still
        ledger_bytes = b"".join(p.read_bytes() for p in state.glob("ledger.sqlite*"))
        assert not any(s.encode() in ledger_bytes for s in JANE[:3])
        actions = {Path(c.path).name: c.action for c in report.changes}
        assert actions[paths["a"].name] == "rewritten"
        assert actions[paths["export"].name] == "rewritten"
        assert actions[paths["b_receipt"].name] == "edited"  # its problem samples quoted it
        assert paths["a_receipt"].name not in actions  # it never named Jane's phone
        assert actions[paths["error"].name] == "edited"
        assert report.ledger_records >= 1

        # the rest is intact: other rows, other files, the ledger's exactly-once records
        assert [r.cells[1] for r in records(paths["a"])] == ["Phone", "+4520000002"]
        assert [r.cells[1] for r in records(paths["export"])] == ["Phone", "+4520000002"]
        manifest = json.loads(Path(f"{paths['export']}.manifest.json").read_text(encoding="utf-8"))
        assert manifest["rows"] == 1
        assert manifest["sha256"] == hashlib.sha256(paths["export"].read_bytes()).hexdigest()
        assert "12ab" in paths["b_rejects"].read_text(encoding="utf-8-sig")
        assert "+4520000005" in paths["b"].read_text(encoding="utf-8")
        assert "[removed]" in paths["b_receipt"].read_text(encoding="utf-8")
        rows = env.ledger.rows(key_a)
        assert [r.unique_id for r in rows] == ids
        assert [r.state for r in rows] == [RowState.ACCEPTED, RowState.ACCEPTED]

        # exactly once holds: the original content dropped again sends nothing
        posts = env.posts()
        again = env.drop("alpha.csv", a_bytes, T0 + timedelta(days=1))
        assert again.receipt.outcome is FileOutcome.ALREADY
        assert env.posts() == posts


def test_forget_deletes_originals_by_default_and_dry_run_changes_nothing(
    sb: Sandbox, tmp_path: Path
) -> None:
    with env_for(sb, tmp_path, RetentionSettings(), T0) as env:
        paths = setup(env)
        before = {p: p.read_bytes() for p in everything(tmp_path) if "state" not in p.parts}
        preview = forget(env.settings, env.ledger, "+4520000001", dry_run=True)
        assert {p: p.read_bytes() for p in before} == before
        assert preview.dry_run
        assert preview.changes
        report = forget(env.settings, env.ledger, "+4520000001")
        assert [c.path for c in report.changes] == [c.path for c in preview.changes]
        assert not paths["a"].exists()  # deleted
        assert not paths["failed"].exists()
        assert not paths["b"].exists()  # it holds her in a rejected row: deleted too
        assert paths["b_rejects"].is_file()  # reject files are rewritten, never deleted
        assert actions_of(report) >= {"deleted", "rewritten", "edited"}


def actions_of(report: object) -> set[str]:
    return {c.action for c in report.changes}  # type: ignore[attr-defined]


def test_forget_finds_the_ledgers_own_spellings_escaped_or_in_another_case(
    tmp_path: Path,
) -> None:
    """HeroBase's refusal texts quote values in the ledger only (no kept file holds them any
    more), stored as JSON with non-ASCII letters escaped, or spelled another way."""
    from pipeline.config import Paths, Settings
    from pipeline.ledger.sqlite import open_ledger

    settings = Settings(paths=Paths(tmp_path / "in", tmp_path / "out", tmp_path / "st", tmp_path))
    ledger = open_ledger(settings.paths.state)
    try:
        key = FileKey("a" * 64, CAMPAIGN)
        ledger.begin_file(key, "x.csv")
        ledger.add_rows(key, [(2, "fp2"), (3, "fp3"), (4, "fp4")])
        now = datetime.now(UTC)
        ledger.claim_for_sending(
            key, [2, 3, 4], skip_duplicates=True, attempt_utc=now, attempt_local=now
        )
        said = "does not match the field's pattern"
        ledger.record_refused(
            key, 2, "invalid", [{"field": "Email", "message": f"'søren@firma.dk' {said}"}]
        )
        ledger.record_refused(
            key, 3, "invalid", [{"field": "Phone", "message": f"'004520000001' {said}"}]
        )
        ledger.record_refused(
            key, 4, "invalid", [{"field": "Phone", "message": f"'+4599999999' {said}"}]
        )
        forget(settings, ledger, "Søren@Firma.DK")
        forget(settings, ledger, "+45 20 00 00 01")
        details = {r.row: json.dumps(r.details) for r in ledger.rows(key)}
    finally:
        ledger.close()
    data = (settings.paths.state / "ledger.sqlite").read_bytes()
    for gone in (b"s\\u00f8ren", "søren".encode(), b"004520000001"):
        assert gone not in data
    assert "+4599999999" in details[4]  # someone else's value stays


def test_forget_refuses_while_leadpipe_run_holds_the_state_folder(tmp_path: Path) -> None:
    import pytest

    from pipeline.config import Paths, Settings
    from pipeline.errors import StateError
    from pipeline.ledger.sqlite import open_ledger
    from pipeline.service.instance import InstanceLock

    settings = Settings(paths=Paths(tmp_path / "in", tmp_path / "out", tmp_path / "st", tmp_path))
    ledger = open_ledger(settings.paths.state)
    lock = InstanceLock(settings.paths.state).acquire()  # as `leadpipe run` holds it
    try:
        with pytest.raises(StateError, match="Stop it"):
            forget(settings, ledger, "someone@example.com")
        forget(settings, ledger, "someone@example.com", dry_run=True)  # a look is fine
    finally:
        lock.release()
        ledger.close()


def test_forget_names_old_ledger_copies_it_does_not_change(tmp_path: Path) -> None:
    from pipeline.config import Paths, Settings
    from pipeline.ledger.sqlite import open_ledger

    settings = Settings(paths=Paths(tmp_path / "in", tmp_path / "out", tmp_path / "st", tmp_path))
    ledger = open_ledger(settings.paths.state)
    old = settings.paths.state / "ledger.sqlite.migrated-20260301T100000Z"
    old.write_bytes(b"an earlier ledger")
    try:
        report = forget(settings, ledger, "someone@example.com")
    finally:
        ledger.close()
    assert any(str(old) in n and "delete it" in n for n in report.notes)
    assert old.read_bytes() == b"an earlier ledger"
