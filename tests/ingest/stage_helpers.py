"""Shared builders for the data-stage tests: a campaign schema and a full read→validate run."""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import psutil

from pipeline.config import CampaignSettings
from pipeline.ingest.fields import CampaignSchema, parse_example
from pipeline.ingest.map import ColumnMapping, map_columns
from pipeline.ingest.problems import RowProblem
from pipeline.ingest.read.open import open_table
from pipeline.ingest.read.table import Table
from pipeline.ingest.validate.checks import Validator

PHONE_RE = r"^\s*((\+|00)?[\s\-\(\)]*)?(\d[\s\-\(\)]*){5,25}\s*$"
FULL = {
    "name": "example name, type is varchar, regex used for validation .+",
    "phone": f"example phone, type is phone, regex used for validation {PHONE_RE}",
    "zip": r"example zip, type is varchar, regex used for validation \d{4}",
    "born": r"example born, type is date, regex used for validation \d{4}-\d{2}-\d{2}",
    "city": r"example city, type is varchar, regex used for validation (?<c>[\p{L} .-]+)",
}
PLAIN = {k: FULL[k] for k in ("name", "phone")}
SPECS = parse_example(PLAIN, FULL)
SCHEMA = CampaignSchema("B2B-DK-SPRING", SPECS, "live", "2026-11-27T00:00:00+00:00", "h")
SYNONYMS = {"Tlf.": "phone", "Navn": "name", "Postnr": "zip", "Født": "born", "By": "city"}
OPTIONS = CampaignSettings(columns=SYNONYMS)


@dataclass
class Run:
    """Everything one read → map → validate pass produced."""

    table: Table
    mapping: ColumnMapping
    valid: pd.DataFrame
    rejected: pd.DataFrame
    problems: list[RowProblem] = field(default_factory=list)
    duplicates: list[RowProblem] = field(default_factory=list)

    def triples(self) -> list[tuple[int, str, str]]:
        """(row, column, rule) of every problem, in order."""
        return [(p.row, p.column, p.rule) for p in self.problems]


def run(path: Path, options: CampaignSettings = OPTIONS, chunk_rows: int = 100_000) -> Run:
    """Read, map and validate ``path`` against :data:`SCHEMA`."""
    table = open_table(
        path, options=options, expected_fields=[f.name for f in SPECS], chunk_rows=chunk_rows
    )
    mapping = map_columns(table.headers, SPECS, options.columns, path=path)
    validator = Validator(SCHEMA, mapping, semantics="whole")  # regexes written for whole values
    valid, rejected, problems, dups = [], [], [], []
    for chunk in table.chunks():
        res = validator.validate(chunk)
        valid.append(res.valid)
        rejected.append(res.rejected)
        problems += res.problems
        dups += res.duplicates
    v = pd.concat(valid, ignore_index=True) if valid else pd.DataFrame()
    r = pd.concat(rejected, ignore_index=True) if rejected else pd.DataFrame()
    return Run(table, mapping, v, r, problems, dups)


def writer_children() -> list[psutil.Process]:
    """The reject writers' processes of this one that are running (a writer another test
    dropped stops its process when it is collected)."""
    gc.collect()
    found = []
    for p in psutil.Process().children():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            if "pipeline.ingest.report.sink_process" in " ".join(p.cmdline()):
                found.append(p)
    return found
