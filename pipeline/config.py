"""Settings: ``config/leadpipe.toml`` plus ``LEADPIPE_*`` environment, validated once.

Every problem is collected and raised together as one :class:`ConfigError` naming the key and
where it was read. Secrets (the API password) come only from the environment.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, ConfigProblem
from pipeline.regexmatch import DEFAULT_SEMANTICS, SEMANTICS, Semantics, is_semantics

CONFIG_ENV = "LEADPIPE_CONFIG"
DEFAULT_CONFIG = Path("config/leadpipe.toml")

#: The [ours] paths of the contract (docs/api-contract.md), overridable under ``[api.endpoints]``.
DEFAULT_ENDPOINTS: dict[str, str] = {
    "myaccount": "/myaccount",
    "limits": "/myaccount/request/limits",
    "counts": "/myaccount/request/counts",
    "projects": "/projects",
    "campaigns": "/campaigns",
    "import_example": "/leads/example",
    "leads": "/leads",
    "lead": "/leads/{uniqueId}",
    "searches": "/leads/searches",
    "leads_csv": "/leads/csv",
    "simpleleads": "/simpleleads",
    # the tenant's own API description (ServiceStack conventions; `leadpipe doctor --api`)
    "openapi": "/openapi",
    "metadata_json": "/types/metadata.json",
}

#: Wire names of the query (and body) parameters the client sends, by leadpipe's logical name;
#: overridable under ``[api.params]`` (docs/api-contract.md, "Parameter names").
DEFAULT_PARAMS: dict[str, str] = {
    "example_campaign_code": "campaignCode",
    "example_show_all": "showAllDataEntries",
    "create_campaign_code": "campaignCode",
    "create_data": "data",
    "leads_search": "searchName",
    "leads_from": "from",
    "leads_to": "to",
    "leads_include": "Include",
    "csv_search": "searchName",
    "csv_from": "from",
    "csv_to": "to",
    "csv_use_system_headers": "useSystemHeaders",
    "csv_encoding": "encoding",
    "csv_culture": "culture",
    "simpleleads_projects": "Projects",
    "simpleleads_from": "ModifiedFrom",
    "simpleleads_to": "ModifiedTo",
    "simpleleads_campaigns": "Campaigns",
    "simpleleads_statuses": "Statuses",
    "simpleleads_closures": "LeadClosures",
    "simpleleads_all_open": "AllOpenStatuses",
    "simpleleads_all_closed": "AllClosedStatuses",
    "simpleleads_unique_id": "UniqueId",
    "skip": "skip",
    "take": "take",
}


@dataclass(frozen=True)
class Paths:
    """Folders, absolute after loading (relative ones are taken from the config file's folder)."""

    inbox: Path = Path("inbox")
    outbox: Path = Path("outbox")
    state: Path = Path("state")
    schemas: Path = Path("schemas")


@dataclass(frozen=True)
class ApiSettings:
    """How to reach HeroBase. ``url`` empty means: run against the embedded sandbox."""

    url: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    ca_bundle: str = ""
    retry_after_cap: float = 300.0
    max_retries: int = 5
    retry_total_seconds: float = 120.0
    requests_per_minute: int = 600
    #: the day's request limit; 0 = the tenant's own (docs/api-contract.md, "The daily quota")
    requests_per_day: int = 0
    #: share of the day's limit left to other integrations on the account (0 <= r < 1)
    daily_reserve: float = 0.1
    #: local time (``timezone``) the tenant's day count restarts, unless its headers say [ours]
    daily_reset: str = "00:00"
    pool_size: int = 16
    endpoints: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ENDPOINTS))
    #: wire name of each parameter the client sends (``[api.params]``, defaults DEFAULT_PARAMS)
    params: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    #: what the objects export asks ``/leads`` to include (e.g. ["data", "campaign"]), sent as
    #: ``Include=data,campaign`` under ``params["leads_include"]``; empty: not sent
    leads_include: tuple[str, ...] = ()

    @property
    def embedded(self) -> bool:
        """True when no API URL is configured: the built-in sandbox is used."""
        return not self.url

    def __repr__(self) -> str:  # never show the password, even by accident
        from pipeline.api.transport import safe_url  # (that module imports this one)

        return f"ApiSettings(url={safe_url(self.url)!r}, user={self.user!r}, password=***)"


@dataclass(frozen=True)
class CampaignSettings:
    """Per-campaign reading and mapping options (``[campaigns.CODE]``)."""

    columns: dict[str, str] = field(default_factory=dict)
    encoding: str = ""
    delimiter: str = ""
    sheet: str = ""
    header_row: int = 0
    duplicates: str = "skip"


@dataclass(frozen=True)
class IntakeSettings:
    """Drop-folder and upload behaviour."""

    settle_seconds: float = 5.0
    sweep_seconds: float = 30.0
    polling: bool = False
    concurrency: int = 4
    campaign_parallelism: int = 3
    max_file_mb: int = 200
    duplicates: str = "skip"
    schema_ttl_seconds: float = 60.0
    #: a file that cannot be opened (a workbook whose copy may still be under way) goes back to
    #: the inbox and is tried again; only when it is still unreadable after this long does it
    #: go to failed/
    unreadable_grace_seconds: float = 60.0
    #: a worker busy with a file without any progress (no chunk read, no row sent) this long
    #: makes ``/healthz`` fail
    stuck_seconds: float = 900.0
    #: sheets with more columns are refused before their rows are read
    max_columns: int = 1000
    #: minutes after a file is done, HeroBase is checked for its leads (possible duplicates);
    #: 0 = never (``leadpipe verify FILE`` still works)
    verify_after_minutes: float = 10.0


@dataclass(frozen=True)
class ExportJob:
    """One ``[[exports]]`` entry."""

    name: str
    search: str
    schedule: str = "0 2 * * *"
    window: str = "previous-day"
    start: str = ""
    format: str = "csv"
    encoding: str = "utf-8"
    culture: str = "en-US"
    use_system_headers: bool = True
    filename: str = "{name}/{name}_{from}_{to}.csv"
    keep_days: int = 0


@dataclass(frozen=True)
class StatusSettings:
    """The status page of ``leadpipe run``."""

    host: str = "127.0.0.1"
    port: int = 8377
    enabled: bool = True
    #: Host names the page answers to besides ``host`` and the loopback names (e.g. the name a
    #: reverse proxy forwards); any other ``Host`` header is refused (DNS rebinding).
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxSettings:
    """The embedded sandbox used when no API URL is configured."""

    seed: str = ""
    port: int = 0
    simulate_every: float = 5.0
    timezone: str = "Europe/Copenhagen"


@dataclass(frozen=True)
class ValidationSettings:
    """How a value is checked against its field's regex (``[validation]``)."""

    #: ``search`` (.NET ``Regex.IsMatch``: a match anywhere, anchored where the pattern says) or
    #: ``whole`` (the whole value must match); docs/api-contract.md, "Campaign fields"
    regex_match: Semantics = DEFAULT_SEMANTICS


@dataclass(frozen=True)
class AlertTarget:
    """One ``[[alerts.targets]]``: an Apprise URL, the events it takes and a minimum severity.

    ``url`` is the config file's text, ``${NAME}`` placeholders left in (safe to show); the URL
    with the environment's values (:meth:`secret_url`) is made at load and never shown
    (docs/alerts.md, "Targets").
    """

    url: str
    name: str = ""
    events: tuple[str, ...] = ()  #: event names (docs/alerts.md, "Events"); empty: every event
    min_severity: str = "warning"  #: info, warning or critical
    expanded: InitVar[str] = ""

    def __post_init__(self, expanded: str) -> None:
        object.__setattr__(self, "_secret_url", expanded or self.url)

    def secret_url(self) -> str:
        """The URL with the environment's values in place of ``${NAME}``: only for Apprise."""
        return str(getattr(self, "_secret_url", self.url))


@dataclass(frozen=True)
class FileExpectation:
    """One ``[[alerts.expect]]``: a file for ``campaign`` by ``by`` (local time) on ``days``."""

    campaign: str
    by: str = "10:00"
    days: str = "mon-fri"  #: the day-of-week field of a cron expression (``*``: every day)

    @property
    def schedule(self) -> str:
        """The deadlines as a cron expression in the tenant's time zone."""
        hours, _, minutes = self.by.strip().partition(":")
        return f"{int(minutes or 0)} {int(hours or 0)} * * {self.days.strip()}"


@dataclass(frozen=True)
class AlertSettings:
    """``[alerts]``: where alerts go and when conditions hold (docs/alerts.md). Off (nothing is
    loaded or sent) while no target is configured."""

    targets: tuple[AlertTarget, ...] = ()
    expect: tuple[FileExpectation, ...] = ()
    reject_rate_percent: float = 20.0
    api_down_minutes: float = 10.0
    budget_percent: float = 90.0  #: share of the day's request budget that counts as nearly spent
    disk_free_percent: float = 10.0
    export_grace_minutes: float = 60.0  #: a scheduled export file is late this long after its run
    digest_at: str = "08:00"  #: local time of the daily digest; "" none
    max_per_hour: int = 20  #: messages per target per hour
    status_url: str = ""  #: the status page's address in messages ("" from ``[status]``)

    @property
    def enabled(self) -> bool:
        """Alerts are on when at least one target is configured."""
        return bool(self.targets)


def _alerts(raw: Any, env: Mapping[str, str], col: _Collector) -> AlertSettings:
    """``[alerts]`` with its targets (secrets from the environment) and expectations."""
    if raw is None:  # (no alerts: their modules are not even loaded)
        return AlertSettings()
    from pipeline.alerts.events import EVENT_NAMES, SEVERITY_NAMES
    from pipeline.alerts.targets import ExpandError, expand, literal_secret

    if not isinstance(raw, dict):
        col.add("alerts", "expected a table [alerts]")
        return AlertSettings()
    raw = dict(raw)
    lists: dict[str, list[Any]] = {}
    for name in ("targets", "expect"):
        value = raw.pop(name, None) or []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            col.add(f"alerts.{name}", f"expected [[alerts.{name}]] entries")
            value = []
        lists[name] = value
    targets: list[AlertTarget] = []
    for i, table in enumerate(lists["targets"]):
        key = f"alerts.targets[{i}]"
        url = table.get("url")
        expanded = ""
        if isinstance(url, str) and url.strip():
            if secret := literal_secret(url):
                col.add(
                    f"{key}.url",
                    f"the URL holds {secret} written into the config file: put it in an "
                    "environment variable and write ${NAME} in its place, e.g. "
                    '"mailtos://ops:${LEADPIPE_SMTP_PASSWORD}@smtp.example.com?to=ops@example.com"',
                )
            try:
                expanded = expand(url, env)
            except ExpandError as exc:
                col.add(f"{key}.url", str(exc), "environment")
        else:
            col.add(f"{key}.url", 'expected an Apprise URL like "mailtos://..." or "json://..."')
        target = _section(AlertTarget, table, key, col, expanded=expanded)
        if target is None:
            continue
        for event in target.events:
            if event not in EVENT_NAMES:
                known = ", ".join(EVENT_NAMES)
                col.add(f"{key}.events", f"unknown event {event!r} (known: {known})")
        if target.min_severity not in SEVERITY_NAMES:
            col.add(f"{key}.min_severity", f"must be one of {', '.join(SEVERITY_NAMES)}")
        targets.append(target)
    expect: list[FileExpectation] = []
    for i, table in enumerate(lists["expect"]):
        key = f"alerts.expect[{i}]"
        item = _section(FileExpectation, table, key, col)
        if item is None:
            continue
        if not _is_clock_time(item.by):
            col.add(f"{key}.by", f'expected a time of day like "09:30", got {item.by!r}')
            continue
        if item.by.strip() in ("00:00", "0:00"):
            col.add(
                f"{key}.by",
                'a file "by 00:00" would have to come before its day begins; give a time of '
                'that day (e.g. "23:59" for "by the end of the day")',
            )
            continue
        from pipeline.export.windows import ScheduleError, check_cron  # croniter: only here

        try:
            check_cron(item.schedule)
        except ScheduleError:
            col.add(
                f"{key}.days",
                f'expected cron weekdays like "mon-fri", "1-5" or "*", got {item.days!r}',
            )
            continue
        expect.append(item)
    alerts: AlertSettings | None = _section(
        AlertSettings, raw, "alerts", col, targets=tuple(targets), expect=tuple(expect)
    )
    if alerts is None:
        return AlertSettings()
    if alerts.digest_at and not _is_clock_time(alerts.digest_at):
        col.add(
            "alerts.digest_at",
            f'expected a time of day like "08:00" (or "" for none), got {alerts.digest_at!r}',
        )
    for name in ("reject_rate_percent", "budget_percent", "disk_free_percent"):
        if not 0 <= getattr(alerts, name) <= 100:
            col.add(f"alerts.{name}", "must be a percentage from 0 to 100")
    for name in ("api_down_minutes", "export_grace_minutes"):
        if getattr(alerts, name) < 0:
            col.add(f"alerts.{name}", "must be 0 or more")
    if alerts.max_per_hour < 1:
        col.add("alerts.max_per_hour", "must be at least 1")
    return alerts


@dataclass(frozen=True)
class RetentionSettings:
    """``[retention]``: days each kind of kept data stays; 0 keeps it forever
    (docs/retention.md). Defaults are in the README, "Data kept, and for how long"."""

    originals_days: int = 90  #: originals in ``processed/`` (and ``preview/``)
    rejects_days: int = 90  #: reject and not-sent files in ``rejected/``
    receipts_days: int = 365  #: ``.receipt.txt`` / ``.receipt.json``
    failed_days: int = 30  #: files in ``failed/`` and their ``.error.txt``
    exports_days: int = 30  #: export files in the outbox (and their manifests)
    ledger_days: int = 90  #: row values in the ledger (fingerprints, states and ids stay)
    #: what ``leadpipe forget`` does to an original holding the value: "delete" or "rewrite"
    forget_originals: str = "delete"


#: The ``[retention]`` keys that are periods in days (docs/retention.md).
RETENTION_DAYS = (
    "originals_days",
    "rejects_days",
    "receipts_days",
    "failed_days",
    "exports_days",
    "ledger_days",
)


def _retention(raw: Any, col: _Collector) -> RetentionSettings:
    """``[retention]``: whole days, 0 (keep forever) or more."""
    section: RetentionSettings | None = _section(RetentionSettings, raw, "retention", col)
    if section is None:
        return RetentionSettings()
    for name in RETENTION_DAYS:
        if getattr(section, name) < 0:
            col.add(
                f"retention.{name}",
                f"must be a number of days, or 0 to keep forever; got {getattr(section, name)}",
            )
    if section.forget_originals not in {"delete", "rewrite"}:
        col.add("retention.forget_originals", "must be 'delete' or 'rewrite'")
    return section


#: Where a password for a PostgreSQL ledger is read (libpq's own PGPASSWORD works too).
LEDGER_PASSWORD_ENV = "LEADPIPE_LEDGER_PASSWORD"  # noqa: S105  (a variable name)


@dataclass(frozen=True)
class StateSettings:
    """``[state]``: where the ledger lives (docs/architecture.md, "The ledger on PostgreSQL")."""

    #: "" the SQLite file in the state folder; or "postgresql://user@host:port/db"
    ledger: str = ""
    #: from LEADPIPE_LEDGER_PASSWORD only (never the config file); "" lets libpq find one
    password: str = field(default="", repr=False)

    @property
    def postgresql(self) -> bool:
        """True when the ledger is a PostgreSQL database."""
        return self.ledger.startswith(("postgresql://", "postgres://"))


def _state(raw: Any, env: Mapping[str, str], col: _Collector) -> StateSettings:
    """``[state]``: a PostgreSQL URL without a password (that comes from the environment)."""
    if isinstance(raw, dict) and "password" in raw:
        col.add("state.password", f"passwords are read only from {LEDGER_PASSWORD_ENV}")
        raw = {k: v for k, v in raw.items() if k != "password"}
    section = _section(StateSettings, raw, "state", col) or StateSettings()
    url = section.ledger.strip()
    example = '"postgresql://leadpipe@db.example.com:5432/leadpipe"'
    if url and not url.startswith(("postgresql://", "postgres://")):
        # not echoed: a connection string of another shape may hold a password
        col.add(
            "state.ledger",
            f'expected "" (the SQLite file in the state folder) or a URL like {example}',
        )
    elif url:
        from urllib.parse import parse_qs, urlsplit

        try:
            parts = urlsplit(url)
            secret = parts.password is not None or "password" in parse_qs(parts.query)
        except ValueError:
            col.add("state.ledger", f"expected a URL like {example}")
            secret = False
        if secret:
            col.add(
                "state.ledger",
                "the URL holds a password: remove it and set it in the environment "
                f"({LEDGER_PASSWORD_ENV}, or libpq's PGPASSWORD or ~/.pgpass)",
            )
    return replace(section, ledger=url, password=env.get(LEDGER_PASSWORD_ENV, ""))


#: Where a node's name is read when ``[cluster] node`` is empty (docs/cluster.md, "Nodes").
NODE_ENV = "LEADPIPE_NODE"
#: Folder under ``[paths] state`` holding each node's own state (docs/cluster.md, "Nodes").
NODES_DIR = "nodes"


@dataclass(frozen=True)
class ClusterSettings:
    """``[cluster]``: several ``leadpipe run`` nodes on one drop folder (docs/cluster.md,
    "Nodes").

    Used only with a PostgreSQL ledger; with SQLite nothing here changes anything.
    """

    #: this node's name ("" = $LEADPIPE_NODE, else the host name); names its state folder
    node: str = ""
    #: how often the node renews its registry row and its leases (s)
    heartbeat_seconds: float = 5.0
    #: how long a lease holds without renewal (s); must exceed heartbeat + the API timeouts
    lease_seconds: float = 60.0
    #: the shared state folder (``[paths] state`` as configured); None: not clustered
    shared_state: Path | None = None

    @property
    def enabled(self) -> bool:
        """True when this process is a node of a cluster (a PostgreSQL ledger)."""
        return self.shared_state is not None


def node_name(configured: str, env: Mapping[str, str]) -> str:
    """The node's name: ``$LEADPIPE_NODE``, else ``[cluster] node``, else the host name.

    The environment wins so that every node can run from ONE shared config file. The host
    name is made a safe folder name (letters, digits, ``.``, ``_``, ``-``).
    """
    import re
    import socket

    name = (env.get(NODE_ENV) or "").strip() or configured.strip()
    if name:
        return name
    host = socket.gethostname() or "node"
    return re.sub(r"[^A-Za-z0-9._-]", "-", host)[:64].strip(".") or "node"


def _cluster(
    raw: Any, env: Mapping[str, str], api: ApiSettings, col: _Collector, *, used: bool
) -> ClusterSettings:
    """``[cluster]``: the node's name and the heartbeat and lease times, checked together
    (``used``: a PostgreSQL ledger; otherwise only the keys and types are checked)."""
    import re

    if isinstance(raw, dict) and "shared_state" in raw:
        col.add("cluster.shared_state", "not a setting (the shared folder is [paths] state)")
        raw = {k: v for k, v in raw.items() if k != "shared_state"}
    section = _section(ClusterSettings, raw, "cluster", col) or ClusterSettings()
    if not used:
        return section
    name = node_name(section.node, env)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        src = "environment" if env.get(NODE_ENV) else None
        col.add(
            "cluster.node",
            f"a node name is 1-64 letters, digits, '.', '_' or '-' (it names a folder), "
            f"got {name!r}",
            src,
        )
    if section.heartbeat_seconds <= 0:
        col.add("cluster.heartbeat_seconds", "must be more than 0")
    # a request already sent when the lease is lost may still be answered (docs/cluster.md,
    # "Leases and fencing"): the lease outlives a heartbeat plus a whole request
    least = section.heartbeat_seconds + api.connect_timeout + api.read_timeout
    if section.lease_seconds <= least:
        col.add(
            "cluster.lease_seconds",
            f"must be more than heartbeat_seconds + api.connect_timeout + api.read_timeout "
            f"({section.heartbeat_seconds:g} + {api.connect_timeout:g} + {api.read_timeout:g} "
            f"= {least:g} s), got {section.lease_seconds:g}",
        )
    return replace(section, node=name, shared_state=None)


@dataclass(frozen=True)
class Settings:
    """Everything leadpipe needs, loaded once and passed down."""

    paths: Paths = field(default_factory=Paths)
    api: ApiSettings = field(default_factory=ApiSettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    state: StateSettings = field(default_factory=StateSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    campaigns: dict[str, CampaignSettings] = field(default_factory=dict)
    exports: list[ExportJob] = field(default_factory=list)
    timezone: str = "Europe/Copenhagen"
    source: str = "defaults"

    def campaign(self, code: str) -> CampaignSettings:
        """Options for one campaign (defaults when it has no section)."""
        return self.campaigns.get(code, CampaignSettings(duplicates=self.intake.duplicates))


class _Collector:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[ConfigProblem] = []

    def add(self, key: str, message: str, source: str | None = None) -> None:
        self.problems.append(ConfigProblem(key, source or self.source, message))


def _coerce(value: Any, target: Any, key: str, col: _Collector, source: str) -> Any:
    """Check/convert one value to the declared field type; record a problem if impossible."""
    kind = target if isinstance(target, type) else None
    tname = str(target)
    if kind is bool or tname == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        }:
            return value.lower() in {"1", "true", "yes", "on"}
        col.add(key, f"expected true or false, got {value!r}", source)
    elif kind is int or tname == "int":
        try:
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            col.add(key, f"expected a whole number, got {value!r}", source)
    elif kind is float or tname == "float":
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            col.add(key, f"expected a number, got {value!r}", source)
    elif kind is str or tname == "str":
        if isinstance(value, str):
            return value
        col.add(key, f"expected text, got {value!r}", source)
    elif kind is Path or tname == "Path":
        if isinstance(value, str) and value:
            return Path(value)
        col.add(key, f"expected a folder path, got {value!r}", source)
    elif tname.startswith("tuple[str, ...]"):
        if isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
            return tuple(v.strip() for v in value)
        col.add(
            key, f'expected a list of names like ["leadpipe.example.com"], got {value!r}', source
        )
    elif tname.startswith("dict[str, str]"):
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return {str(k): v for k, v in value.items()}
        col.add(key, "expected a table of text values", source)
    else:
        return value
    return None


def _section(cls: Any, raw: Any, prefix: str, col: _Collector, **extra: Any) -> Any:
    """Build dataclass ``cls`` from table ``raw``, reporting unknown keys and bad types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        col.add(prefix, "expected a table")
        raw = {}
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = dict(extra)
    for k, v in raw.items():
        if k not in known or k in extra:
            col.add(f"{prefix}.{k}", f"unknown key (known: {', '.join(sorted(known))})")
            continue
        coerced = _coerce(v, known[k].type, f"{prefix}.{k}", col, col.source)
        if coerced is not None:
            kwargs[k] = coerced
    try:
        return cls(**kwargs)
    except TypeError as exc:
        col.add(prefix, f"incomplete: {exc}")
        return None


def find_config(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    """The config file to read: ``--config``, else ``$LEADPIPE_CONFIG``, else the default."""
    if explicit is not None:
        return explicit
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load and validate settings once. Raises :class:`ConfigError` listing every problem."""
    env = os.environ if env is None else env
    cfg_path = find_config(path, env)
    raw: dict[str, Any] = {}
    source = "defaults"
    base = Path.cwd()
    if cfg_path is not None:
        source = str(cfg_path)
        if not cfg_path.is_file():
            raise ConfigError([ConfigProblem("config", source, "file not found")])
        try:
            raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([ConfigProblem("config", source, f"not valid TOML: {exc}")]) from exc
        base = cfg_path.resolve().parent
    col = _Collector(source)

    known_top = {"paths", "api", "intake", "status", "sandbox", "campaigns", "exports", "timezone"}
    known_top.update({"validation", "alerts", "retention", "state", "cluster"})
    for k in raw:
        if k not in known_top:
            col.add(k, f"unknown section (known: {', '.join(sorted(known_top))})")

    paths = _section(Paths, raw.get("paths"), "paths", col) or Paths()
    paths = Paths(**{f.name: _absolute(getattr(paths, f.name), base) for f in fields(Paths)})

    api_raw = dict(raw.get("api") or {}) if isinstance(raw.get("api"), dict) else raw.get("api")
    endpoints = dict(DEFAULT_ENDPOINTS)
    if isinstance(api_raw, dict):
        if "password" in api_raw:
            col.add("api.password", "passwords are read only from LEADPIPE_API_PASSWORD")
            api_raw.pop("password")
        ep = api_raw.pop("endpoints", None) or {}
        if not isinstance(ep, dict):
            col.add("api.endpoints", "expected a table")
            ep = {}
        for k, v in ep.items():
            if k not in DEFAULT_ENDPOINTS:
                col.add(
                    f"api.endpoints.{k}",
                    f"unknown endpoint (known: {', '.join(DEFAULT_ENDPOINTS)})",
                )
            elif not isinstance(v, str) or not v.startswith("/"):
                col.add(f"api.endpoints.{k}", f"expected a path starting with '/', got {v!r}")
            else:
                endpoints[k] = v
        params = _api_params(api_raw.pop("params", None), col)
    else:
        params = dict(DEFAULT_PARAMS)
    api = (
        _section(ApiSettings, api_raw, "api", col, endpoints=endpoints, params=params)
        or ApiSettings()
    )
    env_map = {
        "LEADPIPE_API_URL": "url",
        "LEADPIPE_API_USER": "user",
        "LEADPIPE_API_PASSWORD": "password",
    }
    overrides = {attr: env[name] for name, attr in env_map.items() if env.get(name)}
    api = replace(api, **overrides)
    if api.url and not api.url.startswith(("http://", "https://")):
        from pipeline.api.transport import safe_url  # (that module imports this one)

        src = "LEADPIPE_API_URL" if "url" in overrides else source
        shown = safe_url(api.url)
        if "@" in shown:  # no scheme, so no user info found: show none of it
            shown = "***@" + shown.rsplit("@", 1)[1]
        col.add("api.url", f"expected an http(s) URL including /api, got {shown!r}", src)
    if api.url and not (api.user and api.password):
        col.add(
            "api.user",
            "an API URL is set, so LEADPIPE_API_USER and LEADPIPE_API_PASSWORD are needed",
            "environment",
        )
    for name in ("connect_timeout", "read_timeout", "retry_after_cap"):
        if getattr(api, name) <= 0:
            col.add(f"api.{name}", "must be greater than 0")
    if api.requests_per_minute <= 0:
        col.add("api.requests_per_minute", "must be greater than 0")
    if api.requests_per_day < 0:
        col.add("api.requests_per_day", "must be 0 (the tenant's limit) or more")
    if not 0 <= api.daily_reserve < 1:
        col.add(
            "api.daily_reserve",
            f"must be a share from 0 up to (not including) 1, e.g. 0.2 for 20 %; "
            f"got {api.daily_reserve!r}",
        )
    if not _is_clock_time(api.daily_reset):
        col.add("api.daily_reset", f'expected a time of day like "00:00", got {api.daily_reset!r}')

    intake = _section(IntakeSettings, raw.get("intake"), "intake", col) or IntakeSettings()
    if intake.concurrency < 1:
        col.add("intake.concurrency", "must be at least 1")
    if intake.duplicates not in {"skip", "upload"}:
        col.add("intake.duplicates", "must be 'skip' or 'upload'")
    if intake.schema_ttl_seconds < 0:
        col.add("intake.schema_ttl_seconds", "must be 0 (fetch for every file) or more")
    if intake.verify_after_minutes < 0:
        col.add("intake.verify_after_minutes", "must be 0 (off) or more")
    if intake.max_columns < 1:
        col.add("intake.max_columns", "must be 1 or more")
    if intake.stuck_seconds <= 0:
        col.add("intake.stuck_seconds", "must be more than 0")
    if intake.unreadable_grace_seconds < 0:
        col.add("intake.unreadable_grace_seconds", "must be 0 (fail at once) or more")
    status = _section(StatusSettings, raw.get("status"), "status", col) or StatusSettings()
    sandbox = _section(SandboxSettings, raw.get("sandbox"), "sandbox", col) or SandboxSettings()
    validation = (
        _section(ValidationSettings, raw.get("validation"), "validation", col)
        or ValidationSettings()
    )
    if not is_semantics(validation.regex_match):
        col.add(
            "validation.regex_match",
            f"must be one of {', '.join(repr(s) for s in SEMANTICS)}, "
            f"got {validation.regex_match!r}",
        )

    campaigns: dict[str, CampaignSettings] = {}
    craw = raw.get("campaigns") or {}
    if not isinstance(craw, dict):
        col.add("campaigns", "expected tables [campaigns.CODE]")
        craw = {}
    for code, table in craw.items():
        c = _section(CampaignSettings, table, f"campaigns.{code}", col)
        if c is not None and not (isinstance(table, dict) and "duplicates" in table):
            c = replace(c, duplicates=intake.duplicates)
        if c is not None:
            if c.duplicates not in {"skip", "upload"}:
                col.add(f"campaigns.{code}.duplicates", "must be 'skip' or 'upload'")
            campaigns[str(code)] = c

    exports: list[ExportJob] = []
    eraw = raw.get("exports") or []
    if not isinstance(eraw, list):
        col.add("exports", "expected [[exports]] entries")
        eraw = []
    seen: set[str] = set()
    for i, table in enumerate(eraw):
        job = _section(ExportJob, table, f"exports[{i}]", col)
        if job is None:
            continue
        if job.name in seen:
            col.add(f"exports[{i}].name", f"duplicate export name {job.name!r}")
        seen.add(job.name)
        if job.format not in {"csv", "objects"}:
            col.add(f"exports[{i}].format", "must be 'csv' or 'objects'")
        exports.append(job)

    tz = raw.get("timezone", "Europe/Copenhagen")
    if not isinstance(tz, str):
        col.add("timezone", "expected a time zone name like 'Europe/Copenhagen'")
        tz = "Europe/Copenhagen"
    else:
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(tz)
        except Exception:
            col.add("timezone", f"unknown time zone {tz!r}")

    alerts = _alerts(raw.get("alerts"), env, col)
    retention = _retention(raw.get("retention"), col)
    state = _state(raw.get("state"), env, col)
    cluster = _cluster(raw.get("cluster"), env, api, col, used=state.postgresql)
    if state.postgresql:  # a node of a cluster: its own state folder (docs/cluster.md, "Nodes")
        cluster = replace(cluster, shared_state=paths.state)
        paths = replace(paths, state=paths.state / NODES_DIR / cluster.node)

    if col.problems:
        raise ConfigError(col.problems)
    return Settings(
        paths=paths,
        api=api,
        intake=intake,
        status=status,
        sandbox=sandbox,
        validation=validation,
        alerts=alerts,
        retention=retention,
        state=state,
        cluster=cluster,
        campaigns=campaigns,
        exports=exports,
        timezone=tz,
        source=source,
    )


def _api_params(raw: Any, col: _Collector) -> dict[str, str]:
    """``[api.params]`` over DEFAULT_PARAMS: known logical names, plain parameter names."""
    params = dict(DEFAULT_PARAMS)
    if raw is None:
        return params
    if not isinstance(raw, dict):
        col.add("api.params", "expected a table")
        return params
    for k, v in raw.items():
        if k not in DEFAULT_PARAMS:
            col.add(f"api.params.{k}", f"unknown parameter (known: {', '.join(DEFAULT_PARAMS)})")
        elif not isinstance(v, str) or not v or any(c.isspace() or c in "&=?#/" for c in v):
            col.add(f"api.params.{k}", f"expected a parameter name like 'ModifiedFrom', got {v!r}")
        else:
            params[k] = v
    return params


def _is_clock_time(text: str) -> bool:
    """``"HH:MM"`` with a real hour and minute."""
    hours, sep, minutes = text.strip().partition(":")
    ok = sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2
    return bool(ok) and int(hours) < 24 and int(minutes) < 60


def _absolute(p: Path, base: Path) -> Path:
    p = Path(os.path.expanduser(p))
    return p if p.is_absolute() else (base / p).resolve()
