"""The one error tree of leadpipe, grouped by what the caller should do next.

::

    LeadpipeError                  base; ``action`` says what to do next
    ├── ConfigError                fix the config        (all problems listed together)
    ├── InputError                 reject the file       (file, row, column when known)
    │   ├── FileUnreadable            not CSV/XLSX, corrupt, encrypted, bomb, too big
    │   └── MissingColumns            a required field has no column
    ├── ApiError                   an HTTP exchange with HeroBase went wrong
    │   ├── NotPermitted              401/403: stop and alert (names the missing right)
    │   ├── NotFound                  404: fix the config (campaign, search, route)
    │   ├── Invalid                   400: the request or lead data was refused
    │   ├── Unavailable               certainly not processed: safe to retry later
    │   │   └── RateLimited              429 (``retry_after``)
    │   └── Uncertain                 may have been processed: never resend blindly
    └── StateError                 stop and alert: ledger missing/corrupt, lock held,
                                   folder unwritable

Messages are for people: what happened, where, and what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from pipeline.files import readable


class Action(StrEnum):
    """What the caller should do next about an error: the one next-step vocabulary (errors,
    export failures and the exit codes of the CLI follow it)."""

    FIX_CONFIG = "fix-config"  #: a person fixes a setting (campaign, search, URL, right)
    REJECT_FILE = "reject-file"  #: the input cannot be used as it is: say why, take nothing
    RETRY_LATER = "retry-later"  #: nothing happened that matters: try again later
    STOP = "stop"  #: stop and alert: local state, rights or an internal error need a person


def exit_code(exc: BaseException) -> int:
    """The exit code of the CLI for an error.

    3 fix the configuration (a wrong user or password too), 4 the file cannot be processed, 5 the
    API refused or is unreachable (or the file was still being written), 6 local state (ledger,
    lock, a folder) is unusable, 1 anything else.
    """
    codes: tuple[tuple[type[BaseException], int], ...] = (
        (ConfigError, 3),
        (InputError, 4),
        (ApiError, 5),
        (FileChanged, 5),  # the file was still being written: run again once it is complete
        (StateError, 6),
        (OSError, 6),  # a folder or file leadpipe must write
    )
    if isinstance(exc, ApiError) and exc.status == 401:
        return 3  # wrong user or password: a setting to fix, not "try again later"
    return next((code for kind, code in codes if isinstance(exc, kind)), 1)


class LeadpipeError(Exception):
    """Base of every error leadpipe raises on purpose."""

    action: ClassVar[Action] = Action.STOP


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in the configuration: the key, where it was read, what is wrong."""

    key: str
    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.key} ({self.source}): {self.message}"


class ConfigError(LeadpipeError):
    """The configuration is wrong; every problem is listed."""

    action: ClassVar[Action] = Action.FIX_CONFIG

    def __init__(self, problems: list[ConfigProblem] | str) -> None:
        if isinstance(problems, str):
            problems = [ConfigProblem("config", "leadpipe", problems)]
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"the configuration has {len(problems)} problem(s):\n{lines}")


class InputError(LeadpipeError):
    """An input file cannot be processed as a whole."""

    action: ClassVar[Action] = Action.REJECT_FILE

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        self.path = path
        self.reason = message
        where = f"{readable(path.name)}: " if path is not None else ""
        super().__init__(f"{where}{message}")


class FileUnreadable(InputError):
    """The file is not a readable CSV/XLSX (corrupt, encrypted, a bomb, too large, ...).

    ``incomplete`` marks refusals that a copy still under way also causes (an empty file, a
    workbook cut short): the drop folder tries such a recently written file again before it
    calls it damaged.
    """

    def __init__(self, message: str, *, path: Path | None = None, incomplete: bool = False) -> None:
        super().__init__(message, path=path)
        self.incomplete = incomplete


class MissingColumns(InputError):
    """Required fields have no matching column in the file."""


class FileChanged(LeadpipeError):
    """The file changed while it was read (still being copied): take it again once it settles.

    Not a rejection: rows already sent stay recorded and are never sent twice; the file goes
    back to the inbox and is read again, whole, when it has stopped changing.
    """

    action: ClassVar[Action] = Action.RETRY_LATER

    def __init__(self, what: str, *, path: Path | None = None) -> None:
        self.path = path
        self.what = what
        self.reason = (
            f"the file was still being written ({what}); it will be taken again when it stops "
            "changing. Rows already sent are not sent again."
        )
        where = f"{readable(path.name)}: " if path is not None else ""
        super().__init__(f"{where}{self.reason}")


class StateError(LeadpipeError):
    """Local state is missing, corrupt, locked or unwritable: stop and say so."""


class AccountingError(StateError):
    """The rows of a file do not add up to the rows read: stop rather than report wrongly."""


@dataclass
class FieldError:
    """One per-field error from a ServiceStack ``responseStatus.errors`` entry."""

    field_name: str
    error_code: str
    message: str


@dataclass
class ResponseStatus:
    """The parsed ServiceStack ``responseStatus`` of an error body."""

    error_code: str = ""
    message: str = ""
    errors: list[FieldError] = field(default_factory=list)

    @classmethod
    def from_body(cls, body: Any) -> ResponseStatus | None:
        """Parse ``{"responseStatus": {...}}`` (any key case); None when absent or malformed."""
        if not isinstance(body, dict):
            return None
        rs = next((v for k, v in body.items() if str(k).lower() == "responsestatus"), None)
        if not isinstance(rs, dict):
            return None
        low = {str(k).lower(): v for k, v in rs.items()}
        errs: list[FieldError] = []
        for e in low.get("errors") or []:
            if isinstance(e, dict):
                el = {str(k).lower(): v for k, v in e.items()}
                errs.append(
                    FieldError(
                        field_name=str(el.get("fieldname", "")),
                        error_code=str(el.get("errorcode", "")),
                        message=str(el.get("message", "")),
                    )
                )
        return cls(str(low.get("errorcode", "")), str(low.get("message", "")), errs)


class ApiError(LeadpipeError):
    """An HTTP exchange with HeroBase failed. Carries no credentials, ever."""

    action: ClassVar[Action] = Action.STOP

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        status: int | None = None,
        response_status: ResponseStatus | None = None,
        excerpt: str = "",
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.response_status = response_status
        self.excerpt = excerpt[:2048]
        where = f"{method} {url}".strip()
        code = f" -> {status}" if status is not None else ""
        super().__init__(f"{message} [{where}{code}]" if where else message)


class NotPermitted(ApiError):
    """401 or 403: credentials wrong or a right missing. Stop and alert a person."""

    def __init__(self, message: str, *, missing_right: str | None = None, **kw: Any) -> None:
        self.missing_right = missing_right
        super().__init__(message, **kw)


class NotFound(ApiError):
    """404: unknown campaign, search, lead or route."""

    action: ClassVar[Action] = Action.FIX_CONFIG


class Invalid(ApiError):
    """400: the request or the lead data was refused; ``field_errors`` names each field."""

    action: ClassVar[Action] = Action.REJECT_FILE

    @property
    def field_errors(self) -> list[FieldError]:
        return self.response_status.errors if self.response_status else []


class Unavailable(ApiError):
    """Certainly not processed (connect error, 429, 503): safe to retry later."""

    action: ClassVar[Action] = Action.RETRY_LATER

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class RateLimited(Unavailable):
    """429: over the account's rate limit; ``retry_after`` seconds when the server said."""


class Uncertain(ApiError):
    """The request may have been processed (read timeout, reset after send, 5xx, bad 2xx)."""

    action: ClassVar[Action] = Action.RETRY_LATER


# --------------------------------------------------------------------------- words for people

#: Low-level failures (Python, urllib3, requests class names) in the words a person reads.
_LOW_LEVEL: tuple[tuple[str, str], ...] = (
    ("ConnectionRefusedError", "connection refused"),
    ("NameResolutionError", "the API's address cannot be found"),
    ("gaierror", "the API's address cannot be found"),
    ("ConnectTimeoutError", "timed out"),
    ("ReadTimeoutError", "timed out"),
    ("ConnectTimeout", "timed out"),
    ("ReadTimeout", "timed out"),
    ("TimeoutError", "timed out"),
    ("timeout", "timed out"),
    ("ConnectionResetError", "connection reset"),
    ("ConnectionAbortedError", "connection broken"),
    ("BrokenPipeError", "connection broken"),
    ("RemoteDisconnected", "the API closed the connection"),
    ("SSLCertVerificationError", "the API's certificate could not be checked"),
    ("SSLError", "the API's certificate could not be checked"),
    ("NewConnectionError", "no connection"),
    ("MaxRetryError", "no connection"),
    ("ProtocolError", "connection broken"),
    ("ChunkedEncodingError", "connection broken"),
    ("ConnectionError", "no connection"),
    ("OSError", "no connection"),
)
_WORDS = dict(_LOW_LEVEL)
#: ``(SomeError: [Errno 111] Connection refused)``, ``(ConnectTimeoutError)`` ...
_CLASS_TEXT = re.compile(
    r"\b(?P<name>[A-Za-z_.]*(?:Error|Exception|Timeout|Disconnected|gaierror|timeout)\b"
    r"|(?:[A-Z][a-z0-9]+){2,}(?=:\s))"
    r"(?::\s*(?:\[Errno\s*-?\d+\]\s*)?(?P<text>[^)\]'\"]*))?"
)
_ERRNO = re.compile(r"\[Errno\s*-?\d+\]\s*")
#: the ``[GET https://... -> 503]`` an :class:`ApiError` message ends with
_WHERE = re.compile(r"\s*\[(?:GET|POST|PUT|PATCH|DELETE|HEAD)\s+\S*(?:\s*->\s*(?P<code>\d{3}))?\]")


def plain_words(text: str) -> str:
    """``text`` without exception class names, errno numbers or request lines.

    ``could not connect to the API (ConnectionRefusedError: [Errno 111] Connection refused)
    [GET http://h/api/x]`` -> ``could not connect to the API (connection refused)``; a
    request line with a status becomes ``(the API answered 503)``. The one place such text is
    turned into words for the status page, receipts and the CLI (docs/architecture.md).
    """

    def word(m: re.Match[str]) -> str:
        name = m.group("name").rsplit(".", 1)[-1]
        if name in _WORDS:
            return _WORDS[name]
        rest = (m.group("text") or "").strip()
        return rest.lower() if rest else "an internal error"

    def where(m: re.Match[str]) -> str:
        code = m.group("code")
        return f" (the API answered {code})" if code and code not in text[: m.start()] else ""

    out = _WHERE.sub(where, text)
    out = _CLASS_TEXT.sub(word, out)
    return _ERRNO.sub("", out).strip()


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it (``__cause__``, ``__context__``, a ``reason`` attribute)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        cur = todo.pop(0)
        if any(cur is s for s in seen):
            continue
        seen.append(cur)
        reason = getattr(cur, "reason", None)
        nested = [a for a in cur.args if isinstance(a, BaseException)]
        todo += [e for e in (reason, *nested, cur.__cause__, cur.__context__) if e is not None]
        todo = [e for e in todo if isinstance(e, BaseException)]
    return seen


def plain_reason(exc: BaseException) -> str:
    """Why a call to the API failed, for people: never a class name or an errno.

    e.g. ``the API is not answering (connection refused)``, ``the API is not answering (timed
    out)``, ``the API answered 503``, ``the API refused the user name or password (401)``.
    """
    status = exc.status if isinstance(exc, ApiError) else None
    if status == 401:
        return "the API refused the user name or password (401)"
    if status == 403:
        return "the API refused: the account lacks a right (403)"
    if status == 429:
        return "the API asked leadpipe to slow down (429)"
    if status is not None:
        return f"the API answered {status}"
    names = [type(e).__name__ for e in _causes(exc)]
    for name, words in _LOW_LEVEL:
        if name in names:
            if "certificate" in words or "address" in words:
                return f"the API cannot be reached ({words})"
            return f"the API is not answering ({words})"
    if isinstance(exc, LeadpipeError):
        return plain_words(str(exc))
    return "the API is not answering"
