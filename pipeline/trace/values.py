"""A value a person asks about (``trace --find``, ``forget``), normalised as docs/retention.md
says: phone numbers by their digits, e-mail addresses regardless of case, anything else as
written (spaces at the ends and case ignored)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

#: Characters people put inside phone numbers: ignored when comparing.
_PHONE_NOISE = re.compile(r"[\s\-().\u00a0/]")
_PHONE = re.compile(r"^(\+|00)?\d{6,15}$")
#: The shortest national number a number with a country prefix may be matched to by its end.
_NATIONAL_DIGITS = 8


class ValueKind(StrEnum):
    """How a value is compared."""

    PHONE = "phone"
    EMAIL = "email"
    TEXT = "text"


def phone_digits(text: str) -> str | None:
    """``+45 20-00 00 01`` and ``004520000001`` -> ``+4520000001``; ``20000001`` stays
    national; None when ``text`` is not a phone number."""
    bare = _PHONE_NOISE.sub("", text.strip())
    if not _PHONE.match(bare):
        return None
    if bare.startswith("+"):
        return bare
    if bare.startswith("00"):
        return "+" + bare[2:]
    return bare


def _same_phone(a: str, b: str) -> bool:
    if a == b:
        return True
    intl, national = (a, b) if a.startswith("+") else (b, a)
    if not intl.startswith("+") or national.startswith("+"):
        return False
    national = national.lstrip("0")
    return (
        len(national) >= _NATIONAL_DIGITS
        and intl.endswith(national)
        and 1 <= len(intl) - 1 - len(national) <= 3  # a country code of 1 to 3 digits
    )


@dataclass(frozen=True)
class Needle:
    """The value asked about, and how a cell is compared with it."""

    given: str
    kind: ValueKind
    key: str  #: the normalised value

    @classmethod
    def of(cls, value: str) -> Needle:
        """Phone number, e-mail or plain text, told from the value itself."""
        text = value.strip()
        if "@" in text:
            return cls(value, ValueKind.EMAIL, text.casefold())
        digits = phone_digits(text)
        if digits is not None:
            return cls(value, ValueKind.PHONE, digits)
        return cls(value, ValueKind.TEXT, text.casefold())

    def matches(self, cell: str) -> bool:
        """True when ``cell`` holds this value (the whole cell, normalised)."""
        if not cell:
            return False
        if self.kind is ValueKind.PHONE:
            digits = phone_digits(cell)
            return digits is not None and _same_phone(self.key, digits)
        return cell.strip().casefold() == self.key

    def in_any(self, cells: tuple[str, ...]) -> bool:
        """True when one of ``cells`` holds this value."""
        return any(self.matches(c) for c in cells)
