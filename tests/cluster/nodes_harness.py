"""A harness for kill -9 tests of several ``leadpipe run`` nodes sharing one drop folder.

Pieces, each usable alone (``bench/nodes.py`` reuses them):

- :class:`SandboxProcess`: ``leadpipe sandbox`` as a separate process on 127.0.0.1, its leads
  written through to a SQLite file (``--db``) that the test reads; faults, rate limits and the
  request log through its ``/_sandbox/*`` control routes over real HTTP.
- :class:`Workload`: CSV files for the demo tenant's three reachable campaigns (valid and
  invalid rows, a few files big enough to be mid-upload when a node is killed, unreadable
  files that must end in ``failed/``), generated from a seed, with every valid row remembered.
- :func:`write_config`: ONE config file for every node (ledger SQLite or PostgreSQL, an export
  job firing every minute, optional ``[cluster]`` settings).
- :class:`Node`: ``LEADPIPE_NODE=<name> leadpipe --config C run`` as a child process; start,
  ``kill -9``, restart, SIGTERM; every run's output kept in its own log.
- :class:`OutboxWatch`: a thread that notes every (re)write of an export file (its inode).
- :func:`final_problems`: every promise checked at the end, as a list of readable problems.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.sandbox import DEMO_PASSWORD, DEMO_USER

TIMEZONE = "Europe/Copenhagen"
EXPORT_JOB = "minutely"
EXPORT_SEARCH = "api_import_export"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], object], timeout: float, what: str, step: float = 0.2) -> None:
    """Poll ``cond`` until true; raise ``TimeoutError`` naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        if cond():
            return
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


def leadpipe_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from pipeline.cli import main; main()", *args]


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPIPE_")}
    env.update(LEADPIPE_API_USER=DEMO_USER, LEADPIPE_API_PASSWORD=DEMO_PASSWORD)
    env.pop("PGPASSWORD", None)
    return env


# --- the sandbox, a process of its own ---------------------------------------------------------


class SandboxProcess:
    """``leadpipe sandbox --port P --db FILE`` in a child process, driven over HTTP."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.db = folder / "sandbox.sqlite"
        self.port = free_port()
        self.log = folder / "sandbox.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root + "/api"

    def start(self) -> SandboxProcess:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                leadpipe_cmd("sandbox", "--port", str(self.port), "--db", str(self.db)),
                env=base_env(),
                cwd=self.folder,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._answers, 60, f"the sandbox on port {self.port} (log: {self.log})")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the sandbox exited: {self.log.read_text(errors='replace')}")
        try:
            self.control("GET", "/_sandbox/profile")
        except (OSError, urllib.error.URLError):
            return False
        return True

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def control(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.root + path, data=data, method=method)  # noqa: S310
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (loopback)
            return json.loads(resp.read() or b"null")

    def add_fault(self, **fault: Any) -> int:
        return int(self.control("POST", "/_sandbox/faults", fault)["id"])

    def clear_faults(self) -> None:
        self.control("DELETE", "/_sandbox/faults")

    def faults(self) -> list[dict[str, Any]]:
        return list(self.control("GET", "/_sandbox/faults"))

    def set_rate_limit(self, per_minute: int, per_day: int) -> None:
        self.control("POST", "/_sandbox/ratelimit", {"perMinute": per_minute, "perDay": per_day})

    def requests(self) -> list[dict[str, Any]]:
        return list(self.control("GET", "/_sandbox/requests", timeout=120))

    def leads(self) -> list[dict[str, Any]]:
        """Every stored lead (campaign_code, data, ...), read from the sandbox's own file."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            rows = con.execute("SELECT body FROM leads ORDER BY seq").fetchall()
        finally:
            con.close()
        return [json.loads(body) for (body,) in rows]


# --- the files ----------------------------------------------------------------------------------

#: campaign -> (header row, the data field that names a row, its column in the file)
CAMPAIGNS: dict[str, tuple[list[str], str]] = {
    "B2B-DK-SPRING": (["Name", "Phone", "Email", "Segment"], "name"),
    "B2B-SE-AUTUMN": (["Company", "Phone", "Contact", "Employees", "Email"], "company"),
    "CONSUMER-DK-ENERGI": (["Fornavn", "Telefon", "By", "Samtykke"], "fornavn"),
}


def _valid_row(campaign: str, key: str, n: int) -> list[str]:
    phone = f"+45 {20000000 + n % 79999999:08d}"
    if campaign == "B2B-DK-SPRING":
        return [key, phone, f"c{n}@example.dk", "SMB" if n % 2 else "Enterprise"]
    if campaign == "B2B-SE-AUTUMN":
        return [key, phone.replace("+45", "+46"), f"Contact {n}", str(n % 500 + 1), f"s{n}@x.se"]
    return [key, phone, "Aarhus", "true" if n % 2 else "false"]


def _invalid_row(campaign: str, key: str, n: int) -> list[str]:
    if campaign == "B2B-DK-SPRING":
        return [key, "12ab", "not-an-email", "Huge"]
    if campaign == "B2B-SE-AUTUMN":
        return [key, "not a phone", "", "many", ""]
    return [key, "+45 20000000", "Aarhus", "maybe"]  # samtykke must be a yes/no value


@dataclass
class DroppedFile:
    campaign: str
    name: str
    data: bytes
    valid: list[str]  #: the naming field of every valid row, in file order
    invalid: int
    readable: bool = True  #: False: must end in failed/
    #: naming value -> its row number as receipts name rows (the header is row 1)
    row_of: dict[str, int] = field(default_factory=dict)
    #: the name of the file this one is a byte-for-byte copy of (a re-drop), else ""
    copy_of: str = ""

    @property
    def group(self) -> str:
        """The content's first name: a file and its copies share their rows."""
        return f"{self.campaign}/{self.copy_of or self.name}"


@dataclass
class Workload:
    """Files over the three campaigns; ``expected`` every valid row's naming value."""

    seed: int
    tag: str
    files: list[DroppedFile] = field(default_factory=list)

    @classmethod
    def make(
        cls,
        seed: int,
        *,
        files_per_campaign: int = 5,
        big_rows: tuple[int, int] = (500, 800),
        small_rows: tuple[int, int] = (20, 150),
        big_files: int = 1,
        unreadable: int = 1,
        copies: int = 0,
    ) -> Workload:
        rnd = random.Random(seed)
        w = cls(seed, f"S{seed}")
        n = 0
        for campaign, (header, _) in CAMPAIGNS.items():
            short = {"B2B-DK-SPRING": "DKS", "B2B-SE-AUTUMN": "SEA"}.get(campaign, "CON")
            for k in range(files_per_campaign):
                rows = rnd.randint(*(big_rows if k < big_files else small_rows))
                invalid = rnd.randint(0, max(1, rows // 20))
                out = io.StringIO()
                wr = csv.writer(out, lineterminator="\n")
                wr.writerow(header)
                lines: list[tuple[bool, list[str], str]] = []
                for i in range(rows):
                    n += 1
                    key = f"{w.tag} {short} f{k} r{i:05d}"
                    lines.append((True, _valid_row(campaign, key, n), key))
                for i in range(invalid):
                    n += 1
                    key = f"{w.tag} {short} f{k} bad{i:04d}"
                    lines.append((False, _invalid_row(campaign, key, n), key))
                rnd.shuffle(lines)
                for _, row, _ in lines:
                    wr.writerow(row)
                w.files.append(
                    DroppedFile(
                        campaign,
                        f"{w.tag.lower()}-{short.lower()}-{k}.csv",
                        out.getvalue().encode(),
                        [key for ok, _, key in lines if ok],
                        invalid,
                        row_of={key: i + 2 for i, (_, _, key) in enumerate(lines)},
                    )
                )
            made = [f for f in w.files if f.campaign == campaign]
            for k in range(copies):  # the same content again under another name
                first = made[-1 - k % len(made)]
                w.files.append(
                    replace(first, name=first.name.replace(".csv", f"-copy{k}.csv"),
                            copy_of=first.name)
                )  # fmt: skip
            for k in range(unreadable):
                garbage = bytes(rnd.randrange(256) for _ in range(2000)) + b"\x00\x01\x02"
                w.files.append(
                    DroppedFile(campaign, f"{w.tag.lower()}-broken-{k}.csv", garbage, [], 0, False)
                )
        rnd.shuffle(w.files)
        return w

    @property
    def valid_rows(self) -> int:
        return sum(len(f.valid) for f in self.files if not f.copy_of)

    def drop(self, inbox: Path) -> None:
        """Write every file into ``inbox/<campaign>/`` (under a temp name, then renamed)."""
        for f in self.files:
            folder = inbox / f.campaign
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / (f.name + ".part")
            tmp.write_bytes(f.data)
            tmp.rename(folder / f.name)

    def expected(self) -> dict[str, dict[str, DroppedFile]]:
        """campaign -> naming value -> the file holding that valid row."""
        out: dict[str, dict[str, DroppedFile]] = {c: {} for c in CAMPAIGNS}
        for f in self.files:
            for key in f.valid:
                if not f.copy_of:
                    out[f.campaign][key] = f
        return out


# --- the config ---------------------------------------------------------------------------------


def tenant_today() -> date:
    return datetime.now(ZoneInfo(TIMEZONE)).date()


def write_config(
    root: Path,
    api_url: str,
    *,
    ledger: str = "",
    export_start: date | None = None,
    requests_per_minute: int = 600000,
    read_timeout: float = 3.0,
    intake: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
    api: dict[str, Any] | None = None,
    state: str = "state",
) -> Path:
    """ONE config file for every node; returns its path (``root/leadpipe.toml``)."""

    def table(values: dict[str, Any]) -> str:
        return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())

    intake_values: dict[str, Any] = {
        "settle_seconds": 0.3,
        "sweep_seconds": 1,
        "concurrency": 4,
        "campaign_parallelism": 3,
        "verify_after_minutes": 0,
        "unreadable_grace_seconds": 0,
    }
    intake_values.update(intake or {})
    api_values: dict[str, Any] = {
        "url": api_url,
        "requests_per_minute": requests_per_minute,
        "read_timeout": read_timeout,
        "connect_timeout": 2.0,
        "retry_total_seconds": 20.0,
    }
    api_values.update(api or {})
    start = export_start or export_start_for(6)
    text = (
        f'timezone = "{TIMEZONE}"\n'
        f'[paths]\ninbox = "inbox"\noutbox = "outbox"\nstate = "{state}"\n'
        f'schemas = "schemas"\n'
        f"[api]\n{table(api_values)}"
        f"[intake]\n{table(intake_values)}"
        f"[status]\nport = 0\n"
        f"[state]\nledger = {json.dumps(ledger)}\n"
    )
    if cluster:
        text += f"[cluster]\n{table(cluster)}"
    text += (
        f'[[exports]]\nname = "{EXPORT_JOB}"\nsearch = "{EXPORT_SEARCH}"\n'
        f'schedule = "* * * * *"\nwindow = "previous-day"\nstart = "{start}"\n'
    )
    cfg = root / "leadpipe.toml"
    cfg.write_text(text, encoding="utf-8")
    return cfg


def export_start_for(days: int) -> date:
    """The export job's ``start``: ``days`` tenant-local days before today."""
    return tenant_today() - timedelta(days=days)


def expected_windows(start: date, today: date | None = None) -> list[str]:
    """The export file names the job must have written by ``today`` (tenant-local)."""
    today = today or tenant_today()
    days = [start + timedelta(days=i) for i in range((today - start).days)]
    return [f"{EXPORT_JOB}_{d}_{d + timedelta(days=1)}.csv" for d in days]


# --- the nodes ----------------------------------------------------------------------------------

#: How long a node's run is let start before the end's SIGTERM (see Node.settle).
SETTLE_SECONDS = 5.0


class Node:
    """One ``leadpipe run`` node; every start gets its own log file in ``logs``."""

    def __init__(self, name: str | None, cfg: Path, logs: Path, extra_env: dict[str, str]):
        self.name = name
        self.cfg = cfg
        self.logs = logs
        self.env = {**base_env(), **extra_env}
        if name is not None:
            self.env["LEADPIPE_NODE"] = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.exits: list[int] = []
        self.down = False  #: stopped on purpose (killed, not restarted yet)
        self.paused = False  #: SIGSTOPped, not continued yet
        self.started = 0.0  #: when the current run started (monotonic)

    @property
    def label(self) -> str:
        return self.name or "node"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.alive
        self.down = False
        self.starts += 1
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{self.label}-{self.starts:03d}.log"
        self.started = time.monotonic()
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                leadpipe_cmd("--config", str(self.cfg), "run"),
                env=self.env,
                cwd=self.cfg.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill9(self) -> None:
        assert self.proc is not None
        self.down = True
        self.proc.send_signal(signal.SIGKILL)
        self.exits.append(self.proc.wait(30))
        self.kills += 1

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def cont(self) -> None:
        if self.proc is not None and self.paused:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def exited(self) -> int | None:
        """The exit code once the node's process ended (kill or not), else None."""
        if self.proc is None:
            return None
        return self.proc.poll()

    def settle(self, seconds: float = SETTLE_SECONDS) -> None:
        """Wait until the current run has been up ``seconds``: a node started a moment ago
        (a killed node brought back just before the end) is still loading, and a SIGTERM
        before ``leadpipe run`` sets its handler ends it as the system's default does (exit
        -15). The end's SIGTERM is meant to find each service running."""
        if self.alive:
            time.sleep(max(0.0, self.started + seconds - time.monotonic()))

    def terminate(self, wait: float = 30) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.down = True
        self.cont()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self.exits.append(code)
        return code

    def last_log(self, chars: int = 3000) -> str:
        path = self.logs / f"{self.label}-{self.starts:03d}.log"
        with contextlib.suppress(OSError):
            return path.read_text(errors="replace")[-chars:]
        return ""


# --- watching the outbox ------------------------------------------------------------------------


class OutboxWatch:
    """Notes every distinct version (inode) of every visible export file while it runs."""

    def __init__(self, outbox: Path, every: float = 0.1) -> None:
        self.outbox = outbox
        self.every = every
        self.versions: dict[str, set[tuple[int, int]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-watch", daemon=True)

    def __enter__(self) -> OutboxWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.look()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.look()

    def look(self) -> None:
        folder = self.outbox / EXPORT_JOB
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for e in entries:
            if e.name.startswith(".") or not e.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                st = e.stat(follow_symlinks=False)
                self.versions.setdefault(e.name, set()).add((st.st_ino, st.st_mtime_ns))

    def rewritten(self) -> dict[str, int]:
        """file name -> how many distinct versions were seen, for files seen more than once."""
        return {
            n: len({ino for ino, _ in v})
            for n, v in self.versions.items()
            if len({ino for ino, _ in v}) > 1
        }


# --- the final checks ---------------------------------------------------------------------------


def _originals(folder: Path) -> list[str]:
    """Names (stamp removed) of the originals in a result folder."""
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.name.endswith((".receipt.txt", ".receipt.json", ".error.txt")):
            continue
        out.append(p.name.split("_", 1)[1] if "_" in p.name else p.name)
    return out


@dataclass
class Outcome:
    """What ended where, for the final checks and the failure message."""

    processed: Counter[str]
    failed: Counter[str]
    left_in_inbox: list[str]
    left_in_work: list[str]

    def done(self, workload: Workload) -> bool:
        total = Counter(self.processed) + Counter(self.failed)
        return (
            not self.left_in_inbox
            and not self.left_in_work
            and all(total[f.campaign + "/" + f.name] >= 1 for f in workload.files)
        )


def files_under(folder: Path) -> list[Path]:
    """Every file under ``folder``; folders that vanish while it looks are skipped (the nodes
    remove claim folders all the time)."""
    return [Path(top) / name for top, _, names in os.walk(folder) for name in names]


def look_at_inbox(inbox: Path) -> Outcome:
    processed: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    left: list[str] = []
    for campaign in CAMPAIGNS:
        folder = inbox / campaign
        for name in _originals(folder / "processed"):
            processed[f"{campaign}/{name}"] += 1
        for name in _originals(folder / "failed"):
            failed[f"{campaign}/{name}"] += 1
        if folder.is_dir():
            left += [
                f"{campaign}/{p.name}"
                for p in folder.iterdir()
                if p.is_file() and not p.name.endswith(".part")
            ]
    work = inbox / ".leadpipe" / "work"
    in_work = [str(p.relative_to(work)) for p in files_under(work)]
    return Outcome(processed, failed, sorted(left), sorted(in_work))


def receipts(inbox: Path) -> dict[str, list[dict[str, Any]]]:
    """``campaign/name`` (stamp removed) -> every JSON receipt written for it."""
    out: dict[str, list[dict[str, Any]]] = {}
    for campaign in CAMPAIGNS:
        for p in sorted((inbox / campaign / "processed").glob("*.receipt.json")):
            name = p.name.removesuffix(".receipt.json").split("_", 1)[1]
            out.setdefault(f"{campaign}/{name}", []).append(json.loads(p.read_text("utf-8")))
    return out


def final_problems(
    workload: Workload,
    inbox: Path,
    outbox: Path,
    leads: Iterable[dict[str, Any]],
    *,
    export_start: date,
    watch: OutboxWatch | None = None,
    export_requests: Iterable[dict[str, Any]] = (),
    kills: int = 0,
) -> list[str]:
    """Every promise checked; returns what is wrong (empty when all hold)."""
    problems: list[str] = []
    expected = workload.expected()
    # 1. every valid row created at most once, none lost without an 'uncertain' on its receipt
    created: dict[str, Counter[str]] = {c: Counter() for c in CAMPAIGNS}
    for lead in leads:
        campaign = str(lead.get("campaign_code", ""))
        _, key_field = CAMPAIGNS.get(campaign, ([], ""))
        key = str(lead.get("data", {}).get(key_field, ""))
        if campaign in created and key.startswith(workload.tag + " "):
            created[campaign][key] += 1
    recs = receipts(inbox)
    group_of = {f"{f.campaign}/{f.name}": f.group for f in workload.files}
    copied = {f.group for f in workload.files if f.copy_of}
    uncertain_by_file: Counter[str] = Counter()  # by content (a file and its copies)
    said: dict[str, str] = {}  # by content: every message of its receipts
    for name, rs in recs.items():
        for r in rs:
            group = group_of.get(name, name)
            uncertain_by_file[group] += int(r.get("uncertain", 0))
            said[group] = said.get(group, "") + " ".join(r.get("messages", [])) + " "
    missing_by_file: Counter[str] = Counter()
    for campaign, rows in expected.items():
        for key, f in rows.items():
            n = created[campaign][key]
            if n > 1:
                problems.append(f"{campaign} row {key!r} ({f.name}) created {n} times")
            elif n == 0:
                missing_by_file[f.group] += 1
        for key in created[campaign]:
            if key not in rows:
                problems.append(f"{campaign}: lead {key!r} was created but is no valid row")
    for name, missing in sorted(missing_by_file.items()):
        if missing > uncertain_by_file[name]:
            problems.append(
                f"{name}: {missing} valid row(s) not in HeroBase, but its receipt(s) report "
                f"{uncertain_by_file[name]} uncertain (rows lost silently)"
            )
    # a row not in HeroBase is named on its receipt (up to 50 are named one by one)
    for campaign, rows in expected.items():
        for key, f in rows.items():
            name = f.group
            if created[campaign][key] or not 0 < uncertain_by_file[name] <= 50:
                continue
            if f"Row {f.row_of.get(key)} is uncertain" not in said.get(name, ""):
                problems.append(f"{name}: row {key!r} is not in HeroBase nor named uncertain")
    # 2. every dropped file in exactly one end folder, nothing left behind
    seen = look_at_inbox(inbox)
    if seen.left_in_inbox:
        problems.append(f"files left in the inbox: {seen.left_in_inbox}")
    if seen.left_in_work:
        problems.append(f"files left in the work folder: {seen.left_in_work}")
    for f in workload.files:
        name = f"{f.campaign}/{f.name}"
        p, x = seen.processed[name], seen.failed[name]
        place = (1, 0) if f.readable else (0, 1)
        if (p, x) != place:
            problems.append(f"{name}: {p} in processed/, {x} in failed/ (want {place})")
        if f.readable:
            rs = recs.get(name, [])
            if len(rs) != 1:
                problems.append(f"{name}: {len(rs)} receipts (want 1)")
                continue
            r = rs[0]
            if f.group in copied and r["outcome"] == "already" and r["accepted"] == 0:
                continue  # a re-drop of content already done: nothing sent, counts are 0
            sent = r["accepted"] + r["duplicates"] + r["uncertain"]
            if r["outcome"] != "processed" or sent != len(f.valid) or r["rejected"] != f.invalid:
                problems.append(
                    f"{name}: receipt says {r['outcome']}, accepted {r['accepted']} + duplicates "
                    f"{r['duplicates']} + uncertain {r['uncertain']}, rejected {r['rejected']} "
                    f"(want processed, {len(f.valid)} sent, {f.invalid} rejected)"
                )
    # 3. every export window written once, complete, nothing else in the job's folder
    folder = outbox / EXPORT_JOB
    names: list[str] = (
        sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        if folder.is_dir()
        else []
    )
    want = expected_windows(export_start)
    want_files = sorted(want + [n + ".manifest.json" for n in want])
    if names != want_files:
        problems.append(
            f"outbox/{EXPORT_JOB}: missing {sorted(set(want_files) - set(names))}, "
            f"unexpected {sorted(set(names) - set(want_files))}"
        )
    for window in want:
        path, man = folder / window, folder / (window + ".manifest.json")
        if not (path.exists() and man.exists()):
            continue
        manifest = json.loads(man.read_text("utf-8"))
        lines = max(0, len(list(csv.reader(io.StringIO(path.read_text("utf-8-sig"))))) - 1)
        if manifest.get("rows") != lines:
            problems.append(f"{window}: manifest says {manifest.get('rows')} rows, has {lines}")
    if watch is not None:
        for window, versions in sorted(watch.rewritten().items()):
            if versions - 1 > kills:
                problems.append(f"{window}: written {versions} times (kills: {kills})")
    done: Counter[str] = Counter()
    for r in export_requests:
        if r.get("status") == 200 and r.get("method") == "GET":
            q = {k.lower(): v for k, v in (r.get("query") or {}).items()}
            done[f"{q.get('from', '?')}..{q.get('to', '?')}"] += 1
    repeated = {w: n for w, n in done.items() if n > 1}
    if sum(n - 1 for n in repeated.values()) > kills:
        problems.append(f"export windows downloaded more than once (kills {kills}): {repeated}")
    return problems


# --- one scenario: sandbox + nodes + kills + checks ---------------------------------------------


def arm_faults(sb: SandboxProcess, rnd: random.Random, posts: int, *, post_delay: float) -> None:
    """API faults spread over the run: 503s, drops before/after storing, 500 after storing,
    garbled answers, late stores (some beyond the read timeout), an outage of every route, slow
    and failing export downloads; then a delay on every POST so big files take a while."""
    kinds: list[dict[str, Any]] = [
        {"kind": "status", "status": 503},
        {"kind": "status", "status": 429, "retry_after": 1},
        {"kind": "drop_before"},
        {"kind": "drop_after"},
        {"kind": "status_after", "status": 500},
        {"kind": "garbled"},
        {"kind": "store_late", "delay": 1.0},
        {"kind": "store_late", "delay": 4.0},  # beyond the 3 s read timeout
        {"kind": "delay", "delay": 4.0},
    ]
    for _ in range(max(6, posts // 120)):
        fault = dict(rnd.choice(kinds))
        sb.add_fault(
            route="POST /leads", after=rnd.randrange(max(1, posts)), times=rnd.randint(1, 3),
            **fault,
        )  # fmt: skip
    # a short outage of every route (the breaker opens, files wait, then resume)
    sb.add_fault(route="*", kind="status", status=503, after=rnd.randrange(posts // 2 + 1), times=8)
    sb.add_fault(route="GET /leads/csv", kind="status", status=503, after=1, times=1)
    sb.add_fault(route="GET /leads/csv", kind="delay", delay=0.4, times=0)
    sb.add_fault(route="POST /leads", kind="delay", delay=post_delay, times=0)


@dataclass
class Scenario:
    seed: int
    nodes: list[str | None]  #: node names (None: one node without LEADPIPE_NODE)
    kills: int
    ledger: str = ""  #: "" SQLite in the state folder, or a PostgreSQL URL
    cluster: dict[str, Any] | None = None
    state: str = "state"
    export_days: int = 6
    post_delay: float = 0.03
    kill_gap: tuple[float, float] = (1.0, 4.0)
    restart_gap: tuple[float, float] = (0.0, 1.5)
    finish_timeout: float = 240.0
    pauses: int = 0  #: SIGSTOP a node for longer than its lease, then SIGCONT
    long_down: float = 0.0  #: share of kills after which the node stays down past its lease
    workload: dict[str, Any] = field(default_factory=dict)
    faults: bool = True
    #: sandbox tenant profile settings (e.g. {"simpleleads_data": False}: lookups are blind)
    profile: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    scenario: Scenario
    root: Path
    kills: int = 0
    kills_while_claimed: int = 0
    pauses: int = 0
    node_exits: dict[str, list[int]] = field(default_factory=dict)
    unexpected_exits: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    valid_rows: int = 0
    files: int = 0
    fault_hits: dict[str, int] = field(default_factory=dict)
    uncertain: int = 0  #: rows the receipts report as uncertain

    def summary(self) -> str:
        s = self.scenario
        return (
            f"seed={s.seed} nodes={len(s.nodes)} ledger={'postgresql' if s.ledger else 'sqlite'} "
            f"kills={self.kills} (while a file was claimed: {self.kills_while_claimed}) "
            f"pauses={self.pauses} "
            f"files={self.files} valid rows={self.valid_rows} uncertain={self.uncertain} "
            f"faults hit={self.fault_hits} took {self.seconds:.0f} s; logs in {self.root}"
        )

    def failure(self) -> str:
        lines = [self.summary(), *self.problems[:60]]
        if len(self.problems) > 60:
            lines.append(f"... and {len(self.problems) - 60} more")
        return "\n".join(lines)


def _claimed(inbox: Path) -> bool:
    return any(not p.name.startswith(".") for p in files_under(inbox / ".leadpipe" / "work"))


def run_scenario(s: Scenario, root: Path, log: Callable[[str], None] = print) -> Report:
    """Run one scenario under ``root``; the report lists every broken promise."""
    rnd = random.Random(s.seed)
    report = Report(s, root)
    started = time.monotonic()
    sb = SandboxProcess(root / "sandbox").start()
    nodes: list[Node] = []
    try:
        sb.set_rate_limit(10**7, 10**9)
        if s.profile:
            sb.control("POST", "/_sandbox/profile", s.profile)
        workload = Workload.make(s.seed, **s.workload)
        report.valid_rows, report.files = workload.valid_rows, len(workload.files)
        if s.faults:
            arm_faults(sb, rnd, workload.valid_rows, post_delay=s.post_delay)
        elif s.post_delay:
            sb.add_fault(route="POST /leads", kind="delay", delay=s.post_delay, times=0)
        start_day = export_start_for(s.export_days)
        cfg = write_config(
            root, sb.url, ledger=s.ledger, export_start=start_day, cluster=s.cluster,
            state=s.state,
        )  # fmt: skip
        inbox = root / "inbox"
        first, second = (
            workload.files[: len(workload.files) // 2],
            workload.files[len(workload.files) // 2 :],
        )
        Workload(s.seed, workload.tag, first).drop(inbox)
        nodes = [Node(n, cfg, root / "logs", {}) for n in s.nodes]
        watch = OutboxWatch(root / "outbox").__enter__()
        for node in nodes:
            node.start()

        def revive() -> None:
            for node in nodes:
                code = node.exited()
                if code is not None and not node.down and not node.paused:
                    report.unexpected_exits.append(
                        f"{node.label} run {node.starts} exited by itself with {code}: "
                        f"{node.last_log(1500)}"
                    )
                    node.start()

        dropped_rest = False
        #: (when, node, what): restarts of killed nodes ("start"), ends of pauses ("cont")
        pending: list[tuple[float, Node, str]] = []

        def due() -> None:
            now = time.monotonic()
            for item in [p for p in pending if p[0] <= now]:
                pending.remove(item)
                _, node, what = item
                if what == "cont":
                    node.cont()
                else:
                    node.start()

        while report.kills < s.kills or report.pauses < s.pauses:
            time.sleep(rnd.uniform(*s.kill_gap))
            due()
            revive()
            if not dropped_rest and report.kills >= s.kills // 3:
                Workload(s.seed, workload.tag, second).drop(inbox)
                dropped_rest = True
            alive = [n for n in nodes if n.alive and not n.paused]
            if not alive:
                continue
            victim = rnd.choice(alive)
            claimed = _claimed(inbox)
            lease = float((s.cluster or {}).get("lease_seconds", 0))
            if report.pauses < s.pauses and (report.kills >= s.kills or rnd.random() < 0.3):
                # stopped (not dead) for longer than its lease: another node may take its
                # files over; when it goes on, it must not send what it no longer owns
                victim.pause()
                report.pauses += 1
                pending.append((time.monotonic() + lease + rnd.uniform(2, 5), victim, "cont"))
                continue
            if report.kills >= s.kills:
                continue
            victims = [victim]
            others = [n for n in alive if n is not victim]
            if others and rnd.random() < 0.2:  # now and then two at once
                victims.append(rnd.choice(others))
            for v in victims:
                v.kill9()
                report.kills += 1
                report.kills_while_claimed += claimed
                if lease and rnd.random() < s.long_down:  # down past its lease: taken over
                    wait = lease + rnd.uniform(1, 5)
                else:
                    wait = rnd.uniform(*s.restart_gap)
                pending.append((time.monotonic() + wait, v, "start"))
        if not dropped_rest:
            Workload(s.seed, workload.tag, second).drop(inbox)
        log(
            f"{report.kills} kills, {report.pauses} pauses done after "
            f"{time.monotonic() - started:.0f} s; finishing"
        )

        def finished() -> bool:
            due()
            revive()
            if pending or not look_at_inbox(inbox).done(workload):
                return False
            folder = root / "outbox" / EXPORT_JOB
            want = expected_windows(start_day)
            return all((folder / (n + ".manifest.json")).exists() for n in want)

        try:
            wait_until(finished, s.finish_timeout, "every file to end and every window")
        except TimeoutError as exc:
            report.problems.append(f"{exc}: {look_at_inbox(inbox)}")
        watch.__exit__()
        for node in nodes:
            node.settle()
            code = node.terminate()
            if code not in (0, None):
                report.unexpected_exits.append(
                    f"{node.label}: SIGTERM at the end exited {code}: {node.last_log(1500)}"
                )
        log_entries = sb.requests()
        for r in log_entries:
            if r.get("status") not in (200, 201):
                what = f"{r['method']} {r['path']} -> {r.get('status')}"
                report.fault_hits[what] = report.fault_hits.get(what, 0) + 1
        report.uncertain = sum(
            int(r.get("uncertain", 0)) for rs in receipts(inbox).values() for r in rs
        )
        report.problems += final_problems(
            workload,
            inbox,
            root / "outbox",
            sb.leads(),
            export_start=start_day,
            watch=watch,
            export_requests=[r for r in log_entries if r["path"].lower() == "/leads/csv"],
            kills=report.kills,
        )
        report.problems += report.unexpected_exits
        if report.problems:
            dump_forensics(root, sb, s.ledger)
    finally:
        for node in nodes:
            if node.alive:
                with contextlib.suppress(Exception):
                    node.proc.kill()  # type: ignore[union-attr]
        sb.stop()
        report.seconds = time.monotonic() - started
        report.node_exits = {n.label: n.exits for n in nodes}
    return report


def claim_leases(ledger_url: str) -> dict[str, str]:
    """Live claim leases in the cluster's database: resource -> holder node."""
    import psycopg

    try:
        with psycopg.connect(ledger_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT resource, holder FROM cluster_leases"
                " WHERE resource LIKE 'claim:%' AND expires > now()"
            ).fetchall()
    except psycopg.errors.UndefinedTable:  # no node made the cluster's tables yet
        return {}
    return {str(r): str(h) for r, h in rows}


def posts(sb: SandboxProcess) -> int:
    """How many leads the sandbox stores (its file; cheaper than the request log)."""
    con = sqlite3.connect(f"file:{sb.db}?mode=ro", uri=True, timeout=30)
    try:
        return int(con.execute("SELECT count(*) FROM leads").fetchone()[0])
    finally:
        con.close()


def dump_forensics(root: Path, sb: SandboxProcess | None, ledger_url: str = "") -> None:
    """Keep the sandbox's request log and the ledger's rows and attempts beside the logs
    (``root/forensics``), for a failure's post-mortem; best effort."""
    out = root / "forensics"
    out.mkdir(parents=True, exist_ok=True)
    if sb is not None:
        with contextlib.suppress(Exception):
            (out / "requests.json").write_text(json.dumps(sb.requests(), default=str))
    if ledger_url:
        with contextlib.suppress(Exception):
            import psycopg

            with psycopg.connect(ledger_url, autocommit=True) as conn:
                for table in ("rows", "attempts", "files", "cluster_leases"):
                    with contextlib.suppress(Exception):
                        sql = f"SELECT * FROM {table}"  # noqa: S608 (fixed table names)
                        cur = conn.execute(sql)  # type: ignore[arg-type,unused-ignore]
                        cols = [d.name for d in cur.description or []]
                        found = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
                        (out / f"{table}.json").write_text(json.dumps(found, default=str))
