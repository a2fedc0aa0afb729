"""mapping.py: normalised headers, synonyms, unmapped columns, helper columns, missing fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import MissingColumns
from pipeline.ingest.map import map_columns, normalise_header
from tests.ingest.stage_helpers import SPECS, SYNONYMS


def test_normalise_header_folds_case_space_accents_danish_and_punctuation() -> None:
    assert normalise_header("  PHONE ") == "phone"
    assert normalise_header("Tlf.-nr") == "tlfnr"
    assert normalise_header("Født") == "foedt"
    assert normalise_header("Éléphant") == "elephant"
    assert normalise_header("Post nr./By") == "postnrby"


def test_names_and_synonyms_map_extra_columns_reported_helpers_ignored() -> None:
    headers = ["  NAME", "Tlf.", "Notes", "_row", "_problems", "POSTNR", "phone"]
    m = map_columns(headers, SPECS, SYNONYMS)
    assert m.field_for == {"  NAME": "name", "Tlf.": "phone", "POSTNR": "zip"}
    assert m.unmapped == ["Notes", "phone"]  # the second column for phone is not sent
    assert m.ignored == ["_row", "_problems"]
    assert m.header_for == {"name": "  NAME", "phone": "Tlf.", "zip": "POSTNR"}
    assert m.describe() == (
        "'  NAME' -> name, 'Tlf.' -> phone, 'POSTNR' -> zip; not sent: 'Notes', 'phone'"
    )


def test_synonym_to_unknown_field_is_ignored() -> None:
    m = map_columns(["name", "phone", "Mobil"], SPECS, {"Mobil": "mobile"})
    assert m.unmapped == ["Mobil"]


def test_missing_required_column_names_field_and_closest_header() -> None:
    with pytest.raises(MissingColumns) as info:
        map_columns(["Navn", "Mobile phone", "Notes"], SPECS, {"Navn": "name"}, path=Path("x.csv"))
    assert str(info.value) == (
        "x.csv: no column for required field 'phone' (closest header: 'Mobile phone'). "
        "Headers found: 'Navn', 'Mobile phone', 'Notes'. Rename the column to the field name, "
        "or map it in the config under [campaigns.<code>.columns], then drop the file again."
    )


def test_missing_several_without_close_match() -> None:
    with pytest.raises(
        MissingColumns, match=r"required field 'name', 'phone'\. Headers found: 'x'"
    ):
        map_columns(["x"], SPECS, {})


def test_no_matching_column_at_all_refuses_the_file() -> None:
    """A campaign with only optional fields still needs one column that maps to a field."""
    from pipeline.ingest.fields import FieldSpec

    optional = [FieldSpec("email", "email", ".*", False), FieldSpec("note", "text", ".*", False)]
    with pytest.raises(MissingColumns) as exc:
        map_columns(["Kunde", "Telefon"], optional, {}, path=Path("x.csv"))
    text = str(exc.value)
    assert "no column matches a field" in text
    assert "'email', 'note'" in text
    assert "'Kunde', 'Telefon'" in text
    assert map_columns(["Email", "Kunde"], optional, {}).field_for == {"Email": "email"}
