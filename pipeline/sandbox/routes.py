"""The route table: (method, lower-case path relative to the base path) -> endpoint."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.sandbox import exports as x
from pipeline.sandbox import handlers as h
from pipeline.sandbox.tenant import Tenant

Handler = Callable[[Tenant, h.Req], h.Reply]

#: (method, lower-case path relative to the base path) -> handler.
ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/myaccount"): h.myaccount,
    ("GET", "/myaccount/request/limits"): h.limits,
    ("GET", "/myaccount/request/counts"): h.counts,
    ("GET", "/projects"): h.projects,
    ("GET", "/campaigns"): h.campaigns,
    ("GET", "/leads/example"): h.example,
    ("POST", "/leads"): h.create_lead,
    ("GET", "/leads"): x.leads_objects,
    ("GET", "/leads/searches"): x.searches,
    ("GET", "/leads/csv"): x.leads_csv,
    ("GET", "/simpleleads"): x.simpleleads,
}
KNOWN_PATHS = frozenset(path for _, path in ROUTES)
