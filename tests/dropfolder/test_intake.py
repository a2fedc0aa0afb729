"""The drop-folder state machine, driven by a fake clock and a recording processor."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pipeline.clock import FakeClock
from pipeline.dropfolder.intake import Intake
from pipeline.dropfolder.jobs import Job, Outcome
from pipeline.dropfolder.layout import can_open, is_ignored
from pipeline.dropfolder.scan import Settling
from pipeline.errors import Unavailable
from pipeline.outcome import FileOutcome

CAMPAIGNS = ["ALPHA", "BETA", "GAMMA"]


class Recorder:
    """A processor that records what it was given and answers with a configurable outcome."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.contents: list[bytes] = []
        self.outcome = Outcome(FileOutcome.PROCESSED)

    def __call__(self, job: Job) -> Outcome:
        self.jobs.append(job)
        self.contents.append(job.path.read_bytes())
        return self.outcome

    def names(self, campaign: str | None = None) -> list[str]:
        return [j.name for j in self.jobs if campaign is None or j.campaign == campaign]


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    root = tmp_path / "inbox"
    for c in CAMPAIGNS:
        (root / c).mkdir(parents=True)
    return root


def make(inbox: Path, rec: Recorder, clock: FakeClock, **kw: object) -> Intake:
    return Intake(
        inbox,
        rec,
        campaigns=lambda: CAMPAIGNS,
        settle_seconds=5.0,
        clock=clock,
        **kw,  # type: ignore[arg-type]
    )


def settle(intake: Intake, clock: FakeClock) -> int:
    intake.sweep()
    clock.advance(5.0)
    intake.sweep()
    return intake.drain()


def final_places(inbox: Path) -> list[str]:
    """Every file in a final place, relative to the inbox (hidden work folders excluded)."""
    return sorted(
        p.relative_to(inbox).as_posix()
        for p in inbox.rglob("*")
        if p.is_file() and ".leadpipe" not in p.parts
    )


def test_ignore_rules() -> None:
    for name in [
        "~$leads.xlsx",
        ".~lock.leads.xlsx#",
        "leads.tmp",
        "leads.xlsx.part",
        "leads.crdownload",
        ".hidden.csv",
        "Thumbs.db",
        "desktop.ini",
        "8A3F2B10",
    ]:
        assert is_ignored(name), name
    for name in ["leads.xlsx", "leads.csv", "Leads 2026 (final).xlsx", "leads.rejects.xlsx"]:
        assert not is_ignored(name), name


def test_lock_and_temp_files_are_never_taken(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    intake = make(inbox, rec, clock)
    junk = [
        "~$leads.xlsx",
        ".~lock.leads.xlsx#",
        "upload.tmp",
        "big.csv.part",
        "x.crdownload",
        ".secret.csv",
        "Thumbs.db",
        "desktop.ini",
    ]
    for name in [*junk, "leads.csv"]:
        (inbox / "ALPHA" / name).write_text("name,phone\n", encoding="utf-8")
    assert settle(intake, clock) == 1
    assert rec.names() == ["leads.csv"]
    for name in junk:
        assert (inbox / "ALPHA" / name).exists()


def test_taken_only_after_size_and_mtime_stay_unchanged(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    intake = make(inbox, rec, clock)
    f = inbox / "ALPHA" / "leads.csv"
    f.write_bytes(b"name,phone\n")
    intake.sweep()
    for chunk in range(4):  # still being written: every 3 s a new chunk
        clock.advance(3.0)
        with f.open("ab") as fh:
            fh.write(f"row{chunk},1234\n".encode())
        intake.check_settling()
        assert intake.drain() == 0
    assert intake.next_deadline() == pytest.approx(clock.monotonic() + 5.0)
    clock.advance(4.9)
    intake.check_settling()
    assert intake.drain() == 0
    clock.advance(0.1)
    intake.check_settling()
    assert intake.drain() == 1
    assert rec.contents == [b"name,phone\nrow0,1234\nrow1,1234\nrow2,1234\nrow3,1234\n"]
    assert final_places(inbox)[0].startswith("ALPHA/processed/")


def test_renamed_while_settling_is_taken_under_its_final_name(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    intake = make(inbox, rec, clock)
    first = inbox / "BETA" / "download.csv"
    first.write_text("a,b\n", encoding="utf-8")
    intake.sweep()
    clock.advance(3.0)
    first.rename(inbox / "BETA" / "spring leads.csv")
    intake.sweep()
    clock.advance(3.0)
    intake.sweep()
    assert intake.drain() == 0  # the new name settles from when it was first seen
    clock.advance(2.0)
    intake.sweep()
    assert intake.drain() == 1
    assert rec.names() == ["spring leads.csv"]
    assert [p.split("_", 1)[1] for p in final_places(inbox)] == ["spring leads.csv"]


def test_deleted_while_settling_is_forgotten(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    intake = make(inbox, rec, clock)
    f = inbox / "BETA" / "oops.csv"
    f.write_text("a,b\n", encoding="utf-8")
    intake.sweep()
    assert intake.pending()
    f.unlink()
    clock.advance(5.0)
    intake.check_settling()
    intake.sweep()
    assert intake.drain() == 0
    assert not intake.pending()
    assert rec.jobs == []


def test_fifty_files_across_three_campaigns_each_once_in_order(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    intake = make(inbox, rec, clock)
    expected: dict[str, list[str]] = {c: [] for c in CAMPAIGNS}
    base = 1_700_000_000_000_000_000
    for i in range(50):
        c = CAMPAIGNS[i % 3]
        name = f"file-{49 - i:02d}.csv"  # names sort against arrival order on purpose
        p = inbox / c / name
        p.write_text(f"n,p\nx{i},1\n", encoding="utf-8")
        os.utime(p, ns=(base + i * 1000, base + i * 1000))
        expected[c].append(name)
    assert settle(intake, clock) == 50
    for c in CAMPAIGNS:
        assert rec.names(c) == expected[c]
    assert len(final_places(inbox)) == 50
    assert not list((inbox / ".leadpipe" / "work").rglob("*.csv"))


def test_one_file_at_a_time_per_campaign_campaigns_in_parallel(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    intake = make(inbox, rec, clock)
    for c in ("ALPHA", "BETA"):
        for n in ("1.csv", "2.csv"):
            (inbox / c / n).write_text("a\n", encoding="utf-8")
    intake.sweep()
    clock.advance(5.0)
    intake.sweep()
    first = intake.take()
    second = intake.take()
    assert first is not None
    assert second is not None
    assert {first[0], second[0]} == {"ALPHA", "BETA"}
    assert intake.take() is None  # both campaigns busy
    intake.run(first)
    again = intake.take()
    assert again is not None
    assert again[0] == first[0]
    intake.run(second)
    intake.run(again)
    assert intake.drain() == 1


def test_unknown_campaign_folder_goes_to_failed_explained_once(
    inbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock, rec = FakeClock(), Recorder()
    intake = make(inbox, rec, clock)
    (inbox / "NOPE").mkdir()
    for n in ("a.csv", "b.csv"):
        (inbox / "NOPE" / n).write_text("x\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="leadpipe.intake"):
        settle(intake, clock)
        intake.sweep()
    assert rec.jobs == []
    failed = sorted(p.name for p in (inbox / "NOPE" / "failed").iterdir())
    assert len(failed) == 4
    error = next(
        p for p in (inbox / "NOPE" / "failed").iterdir() if p.name.endswith("a.csv.error.txt")
    )
    text = error.read_text(encoding="utf-8")
    assert "The folder 'NOPE' is not a campaign this account can reach" in text
    assert "ALPHA, BETA, GAMMA" in text
    assert [r.message for r in caplog.records].count(
        "folder 'NOPE' is not a campaign this account can reach"
    ) == 1


def test_folder_names_match_campaigns_case_insensitively(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    intake = Intake(
        inbox, rec, campaigns=lambda: ["B2B-DK-SPRING"], settle_seconds=5.0, clock=clock
    )
    (inbox / "b2b-dk-spring").mkdir()
    (inbox / "b2b-dk-spring" / "x.csv").write_text("x\n", encoding="utf-8")
    settle(intake, clock)
    assert [(j.campaign, j.name) for j in rec.jobs] == [("B2B-DK-SPRING", "x.csv")]


def test_preview_is_validated_only_and_results_stay_beside_it(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    intake = make(inbox, rec, clock)
    preview = inbox / "ALPHA" / "preview"
    preview.mkdir()
    (preview / "check me.csv").write_text("a\n", encoding="utf-8")

    def process(job: Job) -> Outcome:
        rec(job)
        receipt = job.folder / f"{job.stamp}_{job.name}.receipt.txt"
        receipt.write_text("ok", encoding="utf-8")
        return Outcome(FileOutcome.PROCESSED, receipt=receipt, stamp=job.stamp)

    intake.processor = process
    settle(intake, clock)
    assert [(j.name, j.preview, j.folder) for j in rec.jobs] == [("check me.csv", True, preview)]
    names = sorted(p.name for p in preview.iterdir() if p.is_file())
    stamp = rec.jobs[0].stamp
    assert names == [f"{stamp}_check me.csv", f"{stamp}_check me.csv.receipt.txt"]
    settle(intake, clock)  # the checked file is not taken again
    assert len(rec.jobs) == 1


def test_failed_file_goes_to_failed_with_an_explanation(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    rec.outcome = Outcome(FileOutcome.FAILED, message="The file is not a spreadsheet.")
    intake = make(inbox, rec, clock)
    (inbox / "GAMMA" / "notes.docx").write_bytes(b"PK\x03\x04 not really")
    settle(intake, clock)
    stamp = rec.jobs[0].stamp
    assert final_places(inbox) == [
        f"GAMMA/failed/{stamp}_notes.docx",
        f"GAMMA/failed/{stamp}_notes.docx.error.txt",
    ]
    text = (inbox / "GAMMA" / "failed" / f"{stamp}_notes.docx.error.txt").read_text("utf-8")
    assert "The file is not a spreadsheet." in text
    assert "Nothing from this file was uploaded" in text


def test_interrupted_claim_is_resumed_first_never_lost(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    claim = inbox / ".leadpipe" / "work" / "ALPHA" / "202603300700000000000001-0123456789abcdef"
    claim.mkdir(parents=True)
    (claim / "interrupted.csv").write_text("a\n", encoding="utf-8")
    (claim / "results").mkdir()
    empty = inbox / ".leadpipe" / "work" / "BETA" / "202603300700000000000002-0123456789abcdee"
    empty.mkdir(parents=True)  # its file had already reached its final place
    (inbox / "ALPHA" / "new.csv").write_text("b\n", encoding="utf-8")
    intake = make(inbox, rec, clock)
    settle(intake, clock)
    assert rec.names() == ["interrupted.csv", "new.csv"]
    assert rec.jobs[0].resumed
    assert rec.jobs[0].stamp == "20260330-070000"
    assert not empty.exists()
    assert not any((inbox / ".leadpipe" / "work").rglob("*.csv"))
    assert len(final_places(inbox)) == 2


def test_api_down_files_wait_in_the_inbox_and_resume_by_themselves(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    api_up = False

    def probe() -> None:
        if not api_up:
            raise Unavailable("connection refused")

    rec.outcome = Outcome(FileOutcome.WAITING, message="waiting for the API: connection refused")
    intake = make(inbox, rec, clock, probe=probe)
    for n in ("1.csv", "2.csv"):
        (inbox / "ALPHA" / n).write_text("a\n", encoding="utf-8")
    settle(intake, clock)
    assert rec.names() == ["1.csv"]
    assert intake.waiting_for_api()
    assert sorted(p.name for p in (inbox / "ALPHA").iterdir() if p.is_file()) == ["1.csv", "2.csv"]
    assert not (inbox / "ALPHA" / "failed").exists()
    now = intake.status()
    assert now.waiting_for_api
    assert "connection refused" in now.api_problem

    rec.outcome = Outcome(FileOutcome.PROCESSED)
    for _ in range(3):  # cooldown over, probe still fails: nothing is taken
        clock.advance(60.0)
        intake.sweep()
        assert intake.drain() == 0
    api_up = True
    clock.advance(120.0)
    intake.sweep()
    assert intake.drain() == 2
    assert not intake.waiting_for_api()
    assert rec.names() == ["1.csv", "1.csv", "2.csv"]


def test_repeated_uncertain_outcomes_open_the_breaker(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    rec.outcome = Outcome(FileOutcome.PROCESSED, uncertain=2)
    intake = make(inbox, rec, clock)
    for i in range(5):
        (inbox / "BETA" / f"{i}.csv").write_text("a\n", encoding="utf-8")
    settle(intake, clock)
    assert len(rec.jobs) == 3
    assert intake.waiting_for_api()
    assert "uncertain" in intake.status().api_problem


def test_inbox_vanishing_is_reported_and_survived(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    intake = make(inbox, rec, clock)
    (inbox / "ALPHA" / "a.csv").write_text("a\n", encoding="utf-8")
    intake.sweep()
    moved = inbox.with_name("elsewhere")
    inbox.rename(moved)
    clock.advance(5.0)
    intake.sweep()
    now = intake.status()
    assert not now.inbox_ok
    assert "is not reachable" in now.inbox_problem
    assert intake.drain() == 0
    moved.rename(inbox)
    intake.sweep()
    clock.advance(5.0)
    intake.sweep()
    assert intake.status().inbox_ok
    assert intake.drain() == 1


def test_symlinks_and_fifos_are_not_taken(inbox: Path, tmp_path: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    intake = make(inbox, rec, clock)
    target = tmp_path / "outside.csv"
    target.write_text("secret\n", encoding="utf-8")
    (inbox / "ALPHA" / "link.csv").symlink_to(target)
    os.mkfifo(inbox / "ALPHA" / "pipe.csv")
    settle(intake, clock)
    assert rec.jobs == []


def test_a_file_that_cannot_be_opened_yet_is_retried_not_forgotten(inbox: Path) -> None:
    locked = {"now": True}  # stands in for a lock held by another program (Windows shares)
    clock, rec = FakeClock(), Recorder()
    intake = make(inbox, rec, clock)
    # the settle policy is its own part: given an opener that reports the lock
    intake.settling = Settling(5.0, clock, openable=lambda p: not locked["now"] and can_open(p))
    (inbox / "ALPHA" / "locked.csv").write_text("a\n", encoding="utf-8")
    settle(intake, clock)
    assert rec.jobs == []
    item = intake.status().campaigns["ALPHA"].settling[0]
    assert item.problem == "cannot be opened yet (still locked by another program?)"
    locked["now"] = False
    clock.advance(5.0)
    intake.check_settling()
    assert intake.drain() == 1
    assert rec.names() == ["locked.csv"]


def test_campaign_list_is_asked_once_a_minute_not_at_every_sweep(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    calls: list[float] = []

    def campaigns() -> list[str]:
        calls.append(clock.monotonic())
        return CAMPAIGNS

    (inbox / "NOPE").mkdir()
    intake = Intake(inbox, rec, campaigns=campaigns, settle_seconds=5.0, clock=clock)
    for _ in range(10):
        intake.sweep()
        clock.advance(1.0)
    assert len(calls) == 1
    clock.advance(60.0)
    intake.sweep()
    assert len(calls) == 2


def test_an_account_that_may_not_list_campaigns_tries_every_folder(inbox: Path) -> None:
    from pipeline.errors import NotPermitted

    def campaigns() -> list[str]:
        raise NotPermitted("403: the account lacks Campaigns: GET")

    clock, rec = FakeClock(), Recorder()
    intake = Intake(inbox, rec, campaigns=campaigns, settle_seconds=5.0, clock=clock)
    (inbox / "BETA" / "b.csv").write_text("b\n", encoding="utf-8")
    settle(intake, clock)
    assert rec.names() == ["b.csv"]
    assert not intake.waiting_for_api()


def test_files_at_the_top_of_the_inbox_are_shown_not_taken(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    intake = make(inbox, rec, clock)
    (inbox / "leads.xlsx").write_bytes(b"PK")
    (inbox / "~$leads.xlsx").write_bytes(b"lock")
    settle(intake, clock)
    assert rec.jobs == []
    assert intake.status().stray == ("leads.xlsx",)
    assert (inbox / "leads.xlsx").exists()


def test_a_file_that_sent_nothing_does_not_close_a_pause_for_the_api(inbox: Path) -> None:
    clock, rec = FakeClock(), Recorder()
    intake = make(inbox, rec, clock)  # no probe: the next file taken is the try
    for kind in (FileOutcome.CANCELLED, FileOutcome.ALREADY):
        intake.breaker.trip("the API is not answering (connection refused)")
        clock.advance(3600.0)  # the pause's cooldown is over: one file may try
        rec.outcome = Outcome(kind)
        (inbox / "ALPHA" / f"{kind.value}.csv").write_text("a\n", encoding="utf-8")
        settle(intake, clock)
        assert rec.names()[-1] == f"{kind.value}.csv"
        # a cancelled or already-done file spoke to no API: no sign that the API is back
        assert intake.waiting_for_api(), kind
