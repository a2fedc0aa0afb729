"""Before any row is read: which file this is (content, ledger record) and how to read it.

The first two steps of :func:`pipeline.ingest.run.ingest_file`. :func:`identify` hashes the
file, checks it is the one that was claimed and looks it up in the ledger (a re-drop of content
done for the campaign is answered without reading it). :func:`open_file` loads the campaign's
schema and opens the file as a table mapped to the campaign's fields. A refusal of a file that
changed meanwhile (a copy still under way) is no refusal: :class:`~pipeline.errors.FileChanged`
(see ``docs/dropfolder.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import Settings
from pipeline.dropfolder.identity import FileIdentity
from pipeline.dropfolder.layout import safe_name
from pipeline.errors import FileChanged, FileUnreadable, InputError
from pipeline.files import readable
from pipeline.ingest.deliver.upload import LeadApi
from pipeline.ingest.fields import CampaignSchema, load_campaign_schema
from pipeline.ingest.map import ColumnMapping, map_columns
from pipeline.ingest.read.open import open_table
from pipeline.ingest.read.table import Table
from pipeline.ingest.schema_cache import SchemaCache
from pipeline.ledger import FileKey, FileRecord, FileState, Ledger, mark_changed
from pipeline.regexmatch import DEFAULT_SEMANTICS, Semantics


@dataclass(frozen=True)
class Identified:
    """One file, known by its content: what the ledger knows of it."""

    path: Path
    campaign: str
    identity: FileIdentity  #: size, modification time and SHA-256 as it was hashed now
    known: FileRecord | None  #: the ledger's record of this content for the campaign
    #: records of the same content dropped for other campaigns (a hint on the receipt)
    elsewhere: list[FileRecord] = field(default_factory=list)

    @property
    def key(self) -> FileKey:
        """The ledger key: the content for the campaign."""
        return FileKey(self.identity.sha256, self.campaign)

    @property
    def done_before(self) -> FileRecord | None:
        """The record of an earlier run that finished this content for the campaign, if any."""
        k = self.known
        return k if k is not None and k.state == FileState.DONE and k.receipt_json else None

    def raise_if_changed(self, exc: InputError, hand_over: Callable[[str], None]) -> None:
        """A refusal of a file that changed while it was read is no refusal: take it later.

        ``hand_over(reason)`` records in the ledger that rows this read sent belong to the
        file's complete version.
        """
        what = self.identity.changes(self.path)
        if what:
            hand_over(f"still being written: {what}")
            raise FileChanged(what, path=self.path) from exc


@dataclass(frozen=True)
class Opened:
    """A file ready to be read: its table, mapped to the campaign's fields."""

    file: Identified
    schema: CampaignSchema
    table: Table
    mapping: ColumnMapping
    #: what "matches its regex" means (``[validation] regex_match``, :mod:`pipeline.regexmatch`)
    semantics: Semantics = DEFAULT_SEMANTICS

    @property
    def header_of(self) -> dict[str, str]:
        """Field -> the column the person sees."""
        return {f: h for h, f in self.mapping.field_for.items()}


def identify(
    path: Path, campaign: str, ledger: Ledger, *, dry_run: bool, expect: FileIdentity | None
) -> Identified:
    """Hash the file and look it up. Raises FileUnreadable, or FileChanged when it is not the
    file that was claimed (``expect``) any more."""
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
    key = FileKey(ident.sha256, campaign)
    elsewhere = [f for f in ledger.files_with_content(ident.sha256) if f.campaign != campaign]
    return Identified(path, campaign, ident, ledger.file(key), elsewhere)


def open_file(
    file: Identified,
    settings: Settings,
    client: LeadApi,
    ledger: Ledger,
    *,
    dry_run: bool,
    chunk_rows: int,
    schemas: SchemaCache | None,
) -> Opened:
    """Load the campaign's schema (``schemas``: a recent live one may be reused), open the file
    and map its columns. Raises InputError when the file cannot be processed at all."""
    campaign = file.campaign
    if schemas is not None:
        schema = schemas.get(client, campaign, settings.paths.schemas)
    else:
        schema = load_campaign_schema(client, campaign, settings.paths.schemas)
    try:
        table = open_for(file.path, schema, settings, campaign, chunk_rows)
    except InputError as exc:
        # a workbook whose copy is still under way looks damaged: say so only once it is not
        file.raise_if_changed(exc, lambda why: mark_changed(ledger, file.key, dry_run, why))
        raise
    options = settings.campaign(campaign)
    mapping = map_columns(table.headers, schema.fields, options.columns, path=file.path)
    return Opened(file, schema, table, mapping, settings.validation.regex_match)


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
