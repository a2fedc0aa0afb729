"""Leases on drop-folder claims (docs/cluster.md, "How nodes share the drop folder").

The resource of a claim is ``claim:<campaign folder>/<claim folder>`` (the claim folder's name
is unique: claim time, sequence, content hash). Its key is the campaign folder's name lower-cased
(campaign folders are matched without regard to case, so ``Acme/`` and ``ACME/`` are one
campaign) and the content hash: two claims of the same content for one campaign (the same
file dropped twice) are never worked on by two nodes at once, since each run of a file first
turns the rows its last run left ``sending`` into ``uncertain``.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.cluster.leases import Hold
from pipeline.cluster.node import ClusterNode
from pipeline.dropfolder.jobs import LeasesUnreachable
from pipeline.dropfolder.layout import parse_claim
from pipeline.errors import StateError


def claim_resource(claim: Path) -> str:
    """The lease resource of a claim folder."""
    return f"claim:{claim.parent.name}/{claim.name}"


def claim_key(claim: Path) -> str:
    """The exclusivity key of a claim: its campaign (the folder's name lower-cased, as
    :meth:`CampaignDirectory.code_for` matches it) and content hash (and preview)."""
    _, digest, preview = parse_claim(claim.name)
    if not digest:
        return ""
    return f"file:{claim.parent.name.lower()}:{digest}" + (":preview" if preview else "")


class ClaimLeases:
    """:class:`pipeline.dropfolder.jobs.ClaimLeases` over a :class:`ClusterNode`."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    def take(self, claim: Path) -> Hold | None:
        try:
            return self.node.acquire(claim_resource(claim), claim_key(claim), strict=True)
        except StateError as exc:
            raise LeasesUnreachable(str(exc)) from exc

    def release(self, claim: Path) -> None:
        hold = self.node.held(claim_resource(claim))
        if hold is not None:
            self.node.release(hold)

    def drop(self, claim: Path) -> None:
        hold = self.node.held(claim_resource(claim))
        if hold is not None:
            self.node.drop(hold)
