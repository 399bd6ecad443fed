"""The lake: hive-partitioned Parquet tables, written so that readers never see a partial run.

Layout (explicit Arrow schemas below, zstd, rows sorted within a file, row groups of ROW_GROUP_ROWS):
    LAKE/documents/lang=<code>/date=<period|unknown>/part-*.parquet   period: YYYY-MM (default), YYYY-MM-DD or YYYY
    LAKE/duplicates/part-*.parquet
    LAKE/rejected/part-*.parquet
    LAKE/_index/part-*.parquet      the dedup index (transforms/lake_dedup.py): what `--append` dedups against
    LAKE/_SUMMARY.json              counts, the `files` manifest, `runs`
    LAKE/_WIREWASH_LAKE             the marker: this folder is a wirewash lake
Partition columns (`lang`, `date`) live in the folder names only, as BigQuery, Athena and Spark expect; the
values come from validated fields (`lang` a 2-3 letter code or `und`, `date` a real period or `unknown`).
A run adds at most one file per partition (more only past MERGE_MAX_BYTES): workers write per bundle, then
the files of one partition are merged (`_MergeStagedFn`).

How a run commits: workers write whole Parquet files into `LAKE/_staging/<run>/` (named `*.parquet.staged`)
and report them; once all are written, one commit step moves exactly the reported files into place (files
of retried bundles are never reported, so never committed), writes `_SUMMARY.json` and removes the staging
folder. `_SUMMARY.json` is the commit point: its `files` lists exactly the committed Parquet files of each
table, and readers that build their views from it see one run (or one append) whole or not at all.

Only a wirewash lake is ever replaced: the marker is written before a commit's first file moves in, and a
folder holding `documents/` (or the others) without the marker or a summary is refused, never deleted. When a
lake is replaced (`--overwrite`) the old summary is removed first, then the old report, tables and index
(their Parquet files only: anything else a user put there stays), before any new file moves in; so the
tables never hold two runs' files, and a lake without `_SUMMARY.json` is an interrupted one (refused by
`wirewash query`, replaced by a rerun with `--overwrite`). No `*.parquet` glob sees a staged file (their
suffix), and Spark, pyarrow and Hive also skip `_`-prefixed folders. One run writes a lake at a time: a run
clears `_staging/` (when it is the lake's or carries wirewash's marker) when it starts, after its commit,
and when it fails. An append adds its files and then swaps the summary; files a killed append moved in
are not in the manifest, and the next append deletes them before its own move.

Invariants checked on every run (in `_SUMMARY.json` under `invariants`; `ok` is false and the CLI exits 1
when one fails): records read = documents + duplicates + rejected, and each term equals the rows written;
every `duplicate_of` is a `doc_id` in documents (of this run or, for an append, of the lake); `doc_id`s are
unique in documents; every partition folder is `lang=<code from LANGUAGES or und>/date=<valid period or
unknown>`; every input file was read to its end and yielded as many records as its bytes hold
(`unread_input`, from the reader's own byte counts).
"""
from __future__ import annotations

import json
import os
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

from wirewash.pipeline.lifetime import claim
from wirewash.transforms.dedup import DedupConfig
from wirewash.transforms.lake_dedup import INDEX_SCHEMA, index_row, read_index_ids
from wirewash.transforms.types import UNDETERMINED_LANGUAGE, UNKNOWN_DATE, Article

__all__ = ["WriteLake", "DOCUMENTS_SCHEMA", "DUPLICATES_SCHEMA", "REJECTED_SCHEMA", "partition_of",
           "summarize", "LakeExistsError", "check_output_location", "SUMMARY_FILE", "TABLES", "LANGUAGES",
           "valid_partition", "short_error", "remove_staging", "PARTITION_BY", "DEFAULT_PARTITION_BY",
           "MARKER_FILE", "REPORT_FILE", "is_lake", "sort_rows", "write_parquet", "manifest_files"]

NAMESPACE = "write"
DOCUMENTS, DUPLICATES, REJECTED = "documents", "duplicates", "rejected"
TABLES = (DOCUMENTS, DUPLICATES, REJECTED)
SUMMARY_FILE = "_SUMMARY.json"
REPORT_FILE = "_REPORT.html"  # written by `wirewash report`; part of the lake, removed with it
# Written before the first file of a commit moves in: a folder holding it (or a _SUMMARY.json) is a wirewash
# lake, which `--overwrite` may replace; any other folder holding documents/ ... is not, and is never touched.
MARKER_FILE = "_WIREWASH_LAKE"
STAGING_DIR = "_staging"
# The dedup index (transforms/lake_dedup.py): one row per document, no text; what `--append` dedups against.
INDEX = "_index"
STAGING_MARKER = ".wirewash"  # inside _staging/: that folder is ours (a plain run may clear it)
# `date` partition value: the publication period at this granularity (a string: YYYY-MM-DD, YYYY-MM or YYYY),
# or `unknown`. Day by default: the lake contract (`../shared/tools/check_lake.py`) names day folders;
# month or year (far fewer files on multi-year corpora) on request. See docs/data-model.md.
PARTITION_BY = {"day": 10, "month": 7, "year": 4}
DEFAULT_PARTITION_BY = "day"
# Row groups inside a file: small enough that DuckDB scans a file on several threads and prunes on the
# sorted columns' statistics, large enough that the footer stays small.
ROW_GROUP_ROWS = 8192
# Sort order within a file (row-group statistics on the leading columns prune range queries).
SORT_KEYS = {
    "documents": [("published_at", "ascending"), ("source", "ascending"), ("doc_id", "ascending")],
    "duplicates": [("duplicate_of", "ascending"), ("doc_id", "ascending")],
    "rejected": [("stage", "ascending"), ("reason", "ascending"), ("source_location", "ascending")],
    INDEX: [("doc_id", "ascending")],
}
# Staged files of one partition are merged up to this much Parquet (compressed) per output file.
MERGE_MAX_BYTES = 32 << 20  # about 100 MB of rows in memory while merging (read, then sorted)
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
SCHEMAS = {DOCUMENTS: DOCUMENTS_SCHEMA, DUPLICATES: DUPLICATES_SCHEMA, REJECTED: REJECTED_SCHEMA, INDEX: INDEX_SCHEMA}

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
_PARTITION = re.compile(r"^lang=([a-z]{2,3})/date=(\d{4}(?:-\d{2}(?:-\d{2})?)?|unknown)$")


class LakeExistsError(RuntimeError):
    """The output folder already holds a lake and overwriting was not asked for."""


class StagedFile(NamedTuple):
    table: str
    partition: str  # "" or "lang=xx/date=<period>"
    path: str
    rows: int
    size: int = 0  # bytes of the Parquet file


# ---------------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------------

def partition_of(article: Article, partition_by: str = DEFAULT_PARTITION_BY) -> str:
    """`lang=<code>/date=<period>`, from validated values only: a language outside LANGUAGES becomes `und`, a
    date that is not a real day between 1800 and 2200 becomes `unknown`; a real day is cut to the period of
    `partition_by` (day `YYYY-MM-DD`, month `YYYY-MM`, year `YYYY`)."""
    lang = article.lang if article.lang in LANGUAGES else UNDETERMINED_LANGUAGE
    day = UNKNOWN_DATE
    if isinstance(article.published_at, str):
        candidate = article.published_at[:10]
        try:
            if _DATE.match(candidate) and MIN_YEAR <= datetime.strptime(candidate, "%Y-%m-%d").year <= MAX_YEAR:
                day = candidate[:PARTITION_BY[partition_by]]
        except ValueError:
            pass
    return f"lang={lang}/date={day}"


def valid_partition(partition: str) -> bool:
    """True for a documents partition path built from the closed sets (the commit re-checks every one): the
    period is a real day, month or year between 1800 and 2200, or `unknown`."""
    match = _PARTITION.match(partition)
    if not match or not (match.group(1) in LANGUAGES or match.group(1) == UNDETERMINED_LANGUAGE):
        return False
    period = match.group(2)
    if period == UNKNOWN_DATE:
        return True
    try:
        return MIN_YEAR <= datetime.strptime(period, {4: "%Y", 7: "%Y-%m", 10: "%Y-%m-%d"}[len(period)]).year <= MAX_YEAR
    except ValueError:
        return False


def sort_rows(table: str, data: pa.Table) -> pa.Table:
    """The rows of one file in the lake's order (SORT_KEYS): equal input rows give equal files."""
    return data.sort_by(SORT_KEYS[table]) if data.num_rows > 1 else data


def write_parquet(table: str, data: pa.Table, handle) -> None:
    """One lake file: sorted rows, zstd, small row groups, dictionaries only where values repeat."""
    schema = SCHEMAS[table]
    pq.write_table(sort_rows(table, data), handle, compression="zstd", row_group_size=ROW_GROUP_ROWS,
                   use_dictionary=[c for c in DICTIONARY_COLUMNS if c in schema.names])


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


def is_lake(output: str) -> bool:
    """True when `output` is a wirewash lake, whole or interrupted: it holds `_SUMMARY.json` or the marker a
    commit writes before moving any file in. Only such a folder may be replaced or appended to."""
    return any(FileSystems.exists(FileSystems.join(output, name)) for name in (SUMMARY_FILE, MARKER_FILE))


def _not_a_lake(output: str, existing: list[str]) -> LakeExistsError:
    return LakeExistsError(
        f"{output} holds {', '.join(existing)} but is not a wirewash lake (no {SUMMARY_FILE} or {MARKER_FILE}); "
        "nothing was deleted: choose another --output")


def check_output_location(output: str, overwrite: bool, append: bool = False) -> None:
    """Fails fast, before any work: a lake already there (unless overwriting or appending; an interrupted one
    is named as such, and cannot be appended to), a folder holding `documents/`, `duplicates/` or `rejected/` that is not a wirewash lake (never
    replaced), a `_staging/` folder that wirewash did not make, or a folder that cannot be written
    (read-only, full, under a regular file, /proc...)."""
    existing = _existing(output)
    lake = is_lake(output)
    if existing and not lake:
        raise _not_a_lake(output, existing)
    if existing and append and SUMMARY_FILE not in existing:
        raise LakeExistsError(
            f"{output} holds an incomplete lake ({', '.join(existing)} but no {SUMMARY_FILE}: a run was "
            "interrupted while committing); it cannot be appended to: rerun with --overwrite to replace it")
    if existing and not (overwrite or append):
        if SUMMARY_FILE not in existing:
            raise LakeExistsError(
                f"{output} holds an incomplete lake ({', '.join(existing)} but no {SUMMARY_FILE}: a run was "
                "interrupted while committing); pass --overwrite to replace it, or choose another --output")
        raise LakeExistsError(
            f"{output} already holds a lake ({', '.join(existing)}); pass --overwrite to replace it, "
            "or choose another --output")
    staging = FileSystems.join(output, STAGING_DIR)
    if FileSystems.exists(staging) and not lake and not FileSystems.exists(FileSystems.join(staging, STAGING_MARKER)):
        raise LakeExistsError(f"{output} holds a {STAGING_DIR}/ folder that wirewash did not make; nothing was "
                              "deleted: choose another --output")
    remove_staging(output)  # leftovers of killed or failed runs: free their space before probing
    probe = FileSystems.join(staging, f".write-test-{uuid.uuid4().hex}")
    try:
        if not FileSystems.exists(staging):
            FileSystems.mkdirs(staging)
        with FileSystems.create(FileSystems.join(staging, STAGING_MARKER)) as handle:
            handle.write(b"wirewash staging\n")
        with FileSystems.create(probe) as handle:
            handle.write(b"ok" * 2048)  # a few KiB: a full disk fails here, not after the whole run
        FileSystems.delete([probe])
    except Exception as err:
        raise OSError(f"cannot write to the output folder {output}: {short_error(err)}") from err


def lake_layout(output: str, requested: str, explicit: set = frozenset()) -> str:
    """The partition granularity of an append: the lake's own (lakes from before `layout` used days); a
    different one given explicitly (`explicit` holds the flags given) is an error."""
    summary = read_summary(output)
    if summary is None:
        return requested
    own = summary.get("layout", {}).get("partition_by", "day")
    if "partition_by" in explicit and requested != own:
        raise ValueError(f"--partition_by {requested} differs from the lake's own ({own}): an append keeps the "
                         "lake's partitions; omit --partition_by or write a new lake")
    return own


def _lake_files(output: str, table: str) -> list[str]:
    """The Parquet files under one table folder (what a lake holds there; any other file is left alone)."""
    folder = FileSystems.join(output, table)
    if not FileSystems.exists(folder):
        return []
    matched = FileSystems.match([FileSystems.join(folder, "**")])[0].metadata_list
    return sorted(m.path for m in matched if m.path.endswith(".parquet"))


def _remove_empty_folders(folder: str) -> None:
    """Local only (object stores have no folders): removes the folders left empty below and at `folder`."""
    if "://" in folder or not os.path.isdir(folder):
        return
    for dirpath, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(dirpath)
        except OSError:  # not empty: it holds a file that is not the lake's
            pass


def remove_lake(output: str) -> None:
    """Deletes what a wirewash lake holds, and only that: `_SUMMARY.json` first (from then on the folder reads
    as an interrupted lake, never as a mix of runs), the report, the Parquet files of the tables and the
    folders they leave empty. Refuses a folder that is not a lake (see `is_lake`)."""
    existing = _existing(output)
    if not is_lake(output):
        if existing:
            raise _not_a_lake(output, existing)
        return
    for name in (SUMMARY_FILE, REPORT_FILE):
        path = FileSystems.join(output, name)
        if FileSystems.exists(path):
            FileSystems.delete([path])
    for table in TABLES + (INDEX,):
        files = _lake_files(output, table)
        for start in range(0, len(files), RENAME_BATCH):
            FileSystems.delete(files[start:start + RENAME_BATCH])
        _remove_empty_folders(FileSystems.join(output, table))


def manifest_files(output: str) -> dict:
    """{table: sorted relative paths of its committed Parquet files}, from a listing of the tables (the
    streaming lake, whose files are committed by Beam's file sink)."""
    return {t: sorted(_relative(output, p) for p in _lake_files(output, t)) for t in TABLES}


def _relative(output: str, path: str) -> str:
    if "://" not in output:
        return os.path.relpath(path, output).replace(os.sep, "/")
    prefix = output.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


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

    def __init__(self, table: str, staging: str, ingested_at: str, partition_by: str = DEFAULT_PARTITION_BY):
        self.table = table
        self.staging = staging
        self.ingested_at = ingested_at
        self.partition_by = partition_by

    def setup(self):
        self.schema = SCHEMAS[self.table]
        self.ingested = datetime.fromisoformat(self.ingested_at)
        self.folder_ready = False

    def start_bundle(self):
        self.buffers = defaultdict(list)
        self.sizes = Counter()

    def process(self, element):
        partition = partition_of(element, self.partition_by) if self.table == DOCUMENTS else ""
        self.buffers[partition].append(element if self.table == INDEX else row_of(self.table, element, self.ingested))
        self.sizes[partition] += len(element.text) if self.table == DOCUMENTS else 200
        if len(self.buffers[partition]) >= MAX_ROWS_PER_FILE or self.sizes[partition] >= MAX_BYTES_PER_FILE:
            yield self._flush(partition)
        elif sum(self.sizes.values()) >= MAX_BUFFERED_BYTES:
            # Many small partitions can together hold a worker's whole share of the corpus: bound the total,
            # writing the biggest buffers first (fewer, larger files; `_MergeStagedFn` joins them again).
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
        if not self.folder_ready:
            _ensure_dir(FileSystems.join(self.staging, self.table))
            self.folder_ready = True
        staged = _write_staged(self.table, partition, self.staging, pa.Table.from_pylist(rows, schema=self.schema))
        Metrics.counter(NAMESPACE, f"{self.table}_rows").inc(len(rows))
        Metrics.counter(NAMESPACE, f"{self.table}_files").inc()
        return staged


def _write_staged(table: str, partition: str, staging: str, data: pa.Table) -> StagedFile:
    """Writes one staged file (sorted, see `write_parquet`) and describes it. One flat folder per table: a
    partition is a prefix of the name, not two more folders to create and to remove after the commit."""
    prefix = partition.replace("/", "__") + "__" if partition else ""
    path = FileSystems.join(staging, table, f"{prefix}part-{uuid.uuid4().hex}.parquet{STAGED_SUFFIX}")
    with FileSystems.create(path) as handle:
        write_parquet(table, data, handle)
    size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    return StagedFile(table, partition, path, data.num_rows, size)


def merge_groups(files: list, max_bytes: int = MERGE_MAX_BYTES, max_rows: int = MAX_ROWS_PER_FILE) -> list[list]:
    """Staged files of one partition packed into groups, each to become one file: in path order, a group
    closes when the next file would take it past `max_bytes` of Parquet or `max_rows` rows."""
    groups, current, size, rows = [], [], 0, 0
    for item in sorted(files, key=lambda f: f.path):
        if current and (size + item.size > max_bytes or rows + item.rows > max_rows):
            groups.append(current)
            current, size, rows = [], 0, 0
        current.append(item)
        size, rows = size + item.size, rows + item.rows
    return groups + [current] if current else groups


class _MergeStagedFn(beam.DoFn):
    """(table/partition, staged files) -> the files of that partition, those written by several bundles or
    workers merged into one (re-sorted), so a run adds one file per partition (more only past
    MERGE_MAX_BYTES / MAX_ROWS_PER_FILE). A retried merge writes new names; only emitted files are committed."""

    def __init__(self, staging: str):
        self.staging = staging

    def process(self, element):
        _, files = element
        for group in merge_groups([StagedFile(*f) for f in files]):
            if len(group) == 1:
                yield group[0]
                continue
            parts = []
            for item in group:
                with FileSystems.open(item.path) as handle:
                    parts.append(pq.read_table(handle))
            merged = pa.concat_tables(parts)
            Metrics.counter(NAMESPACE, "merged_files").inc(len(group))
            yield _write_staged(group[0].table, group[0].partition, self.staging, merged)


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
    """(doc_id, {docs: [...], dups: [...], lake: [...]}) -> the invariant violations it shows, as (name,
    count); `lake` holds the ids of the documents already in the lake (an append)."""
    _, grouped = item
    n_docs, n_dups, n_lake = len(grouped["docs"]), len(grouped["dups"]), len(grouped.get("lake", ()))
    if n_docs and n_docs + n_lake > 1:
        yield "duplicate_doc_ids", n_docs + n_lake - 1
    if n_dups and not n_docs and not n_lake:
        yield "dangling_duplicate_of", n_dups


def unread_input(tallies) -> list:
    """Input files the reader did not account for, from its per-file facts (`pipeline.tally.tally_fact`: file,
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
           violations: Optional[dict] = None, removed_lines: Optional[dict] = None, unread=(), *,
           partition_by: str = DEFAULT_PARTITION_BY, run: Optional[dict] = None, append: bool = False,
           dedup: Optional[DedupConfig] = None) -> dict:
    """Moves the staged files into the lake, writes _SUMMARY.json, removes the staging folders.

    The marker file goes in first (an interrupted commit is still recognizably a lake). With `overwrite`,
    the previous lake is removed first (`remove_lake`: its _SUMMARY.json before its tables and report), so
    that the tables never hold two runs' files; with `append`, the files join the lake's and the summary
    adds this run to the lake's totals; otherwise a lake that appeared while this run was going stops the
    commit. A folder that is not a wirewash lake is never touched. `violations` counts the invariant failures
    found by the pipeline (see `_violation_facts`); the partitions are checked here, on the staged file list;
    `unread` lists the input files the reader did not account for (`unread_input`).
    The summary's `files` lists exactly the committed Parquet files of each table (relative paths): readers
    take one consistent snapshot from it.
    """
    if not claim(FileSystems.join(output, STAGING_DIR)):  # one winner: this commit, or a Ctrl-C / SIGTERM
        raise RuntimeError("the run was stopped before its commit (Ctrl-C or SIGTERM); nothing was committed")
    staged = sorted(StagedFile(*s) for s in staged)
    existing = _existing(output)
    previous = read_summary(output) if append else None
    if existing and not is_lake(output):
        raise _not_a_lake(output, existing)
    if existing and not (overwrite or append):
        raise LakeExistsError(f"{output} already holds a lake ({', '.join(existing)}); not overwriting")
    if append and previous is None and existing:
        raise LakeExistsError(f"{output} holds an incomplete lake (no {SUMMARY_FILE}): cannot append to it")
    _write_marker(output, staging)
    if existing and overwrite:
        remove_lake(output)
    if previous is not None:
        _remove_orphans(output, previous)
    written = Counter()
    invalid_partitions = sum(1 for item in staged if item.table == DOCUMENTS and not valid_partition(item.partition))
    sources, targets = [], []
    files = {t: list((previous or {}).get("files", {}).get(t, [])) for t in TABLES}
    files[INDEX] = list((previous or {}).get("index", {}).get("files", []))
    for item in staged:
        folder = posixpath.join(item.table, item.partition) if item.partition else item.table
        name = posixpath.basename(item.path).removesuffix(STAGED_SUFFIX).rpartition("__")[2]
        sources.append(item.path)
        targets.append(FileSystems.join(output, folder, name))
        files[item.table].append(posixpath.join(folder, name))
        written[item.table] += item.rows
    for target_dir in sorted({posixpath.dirname(t) for t in targets} | {FileSystems.join(output, t) for t in TABLES}):
        if not FileSystems.exists(target_dir):  # the three tables always exist, empty or not
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
    summary = lake_summary(previous, summary, files, partition_by, run)
    if dedup is not None:
        summary["index"] = {"files": sorted(files[INDEX]), "rows": (previous or {}).get("index", {}).get("rows", 0)
                            + written[INDEX], "dedup": _dedup_settings(dedup)}
    write_summary(output, staging, summary)
    if append:  # the report described the lake before this run
        report = FileSystems.join(output, REPORT_FILE)
        if FileSystems.exists(report):
            FileSystems.delete([report])
    remove_staging(output)
    return summary


def _dedup_settings(config: DedupConfig) -> dict:
    """The settings an index's fingerprints depend on: an append must use the same."""
    return {"threshold": config.threshold, "num_perm": config.num_perm, "seed": config.seed, "near": config.near}


def _remove_orphans(output: str, previous: dict) -> None:
    """Before an append moves its files in: the Parquet files of the tables and index that the committed
    manifest does not list (moved in by a commit killed before its summary) are deleted, never counted."""
    listed = {f for t in TABLES for f in previous.get("files", {}).get(t, [])}
    listed |= set(previous.get("index", {}).get("files", []))
    if not previous.get("files"):  # a lake from before the manifest: nothing to compare with
        return
    for table in TABLES + (INDEX,):
        orphans = [p for p in _lake_files(output, table) if _relative(output, p) not in listed]
        if orphans:
            FileSystems.delete(orphans)


# Summary fields that add up over runs (the lake's totals after an append).
ADDITIVE = ("records_read", "documents", "duplicates", "rejected", "stages", "boilerplate_lines_removed",
            "languages", "duplicate_kinds", "rejected_reasons", "files_rows")
RUN_FIELDS = ("records_read", "documents", "duplicates", "rejected", "reconciled", "ok", "files_rows",
              "duplicate_kinds", "rejected_reasons")


def add_counts(a, b):
    """Sums two count trees (ints, and dicts of them), key by key; a key on one side only keeps its value.
    Lists (`invariants.unread_input`: each run's unread files) join, so an append never hides a past problem."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: add_counts(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k))
                for k in sorted(set(a) | set(b), key=str)}
    if isinstance(a, list) and isinstance(b, list):
        return sorted(a + b, key=str)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a + b
    return b


def lake_summary(previous: Optional[dict], run_summary: dict, files: dict, partition_by: str,
                 run: Optional[dict]) -> dict:
    """The lake's `_SUMMARY.json`: this run's summary, plus (after an append) the previous totals; `layout`,
    the `files` manifest and `runs` (one record per run: id, version, options, inputs, counts, times)."""
    record = dict(run or {})
    record.update({k: run_summary[k] for k in RUN_FIELDS if k in run_summary})
    summary = dict(run_summary)
    if previous is not None:
        for key in ADDITIVE:
            before, now = previous.get(key), summary.get(key)
            summary[key] = now if before is None else before if now is None else add_counts(before, now)
        summary["reconciled"] = bool(previous.get("reconciled")) and run_summary["reconciled"] and (
            summary["records_read"] == summary["documents"] + summary["duplicates"] + summary["rejected"])
        summary["ok"] = bool(previous.get("ok", True)) and run_summary["ok"] and summary["reconciled"]
        summary["invariants"] = add_counts(previous.get("invariants", {}), run_summary["invariants"])
        summary["invariants"]["reconciled"] = summary["reconciled"]
        # the most frequent removed lines of each rule over the runs (each run kept its top 5: an estimate)
        lines = add_counts(previous.get("boilerplate_removed_lines") or {}, summary.get("boilerplate_removed_lines") or {})
        summary["boilerplate_removed_lines"] = {
            rule: dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]) for rule, counts in lines.items()}
    summary["layout"] = {"partition_by": partition_by, "format": 2}
    summary["files"] = {t: sorted(files[t]) for t in TABLES}
    summary["runs"] = list((previous or {}).get("runs", [])) + [record]
    return summary


def read_summary(output: str) -> Optional[dict]:
    """The committed `_SUMMARY.json` of a lake, or None."""
    path = FileSystems.join(output, SUMMARY_FILE)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode("utf-8"))


def write_summary(output: str, staging: str, summary: dict) -> None:
    """Replaces `_SUMMARY.json` atomically (a temporary file in the staging folder, then a rename)."""
    if not FileSystems.exists(staging):
        FileSystems.mkdirs(staging)
    tmp = FileSystems.join(staging, f"{SUMMARY_FILE}.{uuid.uuid4().hex}")
    with FileSystems.create(tmp) as handle:
        handle.write(json.dumps(summary, indent=2, sort_keys=False).encode("utf-8"))
    FileSystems.rename([tmp], [FileSystems.join(output, SUMMARY_FILE)])


def _write_marker(output: str, staging: str) -> None:
    path = FileSystems.join(output, MARKER_FILE)
    if FileSystems.exists(path):
        return
    if not FileSystems.exists(staging):
        FileSystems.mkdirs(staging)
    tmp = FileSystems.join(staging, f"{MARKER_FILE}.{uuid.uuid4().hex}")
    with FileSystems.create(tmp) as handle:
        handle.write(b'{"format": "wirewash-lake", "version": 2}\n')
    FileSystems.rename([tmp], [path])


def remove_staging(output: str) -> None:
    """Deletes the whole staging folder: this run's leftovers (files of retried bundles), or what a killed
    or failed run left. Called when a run starts, after its commit, and when it fails (one run writes a lake
    at a time). Only a staging folder of wirewash's (its marker inside, or in a lake) is removed. Best effort:
    what stays there is outside the tables and never matches `*.parquet`."""
    staging = FileSystems.join(output, STAGING_DIR)
    try:
        if is_lake(output) or FileSystems.exists(FileSystems.join(staging, STAGING_MARKER)):
            FileSystems.delete([staging])
    except Exception:
        pass


class WriteLake(beam.PTransform):
    """{documents, duplicates, rejected} PCollections + the count of records read -> a committed lake.

    Returns a PCollection holding the one summary dict. `run` (a dict: run id, version, options, inputs,
    start time) is recorded in the summary's `runs`, with the commit time.
    """

    def __init__(self, output: str, ingested_at: str, overwrite: bool = False, run_id: Optional[str] = None,
                 partition_by: str = DEFAULT_PARTITION_BY, append: bool = False, run: Optional[dict] = None,
                 dedup: Optional[DedupConfig] = None, lake_index: tuple = ()):
        super().__init__()
        self.dedup = dedup  # given: the run writes its documents' dedup index (see transforms/lake_dedup.py)
        self.lake_index = tuple(lake_index)  # an append: the lake's index files (their ids join the checks)
        self.output = output.rstrip("/") if output.rstrip("/") else output
        self.ingested_at = ingested_at
        self.overwrite = overwrite
        self.partition_by = partition_by
        self.append = append
        self.run = dict(run or {})
        self.run.setdefault("run_id", run_id or uuid.uuid4().hex)
        self.staging = FileSystems.join(self.output, STAGING_DIR, self.run["run_id"])

    def expand(self, inputs):
        staged, facts = [], []
        for table in TABLES:
            pcoll = inputs[table]
            staged.append(pcoll | f"Stage{table.title()}" >> beam.ParDo(
                _WriteStagedFn(table, self.staging, self.ingested_at, self.partition_by)))
            facts.append(pcoll | f"Facts{table.title()}" >> beam.Map(_fact_of(table)))
        if self.dedup is not None:
            staged.append(inputs[DOCUMENTS]
                          | "IndexRows" >> beam.Map(index_row, self.dedup)
                          | "StageIndex" >> beam.ParDo(_WriteStagedFn(INDEX, self.staging, self.ingested_at)))
        summary_facts = facts | "AllFacts" >> beam.Flatten() | "Summarize" >> beam.CombineGlobally(_SummaryFn())
        # Invariants on ids: only the keys are shuffled, never the texts.
        ids = {"docs": inputs[DOCUMENTS] | "DocIds" >> beam.Map(lambda a: (a.doc_id, 1)),
               "dups": inputs[DUPLICATES] | "DuplicateOf" >> beam.Map(lambda d: (d.duplicate_of, 1))}
        if self.lake_index:
            ids["lake"] = (inputs[DOCUMENTS].pipeline | "LakeIndexFiles" >> beam.Create(list(self.lake_index))
                           | "LakeIds" >> beam.FlatMap(read_index_ids) | "LakeIdKeys" >> beam.Map(lambda i: (i, 1)))
        violations = (
            ids
            | "JoinIds" >> beam.CoGroupByKey()
            | "Violations" >> beam.FlatMap(_violation_facts)
            | "CountViolations" >> beam.CombinePerKey(sum)
            | "ViolationDict" >> beam.combiners.ToDict())
        output, staging, overwrite = self.output, self.staging, self.overwrite
        options = {"partition_by": self.partition_by, "append": self.append, "run": self.run, "dedup": self.dedup}
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
            | "ByPartition" >> beam.Map(lambda s: (f"{s.table}/{s.partition}", tuple(s)))
            | "GroupByPartition" >> beam.GroupByKey()
            | "MergeSmallFiles" >> beam.ParDo(_MergeStagedFn(staging))
            | "ListStaged" >> beam.combiners.ToList()
            | "Commit" >> beam.Map(
                lambda files, facts, read, bad, lines, tallied: commit(files, output, staging, facts, read,
                                                                       overwrite, bad, lines, tallied,
                                                                       **_with_end(options)),
                beam.pvalue.AsSingleton(summary_facts), beam.pvalue.AsSingleton(inputs["records_read"]),
                beam.pvalue.AsSingleton(violations), beam.pvalue.AsSingleton(removed_lines, default_value={}),
                beam.pvalue.AsList(unread))
        )


def _with_end(options: dict) -> dict:
    run = dict(options["run"], committed_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat())
    return {**options, "run": run}


# ---------------------------------------------------------------------------------------------------------
# Compaction (`wirewash compact LAKE`)
# ---------------------------------------------------------------------------------------------------------

def compaction_plan(files: list[str], sizes: dict, rows: dict, max_bytes: int = MERGE_MAX_BYTES) -> list[list[str]]:
    """Relative paths of one table -> the groups of files to merge: per partition folder, the files packed by
    `merge_groups` (in path order, up to `max_bytes` of Parquet and MAX_ROWS_PER_FILE rows); groups of one
    file stay as they are and are left out."""
    by_folder = defaultdict(list)
    for path in files:
        by_folder[posixpath.dirname(path)].append(StagedFile("", posixpath.dirname(path), path, rows[path], sizes[path]))
    plan = []
    for folder in sorted(by_folder):
        plan += [[f.path for f in group] for group in merge_groups(by_folder[folder], max_bytes) if len(group) > 1]
    return plan


def compact(output: str, max_bytes: int = MERGE_MAX_BYTES) -> dict:
    """Rewrites the small files of each partition (tables and index) into large ones, sorted, without changing
    a row: new files are written to staging, checked (same rows, same schema), moved in; then `_SUMMARY.json`
    is replaced by one whose `files` lists them instead of the old ones (one atomic rename: a reader of the
    manifest sees the old set or the new set, never both), and only then are the old files deleted. Returns
    {"merged": old files replaced, "written": new files}. Raises LakeExistsError when `output` is not a
    committed lake, or is a stream still being written."""
    previous = read_summary(output)
    if previous is None:
        raise LakeExistsError(f"{output} holds no committed wirewash lake ({SUMMARY_FILE} missing)")
    if previous.get("streaming", {}).get("final") is False:
        raise LakeExistsError(f"{output} is a streaming lake still being written; compact it after the stream stops")
    if "files" not in previous:
        raise LakeExistsError(f"{output} was written before the files manifest existed; rerun it with --overwrite "
                              "to compact it")
    staging = FileSystems.join(output, STAGING_DIR, f"compact-{uuid.uuid4().hex}")
    FileSystems.mkdirs(staging)
    with FileSystems.create(FileSystems.join(output, STAGING_DIR, STAGING_MARKER)) as handle:
        handle.write(b"wirewash staging\n")
    manifests = {t: list(previous["files"].get(t, [])) for t in TABLES}
    if "index" in previous:
        manifests[INDEX] = list(previous["index"]["files"])
    replaced, written, moves = [], [], []
    for table, files in manifests.items():
        sizes, rows = {}, {}
        for rel in files:
            path = FileSystems.join(output, rel)
            sizes[rel] = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
            with FileSystems.open(path) as handle:
                rows[rel] = pq.ParquetFile(handle).metadata.num_rows
        for group in compaction_plan(files, sizes, rows, max_bytes):
            parts = []
            for rel in group:
                with FileSystems.open(FileSystems.join(output, rel)) as handle:
                    parts.append(pq.read_table(handle, schema=SCHEMAS[table]))
            merged = pa.concat_tables(parts)
            if merged.num_rows != sum(rows[rel] for rel in group):
                raise RuntimeError(f"compaction of {posixpath.dirname(group[0])} lost rows; nothing changed")
            _ensure_dir(FileSystems.join(staging, table))
            staged = _write_staged(table, "", staging, merged)
            rel = posixpath.join(posixpath.dirname(group[0]), f"part-{uuid.uuid4().hex}.parquet")
            moves.append((staged.path, FileSystems.join(output, rel)))
            replaced += group
            written.append((table, rel))
    if not moves:
        remove_staging(output)
        return {"merged": 0, "written": 0}
    FileSystems.rename([m[0] for m in moves], [m[1] for m in moves])
    gone = set(replaced)
    summary = dict(previous)
    summary["files"] = {t: sorted([f for f in manifests[t] if f not in gone] + [r for tb, r in written if tb == t])
                        for t in TABLES}
    if INDEX in manifests:
        summary["index"] = dict(previous["index"], files=sorted(
            [f for f in manifests[INDEX] if f not in gone] + [r for tb, r in written if tb == INDEX]))
    summary["compactions"] = list(previous.get("compactions", [])) + [{
        "at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "merged_files": len(replaced), "written_files": len(written)}]
    write_summary(output, staging, summary)
    old = [FileSystems.join(output, rel) for rel in replaced]
    for start in range(0, len(old), RENAME_BATCH):
        FileSystems.delete(old[start:start + RENAME_BATCH])
    remove_staging(output)
    return {"merged": len(replaced), "written": len(written)}
