"""Time `wirewash report` on a big synthetic lake (default 100,000 documents).

    python bench/report_speed.py [--docs 100000] [--work bench/_work/report_lake]

Builds, once, a lake of the real layout and schema straight with DuckDB (no pipeline run): `--docs` documents
of 150-900 words in 12 languages over two years, partitioned by language and month (`--partition_by` day,
month or year), a third as many duplicates in clusters of 2-7 copies (half near), 2% rejected records, and
a `_SUMMARY.json` listing the files. Then times `collect` (the SQL and the copies read back: none here, the
inputs do not exist) and `render_report`, and prints the page's size. Nothing here is a test.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import duckdb

from wirewash.pipeline.report import render_report
from wirewash.pipeline.report_data import collect

FORMATS = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}
LANGS = ["en", "vi", "de", "fr", "es", "it", "pt", "nl", "ru", "ja", "ko", "und"]


def build(lake: Path, n_docs: int, partition_by: str = "month") -> None:
    con = duckdb.connect()
    words = "'" + "','".join(f"w{i}" for i in range(2000)) + "'"
    con.execute(f"""CREATE TABLE docs AS SELECT
        printf('doc-%07d', i) AS doc_id, printf('https://site%d.example/a/%d', i % 300, i) AS url,
        printf('site%d.example', i % 300) AS source, printf('Headline number %d about topic %d', i, i % 997) AS title,
        (TIMESTAMPTZ '2023-01-01 00:00:00+00' + INTERVAL (i % 730) DAY)::TIMESTAMPTZ AS published_at,
        (0.5 + (i % 50) / 100.0)::FLOAT AS lang_prob,
        array_to_string(list_transform(range(150 + i % 750), lambda k: ([{words}])[1 + (k * 7 + i) % 2000]), ' ') AS text,
        NULL::INTEGER AS n_chars, (150 + i % 750)::INTEGER AS n_words, md5(i::VARCHAR) AS content_hash,
        (i % 4)::INTEGER AS boilerplate_lines_removed, 'text' AS format, printf('in/part-%03d.jsonl:%d', i % 100, i) AS source_location,
        TIMESTAMPTZ '2026-01-01 00:00:00+00' AS ingested_at, []::VARCHAR[] AS other_langs,
        ['{"','".join(LANGS)}'][1 + i % {len(LANGS)}] AS lang,
        strftime(TIMESTAMPTZ '2023-01-01 00:00:00+00' + INTERVAL (i % 730) DAY, '{FORMATS[partition_by]}') AS date
        FROM range({n_docs}) t(i)""")
    con.execute("UPDATE docs SET n_chars = length(text)::INTEGER")
    (lake / "duplicates").mkdir(parents=True, exist_ok=True)
    (lake / "rejected").mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY docs TO '{lake}/documents' (FORMAT parquet, PARTITION_BY (lang, date), COMPRESSION zstd)")
    n_dups = n_docs // 3
    con.execute(f"""COPY (SELECT printf('copy-%07d', i) AS doc_id, printf('doc-%07d', (i // (1 + i % 6)) * 3) AS duplicate_of,
        CASE WHEN i % 2 = 0 THEN 'exact' ELSE 'near' END AS kind, (CASE WHEN i % 2 = 0 THEN 1.0 ELSE 0.6 + (i % 40) / 100.0 END)::FLOAT AS similarity,
        printf('in/part-%03d.jsonl:%d', i % 100, 1000000 + i) AS source_location, TIMESTAMPTZ '2026-01-01 00:00:00+00' AS ingested_at
        FROM range({n_dups}) t(i)) TO '{lake}/duplicates/part-0.parquet' (FORMAT parquet)""")
    n_rej = n_docs // 50
    con.execute(f"""COPY (SELECT NULL::VARCHAR AS doc_id, printf('in/part-%03d.jsonl:%d', i % 100, 2000000 + i) AS source_location,
        'read' AS stage, ['bad_json', 'empty_text', 'too_large'][1 + i % 3] AS reason, '{{not json' AS excerpt, '' AS error,
        TIMESTAMPTZ '2026-01-01 00:00:00+00' AS ingested_at FROM range({n_rej}) t(i)) TO '{lake}/rejected/part-0.parquet' (FORMAT parquet)""")
    files = {t: sorted(p.relative_to(lake).as_posix() for p in (lake / t).rglob("*.parquet"))
             for t in ("documents", "duplicates", "rejected")}
    read = n_docs + n_dups + n_rej
    summary = {"records_read": read, "documents": n_docs, "duplicates": n_dups, "rejected": n_rej, "reconciled": True,
               "files": files, "layout": {"partition_by": partition_by, "format": 2},
               "invariants": {"reconciled": True, "dangling_duplicate_of": 0, "duplicate_doc_ids": 0,
                              "invalid_partitions": 0, "unread_input": []},
               "runs": [{"run_id": "synthetic", "mode": "batch", "inputs": ["in/"], "records_read": read,
                         "documents": n_docs, "duplicates": n_dups, "rejected": n_rej, "ok": True}]}
    (lake / "_SUMMARY.json").write_text(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--partition_by", choices=sorted(FORMATS), default="month")
    parser.add_argument("--work", default=str(Path(__file__).parent / "_work" / "report_lake"))
    args = parser.parse_args()
    lake = Path(args.work) / f"docs-{args.docs}-{args.partition_by}"
    if not (lake / "_SUMMARY.json").exists():
        started = time.perf_counter()
        build(lake, args.docs, args.partition_by)
        print(f"built {lake} in {time.perf_counter() - started:.1f} s")
    n_files = sum(1 for _ in lake.rglob("*.parquet"))
    started = time.perf_counter()
    data = collect(str(lake))
    collected = time.perf_counter() - started
    page = render_report(data)
    rendered = time.perf_counter() - started - collected
    print(f"{args.docs:,} documents, {n_files:,} files, {data['n_clusters']:,} clusters: collect {collected:.1f} s, "
          f"render {rendered:.1f} s, page {len(page.encode()) / 1e6:.2f} MB")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
