"""``skip``/``take`` paging with the guards the API needs (herobase-api.md section 8).

Stops on a short page (there is no total count); stops with a warning when a page repeats the
previous one or brings nothing new (a server ignoring ``skip`` would otherwise loop forever);
yields each ``uniqueId`` once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)


def _uid(item: Any) -> str:
    if isinstance(item, Mapping):
        for k, v in item.items():
            if str(k).lower() == "uniqueid":
                return str(v)
    return ""


def iter_pages(
    fetch: Callable[[int, int], list[Any]], take: int, *, what: str = "leads"
) -> Iterator[Mapping[str, Any]]:
    """Yield the objects of every page of ``fetch(skip, take)``, each uniqueId once."""
    if take < 1:
        raise ValueError("page size must be at least 1")
    seen: set[str] = set()
    previous: list[str] | None = None
    skip = 0
    while True:
        page = fetch(skip, take)
        ids = [_uid(item) for item in page]
        if page and ids == previous:
            log.warning(
                "paging %s: the page at skip=%d repeats the previous page; stopping "
                "(the server may ignore skip)",
                what,
                skip,
            )
            return
        fresh = 0
        for item, uid in zip(page, ids, strict=True):
            if uid and uid in seen:
                continue
            if uid:
                seen.add(uid)
            fresh += 1
            if isinstance(item, Mapping):
                yield item
        if len(page) < take:
            return
        if fresh == 0:
            log.warning("paging %s: the page at skip=%d brought no new leads; stopping", what, skip)
            return
        previous = ids
        skip += take
