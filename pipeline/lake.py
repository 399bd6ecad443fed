"""The lake: hive-partitioned Parquet tables, written so that readers never see a partial run.

Layout (explicit Arrow schemas below, zstd):
    LAKE/documents/lang=<code>/date=<YYYY-MM-DD|unknown>/part-*.parquet
    LAKE/duplicates/part-*.parquet
    LAKE/rejected/part-*.parquet
    LAKE/_SUMMARY.json
Partition columns (`lang`, `date`) live in the folder names only, as BigQuery, Athena and Spark expect; the
values come from validated fields (`lang` a 2-3 letter code or `und`, `date` a real date or `unknown`).

How a run commits: workers write whole Parquet files into `LAKE/_staging/<run>/` and report them; once all
are written, one commit step moves exactly the reported files into place (files of retried bundles are never
reported, so never committed), writes `_SUMMARY.json` and removes the staging folder.
"""
from __future__ import annotations

import json
import posixpath
import re
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import NamedTuple, Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms.types import UNDETERMINED_LANGUAGE, UNKNOWN_DATE, Article, Duplicate, Rejection

__all__ = ["WriteLake", "DOCUMENTS_SCHEMA", "DUPLICATES_SCHEMA", "REJECTED_SCHEMA", "partition_of",
           "summarize", "LakeExistsError", "check_output_location", "SUMMARY_FILE", "TABLES"]

NAMESPACE = "write"
DOCUMENTS, DUPLICATES, REJECTED = "documents", "duplicates", "rejected"
TABLES = (DOCUMENTS, DUPLICATES, REJECTED)
SUMMARY_FILE = "_SUMMARY.json"
STAGING_DIR = "_staging"
MAX_ROWS_PER_FILE = 50_000
MAX_BYTES_PER_FILE = 128 << 20
STAGE_ORDER = ("read", "extract", "normalize", "boilerplate", "language", "dedup")

UTC_TS = pa.timestamp("us", tz="UTC")
DOCUMENTS_SCHEMA = pa.schema([
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("source", pa.string()),
    pa.field("title", pa.string()),
    pa.field("published_at", UTC_TS),
    pa.field("lang_prob", pa.float32()),
    pa.field("text", pa.string(), nullable=False),
    pa.field("n_chars", pa.int32()),
    pa.field("n_words", pa.int32()),
    pa.field("content_hash", pa.string()),
    pa.field("boilerplate_lines_removed", pa.int32()),
    pa.field("format", pa.string()),
    pa.field("source_location", pa.string()),
    pa.field("ingested_at", UTC_TS),
])
DUPLICATES_SCHEMA = pa.schema([
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("duplicate_of", pa.string(), nullable=False),
    pa.field("kind", pa.string()),
    pa.field("similarity", pa.float32()),
    pa.field("source_location", pa.string()),
    pa.field("ingested_at", UTC_TS),
])
REJECTED_SCHEMA = pa.schema([
    pa.field("doc_id", pa.string()),
    pa.field("source_location", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("excerpt", pa.string()),
    pa.field("error", pa.string()),
    pa.field("ingested_at", UTC_TS),
])
SCHEMAS = {DOCUMENTS: DOCUMENTS_SCHEMA, DUPLICATES: DUPLICATES_SCHEMA, REJECTED: REJECTED_SCHEMA}

_LANG = re.compile(r"^([a-z]{2,3}|und)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class LakeExistsError(RuntimeError):
    """The output folder already holds a lake and overwriting was not asked for."""


class StagedFile(NamedTuple):
    table: str
    partition: str  # "" or "lang=xx/date=YYYY-MM-DD"
    path: str
    rows: int


# ---------------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------------

def partition_of(article: Article) -> str:
    """`lang=<code>/date=<day>`, from validated values only: anything else becomes `und` / `unknown`."""
    lang = article.lang if isinstance(article.lang, str) and _LANG.match(article.lang) else UNDETERMINED_LANGUAGE
    day = UNKNOWN_DATE
    if article.published_at:
        candidate = article.published_at[:10]
        try:
            if _DATE.match(candidate) and datetime.strptime(candidate, "%Y-%m-%d"):
                day = candidate
        except ValueError:
            pass
    return f"lang={lang}/date={day}"


def _timestamp(iso: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(iso).astimezone(timezone.utc) if iso else None


def document_row(article: Article, ingested_at: datetime) -> dict:
    return {
        "doc_id": article.doc_id, "url": article.url, "source": article.source, "title": article.title,
        "published_at": _timestamp(article.published_at), "lang_prob": article.lang_prob, "text": article.text,
        "n_chars": len(article.text), "n_words": len(article.text.split()), "content_hash": article.content_hash,
        "boilerplate_lines_removed": article.boilerplate_lines_removed, "format": article.format,
        "source_location": article.source_location, "ingested_at": ingested_at,
    }


def row_of(table: str, element, ingested_at: datetime) -> dict:
    if table == DOCUMENTS:
        return document_row(element, ingested_at)
    row = element._asdict()
    row["ingested_at"] = ingested_at
    return {name: row.get(name) for name in SCHEMAS[table].names}


def summarize(records_read: int, documents: Counter, duplicates: Counter, rejected: Counter) -> dict:
    """The run summary from counted per-record facts (see `_fact_of`): documents by (lang, removed rules),
    duplicates by kind, rejections by (stage, reason). Top-level totals first, then per stage, rule,
    language, duplicate kind and rejection reason; `reconciled` says whether read = kept + dup + rejected."""
    n_docs, n_dups, n_rej = sum(documents.values()), sum(duplicates.values()), sum(rejected.values())
    by_stage = Counter()
    for (stage, _), n in rejected.items():
        by_stage[stage] += n
    stages, remaining = {}, records_read
    for stage in STAGE_ORDER:
        out = remaining - by_stage.get(stage, 0) - (n_dups if stage == "dedup" else 0)
        stages[stage] = {"in": remaining, "rejected": by_stage.get(stage, 0), "out": out}
        if stage == "dedup":
            stages[stage]["duplicates"] = n_dups
        remaining = out
    rules, languages, reasons = Counter(), Counter(), Counter()
    for (lang, removed), n in documents.items():
        languages[lang] += n
        for rule in removed:
            rules[rule] += n
    for (_, reason), n in rejected.items():
        reasons[reason] += n
    return {
        "records_read": records_read,
        "documents": n_docs,
        "duplicates": n_dups,
        "rejected": n_rej,
        "reconciled": records_read == n_docs + n_dups + n_rej,
        "stages": stages,
        "boilerplate_lines_removed": dict(sorted(rules.items())),
        "languages": dict(sorted(languages.items())),
        "duplicate_kinds": dict(sorted(duplicates.items())),
        "rejected_reasons": dict(sorted(reasons.items())),
    }


def check_output_location(output: str, overwrite: bool) -> None:
    """Fails fast: a lake already there (unless overwriting), or a folder that cannot be written."""
    existing = [t for t in TABLES + (SUMMARY_FILE,) if FileSystems.exists(FileSystems.join(output, t))]
    if existing and not overwrite:
        raise LakeExistsError(
            f"{output} already holds a lake ({', '.join(existing)}); pass --overwrite to replace it, "
            "or choose another --output")
    probe = FileSystems.join(output, STAGING_DIR, f".write-test-{uuid.uuid4().hex}")
    try:
        FileSystems.mkdirs(FileSystems.join(output, STAGING_DIR)) if not FileSystems.exists(
            FileSystems.join(output, STAGING_DIR)) else None
        with FileSystems.create(probe) as handle:
            handle.write(b"ok")
        FileSystems.delete([probe])
    except Exception as err:
        raise OSError(f"cannot write to the output folder {output}: {err}") from err


# ---------------------------------------------------------------------------------------------------------
# Beam wrappers
# ---------------------------------------------------------------------------------------------------------

class _WriteStagedFn(beam.DoFn):
    """Buffers rows per (table, partition) and writes whole Parquet files into the staging folder; emits one
    StagedFile per file written, only when the bundle that wrote it completes."""

    def __init__(self, table: str, staging: str, ingested_at: str):
        self.table = table
        self.staging = staging
        self.ingested_at = ingested_at

    def setup(self):
        self.schema = SCHEMAS[self.table]
        self.ingested = datetime.fromisoformat(self.ingested_at)

    def start_bundle(self):
        self.buffers = defaultdict(list)
        self.sizes = Counter()

    def process(self, element):
        partition = partition_of(element) if self.table == DOCUMENTS else ""
        self.buffers[partition].append(row_of(self.table, element, self.ingested))
        self.sizes[partition] += len(element.text) if self.table == DOCUMENTS else 200
        if len(self.buffers[partition]) >= MAX_ROWS_PER_FILE or self.sizes[partition] >= MAX_BYTES_PER_FILE:
            yield self._flush(partition)

    def finish_bundle(self):
        for partition in list(self.buffers):
            if self.buffers[partition]:
                yield WindowedValue(self._flush(partition), MIN_TIMESTAMP, [GlobalWindow()])

    def _flush(self, partition: str) -> StagedFile:
        rows = self.buffers.pop(partition)
        self.sizes.pop(partition, None)
        folder = posixpath.join(self.table, partition) if partition else self.table
        path = FileSystems.join(self.staging, folder, f"part-{uuid.uuid4().hex}.parquet")
        FileSystems.mkdirs(FileSystems.join(self.staging, folder)) if not FileSystems.exists(
            FileSystems.join(self.staging, folder)) else None
        table = pa.Table.from_pylist(rows, schema=self.schema)
        with FileSystems.create(path) as handle:
            pq.write_table(table, handle, compression="zstd")
        Metrics.counter(NAMESPACE, f"{self.table}_rows").inc(len(rows))
        Metrics.counter(NAMESPACE, f"{self.table}_files").inc()
        return StagedFile(self.table, partition, path, len(rows))


def _fact_of(table: str):
    """The small per-record facts that the summary needs (never the text)."""
    if table == DOCUMENTS:
        return lambda a: (DOCUMENTS, (a.lang, tuple(a.removed_by_rule)))
    if table == DUPLICATES:
        return lambda d: (DUPLICATES, d.kind)
    return lambda r: (REJECTED, (r.stage, r.reason))


class _SummaryFn(beam.CombineFn):
    """Combines per-record facts into {table: Counter of facts}; small whatever the corpus size."""

    def create_accumulator(self):
        return {t: Counter() for t in TABLES}

    def add_input(self, acc, fact):
        acc[fact[0]][fact[1]] += 1
        return acc

    def merge_accumulators(self, accs):
        merged = self.create_accumulator()
        for acc in accs:
            for table in TABLES:
                merged[table].update(acc[table])
        return merged

    def extract_output(self, acc):
        return acc


def commit(staged: list, output: str, staging: str, facts: dict, records_read: int, overwrite: bool) -> dict:
    """Moves the staged files into the lake, writes _SUMMARY.json, removes the staging folder.

    With `overwrite`, the previous lake's tables are removed first; without it, an existing lake (one that
    appeared while this run was going) stops the commit.
    """
    check_existing = [t for t in TABLES + (SUMMARY_FILE,) if FileSystems.exists(FileSystems.join(output, t))]
    if check_existing:
        if not overwrite:
            raise LakeExistsError(f"{output} already holds a lake ({', '.join(check_existing)}); not overwriting")
        FileSystems.delete([FileSystems.join(output, t) for t in check_existing])
    written = Counter()
    for item in sorted(StagedFile(*s) for s in staged):
        folder = posixpath.join(item.table, item.partition) if item.partition else item.table
        target_dir = FileSystems.join(output, folder)
        if not FileSystems.exists(target_dir):
            FileSystems.mkdirs(target_dir)
        target = FileSystems.join(target_dir, posixpath.basename(item.path))
        FileSystems.rename([item.path], [target])
        written[item.table] += item.rows
    summary = summarize(records_read, facts[DOCUMENTS], facts[DUPLICATES], facts[REJECTED])
    summary["files_rows"] = {t: written[t] for t in TABLES}
    if any(written[t] != summary[t] for t in TABLES):
        summary["reconciled"] = False
    tmp = FileSystems.join(staging, SUMMARY_FILE)
    with FileSystems.create(tmp) as handle:
        handle.write(json.dumps(summary, indent=2, sort_keys=False).encode("utf-8"))
    FileSystems.rename([tmp], [FileSystems.join(output, SUMMARY_FILE)])
    _remove_staging(output, staging)
    return summary


def _remove_staging(output: str, staging: str) -> None:
    """Deletes this run's staging folder (and the parent when no other run is using it)."""
    try:
        FileSystems.delete([staging])
        parent = FileSystems.join(output, STAGING_DIR)
        if not FileSystems.match([FileSystems.join(parent, "*")])[0].metadata_list:
            FileSystems.delete([parent])
    except Exception:  # leftovers of retried bundles: harmless, outside the tables
        pass


class WriteLake(beam.PTransform):
    """{documents, duplicates, rejected} PCollections + the count of records read -> a committed lake.

    Returns a PCollection holding the one summary dict.
    """

    def __init__(self, output: str, ingested_at: str, overwrite: bool = False, run_id: Optional[str] = None):
        super().__init__()
        self.output = output.rstrip("/") if output.rstrip("/") else output
        self.ingested_at = ingested_at
        self.overwrite = overwrite
        self.staging = FileSystems.join(self.output, STAGING_DIR, run_id or uuid.uuid4().hex)

    def expand(self, inputs):
        staged, facts = [], []
        for table in TABLES:
            pcoll = inputs[table]
            staged.append(pcoll | f"Stage{table.title()}" >> beam.ParDo(
                _WriteStagedFn(table, self.staging, self.ingested_at)))
            facts.append(pcoll | f"Facts{table.title()}" >> beam.Map(_fact_of(table)))
        summary_facts = facts | "AllFacts" >> beam.Flatten() | "Summarize" >> beam.CombineGlobally(_SummaryFn())
        output, staging, overwrite = self.output, self.staging, self.overwrite
        return (
            staged
            | "AllStaged" >> beam.Flatten()
            | "ListStaged" >> beam.combiners.ToList()
            | "Commit" >> beam.Map(
                lambda files, facts, read: commit(files, output, staging, facts, read, overwrite),
                beam.pvalue.AsSingleton(summary_facts), beam.pvalue.AsSingleton(inputs["records_read"]))
        )
