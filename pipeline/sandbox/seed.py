"""The sandbox's seed: a tenant described in TOML (extra keys are fine).

``load_seed`` turns a path, a parsed dict or ``None`` (the demo tenant) into a :class:`Seed`:
accounts, projects, campaigns with their fields (each with a compiled .NET-flavoured regex),
searches and the answer-shape profile (table ``[tenant.profile]``, see ``profile.py``).
Problems are reported together as one :class:`~pipeline.errors.ConfigError`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import regex

from pipeline.errors import ConfigError, ConfigProblem
from pipeline.regexmatch import (
    DEFAULT_SEMANTICS,
    SEMANTICS,
    PatternError,
    Semantics,
    compile_for,
    is_semantics,
)
from pipeline.sandbox.declared import PARAM_KEYS
from pipeline.sandbox.profile import Profile, ProfileError

DEMO_SEED_PATH = Path(__file__).with_name("demo_tenant.toml")
DEMO_USER = "api@demo.example"
DEMO_PASSWORD = "demo-password"  # noqa: S105  (public demo login)
RESTRICTED_USER = "restricted@demo.example"
RESTRICTED_PASSWORD = "restricted-password"  # noqa: S105

#: The contract's phone regex (docs/api-contract.md).
PHONE_REGEX = r"^\s*((\+|00)?[\s\-\(\)]*)?(\d[\s\-\(\)]*){5,25}\s*$"

#: Default regex per field type; ``dropdown`` is built from its options.
DEFAULT_REGEX: dict[str, str] = {
    "varchar": ".*",
    "text": ".*",
    "phone": PHONE_REGEX,
    "email": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    "date": r"^\d{4}-\d{2}-\d{2}$",
    "integer": r"^-?\d+$",
    "decimal": r"^-?\d+([.,]\d+)?$",
    "boolean": r"^(true|false|1|0)$",
    "dropdown": "",
}
FIELD_TYPES = frozenset(DEFAULT_REGEX)

_NET_SPECIAL = set("\\*+?|{}[]()^$.#")


def net_escape(text: str) -> str:
    """Escape ``text`` the way .NET's ``Regex.Escape`` does (metacharacters and whitespace)."""
    out = []
    for ch in text:
        if ch in _NET_SPECIAL:
            out.append("\\" + ch)
        elif ch == " ":
            out.append("\\ ")
        elif ch in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[ch])
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class FieldDef:
    """One campaign field: name, type, regex (.NET flavour) and whether it is required."""

    name: str
    type: str
    regex: str
    required: bool = False
    options: tuple[str, ...] = ()
    label: str = ""
    samples: tuple[str, ...] = ()
    compiled: Any = field(default=None, compare=False, repr=False)

    def matches(self, value: str) -> bool:
        """True when ``value`` matches the field's regex under the tenant's ``regex_match``
        (:mod:`pipeline.regexmatch`, the client's definition too)."""
        return bool(self.compiled.matches(value))


@dataclass(frozen=True)
class Account:
    """A login with its project rights (``*`` suffix = prefix wildcard) and resource rights."""

    username: str
    password: str = field(repr=False)
    project_rights: tuple[str, ...]
    resource_rights: dict[str, tuple[str, ...]]
    log_request_data: bool = False

    def __post_init__(self) -> None:
        lower = {k.lower(): v for k, v in self.resource_rights.items()}
        object.__setattr__(self, "_rights", lower)

    def can(self, resource: str, verb: str) -> bool:
        """True when the account holds ``verb`` on ``resource`` (resource name in any case)."""
        rights: dict[str, tuple[str, ...]] = self._rights  # type: ignore[attr-defined]
        return verb.upper() in rights.get(resource.lower(), ())

    def reaches(self, project: str) -> bool:
        """True when a project right (exact or ``prefix*``) covers ``project``."""
        for right in self.project_rights:
            if right.endswith("*"):
                if project.startswith(right[:-1]):
                    return True
            elif right == project:
                return True
        return False


@dataclass(frozen=True)
class Project:
    """A project: campaigns belong to one, rights are granted on them."""

    unique_id: str
    name: str


@dataclass(frozen=True)
class Campaign:
    """A campaign with its ordered fields."""

    unique_id: str
    code: str
    name: str
    project: str
    active: bool
    fields: tuple[FieldDef, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {f.name.lower(): f for f in self.fields})

    def field_named(self, name: str) -> FieldDef | None:
        """The field called ``name`` (case-insensitive), or None."""
        found: FieldDef | None = self._by_name.get(name.lower())  # type: ignore[attr-defined]
        return found


@dataclass(frozen=True)
class SearchDef:
    """A saved lead search: campaigns (empty = all) and optional status/closure filters."""

    name: str
    description: str
    campaigns: tuple[str, ...]
    statuses: tuple[str, ...]
    closures: tuple[str, ...]


@dataclass(frozen=True)
class Seed:
    """A whole tenant."""

    timezone: str
    id_suffix: str
    requests_per_minute: int
    requests_per_day: int
    demo_leads: int
    random_seed: int
    accounts: tuple[Account, ...]
    projects: tuple[Project, ...]
    campaigns: tuple[Campaign, ...]
    searches: tuple[SearchDef, ...]
    profile: Profile = field(default_factory=Profile)
    #: ``[tenant] regex_match``: ``search`` (.NET ``Regex.IsMatch``) or ``whole``
    regex_match: Semantics = DEFAULT_SEMANTICS
    #: ``[tenant] strict_params``: only declared parameter names are accepted (else 400)
    strict_params: bool = False
    #: ``[tenant] leads_include``: ``/leads`` declares Include and sends data only when included
    leads_include: bool = False
    #: ``[tenant] describe``: serve ``/types/metadata.json`` and ``/openapi``
    describe: bool = True
    #: ``[tenant.params]``: declared parameter names by logical key (see ``declared.py``)
    param_names: dict[str, str] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        """The tenant's time zone."""
        return ZoneInfo(self.timezone)

    def __post_init__(self) -> None:
        index = {c.unique_id.lower(): c for c in self.campaigns}
        index.update({c.code.lower(): c for c in self.campaigns})
        object.__setattr__(self, "_campaigns", index)

    def campaign(self, code_or_id: str) -> Campaign | None:
        """The campaign with this code or uniqueId (case-insensitive), or None."""
        found: Campaign | None = self._campaigns.get(code_or_id.lower())  # type: ignore[attr-defined]
        return found

    def project(self, name: str) -> Project | None:
        """The project named ``name``, or None."""
        return next((p for p in self.projects if p.name == name), None)


def load_seed(seed: Path | str | Mapping[str, Any] | None = None) -> Seed:
    """Read a seed from a TOML path, a parsed dict, or ``None`` for the demo tenant."""
    source = "seed"
    if seed is None:
        seed = DEMO_SEED_PATH
    if isinstance(seed, str | Path):
        path = Path(seed)
        source = str(path)
        try:
            data: Mapping[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                [ConfigProblem("seed", source, f"cannot read the seed file: {exc.strerror}")]
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([ConfigProblem("seed", source, f"not valid TOML: {exc}")]) from None
    else:
        data = seed
    return _build(data, source)


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[ConfigProblem] = []

    def add(self, key: str, message: str) -> None:
        """Record one problem."""
        self.items.append(ConfigProblem(key, self.source, message))


def _strs(value: Any, key: str, problems: _Problems) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    problems.add(key, "expected a list of strings")
    return ()


def _build(data: Mapping[str, Any], source: str) -> Seed:
    p = _Problems(source)
    tenant = data.get("tenant", {}) or {}
    tzname = str(tenant.get("timezone", "Europe/Copenhagen"))
    try:
        ZoneInfo(tzname)
    except (ZoneInfoNotFoundError, ValueError):
        p.add("tenant.timezone", f"unknown time zone {tzname!r}")
        tzname = "UTC"
    suffix = str(tenant.get("id_suffix", "S3064"))
    if not regex.fullmatch(r"S\d+", suffix):
        p.add("tenant.id_suffix", f"{suffix!r} should look like S3064")

    def _int(key: str, default: int) -> int:
        value = tenant.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            p.add(f"tenant.{key}", "expected a whole number >= 0")
            return default
        return value

    per_minute = _int("requests_per_minute", 600)
    per_day = _int("requests_per_day", 100_000)
    demo_leads = _int("demo_leads", 0)
    random_seed = _int("random_seed", 3064)
    semantics = tenant.get("regex_match", DEFAULT_SEMANTICS)
    if not is_semantics(semantics):
        allowed = ", ".join(repr(s) for s in SEMANTICS)
        p.add("tenant.regex_match", f"must be one of {allowed}, got {semantics!r}")
        semantics = DEFAULT_SEMANTICS
    profile = Profile()
    try:
        profile = Profile.from_mapping(tenant.get("profile", {}))
    except ProfileError as exc:
        for key, message in exc.problems:
            p.add(f"tenant.profile.{key}" if key != "profile" else "tenant.profile", message)
    flags: dict[str, bool] = {}
    for key, default in (("strict_params", False), ("leads_include", False), ("describe", True)):
        flags[key] = tenant.get(key, default)
        if not isinstance(flags[key], bool):
            p.add(f"tenant.{key}", "expected true or false")
            flags[key] = default
    param_names = _param_names(tenant.get("params", {}), p)

    accounts = []
    for i, a in enumerate(data.get("accounts", []) or []):
        key = f"accounts[{i}]"
        if not isinstance(a.get("username"), str) or not isinstance(a.get("password"), str):
            p.add(key, "needs username and password (strings)")
            continue
        rr = a.get("resource_rights", {}) or {}
        rights = {str(k): tuple(v.upper() for v in _strs(vs, key, p)) for k, vs in rr.items()}
        accounts.append(
            Account(
                username=a["username"],
                password=a["password"],
                project_rights=_strs(a.get("project_rights"), f"{key}.project_rights", p),
                resource_rights=rights,
                log_request_data=bool(a.get("log_request_data", False)),
            )
        )

    projects = []
    for i, pr in enumerate(data.get("projects", []) or []):
        if not isinstance(pr.get("name"), str):
            p.add(f"projects[{i}].name", "missing")
            continue
        uid = str(pr.get("unique_id") or f"PRJ{i + 1}{suffix}")
        projects.append(Project(uid, pr["name"]))
    names = {pr.name for pr in projects}

    campaigns = []
    for i, c in enumerate(data.get("campaigns", []) or []):
        key = f"campaigns[{i}]"
        code = c.get("code")
        if not isinstance(code, str) or not code:
            p.add(f"{key}.code", "missing")
            continue
        project = str(c.get("project", ""))
        if project not in names:
            p.add(f"{key}.project", f"unknown project {project!r}")
        fields = tuple(
            _field(f, f"{key}.fields[{j}]", p, semantics) for j, f in enumerate(c.get("fields", []))
        )
        uid = str(c.get("unique_id") or f"CAMP{10062 + i}{suffix}")
        campaigns.append(
            Campaign(
                uid,
                code,
                str(c.get("name", code)),
                project,
                bool(c.get("active", True)),
                tuple(f for f in fields if f is not None),
            )
        )

    searches = []
    for i, s in enumerate(data.get("searches", []) or []):
        key = f"searches[{i}]"
        if not isinstance(s.get("name"), str):
            p.add(f"{key}.name", "missing")
            continue
        camps = _strs(s.get("campaigns"), f"{key}.campaigns", p)
        for code in camps:
            if not any(c.code == code for c in campaigns):
                p.add(f"{key}.campaigns", f"unknown campaign {code!r}")
        searches.append(
            SearchDef(
                s["name"],
                str(s.get("description", "")),
                camps,
                _strs(s.get("statuses"), f"{key}.statuses", p),
                _strs(s.get("closures"), f"{key}.closures", p),
            )
        )
    if p.items:
        raise ConfigError(p.items)
    return Seed(
        tzname,
        suffix,
        per_minute,
        per_day,
        demo_leads,
        random_seed,
        tuple(accounts),
        tuple(projects),
        tuple(campaigns),
        tuple(searches),
        profile,
        regex_match=semantics,
        strict_params=flags["strict_params"],
        leads_include=flags["leads_include"],
        describe=flags["describe"],
        param_names=param_names,
    )


def _param_names(raw: Any, p: _Problems) -> dict[str, str]:
    """``[tenant.params]``: logical key -> the parameter name the tenant declares."""
    if not isinstance(raw, Mapping):
        p.add("tenant.params", "expected a table of parameter names")
        return {}
    names: dict[str, str] = {}
    for key, name in raw.items():
        if key not in PARAM_KEYS:
            known = ", ".join(sorted(PARAM_KEYS))
            p.add(f"tenant.params.{key}", f"unknown parameter (known: {known})")
        elif not isinstance(name, str) or not name.strip():
            p.add(f"tenant.params.{key}", "expected a parameter name")
        else:
            names[str(key)] = name.strip()
    return names


def _field(f: Any, key: str, p: _Problems, semantics: Semantics) -> FieldDef | None:
    if not isinstance(f, Mapping) or not isinstance(f.get("name"), str):
        p.add(key, "a field needs a name")
        return None
    ftype = str(f.get("type", "varchar"))
    if ftype not in FIELD_TYPES:
        p.add(f"{key}.type", f"unknown type {ftype!r} (one of {', '.join(sorted(FIELD_TYPES))})")
        return None
    options = _strs(f.get("options"), f"{key}.options", p)
    pattern = f.get("regex")
    if not isinstance(pattern, str):
        if ftype == "dropdown":
            if not options:
                p.add(f"{key}.options", "a dropdown needs options")
            pattern = "^(" + "|".join(net_escape(o) for o in options) + ")$"
        else:
            pattern = DEFAULT_REGEX[ftype]
    try:
        compiled = compile_for(pattern, semantics)
    except PatternError as exc:
        p.add(f"{key}.regex", f"does not compile: {exc}")
        return None
    return FieldDef(
        name=f["name"],
        type=ftype,
        regex=pattern,
        required=bool(f.get("required", False)),
        options=options,
        label=str(f.get("label", "")),
        samples=_strs(f.get("samples"), f"{key}.samples", p),
        compiled=compiled,
    )
