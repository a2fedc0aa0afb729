"""Exports exactly once per window across nodes (docs/cluster.md, "Exports").

A run of a job holds the lease ``export:<job>`` (so one node at a time catches a job up, in
order); each window is written under ``export:<job>:<from>_<to>`` and then recorded in
``cluster_exports``. The watermark a job had before the install became a cluster is recorded
there too, as a marker row of no length (``window_from = window_to`` = the watermark, no file),
so every node's :meth:`ClusterExports.written_until` starts from it. A node that dies
mid-export stops renewing its leases: after ``lease_seconds`` another node takes the job, finds
the window not recorded and writes it (the writer renames a complete file into place, so a
half-written one is never seen).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

from pipeline.cluster.node import ClusterNode
from pipeline.errors import StateError
from pipeline.export.state import JobBusy
from pipeline.export.windows import Window


def job_resource(name: str) -> str:
    return f"export:{name}"


def window_resource(name: str, window: Window) -> str:
    return f"export:{name}:{window.start.isoformat()}_{window.end.isoformat()}"


class ClusterExports:
    """:class:`pipeline.export.scheduler.SharedExports` over a :class:`ClusterNode`."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    @contextlib.contextmanager
    def job(self, name: str) -> Iterator[Callable[[], bool]]:
        hold = self.node.acquire(job_resource(name))
        if hold is None:
            raise JobBusy(
                f"export {name!r} is running on another node (or the cluster's database is not "
                "answering); looked at again soon"
            )
        try:
            yield hold.held_locally
        finally:
            self.node.release(hold)

    @contextlib.contextmanager
    def window(self, name: str, window: Window) -> Iterator[Callable[[], bool] | None]:
        hold = self.node.acquire(window_resource(name, window))
        if hold is None:
            yield None
            return
        try:
            yield hold.check  # asked before the file is renamed into place
        finally:
            self.node.release(hold)

    def written_until(self, name: str) -> date | None:
        rows = self._query("SELECT max(window_to) AS end FROM cluster_exports WHERE job = %s", name)
        end = rows[0]["end"] if rows else None
        return end if isinstance(end, date) else None

    def adopt(self, name: str, watermark: date) -> None:
        """Record the single-node watermark as a marker row (no window is ever that short)."""
        self._query(
            "INSERT INTO cluster_exports (job, window_from, window_to, file, rows, written, node)"
            " VALUES (%s, %s, %s, '', NULL, now(), %s) ON CONFLICT DO NOTHING",
            name,
            watermark,
            watermark,
            self.node.name,
        )

    def written(self, name: str, window: Window) -> bool:
        rows = self._query(
            "SELECT 1 FROM cluster_exports WHERE job = %s AND window_from = %s AND window_to = %s",
            name,
            window.start,
            window.end,
        )
        return bool(rows)

    def record(self, name: str, window: Window, path: Path, rows: int | None) -> None:
        self._query(
            "INSERT INTO cluster_exports (job, window_from, window_to, file, rows, written, node)"
            " VALUES (%s, %s, %s, %s, %s, now(), %s) ON CONFLICT DO NOTHING",
            name,
            window.start,
            window.end,
            str(path),
            rows,
            self.node.name,
        )

    def _query(self, sql: str, *args: object) -> list[dict[str, object]]:
        try:
            return self.node.db.query(sql, args)
        except StateError as exc:  # retried soon, not "the job's state is corrupt"
            raise JobBusy(f"the cluster's database does not answer: {exc}") from exc


def written_windows(node: ClusterNode, name: str) -> list[tuple[date, date, str, str]]:
    """``(from, to, node, file)`` of every window of ``name`` recorded (tests, diagnostics;
    not the marker of an adopted watermark)."""
    rows = node.db.query(
        "SELECT window_from, window_to, node, file FROM cluster_exports WHERE job = %s"
        " AND window_from < window_to ORDER BY window_from",
        (name,),
    )
    return [(r["window_from"], r["window_to"], r["node"], r["file"]) for r in rows]
