"""``leadpipe export NAME`` (run one job now) and ``leadpipe exports`` (list jobs)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.app import app, console, err_console, escape, fail, run, settings

if TYPE_CHECKING:  # imported when a command runs: `leadpipe --help` does not load them
    from pipeline.export.windows import Window
    from pipeline.export.writer import ExportResult


@app.command("export")
def export_now(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="The export job's name (from [[exports]] in the config).")
    ],
    from_: Annotated[
        str | None, typer.Option("--from", help="Re-export from this day (YYYY-MM-DD).")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="...up to this day, exclusive (YYYY-MM-DD).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show which files would be written; write nothing.")
    ] = False,
) -> None:
    """Run one export job now: every window due (catch-up included), or --from/--to.

    In a cluster only --from/--to: the nodes' scheduler catches jobs up (docs/cluster.md,
    "Exports")."""
    from pipeline.api.connect import open_client
    from pipeline.clock import SystemClock
    from pipeline.errors import ConfigError, ConfigProblem
    from pipeline.export.scheduler import ExportScheduler, demo_exports
    from pipeline.export.windows import ScheduleError, Window, parse_day

    s = demo_exports(settings(ctx), SystemClock())
    window: Window | None = None
    if (from_ is None) != (to is None):
        fail(
            ConfigError(
                [
                    ConfigProblem(
                        "--from/--to", "command line", "give both (YYYY-MM-DD, --to exclusive)"
                    )
                ]
            )
        )
    if from_ is not None and to is not None:
        try:
            window = Window(parse_day(from_, "--from"), parse_day(to, "--to"))
        except ScheduleError as exc:
            fail(ConfigError([ConfigProblem("--from/--to", "command line", str(exc))]))

    if window is None and s.cluster.enabled:
        # a catch-up here would start from this node's own watermark, past the cluster's record
        # and its leases (docs/cluster.md, "Exports"): the nodes' schedulers do that
        fail(
            ConfigError(
                [
                    ConfigProblem(
                        "--from/--to",
                        "command line",
                        "in a cluster, `leadpipe export` catches nothing up: the `leadpipe run` "
                        "nodes' scheduler catches every job up, once across the nodes; to "
                        "write one window again name it with --from/--to (YYYY-MM-DD, --to "
                        "exclusive)",
                    )
                ]
            )
        )

    def work() -> list[ExportResult]:
        with ExitStack() as stack:
            client = None if dry_run else stack.enter_context(open_client(s))
            scheduler = ExportScheduler(s, client)
            return scheduler.run_job(name, window=window, dry_run=dry_run)

    results = run(work)
    if not results:
        console().print(f"{name}: nothing to export, already up to date", markup=False)
    code = 0
    for r in results:
        if r.status == "failed":
            err_console().print(f"[bold red]error:[/] {escape(r.describe())}", highlight=False)
            code = code or r.exit_code or 1
        else:
            console().print(r.describe(), highlight=False, markup=False)
    if code:
        raise typer.Exit(code)


@app.command("exports")
def list_exports(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
) -> None:
    """List export jobs: state, watermark, last success and next run."""
    from rich.table import Table

    from pipeline.clock import SystemClock
    from pipeline.export.scheduler import ExportScheduler, demo_exports

    s = demo_exports(settings(ctx), SystemClock())
    rows = run(lambda: ExportScheduler(s, None).status())
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2, ensure_ascii=False))
        return
    if not rows:
        console().print(
            "no export jobs configured (add [[exports]] entries to the config)", markup=False
        )
        return
    table = Table("job", "state", "exported up to (excl.)", "last success", "next run")
    for r in rows:
        cells = (r.name, r.state, r.watermark or "-", r.last_success or "-", r.next_run or "-")
        table.add_row(*(escape(c) for c in cells))  # table cells are markup: names as written
    console().print(table)
    for r in rows:
        console().print(f"{r.name}: {r.message}", highlight=False, markup=False)
