"""What each sandbox route declares: request type, route template and parameters.

This is the table the sandbox's own API description (``/types/metadata.json``, ``/openapi``)
is generated from, and what strict mode (seed ``[tenant] strict_params``) accepts. Each
parameter has a logical key (the same keys as leadpipe's ``[api.params]``, so a seed's
``[tenant.params]`` reads like the config that fits it), the name declared by default, and the
name the sandbox's handler reads it under (this repository's docs/api-contract.md,
"Parameter names").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Where = Literal["query", "body", "path"]


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter: logical key, default declared name, the handler's name."""

    key: str
    name: str
    reads: str
    type: str = "String"
    required: bool = False
    where: Where = "query"


@dataclass(frozen=True)
class RouteSpec:
    """One operation: verb, route template (relative to the API), request type, parameters."""

    method: str
    template: str
    operation: str
    params: tuple[ParamSpec, ...] = ()
    #: declared only when the seed's ``leads_include`` is on
    include_param: bool = False

    @property
    def path(self) -> str:
        """The lower-case template, as the route table keys it."""
        return self.template.lower()


_SKIP = ParamSpec("skip", "Skip", "skip", "Int32")
_TAKE = ParamSpec("take", "Take", "take", "Int32")
#: ``/leads``'s Include list (declared and honoured when the seed's ``leads_include`` is on)
INCLUDE = ParamSpec("leads_include", "Include", "include")

ROUTE_SPECS: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/myaccount", "GetMyAccount"),
    RouteSpec("GET", "/myaccount/request/limits", "GetRequestLimits"),
    RouteSpec("GET", "/myaccount/request/counts", "GetRequestCounts"),
    RouteSpec("GET", "/projects", "GetProjects"),
    RouteSpec("GET", "/campaigns", "GetCampaigns"),
    RouteSpec(
        "GET",
        "/leads/example",
        "GetLeadImportExample",
        (
            ParamSpec("example_campaign_code", "CampaignCode", "campaigncode", required=True),
            ParamSpec("example_show_all", "ShowAllDataEntries", "showalldataentries", "Boolean"),
        ),
    ),
    RouteSpec(
        "POST",
        "/leads",
        "CreateLead",
        (
            ParamSpec(
                "create_campaign_code", "CampaignCode", "campaigncode", required=True, where="body"
            ),
            ParamSpec("create_data", "Data", "data", "Dictionary<String,String>", where="body"),
        ),
    ),
    RouteSpec(
        "GET",
        "/leads",
        "GetLeads",
        (
            ParamSpec("leads_search", "SearchName", "searchname", required=True),
            ParamSpec("leads_from", "From", "from", "DateTime", required=True),
            ParamSpec("leads_to", "To", "to", "DateTime"),
            _SKIP,
            _TAKE,
        ),
        include_param=True,
    ),
    RouteSpec("GET", "/leads/searches", "GetLeadSearches"),
    RouteSpec(
        "GET",
        "/leads/csv",
        "GetLeadsCsv",
        (
            ParamSpec("csv_search", "SearchName", "searchname", required=True),
            ParamSpec("csv_from", "From", "from", "DateTime", required=True),
            ParamSpec("csv_to", "To", "to", "DateTime"),
            ParamSpec("csv_use_system_headers", "UseSystemHeaders", "usesystemheaders", "Boolean"),
            ParamSpec("csv_encoding", "Encoding", "encoding"),
            ParamSpec("csv_culture", "Culture", "culture"),
            _SKIP,
            _TAKE,
        ),
    ),
    RouteSpec(
        "GET",
        "/simpleleads",
        "GetSimpleLeads",
        (
            ParamSpec("simpleleads_projects", "Projects", "projects"),
            ParamSpec("simpleleads_from", "ModifiedFrom", "modifiedfrom", "DateTime"),
            ParamSpec("simpleleads_to", "ModifiedTo", "modifiedto", "DateTime"),
            ParamSpec("simpleleads_campaigns", "Campaigns", "campaigns"),
            ParamSpec("simpleleads_statuses", "Statuses", "statuses"),
            ParamSpec("simpleleads_closures", "LeadClosures", "leadclosures"),
            ParamSpec("simpleleads_all_open", "AllOpenStatuses", "allopenstatuses", "Boolean"),
            ParamSpec(
                "simpleleads_all_closed", "AllClosedStatuses", "allclosedstatuses", "Boolean"
            ),
            ParamSpec("simpleleads_unique_id", "UniqueId", "uniqueid"),
            _SKIP,
            _TAKE,
        ),
    ),
    RouteSpec(
        "GET",
        "/leads/{UniqueId}",
        "GetLead",
        (ParamSpec("lead_unique_id", "UniqueId", "uniqueid", required=True, where="path"),),
    ),
)

#: Every logical key a seed's ``[tenant.params]`` may rename.
PARAM_KEYS: frozenset[str] = frozenset(
    p.key for r in ROUTE_SPECS for p in (*r.params, *((INCLUDE,) if r.include_param else ()))
)


def declared_params(
    spec: RouteSpec, names: Mapping[str, str], include: bool
) -> tuple[ParamSpec, ...]:
    """The parameters ``spec`` declares under the seed's names (``names``: key -> name)."""
    params = (*spec.params, INCLUDE) if spec.include_param and include else spec.params
    return tuple(
        ParamSpec(p.key, names.get(p.key, p.name), p.reads, p.type, p.required, p.where)
        for p in params
    )
