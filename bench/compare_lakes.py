"""Are two lakes the same? Compares documents, duplicates and rejected row for row with DuckDB.

    python bench/compare_lakes.py LAKE_A LAKE_B

The lake's dedup index (`_index`: doc_id, content hash, date, signature, sketch) is compared too, when
either lake has one. Every column is compared (partition columns included), so equal lakes mean the same decisions: kept
documents and their content hashes, every duplicate's `duplicate_of`, kind and similarity, every rejection's
stage and reason. Exits 1 and prints the differing rows' counts when they differ.
"""
from __future__ import annotations

import argparse
import glob
import sys

import duckdb

from wirewash.pipeline.lake import INDEX
from wirewash.transforms.types import TABLES


def differences(lake_a: str, lake_b: str) -> dict:
    """{table: (rows in A, rows in B, rows only in A, rows only in B)}."""
    con = duckdb.connect()
    out = {}
    index = [INDEX] if any(glob.glob(f"{lake}/{INDEX}/**/*.parquet", recursive=True) for lake in (lake_a, lake_b)) else []
    for table in (*TABLES, *index):
        a, b = (f"read_parquet('{lake}/{table}/**/*.parquet', hive_partitioning=true, union_by_name=true)"
                for lake in (lake_a, lake_b))
        count = lambda sql: con.execute(f"select count(*) from ({sql})").fetchone()[0]  # noqa: E731
        out[table] = (count(f"select * from {a}"), count(f"select * from {b}"),
                      count(f"select * from {a} except all select * from {b}"),
                      count(f"select * from {b} except all select * from {a}"))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lake_a", help="a lake's folder (the output of `wirewash run`)")
    parser.add_argument("lake_b", help="the lake to compare it with")
    args = parser.parse_args(argv)
    same = True
    for table, (rows_a, rows_b, only_a, only_b) in differences(args.lake_a, args.lake_b).items():
        same &= only_a == only_b == 0
        print(f"{table:<10} {rows_a:>8} vs {rows_b:>8} rows; only in the first {only_a}, only in the second {only_b}")
    print("identical" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
