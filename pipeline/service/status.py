"""The status page of ``leadpipe run``: what ops staff and monitoring need, on loopback.

``/`` an HTML page (refreshes itself), ``/status.json`` the same facts for programs,
``/metrics`` Prometheus, ``/healthz`` liveness, ``/files/<path>`` receipts, reject and error
files (only those, only inside the inbox). A small stdlib server in a thread: no event loop.
Every file name is HTML-escaped: names come from whoever dropped the file.

Only requests for one of the page's own host names are answered (``[status] host``, the
loopback names and ``[status] allowed_hosts``, with or without the port): a web page that
rebinds its own DNS name to 127.0.0.1 gets 421, never the status or a reject file. Every
response forbids scripts, framing and sniffing (Content-Security-Policy, nosniff, no referrer).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pipeline.clock import shown_time
from pipeline.dropfolder.layout import OUTPUT_SUFFIXES, DropFolder, is_ignored
from pipeline.dropfolder.status import FileInFolder
from pipeline.errors import ConfigError, plain_words
from pipeline.files import readable
from pipeline.outcome import FileOutcome
from pipeline.service.metrics import CONTENT_TYPE, Metrics
from pipeline.service.snapshot import ServiceStatus

log = logging.getLogger("leadpipe.status")

#: The service's status now.
StatusSource = Callable[[], ServiceStatus]
_SERVABLE = OUTPUT_SUFFIXES  # the result files leadpipe writes, and only those
#: Host names the page always answers to (besides ``[status] host``), with or without port.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
#: The page's only style sheet; the Content-Security-Policy allows exactly this one by hash.
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;"
    "padding:.3em .6em;text-align:left;vertical-align:top}.ok{color:#176f2c}.bad{color:#b00020}"
    ".failed{color:#b00020;font-weight:bold}a.fix{background:#ffeb9c;color:#5c3c00;"
    "font-weight:bold;padding:0 .3em}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode("utf-8")).digest()).decode("ascii")
#: The page has no script, no form and no frame: nothing but its own style sheet may load.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".csv": "text/csv; charset=utf-8",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def file_link(path: str | None, inbox: Path) -> str:
    """The page's link to a result file (empty when it is not inside the inbox)."""
    if not path:
        return ""
    try:
        rel = Path(path).relative_to(inbox)
    except ValueError:
        return ""
    return "/files/" + quote(rel.as_posix())


def _counts_text(counts: Mapping[str, int], preview: bool = False) -> str:
    order = [
        ("rows_read", "read"),
        ("accepted", "would be uploaded" if preview else "accepted"),
        ("rejected", "rejected"),
        ("refused_by_api", "refused"),
        ("duplicates", "duplicates"),
        ("uncertain", "uncertain"),
    ]
    return ", ".join(f"{counts[k]} {w}" for k, w in order if counts.get(k))


def _eta_text(f: FileInFolder) -> str:
    """`` (~40 rows, done by 2026-03-31 00:01)``: a waiting file's estimate, escaped."""
    if not f.eta:
        return ""
    rows = f"~{f.rows_estimate} rows, " if f.rows_estimate is not None else ""
    starts = f"starts about {shown_time(f.starts)}, " if f.starts else ""
    return escape(f" ({rows}{starts}done by about {shown_time(f.eta)})")


def render_html(status: ServiceStatus) -> str:
    """The status page for one status (pure; every value escaped)."""
    now = status.intake
    inbox = Path(now.inbox)
    e = escape
    parts: list[str] = []
    if now.waiting_for_api and now.resume_at:
        api_line = (
            f'<p class="bad" id="api-state">API: uploads paused until '
            f"{e(shown_time(now.resume_at))} — {e(now.api_problem)}. Files wait in the inbox "
            "and are taken when the day's budget resets.</p>"
        )
    elif now.waiting_for_api:
        api_line = (
            f'<p class="bad" id="api-state">API: waiting for the API — '
            f"{e(now.api_problem)} (next try in {now.retry_in} s). "
            "Files wait in the inbox and are taken when it answers again.</p>"
        )
    elif status.api.problem:  # the last call failed: red at once (pipeline/service/apiwatch.py)
        since = f" since {shown_time(status.api.since)}" if status.api.since else ""
        api_line = (
            f'<p class="bad" id="api-state">API: not working — {e(status.api.problem)}'
            f"{e(since)}. Files wait in the inbox until it works again.</p>"
        )
    else:
        api_line = f'<p class="ok" id="api-state">API: connected ({e(status.api.url)})</p>'
    parts.append(api_line)
    if status.quota is not None:
        cls = "bad" if status.quota.spent else "ok"
        parts.append(
            f'<p class="{cls}" id="quota">API requests today: {e(status.quota.sentence())}</p>'
        )
    if status.api.embedded:
        parts.append(
            '<p id="embedded">Running against the built-in demo sandbox (no API URL '
            "configured): nothing reaches a real dialer.</p>"
        )
    if now.inbox_ok:
        parts.append(f'<p class="ok" id="inbox-state">Inbox: {e(str(inbox))}</p>')
    else:
        parts.append(f'<p class="bad" id="inbox-state">{e(now.inbox_problem)}</p>')

    if now.stray:
        names = ", ".join(e(n) for n in now.stray)
        parts.append(
            f'<p class="bad" id="stray">Not taken: {names} — files at the top of the inbox '
            "belong to no campaign. Move them into the folder named after their campaign.</p>"
        )
    for v in status.verified:
        if v.alarming:
            parts.append(f'<p class="bad verified">{e(v.campaign)}/{e(v.file)}: {e(v.message)}</p>')
    for problem in status.problems:
        parts.append(f'<p class="bad health">Not healthy: {e(problem)}</p>')
    if status.alerts:  # the alert conditions that hold (docs/alerts.md)
        items = "".join(
            f"<li>{e(a.severity.value)}: {e(a.title)} (since {e(shown_time(a.since))})</li>"
            for a in status.alerts
        )
        parts.append(f'<h2>Alerts</h2><ul class="bad" id="alerts">{items}</ul>')
    ignored = [
        f"{e(code)}/{e(item.name)}"
        for code, c in sorted(now.campaigns.items())
        for item in c.ignored
    ]
    if ignored:
        parts.append(
            f'<p id="ignored">Ignored (not a regular file: a folder, link or pipe, never '
            f"opened): {', '.join(ignored)}. Put the spreadsheet itself there instead.</p>"
        )
    totals = now.totals
    parts.append(
        '<p id="counts">'
        f"<b>{now.waiting}</b> waiting · <b>{now.arriving}</b> arriving · "
        f"<b>{now.in_progress}</b> in progress · "
        f"<b>{totals.get(FileOutcome.PROCESSED, 0)}</b> processed · "
        f"<b>{totals.get(FileOutcome.FAILED, 0)}</b> failed (since start)</p>"
    )

    parts.append(
        '<h2>Campaign folders</h2><table id="campaigns"><tr><th>Campaign</th>'
        "<th>Folder</th><th>In progress</th><th>Waiting</th><th>Arriving</th></tr>"
    )
    for code, c in sorted(now.campaigns.items()):
        label = e(code) + (
            "" if c.known else ' <span class="bad">(not a campaign we can reach)</span>'
        )
        waiting_names = ", ".join(e(w.name) + _eta_text(w) for w in c.waiting) or "—"
        settling_names = ", ".join(e(w.name) for w in c.settling) or "—"
        busy = e(c.in_progress or "—")
        if c.progress is not None:  # rows sent of total, rate, likely finish
            busy += f'<br><span class="progress">{e(c.progress.sentence())}</span>'
        parts.append(
            f"<tr><td>{label}</td><td>{e(c.folder)}</td><td>{busy}</td>"
            f"<td>{waiting_names}</td><td>{settling_names}</td></tr>"
        )
    parts.append("</table>")

    parts.append(
        '<h2>Recent files</h2><table id="recent"><tr><th>When</th><th>Campaign</th>'
        "<th>File</th><th>Outcome</th><th>Rows</th><th>Results</th></tr>"
    )
    for r in now.recent:
        links = []
        if href := file_link(r.receipt, inbox):
            links.append(f'<a href="{e(href)}">receipt</a>')
        for p in r.rejects:
            if (href := file_link(p, inbox)) and p.endswith(".xlsx"):
                links.append(f'<a class="fix" href="{e(href)}">rows to fix</a>')
        if href := file_link(r.error, inbox):
            links.append(f'<a href="{e(href)}">why it failed</a>')
        outcome = r.outcome.sentence
        if r.preview and r.outcome is not FileOutcome.PREVIEWED:
            outcome = f"checked (preview): {outcome}"
        note = f"<br><small>{e(plain_words(r.message)[:300])}</small>" if r.message else ""
        outcome_class = ' class="failed"' if r.outcome is FileOutcome.FAILED else ""
        parts.append(
            f"<tr><td>{e(shown_time(r.at))}</td>"
            f"<td>{e(r.campaign)}</td>"
            f"<td>{e(r.name)}</td><td{outcome_class}>{e(outcome)}{note}</td>"
            f"<td>{e(_counts_text(r.counts, r.preview))}</td>"
            f"<td>{' · '.join(links)}</td></tr>"
        )
    parts.append("</table>")

    parts.append(
        '<h2>Scheduled exports</h2><table id="exports"><tr><th>Export</th>'
        "<th>Next run</th><th>State</th><th>Last file</th></tr>"
    )
    for x in status.exports:
        parts.append(
            f"<tr><td>{e(x.name)}</td><td>{e(x.next_run or '—')}</td>"
            f"<td>{e(x.state)}</td>"
            f"<td>{e(x.last_file or '—')}</td></tr>"
        )
    if not status.exports:
        parts.append('<tr><td colspan="4">No exports configured.</td></tr>')
    parts.append("</table>")
    if status.node:
        parts.append(_nodes_html(status))

    body = "\n".join(parts)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta http-equiv="refresh" content="5"><title>leadpipe status</title>'
        f"<style>{_STYLE}</style></head><body><h1>leadpipe</h1>\n{body}\n"
        f'<p id="at">As of {e(shown_time(status.at)) if status.at else "—"} · '
        '<a href="/status.json">status.json</a> · <a href="/metrics">metrics</a></p>'
        "</body></html>"
    )


def _nodes_html(status: ServiceStatus) -> str:
    """The cluster's nodes (docs/cluster.md, "What to monitor"): alive or not, last seen, what
    each holds."""
    e = escape
    rows = [
        f'<h2>Nodes</h2><p id="node">This is node <b>{e(status.node)}</b>.</p>',
        '<table id="nodes"><tr><th>Node</th><th>State</th><th>Host</th><th>Last seen</th>'
        "<th>Holds</th></tr>",
    ]
    if status.nodes_problem:
        rows.insert(1, f'<p class="bad" id="nodes-problem">{e(status.nodes_problem)}</p>')
    for n in status.nodes:
        cls = "ok" if n.alive else "bad"
        this = " (this node)" if n.this else ""
        seen = f"{e(shown_time(n.last_seen))} ({n.seen_ago:.0f} s ago)" if n.last_seen else "—"
        rows.append(
            f'<tr class="node"><td>{e(n.name)}{this}</td><td class="{cls}">{e(n.state)}</td>'
            f"<td>{e(n.host)}{f' pid {n.pid}' if n.pid is not None else ''}</td>"
            f"<td>{seen}</td><td>{e(n.holds_text())}</td></tr>"
        )
    if not status.nodes:
        rows.append('<tr><td colspan="5">No node registered yet.</td></tr>')
    rows.append("</table>")
    return "\n".join(rows)


class StatusServer:
    """Serves the status page from a background thread until :meth:`stop`.

    ``allowed_hosts`` are host names it answers to besides ``host`` and the loopback names
    (``[status] allowed_hosts``: the name a reverse proxy forwards, say).
    """

    def __init__(
        self,
        host: str,
        port: int,
        status: StatusSource,
        metrics: Metrics,
        inbox: Path,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.status = status
        self.metrics = metrics
        self.inbox = Path(inbox)
        handler = _handler_for(self)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"the status page cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "set another port under [status] in the config, or stop what uses it"
            ) from exc
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        bound_port = int(self._server.server_address[1])
        self.allowed_hosts = _host_forms([host, *LOOPBACK_NAMES, *allowed_hosts], bound_port)

    def host_allowed(self, host: str | None) -> bool:
        """True when ``host`` (a request's ``Host`` header) names this page."""
        return host is not None and host.strip().lower() in self.allowed_hosts

    @property
    def url(self) -> str:
        """Where the page is, e.g. ``http://127.0.0.1:8377/``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> StatusServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="leadpipe-status"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def result_file(self, rel: str) -> tuple[str, bytes] | None:
        """Name and content of a result file under the inbox, or None (never anything else).

        Only ``<campaign>/<processed|rejected|failed|preview>/<name>`` with a result suffix, and
        only a regular file with a single link: each folder below the inbox and the file are
        opened without following a symbolic link, so the file read is the one at that place,
        and what is checked is the opened file itself (no race with a swap). A hard link
        (to a file outside the inbox, say), a symlink, a pipe: None.
        """
        parts = unquote(rel).split("/")
        if len(parts) != 3 or any(p in ("", ".", "..") or "\0" in p for p in parts):
            return None
        campaign, place, name = parts
        if is_ignored(campaign):  # not a campaign folder (the hidden work folder, say)
            return None
        if not DropFolder.holds_results(place) or not name.endswith(_SERVABLE):
            return None
        try:
            fd = _open_below(self.inbox, campaign, place, name)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                return None
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return name, fh.read()
        finally:
            os.close(fd)


def _open_below(inbox: Path, *parts: str) -> int:
    """A read descriptor of ``inbox/<parts>``, no component below the inbox a symlink.

    The inbox itself may be a link (it is configured); every folder below it is opened
    relative to the one before with ``O_NOFOLLOW``, and the file too (non-blocking: a pipe
    never hangs the page).
    """
    cloexec = getattr(os, "O_CLOEXEC", 0)
    folder = os.O_RDONLY | os.O_DIRECTORY | cloexec
    fd = os.open(inbox, folder)
    try:
        for part in parts[:-1]:
            below = os.open(part, folder | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = below
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | cloexec, dir_fd=fd)
    finally:
        os.close(fd)


def _host_forms(names: Iterable[str], port: int) -> frozenset[str]:
    """Every ``Host`` header value naming one of ``names``: bare and with ``:port``.

    Lower-cased; an IPv6 address also in brackets (``[::1]``, ``[::1]:8377``); a name written
    with a port is also taken as written.
    """
    forms: set[str] = set()
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        forms.add(name)
        if name.startswith("[") or name.count(":") > 1:  # an IPv6 address
            bracketed = name if name.startswith("[") else f"[{name}]"
            forms.update((bracketed, f"{bracketed}:{port}"))
        elif ":" not in name:
            forms.add(f"{name}:{port}")
    return frozenset(forms)


def _handler_for(server: StatusServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "leadpipe"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: no access log
            return

        def do_GET(self) -> None:
            target = urlsplit(self.path)
            path = target.path
            hosts = self.headers.get_all("Host") or []
            if (
                len(hosts) != 1
                or not server.host_allowed(hosts[0])
                or (target.netloc and not server.host_allowed(target.netloc))
            ):
                # a page whose DNS name now points here (DNS rebinding) or a stray proxy
                self._send(
                    421,
                    b"misdirected request: this page answers only to its own host names "
                    b"([status] host and allowed_hosts in the config)\n",
                    "text/plain; charset=utf-8",
                )
                return
            try:
                if path == "/":
                    self._send(
                        200,
                        readable(render_html(server.status())).encode(),
                        "text/html; charset=utf-8",
                    )
                elif path == "/status.json":
                    body = json.dumps(
                        server.status().to_json(), indent=2, default=str
                    ).encode()  # ASCII
                    self._send(200, body, "application/json")
                elif path == "/metrics":
                    self._send(200, server.metrics.render(), CONTENT_TYPE)
                elif path == "/healthz":
                    now = server.status()
                    problems = list(now.problems)
                    body = json.dumps(
                        {
                            "ok": not problems,
                            "problems": problems,
                            "inbox_ok": now.intake.inbox_ok,
                            "waiting_for_api": now.intake.waiting_for_api,
                        }
                    ).encode()
                    self._send(503 if problems else 200, body, "application/json")
                elif path.startswith("/files/"):
                    found = server.result_file(path[len("/files/") :])
                    if found is None:
                        self._send(404, b"not found\n", "text/plain; charset=utf-8")
                        return
                    name, data = found
                    suffix = Path(name).suffix
                    kind = _TYPES.get(suffix, "application/octet-stream")
                    extra = {}
                    if suffix == ".xlsx":
                        extra["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
                    self._send(200, data, kind, extra)
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8")
            except (BrokenPipeError, ConnectionResetError):
                return
            except Exception:
                log.exception("status page error")
                self._send(500, b"internal error\n", "text/plain; charset=utf-8")

        def _send(
            self, status: int, body: bytes, ctype: str, extra: Mapping[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def end_headers(self) -> None:
            """Every response, the server's own error pages too, carries the safety headers."""
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            super().end_headers()

    return Handler
