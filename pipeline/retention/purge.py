"""Retention: what is due at ``now`` (a pure function), and the purge that removes it.

``[retention]`` gives each kind of kept data a period in days (0: kept forever). After it,
files are deleted and the ledger's records of a file keep only what exactly-once needs: the
file's content hash and campaign, its rows' fingerprints, states and uniqueIds, and its
receipt's counts (docs/retention.md, "What a purge keeps").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.config import RetentionSettings, Settings
from pipeline.errors import StateError
from pipeline.ledger import Ledger
from pipeline.retention.kept import (
    Kept,
    KeptFile,
    LedgerFile,
    ledger_files,
    list_kept,
    scrubbed_receipt,
)

log = logging.getLogger("leadpipe.retention")


@dataclass(frozen=True)
class PurgePlan:
    """What is due at ``now``: the files to delete and the ledger records to scrub."""

    now: datetime
    files: tuple[KeptFile, ...] = ()
    ledger: tuple[LedgerFile, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing is due."""
        return not self.files and not self.ledger

    def counts(self) -> dict[str, int]:
        """How many of each kind are due."""
        out = {k.value: 0 for k in Kept}
        for f in self.files:
            out[f.kind.value] += 1
        out[Kept.LEDGER.value] = len(self.ledger)
        return out

    def to_json(self) -> dict[str, Any]:
        """For ``leadpipe purge --json``."""
        return {
            "now": self.now.isoformat(timespec="seconds"),
            "counts": self.counts(),
            "files": [
                {"path": str(f.path), "kind": f.kind.value, "campaign": f.campaign,
                 "since": f.at.isoformat(timespec="seconds")}
                for f in self.files
            ],
            "ledger": [
                {"sha256": r.key.sha256, "campaign": r.key.campaign, "name": r.name,
                 "since": r.at.isoformat(timespec="seconds")}
                for r in self.ledger
            ],
        }  # fmt: skip


@dataclass(frozen=True)
class PurgeReport:
    """What a purge did."""

    plan: PurgePlan
    deleted: tuple[Path, ...] = ()
    scrubbed: int = 0
    #: files that could not be deleted, with the reason (tried again at the next purge)
    problems: tuple[str, ...] = field(default_factory=tuple)


def is_due(at: datetime, days: int, now: datetime) -> bool:
    """True when something made ``at`` is older than ``days`` days at ``now`` (0: never)."""
    return days > 0 and now - at > timedelta(days=days)


def due(
    policy: RetentionSettings,
    now: datetime,
    files: Iterable[KeptFile],
    records: Iterable[LedgerFile],
) -> PurgePlan:
    """What is due at ``now`` under ``policy``: a pure function of the listings."""
    return PurgePlan(
        now,
        tuple(f for f in files if is_due(f.at, f.kind.days(policy), now)),
        tuple(r for r in records if not r.scrubbed and is_due(r.at, Kept.LEDGER.days(policy), now)),
    )


def plan_purge(settings: Settings, ledger: Ledger, now: datetime) -> PurgePlan:
    """What ``leadpipe purge`` would remove now (``--dry-run`` shows this)."""
    return due(settings.retention, now, list_kept(settings), ledger_files(ledger))


def apply_purge(plan: PurgePlan, ledger: Ledger) -> PurgeReport:
    """Delete the plan's files and scrub its ledger records. Files already gone are fine."""
    deleted: list[Path] = []
    problems: list[str] = []
    for f in plan.files:
        for path in (f.path, *f.companions):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror or exc}")
                continue
            if path == f.path:
                deleted.append(path)
    records = {r.key: r for r in plan.ledger}
    for r in plan.ledger:
        record = ledger.file(r.key)
        if record is None or record.state is not r.state:
            continue  # dropped again since the plan (being processed now): not this time
        ledger.scrub_file(r.key, scrubbed_receipt(record.receipt_json, plan.now))
    if records:
        ledger.compact(vacuum=False)
    return PurgeReport(plan, tuple(deleted), len(records), tuple(problems))


def purge(settings: Settings, ledger: Ledger, now: datetime) -> PurgeReport:
    """Apply ``[retention]`` now: what is due is deleted or scrubbed (the service, daily)."""
    report = apply_purge(plan_purge(settings, ledger, now), ledger)
    for p in report.problems:
        log.warning("retention: could not delete %s", p)
    return report


def purge_quietly(settings: Settings, ledger: Ledger, now: datetime) -> PurgeReport | None:
    """:func:`purge` for the service: an error is logged, never raised (the state's own
    errors excepted: those stop the service)."""
    try:
        report = purge(settings, ledger, now)
    except StateError:
        raise
    except Exception:
        log.exception("retention: the purge failed; it is tried again tomorrow")
        return None
    if report.deleted or report.scrubbed:
        log.info(
            "retention: deleted %d file(s), removed values of %d ledger file record(s)",
            len(report.deleted),
            report.scrubbed,
        )
    return report
