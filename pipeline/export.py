"""Export one window of one job into the outbox: complete or absent, with a manifest.

A file is written under a temp name in a hidden folder beside it (``.leadpipe/tmp``), fsynced,
then renamed into place; ``<file>.manifest.json`` is renamed into place after it, so a consumer
that waits for the manifest never reads a file still being replaced. Nobody ever sees half a file.

Formats:

- ``csv``: the API's own CSV export (``/leads/csv``), streamed by the client to the temp file;
  ``encoding``, ``culture`` and ``use_system_headers`` are passed through untouched.
- ``objects``: the JSON export (``/leads``, paged), written as CSV here: the system columns
  (:data:`SYSTEM_COLUMNS`), then the data fields **sorted by name** (case-insensitive). The
  data field order is deliberately not "as first seen": that changes from window to window,
  and downstream reports need the same columns in the same place every day. Rows are spooled
  to a temp file while the field set is learnt, so memory stays flat. UTF-8 with a BOM unless
  another encoding is set (characters it cannot hold become ``?``); every cell passes
  :func:`pipeline.cells.neutralise_csv`.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import itertools
import json
import os
import queue
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pipeline import __version__
from pipeline.cells import neutralise_csv
from pipeline.config import ExportJob
from pipeline.errors import ConfigError
from pipeline.fsutil import WORK_DIR_NAME, atomic_write_text, fsync_dir
from pipeline.schedule import Window, day_start, zone

T = TypeVar("T")
PREFETCH_BATCH = 500
CRASH_ENV = "LEADPIPE_CRASH_AT"
MANIFEST_SUFFIX = ".manifest.json"
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
#: Cultures whose decimal mark is a comma use ``;`` between fields (as Excel expects there).
_TRIGGER_CHARS = frozenset("=+-@\t\r\n")
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
    error_kind: str = ""  # "api-down" | "fix-config" | "permission" | "failed"
    manifest: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for people."""
        if self.status == "written":
            return f"{self.job}: {self.window}: {self.rows} row(s) -> {self.path}"
        if self.status == "dry-run":
            return f"{self.job}: {self.window}: would write {self.path}"
        return f"{self.job}: {self.window}: failed: {self.error}"


def crash_point(name: str) -> None:
    """Test hook: die like ``kill -9`` here when ``$LEADPIPE_CRASH_AT`` names this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


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


def csv_delimiter(culture: str) -> str:
    """The field separator Excel expects for a .NET culture name (``da-DK`` -> ``;``)."""
    lang = culture.replace("_", "-").split("-")[0].lower()
    return ";" if lang in _SEMICOLON_LANGS else ","


def objects_encoding(encoding: str) -> str:
    """The Python codec for an ``objects`` file: plain UTF-8 gets a BOM (for Excel)."""
    name = codecs.lookup(encoding or "utf-8").name
    return "utf-8-sig" if name in {"utf-8", "utf-8-sig"} else name


def prefetched(items: Iterable[T], *, batch: int, depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` from a helper thread, ``depth`` batches ahead of the consumer.

    Exports are paged: while this thread writes one page, the next is fetched and parsed, so
    the server's time and ours overlap. At most ``depth`` batches wait (memory stays bounded);
    an error in the producer is raised here; closing this generator stops the producer.
    """
    q: queue.Queue[list[T] | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: list[T] | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            buf: list[T] = []
            for item in source:
                buf.append(item)
                if len(buf) >= batch:
                    if not put(buf):
                        return
                    buf = []
            if buf and not put(buf):
                return
            put(None)
        except BaseException as exc:  # handed over to the consumer, raised there
            put(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="leadpipe-export-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            got = q.get()
            if got is None:
                return
            if isinstance(got, BaseException):
                raise got
            yield from got
    finally:
        stop.set()
        worker.join()


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


def file_digest(path: Path, *, sync: bool = False) -> tuple[str, int]:
    """``(sha256, bytes)`` of a file; ``sync`` also makes its content durable."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
        if sync:
            os.fsync(fh.fileno())
    return digest.hexdigest(), size


def _temp_for(dest: Path, tmp_dir: Path) -> Path:
    """A fresh temp file for ``dest`` in the hidden folder (same volume: rename is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=tmp_dir)
    os.close(fd)
    return Path(name)


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
) -> ExportResult:
    """Export ``window`` of ``job`` into the outbox, atomically, with its manifest.

    API errors propagate (pipeline.errors); the outbox is then untouched.
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
        tmp = _temp_for(dest, tmp_dir)
        try:
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
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
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
        tmp = _temp_for(dest, tmp_dir)
        try:
            rows, header = write_objects_csv(
                leads, tmp, encoding=file_encoding, delimiter=delimiter
            )
            sha, size = file_digest(tmp, sync=True)
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
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
