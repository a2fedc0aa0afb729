"""schema.py: parsing the import example, regex compilation, snapshots, drift, fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.errors import Unavailable
from pipeline.ingest.fields import (
    FieldSpec,
    build_pandera_schema,
    failure_cases,
    load_campaign_schema,
    parse_example,
)
from pipeline.ingest.matching import fullmatch_mask

PHONE_RE = r"^\s*((\+|00)?[\s\-\(\)]*)?(\d[\s\-\(\)]*){5,25}\s*$"
FULL = {
    "name": "example name, type is varchar, regex used for validation .*",
    "phone": f"example phone, type is phone, regex used for validation {PHONE_RE}",
    "note": "example note, type is text, regex used for validation ^[a-z, ]{0,5}$",
    "city": r"example city, type is varchar, regex used for validation ^(?<word>\p{L}+)$",
}
PLAIN = {k: FULL[k] for k in ("name", "phone")}


class FakeClient:
    """Stands in for HeroBaseClient.import_example."""

    def __init__(self, plain: dict[str, str], full: dict[str, str]) -> None:
        self.plain, self.full = plain, full
        self.down = False

    def import_example(self, code: str, all_fields: bool = False) -> dict[str, str]:
        if self.down:
            raise Unavailable("the API did not answer")
        return dict(self.full if all_fields else self.plain)


def test_parse_example_required_type_and_regex_with_commas() -> None:
    specs = parse_example(PLAIN, FULL)
    assert specs == [
        FieldSpec("name", "varchar", ".*", True),
        FieldSpec("phone", "phone", PHONE_RE, True),
        FieldSpec("note", "text", "^[a-z, ]{0,5}$", False),
        FieldSpec("city", "varchar", r"^(?<word>\p{L}+)$", False),
    ]


def test_unparseable_description_checks_nothing_locally() -> None:
    assert parse_example({}, {"x": "whatever"}) == [FieldSpec("x", "unknown", ".*", False)]


def test_fullmatch_whole_value_unicode_and_dotnet_syntax() -> None:
    s = pd.Series(["12345", "12345x", "", "+45 12 34 56 78"], dtype="str")
    assert fullmatch_mask(s, r"\d{5}").tolist() == [True, False, True, False]
    assert fullmatch_mask(s, PHONE_RE).tolist() == [True, False, True, True]
    # alternation must be anchored as a whole, not just its first branch
    assert fullmatch_mask(pd.Series(["ab", "xb"], dtype="str"), "a|b").tolist() == [False, False]
    names = pd.Series(["Søren", "Æble", "x1"], dtype="str")
    assert fullmatch_mask(names, r"\w+").tolist() == [True, True, True]
    assert fullmatch_mask(names, r"(?<w>\p{L}+)").tolist() == [True, True, False]
    # object columns work too
    assert fullmatch_mask(names.astype(object), r"\p{Lu}\w+").tolist() == [True, True, False]


def test_pandera_schema_required_and_pattern() -> None:
    schema = build_pandera_schema(parse_example(PLAIN, FULL))
    frame = pd.DataFrame(
        {
            "name": ["Ann", "", "Bo"],
            "phone": ["12345678", "12ab", ""],
            "note": ["ok", "", "TOO LONG"],
            "city": ["Århus", "", "x9"],
        },
        dtype="str",
    )
    got = sorted(map(tuple, failure_cases(schema, frame).astype(str).values.tolist()))
    assert got == [
        ("1", "name", "required"),
        ("1", "phone", "pattern"),
        ("2", "city", "pattern"),
        ("2", "note", "pattern"),
        ("2", "phone", "required"),
    ]
    ok = frame.iloc[[0]]
    assert failure_cases(schema, ok).empty


def test_snapshot_written_then_used_when_api_down_and_drift_reported(tmp_path: Path) -> None:
    client = FakeClient(PLAIN, FULL)
    live = load_campaign_schema(client, "B2B", tmp_path)
    assert live.source == "live"
    assert live.drift is None
    snap = json.loads((tmp_path / "B2B.json").read_text(encoding="utf-8"))
    assert snap["hash"] == live.hash
    assert [f["name"] for f in snap["fields"]] == ["name", "phone", "note", "city"]
    assert snap["fetched_at"]

    client.down = True
    fallback = load_campaign_schema(client, "B2B", tmp_path)
    assert fallback.source == "snapshot"
    assert fallback.fields == live.fields
    assert fallback.hash == live.hash

    client.down = False
    full2 = {k: v for k, v in FULL.items() if k != "city"}
    full2["email"] = "example email, type is email, regex used for validation .+@.+"
    full2["note"] = FULL["note"].replace("{0,5}", "{0,9}")
    client.full = full2
    client.plain = {**PLAIN, "note": full2["note"]}
    changed = load_campaign_schema(client, "B2B", tmp_path)
    assert changed.drift is not None
    assert changed.drift.added == ["email"]
    assert changed.drift.removed == ["city"]
    assert changed.drift.changed == ["note (regex, required)"]
    assert changed.drift.describe() == (
        "fields added: email; fields removed: city; fields changed: note (regex, required)"
    )
    assert changed.hash != live.hash


def test_no_snapshot_and_api_down_raises(tmp_path: Path) -> None:
    client = FakeClient(PLAIN, FULL)
    client.down = True
    with pytest.raises(Unavailable):
        load_campaign_schema(client, "B2B", tmp_path)


def test_live_schema_from_the_sandbox_then_snapshot_when_it_fails(tmp_path: Path) -> None:
    from pipeline.api import HeroBaseClient
    from pipeline.config import ApiSettings
    from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER, Fault, Sandbox

    with Sandbox() as sb:
        settings = ApiSettings(url=sb.url, user=DEMO_USER, password=DEMO_PASSWORD, max_retries=0)
        client = HeroBaseClient(settings)
        try:
            live = load_campaign_schema(client, "B2B-DK-SPRING", tmp_path)
            assert live.source == "live"
            by_name = {f.name: f for f in live.fields}
            assert [f.name for f in live.fields][:5] == [
                "name",
                "phone",
                "email",
                "segment",
                "note",
            ]
            assert (by_name["name"].required, by_name["phone"].required) == (True, True)
            assert by_name["email"].required is False
            assert by_name["phone"].type == "phone"
            segment = pd.Series(["SMB", "Enterprise", "smb", ""], dtype="str")
            assert fullmatch_mask(segment, by_name["segment"].regex).tolist() == [
                True,
                True,
                False,
                True,
            ]
            sb.add_fault(Fault("status", route="GET /leads/example*", status=503, times=0))
            fallback = load_campaign_schema(client, "B2B-DK-SPRING", tmp_path)
            assert fallback.source == "snapshot"
            assert fallback.fields == live.fields
        finally:
            client.close()


@pytest.mark.parametrize(
    ("pattern", "values", "expected"),
    [
        # look-ahead and backreference: Rust's engine refuses them, Python's checks
        (r"(?=\d{4}$)\d+", ["1234", "123", "12345"], [True, False, False]),
        (r"(\w)\1x", ["aax", "abx"], [True, False]),
        # .NET class subtraction (consonants) means something else to Rust: not sent there
        (r"[a-z-[aeiou]]+", ["bcd", "b]", "bad"], [True, False, False]),
        # Unicode digits and letters, as .NET and Python see them
        (r"\d{3}", ["١٢٣", "12a"], [True, False]),
        (r"\p{Lu}\p{Ll}+", ["Ærø", "ærø"], [True, False]),
        # whole-value: a trailing newline is not swallowed by "$"
        (r"\d+", ["123\n"], [False]),
    ],
)
def test_every_engine_gives_the_python_answer(
    pattern: str, values: list[str], expected: list[bool]
) -> None:
    from pipeline.ingest.matching import compile_regex

    matcher = compile_regex(pattern, "whole")
    python = [matcher is not None and matcher.matches(v) for v in values]
    got = fullmatch_mask(pd.Series(values, dtype="str"), pattern).tolist()
    assert got == python
    assert got == expected
