"""Response bodies: JSON, the HTML page for browsers, and CSV exports by culture and encoding."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.sandbox.store import Lead

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def to_json(payload: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return _dumps(payload).encode("utf-8")


def error_body(code: str, message: str, errors: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    """The ServiceStack error body (docs/api-contract.md: "Transport, rights, limits")."""
    return {"responseStatus": {"errorCode": code, "message": message, "errors": list(errors)}}


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222;font-size:14px}"
    "td{white-space:nowrap}td td,td th{font-size:12px;padding:.1em .3em}"
    "table{border-collapse:collapse;margin:.3em 0}td,th{border:1px solid #ccc;padding:.2em .5em;"
    "vertical-align:top;text-align:left}th{background:#f3f3f3}.muted{color:#777}"
    "pre{background:#f7f7f7;padding:1em;overflow:auto}"
)


def to_html(title: str, payload: Any, status: int = 200) -> bytes:
    """A readable page of ``payload``; every value is escaped."""
    esc = html.escape
    head = f"HeroBase sandbox: {title}"
    state = "" if status < 400 else f'<p class="muted">HTTP status {status}</p>'
    raw = json.dumps(payload, ensure_ascii=False, indent=2)
    page = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(head)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>{state}"
        f"{_html_value(payload)}<details><summary>JSON</summary><pre>{esc(raw)}</pre>"
        "</details></body></html>"
    )
    return page.encode("utf-8")


def _html_value(value: Any, depth: int = 0) -> str:
    esc = html.escape
    if depth > 6:
        return esc(json.dumps(value, ensure_ascii=False))
    if isinstance(value, dict):
        if not value:
            return '<span class="muted">(empty)</span>'
        rows = "".join(
            f"<tr><th>{esc(str(k))}</th><td>{_html_value(v, depth + 1)}</td></tr>"
            for k, v in value.items()
        )
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        if not value:
            return '<span class="muted">(none)</span>'
        if all(isinstance(v, dict) for v in value):
            cols: list[str] = []
            for item in value:
                cols.extend(k for k in item if k not in cols)
            header = "".join(f"<th>{esc(str(c))}</th>" for c in cols)
            body = "".join(
                "<tr>"
                + "".join(f"<td>{_html_value(item.get(c, ''), depth + 1)}</td>" for c in cols)
                + "</tr>"
                for item in value
            )
            return (
                f'<p class="muted">{len(value)} item(s)</p><table><tr>{header}</tr>{body}</table>'
            )
        if all(not isinstance(v, dict | list) for v in value):
            return esc(", ".join("null" if v is None else str(v) for v in value))
        return "<ul>" + "".join(f"<li>{_html_value(v, depth + 1)}</li>" for v in value) + "</ul>"
    if value is None:
        return '<span class="muted">null</span>'
    if isinstance(value, bool):
        return "true" if value else "false"
    return esc(str(value))


@dataclass(frozen=True)
class Culture:
    """What a .NET culture changes in a CSV export."""

    name: str
    separator: str
    date_format: str  # strftime-like with our own tokens, see format_date
    headers: dict[str, str]


_SYSTEM = ("uniqueId", "campaignCode", "status", "closure", "uploadTime", "lastModifiedTime")


def _headers(*labels: str) -> dict[str, str]:
    return dict(zip(_SYSTEM, labels, strict=True))


CULTURES: dict[str, Culture] = {
    c.name.lower(): c
    for c in (
        Culture(
            "en-US",
            ",",
            "M/d/yyyy h:mm:ss tt",
            _headers(
                "Unique ID", "Campaign code", "Status", "Closure", "Upload time", "Last modified"
            ),
        ),
        Culture(
            "en-GB",
            ",",
            "dd/MM/yyyy HH:mm:ss",
            _headers(
                "Unique ID", "Campaign code", "Status", "Closure", "Upload time", "Last modified"
            ),
        ),
        Culture(
            "da-DK",
            ";",
            "dd-MM-yyyy HH:mm:ss",
            _headers(
                "Unikt ID",
                "Kampagnekode",
                "Status",
                "Afslutning",
                "Uploadtidspunkt",
                "Sidst ændret",
            ),
        ),
        Culture(
            "sv-SE",
            ";",
            "yyyy-MM-dd HH:mm:ss",
            _headers(
                "Unikt ID", "Kampanjkod", "Status", "Avslut", "Uppladdningstid", "Senast ändrad"
            ),
        ),
        Culture(
            "nb-NO",
            ";",
            "dd.MM.yyyy HH:mm:ss",
            _headers(
                "Unik ID", "Kampanjekode", "Status", "Avslutning", "Opplastingstid", "Sist endret"
            ),
        ),
        Culture(
            "de-DE",
            ";",
            "dd.MM.yyyy HH:mm:ss",
            _headers(
                "Eindeutige ID",
                "Kampagnencode",
                "Status",
                "Abschluss",
                "Hochladezeit",
                "Zuletzt geändert",
            ),
        ),
    )
}

#: Accepted ``encoding`` values (lower-case) -> Python codec.
ENCODINGS: dict[str, str] = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "utf-8-sig": "utf-8-sig",
    "windows-1252": "cp1252",
    "cp1252": "cp1252",
    "iso-8859-1": "latin-1",
    "latin1": "latin-1",
    "latin-1": "latin-1",
}


def format_date(stamp: str, culture: Culture) -> str:
    """Format a stored timestamp (``YYYY-MM-DDTHH:MM:SS.fffffff``) for ``culture``."""
    dt = datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")
    fmt = culture.date_format
    if fmt == "M/d/yyyy h:mm:ss tt":
        hour = dt.hour % 12 or 12
        ampm = "AM" if dt.hour < 12 else "PM"
        return f"{dt.month}/{dt.day}/{dt.year} {hour}:{dt.minute:02d}:{dt.second:02d} {ampm}"
    out = (
        fmt.replace("yyyy", f"{dt.year:04d}")
        .replace("MM", f"{dt.month:02d}")
        .replace("dd", f"{dt.day:02d}")
        .replace("HH", f"{dt.hour:02d}")
        .replace("mm", f"{dt.minute:02d}")
        .replace("ss", f"{dt.second:02d}")
    )
    return out


def csv_chunks(
    leads: Sequence[Lead],
    fields: Sequence[tuple[str, str]],
    *,
    culture: Culture,
    system_headers: bool,
    codec: str,
    batch: int = 2000,
) -> Iterator[bytes]:
    """Encoded CSV in pieces: header row, then the leads. ``fields`` = (name, label) pairs."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=culture.separator, lineterminator="\r\n")
    if system_headers:
        writer.writerow([*_SYSTEM, *(name for name, _ in fields)])
    else:
        writer.writerow([*(culture.headers[s] for s in _SYSTEM), *(lab for _, lab in fields)])
    names = [name for name, _ in fields]
    first = True
    for start in range(0, len(leads), batch):
        for lead in leads[start : start + batch]:
            writer.writerow(
                [
                    lead.unique_id,
                    lead.campaign_code,
                    lead.status,
                    lead.closure,
                    format_date(lead.upload_time, culture),
                    format_date(lead.last_modified_time, culture),
                    *(lead.data.get(n, "") for n in names),
                ]
            )
        yield _encode(buf, codec, first)
        first = False
    if first:
        yield _encode(buf, codec, first)


def _encode(buf: io.StringIO, codec: str, first: bool) -> bytes:
    text = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    if codec == "utf-8-sig" and not first:
        codec = "utf-8"
    return text.encode(codec, errors="replace")
