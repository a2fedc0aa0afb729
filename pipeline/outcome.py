"""How one input file ended: the one outcome vocabulary of leadpipe.

The receipt (``outcome`` in its JSON, the ``Status:`` line in its text), the drop folder (where
the original goes), the status page, ``leadpipe status``, ``/metrics`` and the exit code of
``leadpipe ingest`` all speak it. The words people read are rendered from it
(:attr:`FileOutcome.sentence`), never stored beside it.

=============  ==================================================  ==========================
outcome        what happened                                       the original goes to
=============  ==================================================  ==========================
processed      read to the end; valid rows delivered               ``processed/``
previewed      read and checked in ``preview/``; nothing uploaded  stays beside its receipt
already        this content was done for the campaign before       ``processed/``
waiting        the API is down or refused our rights: paused       back to the inbox
stopped        the upload stopped for a reason a person must fix   ``processed/``
interrupted    leadpipe was asked to stop mid-way                  stays claimed, resumed
changed        still being written while it was read               back to the inbox
failed         could not be read or processed at all               ``failed/`` + error text
cancelled      a person cancelled it: rows sent stay sent, the     ``processed/`` (+ not-sent
               rest are in a "not sent" file (docs/dropfolder.md)  file in ``rejected/``)
=============  ==================================================  ==========================

``processed`` does not mean every row reached HeroBase: rejected, refused, duplicate and
uncertain rows are counted in the receipt beside it.
"""

from __future__ import annotations

from enum import StrEnum


class FileOutcome(StrEnum):
    """How one input file ended (see the module docstring for the table)."""

    PROCESSED = "processed"
    PREVIEWED = "previewed"
    ALREADY = "already"
    WAITING = "waiting"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    CHANGED = "changed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def sentence(self) -> str:
        """The outcome in the words a receipt and the status page use."""
        return _SENTENCES[self]

    @property
    def done(self) -> bool:
        """True when the file reached its final place (the original left the inbox for good)."""
        return self in _FINAL

    @classmethod
    def parse(cls, text: str | None, default: FileOutcome | None = None) -> FileOutcome:
        """An outcome from its value or its sentence (receipts written by older versions)."""
        raw = (text or "").strip()
        for outcome in cls:
            if raw in (outcome.value, outcome.sentence):
                return outcome
        if raw == "wait":  # the name an earlier status file used
            return cls.WAITING
        if default is None:
            raise ValueError(f"not a file outcome: {text!r}")
        return default


_SENTENCES = {
    FileOutcome.PROCESSED: "processed",
    FileOutcome.PREVIEWED: "preview (nothing uploaded)",
    FileOutcome.ALREADY: "already processed (nothing sent again)",
    FileOutcome.WAITING: "waiting for the API",
    FileOutcome.STOPPED: "stopped",
    FileOutcome.INTERRUPTED: "interrupted (taken up again at the next run)",
    FileOutcome.CHANGED: "still being written: taken again when it stops changing",
    FileOutcome.FAILED: "failed",
    FileOutcome.CANCELLED: "cancelled (rows not sent are in the not-sent file)",
}
_FINAL = frozenset(
    {
        FileOutcome.PROCESSED,
        FileOutcome.PREVIEWED,
        FileOutcome.ALREADY,
        FileOutcome.STOPPED,
        FileOutcome.FAILED,
        FileOutcome.CANCELLED,
    }
)
