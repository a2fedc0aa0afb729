"""One ``leadpipe run`` per state folder, and what ``leadpipe status`` reads.

The service holds an exclusive OS lock on ``<state>/leadpipe.lock`` while it runs and rewrites
``<state>/status.json`` as facts change; ``leadpipe status`` reads both, so it works whether
or not the service is running and needs no network access. The state folder and its files are
private to the service user (0700 and 0600, whatever the umask): taking the lock makes them so.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from pipeline.config import Settings
from pipeline.dropfolder.status import IntakeStatus
from pipeline.errors import StateError
from pipeline.files import make_private, open_private, private_dir
from pipeline.service.snapshot import ServiceStatus

LOCK_FILE = "leadpipe.lock"
STATUS_FILE = "status.json"


class InstanceLock:
    """An exclusive OS lock on ``<state>/leadpipe.lock``: one ``leadpipe run`` per state folder.

    The OS drops the lock when the process dies (even by ``kill -9``), so a stale lock file never
    blocks a restart. Taking it makes the state folder private (0700) and takes the group and
    other permissions off what earlier runs left in it (the status file, the ledger), so an
    older state folder or a permissive umask never leaves them readable by other users.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> InstanceLock:
        import fcntl

        private_dir(self.path.parent)
        fd = open_private(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateError(
                f"another `leadpipe run` (pid {holder}) is already running on the state folder "
                f"{self.path.parent}. Stop it first (e.g. `systemctl stop leadpipe`), or give this "
                "one its own state folder in the config (in a cluster: its own node name, "
                'LEADPIPE_NODE; docs/cluster.md, "Nodes").'
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        make_private(self.path.parent)  # ours now: repair what an earlier run left open
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def service_running(state_dir: Path) -> int | None:
    """The pid of the ``leadpipe run`` holding the state folder's lock, or None."""
    import fcntl

    path = Path(state_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)
    return None


def read_status(settings: Settings) -> ServiceStatus:
    """What ``leadpipe status`` shows: the last status the service wrote, and whether it runs."""
    state = settings.paths.state
    pid = service_running(state)
    try:
        data = json.loads((state / STATUS_FILE).read_text(encoding="utf-8"))
        found = ServiceStatus.from_json(data if isinstance(data, dict) else {})
    except (OSError, ValueError):
        found = ServiceStatus(intake=IntakeStatus(inbox=str(settings.paths.inbox)))
    if not found.intake.inbox:
        found = replace(found, intake=replace(found.intake, inbox=str(settings.paths.inbox)))
    if settings.cluster.enabled:
        found = _with_nodes(settings, found)
    return replace(found, running=pid is not None, pid=pid)


def _with_nodes(settings: Settings, found: ServiceStatus) -> ServiceStatus:
    """The cluster's nodes as the database has them now (docs/cluster.md, "What to monitor");
    when it does not answer, those of the status file, with the reason."""
    try:
        from pipeline.cluster.status import current_nodes

        nodes = tuple(current_nodes(settings))
    except (StateError, ImportError) as exc:
        why = f"the nodes as last written by this node; the cluster's database: {exc}"
        return replace(found, node=settings.cluster.node, nodes_problem=why)
    return replace(found, node=settings.cluster.node, nodes=nodes, nodes_problem="")
