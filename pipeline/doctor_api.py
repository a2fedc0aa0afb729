"""``leadpipe doctor --api``: does what leadpipe sends match what the tenant declares?

:func:`check_api` reaches the API, fetches the tenant's own description
(:mod:`pipeline.api.description`) and compares every operation, route and parameter the client
sends (:data:`pipeline.api.client.SENT_OPERATIONS`, under the configured ``[api.endpoints]`` and
``[api.params]``) with it; each mismatch carries the config line that fixes it. A tenant that
serves no description gets harmless probes instead (one GET per read-only endpoint, one row at
most). The result is an :class:`ApiCheckReport`; its exit code is 0 clean, 1 a mismatch,
5 the API cannot be reached (docs/api-contract.md, "The tenant's description").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.api import HeroBaseClient
from pipeline.api.client import SENT_OPERATIONS, SentOperation
from pipeline.api.description import (
    ApiDescription,
    Attempt,
    DeclaredOperation,
    fetch_description,
    route_shape,
)
from pipeline.config import DEFAULT_PARAMS, Settings
from pipeline.errors import ApiError, NotPermitted, Unavailable, Uncertain

Verdict = Literal["ok", "mismatch", "note"]
NO_DESCRIPTION = "no description served; the checks below are what we can probe"
_VAR = re.compile(r"\{[^{}]+\}")


@dataclass(frozen=True)
class Row:
    """One line of the table: what leadpipe sends, what the tenant declares, the verdict."""

    sent: str
    declared: str
    verdict: Verdict
    fix: tuple[str, ...] = ()  #: config lines that fix a mismatch (or follow a note)
    operation: bool = False  #: an operation line (else a parameter under the one above)


@dataclass(frozen=True)
class Probe:
    """One harmless request to a tenant without a description, and how it ended."""

    key: str
    request: str
    verdict: Verdict
    result: str
    fix: tuple[str, ...] = ()


@dataclass
class ApiCheckReport:
    """What ``doctor --api`` found."""

    api_url: str
    embedded: bool
    reachable: bool = False
    error: str = ""
    attempts: tuple[Attempt, ...] = ()
    source: str = ""  #: "metadata" or "openapi": the description compared; "" none
    rows: list[Row] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)

    @property
    def described(self) -> bool:
        """True when the tenant served a description."""
        return bool(self.source)

    @property
    def mismatches(self) -> int:
        """How many rows and probes found a mismatch."""
        items: list[Row | Probe] = [*self.rows, *self.probes]
        return sum(r.verdict == "mismatch" for r in items)

    @property
    def fixes(self) -> list[str]:
        """Every config line that fixes a mismatch, once, in table order."""
        lines: list[str] = []
        items: list[Row | Probe] = [*self.rows, *self.probes]
        for item in items:
            if item.verdict == "mismatch":
                lines.extend(f for f in item.fix if f not in lines)
        return lines

    @property
    def advice(self) -> list[str]:
        """Notes with a suggestion (a declared Include leadpipe does not send)."""
        return [
            f"the tenant declares {r.declared} and leadpipe does not send it; if lead data is "
            f"missing from exports, set {fix}"
            for r in self.rows
            if r.verdict == "note"
            for fix in r.fix
        ]

    @property
    def exit_code(self) -> int:
        """0 clean, 1 a mismatch was found, 5 the API cannot be reached."""
        if not self.reachable:
            return 5
        return 1 if self.mismatches else 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for programs."""
        return {
            "ok": self.exit_code == 0,
            "api_url": self.api_url,
            "embedded": self.embedded,
            "reachable": self.reachable,
            "error": self.error,
            "description": self.source or None,
            "attempts": [
                {"source": a.source, "url": a.url, "served": a.served, "note": a.note}
                for a in self.attempts
            ],
            "rows": [
                {
                    "sent": r.sent,
                    "declared": r.declared,
                    "verdict": r.verdict,
                    "fix": list(r.fix),
                    "operation": r.operation,
                }
                for r in self.rows
            ],
            "probes": [
                {
                    "endpoint": p.key,
                    "request": p.request,
                    "verdict": p.verdict,
                    "result": p.result,
                    "fix": list(p.fix),
                }
                for p in self.probes
            ],
            "fixes": self.fixes,
        }


def check_api(settings: Settings, client: HeroBaseClient) -> ApiCheckReport:
    """Compare leadpipe's requests with the tenant's description (or probe without one)."""
    report = ApiCheckReport(api_url=client.url, embedded=settings.api.embedded)
    try:
        client.account()
    except (Unavailable, Uncertain) as exc:
        report.error = f"cannot reach the API: {exc}"
        return report
    except NotPermitted as exc:
        if exc.status == 401:
            report.error = f"the credentials were refused: {exc}"
            return report
    except ApiError:
        pass  # reachable; a wrong /myaccount route shows in the comparison
    report.reachable = True
    try:
        fetched = fetch_description(client)
    except Unavailable as exc:
        report.reachable = False
        report.error = f"cannot reach the API: {exc}"
        return report
    report.attempts = fetched.attempts
    if fetched.description is None:
        report.probes = _probes(settings, client)
        return report
    report.source = fetched.description.source
    report.rows = compare(settings, client, fetched.description)
    return report


# -- the comparison ----------------------------------------------------------------------------


def compare(settings: Settings, client: HeroBaseClient, desc: ApiDescription) -> list[Row]:
    """One operation row per request leadpipe sends, then a row per parameter it sends."""
    wire = {**DEFAULT_PARAMS, **settings.api.params}
    include = bool(settings.api.leads_include)
    rows: list[Row] = []
    for sent in SENT_OPERATIONS:
        path = client.endpoint(sent.key)
        names = [n for n in (*sent.query, *sent.body) if include or n != "leads_include"]
        found = desc.find(sent.method, path)
        target = found
        if found is not None:
            rows.append(Row(f"{sent.method} {path}", _op_text(found), "ok", operation=True))
        else:
            target = _guess(desc, sent, path, [wire[n] for n in names])
            fix: tuple[str, ...]
            if target is not None:
                fix = (f'[api.endpoints] {sent.key} = "{_our_template(target.path, path)}"',)
                shown = _op_text(target)
            else:
                fix = (
                    f"[api.endpoints] {sent.key} = the tenant's route for this operation "
                    f"(see {client.url}/metadata)",
                )
                shown = f"(no {sent.method} route like {path})"
            rows.append(Row(f"{sent.method} {path}", shown, "mismatch", fix, operation=True))
        if target is None:
            continue
        rows.extend(_param_rows(target, names, wire))
        if sent.key == "leads" and sent.method == "GET" and not include:
            declared = target.param(wire["leads_include"])
            if declared is not None:
                rows.append(
                    Row(
                        f"{wire['leads_include']} (not sent)",
                        declared.name,
                        "note",
                        ('[api] leads_include = ["data"]',),
                    )
                )
    return rows


def _op_text(op: DeclaredOperation) -> str:
    return f"{op.name}: {op.method} {op.path}" if op.name else f"{op.method} {op.path}"


def _our_template(declared: str, ours: str) -> str:
    """The declared route with our variable names (the client fills ``{uniqueId}``)."""
    our_vars = iter(_VAR.findall(ours))
    return _VAR.sub(lambda m: next(our_vars, m.group(0)), declared)


def _guess(
    desc: ApiDescription, sent: SentOperation, path: str, names: list[str]
) -> DeclaredOperation | None:
    """The declared operation most like the one we send (same verb, same number of route
    variables, sharing parameters or the last literal segment), or None."""
    shape = route_shape(path)
    last = next((s for s in reversed(shape) if s != "{}"), "")
    wanted = {n.lower() for n in names}
    best: tuple[int, DeclaredOperation] | None = None
    for op in desc.with_method(sent.method):
        theirs = route_shape(op.path)
        if theirs.count("{}") != shape.count("{}"):
            continue
        score = 2 * len(wanted & {p.name.lower() for p in op.params})
        score += 1 if last and last in theirs else 0
        score += 1 if last and last in op.name.lower() else 0
        if score and (best is None or score > best[0]):
            best = (score, op)
    return best[1] if best else None


def _param_rows(op: DeclaredOperation, names: list[str], wire: dict[str, str]) -> list[Row]:
    rows: list[Row] = []
    matched = {wire[n].lower() for n in names if op.param(wire[n]) is not None}
    free = [p.name for p in op.params if p.name.lower() not in matched]
    for logical in names:
        name = wire[logical]
        declared = op.param(name)
        if declared is not None:
            rows.append(Row(f"  {name}", declared.name, "ok"))
            continue
        picks = _candidates(logical, free)
        if len(picks) == 1:
            fix: tuple[str, ...] = (f'[api.params] {logical} = "{picks[0]}"',)
        else:
            listed = ", ".join(picks or free) or "none"
            fix = (f"[api.params] {logical} = one of the declared names ({listed})",)
        rows.append(Row(f"  {name}", "(not declared)", "mismatch", fix))
    sent = {wire[n].lower() for n in names}
    for p in op.params:
        if p.required and p.location != "path" and p.name.lower() not in sent:
            rows.append(Row("  (not sent)", f"{p.name} (required)", "note"))
    return rows


def _candidates(logical: str, free: list[str]) -> list[str]:
    """Declared names that look like logical parameter ``logical`` (``leads_from`` ->
    ``ModifiedFrom``)."""
    default = DEFAULT_PARAMS[logical].lower()
    word = logical.rsplit("_", 1)[-1]
    words = {default, word} | ({"uniqueid"} if logical.endswith("unique_id") else set())
    exact = [n for n in free if n.lower() in words]
    if exact:
        return exact
    ends = [n for n in free if any(n.lower().endswith(w) for w in words)]
    if ends:
        return ends
    return [n for n in free if any(len(w) >= 4 and w in n.lower() for w in words)]


# -- probes (no description) -------------------------------------------------------------------

_PROBED = (
    "myaccount",
    "limits",
    "counts",
    "projects",
    "campaigns",
    "searches",
    "import_example",
    "leads",
    "leads_csv",
    "simpleleads",
)


def _probes(settings: Settings, client: HeroBaseClient) -> list[Probe]:
    wire = {**DEFAULT_PARAMS, **settings.api.params}
    campaign = search = ""
    out: list[Probe] = []
    for key in _PROBED:
        path = client.endpoint(key)
        if key == "import_example" and not campaign:
            out.append(Probe(key, f"GET {path}", "note", "skipped: no campaign to ask about"))
            continue
        if key in ("leads", "leads_csv") and not search:
            out.append(Probe(key, f"GET {path}", "note", "skipped: no search to ask about"))
            continue
        about = campaign if key == "import_example" else search
        asked = f"GET {path}" + (f" ({about})" if key in _NEEDS else "")
        try:
            status = client.probe(key, search=search, campaign=campaign)
        except NotPermitted as exc:
            why = exc.missing_right or str(exc)
            out.append(Probe(key, asked, "note", f"{exc.status}: not allowed ({why})"))
            continue
        except ApiError as exc:
            out.append(_failed_probe(key, asked, exc, wire))
            continue
        out.append(Probe(key, asked, "ok", f"{status}"))
        if key == "campaigns" and not campaign:
            campaign = next((c.code for c in _safe(client.campaigns)), "")
        if key == "searches" and not search:
            configured = [job.search for job in settings.exports]
            search = (
                configured[0] if configured else next((s.name for s in _safe(client.searches)), "")
            )
    return out


_NEEDS = frozenset({"import_example", "leads", "leads_csv"})


def _safe(fetch: Any) -> list[Any]:
    try:
        found: list[Any] = fetch()
    except ApiError:
        return []
    return found


def _failed_probe(key: str, asked: str, exc: ApiError, wire: dict[str, str]) -> Probe:
    status = exc.status
    detail = exc.response_status.message if exc.response_status else str(exc)
    if status == 404:
        fix: tuple[str, ...] = (
            f"[api.endpoints] {key} = the tenant's route (see its /metadata page)",
        )
        return Probe(key, asked, "mismatch", f"404: {detail}", fix)
    if status == 400:
        names = [e.field_name for e in exc.response_status.errors] if exc.response_status else []
        keys = _keys_for(key, names, wire)
        fix = tuple(f"[api.params] {k} = the tenant's name for it" for k in keys)
        return Probe(key, asked, "mismatch", f"400: {detail}", fix)
    shown = f"{status}: {detail}" if status is not None else detail
    return Probe(key, asked, "note", shown)


def _keys_for(endpoint: str, names: list[str], wire: dict[str, str]) -> list[str]:
    """The ``[api.params]`` keys whose wire names a 400 named."""
    sent = next((s for s in SENT_OPERATIONS if s.key == endpoint and s.method == "GET"), None)
    if sent is None:
        return []
    low = {n.lower() for n in names}
    return [k for k in sent.query if wire[k].lower() in low]
