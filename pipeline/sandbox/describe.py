"""The sandbox's own API description, generated from its route table.

Served like a ServiceStack host serves it: ``GET /types/metadata.json`` (operations with request
type, routes and request properties) and ``GET /openapi`` (Swagger 2.0). The parameter names
are the ones the seed declares (``[tenant.params]``), so ``leadpipe doctor --api`` can compare
leadpipe's configuration with them (docs/api-contract.md, "The tenant's description").
A seed with ``[tenant] describe = false`` serves neither (404), like a tenant without them.
"""

from __future__ import annotations

from typing import Any

from pipeline.sandbox.declared import ROUTE_SPECS, ParamSpec, RouteSpec, declared_params
from pipeline.sandbox.seed import Seed

_SWAGGER_TYPES = {"Int32": "integer", "Boolean": "boolean", "DateTime": "string"}


def _params(seed: Seed, spec: RouteSpec) -> tuple[ParamSpec, ...]:
    return declared_params(spec, seed.param_names, seed.leads_include)


def metadata_json(seed: Seed) -> dict[str, Any]:
    """``/types/metadata.json``: ServiceStack's description of every operation."""
    operations = []
    for spec in ROUTE_SPECS:
        operations.append(
            {
                "request": {
                    "name": spec.operation,
                    "namespace": "HeroBase.Sandbox",
                    "properties": [
                        {
                            "name": p.name,
                            "type": p.type,
                            "isRequired": p.required,
                            "paramType": p.where,
                        }
                        for p in _params(seed, spec)
                    ],
                },
                "actions": [spec.method],
                "routes": [{"path": spec.template, "verbs": spec.method}],
            }
        )
    return {"config": {"baseUrl": ""}, "namespaces": [], "operations": operations, "types": []}


def openapi(seed: Seed) -> dict[str, Any]:
    """``/openapi``: the same operations as a Swagger 2.0 document."""
    paths: dict[str, dict[str, Any]] = {}
    definitions: dict[str, Any] = {}
    for spec in ROUTE_SPECS:
        params = _params(seed, spec)
        wire: list[dict[str, Any]] = [
            {
                "name": p.name,
                "in": p.where,
                "type": _SWAGGER_TYPES.get(p.type, "string"),
                "required": p.required or p.where == "path",
            }
            for p in params
            if p.where != "body"
        ]
        body = [p for p in params if p.where == "body"]
        if body:
            definitions[spec.operation] = {
                "type": "object",
                "required": [p.name for p in body if p.required],
                "properties": {
                    p.name: {"type": "object" if p.type.startswith("Dictionary") else "string"}
                    for p in body
                },
            }
            wire.append(
                {
                    "name": "body",
                    "in": "body",
                    "required": True,
                    "schema": {"$ref": f"#/definitions/{spec.operation}"},
                }
            )
        paths.setdefault(spec.template, {})[spec.method.lower()] = {
            "operationId": spec.operation,
            "parameters": wire,
            "responses": {"200": {"description": "OK"}},
        }
    return {
        "swagger": "2.0",
        "info": {"title": "HeroBase sandbox", "version": "1.0"},
        "paths": paths,
        "definitions": definitions,
    }
