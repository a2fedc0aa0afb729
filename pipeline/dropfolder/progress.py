"""How far each file being processed is: rows read, rejected and sent of the total, the rate.

The intake gives every job a :class:`FileRun`; the processor reports into it as the rows go
(from ingest's ``progress(stage, done, total)`` callback and the ledger's row counts), and the
status reads it as a :class:`~pipeline.dropfolder.status.FileProgress` (docs/dropfolder.md,
"Progress, rate and finish"). Thread-safe: the worker writes, the status page reads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta

from pipeline.dropfolder.status import FileProgress

#: The rate is measured over this many recent seconds [ours]: long enough to smooth the
#: per-chunk pauses, short enough to follow a change of the tenant's pace.
RATE_WINDOW = 60.0
#: No rate is given before this many seconds of sending were seen (one sample is no rate).
MIN_RATE_SPAN = 0.5
#: The receipt count keys of rows that reached an end at the API ("sent").
SENT_KEYS = ("accepted", "refused_by_api", "duplicates", "uncertain")


class FileRun:
    """One run of one file: what the processor reported, and the rate it makes."""

    def __init__(
        self, name: str, run: str, *, preview: bool, started: datetime, mono: float
    ) -> None:
        self.name = name
        self.run = run
        self.preview = preview
        self.started = started
        self._lock = threading.Lock()
        self._stage = "starting"
        self._read = 0
        self._rejected = 0
        self._total: int | None = None
        self._exact = False
        self._counts: dict[str, int] = {}
        self._samples: deque[tuple[float, int]] = deque([(mono, 0)])
        self._cancel = ""

    # ---------------------------------------------------------------- the processor reports
    def estimate(self, rows: int | None) -> None:
        """A cheap estimate of the file's data rows, before it is read."""
        with self._lock:
            if not self._exact:
                self._total = rows

    def reading(self, rows: int, *, total: int | None = None) -> None:
        """Rows read and checked so far; ``total`` once the file was read to the end."""
        with self._lock:
            self._stage = "reading" if self._stage == "starting" else self._stage
            self._read = max(self._read, rows)
            if total is not None:
                self._total, self._exact = total, True
            elif not self._exact and self._total is not None and self._read > self._total:
                self._total = self._read  # the estimate was short: at least what was read

    def rejected(self, rows: int) -> None:
        """Rows that failed the checks so far."""
        with self._lock:
            self._rejected = max(self._rejected, rows)

    def sent(self, counts: Mapping[str, int], mono: float) -> None:
        """This run's rows by outcome (receipt count keys) as the ledger has them now."""
        with self._lock:
            self._stage = "uploading"
            self._counts = {k: max(0, int(v)) for k, v in counts.items()}
            self._samples.append((mono, self._sent()))
            while len(self._samples) > 2 and self._samples[1][0] < mono - RATE_WINDOW:
                self._samples.popleft()

    def cancelling(self, text: str) -> None:
        """A person asked to cancel the file (``text``: by whom, when)."""
        with self._lock:
            self._cancel = text

    def _sent(self) -> int:
        return sum(self._counts.get(k, 0) for k in SENT_KEYS)

    # ---------------------------------------------------------------- the status reads
    def rate(self, mono: float) -> float | None:
        """Rows sent per second over the recent window (None: not measured yet)."""
        with self._lock:
            return self._rate(mono)

    def _rate(self, mono: float) -> float | None:
        first_t, first_n = self._samples[0]
        last_n = self._samples[-1][1]
        span = mono - first_t
        if span < MIN_RATE_SPAN or last_n <= first_n:
            return None
        return (last_n - first_n) / span

    def snapshot(self, mono: float, now: datetime) -> FileProgress:
        """The run now, as the status shows it."""
        with self._lock:
            rate = self._rate(mono)
            sent = self._sent()
            left_rows = None if self._total is None else max(0, self._total - sent - self._rejected)
            left = left_rows / rate if left_rows is not None and rate else None
            counts = dict(self._counts)
            if self._rejected:
                counts["rejected"] = self._rejected
            return FileProgress(
                name=self.name,
                run=self.run,
                preview=self.preview,
                stage=self._stage,
                rows_read=max(self._read, sent + self._rejected),  # rows sent were read
                rows_rejected=self._rejected,
                rows_sent=sent,
                rows_total=self._total,
                total_exact=self._exact,
                rate=round(rate, 2) if rate is not None else None,
                eta=(now + timedelta(seconds=left)).isoformat(timespec="seconds")
                if left is not None
                else "",
                eta_seconds=round(left, 1) if left is not None else None,
                started=self.started.isoformat(timespec="seconds"),
                cancel=self._cancel,
                counts=counts,
            )


class ProgressBoard:
    """The runs in progress, by campaign (one file at a time per campaign)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, FileRun] = {}
        #: the last measured rate per campaign: waiting files are estimated at it
        self._last_rate: dict[str, float] = {}

    def begin(self, campaign: str, run: FileRun) -> FileRun:
        """Track ``run`` as the campaign's file in progress."""
        with self._lock:
            self._runs[campaign] = run
        return run

    def end(self, campaign: str, run: FileRun, mono: float) -> None:
        """The run ended (keep its rate for the next estimates)."""
        rate = run.rate(mono)
        with self._lock:
            if self._runs.get(campaign) is run:
                del self._runs[campaign]
            if rate:
                self._last_rate[campaign] = rate

    def get(self, campaign: str) -> FileRun | None:
        with self._lock:
            return self._runs.get(campaign)

    def last_rate(self, campaign: str) -> float | None:
        with self._lock:
            return self._last_rate.get(campaign)
