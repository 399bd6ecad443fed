"""A batch run's lake write: whole Parquet files staged, then one commit, so readers never see a partial run.

How a run commits: workers write whole Parquet files into `LAKE/_staging/<run>/` (named `*.parquet.staged`)
and report them; once all are written, one commit step moves exactly the reported files into place (files
of retried bundles are never reported, so never committed), writes `_SUMMARY.json` and removes the staging
folder. `_SUMMARY.json` is the commit point: its `files` lists exactly the committed Parquet files of each
table, and readers that build their views from it see one run (or one append) whole or not at all.
A run adds at most one file per partition (more only past MERGE_MAX_BYTES): workers write per bundle, then
the files of one partition are merged (`_MergeStagedFn`). An append adds its files and then swaps the
summary; files a killed append moved in are not in the manifest, and the next append deletes them before its
own move. The lake's layout, schemas and folder rules: pipeline/lake.py; its summary: pipeline/lake_summary.py.
"""
from __future__ import annotations

import posixpath
import sys
import threading
import uuid
import weakref
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any, NamedTuple, Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from wirewash.pipeline.lake import (DEFAULT_PARTITION_BY, DOCUMENTS, DUPLICATES, INDEX, MERGE_MAX_BYTES, REJECTED,
                                    RENAME_BATCH, REPORT_FILE, STAGING_DIR, SUMMARY_FILE, TABLES,
                                    LakeExistsError, _existing, _lake_files, _not_a_lake, _relative, _write_marker,
                                    file_schema, is_lake, partition_of, read_summary, remove_lake, remove_staging, row_of,
                                    sort_order, valid_partition, write_parquet, write_sorted_runs)
from wirewash.pipeline.lake_summary import (_dedup_settings, _fact_of, _SummaryFn, _violation_facts, lake_summary,
                                            summarize, unread_input, write_summary)
from wirewash.pipeline import writer_lock
from wirewash.pipeline.lifetime import claim
from wirewash.transforms.dedup import DedupConfig
from wirewash.transforms.lake_dedup import index_row, index_row_of, read_index_ids
from wirewash.transforms.packed import CoGroupByKeyPacked, ListPacked, unpack_list
from wirewash.transforms.spill import Spill

__all__ = ["WriteLake", "commit", "merge_groups", "StagedFile", "remove_orphans", "held_bytes", "WriterBudget"]


NAMESPACE = "write"


class StagedFile(NamedTuple):
    table: str
    partition: str  # "", "lang=xx/date=<period>" or "ingest_date=<day>"
    path: str
    rows: int
    size: int = 0  # bytes of the Parquet file


# Staged files end in `.parquet.staged`: no `*.parquet` glob (DuckDB's `lake/**/*.parquet` included) ever
# matches a file that is still being written, or that a killed run left behind. The commit drops the suffix.
STAGED_SUFFIX = ".staged"
MAX_ROWS_PER_FILE = 50_000
MAX_BYTES_PER_FILE = 128 << 20
MAX_BUFFERED_BYTES = 64 << 20  # all writers of one process together (memory stays flat in the corpus size)
BATCH_ROWS = 256  # rows of a partition kept as Python dicts before they are packed into one Arrow record batch


def _ensure_dir(path: str, fs=FileSystems) -> None:
    """mkdirs that tolerates a concurrent worker creating the same folder first (multi-process runs), or an
    existing one: one call for a new folder, not an `exists` before each."""
    try:
        fs.mkdirs(path)
    except IOError:
        if not fs.exists(path):
            raise


class _Rows:
    """One partition's buffered rows: every BATCH_ROWS rows packed into an Arrow record batch in the lake's
    order (compact, and outside the Python heap, where thousands of freed sketches and texts left holes that
    kept RSS up), the rows since then as Python dicts. `held` is the memory they keep: the batches' buffers
    and `held_bytes` of each unpacked row. Written out by merging the sorted batches (`write_sorted_runs`)."""

    __slots__ = ("batches", "pending", "count", "packed", "unpacked")

    def __init__(self):
        self.batches, self.pending, self.count, self.packed, self.unpacked = [], [], 0, 0, 0

    @property
    def held(self) -> int:
        return self.packed + self.unpacked

    def add(self, row: dict, table: str, schema: pa.Schema) -> int:
        """Buffers `row`; returns how much `held` grew (negative when packing freed more than the row)."""
        before = self.held
        self.pending.append(row)
        self.unpacked += held_bytes(row)
        self.count += 1
        if len(self.pending) >= BATCH_ROWS:
            self._pack(table, schema)
        return self.held - before

    def _pack(self, table: str, schema: pa.Schema) -> None:
        batch = pa.RecordBatch.from_pylist(self.pending, schema=schema)
        batch = batch.take(sort_order(table, batch))
        self.batches.append(batch)
        self.packed += batch.nbytes
        self.pending, self.unpacked = [], 0

    def runs(self, table: str, schema: pa.Schema) -> list:
        """The rows as sorted record batches (released from this buffer)."""
        if self.pending:
            self._pack(table, schema)
        batches, self.batches = self.batches, []
        return batches


class WriterBudget:
    """The bytes that the lake writers of one process buffer, counted together: each writer adds here what its
    buffers hold (`_Rows.held`), and `over()` says when the total reaches `limit` (default MAX_BUFFERED_BYTES,
    read when used). A writer's count goes with it (weak references): a bundle that failed leaves nothing.

    The rule (`_WriteStagedFn.process`): a writer whose row brings the total to the limit flushes its own
    buffers, biggest first, until the total is under half the limit or it holds nothing; a writer can only
    write its own rows (it yields from its own `process`). The bound holds by construction: if the total was
    under the limit before the row, then either the writer brings it under half, or it empties itself and the
    total is what the other writers held before, under the limit too. So the writers of a process hold at
    most the limit plus the row being added, whatever the corpus; before, each writer had the limit of its
    own, and a worker's route stage (documents, duplicates, rejected and index writers fused) held up to
    four times it. Thread-safe (the SDK harness can run bundles in several threads): while one writer
    flushes, the others that add see the total still high and flush too (smaller files, merged again by
    `_MergeStagedFn`), so the total stays within the limit plus one row per writer adding at that time."""

    def __init__(self, limit: Optional[int] = None):
        self.limit = limit
        self._lock = threading.Lock()
        self._held = weakref.WeakKeyDictionary()  # writer -> bytes its buffers hold
        self.peak = 0  # the highest total since `take_peak` (measurement: pipeline/worker.py)

    def add(self, writer, grown: int) -> None:
        with self._lock:
            self._held[writer] = self._held.get(writer, 0) + grown
            total = sum(self._held.values())
            self.peak = max(self.peak, total)

    def forget(self, writer) -> None:
        """`writer` holds nothing (a new bundle: the buffers of one that failed are gone)."""
        with self._lock:
            self._held.pop(writer, None)

    @property
    def held(self) -> int:
        with self._lock:
            return sum(self._held.values())

    def over(self, fraction: float = 1.0) -> bool:
        """Whether the total has reached `fraction` of the limit."""
        limit = MAX_BUFFERED_BYTES if self.limit is None else self.limit
        return self.held >= limit * fraction

    def take_peak(self) -> int:
        """The highest total since the last call (then reset to the total now)."""
        with self._lock:
            peak, self.peak = self.peak, sum(self._held.values())
        return peak


BUDGET = WriterBudget()  # this process's: every writer in it shares it (`_WriteStagedFn.setup`)


class _WriteStagedFn(beam.DoFn):
    """Buffers rows per (table, partition) and writes whole Parquet files into the staging folder; emits one
    StagedFile per file written, only when the bundle that wrote it completes. The rows that all the writers
    of a process hold stay within MAX_BUFFERED_BYTES (real memory: `_Rows.held`, counted in the process's
    `WriterBudget`), and a file is streamed out (`write_sorted_runs`). Its ParDos declare their output type
    (`Any`, what Beam infers anyway), so that Beam does not infer it at graph building by walking the bytecode
    of `process` and of what it calls."""

    def __init__(self, table: str, staging: str, ingested_at: str, partition_by: str = DEFAULT_PARTITION_BY):
        self.table = table
        self.staging = staging
        self.ingested_at = ingested_at
        self.partition_by = partition_by

    def setup(self):
        self.schema = file_schema(self.table, self.partition_by)
        self.ingested = datetime.fromisoformat(self.ingested_at)
        self.folder_ready = False
        self.budget = BUDGET  # set here, not pickled: one per process, shared by every writer in it

    def start_bundle(self):
        self.buffers = defaultdict(_Rows)
        self.held = 0  # bytes of all partitions' buffers
        self.budget.forget(self)

    def process(self, element):
        partition = partition_of(element, self.partition_by, self.ingested) if self.table == DOCUMENTS else ""
        row = element if self.table == INDEX else row_of(self.table, element, self.ingested, self.partition_by)
        buffer = self.buffers[partition]
        grown = buffer.add(row, self.table, self.schema)
        self.held += grown
        self.budget.add(self, grown)
        if buffer.count >= MAX_ROWS_PER_FILE or buffer.held >= MAX_BYTES_PER_FILE:
            yield self._flush(partition)
        if self.budget.over():
            # The process's writers together, many small partitions included, could hold a worker's whole
            # share of the corpus: this writer writes its biggest buffers first (fewer, larger files;
            # `_MergeStagedFn` joins them again) until the total is under half the budget or it holds nothing
            # (why that bounds the total: `WriterBudget`).
            for biggest in sorted(self.buffers, key=lambda p: -self.buffers[p].held):
                yield self._flush(biggest)
                if not self.budget.over(0.5):
                    break

    def finish_bundle(self):
        for partition in list(self.buffers):
            if self.buffers[partition].count:
                yield WindowedValue(self._flush(partition), MIN_TIMESTAMP, [GlobalWindow()])

    def _flush(self, partition: str) -> StagedFile:
        buffer = self.buffers.pop(partition)
        held = buffer.held
        if not self.folder_ready:
            _ensure_dir(FileSystems.join(self.staging, self.table))
            self.folder_ready = True
        runs, table, schema = buffer.runs(self.table, self.schema), self.table, self.schema
        staged = _write_staged(table, partition, self.staging, buffer.count,
                               lambda handle: write_sorted_runs(table, runs, schema, handle))
        self.held -= held  # released once written: until then the rows are still in memory
        self.budget.add(self, -held)
        Metrics.counter(NAMESPACE, f"{self.table}_rows").inc(buffer.count)
        Metrics.counter(NAMESPACE, f"{self.table}_files").inc()
        return staged


def merged_facts(*per_table) -> dict:
    """The tables' fact counts, from one side input per table holding at most one {table: Counter} (none
    for a table without rows) -> {table: Counter} over all, the tables without rows empty."""
    return _SummaryFn().merge_accumulators([counts for side in per_table for counts in side])


class _AddUpFn(beam.CombineFn):
    """(name, count) pairs -> {name: total}: the violation counts in one combine (a per-key sum and then a
    dict were two, each a stage of the local runner and a round trip to every worker)."""

    def create_accumulator(self):
        return Counter()

    def add_input(self, acc, pair):
        acc[pair[0]] += pair[1]
        return acc

    def merge_accumulators(self, accs):
        return sum(accs, Counter())

    def extract_output(self, acc):
        return dict(acc)


def held_bytes(row) -> int:
    """Memory a buffered row keeps alive: the row and each of its values (a str of non-ASCII text takes 2-4
    bytes a character, an index row its signature and sketch), what `MAX_BUFFERED_BYTES` bounds. Counting
    only a document's text length and 200 bytes an index row let a worker hold its whole share of the index
    and several times the bound in documents until its bundle ended (memory grew with the corpus)."""
    values = row.values() if isinstance(row, dict) else row
    return sys.getsizeof(row) + sum(sys.getsizeof(value) for value in values)


def _write_staged(table: str, partition: str, staging: str, rows: int, write) -> StagedFile:
    """Writes one staged file through `write(handle) -> bytes written` (`write_parquet` of a table, or
    `write_sorted_runs` of a writer's sorted batches: both streamed, the size counted on the way) and
    describes it. One flat folder per table: a partition is a prefix of the name, not two more folders to
    create and to remove after the commit."""
    prefix = partition.replace("/", "__") + "__" if partition else ""
    path = FileSystems.join(staging, table, f"{prefix}part-{uuid.uuid4().hex}.parquet{STAGED_SUFFIX}")
    with FileSystems.create(path) as handle:
        size = write(handle)
    return StagedFile(table, partition, path, rows, size)


def _write_staged_table(table: str, partition: str, staging: str, data: pa.Table) -> StagedFile:
    """`_write_staged` of a whole table (sorted, see `write_parquet`)."""
    return _write_staged(table, partition, staging, data.num_rows, lambda handle: write_parquet(table, data, handle))


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


def _partition_key(staged: StagedFile) -> tuple:
    return f"{staged.table}/{staged.partition}", tuple(staged)


class _MergeStagedFn(beam.DoFn):
    """(table/partition, staged files) -> the files of that partition, those written by several bundles or
    workers merged into one (re-sorted), so a run adds one file per partition (more only past
    MERGE_MAX_BYTES / MAX_ROWS_PER_FILE). The dedup index's files are kept as staged: an append reads them
    whole, so their number does not matter, and a group of them is up to MERGE_MAX_BYTES of incompressible
    sketches held at once with a sorted copy (with the writers' one budget per process its staged files are
    smaller than that bound, and their merge became the workers' peak at 300,000 records: +174 MB over the
    stage). A retried merge writes new names; only emitted files are committed."""

    def __init__(self, staging: str):
        self.staging = staging

    def process(self, element):
        """`element`: (table/partition, {"files": [StagedFile fields, ...]}), as `CoGroupByKeyPacked` groups."""
        files = [StagedFile(*f) for f in element[1]["files"]]
        for group in [[f] for f in files] if element[0].startswith(f"{INDEX}/") else merge_groups(files):
            if len(group) == 1:
                yield group[0]
                continue
            parts = []
            for item in group:
                with FileSystems.open(item.path) as handle:
                    parts.append(pq.read_table(handle))
            merged = pa.concat_tables(parts)
            Metrics.counter(NAMESPACE, "merged_files").inc(len(group))
            yield _write_staged_table(group[0].table, group[0].partition, self.staging, merged)


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
        remove_orphans(output, previous)
    written = Counter()
    invalid_partitions = sum(1 for item in staged if item.table == DOCUMENTS and not valid_partition(item.partition))
    sources, targets = [], []
    files = {t: list((previous or {}).get("files", {}).get(t, [])) for t in TABLES}
    files[INDEX] = list((previous or {}).get("index", {}).get("files", []))
    fs = FileSystems.get_filesystem(output)  # once: `FileSystems` looks the scheme up again on every call
    for item in staged:
        folder = posixpath.join(item.table, item.partition) if item.partition else item.table
        name = posixpath.basename(item.path).removesuffix(STAGED_SUFFIX).rpartition("__")[2]
        sources.append(item.path)
        targets.append(fs.join(output, folder, name))
        files[item.table].append(posixpath.join(folder, name))
        written[item.table] += item.rows
    for target_dir in sorted({posixpath.dirname(t) for t in targets} | {fs.join(output, t) for t in TABLES}):
        _ensure_dir(target_dir, fs)  # the three tables always exist, empty or not
    for start in range(0, len(sources), RENAME_BATCH):  # one call per batch: object stores rename in batches
        fs.rename(sources[start:start + RENAME_BATCH], targets[start:start + RENAME_BATCH])
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
    writer_lock.release(output, (run or {}).get("run_id", ""))  # taken when the run was built (build.py)
    if append:  # the report described the lake before this run
        report = FileSystems.join(output, REPORT_FILE)
        if FileSystems.exists(report):
            FileSystems.delete([report])
    remove_staging(output)
    return summary


def remove_orphans(output: str, previous: dict) -> None:
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


class WriteLake(beam.PTransform):
    """{documents, duplicates, rejected} PCollections + the count of records read -> a committed lake.

    Returns a PCollection holding the one summary dict. `run` (a dict: run id, version, options, inputs,
    start time) is recorded in the summary's `runs`, with the commit time. `spill` is where the packed ids and
    staged files wait for their shuffles (`transforms/packed.py`; default: inline).
    """

    def __init__(self, output: str, ingested_at: str, overwrite: bool = False, run_id: Optional[str] = None,
                 partition_by: str = DEFAULT_PARTITION_BY, append: bool = False, run: Optional[dict] = None,
                 dedup: Optional[DedupConfig] = None, lake_index: tuple = (), spill: Optional[Spill] = None):
        super().__init__()
        self.spill = spill or Spill()
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
                _WriteStagedFn(table, self.staging, self.ingested_at, self.partition_by)).with_output_types(Any))
            # counted where the rows are (the combine runs before the shuffle): only one small dict per table
            # and bundle crosses to the summary, not one fact per record
            facts.append(pcoll | f"Facts{table.title()}" >> beam.Map(_fact_of(table))
                         | f"Count{table.title()}Facts" >> beam.CombineGlobally(_SummaryFn()).without_defaults())
        if self.dedup is not None:
            # the batch dedup stage's own fingerprints when it hands them (`dedup_index`), else computed again
            if inputs.get("dedup_index") is not None:
                rows = inputs["dedup_index"] | "IndexRows" >> beam.Map(index_row_of)
            else:
                rows = inputs[DOCUMENTS] | "IndexRows" >> beam.Map(index_row, self.dedup)
            staged.append(rows
                          | "StageIndex" >> beam.ParDo(_WriteStagedFn(INDEX, self.staging, self.ingested_at))
                          .with_output_types(Any))
        # Invariants on ids: only the keys are shuffled, never the texts.
        ids = {"docs": inputs[DOCUMENTS] | "DocIds" >> beam.Map(lambda a: (a.doc_id, 1)),
               "dups": inputs[DUPLICATES] | "DuplicateOf" >> beam.Map(lambda d: (d.duplicate_of, 1))}
        if self.lake_index:
            ids["lake"] = (inputs[DOCUMENTS].pipeline | "LakeIndexFiles" >> beam.Create(list(self.lake_index))
                           | "LakeIds" >> beam.FlatMap(read_index_ids) | "LakeIdKeys" >> beam.Map(lambda i: (i, 1)))
        violations = (
            ids
            | "JoinIds" >> CoGroupByKeyPacked(spill=self.spill)  # nearly every id unique: packed per bundle and shard
            | "Violations" >> beam.FlatMap(_violation_facts)
            | "CountViolations" >> beam.CombineGlobally(_AddUpFn()).without_defaults())
        output, staging, overwrite, spill = self.output, self.staging, self.overwrite, self.spill
        options = {"partition_by": self.partition_by, "append": self.append, "run": self.run, "dedup": self.dedup}
        removed_lines = inputs.get("removed_lines")
        if removed_lines is None:
            removed_lines = inputs[DOCUMENTS].pipeline | "NoRemovedLines" >> beam.Create([{}])
        tallies = inputs.get("read_tallies")
        if tallies is None:
            tallies = inputs[DOCUMENTS].pipeline | "NoTallies" >> beam.Create([])
        unread = tallies | "UnreadInput" >> beam.FlatMap(lambda tally: unread_input([tally]))
        # one element per staged file would cross twice (the Flatten, the grouping): packed per bundle instead
        by_partition = tuple(files | f"ByPartition{i or ''}" >> beam.Map(_partition_key)
                             for i, files in enumerate(staged))
        return (
            {"files": by_partition}
            | "GroupByPartition" >> CoGroupByKeyPacked(spill=self.spill)
            | "MergeSmallFiles" >> beam.ParDo(_MergeStagedFn(staging))
            # one element even with nothing staged (the commit runs): tokens of the parked lists of files, so
            # the list (one entry per file: 70,000 at 1M records) never waits in the launcher
            | "ListStaged" >> ListPacked(spill=spill)
            # The side inputs come as the combines left them, without default values (a default costs
            # the local runner one more stage each): the tables' facts one list each, no violation no dict.
            | "Commit" >> beam.Map(
                lambda files, read, bad, lines, tallied, *facts: commit(unpack_list(files, spill), output, staging,
                                                                        merged_facts(*facts), read, overwrite, bad,
                                                                        lines, tallied, **_with_end(options)),
                beam.pvalue.AsSingleton(inputs["records_read"]), beam.pvalue.AsSingleton(violations, default_value={}),
                beam.pvalue.AsSingleton(removed_lines, default_value={}), beam.pvalue.AsList(unread),
                *[beam.pvalue.AsList(table_facts) for table_facts in facts])
        )


def _with_end(options: dict) -> dict:
    run = dict(options["run"], committed_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat())
    return {**options, "run": run}
