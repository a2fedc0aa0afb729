"""Each command imports what it uses: ``leadpipe --help`` loads no data, HTTP or server stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Heavy packages only some commands need (the top-level package name as in ``sys.modules``).
HEAVY = ("pandas", "polars", "pandera", "pyarrow", "numpy", "requests", "uvicorn", "starlette")
HEAVY += ("croniter", "prometheus_client", "regex")
#: Not needed for the top-level help either (rich prints results; the version is read on
#: ``--version``). A command's help may load ``importlib.metadata``: typer's parameter
#: coercion (pydantic) does.
NOT_FOR_HELP = (*HEAVY, "rich", "importlib.metadata")

_PROBE = """
import contextlib, io, sys
sys.argv = ["leadpipe", *sys.argv[1:]]
from pipeline.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main()
    except SystemExit:
        pass
print(out.getvalue().count("Usage:"))
print(" ".join(sorted(sys.modules)))
"""


def _loaded(*args: str) -> tuple[str, set[str]]:
    """What ``leadpipe ARGS`` printed (the count of usage lines) and every module it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, check=True
    )
    usage, modules = done.stdout.splitlines()[-2:]
    return usage, set(modules.split())


def _heavy(modules: set[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    return [h for h in heavy if any(m == h or m.startswith(h + ".") for m in modules)]


def test_help_imports_no_heavy_package() -> None:
    usage, modules = _loaded("--help")
    assert usage == "1"  # the help was printed
    assert _heavy(modules, NOT_FOR_HELP) == []


def test_a_command_help_imports_no_heavy_package() -> None:
    for command in ("ingest", "doctor", "sandbox", "export", "run"):
        usage, modules = _loaded(command, "--help")
        assert usage == "1", command
        assert _heavy(modules) == [], command


def _printed(probe: str) -> list[str]:
    """What a fresh interpreter running ``probe`` printed, word by word."""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_reading_a_file_does_not_load_hypothesis() -> None:
    """pandera loads hypothesis (installed for leadpipe's own tests) for data synthesis, which
    leadpipe never uses; an ingest keeps it out, and it imports as usual afterwards."""
    probe = (
        "import sys\n"
        "import pipeline.ingest.fields, pipeline.ingest.validate.checks\n"
        "import pandera.strategies.base_strategies as s\n"
        "print('hypothesis' in sys.modules, s.HAS_HYPOTHESIS)\n"
        "import hypothesis\n"
        "print(hypothesis.__name__)\n"
    )
    assert _printed(probe) == ["False", "False", "hypothesis"]


def test_the_api_client_loads_requests_without_chardet(tmp_path: Path) -> None:
    """requests loads chardet whenever it is installed (a benchmark tool brings it); the API
    package keeps it out, so requests guesses with charset_normalizer as in a plain install,
    and chardet imports as usual afterwards. A stand-in chardet on the path makes it
    installed here whatever the environment has."""
    fake = tmp_path / "chardet"
    fake.mkdir()
    (fake / "__init__.py").write_text('__version__ = "5.2.0"\nSTAND_IN = True\n')
    probe = (
        "import sys\n"
        "import pipeline.api\n"
        "import requests.compat\n"
        "print('chardet' in sys.modules, requests.compat.chardet.__name__)\n"
        "import chardet\n"
        "print(chardet.STAND_IN)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert done.stdout.split() == ["False", "charset_normalizer", "True"]


def test_a_command_loads_its_modules_without_the_collector_and_then_freezes_them() -> None:
    """While a command's heavy modules load, the cyclic collector is paused; what they made
    is frozen (left out of later collections) and collection is back on afterwards."""
    probe = (
        "import gc\n"
        "from pipeline.cli.app import loading\n"
        "seen = []\n"
        "gc.callbacks.append(lambda phase, info: seen.append(phase))\n"
        "with loading():\n"
        "    import pandas, pandera.pandas, polars\n"
        "print(len(seen), gc.isenabled(), gc.get_freeze_count() > 100_000)\n"
    )
    assert _printed(probe) == ["0", "True", "True"]


def test_a_dry_run_of_a_small_file_does_not_load_polars_or_xlsxwriter(tmp_path: Path) -> None:
    """A few rows are checked with the Python matcher: polars' load would cost more. The
    reject workbook is written by a process of its own: this one never loads xlsxwriter."""
    small = tmp_path / "small.csv"
    small.write_text("name;phone;email\nAnne;+45 12345678;anne@example.dk\nBo;12ab;\n")
    out = tmp_path / "out"
    args = ("--demo", "ingest", str(small), "--campaign", "B2B-DK-SPRING", "--dry-run")
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args, "--json", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    modules = set(done.stdout.splitlines()[-1].split())
    assert "pandera" in modules  # the file was checked
    assert sorted(out.rglob("*.rejects.csv")), done.stderr  # and its bad row rejected
    assert _heavy(modules, ("polars", "xlsxwriter")) == []


def _threads_after_numpy(environment: dict[str, str]) -> int:
    """Threads of a fresh leadpipe process once numpy has loaded (Linux: /proc/self/task)."""
    probe = (
        "import os\n"
        "from pipeline.cli import process_defaults\n"
        "process_defaults()\n"
        "import numpy\n"
        "print(len(os.listdir('/proc/self/task')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=environment
    )
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_a_command_starts_no_blas_worker_threads() -> None:
    """numpy's OpenBLAS would start a spinning worker per core that leadpipe never uses; the
    command line asks for one BLAS thread (none started) unless the environment says more."""
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    assert _threads_after_numpy(environment) == 1
    if (os.cpu_count() or 1) > 1:  # an operator's own setting is kept, in any of its names
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            assert _threads_after_numpy({**environment, name: "2"}) == 2, name


def test_modules_loaded_first_come_from_a_thread_of_their_own_and_so_do_their_errors(
    tmp_path: Path,
) -> None:
    """``loading(*first)`` imports those modules on a fresh thread's stack, in order, while the
    command waits; a module that fails to load fails the command as it would have here."""
    (tmp_path / "lp_probe_a.py").write_text(
        "import threading\nTHREAD = threading.current_thread().name\n", encoding="utf-8"
    )
    (tmp_path / "lp_probe_b.py").write_text(
        "import lp_probe_a\nAFTER = True\nraise ImportError('lp_probe_b cannot load')\n",
        encoding="utf-8",
    )
    probe = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "import threading\n"
        "from pipeline.cli.app import loading\n"
        "with loading('lp_probe_a'):\n"
        "    import lp_probe_a\n"
        "print(lp_probe_a.THREAD != threading.current_thread().name)\n"
        "try:\n"
        "    with loading('lp_probe_a', 'lp_probe_b'):\n"
        "        print('not reached')\n"
        "except ImportError as exc:\n"
        "    print(str(exc).replace(' ', '_'))\n"
    )
    assert _printed(probe) == ["True", "lp_probe_b_cannot_load"]
