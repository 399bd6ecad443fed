"""Dedup alone: the largest element or per-key group it builds, and its CPU per record.

    nice -n 10 python bench/dedup_shards.py CORPUS.jsonl [--n 100000] [--spill] [--json OUT.json]

Reads the text records of a `make_corpus.py` corpus (`--html-fraction 0`) straight into `Article`s (no
extraction, normalization or language: dedup only needs text, title, date and id) and runs
`DeduplicateArticles` on the in-process FnApiRunner twice: once as is, once with the dedup replaced by a
pass-through, so the difference of the process CPU seconds (user + system) is dedup's. CPU rather than wall
time: the machine is shared. `--spill` parks articles and tables on disk as local runs do.

The largest element / group: the stage reports, per table step (`ids`, `exact`, `bands`), the rows and
bytes of every shard's table (Beam distributions `dedup/<step>_rows` and `_bytes`); their maxima are
printed. (The stage before sharding built one element holding every document's keys,
`CombineGlobally(_KeyTableFn)`; this script's first version, commit 13da09e, measured that element.)
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import datetime

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from wirewash.transforms.spill import Spill, make_spill_dir, remove_spill_dir
from wirewash.transforms import dedup
from wirewash.transforms.types import Article


def to_article(numbered: str):
    """`LINE<TAB>JSON` -> the record's Article (location `corpus:LINE`), or nothing for a record without text."""
    number, _, line = numbered.partition("\t")
    try:
        record = json.loads(line)
        text = record.get("text")
    except (ValueError, AttributeError):
        return
    if not isinstance(text, str) or not text.strip():
        return
    published = record.get("published")
    try:
        published = datetime.fromisoformat(published).isoformat() if isinstance(published, str) else None
    except ValueError:
        published = None
    title = record.get("title") if isinstance(record.get("title"), str) else None
    yield Article(str(record.get("id")), f"corpus:{number}", "text", title=title, published_at=published, text=text)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(corpus: str, spill: Spill, what: str) -> dict:
    """One in-process pipeline: `base` reads and parses, `dedup` also dedups."""
    started, wall = cpu_seconds(), time.perf_counter()
    p = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(["--direct_num_workers=1"]))
    articles = p | beam.io.ReadFromText(corpus) | "Parse" >> beam.FlatMap(to_article)
    if what == "dedup":
        out = articles | dedup.DeduplicateArticles(dedup.DedupConfig(), spill)
        for kind in out:
            out[kind] | f"Count{kind}" >> beam.combiners.Count.Globally()
    else:
        articles | "Count" >> beam.combiners.Count.Globally()
    result = p.run()
    result.wait_until_finish()
    figures = {"cpu_s": cpu_seconds() - started, "wall_s": time.perf_counter() - wall}
    for dist in result.metrics().query(MetricsFilter().with_namespace(dedup.NAMESPACE))["distributions"]:
        figures[f"max_{dist.key.metric.name}"] = dist.committed.max
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("--n", type=int, default=0, help="records (default: the whole file)")
    parser.add_argument("--spill", action="store_true", help="park articles on disk, as local runs do")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    corpus = tempfile.mkstemp(suffix=".jsonl")[1]  # lines numbered: the records' locations
    with open(args.corpus, encoding="utf-8", errors="replace") as src, open(corpus, "w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if args.n and i >= args.n:
                break
            dst.write(f"{i + 1}\t{line.rstrip(chr(10))}\n")
    folder = make_spill_dir(tempfile.gettempdir()) if args.spill else None
    try:
        base = run(corpus, Spill(folder), "base")
        full = run(corpus, Spill(folder), "dedup")
    finally:
        if folder:
            remove_spill_dir(folder)
    records = sum(1 for _ in open(corpus, encoding="utf-8"))
    out = {"records": records, "spill": bool(folder), "dedup_cpu_ms_per_record": round(
        1000 * (full["cpu_s"] - base["cpu_s"]) / records, 3), "base": base, "with_dedup": full}
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(out, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
