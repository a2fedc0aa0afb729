"""The reject files' columns and the limits of Excel they keep to.

Shared by the writer (:mod:`pipeline.ingest.report.rejects`, in the command's process) and the
files themselves (:mod:`pipeline.ingest.report.sink`, usually in a process of their own). This
module imports nothing, so the command's process never loads xlsxwriter for these names.
"""

from __future__ import annotations

from typing import NamedTuple

ROW_COLUMN = "_row"
PROBLEMS_COLUMN = "_problems"
#: Excel's cell limit; longer texts are cut (with a note) so the workbook stays valid.
MAX_CELL = 32_767
#: Beyond this many commented cells Excel gets slow to open a file (and xlsxwriter to write
#: one): later bad cells are still highlighted and explained in ``_problems``.
MAX_COMMENTS = 10_000
#: Rows per worksheet, header included (Excel's limit): more rejects continue on the next sheet.
SHEET_ROWS = 1_048_576


class Limits(NamedTuple):
    """Excel's limits a sink keeps to (smaller ones in tests)."""

    sheet_rows: int = SHEET_ROWS
    max_comments: int = MAX_COMMENTS


DEFAULT_LIMITS = Limits()
