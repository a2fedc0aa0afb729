"""``leadpipe sandbox``: run the HeroBase sandbox in the foreground (demo tenant by default)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import app, console, escape, run


@app.command("sandbox")
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port).")] = 8080,
    seed: Annotated[
        Path | None, typer.Option(help="Seed TOML describing the tenant (default: demo tenant).")
    ] = None,
    db: Annotated[
        Path | None, typer.Option(help="SQLite file to keep leads across restarts.")
    ] = None,
    base_path: Annotated[str, typer.Option(help="Base path of the API.")] = "/api",
    simulate_every: Annotated[
        float | None,
        typer.Option(help="Close a share of open leads every N seconds (simulated calls)."),
    ] = None,
) -> None:
    """Run the HeroBase sandbox until Ctrl-C (or SIGTERM); prints its URL and the demo logins."""
    from pipeline.sandbox import Sandbox, load_seed  # the server (uvicorn, starlette): only here

    tenant = run(lambda: load_seed(seed))
    sb = run(
        lambda: Sandbox(
            tenant, host=host, port=port, base_path=base_path, db=db, simulate_every=simulate_every
        ).start()
    )
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        console().print(f"HeroBase sandbox listening on [bold]{escape(sb.url)}[/]", highlight=False)
        for account in tenant.accounts:
            rights = ", ".join(f"{k}: {'/'.join(v)}" for k, v in account.resource_rights.items())
            # demo logins are public; a custom seed's passwords are not printed
            secret = account.password if seed is None else "(password in the seed file)"
            console().print(
                f"  login [bold]{escape(account.username)}[/] / {escape(secret)}  "
                f"({escape(rights)})",
                highlight=False,
            )
        console().print(
            f"  try {sb.url}/myaccount in a browser; Ctrl-C stops", highlight=False, markup=False
        )
        # short waits: a signal that lands between the check and a long wait is never missed
        while not stopping.wait(0.5):
            pass
        console().print("stopping the sandbox (SIGTERM)")
    except KeyboardInterrupt:
        console().print("stopping the sandbox")
    finally:
        sb.stop()
        signal.signal(signal.SIGTERM, previous)
