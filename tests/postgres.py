"""A throwaway PostgreSQL cluster for the ledger tests, and the ``ledger_backend`` fixture.

The cluster is made ONCE per test session: ``initdb`` into a temporary folder (trust for local
connections: it listens on 127.0.0.1 and a socket in that folder only), ``pg_ctl start`` on a
free port, one fresh database per test (dropped after), ``pg_ctl stop -m fast`` at the end.
Run as root, ``initdb`` and ``pg_ctl`` run as an unprivileged user through ``runuser`` (the
``postgres`` user when it exists, else ``leadpipe-pg``, created without a home or login).

Without the server binaries (or psycopg) the PostgreSQL cases are skipped, naming what is
missing. The binaries are looked up on PATH, then in Debian's ``/usr/lib/postgresql/<v>/bin``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.config import Paths, Settings, StateSettings
from pipeline.ledger import Ledger
from pipeline.ledger.connect import open_ledger_for

#: The superuser initdb creates; tests connect as this user.
PG_USER = "leadpipe"
#: The unprivileged OS user made when running as root and no ``postgres`` user exists.
RUN_AS_FALLBACK = "leadpipe-pg"


def find_server_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` (PATH first, then Debian's)."""
    candidates: list[Path] = []
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(os.path.realpath(found)).parent)
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) for x in Path(p).parent.name.split(".") if x.isdigit()],
        reverse=True,
    )
    candidates += [Path(p) for p in debian]
    for folder in candidates:
        if all((folder / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _run_as() -> str | None:
    """The OS user to run the server as when we are root (made if needed); None otherwise."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", RUN_AS_FALLBACK):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
         RUN_AS_FALLBACK],
        check=True, capture_output=True,
    )  # fmt: skip
    return RUN_AS_FALLBACK


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A running throwaway cluster: ``url(db)`` connects to database ``db`` as PG_USER."""

    bindir: Path
    folder: Path
    port: int
    run_as: str | None

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{db}"

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self.run_as, "--"] if self.run_as else []) + list(args)

    def start(self) -> None:
        data, sockets = self.folder / "data", self.folder / "sockets"
        sockets.mkdir()
        if self.run_as:
            shutil.chown(self.folder, self.run_as)
            shutil.chown(sockets, self.run_as)
        subprocess.run(
            self._cmd(str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_USER,
                      "-E", "UTF8", "--locale=C", "--no-instructions"),
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        opts = f"-p {self.port} -h 127.0.0.1 -k {sockets} -c max_connections=200"
        done = subprocess.run(
            self._cmd(str(self.bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data),
                      "-l", str(self.folder / "server.log"), "-o", opts),
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            log = (self.folder / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {done.stderr}\n{log}")

    def stop(self) -> None:
        subprocess.run(
            self._cmd(str(self.bindir / "pg_ctl"), "stop", "-m", "fast", "-w", "-D",
                      str(self.folder / "data")),
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')  # type: ignore[arg-type]
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]

    @contextlib.contextmanager
    def fresh_database(self) -> Iterator[str]:
        """The URL of a new, empty database, dropped afterwards."""
        name = self.create_database()
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)


def start_cluster() -> Cluster | str:
    """A running cluster, or the reason there can be none here (for a skip)."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary,pool]')"
    bindir = find_server_bin()
    if bindir is None:
        return (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in "
            "/usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root and runuser is missing: initdb refuses to run as root"
    folder = Path(tempfile.mkdtemp(prefix="leadpipe-pg-"))
    cluster = Cluster(bindir, folder, _free_port(), _run_as())
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """The session's PostgreSQL cluster (skips the test when none can run here)."""
    cluster = start_cluster()
    if isinstance(cluster, str):
        pytest.skip(cluster)
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass
class LedgerBackend:
    """One ledger backend for a test: ``open(state_dir)`` as leadpipe opens its ledger."""

    name: str
    url: str = ""  #: the test's own database ("" for SQLite)

    def state(self) -> StateSettings:
        return StateSettings(ledger=self.url)

    def settings(self, state_dir: Path) -> Settings:
        return Settings(paths=Paths(state=state_dir), state=self.state())

    def open(self, state_dir: Path, *, create: bool = True) -> Ledger:
        return open_ledger_for(self.settings(state_dir), create=create)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_backend(request: pytest.FixtureRequest) -> Iterator[LedgerBackend]:
    """Each ledger backend in turn; PostgreSQL with a fresh database per test."""
    if request.param == "sqlite":
        yield LedgerBackend("sqlite")
        return
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    with cluster.fresh_database() as url:
        yield LedgerBackend("postgresql", url)
