"""Benchmark: the whole ``leadpipe ingest --dry-run`` against what a user would otherwise write.

One CSV, one campaign (the embedded sandbox's ``B2B-DK-SPRING``), the same rules for every tool;
each tool runs in a fresh child process (interpreter start and imports count, as a user sees
them), rounds interleaved (each round runs every tool once, starting with a different one),
medians reported:

- ``leadpipe``: ``leadpipe --config <tmp>/leadpipe.toml ingest FILE --campaign B2B-DK-SPRING
  --dry-run --json --out <tmp>/out`` (the console script; embedded sandbox; a fresh config,
  state and output folder each run; reject files and receipt written). Its bad-row count is
  the receipt's ``rejected``, its repeated rows the receipt's ``duplicates``.
- ``pandas``: the obvious script, in the environment a user would have (hypothesis, installed
  here for leadpipe's tests, hidden: pandera would load it for data synthesis nobody uses here,
  0.1-0.15 s): ``pandas.read_csv(dtype=str, keep_default_na=False)`` and a
  pandera ``DataFrameSchema`` with one ``Column(str, checks)`` per mapped field,
  ``validate(lazy=True)``, ``SchemaErrors.failure_cases`` written to CSV; bad rows = the unique
  row indexes among the failure cases. pandera 0.35 has no built-in whole-value match
  (``Check.str_matches`` anchors only the start), so the check is a ``Check`` named
  ``str_fullmatch`` around pandas' ``Series.str.fullmatch``.
- ``frictionless``: frictionless-py 5 validating the CSV against a Table Schema (every column
  ``string``; mapped fields with ``constraints.pattern`` and ``required``; frictionless anchors
  a pattern as ``^pattern$``, so it is given as ``(?:regex)``); bad rows = the rows with a cell
  error. Skipped, with a line saying so, when frictionless is not installed
  (``pip install -e '.[bench]'``).
- ``imports``: ``import pandas, pandera.pandas`` and nothing else: what any tool that validates
  with pandera pays before it reads a row (the floor under the small sizes; no counts).
- ``polars``: the floor: ``polars.read_csv`` (every column ``pl.String``, ``infer_schema=False``)
  and an anchored ``str.contains("^(?:regex)$")`` per mapped field.

The same rules: the field list (regex, required) comes from the sandbox's import example as
leadpipe reads it (``leadpipe fields B2B-DK-SPRING --json``), the column -> field mapping is the
one leadpipe's receipt reports (checked each run); columns leadpipe leaves unmapped (``Postnr``,
``By``, ``Firma``) are checked by nobody, so the generator's bad postcodes are not bad rows.
leadpipe's default ``search`` semantics equal a whole-value match for these regexes: the ones
that can refuse a value are anchored ``^...$`` and leadpipe strips surrounding whitespace before
it checks (the generated values have none, so the peers need not strip, and ``.*`` never meets
a line break). A required field must be non-empty; an empty optional value is valid (pandas:
``str_length(min_value=1)`` on required fields and ``(?:regex)?`` on optional ones; frictionless:
an empty cell is missing, so ``required`` refuses it and ``pattern`` skips it; polars: the
same two rules written out). Nothing else is checked by leadpipe for this file: Excel-damage
recognition only rewords values that already failed their regex, and the file has no malformed
rows.

Repeated rows: the data is the ``bench/ingest.py`` generator's CSV (1M rows, ~5 % bad values,
reused from bench/data/) with ~0.2 % of its rows written a second time 500 rows later. leadpipe
does not reject a valid row that repeats an earlier one (same values in every mapped field): it
counts it as a duplicate and sends it once; a bad row stays rejected however often it appears.
Each peer counts the same way (pandas ``duplicated``, frictionless' ``duplicate_row`` check,
polars ``is_first_distinct``, each minus the bad rows), so bad rows and repeats are compared
separately and the peers do the work leadpipe does. The copies are byte-identical, so
frictionless comparing whole rows (not only the mapped fields) finds the same ones.

leadpipe's modules are compiled to bytecode first (``compileall``, as ``make`` does when it
installs): where ``PYTHONDONTWRITEBYTECODE`` is set, an uncompiled package would be compiled
again at every start, a cost no installed tool pays (the peers' libraries come compiled).

Peak RSS is the child's ``ru_maxrss`` (``os.wait4``); Linux starts a child's figure at the
parent's peak, so this runner imports nothing heavy and makes its data in a child (its own
peak is printed as the floor under every figure). ``uptime`` load averages are printed at the
start and the end: the machine is shared, so read every figure with them.

One run can measure several sizes (``--rows 10,100000,1000000``: each size's rounds, table and
targets in turn) and, when leadpipe is measured, ``leadpipe --help`` (``--help-runs``, fresh
processes, median). It ends with every target of the run in one table, so the whole set is
judged on one machine state rather than pieced together from runs at different times.

    .venv/bin/python bench/peers.py [--rows 10,100000,1000000] [--rounds 3]
        [--only leadpipe,pandas,frictionless,polars] [--help-runs 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
TOOLS = ("leadpipe", "pandas", "frictionless", "polars", "imports")
CAMPAIGN = "B2B-DK-SPRING"
#: the same config as bench/ingest.py's dry-run scenario ("Email" maps itself)
CONFIG = """\
[campaigns.B2B-DK-SPRING.columns]
"Navn" = "name"
"Tlf." = "phone"
"Noter" = "note"
"""
MAPPING = {"Navn": "name", "Tlf.": "phone", "Email": "email", "Noter": "note"}
REPEAT_EVERY = 500  # one row in 500 is written a second time (0.2 %)


# ------------------------------------------------------------------------------------ data


def make_data(rows: int) -> dict[str, Any]:
    """bench/ingest.py's CSV of ``rows`` rows plus repeated rows, in bench/data (reused).

    Row ``s`` (every ``REPEAT_EVERY``-th, offset by half) is written again after row
    ``s + REPEAT_EVERY`` (at the end for tiny files); at least one row repeats.
    """
    spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "ingest.py")
    assert spec is not None
    assert spec.loader is not None
    ingest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ingest)
    source: Path = ingest.make_csv(rows)
    repeats = max(1, rows // REPEAT_EVERY)
    step = rows // repeats
    sources = [k * step + step // 2 for k in range(repeats)]
    after: dict[int, list[int]] = {}
    for s in sources:
        after.setdefault(min(rows - 1, s + step), []).append(s)
    path = DATA / f"peers_{rows}.csv"
    if not path.exists() or path.stat().st_mtime < source.stat().st_mtime:
        tmp = path.with_suffix(".part")
        wanted = set(sources)
        kept: dict[int, str] = {}
        with (
            source.open(encoding="utf-8", newline="") as src,
            tmp.open("w", encoding="utf-8", newline="") as out,
        ):
            out.write(src.readline())  # the header
            for i, line in enumerate(src):  # no value holds a line break (the generator's)
                out.write(line)
                if i in wanted:
                    kept[i] = line
                for s in after.get(i, ()):
                    out.write(kept.pop(s))
        tmp.rename(path)
    return {"path": str(path), "rows": rows + repeats, "repeats": repeats, "source": str(source)}


# ------------------------------------------------------------------------------- the tools


def mapped_rules(fields: list[dict[str, Any]], headers: list[str]) -> list[dict[str, Any]]:
    """The campaign's fields as (header, field, regex, required) for the file's columns."""
    by_field = {f: h for h, f in MAPPING.items() if h in headers}
    rules = []
    for f in fields:
        header = by_field.get(f["name"])
        if header is None:
            if f["required"]:
                raise SystemExit(f"required field {f['name']} has no column in the file")
            continue
        rules.append({"header": header, "field": f["name"], "regex": f["regex"],
                      "required": bool(f["required"])})  # fmt: skip
    return rules


def run_pandas(path: Path, rules: list[dict[str, Any]], out: Path) -> dict[str, int]:
    """pandas + pandera: the schema validated lazily, failure cases written to CSV."""
    import pandas as pd
    import pandera.pandas as pa
    from pandera.errors import SchemaErrors

    def fullmatch(regex: str) -> pa.Check:
        """pandera has no built-in whole-value match (``str_matches`` anchors the start only)."""
        return pa.Check(lambda s: s.str.fullmatch(regex), name="str_fullmatch")

    frame = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False)
    columns = {}
    for r in rules:
        checks = [fullmatch(r["regex"] if r["required"] else f"(?:{r['regex']})?")]
        if r["required"]:  # required = non-empty; an empty optional value is valid
            checks.insert(0, pa.Check.str_length(min_value=1))
        columns[r["header"]] = pa.Column(str, checks, nullable=not r["required"], required=True)
    schema = pa.DataFrameSchema(columns)
    bad_index: Any = pd.Index([])
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        cases.to_csv(out / "failure_cases.csv", index=False)
        bad_index = pd.Index(cases["index"].dropna().unique())
    repeated = frame.duplicated(subset=[r["header"] for r in rules])
    repeats = int((repeated & ~frame.index.isin(bad_index)).sum())
    return {"rows": len(frame), "bad": len(bad_index), "repeats": repeats}


def run_frictionless(path: Path, rules: list[dict[str, Any]], out: Path) -> dict[str, int]:
    """frictionless: a Table Schema (all strings, pattern + required) and the duplicate check."""
    import csv

    from frictionless import Checklist, Dialect, Resource, Schema, checks, formats

    with path.open(encoding="utf-8", newline="") as f:
        headers = next(csv.reader(f, delimiter=";"))
    by_header = {r["header"]: r for r in rules}
    fields = []
    for h in headers:
        spec: dict[str, Any] = {"name": h, "type": "string"}
        if h in by_header:
            r = by_header[h]
            spec["constraints"] = {"required": r["required"], "pattern": f"(?:{r['regex']})"}
        fields.append(spec)
    resource = Resource(
        path=path.name,
        basepath=str(path.parent),
        schema=Schema.from_descriptor({"fields": fields}),
        dialect=Dialect(controls=[formats.CsvControl(delimiter=";")]),
        encoding="utf-8",
    )
    report = resource.validate(Checklist(checks=[checks.duplicate_row()]), limit_errors=0)
    bad: set[int] = set()
    dup: set[int] = set()
    other = 0
    for error in report.tasks[0].errors:
        row = getattr(error, "row_number", None)
        if row is None:
            other += 1
        elif error.type == "duplicate-row":
            dup.add(row)
        else:
            bad.add(row)
    rows = int(report.tasks[0].stats.get("rows") or 0)
    return {"rows": rows, "bad": len(bad), "repeats": len(dup - bad), "file_errors": other}


def run_polars(path: Path, rules: list[dict[str, Any]], out: Path) -> dict[str, int]:
    """The floor: polars read_csv (all text) + an anchored ``str.contains`` per field."""
    import polars as pl

    frame = pl.read_csv(path, separator=";", infer_schema=False, empty_string_is_null=False)
    fails = []
    for r in rules:
        col = pl.col(r["header"]).fill_null("")  # (a missing value, if any, is empty)
        wrong = ~col.str.contains(f"^(?:{r['regex']})$")
        fails.append((col == "") | wrong if r["required"] else (col != "") & wrong)
    found = frame.select(
        bad=pl.any_horizontal(fails),
        repeated=~pl.struct([r["header"] for r in rules]).is_first_distinct(),
    )
    bad = found["bad"]
    return {
        "rows": frame.height,
        "bad": int(bad.sum()),
        "repeats": int((found["repeated"] & ~bad).sum()),
    }


def run_imports(path: Path, rules: list[dict[str, Any]], out: Path) -> dict[str, int]:
    """The start-up floor of a pandera check: its imports, nothing read."""
    import pandas  # noqa: F401
    import pandera.pandas  # noqa: F401

    return {}


PEERS = {
    "pandas": run_pandas,
    "frictionless": run_frictionless,
    "polars": run_polars,
    "imports": run_imports,
}


# ---------------------------------------------------------------------------------- runner


@dataclass
class Runs:
    """One tool's measurements over the rounds."""

    wall: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    counts: list[dict[str, int]] = field(default_factory=list)
    failed: str = ""


def uptime() -> str:
    """The load averages, as ``uptime`` prints them."""
    out = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    return out.strip()


def own_peak_mb() -> float:
    """This process's peak RSS (VmHWM), the floor under every child's ``ru_maxrss``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def spawn(cmd: list[str], cwd: Path) -> tuple[float, float, int, str, str]:
    """Run ``cmd``: (wall s, the child's peak RSS in MB, exit code, stdout, stderr)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (
            wall,
            usage.ru_maxrss / 1024,
            proc.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


def leadpipe_bin() -> str:
    """The ``leadpipe`` console script beside this Python (the venv's), else on the path."""
    here = Path(sys.executable).parent / "leadpipe"
    return str(here) if here.exists() else (shutil.which("leadpipe") or "leadpipe")


def json_in(text: str) -> dict[str, Any]:
    """The JSON object a child printed (the last line starting one, or the whole output)."""
    start = text.find("{")
    if start < 0:
        raise ValueError(f"no JSON in the output: {text[-300:]!r}")
    return json.loads(text[start:])  # type: ignore[no-any-return]


def campaign_fields() -> list[dict[str, Any]]:
    """``leadpipe fields B2B-DK-SPRING --json``: the rules leadpipe validates with."""
    with tempfile.TemporaryDirectory(prefix="leadpipe-peers-") as tmp:
        config = Path(tmp) / "leadpipe.toml"
        config.write_text(CONFIG, encoding="utf-8")
        cmd = [leadpipe_bin(), "--config", str(config), "fields", CAMPAIGN, "--json"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def run_once(tool: str, path: Path, rules_file: Path) -> tuple[float, float, dict[str, Any]]:
    """One fresh child of ``tool``: (wall s, peak RSS MB, its counts)."""
    with tempfile.TemporaryDirectory(prefix="leadpipe-peers-") as tmp:
        work = Path(tmp)
        (work / "out").mkdir()
        if tool == "leadpipe":
            (work / "leadpipe.toml").write_text(CONFIG, encoding="utf-8")
            cmd = [leadpipe_bin(), "--config", str(work / "leadpipe.toml"), "ingest", str(path)]
            cmd += ["--campaign", CAMPAIGN, "--dry-run", "--json", "--out", str(work / "out")]
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", tool]
            cmd += ["--file", str(path), "--rules", str(rules_file), "--out", str(work / "out")]
        wall, rss, code, out, err = spawn(cmd, work)
    if code != 0:
        raise RuntimeError(f"{tool} exited {code}: {(err or out).strip()[-600:]}")
    found = json_in(out)
    if tool == "leadpipe":
        if found.get("mapping") != MAPPING:
            print(f"  note: leadpipe mapped the columns as {found.get('mapping')}, not {MAPPING}")
        found = {
            "rows": found["rows_read"],
            "bad": found["rejected"],
            "repeats": found["duplicates"],
            "accepted": found["accepted"],
        }
    return wall, rss, found


def check_counts(runs: dict[str, Runs], data: dict[str, Any]) -> None:
    """Print each tool's counts; a MISMATCH line when the tools (or rounds) disagree."""
    print(f"\ncounts ({data['rows']:,} data rows, {data['repeats']:,} of them written twice):")
    final: dict[str, dict[str, int]] = {}
    for tool, r in runs.items():
        if not r.counts or not r.counts[0]:  # (the imports floor counts nothing)
            continue
        first = r.counts[0]
        if any(c != first for c in r.counts[1:]):
            print(f"  MISMATCH between rounds of {tool}: {r.counts}")
        final[tool] = first
        extra = ", ".join(f"{k} {v:,}" for k, v in first.items() if k not in ("bad", "repeats"))
        print(
            f"  {tool:<13} bad rows {first['bad']:>8,}   repeats {first['repeats']:>6,}   {extra}"
        )
    for key, what in (("bad", "bad-row"), ("repeats", "repeated-row"), ("rows", "row")):
        values = {tool: c.get(key) for tool, c in final.items()}
        if len(set(values.values())) > 1:
            listed = ", ".join(f"{tool} {v:,}" for tool, v in values.items() if v is not None)
            ref = values.get("leadpipe", next(iter(values.values())))
            odd = ", ".join(tool for tool, v in values.items() if v != ref)
            print(f"  MISMATCH: {what} counts differ: {listed} (not as leadpipe: {odd})")
        elif values:
            print(f"  {what} counts agree: {next(iter(values.values())):,}")


#: (what, measured, limit): met when measured <= limit
Target = tuple[str, float, float]


def report(runs: dict[str, Runs], rows: int) -> list[Target]:
    """Print the table (medians) and the targets that apply to ``rows``; return those."""
    med = {t: statistics.median(r.wall) for t, r in runs.items() if r.wall}
    peak = {t: max(r.rss_mb) for t, r in runs.items() if r.rss_mb}
    base = med.get("leadpipe")
    head = f"{'median wall':>12}{'min':>9}{'max':>9}{'peak RSS':>11}{'leadpipe/tool':>15}"
    print(f"\n{'tool':<14}{head}")
    for tool, r in runs.items():
        if r.failed:
            print(f"{tool:<14}{r.failed}")
            continue
        ratio = f"{base / med[tool]:.2f}x" if base else "-"
        print(
            f"{tool:<14}{med[tool]:>10.2f} s{min(r.wall):>7.2f} s{max(r.wall):>7.2f} s"
            f"{peak[tool]:>8.0f} MB{ratio:>15}"
        )
    if base is None:
        return []
    targets: list[Target] = []
    if "pandas" in med and rows >= 1_000_000:
        targets.append(("leadpipe / pandas+pandera", base / med["pandas"], 0.8))
    elif "pandas" in med and rows >= 100_000:
        targets.append(("leadpipe / pandas+pandera", base / med["pandas"], 1.0))
    if "polars" in med and rows >= 1_000_000:
        targets.append(("leadpipe / polars floor", base / med["polars"], 4.0))
    if rows >= 1_000_000:
        targets.append(("leadpipe peak RSS (MB)", peak["leadpipe"], 500))
    if rows <= 10:
        targets.append(("leadpipe wall (s)", base, 0.7))
    print("\ntargets:")
    print_targets(targets)
    return targets


def print_targets(targets: list[Target]) -> None:
    for what, got, limit in targets:
        verdict = "met" if got <= limit else "MISSED"
        print(f"  {what:<38} {got:>8.3f}  <= {limit:g}   {verdict}")


def help_walls(runs: int) -> list[float]:
    """``leadpipe --help`` in ``runs`` fresh processes: the wall time of each."""
    walls = []
    with tempfile.TemporaryDirectory(prefix="leadpipe-peers-") as tmp:
        for _ in range(runs):
            wall, _rss, code, out, err = spawn([leadpipe_bin(), "--help"], Path(tmp))
            if code != 0 or "Usage:" not in out:
                raise RuntimeError(f"leadpipe --help exited {code}: {(err or out)[-300:]}")
            walls.append(wall)
    return walls


def child(tool: str, path: Path, rules_file: Path, out: Path) -> None:
    """A peer in this (fresh) process: its counts as one JSON line.

    hypothesis is hidden first: it is installed here for leadpipe's tests, not in the
    environment of a user's script (pandera needs it only for its optional data synthesis),
    and pandera loads it at the first check when it can: 0.1-0.15 s that would slow the peer
    and flatter every ratio against it.
    """
    sys.modules["hypothesis"] = None  # type: ignore[assignment]  # "not installed" to pandera
    rules = json.loads(rules_file.read_text(encoding="utf-8"))
    print(json.dumps(PEERS[tool](path, rules, out)))


def measure(rows: int, tools: list[str], rounds: int, fields: list[dict[str, Any]]) -> list[Target]:
    """One size: its data, its interleaved rounds, counts, table and targets."""
    made = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--make", str(rows)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    data = json_in(made.stdout)
    path = Path(data["path"])
    print(
        f"\n=== {rows:,} rows\ndata: {path} ({path.stat().st_size / 1e6:.0f} MB; {rows:,} "
        f"generated rows + {data['repeats']:,} written twice), campaign {CAMPAIGN}"
    )
    with path.open("rb") as f:  # into the page cache, for every tool alike
        while f.read(1 << 20):
            pass
    headers = path.open(encoding="utf-8").readline().strip().replace('"', "").split(";")
    rules = mapped_rules(fields, headers)
    print("rules: " + "; ".join(
        f"{r['header']}->{r['field']} {r['regex']!r}{' required' if r['required'] else ''}"
        for r in rules
    ))  # fmt: skip
    runs = {t: Runs() for t in tools}
    with tempfile.TemporaryDirectory(prefix="leadpipe-peers-") as tmp:
        rules_file = Path(tmp) / "rules.json"
        rules_file.write_text(json.dumps(rules), encoding="utf-8")
        for n in range(rounds):
            order = tools[n % len(tools) :] + tools[: n % len(tools)]
            line = []
            for tool in order:
                if runs[tool].failed:
                    continue
                try:
                    wall, rss, counts = run_once(tool, path, rules_file)
                except (RuntimeError, ValueError) as exc:
                    runs[tool].failed = f"failed: {exc}"
                    print(f"  {tool}: {runs[tool].failed}")
                    continue
                runs[tool].wall.append(wall)
                runs[tool].rss_mb.append(rss)
                runs[tool].counts.append(counts)
                line.append(f"{tool} {wall:.2f} s {rss:.0f} MB")
            print(f"round {n + 1}: " + ", ".join(line), flush=True)
    check_counts(runs, data)
    return report(runs, rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", default="1000000", help="one size or several: 10,100000,1000000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default=",".join(TOOLS))
    ap.add_argument("--help-runs", type=int, default=7, help="leadpipe --help runs (0: none)")
    ap.add_argument("--child", choices=sorted(PEERS), help=argparse.SUPPRESS)
    ap.add_argument("--make", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--rules", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.file, args.rules, args.out)
        return
    if args.make:
        print(json.dumps(make_data(args.make)))
        return
    try:
        sizes = [int(n.replace("_", "")) for n in args.rows.split(",") if n.strip()]
    except ValueError:
        ap.error(f"--rows: whole numbers separated by commas, not {args.rows!r}")
    if not sizes or min(sizes) < 1 or args.rounds < 1 or args.help_runs < 0:
        ap.error("--rows and --rounds must be at least 1, --help-runs at least 0")
    tools = [t for t in args.only.split(",") if t]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        ap.error(f"--only: unknown tool(s) {', '.join(sorted(unknown))}; choose from {TOOLS}")
    print(f"start: {uptime()}")
    if "leadpipe" in tools:  # as installed: bytecode written once (see the docstring)
        package = Path(__file__).resolve().parent.parent / "pipeline"
        compiled = subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)])
        if compiled.returncode:
            print("note: leadpipe's modules could not all be compiled (a read-only checkout?)")
    if "frictionless" in tools and importlib.util.find_spec("frictionless") is None:
        print("frictionless: skipped (not installed; pip install -e '.[bench]')")
        tools.remove("frictionless")
    fields = campaign_fields()
    summary: list[Target] = []
    for rows in sizes:
        summary += [(f"{rows:,} rows: {what}", got, limit) for what, got, limit in
                    measure(rows, tools, args.rounds, fields)]  # fmt: skip
        print(f"(load: {uptime()})")
    if "leadpipe" in tools and args.help_runs:
        walls = help_walls(args.help_runs)
        print(f"\nleadpipe --help: {' '.join(f'{w:.2f}' for w in walls)} s")
        summary.append(("leadpipe --help wall (s)", statistics.median(walls), 0.15))
    if summary:
        print("\nevery target of this run:")
        print_targets(summary)
    print(f"\nthis runner's own peak RSS {own_peak_mb():.0f} MB (a floor under the RSS figures)")
    print(f"end: {uptime()}")


if __name__ == "__main__":
    main()
