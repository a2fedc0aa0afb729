"""``leadpipe doctor``, ``campaigns``, ``fields CODE``, ``searches``: the API, for people.

Each command is one library call through :func:`pipeline.api.open_client` (the embedded
sandbox when no API URL is configured); rich tables for people, ``--json`` for programs.
The API client, the doctor and rich's tables are imported inside the commands: ``leadpipe
--help`` and the other commands do not load them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from pipeline.cli.app import app, console, escape, run, settings

if TYPE_CHECKING:
    from rich.table import Table

    from pipeline.api import HeroBaseClient
    from pipeline.config import Settings
    from pipeline.doctor import DoctorReport
    from pipeline.doctor_api import ApiCheckReport
    from pipeline.ingest.deliver.testupload import ProofReport

T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for programs.")]
MARKS = {"ok": "[green]✔[/]", "warn": "[yellow]![/]", "fail": "[bold red]✘[/]"}


def with_client(s: Settings, fn: Callable[[HeroBaseClient], T]) -> T:
    """Run ``fn`` with the client for these settings; library errors become clean exits."""
    from pipeline.api import open_client

    def call() -> T:
        with open_client(s) as client:
            return fn(client)

    return run(call)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@app.command("doctor")
def doctor(
    ctx: typer.Context,
    as_json: JsonOpt = False,
    test_upload: Annotated[
        str | None,
        typer.Option(
            "--test-upload",
            metavar="CAMPAIGN",
            help="Upload ONE marked test lead to this (test) campaign and prove how the "
            "tenant answers and whether leadpipe's lookup can see it.",
        ),
    ] = None,
    api: Annotated[
        bool,
        typer.Option(
            "--api",
            help="Compare every route and parameter leadpipe sends with the tenant's own API "
            "description (/openapi, /types/metadata.json) and print the config lines that fix "
            "each mismatch. Exit 0 clean, 1 a mismatch, 5 the API cannot be reached.",
        ),
    ] = False,
) -> None:
    """Check the API account: reachability, rights, limits, and what intake and exports lack."""
    from pipeline.doctor import diagnose

    s = settings(ctx)
    if api:
        _api_check(s, as_json)
        return
    if test_upload is not None:
        _test_upload(s, test_upload, as_json)
        return
    report = with_client(s, lambda client: diagnose(s, client))
    if as_json:
        _echo_json(report.to_json())
    else:
        print_report(report)
    raise typer.Exit(report.exit_code)


def _test_upload(s: Settings, campaign: str, as_json: bool) -> None:
    from pipeline.api import open_client
    from pipeline.ingest.deliver.testupload import prove_tenant

    def call() -> ProofReport:
        # the embedded demo tenant the service uses (kept in the state folder)
        db = s.paths.state / "sandbox.sqlite" if s.api.embedded else None
        with open_client(s, sandbox_db=db) as client:
            return prove_tenant(s, client, campaign)

    proof = run(call)
    if as_json:
        _echo_json(
            {
                "ok": proof.ok,
                "campaign": proof.campaign,
                "unique_id": proof.unique_id,
                "post_answer": proof.post_answer,
                "found_by_id": proof.found_by_id,
                "found_by_data": proof.found_by_data,
                "lookup_has_data": proof.lookup_has_data,
                "identity": list(proof.identity) if proof.identity else None,
                "exports": proof.exports,
                "findings": [{"level": lvl, "text": t} for lvl, t in proof.lines],
            }
        )
    else:
        console().print(f"[bold]Test upload to {escape(campaign)}[/] (one lead, marked as a test)")
        for level, text in proof.lines:
            console().print(f"  {MARKS[level]} {escape(text)}", soft_wrap=True)
        if proof.unique_id:
            uid = escape(proof.unique_id)
            console().print(f"Remove the test lead {uid} in HeroBase when done.")
    raise typer.Exit(0 if proof.ok else 1)


def _api_check(s: Settings, as_json: bool) -> None:
    from pipeline.doctor_api import check_api

    report = with_client(s, lambda client: check_api(s, client))
    if as_json:
        _echo_json(report.to_json())
    else:
        print_api_report(report)
    raise typer.Exit(report.exit_code)


VERDICTS = {
    "ok": "[green]✔ ok[/]",
    "mismatch": "[bold red]✘ mismatch[/]",
    "note": "[yellow]! note[/]",
}


def print_api_report(report: ApiCheckReport) -> None:
    """``doctor --api``: what leadpipe sends | what the tenant declares | ok?, then the fixes."""
    from rich.table import Table

    from pipeline.doctor_api import NO_DESCRIPTION

    mode = " (embedded sandbox)" if report.embedded else ""
    console().print(f"[bold]API[/] {escape(report.api_url)}{mode}")
    if not report.reachable:
        console().print(f"  {MARKS['fail']} {escape(report.error)}", soft_wrap=True)
        return
    for a in report.attempts:
        mark = MARKS["ok"] if a.served else MARKS["warn"]
        console().print(f"  {mark} {escape(a.url)}: {escape(a.note)}", soft_wrap=True)
    if report.described:
        table = Table(title=f"leadpipe vs the tenant's {escape(report.source)} description")
        table.add_column("what leadpipe sends", overflow="fold")
        table.add_column("what the tenant declares", overflow="fold")
        table.add_column("ok?")
        for row in report.rows:
            sent = f"[bold]{escape(row.sent)}[/]" if row.operation else escape(row.sent)
            table.add_row(sent, escape(row.declared), VERDICTS[row.verdict])
        console().print(table)
    else:
        console().print(f"[yellow]{NO_DESCRIPTION}[/]")
        table = Table(title="probes (one harmless GET each)", title_justify="left")
        table.add_column("request", overflow="fold")
        table.add_column("answer", overflow="fold")
        table.add_column("ok?")
        for probe in report.probes:
            table.add_row(escape(probe.request), escape(probe.result), VERDICTS[probe.verdict])
        console().print(table)
    if report.fixes:
        console().print(f"[bold red]{report.mismatches} mismatch(es).[/] To fit this tenant, set:")
        for line in report.fixes:
            console().print(f"  {escape(line)}", soft_wrap=True, highlight=False)
    else:
        console().print("[green]Everything leadpipe sends is what the tenant declares.[/]")
    for line in report.advice:
        console().print(f"  note: {escape(line)}", soft_wrap=True, highlight=False)


def print_report(report: DoctorReport) -> None:
    """The doctor's report as tables and plain-words lines."""
    from rich.table import Table

    mode = " (embedded sandbox, demo account)" if report.embedded else ""
    console().print(f"[bold]API[/] {escape(report.api_url)}{mode}")
    for f in report.connection:
        console().print(f"  {MARKS[f.level]} {escape(f.text)}", soft_wrap=True)
    acc = report.account
    if acc is not None:
        rights = Table(title="Rights", title_justify="left")
        rights.add_column("resource")
        rights.add_column("allowed")
        for res, verbs in sorted(acc.resource_rights.items()):
            rights.add_row(escape(res), escape(", ".join(verbs) or "-"))
        rights.add_row("(projects)", escape(", ".join(acc.project_rights) or "-"))
        console().print(rights)
    if report.campaigns is not None:
        console().print(_campaign_table(report.campaigns))
    if report.searches is not None:
        console().print(_search_table(report.searches))
    for title, items in (("Intake", report.intake), ("Exports", report.exports)):
        if items:
            console().print(f"[bold]{title}[/]")
            for f in items:
                console().print(f"  {MARKS[f.level]} {escape(f.text)}", soft_wrap=True)
    if report.ok:
        console().print("[green]Everything configured can work.[/]")
    else:
        n = len(report.problems)
        console().print(f"[bold red]{n} problem(s) stop leadpipe from working as configured.[/]")


def _campaign_table(campaigns: list[Any]) -> Table:
    from rich.table import Table

    table = Table(title=f"Reachable campaigns ({len(campaigns)})", title_justify="left")
    # codes are what people type and grep: never shortened (uniqueIds are in --json)
    table.add_column("code", min_width=max((len(c.code) for c in campaigns), default=4))
    table.add_column("name")
    table.add_column("project")
    table.add_column("active")
    for c in campaigns:
        table.add_row(
            escape(c.code), escape(c.name), escape(c.project), "yes" if c.active else "no"
        )
    return table


def _search_table(searches: list[Any]) -> Table:
    from rich.table import Table

    table = Table(title=f"Searches ({len(searches)})", title_justify="left")
    table.add_column("name")
    table.add_column("description")
    for s in searches:
        table.add_row(escape(s.name), escape(s.description))
    return table


@app.command("campaigns")
def campaigns(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the campaigns the API account may reach."""
    found = with_client(settings(ctx), lambda client: client.campaigns())
    if as_json:
        _echo_json(
            [
                {
                    "code": c.code,
                    "name": c.name,
                    "project": c.project,
                    "active": c.active,
                    "uniqueId": c.unique_id,
                }
                for c in found
            ]
        )
        return
    console().print(_campaign_table(found))


@app.command("searches")
def searches(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the saved lead searches the API account may use for exports."""
    found = with_client(settings(ctx), lambda client: client.searches())
    if as_json:
        _echo_json([{"name": s.name, "description": s.description} for s in found])
        return
    console().print(_search_table(found))


@app.command("fields")
def fields(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(help="The campaign code, e.g. B2B-DK-SPRING.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a campaign's fields (name, type, regex, required), from its import example."""
    from rich.table import Table

    from pipeline.ingest.fields import parse_example

    def fetch(client: HeroBaseClient) -> tuple[dict[str, str], dict[str, str]]:
        return client.import_example(code), client.import_example(code, all_fields=True)

    plain, full = with_client(settings(ctx), fetch)
    specs = parse_example(plain, full)
    if as_json:
        _echo_json(
            [
                {"name": f.name, "type": f.type, "regex": f.regex, "required": f.required}
                for f in specs
            ]
        )
        return
    table = Table(title=f"Fields of {escape(code)} ({len(specs)})", title_justify="left")
    for col in ("name", "type", "required", "regex"):
        table.add_column(col, overflow="fold")
    for f in specs:
        table.add_row(
            escape(f.name), escape(f.type), "yes" if f.required else "no", escape(f.regex)
        )
    console().print(table)
