"""One file, end to end: hash, schema, read, map, validate, deliver, rejects, receipt.

:func:`ingest_file` is the one call that both ``leadpipe ingest`` and the drop-folder service
make for a file. It streams the file in chunks (memory stays flat), delivers each chunk's valid
rows through :class:`pipeline.ingest.deliver.upload.Uploader`, and writes the reject file and the
receipt
atomically at the end. A rerun of the same content (same SHA-256) resumes from the ledger;
a finished file is not processed twice for the same campaign (the same content dropped for
another campaign is processed for that one). A file that changes while it is read (a copy still
under way) raises :class:`~pipeline.errors.FileChanged`: nothing is reported as done, and rows
it already sent are handed over to its complete version (see ``docs/dropfolder.md``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.clock import Clock, SystemClock
from pipeline.config import Settings
from pipeline.dropfolder.identity import FileIdentity
from pipeline.dropfolder.layout import PREVIEW as PREVIEW_FOLDER
from pipeline.dropfolder.layout import DropFolder, safe_name
from pipeline.errors import AccountingError, FileChanged, FileUnreadable, InputError
from pipeline.files import WORK_DIR_NAME, readable
from pipeline.ingest.deliver.tenantproof import ProofStore
from pipeline.ingest.deliver.upload import LeadApi, Uploader
from pipeline.ingest.fields import CampaignSchema, load_campaign_schema
from pipeline.ingest.map import map_columns
from pipeline.ingest.read.open import open_table
from pipeline.ingest.read.table import Table
from pipeline.ingest.report.receipt import ALREADY, PREVIEW, PROCESSED, STOPPED, WAITING
from pipeline.ingest.report.rejects import Receipt, RejectWriter, write_receipt
from pipeline.ingest.rows import add_rejects, api_refusals, upload_rows, valid_fingerprints
from pipeline.ingest.schema_cache import SchemaCache
from pipeline.ingest.validate.checks import RowProblem, Validator
from pipeline.ledger import FileKey, FileRecord, FileState, Ledger, RowState, mark_changed

#: progress(stage, done, total): stage is "reading" (total None) or "uploading".
IngestProgress = Callable[[str, int, int | None], None]

RESULTS_DIR = Path("leadpipe-results")
_STOP_REASON = "leadpipe was asked to stop; run it again to continue"


@dataclass(frozen=True)
class Places:
    """Where one run writes its receipt and reject files."""

    receipt_txt: Path
    receipt_json: Path
    rejects_xlsx: Path
    rejects_csv: Path
    tmp_dir: Path


def inbox_folder(path: Path, campaign: str, settings: Settings) -> Path | None:
    """``inbox/<campaign>`` when ``path`` lies in it (or in its ``preview/``), else None."""
    home = (settings.paths.inbox / campaign).resolve()
    parent = path.resolve().parent
    if parent == home or (parent.name == PREVIEW_FOLDER and parent.parent == home):
        return home
    return None


def result_places(
    path: Path, campaign: str, settings: Settings, out_dir: Path | None, stamp: str
) -> Places:
    """``out_dir`` (flat) when given; else the drop folder's result folders for a file in
    ``inbox/<campaign>/``; else ``./leadpipe-results/``."""
    home = inbox_folder(path, campaign, settings)
    # room for the stamp and the result suffixes
    base = DropFolder.result_name(stamp, safe_name(path.name))
    if out_dir is not None:  # an explicit results folder wins (the service passes one)
        home = None
    if home is not None:
        folder = path.resolve().parent  # inbox/<campaign> or its preview/
        preview = folder != home
        processed = DropFolder.originals(folder, preview)  # a preview's results stay beside it
        rejected = DropFolder.rejects(folder, preview)
        tmp = DropFolder(settings.paths.inbox).tmp
    else:
        processed = rejected = Path(out_dir) if out_dir is not None else Path.cwd() / RESULTS_DIR
        tmp = processed / WORK_DIR_NAME / "tmp"
    return Places(
        receipt_txt=processed / f"{base}.receipt.txt",
        receipt_json=processed / f"{base}.receipt.json",
        rejects_xlsx=rejected / f"{base}.rejects.xlsx",
        rejects_csv=rejected / f"{base}.rejects.csv",
        tmp_dir=tmp,
    )


def ingest_file(
    path: Path,
    campaign: str,
    settings: Settings,
    *,
    client: LeadApi,
    ledger: Ledger,
    dry_run: bool = False,
    out_dir: Path | None = None,
    progress: IngestProgress | None = None,
    stop: threading.Event | None = None,
    clock: Clock | None = None,
    chunk_rows: int = 100_000,
    schemas: SchemaCache | None = None,
    expect: FileIdentity | None = None,
) -> Receipt:
    """Process one file now; returns its receipt (also written as ``.receipt.txt``/``.json``).

    Raises :class:`~pipeline.errors.InputError` when the file cannot be processed at all
    (unreadable, missing required columns), :class:`~pipeline.errors.StateError` when the
    ledger cannot be trusted. Rejected rows, API refusals and an unavailable API are not
    exceptions: the receipt says what happened and what to do. ``schemas`` (the service
    passes one) reuses a recently fetched live schema; without it the schema is fetched live.
    ``expect`` is the file as it was claimed: when the file is not that one any more, or
    changes while it is read, :class:`~pipeline.errors.FileChanged` is raised and nothing is
    reported as done (rows already sent stay in the ledger and are never sent twice).
    """
    clock = clock or SystemClock()
    t0 = clock.monotonic()
    path = Path(path)
    tz = ZoneInfo(settings.timezone)
    started_dt = clock.now().astimezone(tz)
    stamp = started_dt.strftime("%Y%m%d-%H%M%S")
    started = started_dt.isoformat(timespec="seconds")
    if not path.is_file():
        raise FileUnreadable("is not a file (or no longer exists)", path=path)
    if readable(str(path)) != str(path):  # the readers need a text path (the service renames)
        raise FileUnreadable(
            f"its name or a folder above it has bytes that are not text (UTF-8). Rename it, "
            f"e.g. to '{safe_name(path.name).replace(chr(0xFFFD), '_')}', and run again.",
            path=path,
        )
    ident = FileIdentity.of(path)
    if expect is not None and (ident.size, ident.sha256) != (expect.size, expect.sha256):
        # an earlier (interrupted) read of this claim may have sent rows: hand them over
        mark_changed(ledger, FileKey(expect.sha256, campaign), dry_run, "changed since the claim")
        raise FileChanged("it is not the file that was claimed any more", path=path)
    sha = ident.sha256
    key = FileKey(sha, campaign)
    places = result_places(path, campaign, settings, out_dir, stamp)

    known = ledger.file(key)
    if known is not None and known.state == FileState.DONE and known.receipt_json and not dry_run:
        return _already_processed(path, known, places, clock.monotonic() - t0, started)
    elsewhere = [f for f in ledger.files_with_content(sha) if f.campaign != campaign]

    if schemas is not None:
        schema = schemas.get(client, campaign, settings.paths.schemas)
    else:
        schema = load_campaign_schema(client, campaign, settings.paths.schemas)
    hold = schema.source == "snapshot"
    options = settings.campaign(campaign)
    try:
        table = open_for(path, schema, settings, campaign, chunk_rows)
    except InputError as exc:
        # a workbook whose copy is still under way looks damaged: say so only once it is not
        _raise_if_changed(ident, path, exc, ledger, key, dry_run)
        raise
    mapping = map_columns(table.headers, schema.fields, options.columns, path=path)
    validator = Validator(schema, mapping)
    header_of = {f: h for h, f in mapping.field_for.items()}

    uploader: Uploader | None = None
    if not dry_run:
        ledger.begin_file(key, path.name)
        ledger.recover_sending(key)
        uploader = Uploader(
            client,
            ledger,
            sha256=sha,
            campaign=campaign,
            concurrency=settings.intake.concurrency,
            skip_duplicates=options.duplicates != "upload",
            timezone=settings.timezone,
            reconcile_grace=max(2.0, 2 * settings.api.read_timeout),
            clock=clock,
            stop=stop,
            progress=(lambda d, t: progress("uploading", d, t)) if progress else None,
            proof=ProofStore.for_settings(settings),
        )
        if hold:  # the upload waits until the live schema can be fetched
            uploader.hold(
                "the campaign schema came from a saved snapshot (the API could not be reached);"
                " rows were validated but not uploaded"
            )

    writer = RejectWriter(
        places.rejects_xlsx, places.rejects_csv, table.headers, tmp_dir=places.tmp_dir
    )
    data_rows = validation_rejects = dry_duplicates = in_file_duplicates = 0
    dup_problems: list[RowProblem] = []
    sample: list[str] = []
    interrupted = False
    changed = ""
    chunks = validator.validate_all(table.chunks())
    try:
        for chunk, result in chunks:
            if not ident.stat_matches(path):  # a copy resumed: send nothing more from it
                changed = ident.changes(path) or "it changed while it was read"
                break
            data_rows += len(chunk)
            validation_rejects += len(result.rejected)
            in_file_duplicates += len(result.duplicates)
            dup_problems.extend(result.duplicates[: 20 - len(dup_problems)])
            sample.extend(p.message for p in result.problems[: 5 - len(sample)])
            refusals: dict[int, list[RowProblem]] = {}
            if uploader is not None:  # records the rows; sends only while not halted
                rows = upload_rows(result.valid, campaign)
                uploader.deliver(rows)
                refusals = api_refusals(ledger, key, rows, header_of)
            elif dry_run and options.duplicates != "upload":
                prints = valid_fingerprints(result.valid, campaign)
                seen = ledger.accepted_fingerprints(campaign, prints)
                dry_duplicates += sum(1 for f in prints if f in seen)
            add_rejects(writer, chunk, table.headers, result.problems, refusals)
            if progress is not None:
                progress("reading", data_rows, None)
            if stop is not None and stop.is_set():
                # Read no further: on a huge file the rest could outlast the shutdown budget.
                # The rerun reads the file again; the ledger keeps it from sending twice.
                interrupted = True
                break
        if not changed and not interrupted:
            changed = ident.changes(path)  # read to the end: is it still the file claimed?
        if changed:
            writer.abort()
            mark_changed(ledger, key, dry_run, f"still being written: {changed}")
            raise FileChanged(changed, path=path)
        # An interrupted run writes no reject file: the rerun writes the whole one.
        reject_files = [] if interrupted else writer.close()  # none when no row was rejected
        if interrupted:
            writer.abort()
    except InputError as exc:
        writer.abort()
        _raise_if_changed(ident, path, exc, ledger, key, dry_run)
        raise
    except BaseException:
        writer.abort()
        raise
    finally:
        chunks.close()  # stops the helper thread and releases the file when reading stopped early
        validator.close()  # frees the duplicate index now, not whenever it is collected
    uncertain_rows = _uncertain(ledger, key) if not dry_run else []

    counts = _counts(ledger, key, dry_run, data_rows, validation_rejects, dry_duplicates)
    counts["duplicates"] += in_file_duplicates
    if dry_run:
        counts["accepted"], counts["pending"] = counts["pending"] - in_file_duplicates, 0
    halt_kind = uploader.report.halt if uploader is not None else ""
    halt_reason = uploader.report.reason if uploader is not None else ""
    if interrupted and halt_kind in ("", "stopped"):
        halt_kind, halt_reason = "stopped", _STOP_REASON
    blank = int(table.blank_rows)
    receipt = Receipt(
        file=str(path.resolve()),
        sha256=sha,
        campaign=campaign,
        rows_read=data_rows + blank,
        accepted=counts["accepted"],
        rejected=counts["rejected"],
        refused_by_api=counts["refused"],
        duplicates=counts["duplicates"],
        uncertain=counts["uncertain"],
        blank_skipped=blank,
        reject_files=[str(p) for p in reject_files],
        schema_source=schema.source,
        status=STOPPED if interrupted else _status(dry_run, halt_kind, counts["pending"]),
        dry_run=dry_run,
        waiting=counts["pending"],
        started_at=started,
        finished_at=clock.now().astimezone(tz).isoformat(timespec="seconds"),
        source=table.describe(),
        mapping=dict(mapping.field_for),
        unmapped_columns=list(mapping.unmapped),
        schema_drift=schema.drift.describe() if schema.drift else "",
        messages=_blind(uploader, campaign, uncertain_rows)
        + _messages(
            halt_reason,
            counts["pending"],
            uncertain_rows,
            dup_problems,
            interrupted,
            data_rows,
            dup_total=in_file_duplicates,
        )
        + list(mapping.repeats)
        + _sheets_note(writer.sheets, writer.count)
        + _elsewhere(elsewhere, campaign),
        problems_sample=sample,
        halt=halt_kind or None,
        halt_reason=halt_reason,
    )
    if interrupted:
        receipt.next_steps = [
            "Nothing to do: the file is taken up again when leadpipe runs next (run the same "
            "command again for `leadpipe ingest`). Rows already sent are not sent again."
        ]
    else:  # the ledger may hold rows of the part not read this time (an earlier, longer run)
        _check_accounting(receipt)
    receipt.duration_s = round(clock.monotonic() - t0, 3)
    write_receipt(receipt, places.receipt_txt, places.receipt_json)
    if not dry_run:
        done = counts["pending"] == 0 and not halt_kind
        ledger.finish_file(
            key,
            FileState.DONE if done else FileState.WAITING,
            str(places.receipt_txt),
            json.dumps(receipt.to_json(), ensure_ascii=False),
        )
        if not done:
            ledger.set_file_state(key, FileState.WAITING, halt_reason or "rows wait to be sent")
    return receipt


def open_for(
    path: Path, schema: CampaignSchema, settings: Settings, campaign: str, chunk_rows: int
) -> Table:
    """Open ``path`` for the campaign's fields with the configured limits (size, columns)."""
    return open_table(
        path,
        options=settings.campaign(campaign),
        expected_fields=[f.name for f in schema.fields],
        max_bytes=settings.intake.max_file_mb * 1024 * 1024,
        max_columns=settings.intake.max_columns,
        chunk_rows=chunk_rows,
    )


def _status(dry_run: bool, halt: str, pending: int) -> str:
    if dry_run:
        return PREVIEW
    if halt == "unavailable" or (pending and not halt):
        return WAITING
    if halt:
        return STOPPED
    return PROCESSED


def _messages(
    halt_reason: str,
    pending: int,
    uncertain_rows: Sequence[tuple[int, str]],
    dup_problems: Sequence[RowProblem],
    interrupted: bool = False,
    data_rows: int = 0,
    *,
    dup_total: int = 0,
) -> list[str]:
    out: list[str] = []
    if interrupted:
        out.append(
            f"Interrupted: leadpipe was asked to stop after reading {data_rows} data row(s); "
            "the rest of the file was not read. The file will be resumed: it is read again "
            "from the top and rows already sent are not sent again. The counts are those "
            "known so far."
        )
    elif halt_reason:
        out.append(
            f"The upload stopped: {halt_reason}. {pending} row(s) were not sent yet; they are "
            "sent when the file is processed again (nothing is sent twice)."
        )
    elif pending:
        out.append(
            f"{pending} row(s) did not reach HeroBase after repeated tries (a lookup proved "
            "them absent); they are sent when the file is processed again."
        )
    for row, reason in uncertain_rows[:50]:
        out.append(f"Row {row} is uncertain: {reason}.")
    if len(uncertain_rows) > 50:
        out.append(f"... and {len(uncertain_rows) - 50} more uncertain row(s).")
    for p in dup_problems[:20]:
        out.append(p.message)
    if dup_total > len(dup_problems[:20]):  # only the first 20 are kept, the rest counted
        out.append(f"... and {dup_total - len(dup_problems[:20])} more repeated row(s).")
    return out


def _counts(
    ledger: Ledger, key: FileKey, dry_run: bool, data_rows: int, rejected: int, dry_dups: int
) -> dict[str, int]:
    if dry_run:
        valid = data_rows - rejected  # includes in-file repeats; the caller moves them
        return {
            "accepted": 0,
            "rejected": rejected,
            "refused": 0,
            "duplicates": dry_dups,
            "uncertain": 0,
            "pending": valid - dry_dups,
        }
    c = ledger.row_counts(key)
    return {
        # MOVED: this content was read before while still being written, and that read's lead
        # was handed over to the complete version; it is in HeroBase
        "accepted": c[RowState.ACCEPTED] + c[RowState.MOVED],
        "rejected": rejected,
        "refused": c[RowState.REFUSED],
        "duplicates": c[RowState.DUPLICATE],
        "uncertain": c[RowState.UNCERTAIN],
        "pending": c[RowState.PENDING] + c[RowState.SENDING],
    }


def _uncertain(ledger: Ledger, key: FileKey) -> list[tuple[int, str]]:
    return [(r.row, r.reason) for r in ledger.rows(key, [RowState.UNCERTAIN])]


def _raise_if_changed(
    ident: FileIdentity, path: Path, exc: InputError, ledger: Ledger, key: FileKey, dry_run: bool
) -> None:
    """A refusal of a file that changed while it was read is no refusal: take it again later."""
    what = ident.changes(path)
    if what:
        mark_changed(ledger, key, dry_run, f"still being written: {what}")
        raise FileChanged(what, path=path) from exc


def _blind(
    uploader: Uploader | None, campaign: str, uncertain: Sequence[tuple[int, str]]
) -> list[str]:
    """Why uncertain rows were left for a person when the lookup could not be trusted."""
    if uploader is None or not uploader.report.blind or not uncertain:
        return []
    return [
        f"{len(uncertain)} row(s) may or may not have reached HeroBase and were NOT sent again: "
        f"{uploader.report.blind_reason}. Look for them in HeroBase (campaign {campaign}, the "
        "rows listed below) and add any that are missing by hand. To let leadpipe check such "
        "rows itself, run `leadpipe doctor --test-upload <a test campaign>` once."
    ]


def _sheets_note(sheets: int, rows: int) -> list[str]:
    """Say so when the reject workbook needed more than one sheet."""
    if sheets <= 1:
        return []
    return [
        f"There are {rows:,} rows to fix, more than one Excel sheet holds: the reject workbook "
        f"continues on {sheets - 1} more sheet(s) ('Rejects (2)' ...). The reject CSV has all of "
        "them in one list."
    ]


def _elsewhere(records: Sequence[FileRecord], campaign: str) -> list[str]:
    """A hint when the same content was dropped for other campaigns too."""
    if not records:
        return []
    where = ", ".join(
        f"{r.campaign} ({(r.finished_utc or r.updated_utc)[:10]})" for r in records[:5]
    )
    return [
        f"The same file content was also dropped for campaign(s) {where}. It was processed "
        f"for {campaign} here, because that is the folder it was dropped into; if it was meant "
        "for one campaign only, remove the leads from the other in HeroBase."
    ]


def _check_accounting(r: Receipt) -> None:
    """Invariant 1 (docs/architecture.md): every row read ends in one state (or waits)."""
    total = (
        r.accepted
        + r.rejected
        + r.refused_by_api
        + r.duplicates
        + r.uncertain
        + r.blank_skipped
        + r.waiting
    )
    if total != r.rows_read:
        raise AccountingError(
            f"row accounting does not add up for {r.file}: read {r.rows_read}, "
            f"accounted for {total}"
        )


def _already_processed(
    path: Path, known: FileRecord, places: Places, duration: float, started: str
) -> Receipt:
    """The receipt of a re-drop: this run's counts (all 0) and the earlier run's, named so."""
    earlier = Receipt.from_json(json.loads(known.receipt_json or "{}"))
    when = (known.finished_utc or "")[:16].replace("T", " ")
    receipt = Receipt(
        file=str(path.resolve()),
        sha256=known.sha256,
        campaign=known.campaign,
        status=ALREADY,
        started_at=started,
        finished_at=started,
        earlier={
            "finished_utc": known.finished_utc or "",
            "receipt": known.receipt_path or "",
            "rows_read": earlier.rows_read,
            "accepted": earlier.accepted,
            "rejected": earlier.rejected,
            "refused_by_api": earlier.refused_by_api,
            "duplicates": earlier.duplicates,
            "uncertain": earlier.uncertain,
            "reject_files": list(earlier.reject_files),
        },
        messages=[
            f"This file (the same content) was already processed for campaign {known.campaign} "
            f"on {when} UTC; nothing was read or sent again now."
        ],
        next_steps=[
            "Nothing to do. To upload rows that were rejected then, fix them in that run's "
            "reject file and drop it."
            if earlier.rejected or earlier.refused_by_api
            else "Nothing to do."
        ],
        duration_s=round(duration, 3),
    )
    write_receipt(receipt, places.receipt_txt, places.receipt_json)
    return receipt
