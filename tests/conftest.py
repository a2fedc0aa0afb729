"""Shared pytest fixtures. Add yours with small, separate edits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.sandbox import Sandbox
from tests.postgres import ledger_backend, postgres_cluster  # noqa: F401  (fixtures)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A running HeroBase sandbox with the demo tenant on a free port; stopped afterwards.

    Fails the test if the server thread outlives ``stop()``.
    """
    sb = Sandbox(port=0).start()
    try:
        yield sb
    finally:
        sb.stop()  # joins the server thread; raises if it would not end
        assert not sb.running
