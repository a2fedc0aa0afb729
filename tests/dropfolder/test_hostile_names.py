"""Hostile and unlucky names: intake never stops, every file ends in one place, odd entries are
listed, and /healthz tells when a worker is stuck (the running service against the sandbox)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_settings
from pipeline.sandbox import Fault, Sandbox
from pipeline.service.health import WorkerState, assess
from tests.dropfolder.test_real_ingest import CODE, created, env_for, leads_csv, write_config
from tests.service.conftest import service, wait_for


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_file_names_that_are_not_utf8_never_stop_intake(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url, campaign_parallelism=2)
    settings = load_settings(cfg, env=env_for(cfg))
    folder = tmp_path / "inbox" / CODE
    folder.mkdir(parents=True)
    raw = os.fsencode(folder)
    for n, tag in enumerate(("BYTESA", "BYTESB")):  # as many as there are workers
        data, _ = leads_csv(tag, valid=3, invalid=0)
        with open(raw + b"/leads-\xff\xfe" + str(n).encode() + b".csv", "wb") as fh:
            fh.write(data)
    normal, names = leads_csv("AFTER", valid=4, invalid=0)
    with service(settings) as svc:
        wait_for(lambda: svc.snapshot()["totals"]["processed"] == 2, 30, "the odd names")
        (folder / "after.csv").write_bytes(normal)
        wait_for(lambda: svc.snapshot()["totals"]["processed"] == 3, 30, "a normal file after")
        snap = svc.snapshot()
        assert snap["health"]["problems"] == []
        with urllib.request.urlopen(svc.info.status_url, timeout=10) as resp:  # noqa: S310
            assert resp.status == 200
            page = resp.read().decode("utf-8")
        assert "leads-\ufffd\ufffd0.csv" in page
    assert set(created(sandbox, "BYTESA").values()) == {1}
    assert len(created(sandbox, "BYTESB")) == 3
    assert sorted(created(sandbox, "AFTER")) == sorted(names)
    work = tmp_path / "inbox" / ".leadpipe" / "work"
    assert _files(work) == []  # nothing left behind in the hidden work folder
    receipts = sorted((folder / "processed").glob("*.receipt.txt"))
    assert len(receipts) == 3
    odd = [r for r in receipts if "\ufffd" in r.name]
    assert len(odd) == 2
    assert "was dropped as 'leads-\ufffd\ufffd" in odd[0].read_text("utf-8")


def test_a_250_byte_name_is_shortened_keeping_its_extension(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    cfg = write_config(tmp_path, sandbox.url)
    settings = load_settings(cfg, env=env_for(cfg))
    folder = tmp_path / "inbox" / CODE
    folder.mkdir(parents=True)
    long_name = "kunder-x" + "æ" * 119 + ".csv"  # 250 bytes in UTF-8
    assert len(long_name.encode()) == 250
    data, names = leads_csv("LONGNAME", valid=3, invalid=1)
    (folder / long_name).write_bytes(data)
    with service(settings) as svc:
        wait_for(lambda: svc.snapshot()["totals"]["processed"] == 1, 30, "the long name")
    assert sorted(created(sandbox, "LONGNAME")) == sorted(names)
    done = [p.name for p in (folder / "processed").iterdir()]
    original = next(n for n in done if n.endswith(".csv"))
    assert len(original.encode()) <= 255
    assert original.startswith(original[:16] + "kunder-xææ")
    assert original.endswith(".csv")
    assert "~" in original
    receipt = next((folder / "processed").glob("*.receipt.txt")).read_text("utf-8")
    assert f"was dropped as '{long_name}'" in receipt
    assert [p.name.endswith(".rejects.xlsx") for p in (folder / "rejected").iterdir()].count(True)
    assert _files(tmp_path / "inbox" / ".leadpipe" / "work") == []


def test_links_pipes_and_folders_named_like_files_are_listed_as_ignored(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path, sandbox.url)
    settings = load_settings(cfg, env=env_for(cfg))
    folder = tmp_path / "inbox" / CODE
    folder.mkdir(parents=True)
    secret = tmp_path / "secret.csv"
    secret.write_text("Name,Phone\nx,+4512345678\n", encoding="utf-8")
    (folder / "link.csv").symlink_to(secret)
    os.mkfifo(folder / "pipe.csv")
    (folder / "folder.xlsx").mkdir()
    with service(settings) as svc:

        def ignored() -> set[str]:
            c = svc.snapshot()["campaigns"].get(CODE, {})
            return {i["name"] for i in c.get("ignored", [])}

        wait_for(lambda: ignored() == {"link.csv", "pipe.csv", "folder.xlsx"}, 20, "the listing")
        items = svc.snapshot()["campaigns"][CODE]["ignored"]
        assert {i["problem"] for i in items} == {"ignored: not a regular file"}
        with urllib.request.urlopen(svc.info.status_url, timeout=10) as resp:  # noqa: S310
            page = resp.read().decode("utf-8")
        assert f"{CODE}/link.csv" in page
        assert "not a regular file" in page
        cli_cfg = tmp_path / "status.toml"
        cli_cfg.write_text(
            f'[paths]\ninbox = "{tmp_path / "inbox"}"\nstate = "{tmp_path / "state"}"\n',
            encoding="utf-8",
        )
        wait_for(lambda: (tmp_path / "state" / "status.json").is_file(), 10, "the status file")
        wait_for(
            lambda: "pipe.csv" in (tmp_path / "state" / "status.json").read_text("utf-8"),
            10,
            "the status file to list the pipe",
        )
        out = CliRunner().invoke(app, ["--config", str(cli_cfg), "status"])
        assert out.exit_code == 0, out.output
        assert "    pipe.csv: ignored: not a regular file" in out.output.splitlines()
        assert svc.snapshot()["totals"]["processed"] == 0  # never opened
    assert (folder / "link.csv").is_symlink()
    assert (folder / "pipe.csv").exists()
    assert not sandbox.leads(CODE) or all(
        lead["data"].get("name") != "x" for lead in sandbox.leads(CODE)
    )


def test_healthz_fails_while_a_file_makes_no_progress(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.set_rate_limit(per_minute=10**6, per_day=10**8)
    sandbox.add_fault(Fault("delay", route="POST /leads", delay=6.0, times=1))
    cfg = write_config(tmp_path, sandbox.url, stuck_seconds=1.5, concurrency=1)
    settings = load_settings(cfg, env=env_for(cfg))
    folder = tmp_path / "inbox" / CODE
    folder.mkdir(parents=True)
    data, _ = leads_csv("STUCK", valid=2, invalid=0)
    with service(settings) as svc:
        url = svc.info.status_url + "healthz"
        (folder / "slow.csv").write_bytes(data)

        def unhealthy() -> dict[str, object] | None:
            try:
                with urllib.request.urlopen(url, timeout=10):  # noqa: S310
                    return None
            except urllib.error.HTTPError as exc:
                found: dict[str, object] = json.loads(exc.read())
                found["status"] = exc.code
                return found

        wait_for(unhealthy, 20, "/healthz to fail")
        body = unhealthy()
        assert body is not None
        assert body["ok"] is False
        assert "made no progress on its file" in str(body["problems"])
        wait_for(lambda: svc.snapshot()["totals"]["processed"] == 1, 30, "the slow file")
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310
            assert resp.status == 200  # healthy again once it moves


def test_a_dead_worker_or_a_stalled_loop_is_unhealthy() -> None:
    alive = WorkerState("leadpipe-intake-0", alive=True, busy=False, quiet_for=0.1)
    dead = WorkerState("leadpipe-intake-1", alive=False, busy=False, quiet_for=99.0)
    assert assess([alive], 0.5, loop_limit=60, stuck_after=900) == []
    assert assess([alive, dead], 0.5, loop_limit=60, stuck_after=900) == [
        "the intake worker leadpipe-intake-1 has stopped"
    ]
    assert assess([alive], 75.0, loop_limit=60, stuck_after=900) == [
        "the service loop (sweeps, settling, export schedule) has not run for 75 s"
    ]
