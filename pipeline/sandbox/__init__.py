"""The HeroBase sandbox: a local stand-in for the HeroBase lead API (herobase-api.md).

It is the embedded default (``leadpipe run`` without credentials), the test fixture every HTTP
test talks to on 127.0.0.1, and a demo to click through (``leadpipe sandbox``)::

    from pipeline.sandbox import Sandbox, Fault, DEMO_USER, DEMO_PASSWORD
    with Sandbox() as sb:                      # demo tenant, free port
        sb.add_fault(Fault("drop_after", route="POST /leads"))
        ...                                    # talk to sb.url with (DEMO_USER, DEMO_PASSWORD)

Fault kinds: ``status`` (answer ``status``, default 503, optional ``Retry-After``), ``delay``
(wait ``delay`` s, then answer normally), ``drop_before`` (reset the connection, nothing
stored), ``drop_after`` (store the lead, then reset), ``status_after`` (store, then answer
``status``, default 500), ``html`` (an HTML error page, default 502), ``empty`` (``status``,
default 502, with an empty body), ``garbled`` (store, then 200 with a body that is not JSON).
A dropped request is logged with status 0.
"""

from __future__ import annotations

from pipeline.sandbox.faults import FAULT_KINDS, Fault
from pipeline.sandbox.seed import (
    DEMO_PASSWORD,
    DEMO_SEED_PATH,
    DEMO_USER,
    RESTRICTED_PASSWORD,
    RESTRICTED_USER,
    Seed,
    load_seed,
)
from pipeline.sandbox.server import Sandbox

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_SEED_PATH",
    "DEMO_USER",
    "FAULT_KINDS",
    "RESTRICTED_PASSWORD",
    "RESTRICTED_USER",
    "Fault",
    "Sandbox",
    "Seed",
    "load_seed",
]
