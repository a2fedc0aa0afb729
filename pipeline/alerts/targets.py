"""Alert targets: Apprise URLs with credentials from the environment, shown only redacted.

A target's URL is written in the config file with ``${NAME}`` where a secret goes; the
environment's value is put in at load (:func:`expand`), and a password or token written into
the file itself is a config error (:func:`literal_secret`). What people see of a URL, in logs,
the status page and ``leadpipe alerts``, is :func:`redact`: scheme, host and port, nothing from
the user info, the path or the query (docs/alerts.md, "Targets").

Apprise is imported only when a sender is built (:class:`AppriseSender`), never by importing
this module.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pipeline.alerts.events import Alert, Event, Severity

if TYPE_CHECKING:
    from pipeline.config import AlertTarget

log = logging.getLogger("leadpipe.alerts")

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Query keys that carry a secret in Apprise URLs; their values must come from ``${NAME}``.
SECRET_KEYS = frozenset(
    {"pass", "password", "passwd", "secret", "token", "apikey", "api_key", "key", "pw"}
)
#: Apprise schemes whose host and path are themselves the credential (a webhook's signed
#: path, a bot token): such a URL must name the environment (``${NAME}``) somewhere in it.
TOKEN_SCHEMES = frozenset(
    {
        "slack",
        "discord",
        "workflows",
        "workflow",
        "msteams",
        "tgram",
        "pbul",
        "pover",
        "gchat",
        "teams",
    }
)
#: How long one attempt to reach a target may take (connect, then each read): short, so a
#: dead mail server never holds the notifier long (docs/alerts.md, "Storm control").
CONNECT_TIMEOUT = 4.0
READ_TIMEOUT = 8.0


class ExpandError(ValueError):
    """A ``${NAME}`` in a URL names a variable the environment does not have."""


def placeholders(template: str) -> list[str]:
    """The environment variables a URL template names."""
    return _PLACEHOLDER.findall(template)


def expand(template: str, env: Mapping[str, str]) -> str:
    """The URL with each ``${NAME}`` replaced by the environment's value.

    A placeholder that is the whole URL is put in as it is; inside a URL the value is
    percent-encoded, so a password with ``@`` or ``/`` keeps the URL's shape.
    """
    missing = [n for n in placeholders(template) if not env.get(n)]
    if missing:
        raise ExpandError(
            f"the environment variable{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} {'are' if len(missing) > 1 else 'is'} not set; set "
            f"{'them' if len(missing) > 1 else 'it'} in the service's environment (e.g. "
            "/etc/leadpipe/leadpipe.env)"
        )
    whole = _PLACEHOLDER.fullmatch(template.strip())
    if whole:
        return env[whole.group(1)]
    return _PLACEHOLDER.sub(lambda m: quote(env[m.group(1)], safe=""), template)


def literal_secret(template: str) -> str:
    """What secret is written into the URL itself ("" none): a password in the user info, or
    a ``password=``/``token=``-style query value that is not a ``${NAME}``."""
    try:
        parts = urlsplit(template.strip())
    except ValueError:
        return ""
    if parts.netloc and "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        _, colon, password = userinfo.partition(":")
        if colon and password and not _PLACEHOLDER.fullmatch(password):
            return "a password"
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if value and not _PLACEHOLDER.fullmatch(value) and _secret_key(key):
            return f"a secret in {key}="
    if parts.scheme.lower() in TOKEN_SCHEMES and not _PLACEHOLDER.search(template):
        return f"a token in a {parts.scheme}:// URL (its host and path are the token)"
    return ""


def _secret_key(key: str) -> bool:
    """A query key whose value is secret: a known name, a word that says so, or an Apprise
    header or payload argument (``+Authorization=``, ``-apikey=``), which carry credentials."""
    low = key.lower()
    return (
        low in SECRET_KEYS
        or key[:1] in "+-"
        or any(word in low for word in ("token", "secret", "pass", "key", "sig", "auth"))
    )


def redact(url: str) -> str:
    """A URL as people may see it: ``scheme://host:port`` only (no user, path or query).

    Some Apprise URLs put a token where the host goes (``slack://TokenA/...``,
    ``discord://id/token``): a "host" that is not a host name (no dot, not ``localhost``) is
    shown as ``***``.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(a URL that cannot be shown)"
    if not parts.scheme:
        return "(not a URL)"
    if host and "." not in host and ":" not in host and host != "localhost":
        host, port = "***", None
    where = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{where}"


@dataclass(frozen=True)
class Target:
    """A configured target as the notifier uses it (the URL with secrets stays inside)."""

    name: str
    shown: str  #: the redacted URL (:func:`redact`)
    events: frozenset[Event]  #: empty: every event
    min_severity: Severity
    url: str  #: with the environment's values: never logged or shown

    def __repr__(self) -> str:  # never the URL with its secrets
        return f"Target({self.name!r}, {self.shown!r})"

    @property
    def label(self) -> str:
        """How a target is named to people: its name, else its redacted URL."""
        return self.name or self.shown

    def wants(self, alert: Alert) -> bool:
        """Does this target take ``alert`` (its event, at or above its minimum severity)?
        A test message goes to every target."""
        if alert.kind is Event.TEST:
            return True
        if self.events and alert.kind not in self.events:
            return False
        return alert.severity.rank >= self.min_severity.rank

    @classmethod
    def of(cls, cfg: AlertTarget) -> Target:
        url = cfg.secret_url()
        return cls(
            name=cfg.name,
            shown=redact(url),
            events=frozenset(Event(e) for e in cfg.events),
            min_severity=Severity.parse(cfg.min_severity, Severity.WARNING),
            url=url,
        )


class DeliveryFailed(Exception):
    """A target did not take a message (its words say why; never a secret)."""


class _Redact(logging.Filter):
    """Takes the targets' secrets out of what Apprise logs (its messages may quote a URL)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.secrets: list[str] = []

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            found = set(self.secrets) | {s for s in secrets if len(s) >= 4}
            self.secrets = sorted(found, key=len, reverse=True)  # longest first

    def clean(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for s in self.secrets:
            text = text.replace(s, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = self.clean(text)
        if clean != text:
            record.msg, record.args = clean, None
        return True


#: One filter on the ``apprise`` logger per process, holding every target's secrets.
_REDACT = _Redact()


def _secrets_of(target: Target) -> list[str]:
    """What of a target's URL must never be logged: the URL itself, its password, and each
    part of its path and query (tokens live there)."""
    found = [target.url]
    try:
        parts = urlsplit(target.url)
    except ValueError:
        return found
    if parts.password:
        found.append(parts.password)
        found.append(unquote(parts.password))
    found.extend(p for p in parts.path.split("/") if p)
    found.extend(v for _, v in parse_qsl(parts.query) if v)
    return found


@contextlib.contextmanager
def apprise_said() -> Iterator[list[str]]:
    """What Apprise logs as warnings or errors inside the block (secrets taken out): the
    reason a target refused, for ``leadpipe alerts test``."""
    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(_REDACT.clean(record.getMessage()))

    handler = Keep(logging.WARNING)
    logger = logging.getLogger("apprise")
    logger.addHandler(handler)
    try:
        yield said
    finally:
        logger.removeHandler(handler)


def _import_apprise() -> Any:
    """Apprise, imported when alerts are configured. Its e-mail plugin imports the stdlib's
    deprecated ``imghdr`` on Python < 3.13: that warning is Apprise's, not something a
    leadpipe user can act on, so it is not shown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise
        import apprise.plugins.email  # where the warning comes from

    return apprise


class AppriseSender:
    """Sends an alert to one target through Apprise: :meth:`send` returns or raises
    :class:`DeliveryFailed`. Thread-safe; Apprise objects are made once per target."""

    def __init__(self, targets: Iterable[Target]) -> None:
        self._apprise: Any = _import_apprise()
        self._lock = threading.Lock()
        self._objects: dict[str, Any] = {}
        self.targets = list(targets)
        _REDACT.add(v for t in self.targets for v in _secrets_of(t))
        logger = logging.getLogger("apprise")
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)

    def check(self, target: Target) -> str:
        """Why Apprise cannot use the target's URL ("" it can)."""
        try:
            self._object(target)
        except DeliveryFailed as exc:
            return str(exc)
        return ""

    def _object(self, target: Target) -> Any:
        with self._lock:
            obj = self._objects.get(target.url)
            if obj is None:
                obj = self._apprise.Apprise.instantiate(target.url, suppress_exceptions=True)
                if obj is None:
                    raise DeliveryFailed(
                        f"Apprise does not understand the URL of target {target.label} "
                        f"({target.shown}); check it against the Apprise documentation"
                    )
                # short timeouts: a dead server must not hold the notifier
                obj.socket_connect_timeout = CONNECT_TIMEOUT
                obj.socket_read_timeout = READ_TIMEOUT
                self._objects[target.url] = obj
            return obj

    def send(self, target: Target, alert: Alert) -> None:
        """Deliver ``alert`` to ``target``; :class:`DeliveryFailed` when it was not taken."""
        obj = self._object(target)
        kind = self._apprise.NotifyType
        if alert.resolved or alert.kind is Event.TEST:
            notify_type = kind.SUCCESS if alert.resolved else kind.INFO
        elif alert.severity is Severity.CRITICAL:
            notify_type = kind.FAILURE
        elif alert.severity is Severity.WARNING:
            notify_type = kind.WARNING
        else:
            notify_type = kind.INFO
        try:
            ok = obj.notify(body=alert.text(), title=alert.subject, notify_type=notify_type)
        except Exception as exc:  # a plugin's surprise is a failed delivery, nothing more
            raise DeliveryFailed(f"Apprise failed: {type(exc).__name__}") from None
        if not ok:
            raise DeliveryFailed("the target did not take the message")
