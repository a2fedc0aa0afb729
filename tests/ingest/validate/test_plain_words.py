"""Reject messages say what a field wants in words and an example, never its regex."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.ingest.fields import CampaignSchema, FieldSpec, parse_description
from pipeline.ingest.map import map_columns
from pipeline.ingest.report.receipt import Receipt, field_rules, render_receipt
from pipeline.ingest.validate.checks import Validator
from tests.ingest.stage_helpers import PHONE_RE

CHOICES = [f"Seg{i}" for i in range(9)]
CASES = [  # type, regex, the import example's example value, bad value, the words wanted
    ("phone", PHONE_RE, "+45 12345678", "12ab", "is not a phone number like +45 12345678"),
    ("email", r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "ops@firma.dk", "ops@", "is not an email address "
     "like ops@firma.dk"),
    ("date", r"^\d{4}-\d{2}-\d{2}$", "2026-03-01", "1/3", "is not a date like 2026-03-01"),
    ("integer", r"^-?\d+$", "7", "7.5", "is not a whole number like 7"),
    ("decimal", r"^-?\d+([.,]\d+)?$", "12,5", "12,5,1", "is not a number like 12,5"),
    ("boolean", r"^(true|false|1|0)$", "false", "maybe", "is not a yes/no value like false"),
    ("dropdown", "^(" + "|".join(CHOICES) + ")$", "Seg0", "Seg99", "is not one of the choices "
     "for field f (Seg0, Seg1, Seg2, Seg3, Seg4, Seg5 and 3 more)"),
    ("varchar", r"^\d{4}$", "2100", "21 00", "does not have the form the campaign asks for in "
     "field f, like 2100"),
]  # fmt: skip


def message_for(spec: FieldSpec, value: str) -> str:
    schema = CampaignSchema("C", [spec], "live", "", "h")
    validator = Validator(schema, map_columns(["Col"], [spec], {"Col": spec.name}))
    chunk = pd.DataFrame({"Col": [value]}, dtype="str")
    chunk["_row"] = [12]
    problems = validator.validate(chunk).problems
    assert len(problems) == 1
    return problems[0].message


@pytest.mark.parametrize(("kind", "regex", "example", "bad", "words"), CASES)
def test_each_type_in_words_with_the_example(
    kind: str, regex: str, example: str, bad: str, words: str
) -> None:
    spec = parse_description(
        "f", f"example {example}, type is {kind}, regex used for validation {regex}",
        required=False,
    )  # fmt: skip
    assert spec.example == example
    message = message_for(spec, bad)
    assert message.startswith(f"Row 12, column 'Col': '{bad}' {words}"), message
    assert message.endswith("Fix the value and drop the file again.")
    assert regex not in message


def test_an_example_the_regex_refuses_is_not_shown() -> None:
    """The sandbox (like some tenants) puts the field's name where the example goes."""
    phone = parse_description(
        "phone", f"example phone, type is phone, regex used for validation {PHONE_RE}",
        required=True,
    )  # fmt: skip
    assert "like +45 12345678" in message_for(phone, "12ab")
    zip_ = parse_description(
        "f", r"example f, type is varchar, regex used for validation ^\d{4}$", required=False
    )
    assert message_for(zip_, "x").endswith(
        "'x' does not have the form the campaign asks for in field f. "
        "Fix the value and drop the file again."
    )


def test_the_json_receipt_carries_the_rules_and_the_text_does_not() -> None:
    spec = FieldSpec("phone", "phone", PHONE_RE, True, example="+45 12345678")
    receipt = Receipt(file="/in/C/a.csv", sha256="0" * 64, campaign="C")
    receipt.field_rules = field_rules([spec])
    data = receipt.to_json()
    assert data["field_rules"] == {
        "phone": {"type": "phone", "regex": PHONE_RE, "example": "+45 12345678"}
    }
    assert Receipt.from_json(data).field_rules == data["field_rules"]
    assert PHONE_RE not in render_receipt(receipt)
