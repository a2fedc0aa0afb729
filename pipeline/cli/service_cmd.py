"""``leadpipe run`` (the drop-folder service) and ``leadpipe status``."""

from __future__ import annotations

import json
import logging
import signal
import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli.app import app, console, run, settings

if TYPE_CHECKING:  # the service pulls in pandas, pandera and polars: only when it runs
    from pipeline.service.run import ServiceInfo


def _say_ready(info: ServiceInfo) -> None:
    if info.embedded:
        console.print(
            "No API URL configured: running against the built-in demo sandbox "
            f"({info.api_url}). Nothing reaches a real dialer."
        )
    console.print(f"Drop CSV or XLSX files into a campaign folder under [bold]{info.inbox}[/]:")
    for folder in info.campaign_folders:
        console.print(f"  {folder}/", highlight=False)
    console.print(
        "Results appear beside each file: processed/ (original + receipt), rejected/ (rows to "
        "fix), failed/ (files that could not be read). Drop into <campaign>/preview/ to check a "
        "file without uploading.",
        highlight=False,
    )
    if info.exports:
        console.print(
            f"Exports ({', '.join(info.exports)}) are written to {info.outbox}/.", highlight=False
        )
    if info.status_url:
        console.print(f"Status page: {info.status_url}", highlight=False)
    if info.polling:
        console.print("Polling mode: the inbox is swept on a timer (no file-system events).")
    console.print("Stop with Ctrl+C.", highlight=False)


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
    if once or stop.is_set():
        console.print(f"{result.processed} file(s) processed, {result.failed} failed.")
    if result.waiting:
        console.print(
            f"[bold red]{result.waiting} file(s) wait in the inbox: waiting for the API[/] "
            f"({result.waiting_reason}). Run again when it answers.",
            highlight=False,
        )
        raise typer.Exit(5)


@app.command("status")
def status_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
) -> None:
    """Show what the drop-folder service is doing (or last did)."""
    from pipeline.service.run import read_status

    data = read_status(settings(ctx))
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    if data["running"]:
        console.print(f"leadpipe run is running (pid {data['pid']}).", highlight=False)
    else:
        console.print("leadpipe run is not running.", highlight=False)
    if "at" in data:
        console.print(f"Last status: {data['at']}", highlight=False)
    console.print(f"Inbox: {data.get('inbox')}", highlight=False)
    if data.get("inbox_ok") is False:
        console.print(f"[red]{data.get('inbox_problem')}[/]", highlight=False)
    if data.get("stray"):
        console.print(
            f"[red]Not taken[/] (at the top of the inbox, in no campaign folder): "
            f"{', '.join(data['stray'])}",
            highlight=False,
        )
    if data.get("waiting_for_api"):
        console.print(f"[red]Waiting for the API:[/] {data.get('api_problem')}", highlight=False)
    for problem in (data.get("health") or {}).get("problems") or []:
        console.print(f"[red]Not healthy:[/] {problem}", highlight=False)
    for v in data.get("verified") or []:
        if v.get("duplicates") or "could not run" in str(v.get("message", "")):
            console.print(
                f"[red]{v.get('campaign')}/{v.get('file')}:[/] {v.get('message')}", highlight=False
            )
    for code, c in sorted((data.get("campaigns") or {}).items()):
        busy = c.get("in_progress") or "-"
        console.print(
            f"  {code}: {len(c.get('waiting', []))} waiting, "
            f"{len(c.get('settling', []))} arriving, in progress: {busy}",
            highlight=False,
        )
        for item in c.get("ignored", []):
            console.print(f"    {item['name']}: ignored: not a regular file", highlight=False)
    recent = data.get("recent") or []
    if recent:
        console.print("Recent files:")
    for r in recent[:10]:
        console.print(
            f"  {r['at']}  {r['campaign']}  {r['name']}: {r['outcome']}"
            + (f" ({r['message']})" if r.get("message") and r["outcome"] != "processed" else ""),
            highlight=False,
        )
    for x in data.get("exports") or []:
        console.print(
            f"  export {x.get('name')}: {x.get('state')}, next run {x.get('next_run') or '-'}",
            highlight=False,
        )
