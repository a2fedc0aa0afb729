"""The route table: (method, lower-case path relative to the base path) -> endpoint.

Each route's declared parameters live in ``declared.py``; :func:`check_params` applies strict
mode (seed ``[tenant] strict_params``): only declared names pass (case-insensitive, as
ServiceStack binds them), and each is handed to its handler under the name the handler reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.sandbox import describe
from pipeline.sandbox import exports as x
from pipeline.sandbox import handlers as h
from pipeline.sandbox.declared import ROUTE_SPECS, RouteSpec, declared_params
from pipeline.sandbox.tenant import Tenant

Handler = Callable[[Tenant, h.Req], h.Reply]


def metadata_json(tenant: Tenant, req: h.Req) -> h.Reply:
    """GET /types/metadata.json: the sandbox's ServiceStack description (404 when off)."""
    if not tenant.seed.describe:
        raise h.HttpError(404, "NotFound", f"no route GET {req.path}")
    return h.Reply(describe.metadata_json(tenant.seed))


def openapi(tenant: Tenant, req: h.Req) -> h.Reply:
    """GET /openapi: the sandbox's Swagger 2.0 description (404 when off)."""
    if not tenant.seed.describe:
        raise h.HttpError(404, "NotFound", f"no route GET {req.path}")
    return h.Reply(describe.openapi(tenant.seed))


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
    ("GET", "/types/metadata.json"): metadata_json,
    ("GET", "/openapi"): openapi,
}
KNOWN_PATHS = frozenset(path for _, path in ROUTES)
#: (method, lower-case template) -> its declaration; ``/leads/{uniqueid}`` is the one lead
SPECS: dict[tuple[str, str], RouteSpec] = {(s.method, s.path): s for s in ROUTE_SPECS}
ONE_LEAD = ("GET", "/leads/{uniqueid}")


def check_params(tenant: Tenant, method: str, path: str, req: h.Req) -> None:
    """Strict mode: refuse undeclared query (or body) names with 400, naming them; rename
    the declared ones to the names the handler reads. Routes without a declaration pass."""
    spec = SPECS.get((method, path))
    if spec is None:
        return
    seed = tenant.seed
    params = declared_params(spec, seed.param_names, seed.leads_include)
    declared = {p.name.lower(): p for p in params if p.where == "query"}
    query: dict[str, list[str]] = {}
    for name, values in req.query.items():
        p = declared.get(name)
        if p is None:
            raise _unknown(spec, name, [q.name for q in params if q.where == "query"])
        query.setdefault(p.reads, []).extend(values)
    for p in declared.values():
        if p.required and not any(v.strip() for v in query.get(p.reads, [])):
            raise h.bad_param(p.name, f"'{p.name}' is required")
    req.query = query
    if method == "POST" and isinstance(req.json_body, dict):
        fields = {p.name.lower(): p for p in params if p.where == "body"}
        body: dict[str, Any] = {}
        for name, value in req.json_body.items():
            p = fields.get(str(name).lower())
            if p is None:
                raise _unknown(spec, str(name), [q.name for q in params if q.where == "body"])
            body[p.reads] = value
        req.json_body = body


def _unknown(spec: RouteSpec, name: str, known: list[str]) -> h.HttpError:
    message = (
        f"'{name[:60]}' is not a parameter of {spec.operation} "
        f"(it declares: {', '.join(known) or 'none'})"
    )
    return h.HttpError(
        400,
        "ArgumentException",
        message,
        [{"errorCode": "UnknownParameter", "fieldName": name[:60], "message": message}],
    )
