"""Validation: mapped rows -> valid rows + :class:`RowProblem` records (bad data is a value).

Values are stripped of surrounding whitespace before they are checked and sent (the reject
files keep what the person typed). The pandera schema (built in :mod:`pipeline.schema`) checks
required fields and whole-value regexes lazily; :mod:`pipeline.excel_damage` then recognises
values Excel damaged, whose message replaces the regex one. A row identical (in every mapped
field) to an earlier row of the file is a duplicate: listed in ``ChunkResult.duplicates``,
neither sent nor rejected. Row numbers are the ones the spreadsheet shows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from pipeline.excel_damage import find_damage
from pipeline.mapping import ColumnMapping
from pipeline.schema import (
    RULE_PATTERN,
    RULE_REQUIRED,
    CampaignSchema,
    arrow_strings,
    failure_cases,
)
from pipeline.seen import SeenRows

RULE_DUPLICATE = "duplicate"
RULE_MALFORMED = "malformed"
_FIX = "Fix the value and drop the file again."
_FIX_ROW = "Fix the row and drop the file again."


@dataclass(frozen=True)
class RowProblem:
    """One problem: the sheet's row number, the header the person sees, the value, the rule."""

    row: int
    column: str
    value: str
    rule: str
    message: str


@dataclass
class ChunkResult:
    """A validated chunk: rows to send, rows to reject (original columns) and why."""

    valid: pd.DataFrame
    rejected: pd.DataFrame
    problems: list[RowProblem]
    duplicates: list[RowProblem] = field(default_factory=list)


class Validator:
    """Validates chunks of one file against a campaign schema; remembers rows across chunks."""

    def __init__(
        self, schema: CampaignSchema, mapping: ColumnMapping, *, tmp_dir: Path | None = None
    ) -> None:
        self.schema = schema
        self.mapping = mapping
        self._pandera = schema.pandera()
        self._specs = {f.name: f for f in schema.fields}
        self._seen = SeenRows(tmp_dir)
        self.duplicates = 0

    def close(self) -> None:
        """Free the duplicate index (also done when the validator is garbage-collected)."""
        self._seen.close()

    def __enter__(self) -> Validator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def validate(self, chunk: pd.DataFrame) -> ChunkResult:
        """Check one chunk from :meth:`pipeline.reading.Table.chunks`."""
        chunk = chunk.reset_index(drop=True)
        rows = chunk["_row"].to_numpy(dtype=np.int64)
        header_for = self.mapping.header_for
        fields = pd.DataFrame(
            {f: chunk[h].str.strip() for f, h in header_for.items()}, index=chunk.index
        )
        problems: dict[int, list[RowProblem]] = defaultdict(list)
        fc = failure_cases(self._pandera, fields)
        fc_index = fc["index"].to_numpy(dtype=np.int64)
        fc_column = fc["column"].to_numpy(dtype=object)
        fc_check = fc["check"].to_numpy(dtype=object)
        date_cells = chunk.attrs.get("date_cells", {})
        for name, header in header_for.items():
            in_col = fc_column == name
            idx, checks = fc_index[in_col], fc_check[in_col]
            damage = dict(
                find_damage(
                    self._specs[name], fields[name], idx[checks == RULE_PATTERN],
                    date_cells.get(header),
                )
            )  # fmt: skip
            wanted = np.union1d(idx, np.fromiter(damage, dtype=np.int64, count=len(damage)))
            if len(wanted) == 0:
                continue
            original = dict(zip(wanted.tolist(), chunk[header].iloc[wanted].tolist(), strict=True))
            for i, msg in damage.items():
                value = str(original[i])
                text = f"Row {rows[i]}, column '{header}': '{value.strip()}' {msg}"
                problems[i].append(RowProblem(int(rows[i]), header, value, "excel_damage", text))
            for i, check in zip(idx.tolist(), checks.tolist(), strict=True):
                if i in damage:
                    continue
                value = str(original[i])
                problems[i].append(self._problem(int(rows[i]), header, value, name, check))
        for row, message in chunk.attrs.get("malformed", {}).items():
            i = int(np.flatnonzero(rows == row)[0])
            problems[i].insert(
                0, RowProblem(int(row), "", "", RULE_MALFORMED, f"Row {row}: {message}. {_FIX_ROW}")
            )
        bad = np.zeros(len(chunk), dtype=bool)
        bad[list(problems)] = True
        dups = self._duplicates(fields, rows, bad)
        dup_mask = np.zeros(len(chunk), dtype=bool)
        for i, _p in dups:
            dup_mask[i] = True
        ok = ~bad & ~dup_mask
        valid = fields[ok].assign(_row=rows[ok])
        chunk.attrs = {}  # (the date/malformed marks are used; filtering would copy them)
        rejected = chunk[bad]
        position = {h: n for n, h in enumerate(chunk.columns)}
        ordered = [
            p
            for i in sorted(problems, key=lambda i: rows[i])
            for p in sorted(problems[i], key=lambda p: position.get(p.column, -1))
        ]
        return ChunkResult(
            valid=valid.reset_index(drop=True),
            rejected=rejected.reset_index(drop=True),
            problems=ordered,
            duplicates=[p for _i, p in dups],
        )

    def _problem(self, row: int, header: str, value: str, name: str, check: str) -> RowProblem:
        spec = self._specs[name]
        where = f"Row {row}, column '{header}'"
        if check == RULE_REQUIRED:
            text = (
                f"{where}: the value is empty, but field {name} is required. "
                "Fill it in and drop the file again."
            )
            return RowProblem(row, header, value, RULE_REQUIRED, text)
        kind = spec.type if spec.type not in ("varchar", "text", "unknown") else "value"
        text = (
            f"{where}: '{value.strip()}' is not a valid {kind} (field {name} must match "
            f"{spec.regex}). {_FIX}"
        )
        return RowProblem(row, header, value, RULE_PATTERN, text)

    def _duplicates(
        self, fields: pd.DataFrame, rows: np.ndarray, bad: np.ndarray
    ) -> list[tuple[int, RowProblem]]:
        if fields.shape[1] == 0 or len(fields) == 0:
            return []
        arrays = [
            pc.fill_null(_chunked(arrow_strings(fields[c])).cast(pa.large_string()), "")
            for c in fields.columns
        ]
        sep = pa.scalar("\x1f", pa.large_string())
        joined = pc.binary_join_element_wise(*arrays, sep) if len(arrays) > 1 else arrays[0]
        # Python's hash of the row's bytes: 64 bits, fast in C; the process keeps it stable
        as_bytes = joined.cast(pa.large_binary()).to_numpy(zero_copy_only=False)
        hashes = np.fromiter(map(hash, as_bytes), dtype=np.int64, count=len(fields))
        hashes = hashes.view(np.uint64)
        earlier = self._seen.lookup(hashes)
        in_chunk = pd.Series(hashes).duplicated().to_numpy()
        new = ~in_chunk & (earlier == 0)
        self._seen.add(hashes[new], rows[new])
        out: list[tuple[int, RowProblem]] = []
        repeat = np.flatnonzero(~new & ~bad)
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
                out.append((i, RowProblem(row, "", "", RULE_DUPLICATE, msg)))
        self.duplicates += len(out)
        return out


def _chunked(arr: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])
