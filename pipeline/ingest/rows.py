"""Per chunk, between validation and delivery: upload rows, API refusals, reject rows.

Used for each validated chunk (:mod:`pipeline.ingest.chunks`, :mod:`pipeline.ingest.deliver.
delivery`): the valid rows become :class:`~pipeline.ingest.deliver.upload.UploadRow` records
(field data without empty values, with the ledger's fingerprint), rows HeroBase refused become
reject problems on the columns the person sees, and the chunk's rejected rows go to the reject
writer in row order with their original cells.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.crashpoints import CRASH_ENV, crash_point
from pipeline.ingest.deliver.upload import UploadRow
from pipeline.ingest.matching import arrow_strings
from pipeline.ingest.problems import Problems, RowProblem
from pipeline.ingest.report.batch import Reject, RejectBatch
from pipeline.ingest.report.rejects import RejectWriter
from pipeline.ledger import FileKey, Ledger, RowRecord, RowState
from pipeline.ledger.fingerprint import fingerprints


def valid_fingerprints(valid: pd.DataFrame, campaign: str) -> list[str]:
    """The ledger fingerprint of each valid row (computed column-wise)."""
    fields = [c for c in valid.columns if c != "_row"]
    return fingerprints(campaign, {f: arrow_strings(valid[f]) for f in fields})


def upload_rows(valid: pd.DataFrame, campaign: str) -> list[UploadRow]:
    """Valid rows as field data (empty values are not sent) with their fingerprints."""
    fields = [c for c in valid.columns if c != "_row"]
    columns = [valid[f].tolist() for f in fields]  # whole columns: far faster than itertuples
    prints = valid_fingerprints(valid, campaign)
    out: list[UploadRow] = []
    for row, values, print_ in zip(
        valid["_row"].tolist(), zip(*columns, strict=True), prints, strict=True
    ):
        data = {f: t for f, v in zip(fields, values, strict=True) if (t := _text(v))}
        out.append(UploadRow(int(row), data, print_))
    return out


def _text(value: Any) -> str:
    """A cell as text: missing values (None, NaN, NA) as empty."""
    if value is None:
        return ""
    try:
        if value != value:  # NaN / NA
            return ""
    except (TypeError, ValueError):
        return ""
    return str(value)


def api_refusals(
    ledger: Ledger, key: FileKey, rows: Sequence[UploadRow], header_of: Mapping[str, str]
) -> dict[int, list[RowProblem]]:
    """API refusals of this chunk's rows, as reject problems on the original columns."""
    wanted = {r.row: r for r in rows}
    return {
        rec.row: refusal_problems(rec, header_of, wanted[rec.row].data)
        for rec in ledger.rows(key, [RowState.REFUSED])
        if rec.row in wanted
    }


def refusal_problems(
    rec: RowRecord, header_of: Mapping[str, str], data: Mapping[str, str]
) -> list[RowProblem]:
    """One refused row's reasons, as reject problems on the columns the person sees."""
    problems = []
    for d in rec.details:
        name = d.get("field", "")
        header = header_of.get(name, name)
        why = (d.get("message") or d.get("code") or "invalid").rstrip(".")
        problems.append(
            RowProblem(
                rec.row,
                header,
                data.get(name, ""),
                "api",
                f"Row {rec.row}, column '{header}': refused by HeroBase: {why}. "
                "Fix the value and drop the file again.",
            )
        )
    if not problems:
        why = (rec.reason or "invalid").rstrip(".")
        text = f"Row {rec.row}: refused by HeroBase: {why}. Fix the row and drop the file again."
        problems.append(RowProblem(rec.row, "", "", "api", text))
    return problems


def add_rejects(
    writer: RejectWriter,
    chunk: pd.DataFrame,
    headers: Sequence[str],
    problems: Problems,
    refusals: Mapping[int, list[RowProblem]],
) -> None:
    """Add this chunk's rejected rows (original cells) with their problems, in row order.

    A row's refusals come after its other problems. The cells are taken a whole column at a
    time and handed over as one :class:`~pipeline.ingest.report.batch.RejectBatch`.
    """
    if refusals:
        problems = problems.slice(0, len(problems))  # (a copy: the caller's stays as it was)
        problems.extend(p for ps in refusals.values() for p in ps)
    if not problems:
        return
    by_row = np.asarray(problems.rows, dtype=np.int64)
    if (by_row[1:] < by_row[:-1]).any():  # grouped by row: a stable sort keeps a row's order
        order = np.argsort(by_row, kind="stable")
        problems, by_row = problems.take(order.tolist()), by_row[order]
    wanted = np.unique(by_row)
    chunk_rows = chunk["_row"].to_numpy()
    at = np.flatnonzero(np.isin(chunk_rows, wanted))
    at = at[np.argsort(chunk_rows[at], kind="stable")]
    rows = chunk_rows[at].tolist()
    if rows != wanted.tolist():  # a row not in the chunk (none expected) still goes in: nothing
        # is lost; add_many merges by row: the first cells are kept, the problems in order
        records: list[Reject] = [
            (row, c, []) for row, c in zip(rows, _cells(chunk, headers, at), strict=True)
        ]
        writer.add_many([*records, *((p.row, [], [p]) for p in problems)])
    else:
        columns = [_column(chunk, h, at) for h in headers]
        writer.add_batch(RejectBatch(rows, columns, problems))
    if os.environ.get(CRASH_ENV):  # the kill -9 tests: a point after each reject row
        for _ in range(len(wanted)):
            crash_point("rejects")


def _column(chunk: pd.DataFrame, header: str, at: np.ndarray) -> list[str]:
    """The cells of column ``header`` at positions ``at``, as text (a missing cell empty)."""
    return pc.fill_null(arrow_strings(chunk[header]).take(pa.array(at)), "").to_pylist()  # type: ignore[no-any-return]


def _cells(chunk: pd.DataFrame, headers: Sequence[str], at: np.ndarray) -> list[list[str]]:
    """The rows at positions ``at``, each a list of its cells in header order."""
    columns = [_column(chunk, h, at) for h in headers]
    return [list(c) for c in zip(*columns, strict=True)] if columns else [[] for _ in at]
