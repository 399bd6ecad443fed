"""Lake layout: files, disk and DuckDB scan times of a wirewash lake against the same rows in one file.

    python bench/lake_layout.py [--n 20000] [--partition_by ingest[,month,year,day]] [--corpus FILE] [--runs 15]

Generates the corpus (`../shared/tools/make_corpus.py`, seed 7) into `bench/_work/` unless `--corpus` is
given, builds one lake per granularity with `wirewash run --partition_by G`, copies its documents into one
zstd Parquet file (DuckDB `COPY`, the same rows), then times two queries on each, warm (one connection, the
first run discarded), median of `--runs`, the lake, the one file and the reference taking turns:

- full scan: `SELECT lang, count(*), sum(n_words) ... WHERE lang IN ('en', 'vi') GROUP BY lang`
- one language, one month: `SELECT count(*), sum(n_words) ... WHERE lang = L AND <that month>` on the
  language and month holding the most documents, written as each granularity prunes best: `date = 'YYYY-MM'`
  (month), `date BETWEEN 'YYYY-MM-01' AND 'YYYY-MM-31'` (day, and ingest, whose files hold `date` as a day),
  `date = 'YYYY'` and `published_at` in the month (year). The same SQL runs on the one file (which holds
  `date` as a column).

The lake is read as `wirewash query` reads it: the files listed in `_SUMMARY.json` (`files`), hive
partitioning on, `date` a string; the one file holds the same rows and columns (`ingest_date`, the ingest
layout's folder, left out). Targets (issue 19): lake time within 1.5x of the one file, disk within 1.3x.
Prints one line per layout and the ratios, then where a lake's time goes: the same full scan over the lake's
files one by one (per-file cost), the footers alone (`parquet_metadata`), and the row groups.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work"
MAKE_CORPUS = REPO.parent / "shared" / "tools" / "make_corpus.py"
POOL = REPO.parent / "shared" / "corpus"
FULL_SCAN = "SELECT lang, count(*), sum(n_words) FROM {src} WHERE lang IN ('en', 'vi') GROUP BY lang"
ONE_MONTH = "SELECT count(*), sum(n_words) FROM {src} WHERE lang = '{lang}' AND {month_filter}"


def month_filter(granularity: str, month: str) -> str:
    """The filter on one month (YYYY-MM) that prunes best at a granularity."""
    if granularity == "month":
        return f"date = '{month}'"
    if granularity in ("day", "ingest"):
        return f"date BETWEEN '{month}-01' AND '{month}-31'"
    year, number = int(month[:4]), int(month[5:7])
    following = f"{year + number // 12}-{number % 12 + 1:02d}-01"
    return (f"date = '{year}' AND published_at >= TIMESTAMPTZ '{month}-01 00:00:00+00' "
            f"AND published_at < TIMESTAMPTZ '{following} 00:00:00+00'")


def corpus(n: int) -> Path:
    path = WORK / f"layout-{n}.jsonl"
    if not path.exists():
        WORK.mkdir(exist_ok=True)
        subprocess.run([sys.executable, str(MAKE_CORPUS), "--pool", str(POOL), "--n", str(n), "--seed", "7",
                        "--out", str(path), "--truth", str(WORK / f"layout-{n}-truth.jsonl"), "--quiet"],
                       check=True)
    return path


def build(source: Path, lake: Path, partition_by: str) -> float:
    shutil.rmtree(lake, ignore_errors=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "wirewash.pipeline.cli", "run", "--input", str(source), "--output", str(lake),
                    "--partition_by", partition_by, "--quiet", "--ingested_at", "2024-01-01T00:00:00Z"],
                   check=True, cwd=REPO)
    return time.monotonic() - started


def disk_bytes(paths) -> int:
    return sum(os.path.getsize(p) for p in paths)


def interleaved_medians(con, queries: list, runs: int) -> list:
    """Median seconds of each query, warm (each run once first), the queries taking turns round after round,
    so that a change in the machine's load falls on all of them alike."""
    for sql in queries:
        con.execute(sql).fetchall()
    times = [[] for _ in queries]
    for _ in range(runs):
        for i, sql in enumerate(queries):
            started = time.perf_counter()
            con.execute(sql).fetchall()
            times[i].append(time.perf_counter() - started)
    return [statistics.median(t) for t in times]


def measure(lake: Path, runs: int, granularity: str) -> dict:
    import duckdb

    summary = json.loads((lake / "_SUMMARY.json").read_text())
    files = [str(lake / rel) for rel in summary["files"]["documents"]]
    partitions = {os.path.dirname(f) for f in files}
    con = duckdb.connect()
    lake_src = f"read_parquet({files!r}, hive_partitioning=true, hive_types_autocast=false)"
    one = lake / "_one_file.parquet"  # outside the tables: not part of the lake
    columns = "* EXCLUDE (ingest_date)" if granularity == "ingest" else "*"
    con.execute(f"COPY (SELECT {columns} FROM {lake_src}) TO '{one}' (FORMAT parquet, COMPRESSION zstd)")
    one_src = f"read_parquet('{one}')"
    lang, month = con.execute(
        f"SELECT lang, strftime(published_at, '%Y-%m') m FROM {lake_src} WHERE published_at IS NOT NULL "
        "GROUP BY ALL ORDER BY count(*) DESC, 1, 2 LIMIT 1").fetchone()
    result = {"documents": summary["documents"], "files": len(files), "partitions": len(partitions),
              "lake_bytes": disk_bytes(files), "one_file_bytes": os.path.getsize(one), "query_month": f"{lang} {month}"}
    result.update(where_time_goes(con, files, runs))
    # A reference layout, not wirewash's: the same rows under year folders only, sorted by language and time
    # inside (language pruned by row-group statistics instead of folders): what fewer files would give.
    reference = lake / "_reference_year_only"
    shutil.rmtree(reference, ignore_errors=True)
    con.execute(f"COPY (SELECT * EXCLUDE (date), date AS period, substr(date, 1, 4) AS year FROM {one_src} "
                f"ORDER BY lang, published_at) TO '{reference}' (FORMAT parquet, COMPRESSION zstd, "
                "PARTITION_BY (year), ROW_GROUP_SIZE 8192)")
    ref_files = sorted(str(p) for p in reference.rglob("*.parquet"))
    ref_src = (f"(SELECT * EXCLUDE (period), period AS date FROM read_parquet({ref_files!r}, "
               "hive_partitioning=true, hive_types_autocast=false))")
    result["reference_files"], result["reference_bytes"] = len(ref_files), disk_bytes(ref_files)
    where = month_filter(granularity, month)
    for name, sql in (("full_scan", FULL_SCAN), ("one_month", ONE_MONTH)):
        on_lake, on_one, on_ref = (sql.format(src=src, lang=lang, month_filter=where)
                                   for src in (lake_src, one_src, ref_src))
        assert con.execute(on_lake).fetchall() == con.execute(on_one).fetchall(), f"{name}: different answers"
        (result[f"{name}_lake_s"], result[f"{name}_one_s"],
         result[f"{name}_reference_s"]) = interleaved_medians(con, [on_lake, on_one, on_ref], runs)
    one.unlink()
    shutil.rmtree(reference)
    return result


def where_time_goes(con, files: list, runs: int) -> dict:
    """The lake's costs apart: row groups and footer bytes; the footers read alone (DuckDB's
    `parquet_metadata` over every file); a trivial query per file (`count(*)` of each file, summed): what
    each file costs whatever it holds."""
    meta = con.execute(f"SELECT count(DISTINCT row_group_id || file_name), "
                       f"sum(DISTINCT row_group_num_rows) FROM parquet_metadata({files!r})").fetchone()
    footers = sum(_footer_bytes(f) for f in files)
    started = time.perf_counter()
    for _ in range(runs):
        con.execute(f"SELECT count(*) FROM parquet_metadata({files!r})").fetchall()
    footer_s = (time.perf_counter() - started) / runs
    sample = files[:200]  # the per-file cost from up to 200 files, each queried alone
    con.execute(f"SELECT count(*) FROM read_parquet({sample[0]!r})").fetchall()
    started = time.perf_counter()
    for path in sample:
        con.execute(f"SELECT count(*) FROM read_parquet({path!r})").fetchall()
    per_file_s = (time.perf_counter() - started) / len(sample)
    return {"row_groups": meta[0], "footer_bytes": footers, "footers_s": footer_s, "per_file_s": per_file_s}


def _footer_bytes(path: str) -> int:
    with open(path, "rb") as handle:
        handle.seek(-8, os.SEEK_END)
        return int.from_bytes(handle.read(4), "little") + 8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--corpus", type=Path, help="an existing JSONL corpus instead of a generated one")
    parser.add_argument("--partition_by", default="ingest", help="comma-separated: ingest, day, month, year")
    parser.add_argument("--runs", type=int, default=31)
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--reuse", action="store_true", help="measure the lakes already built in bench/_work/")
    args = parser.parse_args()
    source = args.corpus or corpus(args.n)
    results = {}
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} at the start")
    for granularity in args.partition_by.split(","):
        lake = WORK / f"layout-lake-{granularity}"
        seconds = 0.0 if args.reuse and (lake / "_SUMMARY.json").exists() else build(source, lake, granularity)
        r = measure(lake, args.runs, granularity)
        r["build_s"] = seconds
        results[granularity] = r
        print(f"{granularity:>5}: {r['documents']} documents in {r['files']} files under {r['partitions']} "
              f"partitions; disk {r['lake_bytes'] / 1e6:.1f} MB vs one file {r['one_file_bytes'] / 1e6:.1f} MB "
              f"({r['lake_bytes'] / r['one_file_bytes']:.2f}x, target 1.3x)")
        for name in ("full_scan", "one_month"):
            ratio = r[f"{name}_lake_s"] / r[f"{name}_one_s"]
            print(f"       {name:>9}: lake {r[f'{name}_lake_s'] * 1000:.1f} ms, one file "
                  f"{r[f'{name}_one_s'] * 1000:.1f} ms ({ratio:.2f}x, target 1.5x); reference "
                  f"{r[f'{name}_reference_s'] * 1000:.1f} ms ({r[f'{name}_reference_s'] / r[f'{name}_one_s']:.2f}x)"
                  + (f" [{r['query_month']}]" if name == "one_month" else ""))
        print(f"       reference (year folders only, sorted by lang inside): {r['reference_files']} files, "
              f"{r['reference_bytes'] / 1e6:.1f} MB ({r['reference_bytes'] / r['one_file_bytes']:.2f}x)")
        print(f"       where the time goes: {r['row_groups']} row groups, footers {r['footer_bytes'] / 1e3:.0f} kB "
              f"read in {r['footers_s'] * 1000:.1f} ms; count(*) of one file alone {r['per_file_s'] * 1e6:.0f} us "
              f"(x {r['files']} files = {r['per_file_s'] * r['files'] * 1000:.0f} ms)")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} at the end")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
