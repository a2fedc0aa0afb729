"""Fixtures for the trace tests."""

from __future__ import annotations

from tests.ingest.conftest import sb

__all__ = ["sb"]
