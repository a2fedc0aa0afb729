"""The API's state as the service's last call saw it: answering, or not (and why, in words).

The breaker (:mod:`pipeline.dropfolder.breaker`) opens only when a file reports that the API
is down, after the client's retries; the status page must turn red at the first failed call.
:class:`ApiWatch` sits in the HTTP session of the service's client (:meth:`ApiWatch.attach`)
and sees every call, the probe, a campaign listing and each upload alike: a call that got no
answer, or a 5xx/429 answer, marks the API "not answering" at once; any other answer marks it
answering again. It never sees or keeps a request's body or credentials, only whether and how
the API answered (docs/architecture.md, invariant 9).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from requests.adapters import BaseAdapter

from pipeline.clock import Clock, SystemClock
from pipeline.errors import plain_reason


@dataclass(frozen=True)
class ApiSeen:
    """What the last call saw: ``problem`` in words (empty: answering), since when, and the
    answer's HTTP status (None: no answer)."""

    problem: str = ""
    since: datetime | None = None
    status: int | None = None

    @property
    def credentials_refused(self) -> bool:
        """The last answer refused the user name or password (a setting to fix)."""
        return self.status == 401


class ApiWatch:
    """Thread-safe: every worker's calls report here."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._seen = ApiSeen()

    def failed(self, exc: BaseException) -> None:
        """A call got no answer (refused, timed out, TLS...): not answering, from now."""
        self._mark(plain_reason(exc))

    def answered(self, status: int) -> None:
        """A call got an answer: a 5xx or 429 is a problem, and so is 401 (the credentials);
        anything else means it answers."""
        if status >= 500 or status == 429:
            self._mark(f"the API answered {status}", status)
        elif status == 401:
            self._mark("the API refused the user name or password (401)", status)
        else:
            with self._lock:
                self._seen = ApiSeen(status=status)

    def _mark(self, problem: str, status: int | None = None) -> None:
        with self._lock:
            since = self._seen.since if self._seen.problem else self._clock.now()
            self._seen = ApiSeen(problem, since, status)

    def seen(self) -> ApiSeen:
        """The state now."""
        with self._lock:
            return self._seen

    def attach(self, session: requests.Session) -> None:
        """Watch every call ``session`` sends (its adapters are wrapped, pools kept)."""
        for prefix, adapter in list(session.adapters.items()):
            if not isinstance(adapter, _Watching):
                session.mount(prefix, _Watching(adapter, self))


class _Watching(BaseAdapter):
    """An adapter that sends through another and reports how the call ended."""

    def __init__(self, inner: BaseAdapter, watch: ApiWatch) -> None:
        super().__init__()
        self.inner = inner
        self.watch = watch

    def send(self, request: requests.PreparedRequest, *args: Any, **kw: Any) -> requests.Response:
        try:
            response = self.inner.send(request, *args, **kw)
        except requests.RequestException as exc:
            self.watch.failed(exc)
            raise
        self.watch.answered(response.status_code)
        return response

    def close(self) -> None:
        self.inner.close()
