"""The HeroBase sandbox: a local stand-in for the HeroBase lead API.

The contract it serves, and its tenant profiles, are described in this repository's
docs/api-contract.md.

It is the embedded default (``leadpipe run`` without credentials), the test fixture every HTTP
test talks to on 127.0.0.1, and a demo to click through (``leadpipe sandbox``)::

    from pipeline.sandbox import Sandbox, Fault, DEMO_USER, DEMO_PASSWORD
    with Sandbox() as sb:                      # demo tenant, free port
        sb.add_fault(Fault("drop_after", route="POST /leads"))
        ...                                    # talk to sb.url with (DEMO_USER, DEMO_PASSWORD)

Fault kinds: ``status`` (answer ``status``, default 503, optional ``Retry-After``), ``delay``
(wait ``delay`` s, then answer normally; a POSTed lead is stored even if the client gave up
meanwhile, stamped with the arrival time), ``store_late`` (wait ``delay`` s, then store the
lead stamped with the time it is stored and answer, if the client is still there),
``drop_before`` (reset the connection, nothing stored), ``drop_after`` (store the lead, then
reset), ``status_after`` (store, then answer ``status``, default 500), ``html`` (an HTML error
page, default 502), ``empty`` (``status``, default 502, with an empty body), ``garbled`` (store,
then 200 with a body that is not JSON). A dropped request is logged with status 0, and so is a
``store_late`` request whose client had gone by the end of the hold.

Tenant profiles choose among the plausible shapes of the real service's answers (module
``profile``; the defaults are the shapes above, the demo seed keeps them). Set them in the seed,
when constructing, or while running; unknown keys or values are refused naming the key::

    [tenant.profile]                 # in the seed TOML
    post_answer = "empty201"         # lead | wrapped | empty201 | 204 | id_only
    lists = "wrapped"                # bare | wrapped ({"Results": [...]}) | wrapped_lower
    simpleleads_data = false         # /simpleleads rows without the leads' data
    uploaded_by = "other"            # login | absent | other (orgCode "ORG-nnnn" and a name)
    commit_delay = 2.5               # s from answering POST /leads to the lead showing in lookups

    Sandbox(profile={"lists": "wrapped"})      # over the seed's profile
    sb.set_profile(post_answer="204")          # while running; returns the new Profile
    sb.profile                                 # the current Profile

``POST /_sandbox/profile`` with a JSON object of settings does the same as ``set_profile``, and
``GET /_sandbox/profile`` shows the profile. Validation errors (400) keep the ServiceStack
shape in every profile. ``commit_delay`` is measured on the sandbox's clock (a ``FakeClock``
makes it advance on ``sleep``/``advance``); ``sb.leads()`` shows leads at once.
"""

from __future__ import annotations

from pipeline.sandbox.faults import FAULT_KINDS, Fault
from pipeline.sandbox.profile import Profile, ProfileError
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
    "Profile",
    "ProfileError",
    "Sandbox",
    "Seed",
    "load_seed",
]
