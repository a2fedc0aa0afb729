"""Simulated call-centre activity: demo leads with history, and agents closing open leads.

Everything is drawn from ``random.Random`` seeded from the tenant's ``random_seed``, so a given
seed (and clock) always produces the same leads and the same outcomes.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from pipeline.sandbox.seed import Campaign, FieldDef, Seed
from pipeline.sandbox.store import Lead, LeadStore, fmt_time

AGENTS = tuple(f"agent{i}" for i in range(1, 13))
#: (status, closure, weight): what an agent's call usually ends with.
OUTCOMES = (
    ("UserProcessed", "Success", 30),
    ("UserProcessed", "NotInterested", 45),
    ("UserProcessed", "InvalidLead", 10),
    ("Depleted", "NotInterested", 15),
)
FIRST_NAMES = ("Søren", "Mette", "Jens", "Bjørn", "Anne", "Lars", "Åse", "Niels", "Karin")
LAST_NAMES = ("Jensen", "Nielsen", "Hansen", "Østergaard", "Pedersen", "Bøgh", "Lindqvist")
COMPANIES = ("Nordlys ApS", "Blåbær A/S", "Fjord & Co", "Skånska Bygg AB", "Ærø Energi")
CITIES = ("København", "Ærøskøbing", "Århus", "Odense", "Sønderborg", "Køge", "Præstø")
NOTES = ("Ring efter kl. 10", "Interested in a demo", "", "Kunde siden 2019", "Prefers e-mail")


def sample_value(f: FieldDef, rng: random.Random) -> str:
    """A realistic value for field ``f`` that matches its regex ("" when none is found)."""
    candidates: list[str] = list(f.samples)
    if not candidates:
        candidates = _typed_candidates(f, rng)
    rng.shuffle(candidates)
    return next((c for c in candidates if f.matches(c)), "")


def _typed_candidates(f: FieldDef, rng: random.Random) -> list[str]:
    name = f.name.lower()
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    if f.type == "dropdown":
        return list(f.options)
    if f.type == "phone":
        return [f"+45 {rng.randint(20, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} 12"]
    if f.type == "email":
        return [f"{first[0].lower()}{rng.randint(1, 999)}@example.dk"]
    if f.type == "date":
        return [f"{rng.randint(1940, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"]
    if f.type == "integer":
        return [str(rng.randint(1, 250))]
    if f.type == "decimal":
        return [f"{rng.randint(100, 9999)}.{rng.randint(0, 99):02d}", str(rng.randint(1, 99))]
    if f.type == "boolean":
        return ["true", "false"]
    if "postnr" in name or "zip" in name or "postal" in name:
        return [str(rng.randint(1000, 9990))]
    if name in {"by", "city", "town"}:
        return list(CITIES)
    if "company" in name or "firma" in name:
        return list(COMPANIES)
    if f.type == "text" or "note" in name or "bemærk" in name:
        return [n for n in NOTES if n] + [""]
    if "efter" in name or "last" in name:
        return [last]
    if "fornavn" in name or "first" in name:
        return [first]
    return [f"{first} {last}", first]


def lead_data(campaign: Campaign, rng: random.Random) -> dict[str, str]:
    """Data for one demo lead: every required field, most optional ones."""
    data: dict[str, str] = {}
    for f in campaign.fields:
        if not f.required and rng.random() < 0.25:
            continue
        value = sample_value(f, rng)
        if value or f.required:
            data[f.name] = value
    return data


def pick_outcome(rng: random.Random) -> tuple[str, str, str]:
    """(status, closure, agent) for one finished call."""
    total = sum(w for *_, w in OUTCOMES)
    roll = rng.uniform(0, total)
    for status, closure, weight in OUTCOMES:
        roll -= weight
        if roll <= 0:
            return status, closure, rng.choice(AGENTS)
    status, closure, _ = OUTCOMES[-1]
    return status, closure, rng.choice(AGENTS)


def populate(store: LeadStore, seed: Seed, now: datetime, uploader: str) -> int:
    """Add ``seed.demo_leads`` leads uploaded over the past 30 days, ~60 % already called."""
    rng = random.Random(f"{seed.random_seed}:demo")
    campaigns = [c for c in seed.campaigns if c.active and c.fields]
    if not campaigns or seed.demo_leads <= 0:
        return 0
    uploads = sorted(
        now - timedelta(days=30) + timedelta(seconds=rng.uniform(0, 30 * 86400 - 3600))
        for _ in range(seed.demo_leads)
    )
    for when in uploads:
        campaign = rng.choice(campaigns)
        extra: dict[str, object] = {}
        if rng.random() < 0.6:
            called = min(when + timedelta(hours=rng.uniform(0.5, 72)), now)
            status, closure, agent = pick_outcome(rng)
            stamp = fmt_time(called)
            extra = {
                "status": status,
                "closure": closure,
                "last_modified_time": stamp,
                "last_modified_by": agent,
                "first_processed_time": stamp,
                "first_processed_by": agent,
            }
        store.new(
            campaign.code,
            campaign.unique_id,
            lead_data(campaign, rng),
            upload_time=fmt_time(when),
            uploaded_by=uploader,
            **extra,
        )
    return seed.demo_leads


def simulate_calls(
    store: LeadStore, seed: Seed, round_no: int, fraction: float, at: datetime
) -> list[Lead]:
    """Close about ``fraction`` of the open leads as of tenant-local ``at``; returns them."""
    rng = random.Random(f"{seed.random_seed}:calls:{round_no}")
    stamp = fmt_time(at)
    with store.lock:
        open_leads = [lead for lead in store.all() if lead.is_open]
        if not open_leads or fraction <= 0:
            return []
        count = min(len(open_leads), max(1, round(len(open_leads) * min(fraction, 1.0))))
        chosen = sorted(rng.sample(open_leads, count), key=lambda lead: lead.seq)
        for lead in chosen:
            status, closure, agent = pick_outcome(rng)
            lead.status, lead.closure = status, closure
            lead.last_modified_time, lead.last_modified_by = stamp, agent
            if lead.first_processed_time is None:
                lead.first_processed_time, lead.first_processed_by = stamp, agent
        store.saved(chosen)
        return chosen
