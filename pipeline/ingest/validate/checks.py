"""Validation: mapped rows -> valid rows + :class:`RowProblem` records (bad data is a value).

Values are stripped of surrounding whitespace before they are checked and sent (the reject files
keep what the person typed). The pandera schema (built in :mod:`pipeline.ingest.fields`) checks
required fields and regexes (under the configured semantics, :mod:`pipeline.regexmatch`)
lazily; :mod:`pipeline.ingest.validate.excel_damage` then recognises values Excel damaged,
whose message replaces the regex one. A row identical (in every mapped field) to an earlier row
of the file is a duplicate: listed in ``ChunkResult.duplicates``, neither sent nor rejected.
Row numbers are the ones the spreadsheet shows.

:meth:`Validator.validate_all` pipelines a file's chunks: everything a chunk needs alone (values,
pandera checks, problems, fingerprints) runs one chunk ahead in a helper thread; only the
duplicate index, which needs the file's order, runs in the caller's.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest.fields import (
    RULE_PATTERN,
    RULE_REQUIRED,
    CampaignSchema,
    FieldSpec,
    RowChecks,
)
from pipeline.ingest.map import ColumnMapping
from pipeline.ingest.matching import arrow_strings
from pipeline.ingest.problems import Problems, RowProblem
from pipeline.ingest.validate.excel_damage import find_damage
from pipeline.ingest.validate.seen import SeenRows, python_fingerprints, row_fingerprints
from pipeline.prefetch import read_ahead
from pipeline.regexmatch import DEFAULT_SEMANTICS, Semantics, try_compile

if TYPE_CHECKING:  # loaded for a big file only (Validator._wants_polars)
    import polars as pl

RULE_DUPLICATE = "duplicate"
#: A file whose first chunk has at most this many rows and bytes of mapped text is checked
#: without polars (its regex engine and row hashes): for a few rows, loading polars takes
#: longer than checking values with RE2 and the Python matcher and hashing rows in Python
#: (same verdicts, same rows). A chunk ends at far more rows or bytes, so such a first chunk is
#: the whole file.
SMALL_ROWS = 2_000
SMALL_BYTES = 1 << 20
#: Nor is a bigger file expected to hold at most this many mapped cells (rows x mapped fields,
#: from the reader's estimate, :attr:`~pipeline.ingest.read.table.Table.expected_rows`):
#: loading polars (0.12-0.16 s here) pays off only beyond about this many. bench/RESULTS.md.
POLARS_FROM_CELLS = 800_000
_NONE = np.zeros(0, dtype=np.int64)
RULE_MALFORMED = "malformed"
_FIX = "Fix the value and drop the file again."
_META = set(".^$*+?{}[]()|\\")


def dropdown_choices(regex: str) -> list[str] | None:
    """The allowed values of a dropdown regex like ``^(SMB|Enterprise)$``; None if not that shape.

    Lets a message list the choices instead of showing a regex to an ops person.
    """
    body = regex
    for head, tail in (("^(?:", ")$"), ("^(", ")$")):
        if body.startswith(head) and body.endswith(tail):
            body = body[len(head) : -len(tail)]
            break
    else:
        return None
    choices: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in body:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "|":
            choices.append("".join(current))
            current = []
        elif ch in _META:
            return None
        else:
            current.append(ch)
    if escaped:
        return None
    choices.append("".join(current))
    return choices if all(choices) else None


_FIX_ROW = "Fix the row and drop the file again."

#: What a field of each HeroBase type holds, in words, and a value of that type shown when the
#: import example's own example value does not pass the field's regex (the sandbox, like some
#: tenants, puts the field's name there). Messages never show the regex (docs/api-contract.md,
#: "Campaign fields"); the JSON receipt does (``field_rules``).
KIND_WORDS: dict[str, tuple[str, str]] = {
    "phone": ("a phone number", "+45 12345678"),
    "email": ("an email address", "name@example.com"),
    "date": ("a date", "2024-05-31"),
    "integer": ("a whole number", "42"),
    "decimal": ("a number", "12.50"),
    "boolean": ("a yes/no value", "true"),
}
#: dropdown choices listed in a message; more are counted ("and 7 more")
SHOWN_CHOICES = 6


def example_for(spec: FieldSpec, semantics: Semantics = DEFAULT_SEMANTICS) -> str:
    """A value to show as "like <example>": the import example's own when the field's regex
    accepts it, else the type's sample when the regex accepts that, else ``""`` (none)."""
    matcher = try_compile(spec.regex, semantics)
    candidates = [spec.example, KIND_WORDS.get(spec.type, ("", ""))[1]]
    for value in candidates:
        if value and value != spec.name and (matcher is None or matcher.matches(value)):
            return value
    return ""


def rule_in_words(spec: FieldSpec, semantics: Semantics = DEFAULT_SEMANTICS) -> str:
    """Why a value fails ``spec``'s regex, in words: the tail after ``'<value>' ``.

    e.g. ``is not a phone number like +45 12345678``; a dropdown lists its choices (a few);
    a text field ``does not have the form the campaign asks for, like 2100``.
    """
    example = example_for(spec, semantics)
    like = f" like {example}" if example else ""
    if spec.type == "dropdown":
        choices = dropdown_choices(spec.regex)
        if choices:
            listed = ", ".join(choices[:SHOWN_CHOICES])
            more = len(choices) - SHOWN_CHOICES
            if more > 0:
                listed += f" and {more} more"
            return f"is not one of the choices for field {spec.name} ({listed})"
        return f"is not one of the choices for field {spec.name}" + (
            f", like {example}" if example else ""
        )
    if spec.type in KIND_WORDS:
        words = KIND_WORDS[spec.type][0]
        if example:
            return f"is not {words}{like} (field {spec.name})"
        return f"is not {words} in the form field {spec.name} asks for"
    return f"does not have the form the campaign asks for in field {spec.name}" + (
        f", like {example}" if example else ""
    )


@dataclass
class ChunkResult:
    """A validated chunk: rows to send, rows to reject (original columns) and why."""

    problems: Problems
    duplicates: list[RowProblem] = field(default_factory=list)
    #: the chunk as read (original columns) and which of its rows failed the checks
    chunk: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    bad: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool), repr=False)
    #: every row's mapped fields (stripped), the rows to send among them, their row numbers
    values: pa.Table | None = field(default=None, repr=False)
    ok: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool), repr=False)
    rows: np.ndarray = field(default_factory=lambda: _NONE, repr=False)

    @property
    def valid_rows(self) -> int:
        """How many rows are to be sent."""
        return int(np.count_nonzero(self.ok))

    @cached_property
    def valid(self) -> pd.DataFrame:
        """The rows to send: their fields (stripped) and ``_row``. Made when asked: a preview
        needs only their number (taking them out of the chunk copies every value)."""
        if self.values is not None:
            valid: pd.DataFrame = self.values.filter(pa.array(self.ok)).to_pandas()
        else:
            valid = pd.DataFrame(index=pd.RangeIndex(self.valid_rows))
        valid["_row"] = self.rows[self.ok]
        return valid

    @property
    def rejected_rows(self) -> int:
        """How many rows failed the checks."""
        return int(np.count_nonzero(self.bad))

    @cached_property
    def rejected(self) -> pd.DataFrame:
        """The rows that failed the checks, with their original columns. Made when asked: the
        pass over a file needs only their number (the reject files take the cells they need)."""
        return self.chunk[self.bad].reset_index(drop=True)


@dataclass
class _Checked:
    """A chunk after the checks that need no other chunk (see :meth:`Validator.validate_all`)."""

    rows: np.ndarray
    values: pa.Table | None  # the mapped fields, stripped
    hashes: np.ndarray | None  # a fingerprint per row
    bad: np.ndarray
    chunk: pd.DataFrame
    problems: Problems


class Validator:
    """Validates chunks of one file against a campaign schema; remembers rows across chunks.

    One file at a time: a validator is not meant to be shared between threads.
    """

    def __init__(
        self,
        schema: CampaignSchema,
        mapping: ColumnMapping,
        *,
        tmp_dir: Path | None = None,
        semantics: Semantics = DEFAULT_SEMANTICS,
        expected_rows: int | None = None,
    ) -> None:
        self.schema = schema
        self.mapping = mapping
        self.semantics = semantics
        #: the reader's estimate of the file's rows (None: unknown; polars for a big file)
        self.expected_rows = expected_rows
        self._checks = RowChecks(schema.fields, semantics)
        self._specs = {f.name: f for f in schema.fields}
        self._seen = SeenRows(tmp_dir, expected_rows)
        self.duplicates = 0
        #: whether polars' engines are used: decided by the first chunk, then kept for the
        #: file (its rows' fingerprints must all be made one way)
        self.fast: bool | None = None

    def close(self) -> None:
        """Free the duplicate index (also done when the validator is garbage-collected)."""
        self._seen.close()

    def __enter__(self) -> Validator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def validate(self, chunk: pd.DataFrame) -> ChunkResult:
        """Check one chunk of :meth:`pipeline.ingest.read.table.Table.chunks` (in file order)."""
        return self._finish(self._check(chunk))

    def validate_all(
        self, chunks: Iterable[pd.DataFrame]
    ) -> Generator[tuple[pd.DataFrame, ChunkResult], None, None]:
        """(chunk, result) for each chunk, in order; the next chunk is checked meanwhile.

        The checks of the next chunk (regexes, fingerprints: mostly code that releases the GIL)
        run in a helper thread while the caller uses this chunk's result; only the duplicate
        index, which needs the file's order, is kept here. At most one checked chunk waits.
        Closing the generator stops the helper (and closes ``chunks``).
        """

        def checked() -> Iterator[tuple[pd.DataFrame, _Checked]]:
            source = iter(chunks)
            try:
                for chunk in source:
                    yield chunk, self._check(chunk)
            finally:
                close = getattr(source, "close", None)
                if close is not None:
                    close()

        for chunk, done in read_ahead(checked):
            yield chunk, self._finish(done)

    def _check(self, chunk: pd.DataFrame) -> _Checked:
        """Everything that does not depend on earlier chunks: values, checks, problems."""
        chunk = chunk.reset_index(drop=True)
        rows = chunk["_row"].to_numpy(dtype=np.int64)
        header_for = self.mapping.header_for
        stripped = {f: strip_values(arrow_strings(chunk[h])) for f, h in header_for.items()}
        fields = pd.DataFrame(
            {f: pd.Series(a, dtype="str") for f, a in stripped.items()}, index=chunk.index
        )
        if self.fast is None:
            self.fast = self._wants_polars(len(chunk), stripped)
        twin = None
        if self.fast:
            import polars as pl

            twin = pl.DataFrame([pl.Series(f, a) for f, a in stripped.items()])
        failed = self._checks.failures(fields, twin, fast=self.fast)
        column_at = {h: n for n, h in enumerate(chunk.columns)}
        at: list[np.ndarray] = []  # per group of problems: their positions in the chunk,
        column: list[int] = []  # the sheet column they are in,
        problems = Problems()  # and the problems themselves, in the same order
        for name, header in header_for.items():
            for idx, found in self._column_problems(chunk, stripped, rows, name, header, failed):
                at.append(idx)
                column.append(column_at[header])
                problems.extend(found)
        malformed = chunk.attrs.get("malformed", {})
        for row in malformed:
            at.append(np.flatnonzero(rows == row)[:1])
            column.append(-1)
        problems.extend(
            RowProblem(int(row), "", "", RULE_MALFORMED, f"Row {row}: {message}. {_FIX_ROW}")
            for row, message in malformed.items()
        )
        positions = np.concatenate(at) if at else _NONE
        columns = np.repeat(column, [len(a) for a in at]) if at else _NONE
        order = np.lexsort((columns, positions))  # row order, then the sheet's column order
        if (order[1:] < order[:-1]).any():  # (one column's problems are in order already)
            problems = problems.take(order.tolist())
        bad = np.zeros(len(chunk), dtype=bool)
        bad[positions] = True
        chunk.attrs = {}  # (the date/malformed marks are used; filtering would copy them)
        return _Checked(
            rows=rows,
            values=pa.table(stripped) if stripped else None,
            hashes=self._fingerprints(twin, stripped, len(chunk)) if stripped else None,
            bad=bad,
            chunk=chunk,
            problems=problems,
        )

    def _wants_polars(self, rows: int, stripped: Mapping[str, pa.Array | pa.ChunkedArray]) -> bool:
        """Whether polars pays for its load: the first chunk is not the small file's whole
        text, and the file is expected to hold more than :data:`POLARS_FROM_CELLS` cells."""
        text = sum(a.nbytes for a in stripped.values())
        if rows <= SMALL_ROWS and text <= SMALL_BYTES:
            return False
        expected = self.expected_rows
        return expected is None or expected * len(stripped) > POLARS_FROM_CELLS

    @staticmethod
    def _fingerprints(
        twin: pl.DataFrame | None, stripped: Mapping[str, pa.Array | pa.ChunkedArray], rows: int
    ) -> np.ndarray:
        if twin is not None:
            return row_fingerprints(twin)
        return python_fingerprints(list(stripped.values()), rows)

    def _finish(self, checked: _Checked) -> ChunkResult:
        """The part that needs the chunks in order: duplicates of earlier rows."""
        rows, bad = checked.rows, checked.bad
        dups = self._duplicates(checked.hashes, rows, bad)
        ok = ~bad
        ok[[i for i, _p in dups]] = False
        return ChunkResult(
            problems=checked.problems,
            duplicates=[p for _i, p in dups],
            chunk=checked.chunk,
            bad=checked.bad,
            values=checked.values,
            ok=ok,
            rows=rows,
        )

    def _column_problems(
        self,
        chunk: pd.DataFrame,
        stripped: Mapping[str, pa.Array | pa.ChunkedArray],
        rows: np.ndarray,
        name: str,
        header: str,
        failed: Mapping[tuple[str, str], np.ndarray],
    ) -> list[tuple[np.ndarray, Problems]]:
        """One column's problems as (positions, problems) groups; Excel damage first (its
        message replaces the regex one). A problem keeps the value as the person typed it;
        its message shows it stripped.
        """
        required = failed.get((name, RULE_REQUIRED), _NONE)
        pattern = failed.get((name, RULE_PATTERN), _NONE)
        cells = chunk.attrs.get("date_cells", {}).get(header)
        if len(required) == 0 and len(pattern) == 0 and cells is None:
            return []
        values, typed = stripped[name], arrow_strings(chunk[header])
        damage = find_damage(self._specs[name], values, pattern, cells, self.semantics)
        groups: list[tuple[np.ndarray, Problems]] = []
        at = np.fromiter(damage, dtype=np.int64, count=len(damage))
        if len(at):
            row_list, shown, value_list = _cells_at(values, typed, rows, at)
            where = f", column '{header}': '"
            messages = [
                f"Row {row}{where}{v}' {damage[i]}"
                for i, row, v in zip(at.tolist(), row_list, shown, strict=True)
            ]
            groups.append((at, _group(row_list, header, value_list, "excel_damage", messages)))
        for check, idx in ((RULE_REQUIRED, required), (RULE_PATTERN, pattern)):
            if damage:
                idx = idx[~np.isin(idx, at)]
            if len(idx) == 0:
                continue
            row_list, shown, value_list = _cells_at(values, typed, rows, idx)
            head, tail = self._wording(name, header, check)
            if check == RULE_REQUIRED:
                messages = [f"Row {row}{tail}" for row in row_list]
            else:
                messages = [
                    f"Row {row}{head}{v}{tail}" for row, v in zip(row_list, shown, strict=True)
                ]
            groups.append((idx, _group(row_list, header, value_list, check, messages)))
        return groups

    def _wording(self, name: str, header: str, check: str) -> tuple[str, str]:
        """The message for a value failing ``check`` in column ``header``, around the row number
        and the stripped value: ``Row <row><head><value><tail>`` (a required value is empty:
        ``Row <row><tail>``)."""
        where = f", column '{header}'"
        if check == RULE_REQUIRED:
            return "", (
                f"{where}: the value is empty, but field {name} is required. "
                "Fill it in and drop the file again."
            )
        return f"{where}: '", f"' {rule_in_words(self._specs[name], self.semantics)}. {_FIX}"

    def _duplicates(
        self, hashes: np.ndarray | None, rows: np.ndarray, bad: np.ndarray
    ) -> list[tuple[int, RowProblem]]:
        """(position, problem) of each row repeating an earlier row of the file.

        Only rows that passed every check are compared and remembered. A row that failed one
        is rejected with its own problems; and a malformed row's cells (cut or padded to the
        header) are not what the person typed, so a valid row that equals them is not a repeat
        and is sent. (The reader may even hand a malformed row over a chunk early.)
        """
        if hashes is None or len(rows) == 0:
            return []
        kept = np.flatnonzero(~bad)  # the positions compared
        hashes, rows = hashes[kept], rows[kept]
        word, mask = self._seen.probes(hashes)  # computed once for the lookup and the add
        earlier = self._seen.lookup(hashes, (word, mask))
        in_chunk = pd.Series(hashes).duplicated().to_numpy()
        new = ~in_chunk & (earlier == 0)
        self._seen.add(hashes[new], rows[new], (word[new], mask[new]))
        out: list[tuple[int, RowProblem]] = []
        repeat = np.flatnonzero(~new)
        if len(repeat):
            firsts = pd.Series(rows[~in_chunk], index=hashes[~in_chunk])
            first_row = firsts.reindex(pd.Index(hashes[repeat])).to_numpy()
            for n, i in enumerate(repeat.tolist()):
                orig = int(earlier[i]) or int(first_row[n])
                row = int(rows[i])
                msg = (
                    f"Row {row} repeats row {orig} (the same values in every field); it is "
                    "not sent twice. Nothing to do, unless it should differ."
                )
                out.append((int(kept[i]), RowProblem(row, "", "", RULE_DUPLICATE, msg)))
        self.duplicates += len(out)
        return out


def _cells_at(
    values: pa.Array | pa.ChunkedArray,
    typed: pa.Array | pa.ChunkedArray,
    rows: np.ndarray,
    at: np.ndarray,
) -> tuple[list[int], list[str], list[str]]:
    """At positions ``at``: the row numbers, the stripped values and the values as typed."""
    shown = _texts(values, at)
    return rows[at].tolist(), shown, shown if values is typed else _texts(typed, at)


def _group(
    rows: list[int], header: str, values: list[str], rule: str, messages: list[str]
) -> Problems:
    """Problems of one column and rule."""
    n = len(rows)
    return Problems(rows, [header] * n, values, [rule] * n, messages)


def _texts(values: pa.Array | pa.ChunkedArray, at: np.ndarray) -> list[str]:
    """The values at positions ``at`` as Python strings (a missing value as empty)."""
    if len(at) == 0:
        return []
    return pc.fill_null(values.take(pa.array(at, type=pa.int64())), "").to_pylist()  # type: ignore[no-any-return]


#: Per value: its first / last byte may start / end a character Arrow trims as whitespace
#: (ASCII controls and space; U+0085, U+00A0, U+1680, U+2000-U+205F, U+3000 in UTF-8).
_EDGE_FIRST = np.zeros(256, dtype=bool)
_EDGE_FIRST[:0x21] = True
_EDGE_FIRST[[0xC2, 0xE1, 0xE2, 0xE3]] = True
_EDGE_LAST = np.zeros(256, dtype=bool)
_EDGE_LAST[:0x21] = True
_EDGE_LAST[0x80:0xC0] = True  # the last byte of any multi-byte character


def strip_values(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Values without surrounding whitespace (``pc.utf8_trim_whitespace``, as pandas' strip).

    Trimming copies the column, so it is done only when some value's first or last byte could
    belong to a whitespace character (a look at two bytes per value).
    """
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    if any(_may_need_trim(c) for c in chunks):
        return pc.utf8_trim_whitespace(values)
    return values


def _may_need_trim(arr: pa.Array) -> bool:
    if len(arr) == 0:
        return False
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return True
    _validity, offsets_buf, data_buf = arr.buffers()
    if data_buf is None or data_buf.size == 0:
        return False
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    everyone: np.ndarray[Any, np.dtype[np.signedinteger[Any]]] = np.frombuffer(
        offsets_buf, dtype=width
    )
    offsets = everyone[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)
    # an empty value looks at its neighbours' bytes: at worst a needless trim
    if _EDGE_FIRST.take(data.take(offsets[:-1], mode="clip")).any():
        return True
    return bool(_EDGE_LAST.take(data.take(offsets[1:] - 1, mode="clip")).any())
