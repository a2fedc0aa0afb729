"""Campaign schema: import example -> :class:`FieldSpec` list -> pandera schema; snapshots.

The import example describes each field as
``example <field>, type is <type>, regex used for validation <regex>`` (docs/api-contract.md).
A field is required iff it appears in the plain example (without ``showAllDataEntries``).
Regexes are .NET flavour; what "a value matches" means is :mod:`pipeline.regexmatch`
(``[validation] regex_match``: ``search`` or ``whole``), the masks and their engines live in
:mod:`pipeline.ingest.matching`. Required means non-empty. Empty optional values are not checked
against the regex.

This is the only module that imports pandera (docs/architecture.md):
:func:`build_pandera_schema` builds the schema in one place; :func:`failure_cases` and
:class:`RowChecks` run it lazily.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import pandas as pd

from pipeline.clock import Clock, SystemClock
from pipeline.errors import StateError, Unavailable, Uncertain
from pipeline.files import atomic_write_text
from pipeline.imports import not_installed
from pipeline.ingest.matching import ANY_VALUE, nonempty_mask, pattern_masks
from pipeline.regexmatch import DEFAULT_SEMANTICS, Semantics

if TYPE_CHECKING:
    import polars as pl

# pandera loads hypothesis when it is installed (a development tool here), for synthesising
# test data, which leadpipe never asks of it: ~0.1 s of every command that reads a file. It is
# kept out while pandera loads, so pandera's data synthesis is off in this process; hypothesis
# itself imports as usual afterwards.
with not_installed("hypothesis"):
    # The built-in checks load hypothesis; pandera loads them at the first check, so here.
    import pandera.backends.pandas.builtin_checks  # noqa: F401
    import pandera.pandas as pa

SchemaSource = Literal["live", "snapshot"]

_DESCRIPTION = re.compile(
    r"\s*example (?P<label>.*?), type is (?P<type>.*?), regex used for validation (?P<regex>.*)",
    re.DOTALL,
)
#: Rule names used in RowProblem.rule for schema checks.
RULE_REQUIRED = "required"
RULE_PATTERN = "pattern"


@dataclass(frozen=True)
class FieldSpec:
    """One campaign field: its name, HeroBase type, .NET regex, whether it is required, and the
    import example's own example value (the text after ``example``; messages show it to people,
    docs/api-contract.md "Campaign fields")."""

    name: str
    type: str
    regex: str
    required: bool
    #: not part of the rule: two specs with the same rule are equal whatever their examples
    example: str = field(default="", compare=False)


def parse_description(name: str, text: str, *, required: bool) -> FieldSpec:
    """Parse one ``example <field>, type is <type>, regex used for validation <regex>`` string.

    The regex runs to the end of the string and may contain commas and spaces. A description
    that does not follow the documented form yields type ``unknown`` and regex ``.*`` (nothing
    is checked locally; the API still validates).
    """
    m = _DESCRIPTION.fullmatch(text)
    if m is None:
        return FieldSpec(name=name, type="unknown", regex=".*", required=required)
    return FieldSpec(
        name=name,
        type=m.group("type").strip(),
        regex=m.group("regex"),
        required=required,
        example=m.group("label").strip(),
    )


def parse_example(plain: Mapping[str, str], full: Mapping[str, str]) -> list[FieldSpec]:
    """Field specs from the plain (required fields) and full (all fields) import examples.

    Order: the full example's order, then any field only the plain example lists.
    """
    specs = [parse_description(k, str(v), required=k in plain) for k, v in full.items()]
    specs += [
        parse_description(k, str(v), required=True) for k, v in plain.items() if k not in full
    ]
    return specs


def has_pattern(spec: FieldSpec, semantics: Semantics = DEFAULT_SEMANTICS) -> bool:
    """Whether the field's regex can refuse a value under ``semantics``.

    Under ``search``, ``.*``, the empty regex and the others of
    :data:`~pipeline.ingest.matching.ANY_VALUE` match every value; under ``whole`` even they
    refuse some (``.*`` a value with a line break, the empty regex any non-empty value).
    """
    return semantics == "whole" or spec.regex not in ANY_VALUE


Masks = dict[tuple[str, str], np.ndarray]


def _frame_check(
    rule: str, masks: Callable[[pd.DataFrame], dict[str, np.ndarray]], record: Masks | None
) -> Callable[[pd.DataFrame], pd.DataFrame | bool]:
    """A DataFrame-wide pandera check: all columns of one rule in one pass.

    Without ``record`` it answers a boolean frame (pandera lists every failing cell); with it,
    it stores each column's mask there under ``(column, rule)`` and answers whether every value
    passed, so pandera never builds a per-value failure table.
    """

    def run(frame: pd.DataFrame) -> pd.DataFrame | bool:
        found = masks(frame)
        if record is None:
            return pd.DataFrame(
                {c: found.get(c, True) for c in frame.columns}, index=frame.index, dtype=bool
            )
        for column, mask in found.items():
            record[(column, rule)] = mask
        return all(bool(m.all()) for m in found.values())

    return run


def build_pandera_schema(
    fields: Sequence[FieldSpec],
    record: Masks | None = None,
    twin: dict[str, Any] | None = None,
    semantics: Semantics = DEFAULT_SEMANTICS,
) -> Any:
    """The one place a pandera schema is built: a column per field (columns named by field).

    Two checks over the frame: ``required`` (every required field non-empty) and ``pattern``
    (every field whose regex can refuse a value, :func:`has_pattern`, matches it under
    ``semantics``; empty values pass),
    each computing all its columns in one pass. With ``record``, the checks store their masks
    there and tell pandera only whether they passed (see :class:`RowChecks`); ``twin["frame"]``,
    when set, is the validated frame already converted to polars, and ``twin["fast"]`` False
    leaves polars out (RE2 and the Python matcher answer: ``pattern_masks``).
    """
    required = [f.name for f in fields if f.required]
    patterns = {f.name: f.regex for f in fields if has_pattern(f, semantics)}

    def nonempty(frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return {c: nonempty_mask(frame[c]) for c in required if c in frame.columns}

    def matching(frame: pd.DataFrame) -> dict[str, np.ndarray]:
        given = twin or {}
        return pattern_masks(
            frame, patterns, given.get("frame"), semantics, fast=given.get("fast", True)
        )

    checks = []
    if required:
        checks.append(pa.Check(_frame_check(RULE_REQUIRED, nonempty, record), name=RULE_REQUIRED))
    if patterns:
        checks.append(pa.Check(_frame_check(RULE_PATTERN, matching, record), name=RULE_PATTERN))
    columns = {f.name: pa.Column(nullable=True, required=False) for f in fields}
    return pa.DataFrameSchema(columns, checks=checks)


def failure_cases(pandera_schema: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """Run the schema lazily; the failures as a frame with ``index``, ``column``, ``check``.

    An empty frame means every row passed.
    """
    rows: list[tuple[Any, str, str]] = []
    try:
        pandera_schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc: pd.DataFrame = exc.failure_cases
        fc = fc.loc[fc["index"].notna()]
        for index, column, check, case in zip(
            fc["index"], fc["column"], fc["check"], fc["failure_case"], strict=True
        ):  # a frame-wide check reports {column: value} per failing row
            columns = list(case) if isinstance(case, dict) else [column]
            rows += [(index, str(c), str(check)) for c in columns]
    return pd.DataFrame(rows, columns=["index", "column", "check"])


class RowChecks:
    """A campaign's pandera schema run on chunks: which positions failed which check.

    Pandera runs the (vectorised) checks and decides whether they passed; the failing
    positions come from the checks' own masks rather than from pandera's per-value
    failure-case table, which costs more than the checks themselves when thousands of values
    fail.
    """

    def __init__(
        self, fields: Sequence[FieldSpec], semantics: Semantics = DEFAULT_SEMANTICS
    ) -> None:
        self._masks: Masks = {}
        self._twin: dict[str, Any] = {}
        self.schema = build_pandera_schema(
            fields, record=self._masks, twin=self._twin, semantics=semantics
        )

    def failures(
        self, frame: pd.DataFrame, polars_frame: pl.DataFrame | None = None, *, fast: bool = True
    ) -> dict[tuple[str, str], np.ndarray]:
        """``(column, check)`` -> the positions (0-based) failing it, for each failed check.

        ``polars_frame``: the same columns as a polars frame, if the caller has one; ``fast``
        False: no polars (see :func:`~pipeline.ingest.matching.pattern_masks`).
        """
        self._masks.clear()
        self._twin["fast"] = fast
        if polars_frame is not None:
            self._twin["frame"] = polars_frame
        try:
            self.schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors:
            pass
        else:
            return {}
        finally:
            self._twin.clear()
        return {
            key: np.flatnonzero(~mask)
            for key, mask in sorted(self._masks.items(), key=str)
            if not mask.all()
        }


# --------------------------------------------------------------------------- snapshots & drift


@dataclass(frozen=True)
class SchemaDrift:
    """How the live import example differs from the last snapshot."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        """One line in plain words, e.g. ``fields added: email; changed: phone (regex)``."""
        parts = []
        if self.added:
            parts.append("fields added: " + ", ".join(self.added))
        if self.removed:
            parts.append("fields removed: " + ", ".join(self.removed))
        if self.changed:
            parts.append("fields changed: " + ", ".join(self.changed))
        return "; ".join(parts) or "no change"


@dataclass(frozen=True)
class CampaignSchema:
    """A campaign's fields, where they came from, when, and their hash."""

    code: str
    fields: list[FieldSpec]
    source: SchemaSource
    fetched_at: str
    hash: str
    drift: SchemaDrift | None = None

    def field(self, name: str) -> FieldSpec | None:
        """The spec named ``name``, or None."""
        return next((f for f in self.fields if f.name == name), None)


def specs_hash(fields: Sequence[FieldSpec]) -> str:
    """SHA-256 of the specs in a canonical JSON form (time-independent).

    The rules only (name, type, regex, required): a new example value changes no check.
    """
    rules = [{k: v for k, v in asdict(f).items() if k != "example"} for f in fields]
    blob = json.dumps(rules, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def diff_specs(old: Sequence[FieldSpec], new: Sequence[FieldSpec]) -> SchemaDrift:
    """Fields added, removed and changed (naming what changed: type, regex, required)."""
    before = {f.name: f for f in old}
    after = {f.name: f for f in new}
    changed = []
    for name in after.keys() & before.keys():
        what = [
            a
            for a in ("type", "regex", "required")
            if getattr(before[name], a) != getattr(after[name], a)
        ]
        if what:
            changed.append(f"{name} ({', '.join(what)})")
    return SchemaDrift(
        added=[n for n in after if n not in before],
        removed=[n for n in before if n not in after],
        changed=sorted(changed),
    )


def snapshot_path(schemas_dir: Path, code: str) -> Path:
    """``schemas/<code>.json``."""
    return Path(schemas_dir) / f"{code}.json"


def read_snapshot(schemas_dir: Path, code: str) -> CampaignSchema | None:
    """The stored snapshot for ``code`` (source ``snapshot``), or None when there is none."""
    path = snapshot_path(schemas_dir, code)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(
            f"the schema snapshot {path} cannot be read ({exc}); delete it and run again "
            "while the API is reachable"
        ) from exc
    specs = [FieldSpec(**f) for f in raw["fields"]]
    return CampaignSchema(
        code=code,
        fields=specs,
        source="snapshot",
        fetched_at=str(raw.get("fetched_at", "")),
        hash=str(raw.get("hash") or specs_hash(specs)),
    )


def write_snapshot(schemas_dir: Path, schema: CampaignSchema) -> Path:
    """Write ``schemas/<code>.json`` atomically (specs, time, hash)."""
    path = snapshot_path(schemas_dir, schema.code)
    body = {
        "campaign": schema.code,
        "fetched_at": schema.fetched_at,
        "hash": schema.hash,
        "fields": [asdict(f) for f in schema.fields],
    }
    atomic_write_text(path, json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    return path


class ExampleSource(Protocol):
    """What :func:`load_campaign_schema` needs from the HeroBase client."""

    def import_example(self, code: str, all_fields: bool = False) -> dict[str, str]: ...


def load_campaign_schema(
    client: ExampleSource, code: str, schemas_dir: Path, *, clock: Clock | None = None
) -> CampaignSchema:
    """The live schema (snapshot refreshed, drift vs the previous snapshot reported).

    When the API is unavailable or the answer uncertain, the last snapshot is used (source
    ``snapshot``); with no snapshot the API error is raised.
    """
    clock = clock or SystemClock()
    previous = read_snapshot(schemas_dir, code)
    try:
        plain = client.import_example(code, all_fields=False)
        full = client.import_example(code, all_fields=True)
    except (Unavailable, Uncertain):
        if previous is None:
            raise
        return previous
    specs = parse_example(plain, full)
    now = clock.now()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    drift = diff_specs(previous.fields, specs) if previous is not None else None
    schema = CampaignSchema(
        code=code,
        fields=specs,
        source="live",
        fetched_at=now.astimezone(UTC).isoformat(timespec="seconds"),
        hash=specs_hash(specs),
        drift=drift if drift else None,
    )
    write_snapshot(schemas_dir, schema)
    return schema
