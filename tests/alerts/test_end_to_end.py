"""Alerts from the real service against the sandbox, to a real SMTP server and a webhook on
127.0.0.1: each event once, resolved once, not again after a restart; no password and no
lead data in any message; a dead mail server never slows intake."""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.sandbox import Fault, Sandbox
from tests.alerts.conftest import CANARY, Hook, Mailbox, env_for, free_port, write_config
from tests.dropfolder.test_real_ingest import CODE, created, leads_csv
from tests.service.conftest import Running, service, wait_for


def _kinds(hook: Hook, word: str) -> list[str]:
    return [t for t in hook.titles() if word in t]


def _leak_free(texts: list[str], values: list[str]) -> None:
    for text in texts:
        assert CANARY not in text
        for v in values:
            assert v not in text, v


def _page(svc: Running) -> str:
    url = svc.info.status_url or ""
    return urllib.request.urlopen(url, timeout=10).read().decode()  # noqa: S310 (local page)


def _settle(svc: Running) -> None:
    """Let the monitor evaluate a few times (it runs every few seconds)."""
    time.sleep(6.5)


@pytest.mark.slow
def test_file_events_once_no_secrets_or_lead_data_and_a_restart_sends_nothing_again(
    sandbox: Sandbox, tmp_path: Path, smtp: Mailbox, webhook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cfg = write_config(tmp_path, sandbox.url, smtp.port, webhook.url, reject_rate_percent=20)
    settings = load_settings(cfg, env=env_for(cfg))
    folder = tmp_path / "inbox" / CODE
    folder.mkdir(parents=True)
    data, names = leads_csv("ALERTME", valid=2, invalid=3)  # 60 % rejected
    values = [*names, "+4520000000", "x0@alertme.dk", "12ab", "not-an-email"]
    with service(settings) as svc:
        (folder / "leads.csv").write_bytes(data)
        (folder / "notes.docx").write_bytes(b"not a spreadsheet")
        wait_for(lambda: len(_kinds(webhook, "rejected")) == 1, 60, "the reject-rate alert")
        wait_for(lambda: len(_kinds(webhook, "failed")) == 1, 60, "the failed-file alert")
        wait_for(lambda: len(smtp.texts()) >= 2, 60, "both alerts by mail")
        page = _page(svc)
    assert set(created(sandbox, "ALERTME").values()) == {1}
    (failed,) = _kinds(webhook, "failed")
    assert f"{CODE}: file notes.docx failed" in failed
    body = next(b["message"] for b in webhook.got() if "failed" in b["title"])
    assert "failed/" in body
    assert "Fix the file and drop it" in body
    assert "Status page: http://127.0.0.1:" in body
    mails = smtp.texts()
    assert any("notes.docx" in m for m in mails)
    _leak_free([json.dumps(b) for b in webhook.got()] + mails + [page], values)
    state = tmp_path / "state" / "alerts"
    _leak_free([p.read_text() for p in state.iterdir() if p.is_file()], [*values, CANARY])
    _leak_free([r.getMessage() for r in caplog.records], [CANARY])
    sent = len(webhook.got())

    # the service was killed (its status file says running): the next start says so, once
    status_file = tmp_path / "state" / "status.json"
    snap = json.loads(status_file.read_text())
    snap["running"] = True
    status_file.write_text(json.dumps(snap))
    for _ in range(2):
        with service(settings) as svc:
            wait_for(lambda: len(_kinds(webhook, "stopped unexpectedly")) == 1, 30, "the gap")
            _settle(svc)
    (gap,) = [b["message"] for b in webhook.got() if "stopped unexpectedly" in b["title"]]
    assert "leadpipe was not running from" in gap
    assert len(webhook.got()) == sent + 1  # nothing else was sent again


@pytest.mark.slow
def test_api_down_fires_once_survives_a_restart_and_resolves_once(
    sandbox: Sandbox, tmp_path: Path, smtp: Mailbox, webhook: Hook
) -> None:
    cfg = write_config(tmp_path, sandbox.url, smtp.port, webhook.url)
    settings = load_settings(cfg, env=env_for(cfg))
    (tmp_path / "inbox" / CODE).mkdir(parents=True)
    sandbox.add_fault(Fault("status", status=503, times=0))
    with service(settings) as svc:
        wait_for(lambda: _kinds(webhook, "API not answering"), 30, "the API-down alert")
        wait_for(lambda: any("API not answering" in m for m in smtp.texts()), 30, "by mail")
        assert "HeroBase API not answering" in _page(svc)
        _settle(svc)
    with service(settings) as svc:  # still down: nothing sent again
        _settle(svc)
        assert len(_kinds(webhook, "API not answering")) == 1
        sandbox.clear_faults()
        wait_for(lambda: _kinds(webhook, "RESOLVED: HeroBase API"), 60, "the resolved message")
        _settle(svc)
        assert "HeroBase API not answering" not in _page(svc)
    titles = _kinds(webhook, "HeroBase API")
    assert titles == [
        "[leadpipe] HeroBase API not answering",
        "[leadpipe] RESOLVED: HeroBase API not answering",
    ]
    assert sum("API not answering" in m for m in smtp.texts()) == 2


@pytest.mark.slow
def test_a_dead_mail_server_for_the_whole_run_leaves_intake_unaffected(
    sandbox: Sandbox, tmp_path: Path, webhook: Hook
) -> None:
    webhook.status = 500  # the webhook refuses too
    cfg = write_config(tmp_path, sandbox.url, free_port(), webhook.url)  # nobody listens
    settings = load_settings(cfg, env=env_for(cfg))
    folder = tmp_path / "inbox" / CODE
    folder.mkdir(parents=True)
    data, _ = leads_csv("NOMAIL", valid=20, invalid=0)
    with service(settings) as svc:
        (folder / "a.csv").write_bytes(data)
        (folder / "b.docx").write_bytes(b"fails, and its alert cannot go anywhere")
        wait_for(lambda: svc.snapshot()["totals"].get("processed") == 1, 60, "the upload")
        wait_for(lambda: svc.snapshot()["totals"].get("failed") == 1, 60, "the failed file")
    assert set(created(sandbox, "NOMAIL").values()) == {1}
    assert len(created(sandbox, "NOMAIL")) == 20
