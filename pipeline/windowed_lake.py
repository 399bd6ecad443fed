"""The lake, written window by window: a stream's Parquet files and its running and final `_SUMMARY.json`.

Records are cut into `--window_seconds` fixed event-time windows and written per window pane into the batch
lake layout (`WriteWindowedLake`). A late record (within the allowed lateness) fires a later pane of its
window, written as a new file: files are named by window, pane and shard, so none is ever overwritten.
Each pane adds its counts (records read, documents, duplicates, rejected, by stage) to a running total kept
in state, and `_SUMMARY.json` is replaced (atomically) after each pane. When the stream has stopped,
`finalize_lake` adds the rows actually found in the committed files and the `reconciled` verdict.
"""
from __future__ import annotations

import json
import posixpath
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Optional, Tuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.coders import PickleCoder
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.value_provider import StaticValueProvider
from apache_beam.transforms import trigger, window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from wirewash.pipeline.ingest import READ
from wirewash.pipeline.ingest import STREAM_NAMESPACE as NAMESPACE
from wirewash.pipeline.lake import (DEFAULT_PARTITION_BY, DOCUMENTS, DUPLICATES, INDEX, REJECTED, STAGING_DIR,
                                    STAGING_MARKER, SUMMARY_FILE, TABLES, _lake_files, _relative, file_schema,
                                    manifest_files, partition_of, row_of, write_parquet)
from wirewash.pipeline.lake_summary import _dedup_settings, _fact_of, summarize, write_summary
from wirewash.pipeline.progress import window_committed
from wirewash.transforms.dedup import DedupConfig
from wirewash.transforms.lake_dedup import index_row

__all__ = ["WriteWindowedLake", "finalize_lake", "staging_of", "file_name", "windowing", "merge_counts"]


def file_name(window_start: float, window_end: float, pane: int, shard: int, shards: int) -> str:
    """`part-<start>-<end>-p<pane>-<shard>-of-<shards>.parquet`: unique per window, pane and shard."""
    fmt = "%Y%m%dT%H%M%SZ"
    start = datetime.fromtimestamp(window_start, timezone.utc).strftime(fmt)
    end = datetime.fromtimestamp(window_end, timezone.utc).strftime(fmt)
    return f"part-{start}-{end}-p{pane:04d}-{shard:03d}-of-{shards:03d}.parquet"


def destination_of(table: str, element, partition_by: str = DEFAULT_PARTITION_BY,
                   ingested_at: Optional[datetime] = None) -> str:
    """The lake folder of one output record (documents are hive-partitioned, the other tables are not)."""
    return posixpath.join(DOCUMENTS, partition_of(element, partition_by, ingested_at)) if table == DOCUMENTS else table


def placed_row(table: str, element, partition_by: str = DEFAULT_PARTITION_BY) -> tuple:
    """(destination, row) of one output record, ingested now (the ingest layout's folder is that UTC day)."""
    now = datetime.now(timezone.utc)
    return destination_of(table, element, partition_by, now), row_of(table, element, now, partition_by)


def merge_counts(total: dict, delta: dict) -> dict:
    """Adds one pane's counts (`read` plus the three tables' fact Counters) to a running total."""
    merged = {READ: total.get(READ, 0) + delta.get(READ, 0)}
    for table in TABLES:
        merged[table] = Counter(total.get(table, Counter())) + Counter(delta.get(table, Counter()))
    return merged


def windowing(window_seconds: float, allowed_lateness: float) -> beam.WindowInto:
    """Fixed event-time windows; on time when the watermark passes, then one pane per late batch."""
    return beam.WindowInto(window.FixedWindows(window_seconds),
                           trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                           accumulation_mode=trigger.AccumulationMode.DISCARDING,
                           allowed_lateness=allowed_lateness)


class _ParquetBatchSink(fileio.FileSink):
    """A FileSink of row batches (lists of dicts) for one table: one Parquet file (zstd) per open()."""

    def __init__(self, table: str, partition_by: str = DEFAULT_PARTITION_BY):
        self.table = table
        self.schema = file_schema(table, partition_by)

    def open(self, fh):
        self._fh, self._rows = fh, []

    def write(self, batch):
        self._rows.extend(batch[1])

    def flush(self):
        if self._rows:
            write_parquet(self.table, pa.Table.from_pylist(self._rows, schema=self.schema), self._fh)
            self._rows = []


class _PaneBatchFn(beam.DoFn):
    """(destination, rows) grouped per window pane -> ('destination#pane', rows). WriteToFiles names files by
    destination and window only, so the pane index travels in the destination (late panes get new names).
    Creates the final folder first: without it the final rename of a nested name fails silently."""

    def __init__(self, output: str):
        self.output = output

    def setup(self):
        self._made = set()

    def process(self, element, pane=beam.DoFn.PaneInfoParam):
        destination, rows = element
        rows = list(rows)
        if destination not in self._made:
            folder = FileSystems.join(self.output, destination)
            if not FileSystems.exists(folder):
                try:
                    FileSystems.mkdirs(folder)
                except IOError:  # created meanwhile by another worker
                    pass
            self._made.add(destination)
        Metrics.counter(NAMESPACE, f"{destination.split('/')[0]}_rows").inc(len(rows))
        yield f"{destination}#{pane.index}", rows


def _final_name(win, pane, shard_index, total_shards, compression, destination):
    folder, _, pane_index = destination.rpartition("#")
    start, end = (float(win.start), float(win.end)) if hasattr(win, "start") else (0.0, 0.0)
    return posixpath.join(folder, file_name(start, end, int(pane_index), shard_index, total_shards))


def _table_of(destination: str) -> str:
    return destination.split("/", 1)[0].split("#", 1)[0]


class _WindowCountsFn(beam.CombineFn):
    """Per-record facts of one window pane -> {read: n, documents/duplicates/rejected: Counter of facts}."""

    def create_accumulator(self):
        return {READ: 0, **{t: Counter() for t in TABLES}}

    def add_input(self, acc, fact):
        if fact[0] == READ:
            acc[READ] += 1
        else:
            acc[fact[0]][fact[1]] += 1
        return acc

    def merge_accumulators(self, accs):
        merged = self.create_accumulator()
        for acc in accs:
            merged = merge_counts(merged, acc)
        return merged

    def extract_output(self, acc):
        return acc


class _RunningSummaryFn(beam.DoFn):
    """Adds each pane's counts to a running total (state) and atomically replaces `_SUMMARY.json`."""

    TOTAL = ReadModifyWriteStateSpec("total", PickleCoder())

    def __init__(self, output: str, staging: str, partition_by: str = DEFAULT_PARTITION_BY):
        self.output = output
        self.staging = staging
        self.partition_by = partition_by

    def process(self, element, total_state=beam.DoFn.StateParam(TOTAL)):
        _, (counts, window_end) = element
        total = total_state.read() or {"counts": {}, "panes": 0, "last_window_end": None}
        total = {"counts": merge_counts(total["counts"], counts), "panes": total["panes"] + 1,
                 "last_window_end": max(window_end, total["last_window_end"] or window_end)}
        total_state.write(total)
        summary = with_layout(streaming_summary(total), self.output, self.partition_by)
        write_summary(self.output, self.staging, summary)
        window_committed(counts, window_end)  # the CLI's line per window (pipeline/progress.py)
        yield summary


def streaming_summary(total: dict) -> dict:
    counts = total["counts"]
    summary = summarize(counts.get(READ, 0), counts.get(DOCUMENTS, Counter()), counts.get(DUPLICATES, Counter()),
                        counts.get(REJECTED, Counter()))
    summary["streaming"] = {
        "panes": total["panes"],
        "last_window_end": datetime.fromtimestamp(total["last_window_end"], timezone.utc).isoformat()
        if total["last_window_end"] is not None else None,
        "final": False,
    }
    return summary


def with_layout(summary: dict, output: str, partition_by: str) -> dict:
    """The lake-format fields of a streaming summary: `layout` and the `files` manifest, listed from the
    committed files (each renamed into place whole by the file sink, so every file listed is whole)."""
    summary["layout"] = {"partition_by": partition_by, "format": 2}
    summary["files"] = manifest_files(output)
    return summary


def _with_window_end(counts, win=beam.DoFn.WindowParam):
    return "summary", (counts, float(win.end))


class WriteWindowedLake(beam.PTransform):
    """{documents, duplicates, rejected, read} (timestamped) -> windowed Parquet files in the lake layout and a
    running `_SUMMARY.json`. Returns the PCollection of running summaries (one per window pane)."""

    def __init__(self, output: str, staging: str, window_seconds: float, allowed_lateness: float,
                 partition_by: str = DEFAULT_PARTITION_BY, dedup: Optional[DedupConfig] = None):
        super().__init__()
        self.dedup = dedup  # given: the documents' dedup index is written too (`_index/`, per window)
        self.output = output.rstrip("/") or output
        self.staging = staging
        self.window_seconds = window_seconds
        self.allowed_lateness = allowed_lateness
        self.partition_by = partition_by

    def expand(self, inputs):
        output, partition_by = self.output, self.partition_by
        facts = [inputs[READ] | "FactRead" >> beam.Map(lambda _: (READ, None))]
        batches = []
        for table in TABLES:
            windowed = inputs[table] | f"Window{table.title()}" >> windowing(self.window_seconds,
                                                                             self.allowed_lateness)
            facts.append(windowed | f"Facts{table.title()}" >> beam.Map(_fact_of(table)))
            batches.append(
                windowed
                | f"Rows{table.title()}" >> beam.Map(lambda e, t=table: placed_row(t, e, partition_by))
                .with_output_types(Tuple[str, Any])
                | f"Group{table.title()}" >> beam.GroupByKey()
                | f"Pane{table.title()}" >> beam.ParDo(_PaneBatchFn(output)))
            if table == DOCUMENTS and self.dedup is not None:  # what a later batch --append dedups against
                batches.append(
                    windowed
                    | "RowsIndex" >> beam.Map(lambda e, config=self.dedup: (INDEX, index_row(e, config)))
                    .with_output_types(Tuple[str, Any])
                    | "GroupIndex" >> beam.GroupByKey()
                    | "PaneIndex" >> beam.ParDo(_PaneBatchFn(output)))
        _ = (
            batches
            | "AllBatches" >> beam.Flatten()
            | "WriteFiles" >> fileio.WriteToFiles(
                path=output, destination=lambda batch: batch[0],
                sink=lambda destination: _ParquetBatchSink(_table_of(destination), partition_by),
                file_naming=_final_name,
                temp_directory=StaticValueProvider(str, FileSystems.join(self.staging, "files")))
        )
        facts[0] = facts[0] | "WindowRead" >> windowing(self.window_seconds, self.allowed_lateness)
        return (
            facts
            | "AllFacts" >> beam.Flatten()
            | "CountPerWindow" >> beam.CombineGlobally(_WindowCountsFn()).without_defaults()
            | "WithWindowEnd" >> beam.Map(_with_window_end).with_output_types(Tuple[str, Any])
            | "Rewindow" >> beam.WindowInto(window.GlobalWindows())
            | "RunningSummary" >> beam.ParDo(_RunningSummaryFn(output, self.staging, partition_by))
        )


def staging_of(output: str, run_id: str) -> str:
    return FileSystems.join(output.rstrip("/") or output, STAGING_DIR, run_id)


def count_file_rows(output: str) -> dict:
    """Rows in the committed Parquet files of each table (from the footers, without reading the data)."""
    rows = {}
    for table in TABLES:
        matched = FileSystems.match([FileSystems.join(output, table, "**.parquet")])[0].metadata_list
        total = 0
        for meta in matched:
            with FileSystems.open(meta.path) as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
        rows[table] = total
    return rows


def leftover_files(staging: str) -> list[str]:
    """Data files still in this run's staging folder: written but never committed (should be none)."""
    try:
        matched = FileSystems.match([FileSystems.join(staging, "**")])[0].metadata_list
    except Exception:
        return []
    return sorted(m.path for m in matched if not posixpath.basename(m.path).startswith(SUMMARY_FILE))


def finalize_lake(output: str, staging: str, partition_by: str = DEFAULT_PARTITION_BY,
                  run: Optional[dict] = None, dedup: Optional[DedupConfig] = None) -> dict:
    """After the stream stopped: checks the committed files against the running counts, writes the final
    `_SUMMARY.json` (`reconciled`, `files_rows`, `streaming.final`), removes the staging folder when empty."""
    path = FileSystems.join(output, SUMMARY_FILE)
    if FileSystems.exists(path):
        with FileSystems.open(path) as handle:
            summary = json.loads(handle.read().decode("utf-8"))
    else:  # nothing arrived: an empty, reconciled lake
        summary = summarize(0, Counter(), Counter(), Counter())
        summary["streaming"] = {"panes": 0, "last_window_end": None}
    for table in TABLES:  # the three tables exist, empty or not
        if not FileSystems.exists(FileSystems.join(output, table)):
            FileSystems.mkdirs(FileSystems.join(output, table))
    summary["files_rows"] = count_file_rows(output)
    with_layout(summary, output, partition_by)
    leftovers = leftover_files(staging)
    summary["streaming"]["final"] = True
    summary["streaming"]["uncommitted_files"] = leftovers
    summary["reconciled"] = bool(
        summary["records_read"] == summary["documents"] + summary["duplicates"] + summary["rejected"]
        and all(summary["files_rows"][t] == summary[t] for t in TABLES) and not leftovers)
    if dedup is not None:  # the dedup index, as batch lakes have it: a batch --append can follow the stream
        index_files = _lake_files(output, INDEX)
        rows = 0
        for path in index_files:
            with FileSystems.open(path) as handle:
                rows += pq.ParquetFile(handle).metadata.num_rows
        summary["index"] = {"files": sorted(_relative(output, p) for p in index_files), "rows": rows,
                            "dedup": _dedup_settings(dedup)}
    if run is not None:  # the lake's `runs`, as batch lakes have it
        summary["runs"] = [dict(run, committed_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
                                **{k: summary[k] for k in ("records_read", "documents", "duplicates", "rejected",
                                                           "reconciled", "files_rows")})]
    write_summary(output, staging, summary)
    if not leftovers:
        try:
            FileSystems.delete([staging])
            parent = FileSystems.join(output, STAGING_DIR)
            left = FileSystems.match([FileSystems.join(parent, "*")])[0].metadata_list
            if all(posixpath.basename(m.path) == STAGING_MARKER for m in left):  # only wirewash's marker
                FileSystems.delete([parent])
        except Exception:  # another run is using the staging parent
            pass
    return summary
