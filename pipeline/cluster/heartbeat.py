"""The heartbeat thread (docs/cluster.md, "Nodes"): every ``heartbeat_seconds`` one beat.

A beat (:meth:`pipeline.cluster.node.ClusterNode.beat`) renews the registry row and every
lease held, and refreshes the list of nodes the status shows. The thread never dies of an
exception: it logs it (once per kind of failure in a row) and beats again at the next time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("leadpipe.cluster")


class Heartbeat:
    """Calls ``beat`` every ``every`` seconds in a daemon thread until :meth:`stop`."""

    def __init__(self, beat: Callable[[], None], every: float, name: str = "leadpipe-heartbeat"):
        self.beat = beat
        self.every = every
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = ""

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.beat()
                if self._failing:
                    log.warning("heartbeat: the cluster database answers again")
                self._failing = ""
            except BaseException as exc:  # never dies: logged, tried again at the next beat
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    log.warning("heartbeat: %s ignored; beating on", type(exc).__name__)
                why = f"{type(exc).__name__}: {exc}"
                if why != self._failing:
                    log.error("heartbeat failed (%s); trying again in %g s", why, self.every)
                self._failing = why
