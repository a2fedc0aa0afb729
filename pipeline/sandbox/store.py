"""Lead storage for the sandbox: in memory, optionally written through to SQLite.

Times are tenant-local naive datetimes, kept as strings in the contract's format
(``YYYY-MM-DDTHH:MM:SS.fffffff``) so that range filters are plain string comparisons.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.errors import StateError

#: First number of generated uniqueIds (they look like 82549084S3064).
FIRST_NUMBER = 82549084
OPEN_STATUSES = frozenset({"New"})
CLOSED_STATUSES = frozenset({"UserProcessed", "Depleted"})


def fmt_time(dt: datetime) -> str:
    """Format a naive tenant-local time with seven fractional digits."""
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond:06d}0"


class Lead:
    """One stored lead (mutable: call simulation updates it under the store's lock)."""

    __slots__ = (
        "campaign_code",
        "campaign_id",
        "closure",
        "data",
        "first_processed_by",
        "first_processed_time",
        "last_modified_by",
        "last_modified_time",
        "priority",
        "seq",
        "status",
        "unique_id",
        "upload_time",
        "uploaded_by",
    )

    def __init__(
        self,
        seq: int,
        unique_id: str,
        campaign_code: str,
        campaign_id: str,
        data: dict[str, str],
        *,
        upload_time: str,
        uploaded_by: str,
        status: str = "New",
        closure: str = "NotSet",
        priority: int = 10,
        last_modified_time: str | None = None,
        last_modified_by: str | None = None,
        first_processed_time: str | None = None,
        first_processed_by: str | None = None,
    ) -> None:
        self.seq = seq
        self.unique_id = unique_id
        self.campaign_code = campaign_code
        self.campaign_id = campaign_id
        self.data = data
        self.upload_time = upload_time
        self.uploaded_by = uploaded_by
        self.status = status
        self.closure = closure
        self.priority = priority
        self.last_modified_time = last_modified_time or upload_time
        self.last_modified_by = last_modified_by or uploaded_by
        self.first_processed_time = first_processed_time
        self.first_processed_by = first_processed_by

    @property
    def is_open(self) -> bool:
        """True while no agent has closed the lead."""
        return self.status in OPEN_STATUSES

    def render(self, uploader: dict[str, str] | None, *, data: bool = True) -> dict[str, Any]:
        """The lead object (docs/api-contract.md, "Exports").

        ``uploader`` is the ``uploadedByUser`` object (None leaves the key out; the tenant's
        profile builds it); ``data=False`` leaves out the lead's ``data`` fields.
        """
        out: dict[str, Any] = {
            "uniqueId": self.unique_id,
            "status": self.status,
            "closure": self.closure,
            "priority": self.priority,
            "uploadTime": self.upload_time,
            "lastModifiedTime": self.last_modified_time,
            "firstProcessedTime": self.first_processed_time,
            "campaign": {"code": self.campaign_code, "uniqueId": self.campaign_id},
        }
        if data:
            out["data"] = dict(self.data)
        out["closureData"] = []
        if uploader is not None:
            out["uploadedByUser"] = uploader
        out["lastModifiedByUser"] = {"orgCode": self.last_modified_by}
        out["firstProcessedByUser"] = (
            {"orgCode": self.first_processed_by} if self.first_processed_by else None
        )
        return out

    def to_row(self) -> dict[str, Any]:
        """Everything needed to rebuild the lead (SQLite persistence)."""
        return {name: getattr(self, name) for name in self.__slots__}


class LeadStore:
    """Thread-safe lead storage; ``lock`` guards every read and write."""

    def __init__(self, id_suffix: str, db: Path | None = None) -> None:
        self.lock = threading.RLock()
        self._suffix = id_suffix
        self._by_id: dict[str, Lead] = {}
        self._leads: list[Lead] = []
        self._by_campaign: dict[str, list[Lead]] = {}
        self._next = FIRST_NUMBER
        self._db: sqlite3.Connection | None = None
        if db is not None:
            self._open_db(db)

    def _open_db(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute(
                "CREATE TABLE IF NOT EXISTS leads (seq INTEGER PRIMARY KEY, unique_id TEXT"
                " UNIQUE NOT NULL, body TEXT NOT NULL)"
            )
            rows = con.execute("SELECT body FROM leads ORDER BY seq").fetchall()
        except sqlite3.Error as exc:
            raise StateError(
                f"the sandbox database {path} cannot be opened ({exc}); "
                "remove it or choose another --db file"
            ) from None
        self._db = con
        try:
            for (body,) in rows:
                row = json.loads(body)
                seq = row.pop("seq")
                uid = row.pop("unique_id")
                code = row.pop("campaign_code")
                cid = row.pop("campaign_id")
                data = row.pop("data")
                self._remember(Lead(seq, uid, code, cid, data, **row))
        except (ValueError, KeyError, TypeError, AttributeError):
            self.close()
            raise StateError(
                f"the sandbox database {path} holds leads in an unknown format; "
                "remove it or choose another --db file"
            ) from None

    @property
    def persisted_count(self) -> int:
        """How many leads were loaded (or exist) in total."""
        with self.lock:
            return len(self._leads)

    def close(self) -> None:
        """Close the database, if any."""
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _remember(self, lead: Lead) -> None:
        self._by_id[lead.unique_id.upper()] = lead
        self._leads.append(lead)
        self._by_campaign.setdefault(lead.campaign_code, []).append(lead)
        number = int(lead.unique_id[: len(lead.unique_id) - len(self._suffix)] or 0)
        self._next = max(self._next, number + 1, lead.seq + 1)

    def _persist(self, leads: Iterable[Lead]) -> None:
        if self._db is None:
            return
        self._db.executemany(
            "INSERT OR REPLACE INTO leads (seq, unique_id, body) VALUES (?, ?, ?)",
            [(lead.seq, lead.unique_id, json.dumps(lead.to_row())) for lead in leads],
        )

    def new(
        self,
        campaign_code: str,
        campaign_id: str,
        data: dict[str, str],
        *,
        upload_time: str,
        uploaded_by: str,
        **extra: Any,
    ) -> Lead:
        """Create, store and return a lead with the next uniqueId."""
        with self.lock:
            number = self._next
            lead = Lead(
                number,
                f"{number}{self._suffix}",
                campaign_code,
                campaign_id,
                data,
                upload_time=upload_time,
                uploaded_by=uploaded_by,
                **extra,
            )
            self._remember(lead)
            self._persist((lead,))
            return lead

    def saved(self, leads: Iterable[Lead]) -> None:
        """Persist leads changed in place (call with the lock held)."""
        self._persist(leads)

    def get(self, unique_id: str) -> Lead | None:
        """The lead with ``unique_id`` (case-insensitive), or None."""
        return self._by_id.get(unique_id.upper())

    def in_campaigns(self, codes: Iterable[str]) -> list[Lead]:
        """A snapshot list of the leads of these campaign codes."""
        with self.lock:
            out: list[Lead] = []
            for code in codes:
                out.extend(self._by_campaign.get(code, ()))
            return out

    def all(self) -> list[Lead]:
        """A snapshot list of every lead, in upload order."""
        with self.lock:
            return list(self._leads)
