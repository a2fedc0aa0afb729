"""Tenant profiles: which of the plausible HeroBase answer shapes the sandbox serves.

Some of the sandbox's answers are guesses about the real service. A :class:`Profile` picks one
alternative per guess, and this module is the one place that builds the shapes that differ:
the answer to a stored ``POST /leads`` (:meth:`Profile.created`), every list answer
(:meth:`Profile.list_answer`) and a lead's ``uploadedByUser`` (:meth:`Profile.uploader`). The
default profile is the sandbox's original behaviour.

Settings (seed table ``[tenant.profile]``, ``Sandbox(profile=...)``, ``Sandbox.set_profile``):

``post_answer``
    ``"lead"`` (200 + lead object), ``"wrapped"`` (200 + ``{"result": lead}``), ``"empty201"``
    (201, no body), ``"204"`` (204 No Content), ``"id_only"`` (201 + ``{"Id": uniqueId}``).
``lists``
    ``"bare"`` (a JSON list), ``"wrapped"`` (``{"Results": [...]}``), ``"wrapped_lower"``
    (``{"results": [...]}``).
``simpleleads_data``
    ``true``: ``/simpleleads`` rows carry the lead's ``data``; ``false``: they do not.
``uploaded_by``
    ``"login"`` (``{"orgCode": <login>}``), ``"absent"`` (no ``uploadedByUser``), ``"other"``
    (``{"orgCode": "ORG-nnnn", "name": ...}``, stable per login but unrelated to it).
``commit_delay``
    Seconds (>= 0) between answering ``POST /leads`` and the lead showing in lookups.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Final

POST_ANSWERS: Final = ("lead", "wrapped", "empty201", "204", "id_only")
LIST_SHAPES: Final = ("bare", "wrapped", "wrapped_lower")
UPLOADERS: Final = ("login", "absent", "other")


class NoBody:
    """Marker for an answer without a body (see :data:`NO_BODY`)."""

    def __repr__(self) -> str:
        return "NO_BODY"


#: The payload of an answer that has no body at all (no Content-Type either).
NO_BODY: Final = NoBody()


class ProfileError(ValueError):
    """Profile settings that are refused; ``problems`` holds (key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(
            "bad sandbox profile: " + "; ".join(f"{key}: {message}" for key, message in problems)
        )


def _one_of(choices: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in choices)


def _choice(value: Any, choices: tuple[str, ...]) -> str | None:
    if not isinstance(value, str):
        return f"{value!r} is not a string (use one of {_one_of(choices)})"
    if value not in choices:
        return f"{value!r} is not one of {_one_of(choices)}"
    return None


@dataclass(frozen=True)
class Profile:
    """One choice per guessed answer shape (immutable; see the module docstring)."""

    post_answer: str = "lead"
    lists: str = "bare"
    simpleleads_data: bool = True
    uploaded_by: str = "login"
    commit_delay: float = 0.0

    def __post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        for key, choices in (
            ("post_answer", POST_ANSWERS),
            ("lists", LIST_SHAPES),
            ("uploaded_by", UPLOADERS),
        ):
            message = _choice(getattr(self, key), choices)
            if message:
                problems.append((key, message))
        if not isinstance(self.simpleleads_data, bool):
            problems.append(("simpleleads_data", f"{self.simpleleads_data!r} is not true or false"))
        delay = self.commit_delay
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not math.isfinite(delay)
            or delay < 0
        ):
            problems.append(("commit_delay", f"{delay!r} is not a number of seconds >= 0"))
        else:
            object.__setattr__(self, "commit_delay", float(delay))
        if problems:
            raise ProfileError(problems)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], base: Profile | None = None) -> Profile:
        """``base`` (default: the defaults) with ``settings`` applied; refuses unknown keys."""
        if not isinstance(settings, Mapping):
            raise ProfileError([("profile", "expected a table of settings")])
        known = {f.name for f in fields(cls)}
        unknown = [
            (str(key), f"unknown profile setting (one of {', '.join(sorted(known))})")
            for key in settings
            if key not in known
        ]
        try:
            profile = replace(base or cls(), **{k: v for k, v in settings.items() if k in known})
        except ProfileError as exc:
            raise ProfileError(unknown + exc.problems) from None
        if unknown:
            raise ProfileError(unknown)
        return profile

    def as_dict(self) -> dict[str, Any]:
        """The settings, JSON-ready."""
        return asdict(self)

    # --- the shapes ---------------------------------------------------------------------------
    def created(self, lead: dict[str, Any]) -> tuple[int, Any]:
        """(status, payload) answering a stored ``POST /leads``; payload may be NO_BODY."""
        match self.post_answer:
            case "wrapped":
                return 200, {"result": lead}
            case "empty201":
                return 201, NO_BODY
            case "204":
                return 204, NO_BODY
            case "id_only":
                return 201, {"Id": lead["uniqueId"]}
            case _:
                return 200, lead

    def list_answer(self, items: list[Any]) -> Any:
        """A list answer in this profile's shape."""
        if self.lists == "wrapped":
            return {"Results": items}
        if self.lists == "wrapped_lower":
            return {"results": items}
        return items

    def uploader(self, login: str) -> dict[str, str] | None:
        """The ``uploadedByUser`` object of a lead uploaded by ``login`` (None: leave it out)."""
        if self.uploaded_by == "absent":
            return None
        if self.uploaded_by == "other":
            number = 1000 + zlib.crc32(login.lower().encode("utf-8")) % 9000
            return {"orgCode": f"ORG-{number}", "name": f"Import Service {number}"}
        return {"orgCode": login}
