"""The CLI shell: version, help, config errors as one clear message with an exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import __version__
from pipeline.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"leadpipe {__version__}"


def test_config_error_is_one_clear_message(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[intake]\nconcurrency = 0\n", encoding="utf-8")
    result = runner.invoke(app, ["--config", str(cfg), "config"])
    assert result.exit_code == 3
    assert "intake.concurrency" in result.output
    assert "Traceback" not in result.output


def test_config_json_hides_password(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text("", encoding="utf-8")
    result = runner.invoke(
        app,
        ["--config", str(cfg), "config", "--json"],
        env={"LEADPIPE_API_PASSWORD": "canary-77", "LEADPIPE_API_URL": "", "LEADPIPE_API_USER": ""},
    )
    assert result.exit_code == 0, result.output
    assert "canary-77" not in result.output


def test_embedded_default_lists_its_demo_export(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text('[paths]\nstate = "state"\noutbox = "outbox"\n', encoding="utf-8")
    env = {"LEADPIPE_API_URL": "", "LEADPIPE_API_USER": "", "LEADPIPE_API_PASSWORD": ""}
    result = runner.invoke(app, ["--config", str(cfg), "exports", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert "demo_daily_outcomes" in result.output
    # a real API (credentials set) never gets the demo job
    env = {
        "LEADPIPE_API_URL": "https://tenant.example/api",
        "LEADPIPE_API_USER": "u@x",
        "LEADPIPE_API_PASSWORD": "pw-canary",
    }
    result = runner.invoke(app, ["--config", str(cfg), "exports", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert "demo_daily_outcomes" not in result.output


def test_the_service_and_the_cli_load_no_dataframe_library_before_a_file_is_read() -> None:
    """`leadpipe run --once` with nothing to do, or a refused file, costs no pandas/polars."""
    import subprocess
    import sys

    code = (
        "import sys, pipeline.cli, pipeline.service.run, pipeline.dropfolder.intake;"
        "import pipeline.dropfolder.processing;"
        "print(sorted(m for m in ('pandas', 'pandera', 'polars', 'numpy', 'pyarrow')"
        " if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_error_text_is_never_read_as_markup_and_not_wrapped_when_piped(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    name = "[daily]" + "x" * 150  # markup-like, and longer than any terminal line
    cfg.write_text(
        f'[[exports]]\nname = "{name}"\nsearch = "s"\n[[exports]]\nname = "{name}"\nsearch = "s"\n',
        encoding="utf-8",
    )
    result = runner.invoke(app, ["--config", str(cfg), "config"])
    assert result.exit_code == 3
    line = next(x for x in result.output.splitlines() if "duplicate export name" in x)
    assert f"'{name}'" in line  # whole, on one line: not eaten as markup, not wrapped at 80


def test_config_refuses_a_schedule_an_export_run_would_refuse(tmp_path: Path) -> None:
    cfg = tmp_path / "cron.toml"
    cfg.write_text(
        '[[exports]]\nname = "nightly"\nsearch = "s"\nschedule = "0 2 * * 8"\n', encoding="utf-8"
    )
    result = runner.invoke(app, ["--config", str(cfg), "config"])
    assert result.exit_code == 3, result.output
    assert "exports.nightly.schedule" in result.output
    assert "is not a cron expression" in result.output


def _console(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The ``leadpipe`` console script's entry point, as a child process."""
    code = "import sys; from pipeline.cli import console; sys.argv[0] = 'leadpipe'; console()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_the_console_script_ends_with_the_commands_code_and_all_of_its_output(
    tmp_path: Path,
) -> None:
    """It leaves without tearing the interpreter down: nothing of the output may be lost."""
    bad = _console("--config", str(tmp_path / "missing.toml"), "status", cwd=tmp_path)
    assert bad.returncode == 3
    assert "file not found" in bad.stderr
    (tmp_path / "leadpipe.toml").write_text("", encoding="utf-8")
    rows = "".join(f"Navn {i},+45 1234 56{i:02d},n{i}@example.com\n" for i in range(300))
    (tmp_path / "leads.csv").write_text("name,phone,email\n" + rows, encoding="utf-8")
    done = _console(
        "--config",
        str(tmp_path / "leadpipe.toml"),
        "ingest",
        str(tmp_path / "leads.csv"),
        "--campaign",
        "B2B-DK-SPRING",
        "--dry-run",
        "--json",
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout[done.stdout.index("{") :])  # the whole JSON arrived
    assert receipt["rows_read"] == 300


def _leadpipe(entry: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``leadpipe ARGS`` in a fresh process, through ``entry`` of :mod:`pipeline.cli`."""
    code = f"import sys; from pipeline.cli import {entry}; sys.argv[0] = 'leadpipe'; {entry}()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )


def test_a_named_command_is_run_and_helped_as_with_every_command_built() -> None:
    """The console script builds only the command it is given; what a person sees is the same
    as from the whole command line (``app`` builds every command): the command's help, its
    errors, the top-level help and a mistyped command."""
    for args in (
        ["ingest", "--help"],
        ["--demo", "ledger", "--help"],
        ["ingest"],  # a missing argument
        ["--config=x.toml", "fields", "--help"],
        ["--help"],
        ["ingst", "f.csv"],  # no such command: typer's own message
        [],
    ):
        one, whole = _leadpipe("console", *args), _leadpipe("app", *args)
        assert (one.returncode, one.stdout, one.stderr) == (
            whole.returncode,
            whole.stdout,
            whole.stderr,
        ), args
    listed = _leadpipe("console", "--help").stdout
    assert all(name in listed for name in ("ingest", "export", "ledger", "alerts", "doctor"))


def test_every_command_is_still_registered_after_one_ran() -> None:
    from pipeline.cli import main

    before = list(app.registered_commands), list(app.registered_groups)
    argv = sys.argv
    sys.argv = ["leadpipe", "ingest", "--help"]
    try:
        with pytest.raises(SystemExit) as done:
            main()
    finally:
        sys.argv = argv
    assert done.value.code == 0
    assert (app.registered_commands, app.registered_groups) == before
