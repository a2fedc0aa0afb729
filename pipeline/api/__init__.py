"""The HeroBase API client: the only package that speaks HTTP (docs/architecture.md).

Callers get typed records and :mod:`pipeline.errors` classes, never ``requests`` objects.

requests is loaded here, before any module of the package: when chardet is installed
(frictionless, a benchmark tool, brings it), requests loads it to guess the encoding of a text
response that names none. A plain install has only charset_normalizer, which requests then
guesses with; so it does here too (:mod:`pipeline.imports`).
"""

from pipeline.imports import not_installed

with not_installed("chardet"):
    import requests  # noqa: F401  (loaded first: see above)

from pipeline.api.client import HeroBaseClient
from pipeline.api.connect import open_client
from pipeline.api.models import (
    Account,
    Campaign,
    Counts,
    CreatedLead,
    Lead,
    Limits,
    Project,
    Search,
)
from pipeline.api.ratelimit import RateLimiter
from pipeline.api.retry import RetryPolicy

__all__ = [
    "Account",
    "Campaign",
    "Counts",
    "CreatedLead",
    "HeroBaseClient",
    "Lead",
    "Limits",
    "Project",
    "RateLimiter",
    "RetryPolicy",
    "Search",
    "open_client",
]
