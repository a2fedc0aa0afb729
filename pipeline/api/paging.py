"""``skip``/``take`` paging with the guards the API needs (docs/api-contract.md).

- Stops on a short page (there is no total count).
- Consecutive pages **overlap** (``take // 10``, at most 100 items): if leads leave the result
  set while we page (a lead modified during an export moves out of its window), the items after
  it shift forward; without the overlap one of them would fall between two pages and be missed.
  When the overlap shows a shift larger than itself, paging fails with :class:`Uncertain` so the
  caller retries the whole set rather than delivering it with a hole.
- Yields each ``uniqueId`` once. Only the ids of the last two pages are remembered, so memory
  stays flat however large the result set is (a shift can only repeat recent items).
- Stops with a warning when a page repeats the previous one or brings nothing new (a server
  ignoring ``skip`` would otherwise loop forever).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pipeline.errors import Uncertain

log = logging.getLogger(__name__)

MAX_OVERLAP = 100


def _uid(item: Any) -> str:
    if isinstance(item, Mapping):
        for k, v in item.items():
            if str(k).lower() == "uniqueid":
                return str(v)
    return ""


def overlap_for(take: int) -> int:
    """How many items each page re-reads of the previous one."""
    return min(take // 10, MAX_OVERLAP)


def iter_pages(
    fetch: Callable[[int, int], list[Any]], take: int, *, what: str = "leads"
) -> Iterator[Mapping[str, Any]]:
    """Yield the objects of every page of ``fetch(skip, take)``, each uniqueId once."""
    if take < 1:
        raise ValueError("page size must be at least 1")
    overlap = overlap_for(take)
    recent: set[str] = set()  # ids of the previous page and the current one
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
        if previous is not None and overlap and page:
            expected = set(previous[-overlap:])
            head = ids[:overlap]
            if expected and not expected.intersection(head):
                raise Uncertain(
                    f"paging {what}: the result set shifted by more than {overlap} items "
                    f"between two pages (at skip={skip}); some items could have been missed, "
                    "so the whole set must be fetched again"
                )
        fresh = 0
        current = set(ids)
        for item, uid in zip(page, ids, strict=True):
            if uid and uid in recent:
                continue
            fresh += 1
            if isinstance(item, Mapping):
                yield item
        if len(page) < take:
            return
        if fresh == 0:
            log.warning("paging %s: the page at skip=%d brought no new leads; stopping", what, skip)
            return
        recent = set(previous or ()) | current
        previous = ids
        skip += take - overlap
