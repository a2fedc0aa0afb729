"""Paging over a result set that changes while we page (leads modified during an export)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.api.paging import iter_pages, overlap_for
from pipeline.errors import Uncertain


class Shifting:
    """A server's ordered result set; ``on_fetch`` may remove items between requests."""

    def __init__(self, n: int, remove: dict[int, list[int]] | None = None) -> None:
        self.items = [f"{i}S1" for i in range(n)]
        self.remove = remove or {}
        self.calls = 0

    def fetch(self, skip: int, take: int) -> list[dict[str, Any]]:
        for victim in self.remove.get(self.calls, []):
            self.items.remove(f"{victim}S1")
        self.calls += 1
        return [{"uniqueId": u} for u in self.items[skip : skip + take]]


def ids(it: Any) -> list[str]:
    return [d["uniqueId"] for d in it]


def test_every_item_once_on_a_stable_set() -> None:
    server = Shifting(1003)
    got = ids(iter_pages(server.fetch, 100))
    assert got == [f"{i}S1" for i in range(1003)]


def test_items_leaving_the_set_mid_paging_do_not_hide_others() -> None:
    # Before the 3rd request, three leads already delivered are modified and leave the window:
    # everything after them shifts forward by 3. Without overlap, 3 leads would be skipped.
    server = Shifting(1000, remove={2: [5, 6, 7]})
    got = ids(iter_pages(server.fetch, 100))
    assert len(got) == len(set(got))
    assert set(got) == {f"{i}S1" for i in range(1000)}


def test_a_shift_larger_than_the_overlap_fails_instead_of_missing_leads() -> None:
    overlap = overlap_for(100)
    server = Shifting(1000, remove={2: list(range(overlap + 5))})
    with pytest.raises(Uncertain, match="fetched again"):
        ids(iter_pages(server.fetch, 100))
