"""Prometheus metrics of ``leadpipe run`` (served at ``/metrics`` by the status page).

One :class:`Metrics` per service, on its own registry (no global state: tests can run several).
``leadpipe_rows_total`` moves as the rows go: at each scrape, by what each file in progress did
since the last one; when the file ends, by the rest of its run's counts only, so that no row is
counted twice (docs/dropfolder.md, "Progress, rate and finish").
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from pipeline.api.quota import QuotaStatus
from pipeline.dropfolder.status import IntakeStatus

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Receipt count keys -> the ``outcome`` label of ``leadpipe_rows_total``.
ROW_OUTCOMES = {
    "accepted": "accepted",
    "rejected": "rejected",
    "refused_by_api": "refused",
    "duplicates": "duplicate",
    "uncertain": "uncertain",
    "blank_skipped": "blank",
}
#: Rows found by reading, not by the ledger: a file that goes back to the inbox (waiting,
#: changed) or stops (interrupted) is read again, so these count only when a file ends for good.
READ_AGAIN = frozenset({"rejected", "blank_skipped"})


class Metrics:
    """Counters, gauges and histograms of one service."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.files = Counter(
            "leadpipe_files", "Input files finished, by outcome.", ["outcome"], registry=r
        )
        self.rows = Counter(
            "leadpipe_rows", "Rows of finished files, by outcome.", ["outcome"], registry=r
        )
        self.api_calls = Counter(
            "leadpipe_api_calls",
            "HTTP calls to the HeroBase API, by status.",
            ["status"],
            registry=r,
        )
        self.api_latency = Histogram(
            "leadpipe_api_call_seconds",
            "Time for one HTTP call to the HeroBase API.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.file_seconds = Histogram(
            "leadpipe_file_seconds",
            "Time to process one file (claim to final place).",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=r,
        )
        self.pickup_seconds = Histogram(
            "leadpipe_pickup_delay_seconds",
            "Time from a file being settled to it being claimed (queueing delay).",
            buckets=(0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 300),
            registry=r,
        )
        self.queue_depth = Gauge(
            "leadpipe_queue_depth", "Files settled and waiting to be processed.", registry=r
        )
        self.in_progress = Gauge(
            "leadpipe_files_in_progress", "Files being processed now.", registry=r
        )
        self.waiting_for_api = Gauge(
            "leadpipe_waiting_for_api",
            "1 while uploads are paused because the API is down.",
            registry=r,
        )
        self.inbox_up = Gauge(
            "leadpipe_inbox_reachable", "1 while the inbox folder can be read.", registry=r
        )
        self.quota_used = Gauge(
            "leadpipe_api_quota_used_today",
            "HeroBase requests counted today on the account (every integration's, as last told).",
            registry=r,
        )
        self.quota_left = Gauge(
            "leadpipe_api_quota_left_today",
            "HeroBase requests leadpipe may still send today (its budget: the limit less the "
            "reserve); NaN without a daily limit.",
            registry=r,
        )
        self.quota_limit = Gauge(
            "leadpipe_api_quota_limit_today",
            "The day's HeroBase request limit of the account; NaN when none is known.",
            registry=r,
        )
        self.quota_resets = Gauge(
            "leadpipe_api_quota_resets_at_seconds",
            "When the day's request count restarts (Unix time).",
            registry=r,
        )
        self.file_rows_done = Gauge(
            "leadpipe_file_rows_done",
            "Rows of the file in progress done so far (sent or rejected), by campaign.",
            ["campaign"],
            registry=r,
        )
        self.file_rows_total = Gauge(
            "leadpipe_file_rows_total",
            "Data rows of the file in progress (an estimate until it was read), by campaign.",
            ["campaign"],
            registry=r,
        )
        self.file_rows_rate = Gauge(
            "leadpipe_file_rows_per_second",
            "Rows sent per second over the last minute for the file in progress, by campaign.",
            ["campaign"],
            registry=r,
        )
        self.file_eta = Gauge(
            "leadpipe_file_eta_seconds",
            "Seconds until the file in progress is likely done at its rate, by campaign.",
            ["campaign"],
            registry=r,
        )
        self.files_seen = 0
        self._refresh: Callable[[], IntakeStatus] | None = None
        self._lock = threading.Lock()
        #: rows counted while their file was in progress, by run and count key
        self._live: dict[str, dict[str, int]] = {}
        self._ended: deque[str] = deque(maxlen=1000)  #: runs whose file ended

    def file_finished(
        self,
        outcome: str,
        counts: Mapping[str, int],
        seconds: float,
        *,
        run: str = "",
        run_counts: Mapping[str, int] | None = None,
        ended: bool = True,
    ) -> None:
        """Count one finished file, and its rows not counted while it was in progress.

        ``run_counts``: the run's own rows (``counts`` may include an earlier run's); the
        receipt's ``counts`` fill in what the run did not report (blank rows). ``ended``: False
        when the file will be read again (its rejected and blank rows count then, once).
        """
        self.files.labels(outcome=outcome).inc()
        self.file_seconds.observe(seconds)
        final = {**counts, **run_counts} if run_counts is not None else dict(counts)
        with self._lock:
            counted = self._live.pop(run, {}) if run else {}
            if run:
                self._ended.append(run)
            for key, label in ROW_OUTCOMES.items():
                if not ended and key in READ_AGAIN:
                    continue
                n = int(final.get(key, 0) or 0) - counted.get(key, 0)
                if n > 0:
                    self.rows.labels(outcome=label).inc(n)

    def _count_live(self, now: IntakeStatus) -> None:
        """Rows of files in progress since the last scrape; their gauges."""
        for gauge in (self.file_rows_done, self.file_rows_total, self.file_rows_rate):
            gauge.clear()
        self.file_eta.clear()
        with self._lock:
            for code, c in now.campaigns.items():
                p = c.progress
                if p is None:
                    continue
                self.file_rows_done.labels(campaign=code).set(p.rows_sent + p.rows_rejected)
                if p.rows_total is not None:
                    self.file_rows_total.labels(campaign=code).set(p.rows_total)
                if p.rate is not None:
                    self.file_rows_rate.labels(campaign=code).set(p.rate)
                if p.eta_seconds is not None:
                    self.file_eta.labels(campaign=code).set(p.eta_seconds)
                if p.preview or not p.run or p.run in self._ended:
                    continue  # a preview sends nothing; an ended run was counted in full
                counted = self._live.setdefault(p.run, {})
                for key, label in ROW_OUTCOMES.items():
                    if key in READ_AGAIN:
                        continue  # counted when the file ends for good
                    n = int(p.counts.get(key, 0)) - counted.get(key, 0)
                    if n > 0:
                        self.rows.labels(outcome=label).inc(n)
                        counted[key] = counted.get(key, 0) + n

    def api_response(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        """A ``requests`` response hook: counts the call by status and records its latency."""
        self.api_calls.labels(status=str(getattr(response, "status_code", "error"))).inc()
        elapsed = getattr(response, "elapsed", None)
        if elapsed is not None:
            self.api_latency.observe(elapsed.total_seconds())
        return response

    def follow(self, status: Callable[[], IntakeStatus]) -> None:
        """Take the gauges from ``status()`` (the intake's) at every scrape."""
        self._refresh = status

    def _set_quota(self, quota: QuotaStatus | None) -> None:
        """The daily budget's gauges (NaN for what is not known: no made-up zeros)."""
        nan = float("nan")
        left = quota.left if quota is not None else None
        limit = quota.limit if quota is not None else None
        resets = quota.resets_at if quota is not None else ""
        self.quota_used.set(float(quota.used) if quota is not None else nan)
        self.quota_left.set(float(left) if left is not None else nan)
        self.quota_limit.set(float(limit) if limit is not None else nan)
        self.quota_resets.set(datetime.fromisoformat(resets).timestamp() if resets else nan)

    def render(self) -> bytes:
        """The exposition text."""
        if self._refresh is not None:
            now = self._refresh()
            self.queue_depth.set(float(now.queue_depth))
            self.in_progress.set(float(now.in_progress))
            self.waiting_for_api.set(1.0 if now.waiting_for_api else 0.0)
            self.inbox_up.set(1.0 if now.inbox_ok else 0.0)
            self._set_quota(now.quota)
            self._count_live(now)
        return generate_latest(self.registry)
