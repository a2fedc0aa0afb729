"""The ledger for a given configuration: the SQLite file in the state folder, or PostgreSQL.

``[state] ledger`` decides (docs/architecture.md, "The ledger on PostgreSQL"); commands, the
service and ingest all open their ledger here, so "which ledger" is decided in one place.
psycopg is imported only for a ``postgresql://`` ledger: ``leadpipe --help`` and SQLite users
never load it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from pipeline.config import Settings
from pipeline.errors import StateError
from pipeline.files import open_private, private_dir
from pipeline.ledger import LEDGER_FILE, MARKER_FILE, Ledger

#: Written into the state folder once a PostgreSQL ledger was used from it: from then on an
#: empty database is refused there, as a missing ``ledger.sqlite`` is.
POSTGRES_MARKER = "ledger.postgresql"


def psycopg_missing() -> StateError:
    """What to say when the ledger is PostgreSQL and psycopg is not installed."""
    return StateError(
        "[state] ledger is a PostgreSQL database, but psycopg is not installed: "
        "pip install 'leadpipe[postgresql]' (psycopg[binary,pool])."
    )


def open_ledger_for(settings: Settings, *, create: bool = True) -> Ledger:
    """Open the configured ledger (created on first use when ``create``).

    Fails safe with :class:`StateError` wherever the backend cannot vouch for what was sent:
    a ledger expected but missing, unreachable, corrupt or of another version.
    """
    state_dir = settings.paths.state
    if not settings.state.postgresql:
        from pipeline.ledger.migrate import migrated_ledgers
        from pipeline.ledger.sqlite import open_ledger

        moved = migrated_ledgers(state_dir)
        if moved and not (state_dir / LEDGER_FILE).exists():
            raise StateError(
                f"the ledger of the state folder {state_dir} was moved to PostgreSQL "
                f"(`leadpipe ledger migrate`; {POSTGRES_MARKER} names the database, "
                f"{moved[-1].name} is the old file), but [state] ledger is empty: the leads it "
                "records as sent would be sent again. Set [state] ledger to that database."
            )
        return open_ledger(state_dir, create=create)
    try:
        import psycopg  # noqa: F401  (only to say what is missing)
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise psycopg_missing() from exc
    from pipeline.ledger.postgres import open_postgres_ledger

    # a node of a cluster keeps its state in its own folder under the shared one, which is
    # where an install's ledger files were before (docs/cluster.md, "Nodes")
    shared = settings.cluster.shared_state
    folders = [state_dir] + ([shared] if shared is not None and shared != state_dir else [])
    markers = [f / POSTGRES_MARKER for f in folders if (f / POSTGRES_MARKER).exists()]
    sqlite = [n for f in folders for n in (LEDGER_FILE, MARKER_FILE) if (f / n).exists()]
    if sqlite and not markers:
        raise StateError(
            f"the state folder {state_dir} holds a SQLite ledger ({', '.join(sqlite)}), but "
            "[state] ledger names a PostgreSQL database: the leads that ledger records as sent "
            "would be sent again. Move its records into that database first with `leadpipe "
            'ledger migrate --to URL` (README, "Moving to PostgreSQL"), or leave [state] '
            "ledger empty."
        )
    refused = ""
    if markers:
        refused = f"{markers[0]} says this state folder used one there"
    ledger = open_postgres_ledger(
        settings.state.ledger, settings.state.password, create=create, fresh_refused=refused
    )
    try:
        _mark(state_dir, ledger.location)
    except OSError as exc:
        ledger.close()
        raise StateError(f"the state folder {state_dir} is not writable: {exc}") from exc
    return ledger


def _mark(state_dir: os.PathLike[str], location: str) -> None:
    """Write :data:`POSTGRES_MARKER` (once): this state folder now depends on that ledger."""
    from pathlib import Path

    marker = Path(state_dir) / POSTGRES_MARKER
    if marker.exists():
        return
    private_dir(Path(state_dir))
    fd = open_private(marker, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(
            f"{datetime.now(UTC).isoformat(timespec='seconds')}\nleadpipe's ledger lives in the "
            f"PostgreSQL database {location}. Do not delete it: it records which leads were "
            "already sent.\n"
        )
