"""One regex semantics for the client and the sandbox (docs/api-contract.md, "Campaign fields").

The client's verdict (the fast engines through :func:`pattern_masks` and the whole
:class:`Validator`) must equal the sandbox's (:meth:`FieldDef.matches`, as its import handler
applies it) for every pattern of the demo and test tenants, under both semantics.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.ingest import matching
from pipeline.ingest.fields import CampaignSchema, FieldSpec
from pipeline.ingest.map import map_columns
from pipeline.ingest.matching import engine_plan, pattern_masks
from pipeline.ingest.validate.checks import Validator, strip_values
from pipeline.regexmatch import SEMANTICS, PatternError, Semantics, compile_for
from pipeline.sandbox.seed import DEFAULT_REGEX, FieldDef, load_seed

ROOT = Path(__file__).resolve().parents[2]


def _seed_patterns(data: Any) -> Iterator[str]:
    for campaign in data.get("campaigns", []) or []:
        for f in campaign.get("fields", []) or []:
            if isinstance(f, dict) and isinstance(f.get("regex"), str):
                yield f["regex"]


def _test_tenant_patterns() -> Iterator[str]:
    """Every regex in a tenant seed the tests write (TOML text or dicts with a "regex" key)."""
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if "[[campaigns]]" in node.value:
                    try:
                        yield from _seed_patterns(tomllib.loads(node.value))
                    except tomllib.TOMLDecodeError:
                        continue
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "regex"
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, str)
                    ):
                        yield value.value


def _all_patterns() -> list[str]:
    demo = load_seed()
    found = [f.regex for c in demo.campaigns for f in c.fields]
    found += [rx for rx in DEFAULT_REGEX.values() if rx]
    found += list(_test_tenant_patterns())
    found += [  # the stage tests' and the benchmark's schemas, and .NET corner cases
        r"\d{4}", r"\d{4}-\d{2}-\d{2}", r"(?<c>[\p{L} .-]+)", ".+", r"[^@\s]+@[^@\s]+\.[a-z]{2,}",
        r"[\p{L} .-]+", r"^\d+$", r"\d+", "a$", r"a\Z", r"a\z", r"^.*$", "", r"[a-z-[aeiou]]+",
        r"\W+", r"\b\w+\b", r"[^\d]+", r"(?=\d{4}$)\d+", r"(\w)\1", r"\P{L}", r"x{,2}", r"\s",
        r"^(SMB|Enterprise)$", r"(?i)^smb$", r"^[\p{Lu}][\p{Ll}]+$", r"\D", "\n", r"^$",
        *sorted(matching.ANY_VALUE),  # (taken as matching everything under "search")
    ]  # fmt: skip
    unique: list[str] = []
    for rx in found:
        try:
            compile_for(rx)
        except PatternError:
            continue
        if rx not in unique:
            unique.append(rx)
    return unique


PATTERNS = _all_patterns()
COLUMNS = [f"f{i}" for i in range(len(PATTERNS))]


def _sandbox_fields(semantics: Semantics) -> list[FieldDef]:
    seed = load_seed(
        {
            "tenant": {"regex_match": semantics},
            "projects": [{"name": "P"}],
            "campaigns": [
                {
                    "code": "C",
                    "project": "P",
                    "fields": [
                        {"name": c, "type": "varchar", "regex": rx}
                        for c, rx in zip(COLUMNS, PATTERNS, strict=True)
                    ],
                }
            ],
        }
    )
    assert seed.regex_match == semantics
    return list(seed.campaigns[0].fields)


SANDBOX = {s: _sandbox_fields(s) for s in SEMANTICS}


def sandbox_accepts(f: FieldDef, value: str) -> bool:
    """The sandbox's import check of one value (pipeline/sandbox/handlers.py)."""
    return not value or f.matches(value)


CHARS = list(
    "aAbZz059-+ .,@()'_\n\r\t\u00a0\u2028\u0085\u000b"
    "æøåÆØÅßЖж"  # letters
    "١٣५߁\U0001d7d9"  # Unicode digits
    "\u0301\u200d"  # a combining mark, a joiner
    "\U00011de0\u0295"  # a digit and a letter whose Unicode tables differ between the engines
)
WORDS = ["SMB", "Enterprise", "true", "2024-03-01", "+45 12 34 56 78", "Sjælland", "1234", "x@y.dk"]
VALUES = st.builds(
    lambda parts, end: "".join(parts) + end,
    st.lists(st.one_of(st.sampled_from(CHARS), st.sampled_from(WORDS)), max_size=7),
    st.sampled_from(["", "", "", "\n", "\r\n", " "]),
)


def test_the_patterns_cover_the_tenants_and_every_engine() -> None:
    assert len(PATTERNS) > 30
    plans = {engine_plan(p) for p in PATTERNS}
    assert plans == {"fast", "ascii", "python"}


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(VALUES, min_size=1, max_size=12), st.booleans())
def test_client_masks_and_sandbox_agree(values: list[str], without_rust: bool) -> None:
    """Every engine path: Rust (+ Python), and with Rust refusing every pattern, RE2 (+ Python).
    Some values come again (Python is asked once per distinct value)."""
    values = values + values[::2]
    frame = pd.DataFrame({c: pd.Series(values, dtype="str") for c in COLUMNS})
    with pytest.MonkeyPatch.context() as mp:
        if without_rust:
            mp.setattr(matching, "rust_compiles", lambda pattern, semantics: False)
        for semantics in SEMANTICS:
            patterns = dict(zip(COLUMNS, PATTERNS, strict=True))
            masks = pattern_masks(frame, patterns, None, semantics)
            for c, f in zip(COLUMNS, SANDBOX[semantics], strict=True):
                expected = [sandbox_accepts(f, v) for v in values]
                assert masks[c].tolist() == expected, (semantics, f.regex, values, without_rust)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(VALUES, min_size=1, max_size=8))
def test_validator_and_sandbox_agree_on_what_is_sent(values: list[str]) -> None:
    """The whole client path: values stripped, checked by every engine, problems per cell."""
    specs = [FieldSpec(c, "varchar", rx, False) for c, rx in zip(COLUMNS, PATTERNS, strict=True)]
    schema = CampaignSchema("C", specs, "live", "", "h")
    chunk = pd.DataFrame({c: pd.Series(values, dtype="str") for c in COLUMNS})
    chunk["_row"] = range(2, 2 + len(values))
    sent = strip_values(pa.array(values, type=pa.large_string())).to_pylist()
    for semantics in SEMANTICS:
        mapping = map_columns(COLUMNS, specs, {c: c for c in COLUMNS})
        with Validator(schema, mapping, semantics=semantics) as validator:
            result = validator.validate(chunk)
        refused = {(p.row, p.column) for p in result.problems}
        for c, f in zip(COLUMNS, SANDBOX[semantics], strict=True):
            for i, value in enumerate(sent):
                client_ok = (i + 2, c) not in refused
                assert client_ok == sandbox_accepts(f, value), (semantics, f.regex, value)


@pytest.mark.parametrize(
    ("pattern", "value", "search", "whole"),
    [
        (".*", "line one\nline two", True, False),  # .* matches the empty start; . never \n
        ("^.*$", "a\nb", False, False),  # $ only at the end or before a final \n
        (r"^\d+$", "123\n", True, False),  # .NET's $ before a final \n
        (r"^\d+\Z", "123\n", True, False),  # .NET's \Z: end, or before a final \n
        (r"^\d+\z", "123\n", False, False),  # .NET's \z: the very end
        (r"\d{4}", "12345", True, False),  # unanchored: a match anywhere
        (r"^\d{4}$", "12345", False, False),
        (r"\d{3}", "١٢٣", True, True),  # Unicode digits, as .NET
        (r"[a-z-[aeiou]]+", "bcd", True, True),  # .NET class subtraction
        (r"[a-z-[aeiou]]+", "aei", False, False),
        (r"x{,2}", "x{,2}", True, True),  # not a quantifier in .NET: literal text
        (r"[[a]]", "a]", True, True),  # "[" is a literal inside a .NET class
        ("", "anything", True, False),
    ],
)
def test_net_semantics(pattern: str, value: str, search: bool, whole: bool) -> None:
    assert compile_for(pattern, "search").matches(value) is search
    assert compile_for(pattern, "whole").matches(value) is whole
    frame = pd.DataFrame({"v": pd.Series([value], dtype="str")})
    verdicts: list[tuple[Semantics, bool]] = [("search", search), ("whole", whole)]
    for semantics, expected in verdicts:
        got = pattern_masks(frame, {"v": pattern}, None, semantics)["v"].tolist()
        assert got == [expected]


def test_regex_match_is_checked_at_config_load(tmp_path: Path) -> None:
    cfg = tmp_path / "leadpipe.toml"
    cfg.write_text('[validation]\nregex_match = "partial"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(cfg, env={})
    text = str(caught.value)
    assert "validation.regex_match" in text
    assert "'search'" in text
    assert "'whole'" in text
    cfg.write_text('[validation]\nregex_match = "whole"\n', encoding="utf-8")
    assert load_settings(cfg, env={}).validation.regex_match == "whole"
    assert load_settings(None, env={}).validation.regex_match == load_seed().regex_match


def test_seed_regex_match_is_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        load_seed({"tenant": {"regex_match": "fullmatch"}})
    assert "tenant.regex_match" in str(caught.value)


#: every class shorthand, and every Unicode general category by name (RE2 reads scripts too)
_CLASSES = [r"\d", r"\D", r"\w", r"\W", r"\s", r"\S", r"[^\s]", r"[^\d]", r"[^\w]", "."]
_NAMES = ["C", "Cc", "Cf", "Co", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N",
          "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm",
          "So", "Z", "Zl", "Zp", "Zs", "Latin", "Greek"]  # fmt: skip
_CLASSES += [rf"\{p}{{{c}}}" for p in "pP" for c in _NAMES]
_ASCII_BUT_VT = [chr(i) for i in range(128) if i != 0x0B]


@pytest.mark.parametrize("cls", _CLASSES)
def test_re2_reads_every_class_as_python_does_on_ascii_but_the_vertical_tab(cls: str) -> None:
    """Where polars is not used, RE2 decides values of these characters for patterns with class
    shorthands or Unicode classes (matching.py); every such character, every such class."""
    pattern = f"^(?:{cls})$"
    re2 = pc.match_substring_regex(pa.array(_ASCII_BUT_VT), pattern).to_pylist()
    python = [compile_for(pattern).matches(c) for c in _ASCII_BUT_VT]
    assert re2 == python


def test_re2_reads_word_boundaries_as_python_does_on_ascii_but_the_vertical_tab() -> None:
    pairs = [a + b for a in _ASCII_BUT_VT for b in _ASCII_BUT_VT]
    for pattern in (r"a\b", r"\ba", r"\B", r"\b"):
        re2 = pc.match_substring_regex(pa.array(pairs), pattern).to_pylist()
        assert re2 == [compile_for(pattern).matches(v) for v in pairs], pattern


def test_values_re2_may_judge_differently_are_sent_to_python() -> None:
    values = [*(chr(i) for i in range(128)), "æ", "١", "a\u00a0b", "plain text 123"]
    expected = [v == "\x0b" or not v.isascii() for v in values]
    for arr in (pa.array(values), pa.chunked_array([values[:40], values[40:]])):
        assert matching._re2_unsure(arr).tolist() == expected
    no_tab = pa.array([v for v in values if v != "\x0b"], type=pa.large_string())
    assert matching._re2_unsure(no_tab).tolist() == [not v.isascii() for v in no_tab.to_pylist()]
    assert matching._re2_unsure(pa.array(["a", None, "æ"])).tolist() == [False, False, True]
