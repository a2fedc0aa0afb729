"""``leadpipe config``: show the effective configuration (never the password).

Neither the password setting nor one written into the API URL (``https://user:pw@host/api``) is
shown: the URL's user info is left out wherever it is printed.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer

from pipeline.cli.app import app, console, escape, run, settings


@app.command("config")
def show_config(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
) -> None:
    """Check the configuration and show the effective settings."""
    # inside: the API transport (requests) and the scheduler (croniter) only for this command
    from pipeline.api.transport import safe_url
    from pipeline.export.scheduler import check_jobs
    from pipeline.ledger import LEDGER_FILE

    s = settings(ctx)
    run(lambda: check_jobs(s))  # what an export run would refuse, said now (exit 3)
    if s.alerts.enabled:  # an alert target URL Apprise cannot use, said now (exit 3)
        from pipeline.alerts.monitor import checked_sender

        run(lambda: checked_sender(s))
    data: dict[str, Any] = asdict(s)
    data["api"]["password"] = "***" if s.api.password else ""
    data["api"]["url"] = safe_url(s.api.url)
    data["state"]["password"] = "***" if s.state.password else ""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    if s.source == "defaults":  # only with --demo / LEADPIPE_DEMO=1 (pipeline/cli/app.py)
        console().print("no config file: the built-in demo's defaults (--demo): OK")
    else:
        console().print(f"configuration read from [bold]{escape(s.source)}[/]: OK")
    mode = "embedded sandbox (no API URL set)" if s.api.embedded else safe_url(s.api.url)
    console().print(f"API: {escape(mode)}", highlight=False)
    for name in ("inbox", "outbox", "state", "schemas"):
        console().print(escape(f"{name:8} {getattr(s.paths, name)}"), highlight=False)
    ledger = s.state.ledger or f"{s.paths.state / LEDGER_FILE} (SQLite)"
    console().print(escape(f"ledger   {ledger}"), highlight=False)
