"""The lake's format: hive-partitioned Parquet tables, their schemas and partitions, and its folder rules.

Written by a batch run through staged files and one commit (pipeline/lake_write.py), by a stream window by
window (pipeline/windowed_lake.py); its `_SUMMARY.json` is pipeline/lake_summary.py; `wirewash compact` is
pipeline/compact.py.

Layout (explicit Arrow schemas below, zstd, rows sorted within a file, row groups of ROW_GROUP_ROWS):
    LAKE/documents/lang=<code>/date=<period|unknown>/part-*.parquet   period: YYYY-MM-DD (default), YYYY-MM or YYYY
    LAKE/documents/ingest_date=<YYYY-MM-DD>/part-*.parquet            `--partition_by ingest`: lang, date in the files
    LAKE/duplicates/part-*.parquet
    LAKE/rejected/part-*.parquet
    LAKE/_index/part-*.parquet      the dedup index (transforms/lake_dedup.py): what `--append` dedups against
    LAKE/_SUMMARY.json              counts, the `files` manifest, `runs`
    LAKE/_WIREWASH_LAKE             the marker: this folder is a wirewash lake
Partition columns (`lang`, `date`) live in the folder names only, as BigQuery, Athena and Spark expect; the
values come from validated fields (`lang` a 2-3 letter code or `und`, `date` a real period or `unknown`). The
ingest layout (INGEST) keeps the same `lang` and `date` values (days) as ordinary columns of the files, rows
sorted by them, under one `ingest_date=` folder per UTC day of `ingested_at`: few large files, pruned by
row-group statistics instead of folders (docs/data-model.md says when to choose which).

Only a wirewash lake is ever replaced: the marker is written before a commit's first file moves in, and a
folder holding `documents/` (or the others) without the marker or a summary is refused, never deleted. When a
lake is replaced (`--overwrite`) the old summary is removed first, then the old report, tables and index
(their Parquet files only: anything else a user put there stays), before any new file moves in; so the
tables never hold two runs' files, and a lake without `_SUMMARY.json` is an interrupted one (refused by
`wirewash query`, replaced by a rerun with `--overwrite`). No `*.parquet` glob sees a staged file (their
suffix), and Spark, pyarrow and Hive also skip `_`-prefixed folders. One run writes a lake at a time: a run
clears `_staging/` (when it is the lake's or carries wirewash's marker) when it starts, after its commit,
and when it fails.
"""
from __future__ import annotations

import json
import os
import re
import uuid
from datetime import datetime, timezone
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from wirewash.pipeline.manifest import INDEX_FOLDER, leaves_the_lake, manifest_problem
from wirewash.transforms.lake_dedup import INDEX_SCHEMA
from wirewash.transforms.records import MAX_YEAR, MIN_YEAR
from wirewash.transforms.types import (DOCUMENTS, DUPLICATES, REJECTED, TABLES, UNDETERMINED_LANGUAGE, UNKNOWN_DATE,
                                      Article)

__all__ = ["DOCUMENTS_SCHEMA", "DUPLICATES_SCHEMA", "REJECTED_SCHEMA", "partition_of", "LakeExistsError", "check_output_location", "check_output_name", "SUMMARY_FILE", "TABLES", "LANGUAGES",
           "valid_partition", "short_error", "remove_staging", "PARTITION_BY", "DEFAULT_PARTITION_BY",
           "MARKER_FILE", "REPORT_FILE", "is_lake", "sort_rows", "sort_order", "write_parquet", "write_sorted_runs", "manifest_files", "INGEST", "LAYOUTS",
           "file_schema", "lang_and_date", "in_file_layout"]

SUMMARY_FILE = "_SUMMARY.json"
REPORT_FILE = "_REPORT.html"  # written by `wirewash report`; part of the lake, removed with it
# Written before the first file of a commit moves in: a folder holding it (or a _SUMMARY.json) is a wirewash
# lake, which `--overwrite` may replace; any other folder holding documents/ ... is not, and is never touched.
MARKER_FILE = "_WIREWASH_LAKE"
STAGING_DIR = "_staging"
# The dedup index (transforms/lake_dedup.py): one row per document, no text; what `--append` dedups against.
INDEX = INDEX_FOLDER
STAGING_MARKER = ".wirewash"  # inside _staging/: that folder is ours (a plain run may clear it)
# `date` partition value: the publication period at this granularity (a string: YYYY-MM-DD, YYYY-MM or YYYY),
# or `unknown`. Day by default: the lake contract (`../shared/tools/check_lake.py`) names day folders;
# month or year (far fewer files on multi-year corpora) on request. See docs/data-model.md.
PARTITION_BY = {"day": 10, "month": 7, "year": 4}
DEFAULT_PARTITION_BY = "day"
# The scan layout: one `ingest_date=YYYY-MM-DD` folder per UTC day of `ingested_at` (one file per run or stream
# pane there, more only past the merge caps), `lang` and `date` (a day, or `unknown`) stored in the files.
INGEST = "ingest"
INGEST_FOLDER = "ingest_date"
LAYOUTS = tuple(PARTITION_BY) + (INGEST,)
# zstd level of every lake file: DuckDB's default; Arrow's (1) left the ingest layout's one file 1.47x the size
# DuckDB writes for the same rows, level 3 1.07x, for ~25% more time writing it (docs/performance.md).
COMPRESSION_LEVEL = 3
# Columns written without min/max statistics: long free text and binary sketches, never a useful filter range.
# Their statistics (up to 4 KB a value, in the footer and in every page header) were more than half the bytes
# of a small partition file (docs/performance.md).
NO_STATISTICS = frozenset({"text", "title", "url", "excerpt", "error", "signature", "sketch"})
# Row groups inside a file: small enough that DuckDB scans a file on several threads and prunes on the
# sorted columns' statistics, large enough that the footer stays small.
ROW_GROUP_ROWS = 8192
# Bytes of rows sorted at a time when sorted runs are merged into one file (`write_sorted_runs`).
MERGE_ROUND_BYTES = 4 << 20
# Sort order within a file (row-group statistics on the leading columns prune range queries).
SORT_KEYS = {
    "documents": [("published_at", "ascending"), ("source", "ascending"), ("doc_id", "ascending")],
    # documents holding `lang` and `date` (the ingest layout): a language's month is a few adjacent row groups
    "documents_in_file": [("lang", "ascending"), ("date", "ascending"), ("published_at", "ascending"),
                          ("doc_id", "ascending")],
    "duplicates": [("duplicate_of", "ascending"), ("doc_id", "ascending")],
    "rejected": [("stage", "ascending"), ("reason", "ascending"), ("source_location", "ascending")],
    INDEX: [("doc_id", "ascending")],
}
# Staged files of one partition are merged up to this much Parquet (compressed) per output file.
MERGE_MAX_BYTES = 32 << 20  # about 100 MB of rows in memory while merging (read, then sorted)
# Dictionary-encode only the columns whose values repeat: on the unique ones (ids, texts, hashes, URLs) a
# dictionary is built and thrown away, which cost ~40% of writing a small partition file.
DICTIONARY_COLUMNS = ["source", "format", "lang", "date", "stage", "reason", "kind", "other_langs", "ingested_at",
                      "published_at"]
RENAME_BATCH = 1000  # files per rename or delete call (object stores work in batches)

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
# The documents of the ingest layout: the same columns, then `lang` and `date` (the folder layouts' values).
IN_FILE_COLUMNS = ("lang", "date")
DOCUMENTS_IN_FILE_SCHEMA = pa.schema(list(DOCUMENTS_SCHEMA) + [pa.field(c, pa.string()) for c in IN_FILE_COLUMNS])

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
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PARTITION = re.compile(r"^lang=([a-z]{2,3})/date=(\d{4}(?:-\d{2}(?:-\d{2})?)?|unknown)$")
_INGEST_PARTITION = re.compile(r"^ingest_date=(\d{4}-\d{2}-\d{2})$")


class LakeExistsError(RuntimeError):
    """The output folder already holds a lake and overwriting was not asked for."""


class LakeDamagedError(LakeExistsError):
    """The lake's `_SUMMARY.json` cannot be trusted (see `read_summary`): refused like an existing lake."""


# ---------------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------------


def in_file_layout(partition_by: str) -> bool:
    """True for the layouts that store `lang` and `date` in the documents files (not in folder names)."""
    return partition_by == INGEST


def file_schema(table: str, partition_by: str = DEFAULT_PARTITION_BY) -> pa.Schema:
    """The Arrow schema of a table's files in a layout (documents of the ingest layout add `lang`, `date`)."""
    return DOCUMENTS_IN_FILE_SCHEMA if table == DOCUMENTS and in_file_layout(partition_by) else SCHEMAS[table]


def lang_and_date(article: Article, granularity: str = "day") -> tuple[str, str]:
    """(lang, period) from validated values only: a language outside LANGUAGES becomes `und`, a date that is
    not a real day between 1800 and 2200 becomes `unknown`; a real day is cut to the period of `granularity`
    (day `YYYY-MM-DD`, month `YYYY-MM`, year `YYYY`; the ingest layout stores days)."""
    lang = article.lang if article.lang in LANGUAGES else UNDETERMINED_LANGUAGE
    day = UNKNOWN_DATE
    if isinstance(article.published_at, str):
        candidate = article.published_at[:10]
        try:
            if _DATE.match(candidate) and MIN_YEAR <= datetime.strptime(candidate, "%Y-%m-%d").year <= MAX_YEAR:
                day = candidate[:PARTITION_BY.get(granularity, PARTITION_BY["day"])]
        except ValueError:
            pass
    return lang, day


def ingest_day(ingested_at: datetime) -> str:
    """The UTC day of an ingest time (a naive time is taken as UTC)."""
    if ingested_at.tzinfo is None:
        ingested_at = ingested_at.replace(tzinfo=timezone.utc)
    return ingested_at.astimezone(timezone.utc).date().isoformat()


def partition_of(article: Article, partition_by: str = DEFAULT_PARTITION_BY,
                 ingested_at: Optional[datetime] = None) -> str:
    """The documents folder of an article: `lang=<code>/date=<period>` (see `lang_and_date`), or for the ingest
    layout `ingest_date=<UTC day of ingested_at>`."""
    if in_file_layout(partition_by):
        return f"{INGEST_FOLDER}={ingest_day(ingested_at)}"
    lang, period = lang_and_date(article, partition_by)
    return f"lang={lang}/date={period}"


def valid_partition(partition: str) -> bool:
    """True for a documents partition path built from the closed sets (the commit re-checks every one): the
    period is a real day, month or year between 1800 and 2200, or `unknown`; an ingest folder a real day."""
    ingest = _INGEST_PARTITION.match(partition)
    if ingest:
        try:
            return MIN_YEAR <= datetime.strptime(ingest.group(1), "%Y-%m-%d").year <= MAX_YEAR
        except ValueError:
            return False
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
    """The rows of one file in the lake's order (SORT_KEYS; documents holding `lang` and `date` by those
    first): equal input rows give equal files."""
    return data.take(sort_order(table, data)) if data.num_rows > 1 else data


def sort_order(table: str, data: pa.Table) -> pa.Array:
    """The row numbers of `data` in the lake's order (SORT_KEYS, as `sort_rows`; a stable sort)."""
    keys = SORT_KEYS["documents_in_file" if table == DOCUMENTS and "lang" in data.column_names else table]
    return pc.sort_indices(data, sort_keys=keys) if data.num_rows > 1 else pa.array(range(data.num_rows), pa.uint64())


def _parquet_writer(sink, schema: pa.Schema) -> pq.ParquetWriter:
    """zstd, dictionaries only where values repeat, statistics only where a filter can use them."""
    return pq.ParquetWriter(sink, schema, compression="zstd", compression_level=COMPRESSION_LEVEL,
                            use_dictionary=[c for c in DICTIONARY_COLUMNS if c in schema.names],
                            write_statistics=[c for c in schema.names if c not in NO_STATISTICS])


def write_parquet(table: str, data: pa.Table, handle) -> int:
    """One lake file: sorted rows in row groups of ROW_GROUP_ROWS (`_parquet_writer`'s settings). Streamed
    into `handle` one row group at a time: besides `data` it holds one sorted row group and the writer's
    pages, never a sorted copy of the whole file nor the file in memory (that was three copies of a writer's
    buffer at once: issue 21's worker peak). Returns the bytes written."""
    counted = _CountedWriter(handle)
    order = sort_order(table, data)
    with _parquet_writer(counted, data.schema) as writer:
        for start in range(0, max(data.num_rows, 1), ROW_GROUP_ROWS):
            writer.write_table(data.take(order[start:start + ROW_GROUP_ROWS]), row_group_size=ROW_GROUP_ROWS)
    return counted.written


def write_sorted_runs(table: str, runs: list, schema: pa.Schema, handle) -> int:
    """One lake file from runs (record batches or tables, each already in the lake's order): the rows and row
    groups `write_parquet` gives for their concatenation (a stable sort: ties in the order of `runs`), merged
    as they stream, so that besides the runs it holds one row group and MERGE_ROUND_BYTES of rows, never a copy
    of the runs (taking sorted rows from many chunks concatenated them all again). Returns the bytes written.

    Each round sorts a slice of every run still open and writes out the rows up to the earliest of the
    slices' last rows: no row not yet sliced can come before them (its run is sorted; ties go by run, then
    row)."""
    rows_in = sum(run.num_rows for run in runs)
    row_bytes = sum(run.nbytes for run in runs) / max(1, rows_in)
    step = max(1, int(MERGE_ROUND_BYTES / (row_bytes * max(1, len(runs)) or 1)))
    slices = [_slices(run, step) for run in runs]
    loaded = [next(part, None) for part in slices]
    counted, out, pending, rows = _CountedWriter(handle), [], 0, 0
    with _parquet_writer(counted, schema) as writer:
        while any(part is not None for part in loaded):
            live = [i for i, part in enumerate(loaded) if part is not None]
            ends = np.cumsum([loaded[i].num_rows for i in live])
            both = pa.Table.from_batches([batch for i in live for batch in loaded[i].to_batches()], schema=schema)
            order = sort_order(table, both).to_numpy().astype(np.int64)
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            cut = int(rank[ends - 1].min()) + 1  # through the earliest of the slices' last rows
            out.append(both.take(order[:cut]))
            pending += cut
            taken = np.bincount(np.searchsorted(ends, order[:cut], side="right"), minlength=len(live))
            for j, i in enumerate(live):
                rest = loaded[i].slice(int(taken[j]))
                loaded[i] = rest if rest.num_rows else next(slices[i], None)
            while pending >= ROW_GROUP_ROWS:
                ready = pa.concat_tables(out)
                writer.write_table(ready.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
                out, pending, rows = [ready.slice(ROW_GROUP_ROWS)], pending - ROW_GROUP_ROWS, rows + ROW_GROUP_ROWS
        if pending or not rows:
            writer.write_table(pa.concat_tables(out) if out else schema.empty_table(), row_group_size=ROW_GROUP_ROWS)
    return counted.written


def _slices(run, step: int):
    """A run as tables of `step` rows (no copy)."""
    data = run if isinstance(run, pa.Table) else pa.Table.from_batches([run])
    for start in range(0, data.num_rows, step):
        yield data.slice(start, step)


class _CountedWriter:
    """A binary file object passing writes to `handle` and counting their bytes (the staged file's size
    without asking the filesystem, which compiled a glob per file)."""

    def __init__(self, handle):
        self.handle, self.written, self.closed = handle, 0, False

    def write(self, data) -> int:
        self.handle.write(data)
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        self.handle.flush()

    def tell(self) -> int:
        return self.written

    def close(self) -> None:  # the caller closes `handle`
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def _timestamp(iso: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(iso).astimezone(timezone.utc) if iso else None


def document_row(article: Article, ingested_at: datetime, partition_by: str = DEFAULT_PARTITION_BY) -> dict:
    row = {
        "doc_id": article.doc_id, "url": article.url, "source": article.source, "title": article.title,
        "published_at": _timestamp(article.published_at), "lang_prob": article.lang_prob, "text": article.text,
        "n_chars": len(article.text), "n_words": len(article.text.split()), "content_hash": article.content_hash,
        "boilerplate_lines_removed": article.boilerplate_lines_removed, "format": article.format,
        "source_location": article.source_location, "ingested_at": ingested_at,
        "other_langs": list(article.other_langs),
    }
    if in_file_layout(partition_by):
        row["lang"], row["date"] = lang_and_date(article)
    return row


def row_of(table: str, element, ingested_at: datetime, partition_by: str = DEFAULT_PARTITION_BY) -> dict:
    if table == DOCUMENTS:
        return document_row(element, ingested_at, partition_by)
    row = element._asdict()
    row["ingested_at"] = ingested_at
    return {name: row.get(name) for name in SCHEMAS[table].names}


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


GLOB_CHARACTERS = "*?[]"


def check_output_name(output: str) -> None:
    """Raises ValueError when the lake's path holds a character Beam's file systems read as a pattern: every
    file operation of a lake (list, rename, delete) goes through them, and failed there halfway (the write
    probe was left behind, undeletable)."""
    path = output.split("://", 1)[-1]
    if any(ch in path for ch in GLOB_CHARACTERS):
        raise ValueError(f"--output {output!r}: a lake's path cannot hold *, ?, [ or ] (file systems read them as "
                         "patterns); choose another folder name")


def check_output_location(output: str, overwrite: bool, append: bool = False) -> None:
    """Fails fast, before any work: a path with pattern characters (`check_output_name`), a lake already
    there (unless overwriting or appending; an interrupted one
    is named as such, and cannot be appended to), a folder holding `documents/`, `duplicates/` or `rejected/` that is not a wirewash lake (never
    replaced), a `_staging/` folder that wirewash did not make, or a folder that cannot be written
    (read-only, full, under a regular file, /proc...)."""
    check_output_name(output)
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
    """The layout of an append (`--partition_by`: a granularity, or the ingest layout): the lake's own (lakes
    from before `layout` used days); a different one given explicitly (`explicit` holds the flags given) is
    an error."""
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


def read_summary(output: str) -> Optional[dict]:
    """The committed `_SUMMARY.json` of a lake, or None. Raises LakeDamagedError when it is not a JSON object
    or its manifest lists a path outside the lake's tables (`manifest.manifest_problem`): every command that
    writes a lake reads it here, and must never read, write or delete a file the lake does not hold."""
    path = FileSystems.join(output, SUMMARY_FILE)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as handle:
        raw = handle.read()
    try:
        summary = json.loads(raw.decode("utf-8"))
    except ValueError:
        summary = None
    problem = manifest_problem(summary) or leaves_the_lake(output, summary)
    if problem:
        raise LakeDamagedError(f"{path} {problem}: the lake is damaged; nothing was changed")
    return summary


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
# The marker and the staging folder
# ---------------------------------------------------------------------------------------------------------


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
