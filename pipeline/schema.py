"""Campaign schema: import example -> :class:`FieldSpec` list -> pandera schema; snapshots.

The import example describes each field as
``example <field>, type is <type>, regex used for validation <regex>`` (herobase-api.md §6).
A field is required iff it appears in the plain example (without ``showAllDataEntries``).
Regexes are .NET flavour: they compile with :mod:`re` when possible, else with the ``regex``
package (``(?<name>...)``, ``\\p{L}``). Every regex must match the *whole* value; required
means non-empty. Empty optional values are not checked against the regex.

This is the only module that imports pandera (design.md): :func:`build_pandera_schema` builds
the schema in one place; :func:`failure_cases` and :class:`RowChecks` run it lazily.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pyarrow_  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import regex as regex_pkg

from pipeline.clock import Clock, SystemClock
from pipeline.errors import StateError, Unavailable, Uncertain
from pipeline.fsutil import atomic_write_text

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
    """One campaign field: its name, HeroBase type, .NET regex and whether it is required."""

    name: str
    type: str
    regex: str
    required: bool


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
        name=name, type=m.group("type").strip(), regex=m.group("regex"), required=required
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


class _Matcher(Protocol):
    def fullmatch(self, string: str) -> Any: ...


def compile_regex(pattern: str) -> _Matcher | None:
    """Compile a .NET regex: :mod:`re` first, then the ``regex`` package; None if neither."""
    try:
        return re.compile(pattern)
    except re.error:
        pass
    try:
        return regex_pkg.compile(pattern)  # type: ignore[no-any-return]
    except regex_pkg.error:
        return None


def arrow_strings(series: pd.Series) -> pyarrow_.ChunkedArray | pyarrow_.Array:
    """The series' values as an Arrow string array (zero-copy for pandas' pyarrow strings)."""
    arr = series.array
    pa_arr = getattr(arr, "_pa_array", None)
    if pa_arr is not None:
        return pa_arr
    return pyarrow_.array(series.astype("str").array, type=pyarrow_.large_string())


def fullmatch_mask(series: pd.Series, pattern: str) -> np.ndarray:
    """Boolean mask: which values match ``pattern`` as a whole (empty values count as matching).

    Fast path: pyarrow's RE2 over the whole column. RE2's ``\\d``/``\\w``/``\\s`` are ASCII only,
    i.e. stricter than .NET/Python, so values RE2 refuses are re-checked one by one with the
    Python engine; patterns RE2 cannot compile (look-arounds, .NET syntax) run in Python.
    """
    compiled = compile_regex(pattern)
    if compiled is None:  # cannot validate locally: the API still will
        return np.ones(len(series), dtype=bool)
    arr = arrow_strings(series)
    try:  # "(...)?" lets empty values pass in the same scan
        hit = pc.match_substring_regex(arr, f"^(?:{pattern})?$")
        ok = np.asarray(pc.fill_null(hit, True).to_numpy(zero_copy_only=False), dtype=bool)
    except pyarrow_.ArrowInvalid:
        ok = np.asarray(pc.equal(pc.utf8_length(arr), 0).to_numpy(zero_copy_only=False), dtype=bool)
    recheck = np.flatnonzero(~ok)
    if len(recheck):
        values = series.iloc[recheck].tolist()
        ok[recheck] = [not v or compiled.fullmatch(v) is not None for v in values]
    return ok


def nonempty_mask(series: pd.Series) -> np.ndarray:
    """Boolean mask: which values are present and not empty."""
    arr = arrow_strings(series)  # byte lengths: read from the offsets, no text decoded
    return np.asarray(
        pc.fill_null(pc.greater(pc.binary_length(arr), 0), False).to_numpy(zero_copy_only=False),
        dtype=bool,
    )


def _check(
    fn: Callable[[pd.Series], np.ndarray],
    rule: str,
    record: dict[tuple[str, str], np.ndarray] | None,
) -> Callable[[pd.Series], pd.Series | bool]:
    def run(series: pd.Series) -> pd.Series | bool:
        mask = fn(series)
        if record is None:
            return pd.Series(mask, index=series.index)
        if series.hasnans:  # missing values pass, as with pandera's ignore_na
            mask = mask | series.isna().to_numpy(dtype=bool)
        record[(str(series.name), rule)] = mask
        return bool(mask.all())

    return run


def build_pandera_schema(
    fields: Sequence[FieldSpec], record: dict[tuple[str, str], np.ndarray] | None = None
) -> Any:
    """The one place a pandera schema is built: a column per field (columns named by field).

    Checks: ``required`` (non-empty) for required fields, ``pattern`` (whole-value regex match,
    empty values pass) for every field with a regex that is not ``.*``. With ``record``, each
    check stores its boolean mask there under ``(column, check)`` and tells pandera only whether
    the whole column passed (see :class:`RowChecks`).
    """
    columns: dict[str, Any] = {}
    for spec in fields:
        checks = []
        keep_na = record is None  # recording checks see every row (and pass missing values)
        if spec.required:
            required = _check(nonempty_mask, RULE_REQUIRED, record)
            checks.append(pa.Check(required, name=RULE_REQUIRED, ignore_na=keep_na))
        if spec.regex.strip() not in ("", ".*", "^.*$"):
            pattern = _check(partial(fullmatch_mask, pattern=spec.regex), RULE_PATTERN, record)
            checks.append(pa.Check(pattern, name=RULE_PATTERN, ignore_na=keep_na))
        columns[spec.name] = pa.Column(checks=checks, nullable=True, required=False)
    return pa.DataFrameSchema(columns)


def failure_cases(pandera_schema: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """Run the schema lazily; the failures as a frame with ``index``, ``column``, ``check``.

    An empty frame means every row passed.
    """
    try:
        pandera_schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc: pd.DataFrame = exc.failure_cases
        return fc.loc[fc["index"].notna(), ["index", "column", "check"]]
    return pd.DataFrame({"index": [], "column": [], "check": []})


class RowChecks:
    """A campaign's pandera schema run on chunks: which positions failed which check.

    Pandera runs every (vectorised) check and decides which column checks failed; the failing
    positions come from the checks' own masks rather than from pandera's per-value failure-case
    table, which costs more than the checks themselves when thousands of values fail.
    """

    def __init__(self, fields: Sequence[FieldSpec]) -> None:
        self._masks: dict[tuple[str, str], np.ndarray] = {}
        self.schema = build_pandera_schema(fields, record=self._masks)

    def failures(self, frame: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
        """``(column, check)`` -> the positions (0-based) failing it, for each failed check."""
        self._masks.clear()
        try:
            self.schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            fc = exc.failure_cases
            failed = set(zip(fc["column"].tolist(), fc["check"].tolist(), strict=True))
        else:
            return {}
        out: dict[tuple[str, str], np.ndarray] = {}
        for key in sorted(failed, key=str):
            mask = self._masks.get(key)
            if mask is not None:
                out[key] = np.flatnonzero(~mask)
        return out


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

    def pandera(self) -> Any:
        """The pandera schema for these fields (see :func:`build_pandera_schema`)."""
        return build_pandera_schema(self.fields)


def specs_hash(fields: Sequence[FieldSpec]) -> str:
    """SHA-256 of the specs in a canonical JSON form (time-independent)."""
    blob = json.dumps([asdict(f) for f in fields], sort_keys=True, ensure_ascii=False)
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


def utc_now_iso() -> str:
    """Now in UTC, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
