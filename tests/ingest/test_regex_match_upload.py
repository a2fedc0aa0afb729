"""A two-line comment in a ``.*`` field, over real HTTP: the client's validation and the
sandbox's import give the same verdict under each ``regex_match`` (docs/api-contract.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Sandbox

runner = CliRunner()
COMMENT = "Ring efter kl. 10\nspørg efter Mette"


def _seed(semantics: str) -> dict[str, object]:
    return {
        "tenant": {"regex_match": semantics},
        "accounts": [
            {
                "username": DEMO_USER,
                "password": DEMO_PASSWORD,
                "project_rights": ["P"],
                "resource_rights": {"Campaigns": ["GET"], "Leads": ["GET", "POST"]},
            }
        ],
        "projects": [{"name": "P"}],
        "campaigns": [
            {
                "code": "NOTES",
                "project": "P",
                "fields": [
                    {"name": "name", "type": "varchar", "required": True},
                    {"name": "note", "type": "text", "regex": ".*"},
                ],
            }
        ],
    }


@pytest.mark.parametrize(("semantics", "accepted"), [("search", True), ("whole", False)])
def test_two_line_comment_same_verdict_client_and_sandbox(
    semantics: str, accepted: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text(
        '[paths]\ninbox = "inbox"\nstate = "state"\nschemas = "schemas"\noutbox = "outbox"\n'
        f'[validation]\nregex_match = "{semantics}"\n',
        encoding="utf-8",
    )
    src = tmp_path / "notes.csv"
    src.write_text(f'name;note\r\nAnne;"{COMMENT}"\r\nBo;one line\r\n', encoding="utf-8")
    with Sandbox(_seed(semantics)) as sb:
        # the sandbox's own verdict on the row, sent by hand
        direct = requests.post(
            sb.url + "/leads",
            json={"campaignCode": "NOTES", "data": {"name": "Anne", "note": COMMENT}},
            auth=(DEMO_USER, DEMO_PASSWORD),
            timeout=10,
        )
        assert (direct.status_code == 200) is accepted, direct.text
        if not accepted:
            assert "RegularExpression" in direct.text
        result = runner.invoke(
            app,
            ["--config", str(cfg), "ingest", str(src), "--campaign", "NOTES", "--json"],
            env={
                "LEADPIPE_API_URL": sb.url,
                "LEADPIPE_API_USER": DEMO_USER,
                "LEADPIPE_API_PASSWORD": DEMO_PASSWORD,
            },
        )
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        # the client's verdict: the same; nothing is refused by the API
        assert (data["accepted"], data["rejected"]) == ((2, 0) if accepted else (1, 1))
        assert data["refused_by_api"] == 0
        notes = [lead.data.get("note") for lead in sb.tenant.store.all()]
        assert notes.count(COMMENT) == (2 if accepted else 0)  # by hand, then by the client
