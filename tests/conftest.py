"""Shared pytest fixtures. Add yours with small, separate edits."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from pipeline.sandbox import Sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A running HeroBase sandbox with the demo tenant on a free port; stopped afterwards.

    Fails the test if the server thread outlives ``stop()``.
    """
    sb = Sandbox(port=0).start()
    try:
        yield sb
    finally:
        sb.stop()
        leaked = [t for t in threading.enumerate() if t.name == "leadpipe-sandbox" and t.is_alive()]
        assert not leaked, f"sandbox server thread still running after stop(): {leaked}"
