"""Which inbox folders are campaigns: the campaign codes the API account can reach.

Folder names match codes case-insensitively. The list is asked for at start, again while asking
fails, and again (at most once a minute) when a folder shows up that is no known campaign: it
may have been created since. An account that may not list campaigns takes every folder as one
(ingest then says per file when the campaign is unknown).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from pipeline.clock import Clock
from pipeline.errors import LeadpipeError, NotPermitted

log = logging.getLogger("leadpipe.intake")

#: Retry listing the campaigns this often while it fails; refresh it this often when a folder
#: that is no known campaign exists (a campaign may have been created since).
LIST_RETRY = 5.0
LIST_REFRESH = 60.0


class CampaignDirectory:
    """The campaign codes the account can reach, refreshed as the inbox asks for it.

    ``campaigns`` returns the codes (raising a ``LeadpipeError`` when it cannot tell). Not
    thread-safe: the intake's sweep is its only caller.
    """

    def __init__(self, campaigns: Callable[[], Iterable[str]], clock: Clock) -> None:
        self._campaigns = campaigns
        self.clock = clock
        self._codes: dict[str, str] | None = None  # lower-case code -> code
        self.accept_all = False  #: the account may not list campaigns: every folder is one
        self.failing = False  #: the last attempt to list them failed
        self._refreshed_at = float("-inf")
        self._warned: set[str] = set()

    @property
    def known(self) -> bool:
        """True once the codes have been listed."""
        return self._codes is not None

    @property
    def ready(self) -> bool:
        """Files may be taken: the codes are known, or every folder is taken as a campaign."""
        return self._codes is not None or self.accept_all

    def codes(self) -> list[str]:
        """The reachable codes (empty while unknown)."""
        return sorted((self._codes or {}).values())

    def refresh(self) -> None:
        """Ask for the reachable campaigns now (raises what ``campaigns`` raises)."""
        self._codes = {str(c).lower(): str(c) for c in self._campaigns()}

    def code_for(self, folder: str) -> str | None:
        """The campaign code of ``folder``; the folder name itself while the codes are unknown
        (taking waits for them anyway); None when it is no reachable campaign."""
        if self._codes is None:
            return folder
        return self._codes.get(folder.lower())

    def update(self, folders: Iterable[str]) -> str | None:
        """Refresh the codes when due for these folders; a reason to pause taking, or None.

        Returns the problem when the codes cannot be listed and are not known yet (the caller
        opens its breaker); "" when a listing succeeded after failing (the caller closes it).
        """
        since = self.clock.monotonic() - self._refreshed_at
        unknown = any(f.lower() not in (self._codes or {}) for f in folders)
        due = (self._codes is None and not self.accept_all and since >= LIST_RETRY) or (
            unknown and since >= LIST_REFRESH
        )
        if not due:
            return None
        self._refreshed_at = self.clock.monotonic()
        try:
            self.refresh()
        except NotPermitted as exc:
            if not self.accept_all:
                log.warning("cannot list the campaigns (%s); every folder is tried", exc)
            self.accept_all = True
            return None
        except LeadpipeError as exc:
            if self._codes is None:
                self.failing = True
                return f"cannot list the campaigns: {exc}"
            return None
        if self.failing:
            self.failing = False
            return ""
        return None

    def warn_unknown(self, folder: str) -> None:
        """Log once per folder that it is no campaign this account can reach."""
        if folder not in self._warned:
            self._warned.add(folder)
            log.warning("folder %r is not a campaign this account can reach", folder)
