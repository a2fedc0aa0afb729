"""The sandbox's live tenant: seed, profile, leads, rate limits, clock, faults and request log."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.clock import Clock, SystemClock
from pipeline.sandbox.activity import populate, simulate_calls
from pipeline.sandbox.faults import FaultBook, RequestLog
from pipeline.sandbox.profile import Profile
from pipeline.sandbox.ratelimit import RateLimiter
from pipeline.sandbox.seed import Account, Campaign, SearchDef, Seed, load_seed
from pipeline.sandbox.store import Lead, LeadStore, fmt_time


class Tenant:
    """Everything the HTTP app and the Python controls share; safe to use from any thread."""

    def __init__(
        self,
        seed: Path | str | Mapping[str, Any] | Seed | None = None,
        *,
        db: Path | None = None,
        clock: Clock | None = None,
        profile: Mapping[str, Any] | Profile | None = None,
    ) -> None:
        self.seed = seed if isinstance(seed, Seed) else load_seed(seed)
        #: The answer shapes served now; replaced as a whole (never mutated) by set_profile.
        self.profile: Profile = self.seed.profile
        if profile is not None:
            self.set_profile(profile)
        self._hidden: dict[str, float] = {}  # uniqueId (upper) -> visible from (monotonic)
        self.clock: Clock = clock or SystemClock()
        self.tz = self.seed.tz
        self._store = LeadStore(self.seed.id_suffix, db)
        self.limiter = RateLimiter(self.seed.requests_per_minute, self.seed.requests_per_day)
        self.faults = FaultBook()
        self.log = RequestLog()
        self.accounts = {a.username.lower(): a for a in self.seed.accounts}
        self._rounds = itertools.count(1)
        # the demo history is made when the leads are first asked for, as of now
        self._history_lock = threading.Lock()
        self._history_at: datetime | None = None
        if self._store.persisted_count == 0 and self.seed.demo_leads > 0:
            self._history_at = self.now()

    @property
    def store(self) -> LeadStore:
        """The leads. The demo tenant's history (``demo_leads`` leads of the 30 days before the
        tenant started) is added the first time they are asked for: a command that never looks
        at leads (a preview reads only the import example) does not wait for it."""
        if self._history_at is not None:
            with self._history_lock:  # (others wait here until it is all in)
                at = self._history_at
                if at is not None:
                    uploader = self.seed.accounts[0].username if self.seed.accounts else "import"
                    try:
                        populate(self._store, self.seed, at, uploader)
                    finally:
                        self._history_at = None  # once, even if it failed
        return self._store

    def now(self) -> datetime:
        """Tenant-local time now, naive (as the API shows it)."""
        return self.clock.now().astimezone(self.tz).replace(tzinfo=None)

    def to_local(self, when: datetime) -> datetime:
        """An aware time converted to tenant-local naive; naive times are taken as local."""
        if when.tzinfo is None:
            return when
        return when.astimezone(self.tz).replace(tzinfo=None)

    # --- rights -----------------------------------------------------------------------------
    def reachable_campaigns(self, account: Account) -> list[Campaign]:
        """Campaigns whose project the account's project rights reach."""
        return [c for c in self.seed.campaigns if account.reaches(c.project)]

    def visible_searches(self, account: Account) -> list[SearchDef]:
        """Searches the account may use (at least one of their campaigns reachable)."""
        return [s for s in self.seed.searches if self.search_campaigns(s, account)]

    def search_campaigns(self, search: SearchDef, account: Account) -> list[Campaign]:
        """The reachable campaigns a search covers (all reachable ones when it names none)."""
        reach = self.reachable_campaigns(account)
        if not search.campaigns:
            return reach
        wanted = set(search.campaigns)
        return [c for c in reach if c.code in wanted]

    # --- profile ----------------------------------------------------------------------------
    def set_profile(self, changes: Mapping[str, Any] | Profile) -> Profile:
        """Apply profile settings over the current ones (a Profile replaces them all)."""
        if isinstance(changes, Profile):
            self.profile = changes
        else:
            self.profile = Profile.from_mapping(changes, base=self.profile)
        return self.profile

    # --- leads ------------------------------------------------------------------------------
    def store_posted(
        self, campaign: Campaign, data: dict[str, str], *, upload_time: str, uploaded_by: str
    ) -> Lead:
        """Store a lead sent with ``POST /leads``; lookups miss it for ``commit_delay`` s."""
        delay = self.profile.commit_delay
        with self.store.lock:
            lead = self.store.new(
                campaign.code,
                campaign.unique_id,
                data,
                upload_time=upload_time,
                uploaded_by=uploaded_by,
            )
            if delay > 0:
                self._hidden[lead.unique_id.upper()] = self.clock.monotonic() + delay
        return lead

    def visible(self, leads: Iterable[Lead]) -> list[Lead]:
        """The leads that lookups show now (call with the store's lock held)."""
        if not self._hidden:
            return list(leads)
        now = self.clock.monotonic()
        for uid in [uid for uid, since in self._hidden.items() if since <= now]:
            del self._hidden[uid]
        return [lead for lead in leads if lead.unique_id.upper() not in self._hidden]

    def insert_lead(
        self,
        campaign_code: str,
        data: Mapping[str, str],
        *,
        status: str = "New",
        closure: str = "NotSet",
        upload_time: datetime | None = None,
        last_modified_time: datetime | None = None,
        agent: str | None = None,
        uploaded_by: str | None = None,
    ) -> Lead:
        """Store a lead directly (no validation); times are tenant-local naive datetimes."""
        campaign = self.seed.campaign(campaign_code)
        if campaign is None:
            raise KeyError(f"unknown campaign {campaign_code!r}")
        up = fmt_time(self.to_local(upload_time) if upload_time else self.now())
        mod = fmt_time(self.to_local(last_modified_time)) if last_modified_time else up
        user = uploaded_by or (self.seed.accounts[0].username if self.seed.accounts else "import")
        processed = status != "New" or closure != "NotSet"
        return self.store.new(
            campaign.code,
            campaign.unique_id,
            {str(k): str(v) for k, v in data.items()},
            upload_time=up,
            uploaded_by=user,
            status=status,
            closure=closure,
            last_modified_time=mod,
            last_modified_by=agent or user,
            first_processed_time=mod if processed else None,
            first_processed_by=(agent or user) if processed else None,
        )

    def simulate(self, fraction: float = 0.3, at: datetime | None = None) -> int:
        """Close about ``fraction`` of the open leads; returns how many were closed."""
        when = self.to_local(at) if at is not None else self.now()
        return len(simulate_calls(self.store, self.seed, next(self._rounds), fraction, when))

    def render_leads(self, leads: Iterable[Lead], *, data: bool = True) -> list[dict[str, Any]]:
        """Lead objects as the API renders them under the profile (``data=False``: no data)."""
        uploader = self.profile.uploader
        with self.store.lock:
            return [lead.render(uploader(lead.uploaded_by), data=data) for lead in leads]

    def close(self) -> None:
        """Release the database."""
        self._store.close()
