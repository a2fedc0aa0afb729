"""The HeroBase API client: the only package that speaks HTTP (docs/architecture.md).

Callers get typed records and :mod:`pipeline.errors` classes, never ``requests`` objects.
"""

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
