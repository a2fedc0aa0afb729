"""The daily digest: what happened per campaign since the last one, in counts, file names and
paths (never a lead's data), sent at ``[alerts] digest_at`` in the tenant's time zone
(docs/alerts.md, "Daily digest").

:class:`DigestBook` keeps the figures in ``<state>/alerts/digest.json``, so a restart loses
none; :func:`digest_due` is a pure function of ``now``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any

from pipeline.alerts.conditions import StateFile
from pipeline.clock import Clock, shown_time
from pipeline.export.windows import local_date, to_utc, zone
from pipeline.outcome import FileOutcome

DIGEST_FILE = "digest.json"
#: At most this many reject files are listed per campaign (the rest are counted).
MAX_PATHS = 20


def digest_time(at: str) -> time:
    """``"HH:MM"`` as a time of day."""
    hours, _, minutes = at.strip().partition(":")
    return time(int(hours), int(minutes or 0))


def due_at(day: date, at: str, tz: tzinfo) -> datetime:
    """The instant (UTC) of ``day``'s digest (a time in a DST gap: at the jump)."""
    return to_utc(datetime.combine(day, digest_time(at)), tz)


def digest_due(at: str, now: datetime, tz: tzinfo | str, last: date | None) -> date | None:
    """The local day whose digest is due now (None: not yet, or already sent).

    ``last``: the day of the last digest sent.
    """
    if not at:
        return None
    tz = zone(tz)
    today = local_date(now, tz)
    if now >= due_at(today, at, tz) and (last is None or last < today):
        return today
    return None


@dataclass
class CampaignDay:
    """One campaign's figures since the last digest."""

    files: int = 0
    failed: int = 0
    uploaded: int = 0
    to_fix: int = 0
    uncertain: int = 0
    reject_files: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "failed": self.failed,
            "uploaded": self.uploaded,
            "to_fix": self.to_fix,
            "uncertain": self.uncertain,
            "reject_files": list(self.reject_files),
        }

    @classmethod
    def from_json(cls, data: Any) -> CampaignDay:
        if not isinstance(data, dict):
            return cls()

        def num(key: str) -> int:
            v = data.get(key)
            return v if isinstance(v, int) and not isinstance(v, bool) else 0

        paths = data.get("reject_files")
        return cls(
            files=num("files"),
            failed=num("failed"),
            uploaded=num("uploaded"),
            to_fix=num("to_fix"),
            uncertain=num("uncertain"),
            reject_files=[str(p) for p in paths] if isinstance(paths, list) else [],
        )


class DigestBook:
    """The figures since the last digest, persisted; thread-safe."""

    def __init__(self, state_dir: Path, clock: Clock, timezone: str, at: str) -> None:
        self.clock = clock
        self.tz = zone(timezone)
        self.timezone = timezone
        self.at = at
        self.file = StateFile(state_dir, DIGEST_FILE)
        self._lock = threading.Lock()
        data = self.file.read()
        now = clock.now()
        self.since = _time(data.get("since")) or now
        raw_last = data.get("last")
        self.last: date | None = None
        if isinstance(raw_last, str):
            try:
                self.last = date.fromisoformat(raw_last)
            except ValueError:
                self.last = None
        if self.last is None and at:
            # the first start: the first digest is the next one, not one for today's past
            today = local_date(now, self.tz)
            self.last = today if now >= due_at(today, at, self.tz) else today - timedelta(1)
        camps = data.get("campaigns")
        self.campaigns: dict[str, CampaignDay] = (
            {str(k): CampaignDay.from_json(v) for k, v in camps.items()}
            if isinstance(camps, dict)
            else {}
        )
        exports = data.get("exports")
        self.exports: dict[str, list[str]] = (
            {str(k): [str(f) for f in v] for k, v in exports.items() if isinstance(v, list)}
            if isinstance(exports, dict)
            else {}
        )
        self._save()

    def file_done(
        self, campaign: str, outcome: FileOutcome, counts: dict[str, int], rejects: list[str]
    ) -> None:
        """Count one finished (non-preview) file."""
        with self._lock:
            day = self.campaigns.setdefault(campaign, CampaignDay())
            day.files += 1
            if outcome is FileOutcome.FAILED:
                day.failed += 1
            day.uploaded += counts.get("accepted", 0)
            day.to_fix += counts.get("rejected", 0)
            day.uncertain += counts.get("uncertain", 0)
            day.reject_files.extend(p for p in rejects if p.endswith(".xlsx"))
            self._save()

    def export_written(self, job: str, file: str) -> None:
        """Count one export file written."""
        with self._lock:
            files = self.exports.setdefault(job, [])
            if file not in files:
                files.append(file)
                self._save()

    def due(self) -> date | None:
        """The day whose digest is due now (None: not yet)."""
        with self._lock:
            return digest_due(self.at, self.clock.now(), self.tz, self.last)

    def take(self, day: date) -> tuple[str, str]:
        """The digest for ``day`` (title, body), and counting starts afresh, in one step: a
        file finishing meanwhile is counted in this digest or the next, never in neither."""
        with self._lock:
            out = render(self.campaigns, self.exports, self.since, self.clock.now(), self.timezone)
            self._reset(day)
            return out

    def _reset(self, day: date) -> None:
        self.last = day
        self.since = self.clock.now()
        self.campaigns = {}
        self.exports = {}
        self._save()

    def _save(self) -> None:
        self.file.write(
            {
                "since": self.since.isoformat(timespec="seconds"),
                "last": self.last.isoformat() if self.last else None,
                "campaigns": {k: v.to_json() for k, v in self.campaigns.items()},
                "exports": {k: list(v) for k, v in self.exports.items()},
            }
        )


def render(
    campaigns: dict[str, CampaignDay],
    exports: dict[str, list[str]],
    since: datetime,
    now: datetime,
    timezone: str,
) -> tuple[str, str]:
    """The digest in plain words (pure): a title and a body."""
    period = f"from {shown_time(since, timezone)} to {shown_time(now, timezone)}"
    title = f"Daily digest {local_date(now, zone(timezone)).isoformat()}"
    busy = {k: v for k, v in campaigns.items() if v.files}
    if not busy and not any(exports.values()):
        return title, (
            f"Nothing happened {period}: no file was dropped into any campaign folder and no "
            "export file was written."
        )
    lines = [f"What leadpipe did {period}:", ""]
    for code, day in sorted(busy.items()):
        lines.append(
            f"{code}: {day.files} file(s) processed ({day.failed} failed), "
            f"{day.uploaded} lead(s) uploaded, {day.to_fix} row(s) to fix, "
            f"{day.uncertain} row(s) uncertain (waiting for a person)"
        )
        for p in day.reject_files[:MAX_PATHS]:
            lines.append(f"  rows to fix: {p}")
        if len(day.reject_files) > MAX_PATHS:
            lines.append(f"  ... and {len(day.reject_files) - MAX_PATHS} more reject files")
    if not busy:
        lines.append("No file was dropped into any campaign folder.")
    lines.append("")
    written = {k: v for k, v in exports.items() if v}
    if written:
        for job, files in sorted(written.items()):
            lines.append(f"Export {job}: {len(files)} file(s) written, the last {files[-1]}")
    else:
        lines.append("No export file was written.")
    lines.append("")
    lines.append(
        "Fix the rows in each reject file and drop it into its campaign folder again; "
        "uncertain rows are listed in their file's receipt."
    )
    return title, "\n".join(lines)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        return None
    return found if found.tzinfo is not None else None
