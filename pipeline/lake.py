"""The lake: hive-partitioned Parquet tables, written so that readers never see a partial run.

Layout (explicit Arrow schemas below, zstd):
    LAKE/documents/lang=<code>/date=<YYYY-MM-DD|unknown>/part-*.parquet
    LAKE/duplicates/part-*.parquet
    LAKE/rejected/part-*.parquet
    LAKE/_SUMMARY.json
Partition columns (`lang`, `date`) live in the folder names only, as BigQuery, Athena and Spark expect; the
values come from validated fields (`lang` a 2-3 letter code or `und`, `date` a real date or `unknown`).

How a run commits: workers write whole Parquet files into `LAKE/_staging/<run>/` (named `*.parquet.staged`)
and report them; once all are written, one commit step moves exactly the reported files into place (files of retried bundles are never
reported, so never committed), writes `_SUMMARY.json` and removes the staging folder.

`_SUMMARY.json` is the commit marker: it is written last, and when a lake is replaced (`--overwrite`) the old
one is removed first, then the old tables, before any new file moves in. So at every instant the tables hold
files of one run only, every Parquet file outside `_staging/` is whole, and a lake without `_SUMMARY.json`
is an interrupted one (refused by `wirewash query`, replaced by a rerun with `--overwrite`). No `*.parquet`
glob sees a staged file (their suffix), and Spark, pyarrow and Hive also skip `_`-prefixed folders; the next
commit removes the staging folders of killed runs. One run writes a lake at a time: a run clears `_staging/` when it starts,
after its commit, and when it fails.

Invariants checked on every run (in `_SUMMARY.json` under `invariants`; `ok` is false and the CLI exits 1
when one fails): records read = documents + duplicates + rejected, and each term equals the rows written;
every `duplicate_of` is a `doc_id` in documents; `doc_id`s are unique in documents; every partition folder
is `lang=<code from LANGUAGES or und>/date=<valid date or unknown>`; every input file was read to its end and
yielded as many records as its bytes hold (`unread_input`, from the reader's own byte counts).
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

from pipeline.lifetime import claim
from transforms.types import UNDETERMINED_LANGUAGE, UNKNOWN_DATE, Article

__all__ = ["WriteLake", "DOCUMENTS_SCHEMA", "DUPLICATES_SCHEMA", "REJECTED_SCHEMA", "partition_of",
           "summarize", "LakeExistsError", "check_output_location", "SUMMARY_FILE", "TABLES", "LANGUAGES",
           "valid_partition", "short_error", "remove_staging"]

NAMESPACE = "write"
DOCUMENTS, DUPLICATES, REJECTED = "documents", "duplicates", "rejected"
TABLES = (DOCUMENTS, DUPLICATES, REJECTED)
SUMMARY_FILE = "_SUMMARY.json"
STAGING_DIR = "_staging"
# Staged files end in `.parquet.staged`: no `*.parquet` glob (DuckDB's `lake/**/*.parquet` included) ever
# matches a file that is still being written, or that a killed run left behind. The commit drops the suffix.
STAGED_SUFFIX = ".staged"
MAX_ROWS_PER_FILE = 50_000
MAX_BYTES_PER_FILE = 128 << 20
MAX_BUFFERED_BYTES = 64 << 20  # all partitions of one writer together (memory stays flat in the corpus size)
# Dictionary-encode only the columns whose values repeat: on the unique ones (ids, texts, hashes, URLs) a
# dictionary is built and thrown away, which cost ~40% of writing a small partition file.
DICTIONARY_COLUMNS = ["source", "format", "lang", "stage", "reason", "kind", "other_langs", "ingested_at",
                      "published_at"]
RENAME_BATCH = 1000
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
    pa.field("other_langs", pa.list_(pa.string())),
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

# The closed set of `lang=` partition values (besides `und`): ISO 639-1, plus the ISO 639-2/3 codes that
# language detectors (CLD2, CLD3, langid, lingua) use for languages without a two-letter code.
LANGUAGES = frozenset("""
aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz ee
el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is
it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms
mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk
sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi
yo za zh zu
ast bal bho ceb chr ckb fil gom haw hmn ilo kab kha lif mai mfe mni nso ory sat scn syr tet war yue zza
""".split())
MIN_YEAR, MAX_YEAR = 1800, 2200  # as pipeline/io.py accepts them
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PARTITION = re.compile(r"^lang=([a-z]{2,3})/date=(\d{4}-\d{2}-\d{2}|unknown)$")


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
    """`lang=<code>/date=<day>`, from validated values only: a language outside LANGUAGES becomes `und`, a
    date that is not a real day between 1800 and 2200 becomes `unknown`."""
    lang = article.lang if article.lang in LANGUAGES else UNDETERMINED_LANGUAGE
    day = UNKNOWN_DATE
    if isinstance(article.published_at, str):
        candidate = article.published_at[:10]
        try:
            if _DATE.match(candidate) and MIN_YEAR <= datetime.strptime(candidate, "%Y-%m-%d").year <= MAX_YEAR:
                day = candidate
        except ValueError:
            pass
    return f"lang={lang}/date={day}"


def valid_partition(partition: str) -> bool:
    """True for a documents partition path built from the closed sets (the commit re-checks every one)."""
    match = _PARTITION.match(partition)
    if not match or not (match.group(1) in LANGUAGES or match.group(1) == UNDETERMINED_LANGUAGE):
        return False
    if match.group(2) == UNKNOWN_DATE:
        return True
    try:
        return MIN_YEAR <= datetime.strptime(match.group(2), "%Y-%m-%d").year <= MAX_YEAR
    except ValueError:
        return False


def _timestamp(iso: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(iso).astimezone(timezone.utc) if iso else None


def document_row(article: Article, ingested_at: datetime) -> dict:
    return {
        "doc_id": article.doc_id, "url": article.url, "source": article.source, "title": article.title,
        "published_at": _timestamp(article.published_at), "lang_prob": article.lang_prob, "text": article.text,
        "n_chars": len(article.text), "n_words": len(article.text.split()), "content_hash": article.content_hash,
        "boilerplate_lines_removed": article.boilerplate_lines_removed, "format": article.format,
        "source_location": article.source_location, "ingested_at": ingested_at,
        "other_langs": list(article.other_langs),
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


def _existing(output: str) -> list[str]:
    return [t for t in TABLES + (SUMMARY_FILE,) if FileSystems.exists(FileSystems.join(output, t))]


def check_output_location(output: str, overwrite: bool) -> None:
    """Fails fast, before any work: a lake already there (unless overwriting; an interrupted one is named
    as such), or a folder that cannot be written (read-only, full, under a regular file, /proc...)."""
    existing = _existing(output)
    if existing and not overwrite:
        if SUMMARY_FILE not in existing:
            raise LakeExistsError(
                f"{output} holds an incomplete lake ({', '.join(existing)} but no {SUMMARY_FILE}: a run was "
                "interrupted while committing); pass --overwrite to replace it, or choose another --output")
        raise LakeExistsError(
            f"{output} already holds a lake ({', '.join(existing)}); pass --overwrite to replace it, "
            "or choose another --output")
    remove_staging(output)  # leftovers of killed or failed runs: free their space before probing
    probe = FileSystems.join(output, STAGING_DIR, f".write-test-{uuid.uuid4().hex}")
    try:
        if not FileSystems.exists(FileSystems.join(output, STAGING_DIR)):
            FileSystems.mkdirs(FileSystems.join(output, STAGING_DIR))
        with FileSystems.create(probe) as handle:
            handle.write(b"ok" * 2048)  # a few KiB: a full disk fails here, not after the whole run
        FileSystems.delete([probe])
    except Exception as err:
        raise OSError(f"cannot write to the output folder {output}: {short_error(err)}") from err


def short_error(err: BaseException) -> str:
    """`Type: first line` of the innermost cause of a (Beam-wrapped) error, at most 300 characters: enough
    to act on, never a record's text."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]


# ---------------------------------------------------------------------------------------------------------
# Beam wrappers
# ---------------------------------------------------------------------------------------------------------

def _ensure_dir(path: str) -> None:
    """mkdirs that tolerates a concurrent worker creating the same folder first (multi-process runs)."""
    try:
        FileSystems.mkdirs(path)
    except IOError:
        if not FileSystems.exists(path):
            raise


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
        self.folder_ready = False
        self.dictionary_columns = [c for c in DICTIONARY_COLUMNS if c in self.schema.names]

    def start_bundle(self):
        self.buffers = defaultdict(list)
        self.sizes = Counter()

    def process(self, element):
        partition = partition_of(element) if self.table == DOCUMENTS else ""
        self.buffers[partition].append(row_of(self.table, element, self.ingested))
        self.sizes[partition] += len(element.text) if self.table == DOCUMENTS else 200
        if len(self.buffers[partition]) >= MAX_ROWS_PER_FILE or self.sizes[partition] >= MAX_BYTES_PER_FILE:
            yield self._flush(partition)
        elif sum(self.sizes.values()) >= MAX_BUFFERED_BYTES:
            # Many small partitions can together hold a worker's whole share of the corpus: bound the total,
            # writing the biggest buffers first (fewer, larger files).
            for biggest, _ in self.sizes.most_common():
                yield self._flush(biggest)
                if sum(self.sizes.values()) < MAX_BUFFERED_BYTES // 2:
                    break

    def finish_bundle(self):
        for partition in list(self.buffers):
            if self.buffers[partition]:
                yield WindowedValue(self._flush(partition), MIN_TIMESTAMP, [GlobalWindow()])

    def _flush(self, partition: str) -> StagedFile:
        rows = self.buffers.pop(partition)
        self.sizes.pop(partition, None)
        # One flat folder per table: a partition is a prefix of the name, not two more folders to create here
        # and to remove after the commit (thousands of them: one per language and day).
        prefix = partition.replace("/", "__") + "__" if partition else ""
        path = FileSystems.join(self.staging, self.table, f"{prefix}part-{uuid.uuid4().hex}.parquet{STAGED_SUFFIX}")
        if not self.folder_ready:
            _ensure_dir(FileSystems.join(self.staging, self.table))
            self.folder_ready = True
        table = pa.Table.from_pylist(rows, schema=self.schema)
        with FileSystems.create(path) as handle:
            pq.write_table(table, handle, compression="zstd",
                           use_dictionary=self.dictionary_columns)
        Metrics.counter(NAMESPACE, f"{self.table}_rows").inc(len(rows))
        Metrics.counter(NAMESPACE, f"{self.table}_files").inc()
        return StagedFile(self.table, partition, path, len(rows))


def _fact_of(table: str):
    """The small per-record facts that the summary needs (never the text)."""
    if table == DOCUMENTS:
        return lambda a: (DOCUMENTS, (partition_of(a)[5:].split("/")[0], tuple(a.removed_by_rule)))
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


def _violation_facts(item):
    """(doc_id, {docs: [...], dups: [...]}) -> the invariant violations it shows, as (name, count)."""
    _, grouped = item
    n_docs, n_dups = len(grouped["docs"]), len(grouped["dups"])
    if n_docs > 1:
        yield "duplicate_doc_ids", n_docs - 1
    if n_dups and not n_docs:
        yield "dangling_duplicate_of", n_dups


def unread_input(tallies) -> list:
    """Input files the reader did not account for, from its per-file facts (`pipeline.io.tally_fact`: file,
    read whole, records its bytes hold, records emitted): `"file: why"`, sorted; empty when all is well. A
    file not read to its end, or whose emitted records differ from the count on its bytes, lost records
    whatever the other counts say."""
    problems = []
    for name, whole, expected, emitted in sorted(tuple(t) for t in tallies):
        if not whole:
            problems.append(f"{name}: not read to its end")
        if expected != emitted:
            problems.append(f"{name}: {emitted} records read, its bytes hold {expected}")
    return problems


def commit(staged: list, output: str, staging: str, facts: dict, records_read: int, overwrite: bool,
           violations: Optional[dict] = None, removed_lines: Optional[dict] = None, unread=()) -> dict:
    """Moves the staged files into the lake, writes _SUMMARY.json, removes the staging folders.

    With `overwrite`, the previous lake is removed first (its _SUMMARY.json before its tables), so that
    the tables never hold two runs' files; without it, a lake that appeared while this run was going stops
    the commit. `violations` counts the invariant failures found by the pipeline (see `_violation_facts`);
    the partitions are checked here, on the staged file list; `unread` lists the input files the reader did
    not account for (`unread_input`).
    """
    if not claim(FileSystems.join(output, STAGING_DIR)):  # one winner: this commit, or a Ctrl-C / SIGTERM
        raise RuntimeError("the run was stopped before its commit (Ctrl-C or SIGTERM); nothing was committed")
    staged = sorted(StagedFile(*s) for s in staged)
    existing = _existing(output)
    if existing:
        if not overwrite:
            raise LakeExistsError(f"{output} already holds a lake ({', '.join(existing)}); not overwriting")
        if SUMMARY_FILE in existing:  # first: from here on the lake reads as incomplete, never as mixed
            FileSystems.delete([FileSystems.join(output, SUMMARY_FILE)])
        FileSystems.delete([FileSystems.join(output, t) for t in existing if t != SUMMARY_FILE])
    written = Counter()
    invalid_partitions = sum(1 for item in staged if item.table == DOCUMENTS and not valid_partition(item.partition))
    sources, targets = [], []
    for item in staged:
        folder = posixpath.join(item.table, item.partition) if item.partition else item.table
        name = posixpath.basename(item.path).removesuffix(STAGED_SUFFIX).rpartition("__")[2]
        sources.append(item.path)
        targets.append(FileSystems.join(output, folder, name))
        written[item.table] += item.rows
    for target_dir in sorted({posixpath.dirname(t) for t in targets}):
        if not FileSystems.exists(target_dir):
            FileSystems.mkdirs(target_dir)
    for start in range(0, len(sources), RENAME_BATCH):  # one call per batch: object stores rename in batches
        FileSystems.rename(sources[start:start + RENAME_BATCH], targets[start:start + RENAME_BATCH])
    summary = summarize(records_read, facts[DOCUMENTS], facts[DUPLICATES], facts[REJECTED])
    if removed_lines:
        summary["boilerplate_removed_lines"] = removed_lines
    summary["files_rows"] = {t: written[t] for t in TABLES}
    if any(written[t] != summary[t] for t in TABLES):
        summary["reconciled"] = False
    violations = dict(violations or {})
    summary["invariants"] = {
        "reconciled": summary["reconciled"],
        "dangling_duplicate_of": int(violations.get("dangling_duplicate_of", 0)),
        "duplicate_doc_ids": int(violations.get("duplicate_doc_ids", 0)),
        "invalid_partitions": invalid_partitions,
        "unread_input": sorted(unread),  # `unread_input` of the reader's facts
    }
    summary["ok"] = summary["reconciled"] and not any(
        v for k, v in summary["invariants"].items() if k != "reconciled")
    tmp = FileSystems.join(staging, SUMMARY_FILE)
    if not FileSystems.exists(staging):
        FileSystems.mkdirs(staging)
    with FileSystems.create(tmp) as handle:
        handle.write(json.dumps(summary, indent=2, sort_keys=False).encode("utf-8"))
    FileSystems.rename([tmp], [FileSystems.join(output, SUMMARY_FILE)])
    remove_staging(output)
    return summary


def remove_staging(output: str) -> None:
    """Deletes the whole staging folder: this run's leftovers (files of retried bundles), or what a killed
    or failed run left. Called when a run starts, after its commit, and when it fails (one run writes a lake
    at a time). Best effort: what stays there is outside the tables and never matches `*.parquet`."""
    try:
        FileSystems.delete([FileSystems.join(output, STAGING_DIR)])
    except Exception:
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
        # Invariants on ids: only the keys are shuffled, never the texts.
        violations = (
            {"docs": inputs[DOCUMENTS] | "DocIds" >> beam.Map(lambda a: (a.doc_id, 1)),
             "dups": inputs[DUPLICATES] | "DuplicateOf" >> beam.Map(lambda d: (d.duplicate_of, 1))}
            | "JoinIds" >> beam.CoGroupByKey()
            | "Violations" >> beam.FlatMap(_violation_facts)
            | "CountViolations" >> beam.CombinePerKey(sum)
            | "ViolationDict" >> beam.combiners.ToDict())
        output, staging, overwrite = self.output, self.staging, self.overwrite
        removed_lines = inputs.get("removed_lines")
        if removed_lines is None:
            removed_lines = inputs[DOCUMENTS].pipeline | "NoRemovedLines" >> beam.Create([{}])
        tallies = inputs.get("read_tallies")
        if tallies is None:
            tallies = inputs[DOCUMENTS].pipeline | "NoTallies" >> beam.Create([])
        unread = tallies | "UnreadInput" >> beam.FlatMap(lambda tally: unread_input([tally]))
        return (
            staged
            | "AllStaged" >> beam.Flatten()
            | "ListStaged" >> beam.combiners.ToList()
            | "Commit" >> beam.Map(
                lambda files, facts, read, bad, lines, tallied: commit(files, output, staging, facts, read,
                                                                       overwrite, bad, lines, tallied),
                beam.pvalue.AsSingleton(summary_facts), beam.pvalue.AsSingleton(inputs["records_read"]),
                beam.pvalue.AsSingleton(violations), beam.pvalue.AsSingleton(removed_lines, default_value={}),
                beam.pvalue.AsList(unread))
        )
