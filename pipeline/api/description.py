"""The tenant's own API description: fetched, parsed into one typed model.

A ServiceStack host describes its operations at ``<api>/types/metadata.json`` (request type,
routes with verbs, request properties) and, with the OpenAPI feature, at ``<api>/openapi``
(Swagger 2.0; OpenAPI 3 is read too). :func:`fetch_description` tries both (ServiceStack's own
first), tolerates either missing or answering a page or garbage, and returns an
:class:`ApiDescription` (or none) with what each attempt found (docs/api-contract.md,
"The tenant's description").

Routes are compared by shape: literal segments case-insensitively, any ``{variable}`` matches
any other (``/leads/{uniqueId}`` == ``/leads/{Id}``); parameter names case-insensitively, as
ServiceStack binds them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pipeline.api.client import HeroBaseClient
from pipeline.errors import ApiError, Unavailable

Source = Literal["metadata", "openapi"]
Location = Literal["query", "body", "path", "any"]

#: The description endpoints (``[api.endpoints]`` keys), tried in this order.
DESCRIPTION_KEYS: tuple[tuple[str, Source], ...] = (
    ("metadata_json", "metadata"),
    ("openapi", "openapi"),
)
_VERBS = ("GET", "POST", "PUT", "DELETE", "PATCH")
_VAR = re.compile(r"^\{[^{}]+\}$")
_MAX_DEPTH = 8


@dataclass(frozen=True)
class DeclaredParam:
    """One parameter (request property) the tenant declares for an operation."""

    name: str
    location: Location = "any"
    type: str = ""
    required: bool = False


@dataclass(frozen=True)
class DeclaredOperation:
    """One verb on one route, with the request type's name and parameters."""

    name: str
    method: str
    path: str
    params: tuple[DeclaredParam, ...] = ()

    def param(self, name: str) -> DeclaredParam | None:
        """The declared parameter called ``name`` (case-insensitive), or None."""
        low = name.lower()
        return next((p for p in self.params if p.name.lower() == low), None)


@dataclass(frozen=True)
class ApiDescription:
    """Every operation a tenant declares, from one description document."""

    source: Source
    url: str
    operations: tuple[DeclaredOperation, ...]

    def find(self, method: str, path: str) -> DeclaredOperation | None:
        """The operation for ``method`` on a route of the same shape as ``path``, or None."""
        shape = route_shape(path)
        for op in self.operations:
            if op.method == method.upper() and route_shape(op.path) == shape:
                return op
        return None

    def with_method(self, method: str) -> list[DeclaredOperation]:
        """Every operation answering ``method``."""
        return [op for op in self.operations if op.method == method.upper()]


@dataclass(frozen=True)
class Attempt:
    """What one description endpoint answered, in words (``served`` when it parsed)."""

    source: Source
    url: str
    served: bool
    note: str


@dataclass(frozen=True)
class DescriptionFetch:
    """The description found (None: the tenant serves none) and every attempt."""

    description: ApiDescription | None
    attempts: tuple[Attempt, ...]


def route_shape(path: str) -> tuple[str, ...]:
    """A route's comparable shape: lower-case literal segments, ``{}`` for each variable."""
    parts = [p for p in path.split("?", 1)[0].strip().split("/") if p]
    return tuple("{}" if _VAR.match(p) else p.lower() for p in parts)


def fetch_description(client: HeroBaseClient) -> DescriptionFetch:
    """Fetch and parse the tenant's description; ``Unavailable`` (unreachable) propagates."""
    attempts: list[Attempt] = []
    found: ApiDescription | None = None
    base_path = urlsplit(client.url).path.rstrip("/")
    for key, source in DESCRIPTION_KEYS:
        url = client.url.rstrip("/") + client.endpoint(key)
        try:
            doc = client.description_document(key)
        except Unavailable:
            raise
        except ApiError as exc:
            status = f"HTTP {exc.status}" if exc.status is not None else "no answer"
            note = "not served (404)" if exc.status == 404 else f"not usable ({status})"
            attempts.append(Attempt(source, url, False, note))
            continue
        parsed = parse_description(doc, source, url, base_path)
        if parsed is None:
            attempts.append(Attempt(source, url, False, "answered, but not a description"))
            continue
        attempts.append(
            Attempt(source, url, True, f"{len(parsed.operations)} operation(s) declared")
        )
        if found is None:
            found = parsed
    return DescriptionFetch(found, tuple(attempts))


def parse_description(
    doc: Any, source: Source, url: str = "", base_path: str = ""
) -> ApiDescription | None:
    """Parse a ServiceStack metadata or OpenAPI document; None when it is neither."""
    if not isinstance(doc, Mapping):
        return None
    ops = _metadata_ops(doc) if source == "metadata" else _openapi_ops(doc)
    if ops is None:
        return None
    cleaned = tuple(
        DeclaredOperation(op.name, op.method, _relative(op.path, base_path), op.params)
        for op in ops
    )
    return ApiDescription(source, url, cleaned)


def _relative(path: str, base_path: str) -> str:
    """A declared path relative to the API URL (``/api/leads`` -> ``/leads`` under ``/api``)."""
    path = "/" + path.strip().lstrip("/")
    if base_path and path.lower().startswith(base_path.lower() + "/"):
        return path[len(base_path) :]
    return path


# -- ServiceStack /types/metadata.json --------------------------------------------------------


def _ci(obj: Any, name: str) -> Any:
    if not isinstance(obj, Mapping):
        return None
    low = name.lower()
    return next((v for k, v in obj.items() if str(k).lower() == low), None)


def _metadata_ops(doc: Mapping[str, Any]) -> list[DeclaredOperation] | None:
    operations = _ci(doc, "operations")
    if not isinstance(operations, list):
        return None
    types: dict[str, Mapping[str, Any]] = {}
    for t in _ci(doc, "types") or []:
        if isinstance(_ci(t, "name"), str):
            types[_ci(t, "name")] = t
    out: list[DeclaredOperation] = []
    for op in operations:
        request = _ci(op, "request")
        if not isinstance(request, Mapping):
            continue
        name = str(_ci(request, "name") or "")
        params = tuple(_properties(request, types, 0))
        actions = [str(a).upper() for a in _ci(op, "actions") or [] if isinstance(a, str)]
        for route in _ci(op, "routes") or []:
            path = _ci(route, "path")
            if not isinstance(path, str) or not path.strip():
                continue
            for verb in _verbs(_ci(route, "verbs"), actions):
                out.append(DeclaredOperation(name, verb, path, params))
    return out


def _verbs(verbs: Any, actions: Sequence[str]) -> list[str]:
    """A route's verbs: its ``verbs`` text, else the service's actions; ANY: every verb."""
    if isinstance(verbs, str) and verbs.strip():
        named = [v.strip().upper() for v in verbs.split(",") if v.strip()]
    else:
        named = list(actions) or ["ANY"]
    if "ANY" in named:
        return list(_VERBS)
    return [v for v in named if v in _VERBS]


def _properties(
    typ: Mapping[str, Any], types: Mapping[str, Mapping[str, Any]], depth: int
) -> Iterable[DeclaredParam]:
    """A request type's properties, inherited ones included (``inherits``)."""
    for prop in _ci(typ, "properties") or []:
        member = _ci(prop, "dataMember")
        name = _ci(member, "name") or _ci(prop, "name")
        if not isinstance(name, str) or not name:
            continue
        where = str(_ci(prop, "paramType") or "").lower()
        location: Location = (
            "query"
            if where == "query"
            else "path"
            if where == "path"
            else "body"
            if where in ("body", "form")
            else "any"
        )
        required = bool(_ci(prop, "isRequired") or _ci(member, "isRequired"))
        yield DeclaredParam(name, location, str(_ci(prop, "type") or ""), required)
    parent = _ci(typ, "inherits")
    parent_name = _ci(parent, "name")
    if depth < _MAX_DEPTH and isinstance(parent_name, str) and parent_name in types:
        yield from _properties(types[parent_name], types, depth + 1)


# -- OpenAPI (Swagger 2.0, or 3) ---------------------------------------------------------------


def _openapi_ops(doc: Mapping[str, Any]) -> list[DeclaredOperation] | None:
    paths = _ci(doc, "paths")
    if not isinstance(paths, Mapping) or not (_ci(doc, "swagger") or _ci(doc, "openapi")):
        return None
    out: list[DeclaredOperation] = []
    for path, item in paths.items():
        if not isinstance(item, Mapping):
            continue
        shared = [p for p in _ci(item, "parameters") or [] if isinstance(p, Mapping)]
        for verb, op in item.items():
            if str(verb).upper() not in _VERBS or not isinstance(op, Mapping):
                continue
            raw = shared + [p for p in _ci(op, "parameters") or [] if isinstance(p, Mapping)]
            params: list[DeclaredParam] = []
            for p in raw:
                params.extend(_openapi_param(doc, p))
            body = _ci(op, "requestBody")
            for media in (_ci(body, "content") or {}).values() if isinstance(body, Mapping) else ():
                params.extend(_schema_props(doc, _ci(media, "schema"), "body"))
                break
            name = str(_ci(op, "operationId") or f"{str(verb).upper()} {path}")
            out.append(DeclaredOperation(name, str(verb).upper(), str(path), tuple(params)))
    return out


def _openapi_param(doc: Mapping[str, Any], p: Mapping[str, Any]) -> list[DeclaredParam]:
    p = _deref(doc, p, 0) or p
    where = str(_ci(p, "in") or "").lower()
    if where == "body":
        return list(_schema_props(doc, _ci(p, "schema"), "body"))
    name = _ci(p, "name")
    if not isinstance(name, str) or where == "header":
        return []
    location: Location = (
        "query"
        if where == "query"
        else "path"
        if where == "path"
        else "body"
        if where == "formdata"
        else "any"
    )
    typ = _ci(p, "type") or _ci(_ci(p, "schema"), "type") or ""
    return [DeclaredParam(name, location, str(typ), bool(_ci(p, "required")))]


def _deref(doc: Mapping[str, Any], obj: Any, depth: int) -> Mapping[str, Any] | None:
    """``obj``, or what its local ``$ref`` (``#/definitions/X``) points at."""
    ref = _ci(obj, "$ref")
    if not isinstance(ref, str):
        return obj if isinstance(obj, Mapping) else None
    if not ref.startswith("#/") or depth >= _MAX_DEPTH:
        return None
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node.get(part) if isinstance(node, Mapping) else None
    return _deref(doc, node, depth + 1)


def _schema_props(doc: Mapping[str, Any], schema: Any, location: Location) -> list[DeclaredParam]:
    resolved = _deref(doc, schema, 0)
    if resolved is None:
        return []
    required = {str(r).lower() for r in _ci(resolved, "required") or [] if isinstance(r, str)}
    props = _ci(resolved, "properties")
    if not isinstance(props, Mapping):
        return []
    return [
        DeclaredParam(str(k), location, str(_ci(v, "type") or ""), str(k).lower() in required)
        for k, v in props.items()
    ]
