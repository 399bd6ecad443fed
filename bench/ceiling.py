"""The ceiling (issue 21): wirewash's own functions in ONE plain Python loop, one process, no Beam.

    python bench/ceiling.py CORPUS.jsonl [--limit N] [--datatrove DOCS_PER_S] [--cores 1.8] [--lake LAKE]
                            [--json OUT.json] [--keep DIR] [--partition_by day|month|year|ingest]

Every record goes through the same pure functions the Beam stages call, in the pipeline's order:
read (`match_inputs`, `plan_ranges`, `parse_file`), extract (`extract_html` on pages, `extracted_article`;
no page guard, no subprocess), normalize (`normalize_article`), the learned boilerplate lines (`learning_keys`
of every normalized article, counted with `LearnRepeatedLines`' own combine functions: the learning needs the
whole input first, as in the pipeline), boilerplate (`clean_article` with the rules and the learned lines),
language (`tag_language`), dedup's fingerprints (`story_key`, `content_hash`, `shingles`, `minhash_signature`,
`shingle_sketch`, `band_hashes`: what `_FingerprintFn` computes) and its decisions in memory (`decide_all`:
the sharded stage's pure steps in one place) and routing (`route`), then the lake's rows (`partition_of`,
`row_of`, `index_row_of`) and one staged Parquet file per partition and table (`_write_staged_table`, the writer's
own function, into a temporary staging folder; no commit, no summary). Each call is timed with
`time.process_time()`; setup (imports, rule compilation, langdetect's profiles, trafilatura's first call) is
reported apart. No runner can make wirewash faster than these functions in one loop: that is the ceiling.

Prints a table: ms of CPU a record per function, their sum, the whole loop's CPU (the sum plus the loop's
own glue and the timers), and what the loop's CPU a record means in docs/s at `--cores` busy cores and as a
multiple of datatrove's docs/s (`--datatrove`, default 226.6: the median of the three quiet rounds of
docs/performance.md). With `--lake`, the loop's tables are compared with that lake's (a `wirewash run` on
the same corpus): counts and the records' locations per table, and every duplicate's `duplicate_of`.
"""
from __future__ import annotations

import argparse
import array
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime

from wirewash.pipeline.cli import configure_logging

configure_logging(verbose=False)  # before apache_beam is imported: hides "apitools not found"

DATATROVE_DOCS_PER_S = 226.6  # median of 215.7, 244.7, 226.6 (docs/performance.md, three quiet 20k rounds)
INGESTED_AT = "2026-01-01T00:00:00+00:00"


class Clock:
    """Process CPU seconds per named function, summed over calls."""

    def __init__(self):
        self.cpu = defaultdict(float)
        self.calls = defaultdict(int)

    def run(self, name: str, fn, *args):
        started = time.process_time()
        try:
            return fn(*args)
        finally:
            self.cpu[name] += time.process_time() - started
            self.calls[name] += 1


def ceiling(corpus: str, limit: int = 0, staging: str = "", partition_by: str = "") -> dict:
    """Runs the loop over `corpus` (its first `limit` records, 0: all) and returns the timings and the tables;
    the documents are written in the `partition_by` layout (default: the lake's default, day)."""
    setup_started = time.process_time()
    import pyarrow as pa

    from wirewash.pipeline.input_files import match_inputs
    from wirewash.pipeline.io import DEFAULT_MAX_RECORD_BYTES, parse_file, plan_ranges
    from wirewash.pipeline.lake import DEFAULT_PARTITION_BY, INDEX, file_schema, partition_of, row_of
    from wirewash.pipeline.lake_write import _write_staged_table
    from wirewash.transforms.boilerplate import clean_article, load_rules
    from wirewash.transforms.dedup import (DedupConfig, _Key, band_hashes, decide_all, lsh_params,
                                           minhash_signature, route, shingle_sketch, shingles, story_key)
    from wirewash.transforms.extract import _is_page, _page_error, extract_html, extracted_article
    from wirewash.transforms.guard import record_error
    from wirewash.transforms.language import load_langdetect, tag_language
    from wirewash.transforms.lake_dedup import index_row_of
    from wirewash.transforms.normalize import content_hash, normalize_article
    from wirewash.transforms.repeated_lines import (DEFAULT_MIN_SUPPORT, SHARED_MIN_STORIES, _above_support,
                                                     _DistinctStories, _KeysBySource, learning_keys)
    from wirewash.transforms.types import DOCUMENTS, DUPLICATES, REJECTED, Article, Rejection

    partition_by = partition_by or DEFAULT_PARTITION_BY
    config = DedupConfig()
    bands, rows_per_band = lsh_params(config.threshold, config.num_perm)
    rules = load_rules()
    detect_langs = load_langdetect()
    detect_langs("Warm-up: langdetect loads its profiles on its first call, which is no record's cost.")
    extract_html("<html><body><article><p>Warm-up: trafilatura's first call loads its own data.</p>"
                 "</article></body></html>")
    rules.match("warm up")
    clock = Clock()
    run = clock.run
    setup = time.process_time() - setup_started

    loop_started = time.process_time()
    tables = {DOCUMENTS: [], DUPLICATES: [], REJECTED: []}
    normalized: list = []
    records = 0

    def guarded(stage: str, name: str, fn, article, *args):
        """`fn(article, *args)`, or the record's rejection when it raises (the stages' `isolated`)."""
        try:
            return run(name, fn, article, *args)
        except Exception as err:  # noqa: BLE001 - as `isolated`: one record's error is its rejection
            return record_error(stage, article, err)

    # 1. read, extract, normalize: every record; the learning keys of each normalized article
    stories = _DistinctStories(max(DEFAULT_MIN_SUPPORT, SHARED_MIN_STORIES))
    accumulators: dict = {}
    for input_file in match_inputs([corpus]):
        for span in plan_ranges(input_file):
            parsed = parse_file(input_file, DEFAULT_MAX_RECORD_BYTES, span=span)
            while not limit or records < limit:
                item = run("read: parse_file (per record)", next, parsed, None)
                if item is None:
                    break
                records += 1
                if isinstance(item, Rejection):
                    tables[REJECTED].append(item)
                    continue
                if _is_page(item):
                    try:
                        extracted = run("extract: extract_html (pages)", extract_html, item.html, item.url)
                        item = run("extract: extracted_article", extracted_article, item, extracted)
                    except Exception as err:  # noqa: BLE001 - the page guard's `extraction_error`
                        item = _page_error(item, err)
                    if isinstance(item, Rejection):
                        tables[REJECTED].append(item)
                        continue
                item = guarded("normalize", "normalize: normalize_article", normalize_article, item)
                if isinstance(item, Rejection):
                    tables[REJECTED].append(item)
                    continue
                normalized.append(item)
                value, scoped = run("learn: learning_keys", learning_keys, item)
                started = time.process_time()
                for scope_key in scoped:
                    acc = accumulators.get(scope_key)
                    if acc is None:
                        acc = accumulators[scope_key] = stories.create_accumulator()
                    stories.add_input(acc, value)
                clock.cpu["learn: count stories per line key"] += time.process_time() - started
        if limit and records >= limit:
            break

    # 2. what was learned (the combine's output, `AboveSupport`, `BySource`)
    started = time.process_time()
    by_source = _KeysBySource()
    learned = by_source.create_accumulator()
    for scope_key, acc in accumulators.items():
        if _above_support((scope_key, stories.extract_output(acc)), DEFAULT_MIN_SUPPORT):
            by_source.add_input(learned, scope_key)
    learned = by_source.extract_output(learned)
    clock.cpu["learn: keys above support"] += time.process_time() - started
    del accumulators

    # 3. boilerplate, language, dedup's fingerprints
    articles, keys, sketches = [], [], {}
    for article in normalized:
        article = guarded("boilerplate", "boilerplate: clean_article", clean_article, article, rules, learned)
        if not isinstance(article, Rejection):
            article = guarded("language", "language: tag_language", tag_language, article, detect_langs)
        if isinstance(article, Rejection):
            tables[REJECTED].append(article)
            continue
        key = run("dedup: story_key", story_key, article.text, article.title)
        digest = run("dedup: content_hash", content_hash, key)
        items = run("dedup: shingles", shingles, key)
        signature = run("dedup: minhash_signature", minhash_signature, items, config.num_perm, config.seed)
        sketch = run("dedup: shingle_sketch", shingle_sketch, items)
        packed = run("dedup: band_hashes", band_hashes, signature, bands, rows_per_band)
        started = time.process_time()
        article = article._replace(content_hash=digest)
        keys.append(_Key(article.source_location, article.doc_id, article.published_at, digest,
                         array.array("Q", packed).tobytes()))
        sketches[article.source_location] = (signature, sketch)
        articles.append(article)
        clock.cpu["dedup: keys (packing)"] += time.process_time() - started
    del normalized

    # 4. the decisions, in memory, and each article routed
    decided = run("dedup: decide_all (in memory)", decide_all, keys, config, lambda loc: sketches[loc][1])
    index_rows = []
    for article in articles:
        routed = run("dedup: route", route, article, decided.get(article.source_location))
        if isinstance(routed, Article):
            tables[DOCUMENTS].append(routed)
            index_rows.append(run("write: index_row_of", index_row_of, (
                routed.doc_id, routed.content_hash, routed.published_at, *sketches[routed.source_location])))
        else:
            tables[DUPLICATES if not isinstance(routed, Rejection) else REJECTED].append(routed)

    # 5. the lake: rows per partition, one staged Parquet file per partition and table
    ingested = datetime.fromisoformat(INGESTED_AT)
    files = 0
    for table, elements in tables.items():
        buffers = defaultdict(list)
        for element in elements:
            partition = (run("write: partition_of", partition_of, element, partition_by, ingested)
                         if table == DOCUMENTS else "")
            buffers[partition].append(run("write: row_of", row_of, table, element, ingested, partition_by))
        schema = file_schema(table, partition_by)
        for partition, rows in buffers.items():
            data = run("write: pa.Table.from_pylist", pa.Table.from_pylist, rows, schema)
            run("write: _write_staged_table (sort, zstd, file)", _write_staged_table, table, partition, staging, data)
            files += 1
    if index_rows:
        data = run("write: pa.Table.from_pylist", pa.Table.from_pylist, index_rows, file_schema(INDEX))
        run("write: _write_staged_table (sort, zstd, file)", _write_staged_table, INDEX, "", staging, data)
        files += 1
    loop = time.process_time() - loop_started
    return {"records": records, "setup_cpu_s": setup, "loop_cpu_s": loop, "cpu_s": dict(clock.cpu),
            "calls": dict(clock.calls), "files": files,
            "counts": {table: len(elements) for table, elements in tables.items()},
            "locations": {table: sorted(e.source_location for e in elements) for table, elements in tables.items()},
            "duplicate_of": sorted((d.source_location, d.duplicate_of) for d in tables[DUPLICATES])}


def compare_with_lake(result: dict, lake: str) -> dict:
    """{table: (loop rows, lake rows, locations only in the loop, only in the lake)}, and the duplicates whose
    `duplicate_of` differs."""
    import duckdb

    con = duckdb.connect()
    out = {}
    for table, locations in result["locations"].items():
        rows = con.execute(f"select source_location from read_parquet('{lake}/{table}/**/*.parquet', "
                           "hive_partitioning=true, union_by_name=true)").fetchall()
        theirs = sorted(r[0] for r in rows)
        out[table] = (len(locations), len(theirs), len(set(locations) - set(theirs)), len(set(theirs) - set(locations)))
    pairs = con.execute(f"select source_location, duplicate_of from read_parquet('{lake}/duplicates/**/*.parquet')").fetchall()
    out["duplicate_of differs"] = len(set(map(tuple, result["duplicate_of"])) ^ set(pairs)) // 2
    return out


def table(result: dict, cores: float, datatrove: float) -> str:
    n = max(result["records"], 1)
    lines = ["| function | calls | ms of CPU a record |", "| --- | ---: | ---: |"]
    stages = defaultdict(float)
    for name, seconds in sorted(result["cpu_s"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {result['calls'].get(name, '')} | {1000 * seconds / n:.3f} |")
        stages[name.split(":")[0]] += seconds
    total = sum(result["cpu_s"].values())
    loop = result["loop_cpu_s"]
    lines.append(f"| **sum of the functions** | | **{1000 * total / n:.3f}** |")
    lines.append(f"| **the whole loop** (the sum, the loop's glue, the timers) | | **{1000 * loop / n:.3f}** |")
    lines.append(f"| setup (once: rules, langdetect's profiles, imports; not per record) | | {result['setup_cpu_s']:.2f} s |")
    lines += ["", "| stage | ms of CPU a record |", "| --- | ---: |"]
    lines += [f"| {stage} | {1000 * seconds / n:.3f} |" for stage, seconds in sorted(stages.items(), key=lambda kv: -kv[1])]
    ms = 1000 * loop / n
    docs = cores * 1000 / ms
    lines += ["", f"records {result['records']:,}; loop {ms:.3f} ms of CPU a record -> at {cores} cores busy "
              f"{docs:,.0f} docs/s = {docs / datatrove:.2f}x datatrove ({datatrove} docs/s); 5x would need "
              f"{cores * 1000 / (5 * datatrove):.2f} ms a record"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus")
    parser.add_argument("--limit", type=int, default=0, help="only the first N records (0: all)")
    parser.add_argument("--datatrove", type=float, default=DATATROVE_DOCS_PER_S, help="datatrove's docs/s")
    parser.add_argument("--cores", type=float, default=1.8, help="cores a runner keeps busy")
    parser.add_argument("--lake", help="a wirewash lake of the same corpus: compare the tables")
    parser.add_argument("--json", help="write every figure here")
    parser.add_argument("--keep", help="stage the Parquet files here (kept) instead of a temporary folder")
    parser.add_argument("--partition_by", default="", help="the documents' layout (day, month, year, ingest; "
                        "default: the lake's default)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.corpus):
        sys.stderr.write(f"ceiling: no such file: {args.corpus}\n")
        return 2
    staging = args.keep or tempfile.mkdtemp(prefix="wirewash-ceiling-")
    try:
        result = ceiling(args.corpus, args.limit, staging, args.partition_by)
    finally:
        if not args.keep:
            shutil.rmtree(staging, ignore_errors=True)
    print(table(result, args.cores, args.datatrove))
    print("counts:", json.dumps(result["counts"]), "files:", result["files"])
    if args.lake:
        result["lake"] = compare_with_lake(result, args.lake)
        print("against", args.lake, "(loop rows, lake rows, only in loop, only in lake):", json.dumps(result["lake"]))
    if args.json:
        slim = {k: v for k, v in result.items() if k not in ("locations", "duplicate_of")}
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(slim, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
