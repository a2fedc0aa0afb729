"""``trace``, ``purge`` and ``forget`` load their library only when they run."""

from __future__ import annotations

from tests.test_cli_imports import _heavy, _loaded


def test_help_of_the_new_commands_imports_no_heavy_package() -> None:
    for command in ("trace", "purge", "forget"):
        usage, modules = _loaded(command, "--help")
        assert usage == "1", command
        assert _heavy(modules) == [], command
        assert not any(m.startswith(("pipeline.trace", "pipeline.retention")) for m in modules)
