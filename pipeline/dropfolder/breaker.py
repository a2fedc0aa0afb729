"""The circuit breaker of intake: while the API is down, no file is taken.

Opened by an unavailable API (or repeated uncertain outcomes), it lets one probe (or one file)
through after a cooldown that doubles up to a ceiling; a success closes it. A spent daily
request budget pauses it until a known time instead (:meth:`Breaker.pause_until`: the day's
reset, docs/dropfolder.md). Pure logic over an injected clock. Its :attr:`Breaker.reason` is
shown to people as it is: it is kept in plain words (:func:`pipeline.errors.plain_words`), never
an exception's class name or errno.
"""

from __future__ import annotations

from datetime import datetime

from pipeline.clock import Clock
from pipeline.errors import plain_words


class Breaker:
    """Pauses taking files while the API is down; reopens for a probe after a growing cooldown."""

    def __init__(
        self, clock: Clock, *, first: float = 5.0, longest: float = 120.0, uncertain_limit: int = 3
    ) -> None:
        self.clock = clock
        self.first = first
        self.longest = longest
        self.uncertain_limit = uncertain_limit
        self.open = False
        self.reason = ""
        self.opened_at: datetime | None = None
        self._cooldown = first
        self._retry_at = 0.0
        self._uncertain_streak = 0
        #: paused until this time (the day's request budget resets), not for a cooldown
        self.until: datetime | None = None

    def pause_until(self, reason: str, when: datetime) -> None:
        """Open until ``when`` (aware): no probe and no file before then."""
        if not self.open:
            self.opened_at = self.clock.now()
        self.open = True
        self.reason = plain_words(reason)
        self.until = when
        self._cooldown = self.first  # a probe failing after the pause starts short again
        wait = max(0.0, (when - self.clock.now()).total_seconds())
        self._retry_at = self.clock.monotonic() + wait

    def trip(self, reason: str, *, longest: bool = False) -> None:
        """Open (or keep open, with a longer cooldown; a pause until a time stays as it is)."""
        if self.open and self.until is not None and self.until > self.clock.now():
            return
        if self.open:
            self._cooldown = min(self._cooldown * 2, self.longest)
        else:
            self.opened_at = self.clock.now()
            self._cooldown = self.longest if longest else self.first
        self.open = True
        self.reason = plain_words(reason)
        self.until = None
        self._retry_at = self.clock.monotonic() + self._cooldown

    def success(self, uncertain: int = 0) -> None:
        """A file went through: close, unless uncertain outcomes keep repeating."""
        self._uncertain_streak = self._uncertain_streak + 1 if uncertain else 0
        if self._uncertain_streak >= self.uncertain_limit:
            self._uncertain_streak = 0
            self.trip(f"{self.uncertain_limit} files in a row left rows uncertain")
            return
        self.open = False
        self.reason = ""
        self.opened_at = None
        self.until = None
        self._cooldown = self.first

    def may_try(self) -> bool:
        """Closed, or open with the cooldown over (one probe/file may go)."""
        return not self.open or self.clock.monotonic() >= self._retry_at

    def retry_in(self) -> float:
        """Seconds until the next probe (0 when closed)."""
        return max(0.0, self._retry_at - self.clock.monotonic()) if self.open else 0.0

    def hold(self) -> None:
        """A probe is on its way: no second one until it reports."""
        self._retry_at = self.clock.monotonic() + self._cooldown
