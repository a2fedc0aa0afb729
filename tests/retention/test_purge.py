"""Retention: what is due at ``now`` (pure), the purge over ingested files with a fake clock,
and exactly-once after a purge (a re-drop of purged content sends nothing)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.config import RetentionSettings, load_settings
from pipeline.errors import ConfigError
from pipeline.ledger import FileKey, FileState, RowState
from pipeline.outcome import FileOutcome
from pipeline.retention.kept import Kept, KeptFile, LedgerFile, list_kept
from pipeline.retention.purge import due, plan_purge, purge
from pipeline.sandbox import Sandbox
from tests.retention.helpers import env_for, leads_csv

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
BAD = "99XX-BAD-PHONE"  # a value only a rejected row and the receipt's samples quote


def kept(name: str, kind: Kept, age_days: float, now: datetime) -> KeptFile:
    return KeptFile(Path(name), kind, "C", now - timedelta(days=age_days))


def test_due_is_exactly_what_is_older_than_its_period() -> None:
    now = T0 + 400 * DAY
    policy = RetentionSettings(
        originals_days=90, rejects_days=30, receipts_days=0, failed_days=10, exports_days=7
    )
    files = [
        kept("old-original", Kept.ORIGINALS, 91, now),
        kept("new-original", Kept.ORIGINALS, 89, now),
        kept("exactly-90", Kept.ORIGINALS, 90, now),
        kept("old-rejects", Kept.REJECTS, 31, now),
        kept("new-rejects", Kept.REJECTS, 29, now),
        kept("ancient-receipt", Kept.RECEIPTS, 3000, now),  # 0: kept forever
        kept("old-failed", Kept.FAILED, 11, now),
        kept("old-export", Kept.EXPORTS, 8, now),
        kept("new-export", Kept.EXPORTS, 6, now),
    ]
    records = [
        LedgerFile(FileKey("a" * 64, "C"), "a.csv", FileState.DONE, now - 91 * DAY, False),
        LedgerFile(FileKey("b" * 64, "C"), "b.csv", FileState.DONE, now - 89 * DAY, False),
        LedgerFile(FileKey("c" * 64, "C"), "c.csv", FileState.DONE, now - 99 * DAY, True),
    ]
    plan = due(policy, now, files, records)
    assert sorted(str(f.path) for f in plan.files) == [
        "old-export",
        "old-failed",
        "old-original",
        "old-rejects",
    ]
    assert [r.name for r in plan.ledger] == ["a.csv"]  # c.csv: its values are gone already
    forever = RetentionSettings(*(0,) * 6)
    assert due(forever, now, files, records).empty


def test_retention_config_is_checked_whole(tmp_path: Path) -> None:
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text(
        "[retention]\noriginals_days = -1\nledger_days = -5\nforget_originals = 'shred'\n"
        "keep = 3\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(cfg, env={})
    said = {p.key: p.message for p in caught.value.problems}
    assert said == {
        "retention.originals_days": "must be a number of days, or 0 to keep forever; got -1",
        "retention.ledger_days": "must be a number of days, or 0 to keep forever; got -5",
        "retention.forget_originals": "must be 'delete' or 'rewrite'",
        "retention.keep": said["retention.keep"],
    }
    assert said["retention.keep"].startswith("unknown key (known: exports_days, failed_days")
    cfg.write_text("[retention]\nexports_days = 0\n", encoding="utf-8")
    s = load_settings(cfg, env={})
    assert s.retention.exports_days == 0  # explicitly kept forever
    assert s.retention.originals_days == 90  # the stated default


def test_purge_deletes_exactly_what_is_due_and_a_redrop_sends_nothing(
    sb: Sandbox, tmp_path: Path
) -> None:
    policy = RetentionSettings(
        originals_days=90,
        rejects_days=30,
        receipts_days=365,
        failed_days=30,
        exports_days=30,
        ledger_days=60,
    )
    with env_for(sb, tmp_path, policy, T0) as env:
        a_bytes = leads_csv("Alpha", ["+4520000001", "+4520000002"], [BAD])
        a = env.drop("alpha.csv", a_bytes, T0)
        b = env.drop("beta.csv", leads_csv("Beta", ["+4520000003"], ["77YY-OTHER"]), T0 + 50 * DAY)
        assert (a.receipt.accepted, a.receipt.rejected) == (2, 1)
        assert a.rejects
        assert b.rejects
        key_a = FileKey(a.receipt.sha256, a.receipt.campaign)
        assert any(BAD in s for s in a.receipt.problems_sample)  # the receipt quotes it
        # an export written 30 days after T0, and one written recently
        outbox = env.settings.paths.outbox / "daily"
        outbox.mkdir(parents=True)
        old_export, new_export = outbox / "daily_old.csv", outbox / "daily_new.csv"
        for path, when in ((old_export, T0 + 30 * DAY), (new_export, T0 + 65 * DAY)):
            path.write_text("Phone\n+4520000009\n", encoding="utf-8")
            path.with_name(path.name + ".manifest.json").write_text("{}", encoding="utf-8")
            os.utime(path, (when.timestamp(), when.timestamp()))
        before = {p for p in tmp_path.rglob("*") if p.is_file()}

        # 70 days after A: A's rejects (30) and ledger values (60) and the old export (30)
        plan = plan_purge(env.settings, env.ledger, T0 + 70 * DAY)
        assert sorted(p.path for p in plan.files) == sorted([*a.rejects, old_export])
        assert [r.key for r in plan.ledger] == [key_a]
        report = purge(env.settings, env.ledger, T0 + 70 * DAY)
        assert report.scrubbed == 1
        gone = before - {p for p in tmp_path.rglob("*") if p.is_file()}
        manifest = old_export.with_name(old_export.name + ".manifest.json")
        assert gone == {*a.rejects, old_export, manifest}
        assert a.original.is_file()
        assert a.receipt_txt.is_file()
        assert all(p.is_file() for p in b.rejects)

        # the ledger keeps what exactly-once needs, not the values
        record = env.ledger.file(key_a)
        assert record is not None
        assert record.state is FileState.DONE
        kept_receipt = json.loads(record.receipt_json or "{}")
        assert kept_receipt["problems_sample"] == []
        assert kept_receipt["accepted"] == 2
        rows = env.ledger.rows(key_a)
        assert [r.state for r in rows] == [RowState.ACCEPTED, RowState.ACCEPTED]
        assert all(r.unique_id and r.fingerprint for r in rows)
        assert BAD.encode() not in (env.settings.paths.state / "ledger.sqlite").read_bytes()
        # nothing more is due the same day: a second purge changes nothing
        assert plan_purge(env.settings, env.ledger, T0 + 70 * DAY).empty

        # 100 days after A: A's original (90) goes; B's original (50 days) stays
        purge(env.settings, env.ledger, T0 + 100 * DAY)
        assert not a.original.exists()
        assert a.receipt_txt.is_file()
        assert b.original.is_file()
        json_of = [
            p.with_name(p.name.replace(".txt", ".json")) for p in (a.receipt_txt, b.receipt_txt)
        ]
        assert {f.path for f in list_kept(env.settings)} == {
            b.original,  # 50 days: kept
            a.receipt_txt,
            b.receipt_txt,
            *json_of,
        }  # B's rejects (50 days) and the newer export (35 days) are past their 30 days too

        # the same content dropped again: recognised, nothing sent
        posts = env.posts()
        leads = len(sb.leads())
        again = env.drop("alpha-again.csv", a_bytes, T0 + 101 * DAY)
        assert again.receipt.outcome is FileOutcome.ALREADY
        assert again.receipt.accepted == 0
        assert (again.receipt.earlier or {})["accepted"] == 2
        assert env.posts() == posts
        assert len(sb.leads()) == leads


def test_unstamped_preview_files_and_zero_days_are_never_purged(
    sb: Sandbox, tmp_path: Path
) -> None:
    with env_for(sb, tmp_path, RetentionSettings(*(0,) * 6), T0) as env:
        a = env.drop("alpha.csv", leads_csv("Alpha", ["+4520000001"], [BAD]), T0)
        preview = env.folder / "preview"
        preview.mkdir()
        (preview / "waiting.csv").write_text("Phone\n1\n", encoding="utf-8")
        os.utime(preview / "waiting.csv", (0, 0))
        assert plan_purge(env.settings, env.ledger, T0 + 10_000 * DAY).empty
        assert all(f.path.name != "waiting.csv" for f in list_kept(env.settings))
        assert a.original.is_file()


def test_a_waiting_files_values_age_too_and_a_file_taken_again_meanwhile_is_left(
    tmp_path: Path,
) -> None:
    """A cancelled file (or one with rows left unsent) waits for good: its quoted values must
    not outlive the period; a file that is taken again between plan and purge is left."""
    from pipeline.config import Paths, Settings
    from pipeline.ledger.sqlite import open_ledger
    from pipeline.retention.purge import apply_purge

    settings = Settings(paths=Paths(tmp_path / "in", tmp_path / "out", tmp_path / "st", tmp_path))
    ledger = open_ledger(settings.paths.state)
    try:
        waiting, again = FileKey("d" * 64, "C"), FileKey("e" * 64, "C")
        for key, name in ((waiting, "w.csv"), (again, "a.csv")):
            ledger.begin_file(key, name)
            ledger.add_rows(key, [(2, "fp")])
            ledger.claim_for_sending(
                key, [2], skip_duplicates=True, attempt_utc=T0, attempt_local=T0
            )
            ledger.record_refused(key, 2, "invalid", [{"field": "Phone", "message": BAD}])
            ledger.set_file_state(key, FileState.WAITING, f"cancelled; {BAD}")
        now = datetime.now(UTC) + 91 * DAY
        plan = plan_purge(settings, ledger, now)
        assert sorted(r.name for r in plan.ledger) == ["a.csv", "w.csv"]
        ledger.set_file_state(again, FileState.PROCESSING)  # dropped again meanwhile
        apply_purge(plan, ledger)
        assert BAD not in json.dumps(ledger.rows(waiting)[0].details)
        assert ledger.file(waiting).reason == ""  # type: ignore[union-attr]
        assert ledger.rows(waiting)[0].state is RowState.REFUSED  # states stay
        assert BAD in json.dumps(ledger.rows(again)[0].details)  # at work: not touched
    finally:
        ledger.close()
