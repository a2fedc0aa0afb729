"""export.py: objects-to-CSV writer, atomic files, manifests, retention (no HTTP here)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline import __version__
from pipeline.config import ExportJob
from pipeline.errors import ConfigError, Unavailable
from pipeline.export.objects_csv import SYSTEM_COLUMNS, csv_delimiter, write_objects_csv
from pipeline.export.windows import Window
from pipeline.export.writer import apply_retention, destination, export_window, hash_and_count
from pipeline.prefetch import prefetched

NOW = datetime(2026, 10, 26, 1, 0, tzinfo=UTC)
W = Window(date(2026, 10, 25), date(2026, 10, 26))


@dataclass
class FakeLead:
    unique_id: str
    data: dict[str, str]
    campaign_code: str = "B2B-DK-SPRING"
    status: str = "UserProcessed"
    closure: str = "Success"
    priority: int | None = 10
    upload_time: str = "2026-10-25T09:00:00.0000000"
    last_modified_time: str = "2026-10-25T10:00:00.0000000"
    first_processed_time: str | None = None


@dataclass
class FakeClient:
    """Stands in for HeroBaseClient in unit tests of the writer (no HTTP involved)."""

    leads: list[FakeLead] = field(default_factory=list)
    csv_body: bytes = b""
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def iter_leads(
        self, search: str, from_: Any, to: Any = None, *, page_size: int = 1000
    ) -> Iterator[Any]:
        self.calls.append(("iter_leads", search, from_, to, page_size))
        yield from self.leads

    def download_leads_csv(self, search: str, from_: Any, to: Any, dest: Path, **kw: Any) -> int:
        self.calls.append(("download_leads_csv", search, from_, to, kw))
        dest.write_bytes(self.csv_body)
        return len(self.csv_body)


def objects_csv(
    leads: list[FakeLead], tmp_path: Path, delimiter: str = ","
) -> tuple[int, list[list[str]]]:
    out = tmp_path / "out.csv"
    rows, header = write_objects_csv(leads, out, encoding="utf-8", delimiter=delimiter)
    parsed = list(
        csv.reader(io.StringIO(out.read_bytes().decode("utf-8"), newline=""), delimiter=delimiter)
    )
    assert parsed[0] == header
    return rows, parsed


def test_columns_are_system_then_data_sorted_whatever_order_leads_arrive(tmp_path: Path) -> None:
    a = FakeLead("1S1", {"phone": "12345678", "name": "Åse"})
    b = FakeLead("2S1", {"Zip": "8000", "email": "x@y.dk", "name": "Bo"})
    rows1, got1 = objects_csv([a, b], tmp_path)
    rows2, got2 = objects_csv([b, a], tmp_path)
    assert rows1 == rows2 == 2
    header = [*SYSTEM_COLUMNS, "email", "name", "phone", "Zip"]
    assert got1[0] == got2[0] == header
    assert got1[1] == [
        "1S1", "B2B-DK-SPRING", "UserProcessed", "Success", "10",
        "2026-10-25T09:00:00.0000000", "2026-10-25T10:00:00.0000000", "", "", "Åse", "12345678", "",
    ]  # fmt: skip
    assert got1[2][8:] == ["x@y.dk", "Bo", "", "8000"]


def test_formula_payloads_are_neutralised_phone_numbers_kept(tmp_path: Path) -> None:
    lead = FakeLead(
        "1S1",
        {"name": "=HYPERLINK(\"http://x\")", "note": "@SUM(A1)", "phone": "+45 12 34 56 78",
         "x": "-2+3", "multi": "line1\nline2"},
    )  # fmt: skip
    _, got = objects_csv([lead], tmp_path)
    cells = dict(zip(got[0], got[1], strict=True))
    assert cells["name"] == '\'=HYPERLINK("http://x")'
    assert cells["note"] == "'@SUM(A1)"
    assert cells["x"] == "'-2+3"
    assert cells["phone"] == "+45 12 34 56 78"
    assert cells["multi"] == "line1\nline2"


def test_data_field_named_like_a_system_column_is_prefixed(tmp_path: Path) -> None:
    _, got = objects_csv([FakeLead("1S1", {"status": "VIP"})], tmp_path)
    assert got[0][-1] == "data.status"
    assert got[1][-1] == "VIP"


def test_semicolon_cultures() -> None:
    assert csv_delimiter("da-DK") == ";"
    assert csv_delimiter("de-DE") == ";"
    assert csv_delimiter("en-US") == ","


def test_objects_export_writes_bom_file_and_manifest(tmp_path: Path) -> None:
    job = ExportJob(name="daily", search="api_import_export", format="objects")
    client = FakeClient(leads=[FakeLead("1S1", {"name": "Ærø", "text": "a\r\nb"})])
    result = export_window(
        job, W, client=client, outbox=tmp_path, timezone="Europe/Copenhagen", now=NOW
    )
    dest = tmp_path / "daily" / "daily_2026-10-25_2026-10-26.csv"
    assert result.status == "written"
    assert result.path == dest
    raw = dest.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert "Ærø".encode() in raw
    manifest = json.loads((dest.parent / (dest.name + ".manifest.json")).read_text("utf-8"))
    assert manifest["rows"] == 1
    assert manifest["sha256"] == hashlib.sha256(raw).hexdigest()
    assert manifest["bytes"] == len(raw)
    assert manifest["window"]["from"] == "2026-10-25"
    assert manifest["window"]["to"] == "2026-10-26"
    assert manifest["window"]["from_local"] == "2026-10-25T00:00:00+02:00"
    assert manifest["window"]["to_local"] == "2026-10-26T00:00:00+01:00"
    assert manifest["search"] == "api_import_export"
    assert manifest["parameters"]["encoding"] == "utf-8-sig"
    assert manifest["parameters"]["columns"][-2:] == ["name", "text"]
    assert manifest["leadpipe_version"] == __version__
    assert manifest["written_at"] == NOW.isoformat()
    assert client.calls == [("iter_leads", "api_import_export", W.start, W.end, 1000)]
    # nothing but the file and its manifest is visible; no temp left behind
    assert sorted(p.name for p in dest.parent.iterdir()) == [
        ".leadpipe", dest.name, dest.name + ".manifest.json",
    ]  # fmt: skip
    assert list((dest.parent / ".leadpipe" / "tmp").iterdir()) == []


def test_empty_window_still_has_a_header_row(tmp_path: Path) -> None:
    job = ExportJob(name="daily", search="s", format="objects")
    result = export_window(
        job, W, client=FakeClient(), outbox=tmp_path, timezone="Europe/Copenhagen", now=NOW
    )
    assert result.rows == 0
    text = result.path.read_bytes().decode("utf-8-sig") if result.path else ""
    assert text == ",".join(SYSTEM_COLUMNS) + "\r\n"
    assert result.manifest["rows"] == 0


def test_csv_format_passes_parameters_and_counts_quoted_rows(tmp_path: Path) -> None:
    body = 'uniqueId;name\r\n1S1;"Søren\r\nJensen"\r\n2S1;Åse\r\n'.encode("cp1252")
    job = ExportJob(
        name="dk", search="s", encoding="windows-1252", culture="da-DK", use_system_headers=False
    )
    client = FakeClient(csv_body=body)
    result = export_window(
        job, W, client=client, outbox=tmp_path, timezone="Europe/Copenhagen", now=NOW
    )
    assert result.path is not None
    assert result.path.read_bytes() == body
    assert result.rows == 2
    assert client.calls[0][4] == {
        "encoding": "windows-1252",
        "culture": "da-DK",
        "use_system_headers": False,
    }
    assert result.manifest["parameters"]["culture"] == "da-DK"


def test_hash_and_count_fast_path_and_header_only(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(b"h1,h2\n1,2\n3,4")
    assert hash_and_count(p, "utf-8")[1:] == (2, 13)
    p.write_bytes(b"h1,h2\r\n")
    assert hash_and_count(p, "utf-8")[1] == 0
    p.write_bytes(b"")
    assert hash_and_count(p, "utf-8")[1] == 0


def test_filename_pattern_must_stay_in_the_outbox(tmp_path: Path) -> None:
    job = ExportJob(name="x", search="s", filename="../{name}_{from}.csv")
    with pytest.raises(ConfigError, match="leaves the outbox"):
        destination(job, W, tmp_path)
    job = ExportJob(name="x", search="s", filename="{name}_{since}.csv")
    with pytest.raises(ConfigError, match=r"use \{name\}, \{from\} and \{to\}"):
        destination(job, W, tmp_path)


def test_failed_download_leaves_outbox_untouched(tmp_path: Path) -> None:
    class Broken(FakeClient):
        def download_leads_csv(
            self, search: str, from_: Any, to: Any, dest: Path, **kw: Any
        ) -> int:
            dest.write_bytes(b"partial")
            raise ConnectionError("reset")

    job = ExportJob(name="x", search="s")
    with pytest.raises(ConnectionError):
        export_window(
            job, W, client=Broken(), outbox=tmp_path, timezone="Europe/Copenhagen", now=NOW
        )
    visible = [p for p in (tmp_path / "x").rglob("*") if p.is_file()]
    assert visible == []


def test_retention_removes_old_files_of_this_job_only(tmp_path: Path) -> None:
    job = ExportJob(name="d", search="s", format="objects")
    for day in range(20, 26):
        w = Window(date(2026, 10, day), date(2026, 10, day + 1))
        export_window(
            job, w, client=FakeClient(), outbox=tmp_path, timezone="Europe/Copenhagen", now=NOW
        )
    other = tmp_path / "d" / "notes.csv"
    other.write_text("keep me")
    removed = apply_retention(tmp_path / "d", "d", 3, date(2026, 10, 27))
    assert [p.name for p in removed] == [
        "d_2026-10-20_2026-10-21.csv", "d_2026-10-21_2026-10-22.csv", "d_2026-10-22_2026-10-23.csv",
    ]  # fmt: skip
    left = sorted(p.name for p in (tmp_path / "d").glob("*.csv"))
    assert left == [
        "d_2026-10-23_2026-10-24.csv",
        "d_2026-10-24_2026-10-25.csv",
        "d_2026-10-25_2026-10-26.csv",
        "notes.csv",
    ]


def test_prefetched_keeps_order_passes_errors_and_stops_its_thread() -> None:
    assert list(prefetched(range(25), batch=4)) == list(range(25))

    def failing() -> Iterator[int]:
        yield 1
        raise Unavailable("503 Service Unavailable")

    with pytest.raises(Unavailable, match="503"):
        list(prefetched(failing(), batch=1))
    early = prefetched(range(10_000), batch=10)
    assert next(early) == 0
    early.close()  # the consumer gives up: the producer ends too
    assert [t.name for t in threading.enumerate() if t.name == "leadpipe-export-prefetch"] == []
