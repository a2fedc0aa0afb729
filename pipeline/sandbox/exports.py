"""The export endpoints: searches, lead objects, CSV, /simpleleads and one lead
(docs/api-contract.md, "Exports").

Every lookup shows only the leads ``Tenant.visible`` lets through (``commit_delay``).
"""

from __future__ import annotations

from pipeline.sandbox.handlers import (
    HttpError,
    Reply,
    Req,
    bad_param,
    campaign_for,
    need,
    q1,
    qbool,
    qdate,
    qint,
    qlist,
)
from pipeline.sandbox.render import CULTURES, ENCODINGS, csv_chunks
from pipeline.sandbox.seed import Campaign, SearchDef
from pipeline.sandbox.store import CLOSED_STATUSES, OPEN_STATUSES, Lead
from pipeline.sandbox.tenant import Tenant

MAX_TAKE = 10_000
_CULTURE_NAMES = ", ".join(c.name for c in CULTURES.values())


def search_for(tenant: Tenant, req: Req) -> tuple[SearchDef, list[Campaign]]:
    """The search named by ``searchName``: 400 missing, 404 unknown, 403 unreachable."""
    name = q1(req, "searchName")
    if name is None or not name.strip():
        raise bad_param("searchName", "'searchName' is required")
    search = next((s for s in tenant.seed.searches if s.name.lower() == name.strip().lower()), None)
    if search is None:
        raise HttpError(404, "NotFound", f"lead search '{name[:80]}' does not exist")
    campaigns = tenant.search_campaigns(search, req.account)
    if not campaigns:
        raise HttpError(
            403, "Forbidden", f"the account {req.account.username} may not use search '{name}'"
        )
    return search, campaigns


# --- exports ----------------------------------------------------------------------------------
def searches(tenant: Tenant, req: Req) -> Reply:
    """GET /leads/searches: the searches the account may use."""
    need(req, "Leads", "GET")
    return Reply(
        [
            {"name": s.name, "description": s.description}
            for s in tenant.visible_searches(req.account)
        ]
    )


def _page(req: Req, leads: list[Lead]) -> list[Lead]:
    skip = qint(req, "skip", 0, 0, 10**9) or 0
    take = qint(req, "take", None, 1, MAX_TAKE)
    leads.sort(key=lambda lead: (lead.last_modified_time, lead.seq))
    return leads[skip : skip + take] if take is not None else leads[skip:]


def _search_leads(tenant: Tenant, req: Req) -> tuple[list[Lead], list[Campaign]]:
    search, camps = search_for(tenant, req)
    start = qdate(tenant, req, "from", "modifiedFrom", required=True)
    end = qdate(tenant, req, "to", "modifiedTo")
    codes = {c.code for c in camps}
    statuses, closures = set(search.statuses), set(search.closures)
    with tenant.store.lock:
        leads = [
            lead
            for lead in tenant.visible(tenant.store.in_campaigns(codes))
            if (not statuses or lead.status in statuses)
            and (not closures or lead.closure in closures)
            and (start is None or lead.last_modified_time >= start)
            and (end is None or lead.last_modified_time < end)
        ]
    return leads, camps


def leads_objects(tenant: Tenant, req: Req) -> Reply:
    """GET /leads: lead objects of a search modified in [from, to), paged."""
    need(req, "Leads", "GET")
    leads, _ = _search_leads(tenant, req)
    # a tenant with Include support sends the leads' data only when asked (seed leads_include)
    data = not tenant.seed.leads_include or "data" in {v.lower() for v in qlist(req, "include")}
    return Reply(tenant.render_leads(_page(req, leads), data=data))


def leads_csv(tenant: Tenant, req: Req) -> Reply:
    """GET /leads/csv: the same leads as CSV, by culture and encoding."""
    need(req, "Leads", "GET")
    enc = (q1(req, "encoding") or "utf-8").strip().lower()
    codec = ENCODINGS.get(enc)
    if codec is None:
        raise bad_param(
            "encoding",
            f"encoding '{enc[:40]}' is not supported (use one of {', '.join(sorted(ENCODINGS))})",
        )
    cul = (q1(req, "culture") or "en-US").strip()
    culture = CULTURES.get(cul.lower())
    if culture is None:
        raise bad_param(
            "culture",
            f"culture '{cul[:40]}' is not supported (use one of {_CULTURE_NAMES})",
        )
    system = qbool(req, "useSystemHeaders", default=True)
    leads, camps = _search_leads(tenant, req)
    fields: list[tuple[str, str]] = []
    for c in camps:
        for f in c.fields:
            if all(f.name != name for name, _ in fields):
                fields.append((f.name, f.label or f.name))
    rows = _page(req, leads)
    with tenant.store.lock:
        chunks = list(csv_chunks(rows, fields, culture=culture, system_headers=system, codec=codec))
    charset = "utf-8" if codec.startswith("utf-8") else enc
    return Reply(
        chunks=iter(chunks),
        content_type=f"text/csv; charset={charset}".encode(),
        headers=[(b"content-disposition", b'attachment; filename="leads.csv"')],
    )


def simpleleads(tenant: Tenant, req: Req) -> Reply:
    """GET /simpleleads: leads by project, campaign, status, closure, id and window.

    The rows carry the leads' ``data`` unless the profile's ``simpleleads_data`` is off.
    """
    need(req, "Leads", "GET")
    reach = tenant.reachable_campaigns(req.account)
    patterns = qlist(req, "projects")
    if patterns:
        reach = [c for c in reach if any(_project_match(p, c.project) for p in patterns)]
    wanted = qlist(req, "campaigns")
    if wanted:
        picked = {campaign_for(tenant, req, w, "Campaigns").code for w in wanted}
        reach = [c for c in reach if c.code in picked]
    codes = {c.code for c in reach}
    statuses = set(qlist(req, "statuses"))
    closures = set(qlist(req, "leadClosures"))
    all_closed, all_open = qbool(req, "allClosedStatuses"), qbool(req, "allOpenStatuses")
    groups: set[str] = set()
    if all_closed:
        groups |= CLOSED_STATUSES
    if all_open:
        groups |= OPEN_STATUSES
    unique_id = (q1(req, "uniqueId") or "").strip().upper()
    start = qdate(tenant, req, "modifiedFrom", "from")
    end = qdate(tenant, req, "modifiedTo", "to")
    with tenant.store.lock:
        if unique_id:
            found = tenant.store.get(unique_id)
            pool = [found] if found is not None and found.campaign_code in codes else []
        else:
            pool = tenant.store.in_campaigns(codes)
        leads = [
            lead
            for lead in tenant.visible(pool)
            if (not statuses or lead.status in statuses)
            and (not groups or lead.status in groups)
            and (not closures or lead.closure in closures)
            and (not unique_id or lead.unique_id.upper() == unique_id)
            and (start is None or lead.last_modified_time >= start)
            and (end is None or lead.last_modified_time < end)
        ]
    return Reply(tenant.render_leads(_page(req, leads), data=tenant.profile.simpleleads_data))


def _project_match(pattern: str, project: str) -> bool:
    if pattern.endswith("*"):
        return project.startswith(pattern[:-1])
    return pattern == project


def one_lead(tenant: Tenant, req: Req, unique_id: str) -> Reply:
    """GET /leads/{uniqueId}: one lead object."""
    need(req, "Leads", "GET")
    with tenant.store.lock:
        found = tenant.store.get(unique_id)
        shown = tenant.visible([found]) if found is not None else []
    if not shown:
        raise HttpError(404, "NotFound", f"lead '{unique_id[:40]}' does not exist")
    lead = shown[0]
    campaign = tenant.seed.campaign(lead.campaign_code)
    if campaign is None or not req.account.reaches(campaign.project):
        raise HttpError(
            403, "Forbidden", f"the account {req.account.username} may not read this lead"
        )
    return Reply(tenant.render_leads([lead])[0])
