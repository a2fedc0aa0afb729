"""The last look at a claim's lease, right before an upload's bytes go out (docs/cluster.md,
"Leases and fencing").

An upload thread that passed every earlier look may still wait for its turn at the rate
limiter (and the shared budget) when its node is paused or cut off past its lease. The
service's HTTP session sends through :class:`FencingAdapter`, which refuses a request made
under a lease (:func:`sending_under`, set by the upload's client for its thread) once that
lease is fenced: nothing reaches HeroBase. The refusal is :class:`LeaseLost`, not an API
error, so it is never retried; the upload's client turns it into "not sent".
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import BaseAdapter

from pipeline.dropfolder.jobs import LeaseHold

_current = threading.local()


class LeaseLost(Exception):
    """The request was not sent: its file's lease is no longer this node's."""


@contextlib.contextmanager
def sending_under(lease: LeaseHold) -> Iterator[None]:
    """Requests this thread sends in the block are sent only while ``lease`` holds."""
    before = getattr(_current, "lease", None)
    _current.lease = lease
    try:
        yield
    finally:
        _current.lease = before


class FencingAdapter(BaseAdapter):
    """Sends through another adapter, unless the thread's lease is fenced."""

    def __init__(self, inner: BaseAdapter) -> None:
        super().__init__()
        self.inner = inner

    def send(self, request: requests.PreparedRequest, *args: Any, **kw: Any) -> requests.Response:
        lease: LeaseHold | None = getattr(_current, "lease", None)
        if lease is not None and lease.fenced():
            raise LeaseLost("not sent: this node no longer holds the file's lease")
        return self.inner.send(request, *args, **kw)

    def close(self) -> None:
        self.inner.close()


def attach(session: requests.Session) -> None:
    """Send every request of ``session`` through a :class:`FencingAdapter` (pools kept)."""
    for prefix, adapter in list(session.adapters.items()):
        if not isinstance(adapter, FencingAdapter):
            session.mount(prefix, FencingAdapter(adapter))
