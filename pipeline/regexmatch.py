r"""What "a value matches its field's regex" means: one definition for the client and the sandbox.

HeroBase is .NET and its regexes are .NET flavour (docs/api-contract.md, "Campaign fields").
Two semantics, chosen by ``[validation] regex_match`` (client) and ``[tenant] regex_match``
(sandbox seed):

- ``search`` (the default): .NET ``Regex.IsMatch(value, pattern)`` with no options: a match
  anywhere in the value, anchored only where the pattern says so; ``^`` is the start of the
  value, ``$`` its end or just before a final ``\n``; ``.`` matches anything but ``\n``.
- ``whole``: the whole value must match, as .NET ``Regex.IsMatch(value, "^(?:pattern)\z")``:
  the same reading of the pattern, but every character of the value, a final ``\n``
  included, must be matched by it (``$`` inside the pattern may still stand before a final
  ``\n``, which the pattern then has to match itself); ``.`` still does not match ``\n``.

The pattern is run by the ``regex`` package after a small translation of the .NET syntax it
reads differently: ``\Z`` (end, or before a final ``\n``), ``\z`` (end), ``{,n}`` (literal text
in .NET), a ``[`` inside a character class (a literal in .NET) and character class subtraction
``[a-z-[aeiou]]``. Character classes (``\d``, ``\w``, ``\p{L}``) use the ``regex`` package's
Unicode tables. This module imports nothing heavier than ``regex`` (the sandbox uses it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

Semantics = Literal["search", "whole"]
#: The allowed values of ``regex_match``, the default first.
SEMANTICS: Final[tuple[Semantics, ...]] = get_args(Semantics)
DEFAULT_SEMANTICS: Final[Semantics] = "search"

_QUANTIFIER = re.compile(r"\{\d+(?:,\d*)?\}")


class PatternError(ValueError):
    """A pattern that does not compile (the message says why)."""


def is_semantics(value: object) -> bool:
    """Whether ``value`` is one of :data:`SEMANTICS`."""
    return value in SEMANTICS


@dataclass(frozen=True)
class Matcher:
    """A compiled pattern under one semantics: :meth:`matches` is the verdict."""

    pattern: str
    semantics: Semantics
    compiled: Any = field(compare=False, repr=False)

    def matches(self, value: str) -> bool:
        """Whether ``value`` matches the pattern under the matcher's semantics."""
        if self.semantics == "whole":
            return self.compiled.fullmatch(value) is not None
        return self.compiled.search(value) is not None


def compile_for(pattern: str, semantics: Semantics = DEFAULT_SEMANTICS) -> Matcher:
    """The matcher of a .NET ``pattern`` under ``semantics``; raises :class:`PatternError`."""
    if semantics not in SEMANTICS:
        raise ValueError(f"regex_match must be one of {', '.join(SEMANTICS)}, not {semantics!r}")
    import regex  # here: the config reads this module's names, and `leadpipe --help` the config

    try:
        compiled = regex.compile(translate(pattern))
    except (regex.error, PatternError) as exc:
        raise PatternError(str(exc)) from None
    return Matcher(pattern, semantics, compiled)


def try_compile(pattern: str, semantics: Semantics = DEFAULT_SEMANTICS) -> Matcher | None:
    """:func:`compile_for`, or None when the pattern does not compile."""
    try:
        return compile_for(pattern, semantics)
    except PatternError:
        return None


def translate(pattern: str) -> str:
    """A .NET pattern rewritten for the ``regex`` package (version 0), same meaning."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            end = _escape_end(pattern, i)
            nxt = pattern[i + 1]
            if nxt == "Z":
                out.append(r"(?=\n?\Z)")
            elif nxt == "z":
                out.append(r"\Z")
            else:
                out.append(pattern[i:end])
            i = end
        elif ch == "[":
            text, i = _class(pattern, i)
            out.append(text)
        elif ch == "{" and _QUANTIFIER.match(pattern, i) is None:
            out.append(r"\{")  # not a .NET quantifier: literal text
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _escape_end(pattern: str, i: int) -> int:
    """The index after the escape starting at ``i`` (``\\p{...}`` as one escape)."""
    if i + 1 >= len(pattern):
        raise PatternError("the pattern ends with a backslash")
    end = i + 2
    if pattern[i + 1] in "pP" and pattern.startswith("{", end):
        close = pattern.find("}", end)
        end = len(pattern) if close < 0 else close + 1
    return end


def _class(pattern: str, start: int) -> tuple[str, int]:
    """The character class opening at ``start`` as ``regex`` reads it; the index after it.

    .NET reads ``[`` inside a class as a literal, and ``-[...]`` at the end of a class as a
    subtraction: ``[base-[sub]]`` becomes ``(?:(?!sub)[base])``.
    """
    i, n = start + 1, len(pattern)
    head = "["
    if i < n and pattern[i] == "^":
        head += "^"
        i += 1
    items: list[str] = []
    first = True
    while i < n:
        ch = pattern[i]
        if ch == "]" and not first:
            return head + "".join(items) + "]", i + 1
        if ch == "\\":
            end = _escape_end(pattern, i)
            items.append(pattern[i:end])
            i = end
        elif ch == "-" and not first and pattern.startswith("[", i + 1):
            sub, after = _class(pattern, i + 1)
            if after >= n or pattern[after] != "]":
                raise PatternError("a subtracted class must end its class")
            base = head + "".join(items) + "]"
            return f"(?:(?!{sub}){base})", after + 1
        elif ch in "[]":
            items.append("\\" + ch)
            i += 1
        else:
            items.append(ch)
            i += 1
        first = False
    raise PatternError("a character class is not closed")
