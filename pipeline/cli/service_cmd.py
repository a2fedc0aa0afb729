"""``leadpipe run`` (the drop-folder service) and ``leadpipe status``."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli.app import app, console, escape, run, settings

if TYPE_CHECKING:  # the service pulls in pandas, pandera and polars: only when it runs
    from pipeline.service.loop import ServiceInfo


def _say_ready(info: ServiceInfo) -> None:
    if info.embedded:
        console().print(
            "No API URL configured: running against the built-in demo sandbox "
            f"({escape(info.api_url)}). Nothing reaches a real dialer."
        )
    console().print(
        f"Drop CSV or XLSX files into a campaign folder under [bold]{escape(str(info.inbox))}[/]:"
    )
    for folder in info.campaign_folders:
        console().print(f"  {escape(str(folder))}/", highlight=False)
    console().print(
        "Results appear beside each file: processed/ (original + receipt), rejected/ (rows to "
        "fix), failed/ (files that could not be read). Drop into <campaign>/preview/ to check a "
        "file without uploading.",
        highlight=False,
    )
    if info.exports:
        console().print(
            escape(f"Exports ({', '.join(info.exports)}) are written to {info.outbox}/."),
            highlight=False,
        )
    if info.status_url:
        console().print(f"Status page: {escape(info.status_url)}", highlight=False)
    if info.polling:
        console().print("Polling mode: the inbox is swept on a timer (no file-system events).")
    console().print("Stop with Ctrl+C.", highlight=False)


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Process everything waiting now, then exit (for cron).")
    ] = False,
) -> None:
    """Run the drop-folder service: intake, export schedules and the status page."""
    s = settings(ctx)
    logging.basicConfig(level=logging.INFO, format="leadpipe: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from pipeline.service.run import run_service

    result = run(lambda: run_service(s, once=once, stop=stop, on_ready=_say_ready))
    code = 0
    if once or stop.is_set():
        console().print(f"{result.processed} file(s) processed, {result.failed} failed.")
    if result.credentials_refused:  # a setting to fix, not "run again" (exit 3, as `leadpipe`)
        console().print(
            "[bold red]The API refused the user name or password (401).[/] Fix the credentials "
            "(LEADPIPE_API_USER and LEADPIPE_API_PASSWORD, e.g. in the service's credentials "
            f"file), then start leadpipe again. {result.waiting} file(s) wait in the inbox.",
            highlight=False,
        )
        code = 3
    elif result.waiting:
        console().print(
            f"[bold red]{result.waiting} file(s) wait in the inbox: waiting for the API[/] "
            f"({escape(result.waiting_reason)}). Run again when it answers.",
            highlight=False,
        )
        code = 5
    _exit_without_waiting_for_answers(code)
    if code:
        raise typer.Exit(code)


def _exit_without_waiting_for_answers(code: int) -> None:
    """Exit now if requests are still waiting for HeroBase's answer after the service stopped.

    The service stops within its grace (docs/architecture.md, "Lanes"), but a request already
    sent waits for its answer up to the read timeout, and Python would wait for its thread
    before exiting. Not waiting is safe: each such row is recorded as sent before the request
    goes (its answer not yet known), so the next start looks it up and never sends it twice;
    its file is resumed from its claim.
    """
    from pipeline.ingest.deliver.upload import UPLOAD_THREADS

    def holds_exit(t: threading.Thread) -> bool:
        # non-daemon threads, and the upload pool's (Python joins a pool's threads at exit)
        return t is not threading.main_thread() and (
            not t.daemon or t.name.startswith(UPLOAD_THREADS)
        )

    # no further grace: the ledger is closed now, an answer arriving later has nowhere to go
    left = [t for t in threading.enumerate() if holds_exit(t) and t.is_alive()]
    if not left:
        return
    logging.getLogger(__name__).warning(
        "requests still wait for HeroBase's answer (%d upload thread(s)): not waited for; "
        "their rows are looked up on the next start, never sent twice",
        len(left),
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@app.command("status")
def status_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
) -> None:
    """Show what the drop-folder service is doing (or last did)."""
    from functools import partial

    from pipeline.clock import shown_time as shown_in
    from pipeline.outcome import FileOutcome
    from pipeline.service.instance import read_status

    s = settings(ctx)
    shown_time = partial(shown_in, timezone=s.timezone)  # every time in the tenant's zone
    found = read_status(s)
    if as_json:
        typer.echo(json.dumps(found.to_json(), indent=2, default=str))
        return
    now = found.intake
    node = f" as node {found.node}" if found.node else ""
    if found.running:
        console().print(f"leadpipe run is running{node} (pid {found.pid}).", highlight=False)
    else:
        console().print(f"leadpipe run is not running{node}.", highlight=False)
    if found.at:
        console().print(f"Last status: {shown_time(found.at)}", highlight=False, markup=False)
    console().print(f"Inbox: {now.inbox}", highlight=False, markup=False)
    if not now.inbox_ok:
        console().print(f"[red]{escape(now.inbox_problem)}[/]", highlight=False)
    if now.stray:
        console().print(
            f"[red]Not taken[/] (at the top of the inbox, in no campaign folder): "
            f"{escape(', '.join(now.stray))}",
            highlight=False,
        )
    if now.waiting_for_api and now.resume_at:
        console().print(
            f"[red]Uploads paused until {shown_time(now.resume_at)}:[/] {escape(now.api_problem)}",
            highlight=False,
        )
    elif now.waiting_for_api:
        console().print(f"[red]Waiting for the API:[/] {escape(now.api_problem)}", highlight=False)
    for cond in found.alerts:  # what holds now (leadpipe alerts says more)
        console().print(
            f"[red]Alert[/] ({escape(cond.severity.value)}, since {shown_time(cond.since)}): "
            f"{escape(cond.title)}",
            highlight=False,
        )
    if found.quota is not None:
        console().print(
            f"API requests today: {found.quota.sentence()}", highlight=False, markup=False
        )
    for problem in found.problems:
        console().print(f"[red]Not healthy:[/] {escape(problem)}", highlight=False)
    for v in found.verified:
        if v.alarming:
            console().print(
                f"[red]{escape(v.campaign)}/{escape(v.file)}:[/] {escape(v.message)}",
                highlight=False,
            )
    for code, c in sorted(now.campaigns.items()):
        console().print(
            f"  {code}: {len(c.waiting)} waiting, {len(c.settling)} arriving, "
            f"in progress: {c.in_progress or '-'}",
            highlight=False,
            markup=False,
        )
        if c.progress is not None:
            console().print(
                f"    {c.progress.name}: {c.progress.sentence()}", highlight=False, markup=False
            )
        for item in c.waiting:
            if item.eta:
                rows = f"~{item.rows_estimate} rows, " if item.rows_estimate is not None else ""
                starts = f"starts about {shown_time(item.starts)}, " if item.starts else ""
                console().print(
                    f"    {item.name}: waiting ({rows}{starts}done by about "
                    f"{shown_time(item.eta)})",
                    highlight=False,
                    markup=False,
                )
        for item in c.ignored:
            console().print(
                f"    {item.name}: ignored: not a regular file", highlight=False, markup=False
            )
    if now.recent:
        console().print("Recent files:")
    for r in now.recent[:10]:
        said = f" ({r.message})" if r.message and r.outcome is not FileOutcome.PROCESSED else ""
        console().print(
            f"  {shown_time(r.at)}  {r.campaign}  {r.name}: {r.outcome.sentence}{said}",
            highlight=False,
            markup=False,
        )
    for x in found.exports:
        console().print(
            f"  export {x.name}: {x.state}, next run {x.next_run or '-'}",
            highlight=False,
            markup=False,
        )
    if found.node:  # a node of a cluster (docs/cluster.md, "What to monitor")
        console().print(f"Cluster nodes (this is {found.node}):", highlight=False, markup=False)
        if found.nodes_problem:
            console().print(f"[red]{escape(found.nodes_problem)}[/]", highlight=False)
        for n in found.nodes:
            console().print(f"  {n.sentence()}", highlight=False, markup=False)
