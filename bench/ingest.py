"""Benchmark: the ingest data stages against their floors, ratios measured in one run.

Scenarios (each a function, so the upload part can be added beside them):

- ``csv``: a 1M-row CSV (~170 MB, 5 % bad rows) through ``open_table`` -> ``map_columns`` ->
  ``Validator`` (what ``--dry-run`` does before writing rejects) vs the floor: pyarrow's
  multi-threaded ``read_csv`` (all columns text, ``newlines_in_values=True``) plus a vectorised
  whole-value match of the same regexes (RE2 via ``pyarrow.compute``). Target <= 1.5x.
- ``rss``: peak RSS of that pass in a fresh child process, per size (1M and 5M rows). Target
  <= 500 MB and flat (5M within 10 % of 1M).
- ``xlsx``: a 100k-row XLSX read by ``open_table`` (checks + fastexcel + text fix-ups) vs
  fastexcel alone (``load_sheet(...).to_arrow()``). Target <= 1.3x.
- ``dtype``: the pandera checks (``RowChecks``) on pandas 3's string dtype vs on ``object``
  columns.
- ``dryrun``: the whole ``leadpipe ingest --dry-run`` of the 1M-row CSV (embedded sandbox,
  rejects and receipt written) vs read+map+validate, each in a fresh child: time and peak RSS.

Rounds are interleaved after a warm-up (this VM touches new memory lazily); the CSV scenario
reports medians and the ratio of the medians (the VM is shared and noisy), the others the best
of ``--rounds``.
Generated data lives in bench/data/ (gitignored) and is reused when present.

    .venv/bin/python bench/ingest.py [--rows 1000000] [--big-rows 5000000] [--xlsx-rows 100000]
        [--rounds 5] [--only csv,rss,xlsx,dtype,dryrun]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
sys.path.insert(0, str(ROOT.parent))

from pipeline.config import CampaignSettings  # noqa: E402
from pipeline.ingest.fields import CampaignSchema, FieldSpec  # noqa: E402
from pipeline.ingest.map import map_columns  # noqa: E402
from pipeline.ingest.read.open import open_table  # noqa: E402
from pipeline.ingest.validate.checks import Validator  # noqa: E402

PHONE_RE = r"^\s*((\+|00)?[\s\-\(\)]*)?(\d[\s\-\(\)]*){5,25}\s*$"
SPECS = [
    FieldSpec("name", "varchar", ".+", True),
    FieldSpec("phone", "phone", PHONE_RE, True),
    FieldSpec("email", "email", r"[^@\s]+@[^@\s]+\.[a-z]{2,}", False),
    FieldSpec("zip", "varchar", r"\d{4}", False),
    FieldSpec("city", "varchar", r"[\p{L} .-]+", False),
    FieldSpec("company", "varchar", ".*", False),
    FieldSpec("notes", "text", ".*", False),
]
SCHEMA = CampaignSchema("BENCH", SPECS, "live", "", "bench")
HEADERS = ["Navn", "Tlf.", "Email", "Postnr", "By", "Firma", "Noter"]
SYNONYMS = {"Navn": "name", "Tlf.": "phone", "Postnr": "zip", "By": "city", "Firma": "company",
            "Noter": "notes"}  # fmt: skip
OPTIONS = CampaignSettings(columns=SYNONYMS)


# ------------------------------------------------------------------------------------ data


def _columns(n: int, seed: int = 7) -> dict[str, pa.Array]:
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    s = lambda a: pa.array(a.astype(str))  # noqa: E731
    first = np.array(["Søren", "Anne", "Jens", "Mette", "Lars", "Åse", "Øjvind", "Maria"])
    city = np.array(["København", "Århus", "Odense", "Ålborg", "Esbjerg", "Randers"])
    name = pc.binary_join_element_wise(s(first[idx % 8]), s(idx), " ")
    phone = pc.binary_join_element_wise("+45 ", s(rng.integers(20_000_000, 99_999_999, n)), "")
    email = pc.binary_join_element_wise(s(idx), "@example.dk", "")
    email = pc.binary_join_element_wise("lead", email, "")
    zip_ = s(rng.integers(1000, 9999, n))
    town = s(city[idx % 6])
    company = pc.binary_join_element_wise("Firma ApS nr. ", s(idx % 5000), "")
    notes = pa.array(np.full(n, "Ringet op i sidste uge; vil gerne høre mere om tilbuddet"))
    # 5 % bad rows, spread over the kinds of problems people make
    bad = rng.random(n) < 0.05
    kind = rng.integers(0, 4, n)
    phone = pc.if_else(pa.array(bad & (kind == 0)), "12ab", phone)
    name = pc.if_else(pa.array(bad & (kind == 1)), "", name)
    zip_ = pc.if_else(pa.array(bad & (kind == 2)), "800", zip_)
    email = pc.if_else(pa.array(bad & (kind == 3)), "not-an-email", email)
    return dict(zip(HEADERS, [name, phone, email, zip_, town, company, notes], strict=True))


def make_csv(n: int) -> Path:
    """A ``;``-separated UTF-8 CSV of ``n`` rows in bench/data (reused when present)."""
    path = DATA / f"leads_{n}.csv"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    opts = pcsv.WriteOptions(delimiter=";", quoting_style="needed")
    with pcsv.CSVWriter(
        tmp, pa.schema([(h, pa.string()) for h in HEADERS]), write_options=opts
    ) as w:
        for start in range(0, n, 500_000):
            m = min(500_000, n - start)
            cols = _columns(m, seed=start)
            w.write_table(pa.table({h: cols[h].cast(pa.string()) for h in HEADERS}))
    tmp.rename(path)
    return path


def make_xlsx(n: int) -> Path:
    """An XLSX of ``n`` rows (phones partly stored as numbers, a title row)."""
    import xlsxwriter

    path = DATA / f"leads_{n}.xlsx"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    cols = {h: c.to_pylist() for h, c in _columns(n).items()}
    tmp = path.with_suffix(".part.xlsx")
    wb = xlsxwriter.Workbook(str(tmp), {"constant_memory": True})
    ws = wb.add_worksheet("Leads")
    ws.write_row(0, 0, ["Leads til kampagnen"])
    ws.write_row(1, 0, HEADERS)
    for i in range(n):
        row = [cols[h][i] for h in HEADERS]
        ws.write_row(i + 2, 0, row)
        if i % 10 == 0:
            ws.write_number(i + 2, 1, float(row[1].replace("+45 ", "")) if row[1][0] == "+" else 0)
        if i % 7 == 0:
            ws.write_number(i + 2, 3, float(row[3]))
    wb.close()
    tmp.rename(path)
    return path


# ------------------------------------------------------------------------------- scenarios


def floor_csv(path: Path) -> int:
    """pyarrow read (threads, all text, quoted newlines) + whole-value match of each regex."""
    table = pcsv.read_csv(
        path,
        parse_options=pcsv.ParseOptions(delimiter=";", newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(
            column_types=dict.fromkeys(HEADERS, pa.string()), strings_can_be_null=False
        ),
    )
    bad = 0
    for header, spec in zip(HEADERS, SPECS, strict=True):
        if spec.regex in (".*",):
            continue
        ok = pc.match_substring_regex(table[header], f"^(?:{spec.regex})$")
        bad += table.num_rows - pc.sum(ok).as_py()
    return bad


def ours_csv(path: Path, chunk_rows: int = 100_000) -> tuple[int, int, int]:
    """open_table -> map_columns -> Validator over every chunk: (valid, rejected, problems)."""
    table = open_table(
        path,
        options=OPTIONS,
        expected_fields=[f.name for f in SPECS],
        chunk_rows=chunk_rows,
        max_bytes=2**40,
    )
    validator = Validator(SCHEMA, map_columns(table.headers, SPECS, OPTIONS.columns, path=path))
    valid = rejected = problems = 0
    for _chunk, res in validator.validate_all(table.chunks()):
        valid += len(res.valid)
        rejected += res.rejected_rows
        problems += len(res.problems)
    return valid, rejected, problems


def floor_xlsx(path: Path) -> int:
    """fastexcel alone: the first sheet to Arrow."""
    import fastexcel

    return int(fastexcel.read_excel(str(path)).load_sheet(0).to_arrow().num_rows)


def floor_xlsx_text(path: Path) -> int:
    """fastexcel with every column as text (what leadpipe asks it for)."""
    import fastexcel

    reader = fastexcel.read_excel(str(path))
    return int(reader.load_sheet(0, header_row=None, dtypes="string").to_arrow().num_rows)


def ours_xlsx(path: Path) -> int:
    """open_table on the XLSX (bounded checks, sheet choice, header row, text fix-ups)."""
    table = open_table(path, options=OPTIONS, expected_fields=[f.name for f in SPECS])
    return sum(len(c) for c in table.chunks())


def timed(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Each function's times; rounds interleave them so machine noise hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def best(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best time of each function (interleaved rounds after a warm-up)."""
    return {name: min(ts) for name, ts in timed(fns, rounds).items()}


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM belongs to the address space, so unlike ``ru_maxrss``
    (which Linux carries over fork and exec) it does not report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_rss(path: Path) -> dict[str, float]:
    """Run ours_csv in a fresh process; its peak RSS (MB) and time."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def scenario_csv(rows: int, rounds: int) -> dict[str, float]:
    path = make_csv(rows)
    counts = ours_csv(path)
    t = timed({"floor": lambda: floor_csv(path), "ours": lambda: ours_csv(path)}, rounds)
    floor, ours = statistics.median(t["floor"]), statistics.median(t["ours"])
    ratios = [o / f for f, o in zip(t["floor"], t["ours"], strict=True)]
    mb = path.stat().st_size / 1e6
    print(f"csv {rows:,} rows, {mb:.0f} MB: valid/rejected/problems = {counts}")
    print(f"  floor (pyarrow read_csv + RE2 full match): median {floor:.3f} s")
    print(
        f"  read+map+validate:                         median {ours:.3f} s   "
        f"ratio of medians {ours / floor:.2f}x"
    )
    print(f"  per-round ratios: {' '.join(f'{r:.2f}' for r in ratios)}")
    return {"floor_s": floor, "ours_s": ours, "ratio": ours / floor}


def scenario_rss(rows: int, big_rows: int) -> dict[str, float]:
    small, big = child_rss(make_csv(rows)), child_rss(make_csv(big_rows))
    growth = big["rss_mb"] / small["rss_mb"] - 1
    print(
        f"rss: {rows:,} rows {small['rss_mb']:.0f} MB ({small['s']:.1f} s); "
        f"{big_rows:,} rows {big['rss_mb']:.0f} MB ({big['s']:.1f} s); growth {growth:+.1%}"
    )
    return {"rss_small_mb": small["rss_mb"], "rss_big_mb": big["rss_mb"], "growth": growth}


def scenario_xlsx(rows: int, rounds: int) -> dict[str, float]:
    path = make_xlsx(rows)
    t = best(
        {
            "fe": lambda: floor_xlsx(path),
            "fe_text": lambda: floor_xlsx_text(path),
            "ours": lambda: ours_xlsx(path),
        },
        rounds,
    )
    fe, fe_text, ours = t["fe"], t["fe_text"], t["ours"]
    print(
        f"xlsx {rows:,} rows: fastexcel {fe:.3f} s, fastexcel as text {fe_text:.3f} s, "
        f"open_table {ours:.3f} s   ratio {ours / fe:.2f}x (vs text: {ours / fe_text:.2f}x)"
    )
    return {"fastexcel_s": fe, "fastexcel_text_s": fe_text, "ours_s": ours, "ratio": ours / fe}


def scenario_dtype(rounds: int) -> dict[str, float]:
    import pandas as pd

    from pipeline.ingest.fields import RowChecks

    cols = _columns(1_000_000)
    frame = pd.DataFrame({s.name: cols[h].to_pandas() for h, s in zip(HEADERS, SPECS, strict=True)})
    frame = frame.astype("str")
    obj = frame.astype(object)
    checks = RowChecks(SPECS)  # the production path: pandera + the recorded check masks
    t = best({"str": lambda: checks.failures(frame), "obj": lambda: checks.failures(obj)}, rounds)
    t_str, t_obj = t["str"], t["obj"]
    print(
        f"pandera 1M rows: str dtype {t_str:.3f} s, object {t_obj:.3f} s   "
        f"object/str {t_obj / t_str:.1f}x"
    )
    return {"str_s": t_str, "object_s": t_obj}


DRYRUN_CONFIG = """\
[campaigns.B2B-DK-SPRING.columns]
"Navn" = "name"
"Tlf." = "phone"
"Noter" = "note"
"""


def child_dryrun(path: Path) -> dict[str, float]:
    """``leadpipe ingest --dry-run`` of ``path`` in a fresh process (embedded sandbox, demo
    campaign B2B-DK-SPRING; rejects and receipt written to a temp folder): time, peak RSS."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="leadpipe-bench-") as tmp:
        (Path(tmp) / "leadpipe.toml").write_text(DRYRUN_CONFIG, encoding="utf-8")
        out = subprocess.run(
            [sys.executable, __file__, "--child-dryrun", str(path), "--tmp", tmp],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def scenario_dryrun(rows: int) -> dict[str, float]:
    """The whole command vs read+map+validate alone, each in a fresh child (no target: shows
    what the rest of a dry run costs: ledger fingerprints, reject files, receipt)."""
    path = make_csv(rows)
    base, full = child_rss(path), child_dryrun(path)
    print(
        f"dry run {rows:,} rows: read+map+validate {base['s']:.1f} s ({base['rss_mb']:.0f} MB); "
        f"leadpipe ingest --dry-run {full['s']:.1f} s ({full['rss_mb']:.0f} MB)   "
        f"ratio {full['s'] / base['s']:.1f}x"
    )
    return {"validate_s": base["s"], "dryrun_s": full["s"], "dryrun_rss_mb": full["rss_mb"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--big-rows", type=int, default=5_000_000)
    ap.add_argument("--xlsx-rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="csv,rss,xlsx,dtype,dryrun")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-dryrun", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_dryrun:
        from pipeline.cli import main as leadpipe

        config, out = args.tmp / "leadpipe.toml", args.tmp / "out"
        sys.argv = ["leadpipe", "--config", str(config), "ingest", str(args.child_dryrun)]
        sys.argv += ["--campaign", "B2B-DK-SPRING", "--dry-run", "--json", "--out", str(out)]
        t = time.perf_counter()
        try:
            leadpipe()
        except SystemExit as exc:
            if exc.code:
                raise
        print(json.dumps({"rss_mb": peak_rss_mb(), "s": time.perf_counter() - t}))
        return
    if args.child:
        t = time.perf_counter()
        ours_csv(args.child)
        rss = peak_rss_mb()
        print(json.dumps({"rss_mb": rss, "s": time.perf_counter() - t}))
        return
    only = set(args.only.split(","))
    if "csv" in only:
        scenario_csv(args.rows, args.rounds)
    if "rss" in only:
        scenario_rss(args.rows, args.big_rows)
    if "xlsx" in only:
        scenario_xlsx(args.xlsx_rows, args.rounds)
    if "dtype" in only:
        scenario_dtype(args.rounds)
    if "dryrun" in only:
        scenario_dryrun(args.rows)


if __name__ == "__main__":
    main()
