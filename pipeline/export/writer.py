"""Export one window of one job into the outbox: complete or absent, with a manifest.

A file is written under a temp name in a hidden folder beside it (``.leadpipe/tmp``), fsynced,
then renamed into place; ``<file>.manifest.json`` is renamed into place after it, so a consumer
that waits for the manifest never reads a file still being replaced. Nobody ever sees half a file.

Formats:

- ``csv``: the API's own CSV export (``/leads/csv``), streamed by the client to the temp file;
  ``encoding``, ``culture`` and ``use_system_headers`` are passed through untouched.
- ``objects``: the JSON export (``/leads``, paged; the next page is fetched while one is
  written), written as CSV by :mod:`pipeline.export.objects_csv` (system columns, then data fields
  sorted by name; formula injection neutralised; UTF-8 with a BOM by default).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from pipeline import __version__
from pipeline.config import ExportJob
from pipeline.crashpoints import crash_point
from pipeline.dropfolder.identity import FileIdentity
from pipeline.errors import Action, ConfigError
from pipeline.export.objects_csv import (
    PREFETCH_BATCH,
    csv_delimiter,
    objects_encoding,
    write_objects_csv,
)
from pipeline.export.state import JobBusy
from pipeline.export.windows import Window, day_start, zone
from pipeline.files import WORK_DIR_NAME, atomic_path, atomic_write_text
from pipeline.prefetch import prefetched

MANIFEST_SUFFIX = ".manifest.json"


class ExportClient(Protocol):
    """The two client calls exports use (``pipeline.api.HeroBaseClient`` has them)."""

    def iter_leads(
        self, search: str, from_: Any, to: Any = None, *, page_size: int = 1000
    ) -> Iterator[Any]: ...

    def download_leads_csv(
        self,
        search: str,
        from_: Any,
        to: Any,
        dest: Path,
        *,
        encoding: str = "utf-8",
        culture: str = "en-US",
        use_system_headers: bool = True,
    ) -> int: ...


@dataclass
class ExportResult:
    """What happened to one window of one job."""

    job: str
    window: Window
    status: str  # "written" | "dry-run" | "failed"
    path: Path | None = None
    rows: int = 0
    sha256: str = ""
    bytes: int = 0
    error: str = ""
    error_kind: Action | None = None  #: what to do about the failure (None: no failure)
    exit_code: int = 0  #: ``leadpipe export``'s exit code for the failure
    manifest: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for people."""
        if self.status == "written":
            return f"{self.job}: {self.window}: {self.rows} row(s) -> {self.path}"
        if self.status == "dry-run":
            return f"{self.job}: {self.window}: would write {self.path}"
        return f"{self.job}: {self.window}: failed: {self.error}"


def destination(job: ExportJob, window: Window, outbox: Path) -> Path:
    """The outbox path of ``window``'s file (``filename`` pattern, relative to the outbox)."""
    values = {"name": job.name, "from": window.start.isoformat(), "to": window.end.isoformat()}
    try:
        rel = job.filename.format_map(values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"export {job.name!r}: filename {job.filename!r} is not a valid pattern ({exc}); "
            "use {name}, {from} and {to}, e.g. '{name}/{name}_{from}_{to}.csv'"
        ) from None
    dest = (outbox / rel).resolve()
    root = outbox.resolve()
    if dest == root or root not in dest.parents or WORK_DIR_NAME in dest.relative_to(root).parts:
        raise ConfigError(f"export {job.name!r}: filename {job.filename!r} leaves the outbox")
    return dest


def hash_and_count(path: Path, encoding: str, delimiter: str = ",") -> tuple[str, int, int]:
    """``(sha256, data rows, bytes)`` of a CSV file; rows exclude the header row.

    ``delimiter`` matters only when cells are quoted (a quote opens a cell only after one).
    """
    digest = hashlib.sha256()
    size = newlines = 0
    quoted = False
    last = b""
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            newlines += chunk.count(b"\n")
            quoted = quoted or b'"' in chunk
            last = chunk[-1:]
    ascii_safe = codecs.lookup(encoding).name not in {
        "utf-16",
        "utf-32",
    } and not encoding.lower().startswith(("utf-16", "utf-32"))
    if size == 0:
        records = 0
    elif not quoted and ascii_safe:
        records = newlines + (0 if last == b"\n" else 1)
    else:  # quoted cells may hold line breaks: let the csv module count records
        with path.open(encoding=encoding, errors="replace", newline="") as text:
            records = sum(1 for _ in csv.reader(text, delimiter=delimiter))
    return digest.hexdigest(), max(records - 1, 0), size


def _sniff(path: Path, culture: str) -> str:
    """The field separator of a CSV file from its header line (else the culture's)."""
    with path.open("rb") as fh:
        head = fh.readline(1 << 16)
    counts = {d: head.count(d.encode()) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else csv_delimiter(culture)


def _clean_stale_temps(tmp_dir: Path, dest: Path) -> None:
    """Remove temp files a killed run of this job left behind (the caller holds its lock)."""
    # the client streams into its own temp file beside ours (a nested hidden folder)
    for folder in (tmp_dir, tmp_dir / WORK_DIR_NAME / "tmp"):
        if folder.is_dir():
            for stale in folder.glob(f"*.{dest.name}.*.part"):
                with contextlib.suppress(OSError):
                    stale.unlink()


def export_window(
    job: ExportJob,
    window: Window,
    *,
    client: ExportClient,
    outbox: Path,
    timezone: str,
    now: datetime,
    page_size: int = 1000,
    dry_run: bool = False,
    still_mine: Callable[[], bool] | None = None,
) -> ExportResult:
    """Export ``window`` of ``job`` into the outbox, atomically, with its manifest.

    API errors propagate (pipeline.errors); the outbox is then untouched. ``still_mine`` (a
    cluster: the window's lease, docs/cluster.md "Exports") is asked right before the file and
    before its manifest are renamed into place: False raises :class:`JobBusy` and leaves the
    outbox to the node that holds the window now.
    """
    dest = destination(job, window, outbox)
    if dry_run:
        return ExportResult(job.name, window, "dry-run", path=dest)
    tmp_dir = dest.parent / WORK_DIR_NAME / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(tmp_dir, dest)
    params: dict[str, Any] = {"format": job.format, "window_rule": job.window}
    if job.format == "csv":
        params.update(
            encoding=job.encoding, culture=job.culture, use_system_headers=job.use_system_headers
        )
        file_encoding = job.encoding or "utf-8"
        with atomic_path(dest, tmp_dir=tmp_dir) as tmp:
            client.download_leads_csv(
                job.search,
                window.start,
                window.end,
                tmp,
                encoding=job.encoding,
                culture=job.culture,
                use_system_headers=job.use_system_headers,
            )
            crash_point("export_midstream")
            sha, rows, size = hash_and_count(tmp, file_encoding, _sniff(tmp, job.culture))
            _keep_or_leave(still_mine, job, window)
    else:
        file_encoding = objects_encoding(job.encoding)
        delimiter = csv_delimiter(job.culture)
        params.update(encoding=file_encoding, culture=job.culture, delimiter=delimiter)
        # one page ahead, handed over in small batches: the next page is fetched while this
        # one is written, and never more than about one page of leads waits in memory
        batch = min(PREFETCH_BATCH, page_size)
        leads = prefetched(
            client.iter_leads(job.search, window.start, window.end, page_size=page_size),
            batch=batch,
            depth=max(1, -(-page_size // batch)),
        )
        with atomic_path(dest, tmp_dir=tmp_dir) as tmp:
            rows, header = write_objects_csv(
                leads, tmp, encoding=file_encoding, delimiter=delimiter
            )
            ident = FileIdentity.of(tmp)
            sha, size = ident.sha256, ident.size
            _keep_or_leave(still_mine, job, window)
        params["columns"] = header
    crash_point("export_before_manifest")
    tz = zone(timezone)
    manifest: dict[str, Any] = {
        "file": dest.name,
        "rows": rows,
        "bytes": size,
        "sha256": sha,
        "job": job.name,
        "search": job.search,
        "window": {
            "from": window.start.isoformat(),
            "to": window.end.isoformat(),
            "to_is_exclusive": True,
            "timezone": timezone,
            "from_local": day_start(window.start, tz).astimezone(tz).isoformat(),
            "to_local": day_start(window.end, tz).astimezone(tz).isoformat(),
        },
        "parameters": params,
        "written_at": now.isoformat(),
        "leadpipe_version": __version__,
    }
    _keep_or_leave(still_mine, job, window)
    atomic_write_text(
        manifest_path(dest),
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
        tmp_dir=tmp_dir,
    )
    return ExportResult(
        job.name,
        window,
        "written",
        path=dest,
        rows=rows,
        sha256=sha,
        bytes=size,
        manifest=manifest,
    )


def _keep_or_leave(still_mine: Callable[[], bool] | None, job: ExportJob, window: Window) -> None:
    """Raise :class:`JobBusy` when the window is no longer this node's to write."""
    if still_mine is not None and not still_mine():
        raise JobBusy(
            f"export {job.name!r}: the lease of window {window} was lost (another node writes "
            "it); this node's copy is dropped"
        )


def manifest_path(dest: Path) -> Path:
    """``<file>.manifest.json`` beside ``dest``."""
    return dest.with_name(dest.name + MANIFEST_SUFFIX)


def apply_retention(folder: Path, job_name: str, keep_days: int, today: date) -> list[Path]:
    """Delete this job's files whose window ended more than ``keep_days`` days before ``today``.

    Files are found by their manifests (never by name alone); ``keep_days <= 0`` keeps all.
    Returns the removed data files.
    """
    removed: list[Path] = []
    if keep_days <= 0 or not folder.is_dir():
        return removed
    for mf in sorted(folder.glob(f"*{MANIFEST_SUFFIX}")):
        try:
            info = json.loads(mf.read_text(encoding="utf-8"))
            if info.get("job") != job_name:
                continue
            end = date.fromisoformat(info["window"]["to"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if (today - end).days > keep_days:
            data = mf.with_name(mf.name[: -len(MANIFEST_SUFFIX)])
            with contextlib.suppress(FileNotFoundError):
                data.unlink()
            with contextlib.suppress(FileNotFoundError):
                mf.unlink()
            removed.append(data)
    return removed
