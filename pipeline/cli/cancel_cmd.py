"""``leadpipe cancel FILE``: ask the running service to cancel one file (docs/dropfolder.md).

The request is a file under the inbox's hidden area that the service polls at each sweep
(:func:`pipeline.dropfolder.cancel.write_request`); it works for a file in progress, waiting,
or still arriving. Rows already sent stay sent; the rest go to a not-sent file.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.app import app, console, err_console, escape, settings

if TYPE_CHECKING:  # imported when the command runs: `leadpipe --help` does not load them
    from pipeline.dropfolder.layout import DropFolder

#: Exit code when no waiting or running file has that name (README, "Commands at a glance").
EXIT_NO_SUCH_FILE = 4


def candidates(layout: DropFolder, name: str, folder: str | None) -> list[str]:
    """The campaign folders in which a file ``name`` waits, arrives or is being processed."""
    from pipeline.dropfolder.layout import RESULT_FOLDERS, is_ignored

    found: set[str] = set()
    try:
        folders = [
            d.name
            for d in layout.inbox.iterdir()
            if d.is_dir() and not is_ignored(d.name) and d.name.lower() not in RESULT_FOLDERS
        ]
    except OSError:
        folders = []
    for f in folders:
        if folder is not None and f != folder:
            continue
        if (layout.inbox / f / name).is_file():
            found.add(f)
        claims = layout.work / f
        if claims.is_dir() and any((c / name).is_file() for c in claims.iterdir() if c.is_dir()):
            found.add(f)
    return sorted(found)


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="The file's name as dropped, or its path.")],
    campaign: Annotated[
        str | None,
        typer.Option("--campaign", help="The campaign folder, when the name is in several."),
    ] = None,
) -> None:
    """Cancel a file: rows already sent stay sent, the rest go to a not-sent file."""
    from pipeline.dropfolder.cancel import write_request
    from pipeline.dropfolder.layout import DropFolder

    s = settings(ctx)
    layout = DropFolder(s.paths.inbox)
    path = Path(file)
    name = path.name
    folder = campaign
    if folder is None and path.parent != Path("."):
        parent = path.parent
        folder = parent.parent.name if parent.name.lower() == "preview" else parent.name
    where = candidates(layout, name, folder)
    if not where and folder is not None and campaign is None:
        where = candidates(layout, name, None)  # the path's folder was not the inbox's
    if not where:
        err_console().print(
            f"[bold red]error:[/] no file named '{escape(name)}' is waiting, arriving or being "
            f"processed in {escape(str(layout.inbox))}"
            + (f" (campaign folder {escape(folder)})" if folder else "")
            + ". Nothing was cancelled.",
            highlight=False,
        )
        raise typer.Exit(EXIT_NO_SUCH_FILE)
    if len(where) > 1:
        err_console().print(
            f"[bold red]error:[/] '{escape(name)}' is in several campaign folders "
            f"({escape(', '.join(where))}); say which with --campaign FOLDER.",
            highlight=False,
        )
        raise typer.Exit(EXIT_NO_SUCH_FILE)
    request = write_request(layout, where[0], name, datetime.now().astimezone())
    console().print(
        f"Asked the service to cancel {where[0]}/{name} (request {request}). Rows already "
        "sent stay sent; the rest go to a not-sent file in rejected/, and the receipt says so "
        "(see `leadpipe status`).",
        highlight=False,
        markup=False,
    )
