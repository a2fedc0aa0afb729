"""A short-lived, per-campaign cache of live campaign schemas, for the drop-folder service.

Fetching a campaign's fields costs two API requests (the import example, plain and with every
field). The service ingests file after file for the same campaign; within ``ttl`` seconds it
reuses the live schema it fetched last instead of asking again. ``leadpipe ingest`` (one file)
does not use a cache: it always fetches live.

Only a *live* schema is kept: a snapshot (API unreachable) is never reused, so the next file
tries the API again and its upload is not held longer than needed.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.clock import Clock, SystemClock

if TYPE_CHECKING:  # the schema module brings pandas and pandera: loaded when a file is read
    from pipeline.ingest.fields import CampaignSchema, ExampleSource


class SchemaCache:
    """Live :class:`~pipeline.ingest.fields.CampaignSchema` per campaign, reused for ``ttl``
    seconds.

    ``ttl`` of 0 (or less) turns the cache off. Thread-safe: campaigns are processed in
    parallel.
    """

    def __init__(self, ttl: float, *, clock: Clock | None = None) -> None:
        self.ttl = ttl
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._live: dict[str, tuple[float, CampaignSchema]] = {}

    def get(self, client: ExampleSource, code: str, schemas_dir: Path) -> CampaignSchema:
        """The campaign's schema: the cached live one while fresh, else fetched (see
        :func:`~pipeline.ingest.fields.load_campaign_schema`)."""
        now = self.clock.monotonic()
        with self._lock:
            hit = self._live.get(code)
        if hit is not None and now - hit[0] < self.ttl:
            # Drift was reported with the file that fetched it; it is not news for this one.
            return replace(hit[1], drift=None)
        from pipeline.ingest.fields import load_campaign_schema

        schema = load_campaign_schema(client, code, schemas_dir, clock=self.clock)
        with self._lock:
            if schema.source == "live" and self.ttl > 0:
                self._live[code] = (now, schema)
            else:
                self._live.pop(code, None)
        return schema
