"""The ``leadpipe`` command: a thin shell over the library (one module per command group)."""

from __future__ import annotations

from pipeline.cli import (
    alerts_cmd,  # noqa: F401
    api_cmd,  # noqa: F401  (registers commands)
    cancel_cmd,  # noqa: F401
    config_cmd,  # noqa: F401  (registers commands)
    export_cmd,  # noqa: F401
    ingest_cmd,  # noqa: F401
    ledger_cmd,  # noqa: F401
    retention_cmd,  # noqa: F401
    sandbox_cmd,  # noqa: F401
    service_cmd,  # noqa: F401
    trace_cmd,  # noqa: F401
)
from pipeline.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
