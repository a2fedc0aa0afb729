"""Files dropped and ingested as the service would, with an injected clock (retention and
trace tests): the original ends in ``processed/``, rejects in ``rejected/``, a receipt beside
the original, everything recorded in the ledger."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from pipeline.api import HeroBaseClient
from pipeline.clock import FakeClock
from pipeline.config import RetentionSettings, Settings
from pipeline.dropfolder.layout import DropFolder
from pipeline.ingest.report.place import ReceiptWriter, ResultPlaces
from pipeline.ingest.report.receipt import Receipt
from pipeline.ingest.run import IngestContext, IngestRequest, ingest_file
from pipeline.ledger.sqlite import SqliteLedger, open_ledger
from pipeline.sandbox import Sandbox
from tests.ingest.conftest import CAMPAIGN, make_settings

__all__ = ["CAMPAIGN", "Dropped", "Env", "env_for", "leads_csv"]


def leads_csv(tag: str, phones: list[str], invalid: list[str] = ()) -> bytes:  # type: ignore[assignment]
    """A CSV for the demo campaign: one valid row per phone, one bad row per ``invalid``
    phone (its e-mail is bad too, so the row is rejected)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["Name", "Phone", "Email", "Segment"])
    for i, phone in enumerate(phones):
        w.writerow([f"{tag} company {i}", phone, f"{tag.lower()}{i}@example.dk", "SMB"])
    for i, phone in enumerate(invalid):
        w.writerow([f"{tag} broken {i}", phone, "not-an-email", "Huge"])
    return out.getvalue().encode()


@dataclass(frozen=True)
class Dropped:
    """One file dropped and processed: its receipt and where its files ended."""

    receipt: Receipt
    original: Path
    receipt_txt: Path
    rejects: list[Path]


@dataclass
class Env:
    sb: Sandbox
    settings: Settings
    client: HeroBaseClient
    ledger: SqliteLedger
    clock: FakeClock

    @property
    def folder(self) -> Path:
        return self.settings.paths.inbox / CAMPAIGN

    def drop(self, name: str, content: bytes, when: datetime) -> Dropped:
        """Drop ``content`` as ``name`` at ``when`` and process it as the service does."""
        self.clock.set(when)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        path.write_bytes(content)
        layout = DropFolder(self.settings.paths.inbox)
        places = ResultPlaces.in_drop_folder(layout.inbox, self.folder, preview=False)
        results = layout.hidden / "test-results"
        results.mkdir(parents=True, exist_ok=True)
        request = IngestRequest(path, CAMPAIGN, results=results, tmp=layout.tmp)
        context = IngestContext(self.settings, self.client, self.ledger, clock=self.clock)
        result = ingest_file(request, context)
        placed = ReceiptWriter(self.ledger).place(
            result.receipt, result.rejects, places, result.base
        )
        original = layout.to_processed(path, self.folder, False, result.base)
        return Dropped(placed.receipt, original, placed.txt, placed.rejects)

    def posts(self) -> int:
        """Lead uploads the sandbox received so far."""
        return sum(
            1
            for e in self.sb.requests()
            if e.get("method") == "POST" and str(e.get("path", "")).rstrip("/").endswith("/leads")
        )


@contextmanager
def env_for(sb: Sandbox, tmp: Path, retention: RetentionSettings, start: datetime) -> Iterator[Env]:
    settings = replace(make_settings(tmp, sb), retention=retention)
    client = HeroBaseClient(settings.api, timezone=settings.timezone)
    ledger = open_ledger(settings.paths.state)
    try:
        yield Env(sb, settings, client, ledger, FakeClock(start))
    finally:
        ledger.close()
        client.close()
