"""``leadpipe trace`` over a few ingested files: by uniqueId, by file, by value."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import xlsxwriter
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import RetentionSettings
from pipeline.ledger import FileKey, RowState
from pipeline.sandbox import Sandbox
from pipeline.trace.queries import find_value, trace_file, trace_lead
from pipeline.trace.values import Needle
from tests.retention.helpers import CAMPAIGN, Env, env_for, leads_csv

T0 = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)


def xlsx(path: Path, rows: list[list[str]]) -> bytes:
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Leads")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            sheet.write_string(r, c, value)
    book.close()
    return path.read_bytes()


def three_files(env: Env, tmp: Path) -> dict[str, object]:
    a = env.drop("alpha.csv", leads_csv("Alpha", ["+4520000001", "+4520000002"], ["12ab"]), T0)
    b = env.drop(
        "beta.csv", leads_csv("Beta", ["+4520000003", "0045 2000 0001"]), T0 + timedelta(hours=1)
    )
    rows = [
        ["Name", "Phone", "Email", "Segment"],
        ["Gamma AS", "+4520000004", "Gamma@Example.dk", "SMB"],
    ]
    c = env.drop("gamma.xlsx", xlsx(tmp / "g.xlsx", rows), T0 + timedelta(hours=2))
    return {"a": a, "b": b, "c": c}


def test_trace_by_id_file_and_value(sb: Sandbox, tmp_path: Path) -> None:
    with env_for(sb, tmp_path, RetentionSettings(), T0) as env:
        files = three_files(env, tmp_path)
        a, b, c = files["a"], files["b"], files["c"]
        key_a = FileKey(a.receipt.sha256, CAMPAIGN)  # type: ignore[attr-defined]
        first = env.ledger.rows(key_a)[0]
        assert first.unique_id

        # by uniqueId: the file, the row as the spreadsheet shows it, times, outcome, receipt
        [origin] = trace_lead(env.ledger, first.unique_id, "api@example.com")
        assert (origin.file, origin.row, origin.campaign) == ("alpha.csv", 2, CAMPAIGN)
        assert origin.outcome == "accepted"
        assert origin.file_outcome == "done"
        assert origin.claimed_at == a.receipt.started_at  # type: ignore[attr-defined]
        assert origin.uploaded_at
        assert origin.receipt == str(a.receipt_txt)  # type: ignore[attr-defined]
        assert origin.original == str(a.original)  # type: ignore[attr-defined]
        assert origin.original_kept
        assert origin.account == "api@example.com"
        assert trace_lead(env.ledger, "no-such-id", "x") == []

        # by file: name, moved original's path, SHA-256 (or its start)
        for what in ("alpha.csv", str(a.original), a.receipt.sha256, a.receipt.sha256[:12]):  # type: ignore[attr-defined]
            [t] = trace_file(env.ledger, what)
            assert (t.file, t.campaign, t.state) == ("alpha.csv", CAMPAIGN, "done")
            assert t.rows == {"accepted": 2}
            assert [row for row, _ in t.leads] == [2, 3]
            assert all(uid for _, uid in t.leads)
        [tb] = trace_file(env.ledger, "beta.csv")
        assert tb.rows == {"accepted": 2}  # the same phone, another person's row: another lead
        [tc] = trace_file(env.ledger, "gamma.xlsx")
        assert tc.rows == {"accepted": 1}
        assert tc.leads[0][0] == 2

        # by value: every kept file and row, normalised; the leads made from it
        found = find_value(env.settings, env.ledger, "+45 20-00-00-01")
        assert found.value_kind == "phone"
        where = sorted((Path(x.path).name, x.row, x.outcome) for x in found.appearances)
        assert where == [
            (Path(a.original).name, 2, "accepted"),  # type: ignore[attr-defined]
            (Path(b.original).name, 3, "accepted"),  # type: ignore[attr-defined]
        ]
        beta_lead = tb.leads[1][1]
        assert sorted(lead.unique_id for lead in found.leads) == sorted(
            [first.unique_id, beta_lead]
        )
        mail = find_value(env.settings, env.ledger, "gamma@EXAMPLE.dk")
        assert [(Path(x.path).suffix, x.sheet, x.row) for x in mail.appearances] == [
            (".xlsx", "Leads", 2)
        ]
        assert mail.leads[0].file == "gamma.xlsx"
        bad = find_value(env.settings, env.ledger, "12ab")
        kinds = sorted(x.kind for x in bad.appearances)
        assert kinds == ["originals", "rejects", "rejects"]  # the original, the .csv and .xlsx
        assert bad.leads == ()
        assert c  # used


def test_the_cli_answers_in_text_and_json(sb: Sandbox, tmp_path: Path) -> None:
    with env_for(sb, tmp_path, RetentionSettings(), T0) as env:
        a = env.drop("alpha.csv", leads_csv("Alpha", ["+4520000001"]), T0)
        uid = env.ledger.rows(FileKey(a.receipt.sha256, CAMPAIGN))[0].unique_id
        assert uid
    p = env.settings.paths
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text(
        f'[paths]\ninbox = "{p.inbox}"\noutbox = "{p.outbox}"\nstate = "{p.state}"\n'
        f'schemas = "{p.schemas}"\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    done = runner.invoke(app, ["--config", str(cfg), "trace", uid, "--json"])
    assert done.exit_code == 0, done.output
    [origin] = json.loads(done.output)
    assert (origin["file"], origin["row"]) == ("alpha.csv", 2)
    text = runner.invoke(app, ["--config", str(cfg), "trace", uid]).output
    assert "alpha.csv" in text
    assert "row 2" in text
    assert "Alpha company" not in text  # no lead data
    assert "+4520000001" not in text
    found = runner.invoke(app, ["--config", str(cfg), "trace", "--find", "004520000001", "--json"])
    assert found.exit_code == 0
    assert json.loads(found.output)["leads"][0]["unique_id"] == uid
    files = runner.invoke(app, ["--config", str(cfg), "trace", "alpha.csv"])
    assert files.exit_code == 0
    assert "1 accepted" in files.output
    missing = runner.invoke(app, ["--config", str(cfg), "trace", "nothing.csv"])
    assert missing.exit_code == 4


def test_phone_numbers_compare_by_digits() -> None:
    n = Needle.of("+45 20 00 00 01")
    assert [n.matches(c) for c in ("004520000001", "20000001", "(+45) 2000-0001")] == [True] * 3
    assert not n.matches("+4620000001")
    assert not n.matches("2000000")
    assert Needle.of("Jane@Example.DK").matches(" jane@example.dk ")
    assert RowState.ACCEPTED.value == "accepted"
