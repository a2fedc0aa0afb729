"""Lead objects to CSV: the ``objects`` export format, streamed with flat memory.

Columns: the system columns (:data:`SYSTEM_COLUMNS`), then the data fields **sorted by name**
(case-insensitive, ties by exact name). The data field order is deliberately not "as first
seen": that changes from window to window, and downstream reports need the same columns in the
same place every day. A data field named like a system column is written as ``data.<name>``.

One streaming pass when every lead carries only the fields of the first (the usual case: one
campaign per search); when new fields turn up later, a second pass re-lays the file's columns.
UTF-8 with a BOM unless another encoding is set (characters it cannot hold become ``?``);
``;`` between fields for cultures that write decimal commas (``da-DK``); every cell passes
:func:`pipeline.cells.neutralise_csv`.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from pipeline.cells import neutralise_csv
from pipeline.crashpoints import crash_point

#: Leads handed from the fetching thread to the writer at a time.
PREFETCH_BATCH = 500
SYSTEM_COLUMNS = (
    "uniqueId",
    "campaignCode",
    "status",
    "closure",
    "priority",
    "uploadTime",
    "lastModifiedTime",
    "firstProcessedTime",
)
#: First characters that can make a cell a formula (see pipeline.cells).
_TRIGGER_CHARS = frozenset("=+-@\t\r\n")
#: Cultures whose decimal mark is a comma use ``;`` between fields (as Excel expects there).
_SEMICOLON_LANGS = frozenset(
    {"da", "de", "sv", "nb", "nn", "no", "fi", "fr", "nl", "es", "it", "pt", "pl", "cs", "sk"}
    | {"hu", "ro", "ru", "uk", "tr", "el", "is", "et", "lv", "lt", "sl", "hr"}
)


class LeadRecord(Protocol):
    """What an export needs of a lead (``pipeline.api.Lead`` has it)."""

    @property
    def unique_id(self) -> str: ...
    @property
    def campaign_code(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def closure(self) -> str: ...
    @property
    def priority(self) -> Any: ...
    @property
    def upload_time(self) -> str: ...
    @property
    def last_modified_time(self) -> str: ...
    @property
    def first_processed_time(self) -> str | None: ...
    @property
    def data(self) -> Mapping[str, str]: ...


def csv_delimiter(culture: str) -> str:
    """The field separator Excel expects for a .NET culture name (``da-DK`` -> ``;``)."""
    lang = culture.replace("_", "-").split("-")[0].lower()
    return ";" if lang in _SEMICOLON_LANGS else ","


def objects_encoding(encoding: str) -> str:
    """The Python codec for an ``objects`` file: plain UTF-8 gets a BOM (for Excel)."""
    name = codecs.lookup(encoding or "utf-8").name
    return "utf-8-sig" if name in {"utf-8", "utf-8-sig"} else name


def _order(name: str) -> tuple[str, str]:
    return (name.casefold(), name)


def _header(fields: list[str]) -> list[str]:
    return list(SYSTEM_COLUMNS) + [f"data.{k}" if k in SYSTEM_COLUMNS else k for k in fields]


def write_objects_csv(
    leads: Iterable[LeadRecord],
    path: Path,
    *,
    encoding: str = "utf-8-sig",
    delimiter: str = ",",
    crash_at: str = "export_midstream",
) -> tuple[int, list[str]]:
    """Write ``leads`` as CSV to ``path``: system columns, then data fields sorted by name.

    Returns ``(rows, header)``. One streaming pass when every lead has only the fields seen on
    the first one (the usual case: one campaign); when new fields turn up later, a second pass
    re-lays the file's columns. Memory stays flat either way.
    """
    it = iter(leads)
    first = next(it, None)
    cols = sorted(first.data, key=_order) if first is not None else []
    known = set(cols)
    extra: list[str] = []
    rows = 0
    trig = _TRIGGER_CHARS
    with path.open("w", encoding=encoding, errors="replace", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter, lineterminator="\r\n")
        writer.writerow([neutralise_csv(h) for h in _header(cols)])
        for lead in itertools.chain((first,), it) if first is not None else ():
            data = lead.data
            get = data.get
            if not data.keys() <= known:
                for k in data:
                    if k not in known:
                        known.add(k)
                        extra.append(k)
            row = [
                lead.unique_id,
                lead.campaign_code,
                lead.status,
                lead.closure,
                "" if lead.priority is None else str(lead.priority),
                lead.upload_time,
                lead.last_modified_time,
                lead.first_processed_time or "",
                *[get(k, "") for k in cols],
                *[get(k, "") for k in extra],
            ]
            writer.writerow([v if v[:1] not in trig else neutralise_csv(v) for v in row])
            rows += 1
            if rows == 1:
                fh.flush()
                crash_point(crash_at)
    if not extra:
        return rows, _header(cols)
    return rows, _relayout(path, cols, extra, encoding=encoding, delimiter=delimiter)


def _relayout(
    path: Path, cols: list[str], extra: list[str], *, encoding: str, delimiter: str
) -> list[str]:
    """Rewrite ``path`` so that data columns ``cols + extra`` come out sorted by name."""
    laid = cols + extra
    final = sorted(laid, key=_order)
    n_sys = len(SYSTEM_COLUMNS)
    pos = {k: n_sys + i for i, k in enumerate(laid)}
    order = [pos[k] for k in final]
    header = _header(final)
    tmp = path.with_name(path.name + ".relayout")
    with (
        path.open(encoding=encoding, newline="") as src,
        tmp.open("w", encoding=encoding, errors="replace", newline="") as dst,
    ):
        reader = csv.reader(src, delimiter=delimiter)
        writer = csv.writer(dst, delimiter=delimiter, lineterminator="\r\n")
        next(reader, None)
        writer.writerow([neutralise_csv(h) for h in header])
        for rec in reader:
            width = len(rec)
            writer.writerow(rec[:n_sys] + [rec[j] if j < width else "" for j in order])
    os.replace(tmp, path)
    return header
