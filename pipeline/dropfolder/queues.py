"""The intake's queues: settled files per campaign, oldest first, one at a time per campaign.

A queue holds files that settled in the inbox (:class:`pipeline.dropfolder.scan.SeenFile`) and
claims an interrupted run left in the work folder (:class:`ResumedClaim`), which go first.
:meth:`Queues.pick` hands out the head of the queue of a campaign nobody is working on, the
oldest such head first; the campaign stays busy until :meth:`Queues.done`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.dropfolder.jobs import Job
from pipeline.dropfolder.scan import SeenFile


@dataclass(eq=False)
class ResumedClaim:
    """A claim found in the work folder: processed again before anything new."""

    job: Job

    @property
    def order(self) -> tuple[int, str]:
        """Before every file of the inbox; in claim order among themselves."""
        return (-1, self.job.path.parent.name)

    @property
    def campaign(self) -> str:
        return self.job.campaign


#: Something to process: a settled file of the inbox, or a claim to resume.
Queued = SeenFile | ResumedClaim


def _order(item: Queued) -> tuple[int, str]:
    return item.order


class Queues:
    """Per-campaign queues and who is busy with what. Not thread-safe (the intake locks)."""

    def __init__(self) -> None:
        self._queues: dict[str, list[Queued]] = {}
        self._busy: dict[str, Job | Path] = {}  # campaign -> the file being handled
        self._claims: set[Path] = set()  # claim folders being handled by a worker of ours

    def add(self, campaign: str, item: Queued) -> None:
        """Queue ``item`` for ``campaign`` in order."""
        bisect.insort(self._queues.setdefault(campaign, []), item, key=_order)
        if isinstance(item, SeenFile):
            item.queued = True

    def remove(self, item: SeenFile) -> None:
        """Take a queued inbox file out of its queue (it changed or vanished)."""
        if item.queued:
            self._queues[item.campaign].remove(item)
            item.queued = False

    def take_out(self, campaign: str, item: Queued) -> bool:
        """Take ``item`` out of its queue (a cancel: it is not read); False: not queued."""
        q = self._queues.get(campaign, [])
        if item not in q:
            return False
        q.remove(item)
        if isinstance(item, SeenFile):
            item.queued = False
        return True

    def queued_in(self, campaign: str) -> list[Queued]:
        """The queue of ``campaign``, in order."""
        return list(self._queues.get(campaign, []))

    def pick(self, may_take: Callable[[str], bool]) -> tuple[str, Queued] | None:
        """The oldest head of a queue whose campaign is idle and ``may_take``; marks it busy."""
        ready = [(q[0].order, c) for c, q in self._queues.items() if q and c not in self._busy]
        ready = [r for r in ready if may_take(r[1])]
        if not ready:
            return None
        _, campaign = min(ready)
        item = self._queues[campaign].pop(0)
        if isinstance(item, SeenFile):
            item.queued = False
            self._busy[campaign] = item.path
        else:
            self.working_on(campaign, item.job)
        return campaign, item

    def working_on(self, campaign: str, job: Job) -> None:
        """``campaign`` is busy with the claimed ``job``."""
        self._busy[campaign] = job
        self._claims.add(job.path.parent)

    def done(self, campaign: str, job: Job | None) -> None:
        """``campaign`` is idle again."""
        self._busy.pop(campaign, None)
        if job is not None:
            self._claims.discard(job.path.parent)

    def claiming(self, claim: Path) -> None:
        """A claim folder is being made: a concurrent sweep must not take it as interrupted."""
        self._claims.add(claim)

    def not_claiming(self, claim: Path) -> None:
        """The claim folder was not made after all."""
        self._claims.discard(claim)

    def handles(self, claim: Path) -> bool:
        """True when ``claim`` is being handled or already queued to be resumed."""
        return claim in self._claims or any(
            isinstance(x, ResumedClaim) and x.job.path.parent == claim for x in self.items()
        )

    def busy_paths(self) -> set[Path]:
        """Inbox files taken but not yet claimed (a sweep must not see them as new)."""
        return {b for b in self._busy.values() if isinstance(b, Path)}

    def busy(self) -> dict[str, str]:
        """Campaign -> name of the file being handled."""
        return {c: b.name for c, b in self._busy.items()}

    def items(self) -> Iterator[Queued]:
        """Everything queued, campaign by campaign, in order."""
        for q in self._queues.values():
            yield from q

    def resumed(self) -> list[ResumedClaim]:
        """The claims queued to be resumed."""
        return [x for x in self.items() if isinstance(x, ResumedClaim)]

    @property
    def depth(self) -> int:
        """How many are queued."""
        return sum(len(q) for q in self._queues.values())

    @property
    def in_progress(self) -> int:
        """How many campaigns are busy."""
        return len(self._busy)

    def __bool__(self) -> bool:
        return bool(self._busy) or any(self._queues.values())
