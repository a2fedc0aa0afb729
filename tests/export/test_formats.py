"""Formats against the sandbox: windows-1252/da-DK round trip (csv), formula payloads (objects)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import requests

from pipeline.cells import is_risky
from pipeline.config import ExportJob
from pipeline.export.windows import Window
from pipeline.export.writer import export_window
from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER
from tests.export.conftest import TZ, Env

W = Window(date(2026, 9, 10), date(2026, 9, 11))
NOW = datetime(2026, 9, 11, 1, 0, tzinfo=UTC)
DANISH = [
    {"name": "Søren Ærøskøbing", "phone": "+45 12 34 56 78", "note": 'Æblegrød; med "fløde"'},
    {"name": "Åse Øster-Ågård", "phone": "0045 87654321", "note": "linje 1\r\nlinje 2 – €"},
    {"name": "Bent Ødegård", "phone": "12345678", "note": "ÆØÅ æøå é ü ß"},
]
PAYLOADS = {
    '=HYPERLINK("http://evil.example","klik")': '\'=HYPERLINK("http://evil.example","klik")',
    "@SUM(1+1)*cmd|' /C calc'!A0": "'@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+2": "'+1+2",
    "-2+3": "'-2+3",
    "\tTAB=1": "'\tTAB=1",
    "+45 12 34 56 78": "+45 12 34 56 78",
    "Plain text": "Plain text",
}


def insert(env: Env, data: dict[str, str], minute: int) -> str:
    return env.sb.insert_lead(
        "B2B-DK-SPRING", data, status="UserProcessed", closure="Success",
        last_modified_time=datetime(2026, 9, 10, 11, minute),
    )  # fmt: skip


def test_windows_1252_da_dk_round_trips_exactly(env: Env) -> None:
    ids = [insert(env, d, i) for i, d in enumerate(DANISH)]
    job = ExportJob(
        name="dk", search="api_import_export", encoding="windows-1252", culture="da-DK",
        use_system_headers=True,
    )  # fmt: skip
    result = export_window(
        job, W, client=env.client, outbox=env.tmp / "outbox", timezone=TZ, now=NOW
    )
    assert result.path is not None
    raw = result.path.read_bytes()
    # byte for byte what the API sends for the same query
    direct = requests.get(
        f"{env.sb.url}/leads/csv",
        params={"searchName": "api_import_export", "from": "2026-09-10", "to": "2026-09-11",
                "encoding": "windows-1252", "culture": "da-DK", "useSystemHeaders": "true"},
        auth=(DEMO_USER, DEMO_PASSWORD), headers={"Accept": "text/csv"}, timeout=30,
    )  # fmt: skip
    assert direct.status_code == 200
    assert raw == direct.content
    rows = list(csv.reader(io.StringIO(raw.decode("cp1252"), newline=""), delimiter=";"))
    header, body = rows[0], rows[1:]
    by_id = {r[0]: dict(zip(header, r, strict=True)) for r in body}
    for uid, data in zip(ids, DANISH, strict=True):
        for key, value in data.items():
            assert by_id[uid][key] == value
    assert result.rows == len(body)
    assert result.manifest["parameters"] == {
        "format": "csv", "window_rule": "previous-day", "encoding": "windows-1252",
        "culture": "da-DK", "use_system_headers": True,
    }  # fmt: skip


def test_formula_payloads_come_out_neutralised_in_objects_format(env: Env) -> None:
    ids = {
        insert(env, {"name": p, "phone": "12345678", "note": p}, i): p
        for i, p in enumerate(PAYLOADS)
    }
    job = ExportJob(name="obj", search="api_import_export", format="objects")
    result = export_window(
        job, W, client=env.client, outbox=env.tmp / "outbox", timezone=TZ, now=NOW
    )
    assert result.path is not None
    text = result.path.read_bytes().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header = rows[0]
    got = {r[0]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    for uid, payload in ids.items():
        assert got[uid]["name"] == PAYLOADS[payload]
        assert got[uid]["note"] == PAYLOADS[payload]
    assert [cell for r in rows for cell in r if is_risky(cell)] == []
