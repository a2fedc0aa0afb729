"""Rate limits, call simulation, seeds, persistence and the ``leadpipe sandbox`` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from pipeline.clock import FakeClock
from pipeline.errors import ConfigError
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox, load_seed
from tests.sandbox.conftest import START, Api


def test_rate_limit_minute_window_rolls_with_the_clock(
    fapi: Api, fake_sb: Sandbox, clock: FakeClock
) -> None:
    fake_sb.set_rate_limit(per_minute=3)
    heads = []
    for _ in range(3):
        r = fapi.get("/myaccount")
        assert r.status_code == 200
        heads.append(
            (
                r.headers["X-Rate-Limit-Limit"],
                r.headers["X-Rate-Limit-Remaining"],
                r.headers["X-Rate-Limit-Reset"],
            )
        )
    assert heads == [("3", "2", "60"), ("3", "1", "60"), ("3", "0", "60")]
    over = fapi.get("/myaccount")
    assert over.status_code == 429
    assert over.headers["Retry-After"] == "60"
    assert over.json()["responseStatus"]["errorCode"] == "TooManyRequests"
    clock.advance(45)
    again = fapi.get("/myaccount")
    assert again.status_code == 429
    assert again.headers["Retry-After"] == "15"
    clock.advance(15)  # a new fixed window
    ok = fapi.get("/myaccount")
    assert ok.status_code == 200
    assert ok.headers["X-Rate-Limit-Remaining"] == "2"


def test_rate_limit_is_per_account_and_401_does_not_count(fake_sb: Sandbox) -> None:
    fake_sb.set_rate_limit(per_minute=1)
    full = Api(fake_sb)
    other = Api(fake_sb, "restricted@demo.example", "restricted-password")
    try:
        for _ in range(3):
            requests.get(fake_sb.url + "/myaccount", auth=(DEMO_USER, "wrong"), timeout=5)
        assert full.get("/myaccount").status_code == 200
        assert full.get("/myaccount").status_code == 429
        assert other.get("/myaccount").status_code == 200
    finally:
        full.close()
        other.close()


def test_daily_cap_until_tenant_midnight(fapi: Api, fake_sb: Sandbox, clock: FakeClock) -> None:
    fake_sb.set_rate_limit(per_minute=100, per_day=2)
    assert fapi.get("/myaccount").status_code == 200
    assert fapi.get("/myaccount/request/counts").json() == {"minute": 2, "day": 2}
    clock.advance(120)
    r = fapi.get("/myaccount")
    assert r.status_code == 429
    # 09:02 Copenhagen -> midnight is 14h58m away
    assert r.headers["Retry-After"] == str(14 * 3600 + 58 * 60)
    clock.set(datetime(2026, 3, 30, 22, 0, 1, tzinfo=UTC))  # 00:00:01 next day in Copenhagen
    assert fapi.get("/myaccount").status_code == 200


def test_limits_from_the_seed(tmp_path: Path) -> None:
    seed = {
        "tenant": {"requests_per_minute": 7, "requests_per_day": 70},
        "accounts": [{"username": "u@x", "password": "p", "resource_rights": {"Account": ["GET"]}}],
    }
    with Sandbox(seed) as sb:
        r = requests.get(sb.url + "/myaccount/request/limits", auth=("u@x", "p"), timeout=5)
        assert r.json() == {"perMinute": 7, "perDay": 70}
        assert r.headers["X-Rate-Limit-Limit"] == "7"


def test_simulation_closes_open_leads_deterministically(clock: FakeClock) -> None:
    with Sandbox(clock=clock) as a, Sandbox(clock=clock) as b:
        open_before = [x for x in a.leads() if x["status"] == "New"]
        at = datetime(2026, 3, 30, 11, 15)
        closed = a.simulate(0.5, at=at)
        assert closed == round(len(open_before) * 0.5)
        assert b.simulate(0.5, at=at) == closed
        assert a.leads() == b.leads()
        changed = [x for x in a.leads() if x["lastModifiedTime"] == "2026-03-30T11:15:00.0000000"]
        assert len(changed) == closed
        for lead in changed:
            assert lead["status"] in {"UserProcessed", "Depleted"}
            assert lead["closure"] in {"Success", "NotInterested", "InvalidLead"}
            assert lead["lastModifiedByUser"]["orgCode"].startswith("agent")
            assert lead["firstProcessedTime"] == lead["lastModifiedTime"]
            assert lead["firstProcessedByUser"] == lead["lastModifiedByUser"]


def test_the_demo_history_is_the_same_whenever_it_is_first_asked_for() -> None:
    """The demo tenant's 300 leads are made when leads are first looked at (a preview never
    does), dated as of the tenant's start: the same leads as a tenant that made them at once."""
    early, late = FakeClock(START), FakeClock(START)
    with Sandbox(clock=early) as a, Sandbox(clock=late) as b:
        assert a.tenant._history_at is not None  # not made yet
        first = a.leads()
        assert a.tenant._history_at is None
        late.advance(3 * 86400)  # three days pass before anyone looks
        assert b.leads() == first
        assert len(first) == a.tenant.seed.demo_leads
        started = a.tenant.now().isoformat()  # tenant-local, as the leads show it
        assert max(x["uploadTime"] for x in first) < started


def test_simulated_outcomes_reach_the_exports(fapi: Api, fake_sb: Sandbox) -> None:
    uid = fapi.lead().json()["uniqueId"]
    fake_sb.simulate(1.0)
    lead = fapi.get(f"/leads/{uid}").json()
    assert lead["status"] != "New"
    assert lead["uploadTime"] == "2026-03-30T09:00:00.0000000"
    assert lead["lastModifiedTime"] == "2026-03-30T09:00:00.0000000"
    assert fake_sb.simulate(1.0) == 0  # nothing open any more


def test_simulate_every_runs_in_the_background() -> None:
    with Sandbox(simulate_every=0.02) as sb:
        before = sum(1 for x in sb.leads() if x["status"] == "New")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if sum(1 for x in sb.leads() if x["status"] == "New") < before:
                break
            time.sleep(0.02)
        assert sum(1 for x in sb.leads() if x["status"] == "New") < before


def test_seed_format_of_the_issue(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    path.write_text(
        """
[tenant]
timezone = "Europe/Stockholm"
id_suffix = "S77"
requests_per_minute = 60
requests_per_day = 1000
extra_key = "fine"

[[accounts]]
username = "a@b.se"
password = "pw"
project_rights = ["Sales*"]
resource_rights = { Account = ["GET"], Campaigns = ["GET"], Leads = ["GET", "POST"] }

[[projects]]
name = "Sales Sweden"

[[campaigns]]
code = "SE1"
name = "Sweden"
project = "Sales Sweden"
fields = [
  { name = "name", type = "varchar", required = true },
  { name = "phone", type = "phone", required = true },
  { name = "size", type = "dropdown", options = ["S", "M+L"] },
  { name = "ref", type = "varchar", regex = "^(?<k>[A-Z]{2})-\\\\d+$" },
]

[[searches]]
name = "api_import_export"
campaigns = ["SE1"]
statuses = ["UserProcessed"]
closures = ["Success"]
""",
        encoding="utf-8",
    )
    with Sandbox(path, clock=FakeClock(START)) as sb:
        auth = ("a@b.se", "pw")
        ex = requests.get(
            sb.url + "/leads/example?campaignCode=SE1&showAllDataEntries=1", auth=auth, timeout=5
        ).json()
        assert ex["data"]["size"].endswith("regex used for validation ^(S|M\\+L)$")
        r = requests.post(
            sb.url + "/leads",
            json={
                "campaignCode": "SE1",
                "data": {"name": "Å", "phone": "0701234567", "size": "M+L", "ref": "AB-12"},
            },
            auth=auth,
            timeout=5,
        )
        assert r.status_code == 200, r.text
        lead = r.json()
        assert lead["uniqueId"].endswith("S77")
        assert lead["uploadTime"] == "2026-03-30T09:00:00.0000000"  # Stockholm = Copenhagen time
        assert sb.leads() == [lead]  # no demo leads unless asked for


def test_seed_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        load_seed(
            {
                "tenant": {"timezone": "Mars/Base", "requests_per_minute": -1},
                "projects": [{"name": "P"}],
                "campaigns": [
                    {
                        "code": "C",
                        "project": "Q",
                        "fields": [
                            {"name": "a", "type": "colour"},
                            {"name": "b", "regex": "(unclosed"},
                        ],
                    }
                ],
                "searches": [{"name": "s", "campaigns": ["NOPE"]}],
            }
        )
    text = str(info.value)
    for expected in (
        "tenant.timezone",
        "requests_per_minute",
        "campaigns[0].project",
        "fields[0].type",
        "fields[1].regex",
        "searches[0].campaigns",
    ):
        assert expected in text


def test_unreadable_seed_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_seed(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[tenant\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_seed(bad)


def test_sqlite_persistence_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.db"
    with Sandbox(db=db) as sb:
        count = len(sb.leads())
        r = requests.post(
            sb.url + "/leads",
            json={"campaignCode": "B2B-DK-SPRING", "data": {"name": "Kept", "phone": "12345678"}},
            auth=(DEMO_USER, DEMO_PASSWORD),
            timeout=5,
        )
        uid = r.json()["uniqueId"]
        sb.simulate(0.2)
        snapshot = sb.leads()
    with Sandbox(db=db) as again:
        assert len(again.leads()) == count + 1  # demo leads are not generated twice
        assert again.leads() == snapshot
        nxt = again.insert_lead("B2B-DK-SPRING", {"name": "Next", "phone": "12345678"})
        assert int(nxt[:-5]) > int(uid[:-5])


def test_corrupt_db_is_a_clear_error(tmp_path: Path) -> None:
    from pipeline.errors import StateError

    db = tmp_path / "bad.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError, match=r"bad\.db"):
        Sandbox(db=db)


def test_cli_runs_in_the_foreground_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("leadpipe")
    proc = subprocess.Popen(
        [str(exe), "sandbox", "--port", "0", "--base-path", "/api", "--db", str(tmp_path / "s.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in first
        url = first.split("listening on ", 1)[1].strip()
        rest = [proc.stdout.readline() for _ in range(3)]
        assert any("api@demo.example / demo-password" in line for line in rest)
        r = requests.get(url + "/myaccount", auth=(DEMO_USER, DEMO_PASSWORD), timeout=5)
        assert r.status_code == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert "stopping the sandbox" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_stops_cleanly_on_sigterm() -> None:
    exe = Path(sys.executable).with_name("leadpipe")
    proc = subprocess.Popen(
        [str(exe), "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        assert "Ctrl-C stops" in lines[-1]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "stopping the sandbox (SIGTERM)" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_integrations_on_one_account_share_one_quota(fake_sb: Sandbox) -> None:
    fake_sb.set_rate_limit(per_minute=4)
    first, second = Api(fake_sb), Api(fake_sb)
    try:
        assert [first.get("/projects").status_code for _ in range(2)] == [200, 200]
        assert [second.get("/projects").status_code for _ in range(3)] == [200, 200, 429]
        assert first.get("/projects").status_code == 429
    finally:
        first.close()
        second.close()


def test_example_regex_may_contain_commas_and_spaces() -> None:
    seed = {
        "projects": [{"name": "P"}],
        "campaigns": [
            {
                "code": "C",
                "project": "P",
                "fields": [
                    {"name": "ref", "required": True, "regex": "^[A-Z]{2}, \\d{1,3} (a|b)$"}
                ],
            }
        ],
        "accounts": [
            {
                "username": "u@x",
                "password": "p",
                "project_rights": ["P"],
                "resource_rights": {"Campaigns": ["GET"], "Leads": ["POST"]},
            }
        ],
    }
    with Sandbox(seed) as sb:
        auth = ("u@x", "p")
        data = requests.get(sb.url + "/leads/example?campaignCode=C", auth=auth, timeout=5).json()[
            "data"
        ]
        rx = "^[A-Z]{2}, \\d{1,3} (a|b)$"
        assert data == {"ref": f"example ref, type is varchar, regex used for validation {rx}"}
        ok = requests.post(
            sb.url + "/leads",
            json={"campaignCode": "C", "data": {"ref": "DK, 12 a"}},
            auth=auth,
            timeout=5,
        )
        assert ok.status_code == 200


def test_foreign_db_is_a_clear_error(tmp_path: Path) -> None:
    import sqlite3
    from contextlib import closing

    from pipeline.errors import StateError

    db = tmp_path / "other.db"
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE leads (seq INTEGER PRIMARY KEY, unique_id TEXT, body TEXT)")
        con.execute("INSERT INTO leads VALUES (1, 'x', '{\"nope\": 1}')")
        con.commit()
    with pytest.raises(StateError, match="unknown format"):
        Sandbox(db=db)


def test_cli_bad_seed_and_busy_port_are_clear_errors(tmp_path: Path, sandbox: Sandbox) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    seed = tmp_path / "seed.toml"
    seed.write_text(
        '[[projects]]\nname = "P"\n[[campaigns]]\ncode = "C"\nproject = "Q"\n', encoding="utf-8"
    )
    bad = runner.invoke(app, ["sandbox", "--seed", str(seed), "--port", "0"])
    assert bad.exit_code == 3
    assert "campaigns[0].project" in bad.output
    assert "Traceback" not in bad.output
    busy = runner.invoke(app, ["sandbox", "--port", str(sandbox.port)])
    assert busy.exit_code == 6
    assert "choose another --port" in busy.output
    assert "--simulate-every" in runner.invoke(app, ["sandbox", "--help"]).output
