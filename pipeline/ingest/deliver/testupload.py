"""``leadpipe doctor --test-upload CAMPAIGN``: prove on the real tenant what leadpipe assumes.

Uploads one clearly marked test lead to a campaign (the vendor recommends a test campaign for
getting an import running), then checks and reports:

- the shape of the ``POST /leads`` answer and where the new lead's id was;
- that the reconciliation lookup (``/simpleleads`` since a moment ago) finds the lead, by
  uniqueId and by its data, i.e. that it could tell a missing lead from one that is there;
- which ``uploadedByUser`` field marks the leads of this account, and its value;
- whether each configured export's saved search finds the lead (when the search matches it).

What was proven is recorded in the state folder (:mod:`pipeline.ingest.deliver.tenantproof`); the
uploader
consults it before it sends an uncertain row again. What does not work is said with the
configuration line that would fix it. Only this explicit command ever uploads a test lead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pipeline.api import HeroBaseClient
from pipeline.api.models import Lead
from pipeline.config import Settings
from pipeline.errors import ApiError, Invalid
from pipeline.ingest.deliver.tenantproof import ProofStore, TenantProof, learn_identity
from pipeline.ingest.deliver.upload import (
    campaign_id,
    campaign_leads_since,
    data_key,
    normalise,
)

MARKER = "LEADPIPE TEST LEAD"


@dataclass
class ProofReport:
    """What the test upload showed; ``ok`` when the lookup can be trusted to decide resends."""

    campaign: str
    sent: dict[str, str] = field(default_factory=dict)
    unique_id: str | None = None
    post_answer: str = ""
    found_by_id: bool = False
    found_by_data: bool = False
    lookup_has_data: bool = False
    identity: tuple[str, str] | None = None
    exports: dict[str, bool] = field(default_factory=dict)
    lines: list[tuple[str, str]] = field(default_factory=list)  #: (ok|warn|fail, text)

    @property
    def ok(self) -> bool:
        """The lookup sees this account's leads with their data: resends can be decided."""
        return (self.found_by_id or self.found_by_data) and self.lookup_has_data


def _values(field_type: str, stamp: str, options: Sequence[str]) -> list[str]:
    """Candidate test values for a field type (the first that passes the field's regex wins)."""
    t = field_type.lower()
    today = datetime.now().date()
    by_type = {
        "phone": ["+4570707070", "70707070", "+45 70 70 70 70"],
        "email": [f"leadpipe-test-{stamp}@example.com"],
        "integer": ["1"],
        "decimal": ["1", "1.0", "1,0"],
        "date": [today.isoformat(), today.strftime("%d-%m-%Y"), today.strftime("%d/%m/%Y")],
        "datetime": [f"{today.isoformat()} 12:00:00", f"{today.isoformat()}T12:00:00"],
        "boolean": ["true", "1", "True"],
        "dropdown": list(options),
    }
    return by_type.get(t, [f"{MARKER} {stamp}", f"LEADPIPE TEST {stamp}", "LEADPIPE", "x"])


def build_test_lead(fields: Sequence[object], stamp: str) -> tuple[dict[str, str], list[str]]:
    """A lead whose every required field passes its regex, marked in every text field.

    Returns the data and the fields for which no candidate value passed (to fill by hand).
    """
    from pipeline.ingest.matching import compile_regex
    from pipeline.ingest.validate.checks import dropdown_choices

    data: dict[str, str] = {}
    missing: list[str] = []
    for spec in fields:
        name, ftype = getattr(spec, "name"), getattr(spec, "type")  # noqa: B009
        regex, required = getattr(spec, "regex"), getattr(spec, "required")  # noqa: B009
        text_like = ftype.lower() in ("varchar", "text", "string", "unknown", "")
        if not required and not text_like:
            continue
        matcher = compile_regex(regex, "whole") if regex else None  # whole: passes either way
        options = dropdown_choices(regex) or () if regex else ()
        for value in _values(ftype, stamp, options):
            if matcher is None or matcher.matches(value):
                data[name] = value
                break
        else:
            if required:
                missing.append(name)
    return data, missing


def prove_tenant(
    settings: Settings,
    client: HeroBaseClient,
    campaign: str,
    *,
    wait_seconds: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ProofReport:
    """Upload one marked test lead to ``campaign`` and prove what the tenant does with it."""
    from pipeline.ingest.fields import load_campaign_schema

    report = ProofReport(campaign)
    say = report.lines.append
    tz = ZoneInfo(settings.timezone)
    started = datetime.now(tz)
    stamp = started.strftime("%Y%m%d%H%M%S")
    schema = load_campaign_schema(client, campaign, settings.paths.schemas)
    data, missing = build_test_lead(schema.fields, stamp)
    if missing:
        say(("fail", f"no test value passes the regex of required field(s) {', '.join(missing)}"))
        return report
    report.sent = data
    try:
        created = client.create_lead(campaign, data)
    except Invalid as exc:
        say(("fail", f"HeroBase refused the test lead: {exc}"))
        return report
    except ApiError as exc:
        say(("fail", f"the test upload did not get a clear answer: {exc}"))
        return report
    report.unique_id = created.unique_id
    report.post_answer = _answer_shape(created.raw, created.unique_id)
    say(("ok", f"the test lead was created; the answer {report.post_answer}"))
    found = _look_up(client, campaign, started, report, wait_seconds, sleep)
    if found is None:
        say(
            (
                "fail",
                "the reconciliation lookup (/simpleleads, modified since the upload, in the "
                f"campaign) did not return the test lead within {wait_seconds:.0f} s: leadpipe "
                "will leave uncertain rows for a person instead of sending them again. Check "
                "the path under [api.endpoints] simpleleads = ... against your tenant's "
                "/api/metadata page.",
            )
        )
    else:
        how = "by uniqueId and by its data" if report.found_by_data else "by uniqueId only"
        say(("ok" if report.found_by_data else "fail", f"the lookup finds the test lead {how}"))
        if not report.lookup_has_data:
            say(
                (
                    "fail",
                    "the lookup's answers carry no lead data, so a missing lead cannot be told "
                    "from one that is there: uncertain rows will be left for a person",
                )
            )
        report.identity = learn_identity([found.raw])
        if report.identity:
            say(("ok", f"leads of this account carry {report.identity[0]} = {report.identity[1]}"))
        else:
            say(("warn", "leads do not say who uploaded them: no lead is excluded as 'not ours'"))
    for job in settings.exports:
        try:
            hits = [
                lead
                for lead in client.iter_leads(
                    job.search, started - timedelta(hours=1), datetime.now(tz) + timedelta(hours=1)
                )
                if _is_it(lead, report)
            ]
        except ApiError as exc:
            say(("warn", f"export {job.name}: its search {job.search!r} could not run: {exc}"))
            continue
        report.exports[job.name] = bool(hits)
        say(
            (
                "ok" if hits else "warn",
                f"export {job.name}: search {job.search!r} "
                + ("finds the test lead" if hits else "does not find it (fine if the search "
                   "selects other leads, e.g. closed ones)"),
            )
        )  # fmt: skip
    ProofStore.for_settings(settings).save(
        TenantProof(
            tenant="",
            lookup_sees_ours=report.found_by_id or report.found_by_data,
            lookup_has_data=report.lookup_has_data and report.found_by_data,
            identity_field=report.identity[0] if report.identity else "",
            identity_value=report.identity[1] if report.identity else "",
            post_answer=report.post_answer,
            how=f"doctor --test-upload on campaign {campaign}",
            exports=dict(report.exports),
        )
    )
    say(
        (
            "ok" if report.ok else "fail",
            "recorded in the state folder: uncertain rows "
            + ("may be looked up and sent again when absent" if report.ok else
               "are left for a person (the lookup cannot be trusted here)"),
        )
    )  # fmt: skip
    return report


def _answer_shape(raw: object, unique_id: str | None) -> str:
    if unique_id is None:
        return "carried no id (it is looked up later, never resent)"
    if isinstance(raw, dict):
        for key, value in raw.items():
            if str(value) == unique_id:
                return f"carried the id at the top level as {key!r}"
            if isinstance(value, dict) and any(str(v) == unique_id for v in value.values()):
                inner = next(k for k, v in value.items() if str(v) == unique_id)
                return f"carried the id one level deep, as {key!r} -> {inner!r}"
    return "carried the id"


def _same_data(lead: Lead, report: ProofReport) -> bool:
    fields = sorted(report.sent)
    return bool(fields) and data_key(lead.data, fields) == data_key(report.sent, fields)


def _is_it(lead: Lead, report: ProofReport) -> bool:
    if report.unique_id and lead.unique_id == report.unique_id:
        return True
    return _same_data(lead, report)


def _look_up(
    client: HeroBaseClient,
    campaign: str,
    started: datetime,
    report: ProofReport,
    wait_seconds: float,
    sleep: Callable[[float], None],
) -> Lead | None:
    cid = campaign_id(client, campaign)
    since = (started - timedelta(minutes=5)).replace(tzinfo=None)
    deadline = time.monotonic() + wait_seconds
    while True:
        leads: list[Lead] = campaign_leads_since(client, cid, since)
        by_id = next(
            (x for x in leads if report.unique_id and x.unique_id == report.unique_id), None
        )
        by_data = next((x for x in leads if _same_data(x, report)), None)
        report.found_by_id = by_id is not None
        report.found_by_data = by_data is not None
        found = by_id or by_data
        if found is not None:
            report.lookup_has_data = any(normalise(v) for v in found.data.values())
            report.unique_id = report.unique_id or found.unique_id
            return found
        if time.monotonic() >= deadline:
            return None
        sleep(2.0)
