"""The intake's parts, each built and driven alone: no inbox on disk, no processor, no threads."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.clock import FakeClock
from pipeline.dropfolder.campaigns import LIST_REFRESH, CampaignDirectory
from pipeline.dropfolder.jobs import Job
from pipeline.dropfolder.queues import Queues, ResumedClaim
from pipeline.dropfolder.scan import IGNORED_IRREGULAR, InboxListing, SeenFile, Settling
from pipeline.errors import NotPermitted, Unavailable


@dataclass
class FakeEntry:
    """What ``os.scandir`` yields, for a tree that exists only in a dict."""

    path: str
    folder: bool

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def is_dir(self, follow_symlinks: bool = True) -> bool:
        return self.folder

    def is_file(self, follow_symlinks: bool = True) -> bool:
        return not self.folder


def fake_scandir(tree: dict[str, list[str]]) -> object:
    """A scandir over ``tree``: folder -> names (a name ending in "/" is a folder)."""

    def scandir(path: Path) -> Iterable[FakeEntry]:
        names = tree.get(str(path))
        if names is None:
            raise FileNotFoundError(str(path))
        return [FakeEntry(f"{path}/{n.rstrip('/')}", n.endswith("/")) for n in names]

    return scandir


def test_a_listing_is_a_value_taken_through_the_given_scandir() -> None:
    scandir = fake_scandir(
        {
            "/in": ["ALPHA/", "BETA/", ".leadpipe/", "stray.csv", "~$lock.xlsx"],
            "/in/ALPHA": ["a.csv", "processed/", "preview/", "b.xlsx", "x.tmp"],
            "/in/ALPHA/preview": ["p.csv", "p.csv.receipt.txt", "q.csv"],
            "/in/BETA": [],
        }
    )
    listing = InboxListing.of(Path("/in"), scandir)  # type: ignore[arg-type]
    assert listing.folders == ("ALPHA", "BETA")
    assert listing.stray == ("stray.csv",)
    inputs = sorted((f, p.name, preview) for f, p, preview in listing.inputs)
    # results folders, temp files and previews already answered are not input
    assert inputs == [
        ("ALPHA", "a.csv", False),
        ("ALPHA", "b.xlsx", False),
        ("ALPHA", "q.csv", True),
    ]


def stat_result(size: int, mtime: float, mode: int = stat.S_IFREG | 0o644) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, 0, 0, size, mtime, mtime, mtime))


def test_settling_waits_for_the_settle_time_and_starts_again_on_a_change() -> None:
    clock = FakeClock()
    old = clock.now().timestamp() - 3600
    files = {Path("/in/A/a.csv"): stat_result(10, old)}
    settling = Settling(
        5.0,
        clock,
        trust_ctime=False,  # only what we observe counts
        lstat=lambda p: files[p],
        openable=lambda p: True,
        being_written=lambda p: False,
    )
    path = Path("/in/A/a.csv")
    found = settling.look(path)
    assert found is not None
    assert settling.record(path, found, "A", False, unknown=False) is not None
    assert settling.settled(clock.monotonic()) == []
    clock.advance(3.0)
    files[path] = stat_result(20, old + 1)  # still growing
    changed = settling.record(path, files[path], "A", False, unknown=False)
    assert changed is not None
    assert changed[1] is not None
    assert changed[1].size == 10
    clock.advance(3.0)
    assert settling.settled(clock.monotonic()) == []  # 3 s since the change, not 6
    assert settling.next_deadline() == clock.monotonic() + 2.0
    clock.advance(2.0)
    assert [e.size for e in settling.settled(clock.monotonic())] == [20]


def test_settling_holds_a_file_another_program_writes_and_ignores_irregular_entries() -> None:
    clock = FakeClock()
    writing = {"now": True}
    settling = Settling(
        1.0,
        clock,
        trust_ctime=False,
        lstat=lambda p: stat_result(1, 0.0),
        openable=lambda p: True,
        being_written=lambda p: writing["now"],
    )
    settling.record(Path("/a.csv"), stat_result(1, 0.0), "A", False, unknown=False)
    settling.record(
        Path("/pipe.csv"), stat_result(0, 0.0, stat.S_IFIFO | 0o644), "A", False, unknown=False
    )
    clock.advance(1.0)
    assert settling.settled(clock.monotonic()) == []
    by_name = {e.path.name: e for e in settling}
    assert by_name["a.csv"].problem.startswith("still being written")
    assert by_name["pipe.csv"].problem == IGNORED_IRREGULAR
    writing["now"] = False
    clock.advance(1.0)
    assert [e.path.name for e in settling.settled(clock.monotonic())] == ["a.csv"]


def seen(name: str, campaign: str, mtime_ns: int) -> SeenFile:
    return SeenFile(Path(f"/in/{campaign}/{name}"), campaign, False, 1, mtime_ns, 0.0)


def test_queues_hand_out_resumed_claims_first_then_oldest_one_per_campaign() -> None:
    queues = Queues()
    queues.add("A", seen("new.csv", "A", 200))
    queues.add("A", seen("old.csv", "A", 100))
    queues.add("B", seen("b.csv", "B", 150))
    job = Job("A", "resumed.csv", Path("/w/A/c1/resumed.csv"), Path("/in/A"), False, "s", "h")
    queues.add("A", ResumedClaim(job))
    first = queues.pick(lambda c: True)
    assert first is not None
    assert isinstance(first[1], ResumedClaim)
    second = queues.pick(lambda c: True)  # A is busy: B's file, though A has an older one
    assert second is not None
    assert isinstance(second[1], SeenFile)
    assert second[1].path.name == "b.csv"
    assert queues.pick(lambda c: True) is None
    queues.done("A", job)
    third = queues.pick(lambda c: True)
    assert third is not None
    assert isinstance(third[1], SeenFile)
    assert third[1].path.name == "old.csv"
    assert queues.depth == 1
    assert queues.in_progress == 2


def test_the_campaign_list_is_refreshed_for_an_unknown_folder_at_most_once_a_minute() -> None:
    clock = FakeClock()
    calls: list[float] = []
    answer = [["ALPHA"]]

    def campaigns() -> list[str]:
        calls.append(clock.monotonic())
        return list(answer[0])

    directory = CampaignDirectory(campaigns, clock)
    assert directory.update(["alpha"]) is None
    assert directory.code_for("alpha") == "ALPHA"
    assert directory.update(["alpha", "NEW"]) is None  # asked a moment ago: not again yet
    assert len(calls) == 1
    assert directory.code_for("NEW") is None
    answer[0] = ["ALPHA", "NEW"]
    clock.advance(LIST_REFRESH)
    directory.update(["alpha", "NEW"])
    assert directory.code_for("new") == "NEW"
    assert len(calls) == 2


def test_the_campaign_list_failing_pauses_taking_and_a_refusal_takes_every_folder() -> None:
    clock = FakeClock()
    answer: list[Exception] = [Unavailable("503")]

    def campaigns() -> list[str]:
        raise answer[0]

    directory = CampaignDirectory(campaigns, clock)
    problem = directory.update(["ALPHA"])
    assert problem is not None
    assert "cannot list the campaigns" in problem
    assert not directory.ready
    answer[0] = NotPermitted("403: no right to list campaigns")
    clock.advance(60)
    assert directory.update(["ALPHA"]) is None
    assert directory.ready
    assert directory.accept_all
