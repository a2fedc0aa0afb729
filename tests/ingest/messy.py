"""A messy lead file built by the tests, and what leadpipe must make of it.

``;`` separated, windows-1252, a junk title row above the header, Danish letters, blank rows,
bad phones, missing names, phones Excel turned into ``4.5123E+11``, formula payloads, an
invalid e-mail, a value outside a dropdown and a row repeated within the file.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

HEADERS = ["Navn", "Telefon", "E-mail", "Segment", "Note", "Kilde"]
SYNONYMS = {"Navn": "name", "Telefon": "phone"}
TITLE = "Kundeliste forår 2026 – eksporteret fra CRM"
FIX = "Fix the value and drop the file again."


@dataclass
class Expected:
    """What the file holds, row by row (rows numbered as the spreadsheet shows them)."""

    rows_read: int = 0
    blank: list[int] = field(default_factory=list)
    valid: dict[int, dict[str, str]] = field(default_factory=dict)  # row -> field data sent
    bad: dict[int, list[tuple[str, str, str]]] = field(
        default_factory=dict
    )  # (column, value, kind)
    repeats: dict[int, int] = field(default_factory=dict)  # row -> the earlier row it repeats
    cells: dict[int, list[str]] = field(default_factory=dict)  # row -> original cells


def build(path: Path, n: int = 1000) -> Expected:
    """Write the messy file with ``n`` data lines; return what is expected of it."""
    exp = Expected(rows_read=n)
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\r\n")
    w.writerow([TITLE])
    w.writerow(HEADERS)
    last: list[str] = []
    last_row = 0
    for i in range(n):
        row = i + 3
        name, phone = f"Søren Ærø Åsen {i}", f"+45 20 {i:06d}"
        email, segment, note, source = f"lead{i}@firma.dk", "SMB", "Ønsker opkald", "messe"
        bad: list[tuple[str, str, str]] = []
        k = i % 50
        if i % 100 == 99:
            w.writerow([""] * len(HEADERS))
            exp.blank.append(row)
            continue
        if i == n // 2 and last:
            w.writerow(last)
            exp.repeats[row] = last_row
            continue
        if k == 7:
            phone = "12ab"
            bad.append(("Telefon", phone, "pattern"))
        elif k == 13:
            name = ""
            bad.append(("Navn", name, "required"))
        elif k == 21:
            phone = f"4.51{i:02d}E+11"
            bad.append(("Telefon", phone, "excel"))
        elif k == 29:
            email = "ikke-en-email"
            bad.append(("E-mail", email, "pattern"))
        elif k == 37:
            name = '=HYPERLINK("http://evil.example/?x";"klik")'
            phone = "+45 abc"
            bad.append(("Telefon", phone, "pattern"))
        elif k == 43:
            segment = "Medium"
            note = "@SUM(A1:A9)"
            bad.append(("Segment", segment, "pattern"))
        elif k == 45:
            note = "-2+3 ring efter kl. 10"  # a formula-looking note in a valid row
        cells = [name, phone, email, segment, note, source]
        w.writerow(cells)
        exp.cells[row] = cells
        if bad:
            exp.bad[row] = bad
        else:
            last, last_row = cells, row
            exp.valid[row] = {
                "name": name,
                "phone": phone,
                "email": email,
                "segment": segment,
                "note": note,
            }
    path.write_bytes(out.getvalue().encode("windows-1252"))
    return exp


def expected_message(row: int, column: str, value: str, kind: str, regex: dict[str, str]) -> str:
    """The reject message the validator gives for one bad cell."""
    where = f"Row {row}, column '{column}'"
    field_name = {"Navn": "name", "Telefon": "phone", "E-mail": "email", "Segment": "segment"}[
        column
    ]
    if kind == "required":
        return (
            f"{where}: the value is empty, but field {field_name} is required. "
            "Fill it in and drop the file again."
        )
    if kind == "excel":
        return (
            f"{where}: '{value}' looks like a number Excel showed in scientific notation, so "
            "digits are lost. Format the column as Text in Excel and re-enter the values, then "
            "drop the file again."
        )
    if field_name == "segment":
        choices = "field segment (SMB, Enterprise)"
        return f"{where}: '{value}' is not one of the choices for {choices}. {FIX}"
    # words and an example, never the regex (which stays in the JSON receipt)
    assert regex[field_name]
    words = {"phone": "a phone number like +45 12345678", "email": "an email address like "
             "name@example.com"}[field_name]  # fmt: skip
    return f"{where}: '{value}' is not {words} (field {field_name}). {FIX}"
