"""Fixtures for the retention tests."""

from __future__ import annotations

from tests.ingest.conftest import sb

__all__ = ["sb"]
