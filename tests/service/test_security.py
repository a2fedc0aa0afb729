"""What the status page answers, what it serves, and who can read the state folder.

The status page talks real HTTP on 127.0.0.1; the state folder is checked after real runs of
the service on the embedded sandbox.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from pipeline.service.run import run_service
from tests.service.conftest import Running, make_settings, service, wait_for

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "B2B-DK-SPRING-demo.xlsx"
CODE = "B2B-DK-SPRING"
PROXY_NAME = "leadpipe.example.com"
SECRET = "root:x:0:0:the secret outside the inbox"


def request(
    svc: Running, path: str, host: str | None = "127.0.0.1", hosts: Sequence[str] = ()
) -> tuple[int, bytes, http.client.HTTPMessage]:
    """GET ``path`` with exactly the ``Host`` header(s) given (None: none at all)."""
    assert svc.info.status_url is not None
    url = urlsplit(svc.info.status_url)
    assert url.hostname is not None
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        for value in [host] if host is not None else list(hosts):
            conn.putheader("Host", value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.headers
    finally:
        conn.close()


def port_of(svc: Running) -> int:
    assert svc.info.status_url is not None
    port = urlsplit(svc.info.status_url).port
    assert port is not None
    return port


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The service (embedded sandbox, a proxy name allowed) after the demo file was processed."""
    root = tmp_path_factory.mktemp("security")
    settings = make_settings(root, settle_seconds=0.2)
    settings = replace(settings, status=replace(settings.status, allowed_hosts=(PROXY_NAME,)))
    with service(settings) as svc:
        shutil.copy(DEMO, root / "inbox" / CODE / DEMO.name)
        wait_for(lambda: len(svc.snapshot()["recent"]) >= 1, 30, "the demo file to finish")
        yield svc


def rejects_path(svc: Running) -> str:
    """``/files/...`` of the demo file's reject workbook."""
    rejects = next(r for r in svc.snapshot()["recent"] if r["name"] == DEMO.name)["rejects"]
    xlsx = next(p for p in rejects if p.endswith(".xlsx"))
    return "/files/" + quote(Path(xlsx).relative_to(svc.settings.paths.inbox).as_posix())


# -- the Host header (DNS rebinding) ---------------------------------------------------------


def test_a_foreign_host_name_gets_neither_the_status_nor_a_reject_file(running: Running) -> None:
    port = port_of(running)
    inbox = str(running.settings.paths.inbox).encode()
    for host in ("attacker.example", f"attacker.example:{port}", f"127.0.0.1.nip.io:{port}"):
        for path in ("/", "/status.json", rejects_path(running), "/metrics", "/healthz"):
            status, body, headers = request(running, path, host)
            assert status == 421, (host, path)
            assert headers.get_content_type() == "text/plain", (host, path)
            assert inbox not in body, (host, path)
            assert not body.startswith(b"PK"), (host, path)


def test_no_host_header_or_two_of_them_are_refused(running: Running) -> None:
    assert request(running, "/status.json", None)[0] == 421
    two = ("127.0.0.1", "attacker.example")
    assert request(running, "/status.json", None, hosts=two)[0] == 421


def test_the_page_answers_to_its_own_names_with_or_without_the_port(running: Running) -> None:
    port = port_of(running)
    names = ["127.0.0.1", "localhost", "LocalHost", "[::1]", PROXY_NAME]
    for host in [*names, *(f"{n}:{port}" for n in names), "::1"]:
        status, body, _ = request(running, "/status.json", host)
        assert status == 200, host
        assert b'"inbox"' in body, host
    status, body, _ = request(running, rejects_path(running), f"localhost:{port}")
    assert status == 200
    assert body[:2] == b"PK"


def test_another_port_is_not_this_page(running: Running) -> None:
    assert request(running, "/status.json", f"127.0.0.1:{port_of(running) + 1}")[0] == 421


# -- headers: scripts, framing, sniffing, referrers ------------------------------------------


def test_the_html_page_forbids_everything_but_its_own_style_sheet(running: Running) -> None:
    status, body, headers = request(running, "/")
    assert status == 200
    csp = headers["Content-Security-Policy"]
    assert csp is not None
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    for name in ("default-src", "base-uri", "form-action", "frame-ancestors"):
        assert directives[name] == ["'none'"], name
    assert "script-src" not in directives  # none: default-src 'none' forbids every script
    assert "'unsafe-inline'" not in csp
    page = body.decode("utf-8")
    assert "<script" not in page.lower()
    assert " style=" not in page  # no inline style attributes: only the one <style> element
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert directives["style-src"] == [f"'sha256-{digest}'"]


def test_every_response_says_nosniff_and_no_referrer(running: Running) -> None:
    paths = ["/", "/status.json", "/metrics", "/healthz", rejects_path(running), "/nope"]
    for path in paths:
        status, _, headers = request(running, path)
        assert status in (200, 404), path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
        assert headers["Content-Security-Policy"], path
    _, _, headers = request(running, "/", "attacker.example")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


# -- /files/: only result files, only as themselves ------------------------------------------


def test_a_hard_link_in_a_result_folder_is_not_served(running: Running, tmp_path: Path) -> None:
    secret = tmp_path / "passwd"
    secret.write_text(SECRET, encoding="utf-8")
    processed = running.settings.paths.inbox / CODE / "processed"
    link = processed / "copy-of-passwd.receipt.txt"
    os.link(secret, link)
    try:
        status, body, _ = request(running, f"/files/{CODE}/processed/{link.name}")
        assert status == 404
        assert SECRET.encode() not in body
    finally:
        link.unlink()


def test_links_pipes_and_folders_under_result_names_are_not_served(
    running: Running, tmp_path: Path
) -> None:
    inbox = running.settings.paths.inbox
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.receipt.txt").write_text(SECRET, encoding="utf-8")
    rejected = inbox / CODE / "rejected"
    made = [
        rejected / "link.receipt.txt",
        rejected / "pipe.receipt.txt",
        rejected / "folder.receipt.txt",
        inbox / "EVIL",
        inbox / "ALIAS",
    ]
    made[0].symlink_to(outside / "x.receipt.txt")
    os.mkfifo(made[1])
    made[2].mkdir()
    (inbox / "EVIL").mkdir()
    (inbox / "EVIL" / "processed").symlink_to(outside)  # a result folder that is a link
    (inbox / "ALIAS").symlink_to(inbox / CODE)  # a campaign folder that is a link
    xlsx = rejects_path(running).split("/")[-1]
    try:
        for path in (
            f"/files/{CODE}/rejected/link.receipt.txt",
            f"/files/{CODE}/rejected/pipe.receipt.txt",
            f"/files/{CODE}/rejected/folder.receipt.txt",
            "/files/EVIL/processed/x.receipt.txt",
            f"/files/ALIAS/rejected/{xlsx}",
            f"/files/.leadpipe/{CODE}/rejected/{xlsx}",
            f"/files/{CODE}/rejected/./{xlsx}",
            f"/files/{CODE}/x/rejected/{xlsx}",
        ):
            status, body, _ = request(running, path)
            assert status == 404, path
            assert SECRET.encode() not in body, path
        assert request(running, f"/files/{CODE}/rejected/{xlsx}")[0] == 200
    finally:
        for p in made[:2]:
            p.unlink()
        made[2].rmdir()
        (inbox / "EVIL" / "processed").unlink()
        (inbox / "EVIL").rmdir()
        (inbox / "ALIAS").unlink()


# -- the state folder: the service user's alone ----------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The umask of the systemd unit (0002: group-writable results), restored afterwards."""
    before = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(before)


def modes(state: Path) -> dict[str, str]:
    """``{relative path: octal mode}`` of the state folder and everything in it."""
    found = {".": oct(stat.S_IMODE(state.stat().st_mode))}
    for p in sorted(state.rglob("*")):
        found[p.relative_to(state).as_posix()] = oct(stat.S_IMODE(p.lstat().st_mode))
    return found


def assert_private(state: Path) -> None:
    found = modes(state)
    names = set(found)
    assert {"ledger.sqlite", "ledger.created", "leadpipe.lock", "status.json"} <= names
    assert any(n.startswith("exports/") and n.endswith(".json") for n in names)  # demo export
    wrong = {
        name: mode
        for name, mode in found.items()
        if mode != oct(0o700 if (state / name).is_dir() else 0o600)
    }
    assert not wrong, f"not private: {wrong} (all: {found})"


def run_once_with_the_demo_file(root: Path) -> None:
    settings = make_settings(root)
    inbox = root / "inbox" / CODE
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO, inbox / f"{len(list(inbox.iterdir()))}-{DEMO.name}")
    result = run_service(settings, once=True, status_page=False)  # embedded sandbox
    assert (result.processed, result.failed) == (1, 0)


@pytest.mark.usefixtures("open_umask")
def test_the_state_folder_and_its_files_are_private_under_an_open_umask(tmp_path: Path) -> None:
    run_once_with_the_demo_file(tmp_path)
    assert_private(tmp_path / "state")
    # results in the shared inbox keep the umask's modes: ops staff open them
    receipt = next((tmp_path / "inbox" / CODE / "processed").glob("*.receipt.txt"))
    assert stat.S_IMODE(receipt.stat().st_mode) == 0o664


@pytest.mark.usefixtures("open_umask")
def test_a_state_folder_left_open_is_made_private_at_start(tmp_path: Path) -> None:
    run_once_with_the_demo_file(tmp_path)
    state = tmp_path / "state"
    for p in [state, *state.rglob("*")]:
        p.chmod(0o775 if p.is_dir() else 0o664)  # as an earlier version left it
    run_once_with_the_demo_file(tmp_path)
    assert_private(state)
