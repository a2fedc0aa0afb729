"""The service with the real ingest against the sandbox over HTTP: crashes, readers, --once."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Fault, Sandbox
from pipeline.service.run import run_service
from tests.service.conftest import wait_for

CODE = "B2B-DK-SPRING"


def leads_csv(tag: str, valid: int, invalid: int) -> tuple[bytes, list[str]]:
    """A CSV for the demo campaign; returns the content and the names of the valid rows."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["Name", "Phone", "Email", "Segment"])
    names = []
    for i in range(valid):
        name = f"{tag} company {i:04d}"
        names.append(name)
        w.writerow([name, f"+45{20000000 + i:08d}", f"x{i}@{tag.lower()}.dk", "SMB"])
    for i in range(invalid):
        w.writerow([f"{tag} broken {i}", "12ab", "not-an-email", "Huge"])
    return out.getvalue().encode(), names


def write_config(
    root: Path,
    api_url: str,
    *,
    requests_per_minute: int = 60000,
    read_timeout: float = 5,
    **intake: object,
) -> Path:
    values = {"settle_seconds": 0.2, "sweep_seconds": 1, "concurrency": 4}
    values.update(intake)
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
    cfg = root / "leadpipe.toml"
    cfg.write_text(
        f'[paths]\ninbox = "inbox"\noutbox = "outbox"\nstate = "state"\nschemas = "schemas"\n'
        f'[api]\nurl = "{api_url}"\nrequests_per_minute = {requests_per_minute}\n'
        f"read_timeout = {read_timeout}\n"
        f"[intake]\n{lines}\n[status]\nport = 0\n",
        encoding="utf-8",
    )
    return cfg


def env_for(cfg: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPIPE_")}
    env.update(
        LEADPIPE_CONFIG=str(cfg),
        LEADPIPE_API_USER=DEMO_USER,
        LEADPIPE_API_PASSWORD=DEMO_PASSWORD,
    )
    return env


def leadpipe(*args: str) -> list[str]:
    return [sys.executable, "-c", "from pipeline.cli import main; main()", *args]


def start_run(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """`leadpipe run` as a child process, its output in ``cwd/run.log`` (returned too)."""
    log = cwd / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            leadpipe("run"), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
    return proc, log


@dataclass(frozen=True)
class Stopped:
    """How a ``leadpipe run`` ended after a SIGTERM."""

    code: int
    seconds: float  #: from the signal to the exit
    log: str  #: what it printed


def sigterm_while_uploading(
    sandbox: Sandbox,
    env: dict[str, str],
    cwd: Path,
    *,
    posts: int,
    wait: float,
) -> Stopped:
    """Start `leadpipe run`, SIGTERM it once ``posts`` uploads reached the sandbox."""
    proc, log = start_run(env, cwd)
    try:
        wait_for(
            lambda: sum(1 for r in sandbox.requests() if r["method"] == "POST") >= posts,
            60,
            "uploads to be in flight",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    return Stopped(code, time.monotonic() - started, log.read_text(encoding="utf-8"))


def run_once(env: dict[str, str], cwd: Path, timeout: float) -> None:
    """`leadpipe run --once` in a subprocess; it must exit 0."""
    done = subprocess.run(
        leadpipe("run", "--once"),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def created(sb: Sandbox, tag: str) -> Counter[str]:
    """How many leads the sandbox stores per name of ours."""
    return Counter(
        lead["data"]["name"]
        for lead in sb.leads(CODE)
        if str(lead.get("data", {}).get("name", "")).startswith(tag)
    )


@pytest.mark.slow
def test_kill_9_while_uploading_then_restart_every_row_once_every_file_in_one_place(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    sandbox.add_fault(Fault("delay", route="POST /leads", delay=0.02, times=0))
    cfg = write_config(tmp_path, sandbox.url)
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    expected: list[str] = []
    for n in range(3):
        data, names = leads_csv(f"KILL{n}", valid=60, invalid=3)
        (inbox / f"batch-{n}.csv").write_bytes(data)
        expected += names

    env = env_for(cfg)
    for kill_after in (15, 70, 140):  # kill -9 three times, at different points of the upload
        proc = subprocess.Popen(
            leadpipe("run"),
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(
                lambda n=kill_after: (
                    sum(  # type: ignore[misc]
                        1 for r in sandbox.requests() if r["method"] == "POST"
                    )
                    >= n
                ),
                60,
                "uploads to start",
            )
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    sandbox.clear_faults()
    run_once(env, tmp_path, 180)

    counts = created(sandbox, "KILL")
    assert sorted(counts) == sorted(expected)
    assert set(counts.values()) == {1}, [n for n, c in counts.items() if c > 1]
    work = tmp_path / "inbox" / ".leadpipe" / "work"
    assert not [p for p in work.rglob("*") if p.is_file()]
    originals = sorted(p.name.split("_", 1)[1] for p in (inbox / "processed").glob("*.csv"))
    assert originals == ["batch-0.csv", "batch-1.csv", "batch-2.csv"]
    assert not (inbox / "failed").exists()
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == []
    for receipt in (inbox / "processed").glob("*.receipt.json"):
        r = json.loads(receipt.read_text(encoding="utf-8"))
        assert r["rejected"] == 3
        assert r["accepted"] + r["duplicates"] == 60


def _complete(path: Path, originals: dict[str, bytes]) -> str | None:
    """None when ``path`` is a complete file of its kind; else what is wrong."""
    data = path.read_bytes()
    name = path.name
    if name.endswith(".receipt.json"):
        try:
            json.loads(data)
        except ValueError:
            return "receipt JSON does not parse"
        return None
    if name.endswith(".receipt.txt"):
        return None if b"File SHA-256:" in data and data.endswith(b"\n") else "receipt cut short"
    if name.endswith(".rejects.xlsx"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                return None if z.testzip() is None else "xlsx damaged"
        except zipfile.BadZipFile:
            return "xlsx is not a complete zip"
    if name.endswith(".rejects.csv"):
        return None if data.count(b"\r\n") == 501 else "rejects cut short"
    if name.endswith(".error.txt"):
        return None if data.endswith(b"again.\n") else "error text cut short"
    original = originals.get(name.split("_", 1)[1])
    return None if original == data else f"original {name} differs from what was dropped"


@pytest.mark.slow
def test_a_reader_polling_the_result_folders_never_sees_a_partial_file(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url, campaign_parallelism=2)
    settings = load_settings(cfg, env=env_for(cfg))
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    originals: dict[str, bytes] = {}
    for n in range(4):
        data, _ = leads_csv(f"R{n}", valid=20, invalid=500)
        originals[f"file-{n}.csv"] = data
    originals["broken.csv"] = b"\x00\x01\x02 not a table"
    problems: list[str] = []
    checked: set[Path] = set()
    finished = threading.Event()

    def reader() -> None:
        folders = [inbox / "processed", inbox / "rejected", inbox / "failed"]
        while not finished.is_set():
            for folder in folders:
                try:
                    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
                except OSError:
                    continue
                for p in entries:
                    if p in checked:
                        continue
                    try:
                        why = _complete(p, originals)
                    except OSError:
                        continue
                    if why:
                        problems.append(f"{p.name}: {why}")
                    checked.add(p)
            time.sleep(0.01)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for name, data in originals.items():
            (inbox / name).write_bytes(data)
        result = run_service(settings, once=True, status_page=False)
    finally:
        time.sleep(0.1)
        finished.set()
        t.join(10)
    assert (result.processed, result.failed) == (4, 1)
    assert problems == []
    assert len(checked) == 4 * 5 + 2


@pytest.mark.slow
def test_sigterm_while_uploading_exits_0_within_10_s_and_the_rerun_completes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    sandbox.add_fault(Fault("delay", route="POST /leads", delay=0.05, times=0))
    cfg = write_config(tmp_path, sandbox.url)
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    data, names = leads_csv("TERM", valid=200, invalid=0)
    (inbox / "big.csv").write_bytes(data)
    env = env_for(cfg)
    stopped = sigterm_while_uploading(sandbox, env, tmp_path, posts=20, wait=15)
    assert stopped.seconds < 10.0
    assert stopped.code == 0, stopped.log
    assert len(list((tmp_path / "inbox" / ".leadpipe" / "work").rglob("big.csv"))) == 1
    sandbox.clear_faults()
    run_once(env, tmp_path, 120)
    counts = created(sandbox, "TERM")
    assert sorted(counts) == sorted(names)
    assert set(counts.values()) == {1}
    assert [p.name.split("_", 1)[1] for p in (inbox / "processed").glob("*.csv")] == ["big.csv"]


@pytest.mark.slow
def test_api_down_files_wait_in_the_inbox_then_resume_by_themselves(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    from tests.service.conftest import service

    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url)
    settings = load_settings(cfg, env=env_for(cfg))
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    with service(settings) as svc:
        first, _ = leads_csv("UP", valid=3, invalid=0)
        (inbox / "first.csv").write_bytes(first)
        wait_for(lambda: svc.snapshot()["totals"]["processed"] == 1, 30, "the first file")
        sandbox.add_fault(Fault("status", route="*", status=503, times=0))
        data, names = leads_csv("DOWN", valid=5, invalid=0)
        (inbox / "second.csv").write_bytes(data)
        wait_for(lambda: svc.snapshot()["waiting_for_api"], 30, "the breaker to open")
        snap = svc.snapshot()
        assert (inbox / "second.csv").read_bytes() == data  # waits in the inbox, unchanged
        assert not (inbox / "failed").exists()
        assert snap["totals"]["failed"] == 0
        status, body = _page(svc)
        assert status == 200
        assert "waiting for the API" in body
        sandbox.clear_faults()
        wait_for(lambda: svc.snapshot()["totals"]["processed"] == 2, 60, "the resumption")
        assert not svc.snapshot()["waiting_for_api"]
    assert sorted(created(sandbox, "DOWN")) == sorted(names)
    assert set(created(sandbox, "DOWN").values()) == {1}


def _page(svc: object) -> tuple[int, str]:
    import urllib.request

    url = svc.info.status_url  # type: ignore[attr-defined]
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback)
        return resp.status, resp.read().decode()


def test_interrupted_between_the_result_renames_the_rerun_names_the_earlier_rejects(
    tmp_path: Path,
) -> None:
    from tests.service.conftest import make_settings

    demo = Path(__file__).resolve().parents[2] / "examples" / "B2B-DK-SPRING-demo.xlsx"
    settings = make_settings(tmp_path)
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    (inbox / demo.name).write_bytes(demo.read_bytes())
    run_service(settings, once=True, status_page=False)  # embedded sandbox, kept in state/
    rejects = sorted((inbox / "rejected").iterdir())
    assert len(rejects) == 2
    # as if killed after the reject files were renamed, before receipt and original were
    original = next((inbox / "processed").glob("*_B2B-DK-SPRING-demo.xlsx"))
    claim = tmp_path / "inbox" / ".leadpipe" / "work" / CODE / "20261127120000000000-0123abcd"
    claim.mkdir(parents=True)
    original.rename(claim / demo.name)
    for receipt in (inbox / "processed").iterdir():
        receipt.unlink()
    result = run_service(settings, once=True, status_page=False)
    assert (result.processed, result.failed) == (1, 0)
    receipt = json.loads(next((inbox / "processed").glob("*.receipt.json")).read_text("utf-8"))
    assert receipt["reject_files"] == [str(rejects[1]), str(rejects[0])]  # xlsx first
    assert sorted((inbox / "rejected").iterdir()) == rejects
    assert (receipt["accepted"], receipt["rejected"]) == (6, 4)
    assert not [p for p in claim.parent.rglob("*") if p.is_file()]


def test_kill_9_after_the_ledger_says_done_delivers_one_receipt_naming_its_rejects(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Killed when the file is done in the ledger but its reject files and receipt are not in
    place yet: the restart puts them in place, once, and sends nothing again."""
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url)
    inbox = tmp_path / "inbox" / CODE
    inbox.mkdir(parents=True)
    data, names = leads_csv("DONE", valid=5, invalid=2)
    (inbox / "done.csv").write_bytes(data)
    env = {**env_for(cfg), "LEADPIPE_CRASH_AT": "done_recorded"}
    crashed = subprocess.run(
        leadpipe("run", "--once"), env=env, cwd=tmp_path, capture_output=True, timeout=120
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert not list(inbox.glob("*/*.receipt.*"))  # nothing visible yet
    assert not (inbox / "rejected").exists()
    posts = sum(1 for r in sandbox.requests() if r["method"] == "POST")

    run_once(env_for(cfg), tmp_path, 120)
    assert sum(1 for r in sandbox.requests() if r["method"] == "POST") == posts
    assert created(sandbox, "DONE") == dict.fromkeys(names, 1)
    (receipt_json,) = (inbox / "processed").glob("*.receipt.json")
    receipt = json.loads(receipt_json.read_text("utf-8"))
    assert (receipt["outcome"], receipt["accepted"], receipt["rejected"]) == ("processed", 5, 2)
    assert receipt["earlier"] is None
    rejects = [Path(p) for p in receipt["reject_files"]]
    assert [p.suffix for p in rejects] == [".xlsx", ".csv"]
    assert sorted((inbox / "rejected").iterdir()) == sorted(rejects)
    base = receipt_json.name.removesuffix(".receipt.json")
    assert receipt["receipt_file"] == str(inbox / "processed" / f"{base}.receipt.txt")
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == [
        base,
        f"{base}.receipt.json",
        f"{base}.receipt.txt",
    ]
    assert all(p.name.startswith(base.removesuffix("done.csv")) for p in rejects)
    work = tmp_path / "inbox" / ".leadpipe" / "work"
    assert not [p for p in work.rglob("*") if p.is_file()]


def test_preview_checks_only_results_beside_the_file_nothing_uploaded(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    demo = Path(__file__).resolve().parents[2] / "examples" / "B2B-DK-SPRING-demo.xlsx"
    cfg = write_config(tmp_path, sandbox.url)
    settings = load_settings(cfg, env=env_for(cfg))
    preview = tmp_path / "inbox" / CODE / "preview"
    preview.mkdir(parents=True)
    (preview / demo.name).write_bytes(demo.read_bytes())
    before = len(sandbox.leads(CODE))
    result = run_service(settings, once=True, status_page=False)
    assert (result.processed, result.failed) == (1, 0)
    assert len(sandbox.leads(CODE)) == before
    assert not any(r["method"] == "POST" for r in sandbox.requests())
    names = sorted(p.name for p in preview.iterdir() if not p.name.startswith("."))
    stamp = names[0].split("_", 1)[0]
    base = f"{stamp}_{demo.name}"
    assert names == [
        base,
        f"{base}.receipt.json",
        f"{base}.receipt.txt",
        f"{base}.rejects.csv",
        f"{base}.rejects.xlsx",
    ]
    receipt = json.loads((preview / f"{base}.receipt.json").read_text(encoding="utf-8"))
    assert receipt["dry_run"] is True
    assert receipt["status"] == "preview (nothing uploaded)"
    assert receipt["outcome"] == "previewed"
    assert (receipt["accepted"], receipt["rejected"]) == (6, 4)  # 6 would be uploaded
    assert not (tmp_path / "inbox" / CODE / "processed").exists()
    # checked once: a second run does not take it again
    again = run_service(settings, once=True, status_page=False)
    assert (again.processed, again.failed) == (0, 0)
