"""File headers -> campaign fields: normalised names, per-campaign synonyms, suggestions.

Headers compare case-, space-, accent- and punctuation-insensitively (``" Tlf. nr "`` ~
``"tlfnr"``; Danish ``æ ø å`` fold to ``ae oe aa`` for comparison only; the original header is
what every message shows). Synonyms come from ``[campaigns.CODE.columns]`` (``"Tlf." = "phone"``).
The reject files' helper columns ``_row`` and ``_problems`` are ignored, so a fixed reject file
dropped again maps like the original.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cells import column_letters
from pipeline.errors import MissingColumns
from pipeline.ingest.fields import FieldSpec

#: Columns the reject files add; ignored on input.
HELPER_COLUMNS = ("_row", "_problems")

_FOLD = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "ß": "ss", "ð": "d", "þ": "th"})


def normalise_header(name: str) -> str:
    """The comparison key of a header: lower case, accents and punctuation removed.

    >>> normalise_header(" Tlf.-Nr ")
    'tlfnr'
    >>> normalise_header("Postnr/By")
    'postnrby'
    >>> normalise_header("Første navn")
    'foerstenavn'
    """
    text = name.strip().casefold().translate(_FOLD)
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if ch.isalnum() and not unicodedata.combining(ch))


@dataclass(frozen=True)
class ColumnMapping:
    """Which file column feeds which field; what was left out."""

    field_for: dict[str, str]
    unmapped: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    #: plain-words notes on columns that repeat a header or a field another column feeds
    repeats: list[str] = field(default_factory=list)

    @property
    def header_for(self) -> dict[str, str]:
        """Field name -> the file header that feeds it."""
        return {f: h for h, f in self.field_for.items()}

    def describe(self) -> str:
        """Plain words: ``'Tlf.' -> phone, 'Navn' -> name; not sent: 'Notes'``."""
        pairs = ", ".join(f"'{h}' -> {f}" for h, f in self.field_for.items())
        extra = f"; not sent: {', '.join(repr(u) for u in self.unmapped)}" if self.unmapped else ""
        return pairs + extra


def map_columns(
    headers: Sequence[str],
    fields: Sequence[FieldSpec],
    synonyms: Mapping[str, str],
    *,
    path: Path | None = None,
) -> ColumnMapping:
    """Map file headers to fields; raise :class:`MissingColumns` when a required field has none.

    Synonyms win over name matches; the first header that matches a field takes it, a second
    one is reported unmapped. The error names every missing field and the closest header.
    """
    by_key = {normalise_header(f.name): f.name for f in fields}
    field_names = {f.name for f in fields}
    syn = {normalise_header(k): v for k, v in synonyms.items() if v in field_names}
    field_for: dict[str, str] = {}
    taken: set[str] = set()
    unmapped: list[str] = []
    ignored: list[str] = []
    repeats: list[str] = []
    source: dict[str, int] = {}  # field -> index of the column feeding it
    for i, header in enumerate(headers):
        if header.strip() in HELPER_COLUMNS:
            ignored.append(header)
            continue
        base = _repeat_of(header, headers)
        key = normalise_header(base if base is not None else header)
        target = syn.get(key) or by_key.get(key)
        if target is None or target in taken:
            unmapped.append(header)
            if target is not None:
                first = source[target]
                shown = f" (shown as '{header}')" if base is not None else ""
                repeats.append(
                    f"Columns {column_letters(first)} '{headers[first]}' and {column_letters(i)}"
                    f" '{base or header}'{shown} both fit field {target}: column "
                    f"{column_letters(first)} was sent, column {column_letters(i)} was not. If "
                    f"column {column_letters(i)} holds the right values, delete or rename "
                    f"column {column_letters(first)} and drop the file again."
                )
            continue
        field_for[header] = target
        taken.add(target)
        source[target] = i
    missing = [f for f in fields if f.required and f.name not in taken]
    if missing:
        candidates = list(unmapped)
        parts = []
        for spec in missing:
            close = _closest(spec.name, candidates)
            hint = f" (closest header: '{close}')" if close else ""
            parts.append(f"'{spec.name}'{hint}")
        found = ", ".join(f"'{h}'" for h in headers if h.strip() not in HELPER_COLUMNS)
        raise MissingColumns(
            f"no column for required field {', '.join(parts)}. Headers found: {found}. "
            "Rename the column to the field name, or map it in the config under "
            "[campaigns.<code>.columns], then drop the file again.",
            path=path,
        )
    if not field_for:  # (only possible when the campaign requires no field)
        found = ", ".join(f"'{h}'" for h in headers if h.strip() not in HELPER_COLUMNS)
        names = ", ".join(f"'{f.name}'" for f in fields)
        raise MissingColumns(
            f"no column matches a field of the campaign (fields: {names}; headers found: "
            f"{found or 'none'}). Rename the columns to the field names, or map them in the "
            "config under [campaigns.<code>.columns], then drop the file again.",
            path=path,
        )
    return ColumnMapping(field_for=field_for, unmapped=unmapped, ignored=ignored, repeats=repeats)


def _repeat_of(header: str, headers: Sequence[str]) -> str | None:
    """The header ``Phone`` when ``header`` is ``Phone (2)`` made unique from a repeated name."""
    base, sep, rest = header.rpartition(" (")
    if sep and rest.endswith(")") and rest[:-1].isdigit() and base in headers:
        return base
    return None


def _closest(name: str, headers: Sequence[str]) -> str | None:
    """The header most like ``name`` (difflib ratio, plus a bonus when one contains the other)."""
    want = normalise_header(name)
    best, best_score = None, 0.4
    for header in headers:
        key = normalise_header(header)
        if not key:
            continue
        score = difflib.SequenceMatcher(None, want, key).ratio()
        if want in key or key in want:
            score += 0.5
        if score > best_score:
            best, best_score = header, score
    return best


def header_score(cells: Sequence[str], expected: Sequence[str]) -> int:
    """How many of ``cells`` look like an expected field name or synonym (header detection)."""
    want = {normalise_header(e) for e in expected if normalise_header(e)}
    return len({normalise_header(c) for c in cells} & want)
