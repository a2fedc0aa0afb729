"""Re-drops and slow copies: "already processed" is per campaign, and a file still being written
is never reported as done (through `leadpipe run --once` and the running service)."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import openpyxl

from pipeline.config import load_settings
from pipeline.sandbox import Fault, Sandbox
from tests.dropfolder.test_real_ingest import env_for, run_once, write_config
from tests.service.conftest import service, wait_for

DK, SE = "B2B-DK-SPRING", "B2B-SE-AUTUMN"


def both_campaigns_csv(tag: str, n: int) -> bytes:
    """Rows that fit both demo campaigns (DK: name/phone/email/segment; SE: company/phone)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["Name", "Company", "Phone", "Email", "Segment"])
    for i in range(n):
        w.writerow([f"{tag} {i:03d}", f"{tag} {i:03d}", f"+45{30000000 + i:08d}", "", "SMB"])
    return out.getvalue().encode()


def stored(sb: Sandbox, campaign: str, tag: str) -> Counter[str]:
    """How many leads the campaign holds per name (DK) or company (SE) starting with ``tag``."""
    key = "company" if campaign == SE else "name"
    return Counter(
        str(lead["data"].get(key, ""))
        for lead in sb.leads(campaign)
        if str(lead["data"].get(key, "")).startswith(tag)
    )


def posts(sb: Sandbox) -> int:
    return sum(1 for r in sb.requests() if r["method"] == "POST")


def receipts(folder: Path) -> list[dict[str, object]]:
    found = sorted((folder / "processed").glob("*.receipt.json"))
    return [json.loads(p.read_text("utf-8")) for p in found]


def test_the_same_file_in_two_campaigns_is_uploaded_to_each_exactly_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url)
    env = env_for(cfg)
    data = both_campaigns_csv("TWICE", 5)
    names = {f"TWICE {i:03d}" for i in range(5)}
    wrong, right = tmp_path / "inbox" / SE, tmp_path / "inbox" / DK
    wrong.mkdir(parents=True)
    right.mkdir(parents=True)
    (wrong / "leads.csv").write_bytes(data)  # the wrong folder first
    run_once(env, tmp_path, 120)
    (right / "leads-copy.csv").write_bytes(data)  # then the right one, same content
    run_once(env, tmp_path, 120)

    assert stored(sandbox, SE, "TWICE") == dict.fromkeys(names, 1)
    assert stored(sandbox, DK, "TWICE") == dict.fromkeys(names, 1)
    (receipt,) = receipts(right)
    assert (receipt["campaign"], receipt["accepted"], receipt["earlier"]) == (DK, 5, None)
    assert any(SE in str(m) for m in receipt["messages"])  # the hint names the other campaign
    text = Path(str(receipt["receipt_file"])).read_text("utf-8")
    assert f"campaign {DK}" in text.splitlines()[0]
    assert "5 uploaded" in text


def test_a_re_drop_into_the_same_campaign_sends_nothing_and_says_0_uploaded_now(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url)
    settings = load_settings(cfg, env=env_for(cfg))
    folder = tmp_path / "inbox" / DK
    folder.mkdir(parents=True)
    data = both_campaigns_csv("AGAIN", 6)
    with service(settings) as svc:
        (folder / "first.csv").write_bytes(data)
        wait_for(lambda: svc.snapshot()["totals"]["processed"] == 1, 30, "the first drop")
        before = posts(sandbox)
        (folder / "first (2).csv").write_bytes(data)
        wait_for(lambda: svc.snapshot()["totals"]["already"] == 1, 30, "the re-drop")
        assert svc.snapshot()["totals"]["processed"] == 1  # the re-drop is counted apart
        assert posts(sandbox) == before
        latest = svc.snapshot()["recent"][0]
        assert latest["name"] == "first (2).csv"
        assert latest["counts"]["accepted"] == 0
        assert "already processed" in latest["message"]
        url = svc.info.status_url.rstrip("/")
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:  # noqa: S310
            metrics = resp.read().decode()
        with urllib.request.urlopen(svc.info.status_url, timeout=10) as resp:  # noqa: S310
            page = resp.read().decode()
    assert f"already processed for campaign {DK}" in page
    assert 'leadpipe_rows_total{outcome="accepted"} 6.0' in metrics  # 6, not 12
    first, again = sorted(receipts(folder), key=lambda r: r["earlier"] is not None)
    assert (first["accepted"], again["accepted"], again["rows_read"]) == (6, 0, 0)
    assert (first["outcome"], again["outcome"]) == ("processed", "already")
    assert again["status"] == "already processed (nothing sent again)"
    assert again["earlier"]["accepted"] == 6  # type: ignore[index]
    text = Path(str(again["receipt_file"])).read_text("utf-8")
    assert "0 uploaded now; 6 uploaded on " in text
    # where the earlier run's receipt is, as the share shows it (inside the campaign folder)
    assert f"processed/{Path(str(first['receipt_file'])).name}" in text
    assert stored(sandbox, DK, "AGAIN") == {f"AGAIN {i:03d}": 1 for i in range(6)}


def _csv_rows(tag: str, n: int) -> tuple[bytes, set[str]]:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["Name", "Phone", "Email", "Segment"])
    for i in range(n):
        w.writerow([f"{tag} company {i:04d}", f"+45{40000000 + i:08d}", "", "SMB"])
    return out.getvalue().encode(), {f"{tag} company {i:04d}" for i in range(n)}


def _xlsx_rows(path: Path, tag: str, n: int) -> set[str]:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["Name", "Phone", "Email", "Segment"])
    for i in range(n):
        ws.append([f"{tag} company {i:04d}", f"+45{50000000 + i:08d}", "", "SMB"])
    wb.save(path)
    return {f"{tag} company {i:04d}" for i in range(n)}


def _open_writer(target: Path, data: bytes, cut: int, pause: float) -> threading.Thread:
    """Write ``data[:cut]``, keep the file open for ``pause`` s, then the rest."""

    def write() -> None:
        with target.open("wb") as fh:
            fh.write(data[:cut])
            fh.flush()
            time.sleep(pause)
            fh.write(data[cut:])

    t = threading.Thread(target=write, name="slow-copy")
    t.start()
    return t


def test_a_copy_paused_longer_than_the_settle_time_is_taken_only_when_complete(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url, settle_seconds=0.5)
    settings = load_settings(cfg, env=env_for(cfg))
    folder = tmp_path / "inbox" / DK
    folder.mkdir(parents=True)
    data, names = _csv_rows("PAUSED", 40)
    book = tmp_path / "paused.xlsx"
    book_names = _xlsx_rows(book, "BOOKPAUSE", 30)
    with service(settings) as svc:
        writers = [
            _open_writer(folder / "slow.csv", data, len(data) // 2, pause=4.0),
            _open_writer(folder / "slow.xlsx", book.read_bytes(), 3000, pause=4.0),
        ]
        time.sleep(2.5)  # five settle times into the pause
        settling = {f["name"]: f for f in svc.snapshot()["campaigns"][DK]["settling"]}
        assert "still being written" in settling["slow.csv"]["problem"]
        assert "still being written" in settling["slow.xlsx"]["problem"]
        assert svc.snapshot()["totals"]["processed"] == 0
        for t in writers:
            t.join()
        wait_for(lambda: svc.snapshot()["totals"]["processed"] == 2, 60, "both files")
        assert svc.snapshot()["totals"]["failed"] == 0
    assert stored(sandbox, DK, "PAUSED") == dict.fromkeys(names, 1)
    assert stored(sandbox, DK, "BOOKPAUSE") == dict.fromkeys(book_names, 1)
    done = receipts(folder)
    assert sorted((r["rows_read"], r["accepted"]) for r in done) == [(30, 30), (40, 40)]
    assert not (folder / "failed").exists()


def test_a_file_written_to_while_it_is_read_goes_back_and_every_row_is_sent_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A writer this machine cannot see (a share's client) appends to the claimed file."""
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    sandbox.add_fault(Fault("delay", route="POST /leads", delay=0.15, times=0))
    cfg = write_config(tmp_path, sandbox.url, settle_seconds=0.5, concurrency=1)
    settings = load_settings(cfg, env=env_for(cfg))
    folder = tmp_path / "inbox" / DK
    folder.mkdir(parents=True)
    data, names = _csv_rows("GROWING", 40)
    cut = data.index(b"GROWING company 0020") + len(b"GROWING company 00")  # mid-row 22
    work = tmp_path / "inbox" / ".leadpipe" / "work" / DK
    appended = threading.Event()

    def remote_writer() -> None:
        # the copy resumes through the handle it holds: into the file wherever it now is
        wait_for(lambda: any(work.glob("*/growing.csv")) and posts(sandbox) >= 3, 30, "a claim")
        claimed = next(work.glob("*/growing.csv"))
        with claimed.open("ab") as fh:
            fh.write(data[cut:])
        appended.set()

    with service(settings) as svc:
        (folder / "growing.csv").write_bytes(data[:cut])
        writer = threading.Thread(target=remote_writer, name="remote-writer")
        writer.start()
        writer.join()
        assert appended.is_set()
        wait_for(lambda: svc.snapshot()["totals"]["changed"] >= 1, 60, "the change to be seen")
        wait_for(lambda: svc.snapshot()["totals"]["processed"] == 1, 90, "the complete file")
        snap = svc.snapshot()
        changed = [f for f in snap["recent"] if f["outcome"] == "changed"]
        assert "still being written" in changed[0]["message"]
        assert snap["totals"]["failed"] == 0
    assert stored(sandbox, DK, "GROWING") == dict.fromkeys(names, 1)
    assert posts(sandbox) == 40  # rows the partial read sent were handed over, not resent
    (receipt,) = receipts(folder)  # no receipt for the partial read
    assert (receipt["rows_read"], receipt["accepted"], receipt["duplicates"]) == (40, 40, 0)
    original = next(p for p in (folder / "processed").iterdir() if p.suffix == ".csv")
    assert original.read_bytes() == data
    assert not (folder / "failed").exists()


def test_a_workbook_cut_short_by_a_paused_copy_is_not_called_damaged(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The copy's writer is invisible here (it closed the file): the workbook cannot be opened
    when it is claimed, goes back to the inbox instead of failed/, and is taken once complete."""
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url, settle_seconds=0.5)
    settings = load_settings(cfg, env=env_for(cfg))
    folder = tmp_path / "inbox" / DK
    folder.mkdir(parents=True)
    book = tmp_path / "book.xlsx"
    names = _xlsx_rows(book, "CUTSHORT", 25)
    data = book.read_bytes()
    target = folder / "cut.xlsx"
    with service(settings) as svc:
        target.write_bytes(data[: len(data) // 2])
        wait_for(lambda: svc.snapshot()["totals"]["changed"] >= 1, 30, "the first look")
        snap = svc.snapshot()
        assert snap["totals"]["failed"] == 0
        first = next(f for f in snap["recent"] if f["outcome"] == "changed")
        assert "could not be opened" in first["message"]
        assert "goes to failed/" in first["message"]
        with target.open("ab") as fh:  # the copy resumes
            fh.write(data[len(data) // 2 :])
        wait_for(lambda: svc.snapshot()["totals"]["processed"] == 1, 60, "the complete workbook")
        assert svc.snapshot()["totals"]["failed"] == 0
    assert stored(sandbox, DK, "CUTSHORT") == dict.fromkeys(names, 1)
    assert not (folder / "failed").exists()


def test_a_damaged_workbook_still_goes_to_failed_once_it_is_not_fresh(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path, sandbox.url, settle_seconds=0.3, unreadable_grace_seconds=1.5)
    settings = load_settings(cfg, env=env_for(cfg))
    folder = tmp_path / "inbox" / DK
    folder.mkdir(parents=True)
    book = tmp_path / "book.xlsx"
    _xlsx_rows(book, "BROKEN", 5)
    (folder / "broken.xlsx").write_bytes(book.read_bytes()[:-200])  # never completed
    with service(settings) as svc:
        wait_for(lambda: svc.snapshot()["totals"]["failed"] == 1, 30, "the verdict")
        assert svc.snapshot()["totals"]["changed"] >= 1  # tried again before the verdict
    (error,) = (folder / "failed").glob("*.error.txt")
    assert "damaged" in error.read_text("utf-8")


def test_the_service_verifies_a_done_file_in_herobase_and_amends_its_receipt(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url, verify_after_minutes=0.01)  # 0.6 s
    settings = load_settings(cfg, env=env_for(cfg))
    folder = tmp_path / "inbox" / DK
    folder.mkdir(parents=True)
    data, names = _csv_rows("VERIFIED", 5)
    with service(settings) as svc:
        (folder / "verified.csv").write_bytes(data)
        wait_for(lambda: svc.snapshot()["verified"], 30, "the verification pass")
        (found,) = svc.snapshot()["verified"]
        assert found["duplicates"] == []
        assert "each of the 5 uploaded row(s) is in HeroBase once" in found["message"]
    (receipt,) = receipts(folder)
    assert receipt["verification"]["rows_checked"] == 5  # type: ignore[index]
    text = Path(str(receipt["receipt_file"])).read_text("utf-8")
    assert "Verification (" in text
    assert stored(sandbox, DK, "VERIFIED") == dict.fromkeys(names, 1)
