"""The lake, written window by window: a stream's Parquet files and its running and final `_SUMMARY.json`.

Records are cut into `--window_seconds` fixed event-time windows and written per window pane into the batch
lake layout (`WriteWindowedLake`). A late record (within the allowed lateness) fires a later pane of its
window, written as a new file: files are named by window, pane and shard, so none is ever overwritten.
Each pane is committed like a small batch append: its files are written whole into the run's staging folder
(in parallel, per destination), then one step moves them into the lake and only then replaces
`_SUMMARY.json` (atomically) with one whose counts are exactly the committed rows and whose `files` list them:
a reader never sees the summary ahead of the files, and a pane appears whole or not at all. A stream with
`--append` carries on the summary of the lake it joins. When the stream has stopped, `finalize_lake` adds the
rows actually found in the listed files and the `reconciled` verdict.
"""
from __future__ import annotations

import posixpath
from collections import Counter
from datetime import datetime, timezone
from typing import Any, NamedTuple, Optional, Tuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.coders import PickleCoder
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from wirewash.pipeline.ingest import READ
from wirewash.pipeline.ingest import STREAM_NAMESPACE as NAMESPACE
from wirewash.pipeline import writer_lock
from wirewash.pipeline.lake import (DEFAULT_PARTITION_BY, DOCUMENTS, DUPLICATES, INDEX, RENAME_BATCH, REJECTED,
                                    STAGING_DIR, STAGING_MARKER, SUMMARY_FILE, TABLES, _lake_files, _relative, file_schema,
                                    partition_of, read_summary, row_of, write_parquet)
from wirewash.pipeline.lake_summary import _dedup_settings, _fact_of, lake_summary, summarize, write_summary
from wirewash.pipeline.lake_write import MAX_ROWS_PER_FILE, STAGED_SUFFIX
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


def _placed_with_fact(table: str, element, partition_by: str) -> tuple:
    """(destination, (row, fact)) of one output record: the fact is what the pane's counts add up."""
    destination, row = placed_row(table, element, partition_by)
    return destination, (row, _fact_of(table)(element)[1])


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


class PaneFile(NamedTuple):
    """One staged file of a window pane (or, for READ, the pane's count of records read, no file): what the
    pane's commit moves into the lake, with the facts of exactly its rows (so counts travel with files)."""

    table: str  # documents, duplicates, rejected, _index; or READ
    rel: str  # its path in the lake, relative to the lake ("" for READ)
    staged: str  # where it was written ("" for READ)
    rows: int  # rows in the file (records read, for READ)
    facts: tuple = ()  # ((fact, count), ...) of its rows, as `_fact_of` makes them (none for the index)


def _chunks(items: list, size: int) -> list:
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


class _StagePaneFn(beam.DoFn):
    """(destination, [(row, fact)]) grouped per window pane -> PaneFile(s): the pane's rows of one destination
    written into the run's staging folder as whole Parquet files (named by window, pane and shard; more than
    one only past MAX_ROWS_PER_FILE rows), each described with its rows' facts. Nothing reaches the lake
    here: the pane's commit (`_CommitPaneFn`) moves the files in, then writes the summary counting them."""

    def __init__(self, staging: str, partition_by: str = DEFAULT_PARTITION_BY):
        self.staging = staging
        self.partition_by = partition_by

    def setup(self):
        self._folder = FileSystems.join(self.staging, "files")
        self._ready = False

    def process(self, element, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        destination, items = element
        items = list(items)
        table = destination.split("/", 1)[0]
        start, end = (float(win.start), float(win.end)) if hasattr(win, "start") else (0.0, 0.0)
        if not self._ready:
            if not FileSystems.exists(self._folder):
                try:
                    FileSystems.mkdirs(self._folder)
                except IOError:  # created meanwhile by another worker
                    pass
            self._ready = True
        chunks = _chunks(items, MAX_ROWS_PER_FILE)
        for shard, chunk in enumerate(chunks):
            rel = posixpath.join(destination, file_name(start, end, pane.index, shard, len(chunks)))
            # deterministic: a retried bundle rewrites the same staged file, never a second one
            staged = FileSystems.join(self._folder, rel.replace("/", "__") + STAGED_SUFFIX)
            with FileSystems.create(staged) as handle:
                write_parquet(table, pa.Table.from_pylist([row for row, _ in chunk], schema=file_schema(table, self.partition_by)),
                              handle)
            Metrics.counter(NAMESPACE, f"{table}_rows").inc(len(chunk))
            facts = Counter(fact for _, fact in chunk if fact is not None)
            yield PaneFile(table, rel, staged, len(chunk), tuple(facts.items()))


def _count_read(n: int) -> PaneFile:
    return PaneFile(READ, "", "", n)


def pane_counts(files) -> dict:
    """The counts of a pane's PaneFiles: {read: n, documents/duplicates/rejected: Counter of facts}."""
    counts = {READ: 0, **{t: Counter() for t in TABLES}}
    for item in files:
        if item.table == READ:
            counts[READ] += item.rows
        elif item.table in TABLES:
            counts[item.table].update(dict(item.facts))
    return counts


def move_in(output: str, files) -> None:
    """Renames a pane's staged files into the lake (their folders made first: Beam's local rename does not
    make them). Idempotent: a file already moved by an earlier attempt of the same commit is skipped; a staged
    file missing with no target is an error (its rows would be counted but lost)."""
    sources, targets = [], []
    for item in files:
        if item.table == READ:
            continue
        target = FileSystems.join(output, item.rel)
        if FileSystems.exists(item.staged):
            sources.append(item.staged)
            targets.append(target)
        elif not FileSystems.exists(target):
            raise IOError(f"staged file {item.staged} is missing: the window cannot be committed")
    for folder in sorted({posixpath.dirname(t) for t in targets}):
        if not FileSystems.exists(folder):
            try:
                FileSystems.mkdirs(folder)
            except IOError:
                if not FileSystems.exists(folder):
                    raise
    for start in range(0, len(sources), RENAME_BATCH):
        FileSystems.rename(sources[start:start + RENAME_BATCH], targets[start:start + RENAME_BATCH])


def _new_total() -> dict:
    return {"counts": {}, "panes": 0, "last_window_end": None, "files": {t: [] for t in TABLES + (INDEX,)},
            "rows": {t: 0 for t in TABLES + (INDEX,)}}


def add_pane(total: dict, files, window_end: float) -> dict:
    """The stream's running total after one committed pane: counts, panes, last window end, its files and
    their rows per table (index included)."""
    listed = {t: list(total["files"][t]) for t in total["files"]}
    rows = dict(total["rows"])
    for item in files:
        if item.table != READ:
            listed[item.table].append(item.rel)
            rows[item.table] += item.rows
    return {"counts": merge_counts(total["counts"], pane_counts(files)), "panes": total["panes"] + 1,
            "last_window_end": max(window_end, total["last_window_end"] or window_end), "files": listed,
            "rows": rows}


def stream_lake_summary(previous: Optional[dict], total: dict, partition_by: str, run: Optional[dict],
                        dedup: Optional[DedupConfig]) -> dict:
    """The lake's `_SUMMARY.json` while a stream writes it: the stream's counts (its committed panes only) added
    to the lake it appends to (`previous`, None for a new lake), `files` listing exactly the committed files,
    the index, `layout` and `runs` (this stream's record carrying its counts so far)."""
    run_summary = streaming_summary(total)
    run_summary["files_rows"] = {t: total["rows"][t] for t in TABLES}
    run_summary["ok"] = run_summary["reconciled"]
    run_summary["invariants"] = {"reconciled": run_summary["reconciled"]}
    before = (previous or {}).get("files", {})
    files = {t: list(before.get(t, [])) + total["files"][t] for t in TABLES}
    record = None
    if run is not None:
        record = dict(run, committed_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat())
    summary = lake_summary(previous, run_summary, files, partition_by, record)
    if record is None:  # a stream written without a run record (a test, a library user): no entry in `runs`
        summary["runs"] = list((previous or {}).get("runs", []))
    if dedup is not None:
        index = (previous or {}).get("index", {})
        summary["index"] = {"files": sorted(list(index.get("files", [])) + total["files"][INDEX]),
                            "rows": index.get("rows", 0) + total["rows"][INDEX], "dedup": _dedup_settings(dedup)}
    return summary


class _CommitPaneFn(beam.DoFn):
    """One window pane's commit, in the order readers need: its staged files are moved into the lake, then
    `_SUMMARY.json` is replaced (atomically) by one that counts exactly those rows and lists those files. A
    reader of the summary never counts a row whose file is not in place; one that takes its file list from the
    summary (`wirewash query`) sees a pane whole or not at all. The running total is kept in state."""

    TOTAL = ReadModifyWriteStateSpec("total", PickleCoder())

    def __init__(self, output: str, staging: str, partition_by: str = DEFAULT_PARTITION_BY,
                 dedup: Optional[DedupConfig] = None, previous: Optional[dict] = None, run: Optional[dict] = None):
        self.output = output
        self.staging = staging
        self.partition_by = partition_by
        self.dedup = dedup
        self.previous = previous
        self.run = run

    def process(self, element, total_state=beam.DoFn.StateParam(TOTAL)):
        _, (files, window_end) = element
        files = list(files)
        move_in(self.output, files)
        total = add_pane(total_state.read() or _new_total(), files, window_end)
        total_state.write(total)
        summary = stream_lake_summary(self.previous, total, self.partition_by, self.run, self.dedup)
        write_summary(self.output, self.staging, summary)
        window_committed(pane_counts(files), window_end)  # the CLI's line per window (pipeline/progress.py)
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


def _with_window_end(files, win=beam.DoFn.WindowParam):
    _, grouped = files
    return "lake", (list(grouped), float(win.end))


class WriteWindowedLake(beam.PTransform):
    """{documents, duplicates, rejected, read} (timestamped) -> windowed Parquet files in the lake layout and a
    running `_SUMMARY.json`. Returns the PCollection of running summaries (one per committed pane).

    Per window pane, each destination's rows are written in parallel into the staging folder; the pane's file
    descriptions (with the facts of their rows) and its count of records read then meet in one commit, which
    moves the files in and only then writes the summary. `previous`: the summary of the lake a stream appends
    to (its counts, files, index and runs are carried on); `run`: this stream's record for `runs`."""

    def __init__(self, output: str, staging: str, window_seconds: float, allowed_lateness: float,
                 partition_by: str = DEFAULT_PARTITION_BY, dedup: Optional[DedupConfig] = None,
                 previous: Optional[dict] = None, run: Optional[dict] = None):
        super().__init__()
        self.dedup = dedup  # given: the documents' dedup index is written too (`_index/`, per window)
        self.output = output.rstrip("/") or output
        self.staging = staging
        self.window_seconds = window_seconds
        self.allowed_lateness = allowed_lateness
        self.partition_by = partition_by
        self.previous = previous
        self.run = run

    def expand(self, inputs):
        partition_by = self.partition_by
        described = [inputs[READ]
                     | "WindowRead" >> windowing(self.window_seconds, self.allowed_lateness)
                     | "CountRead" >> beam.CombineGlobally(beam.combiners.CountCombineFn()).without_defaults()
                     | "DescribeRead" >> beam.Map(_count_read)]
        for table in TABLES:
            windowed = inputs[table] | f"Window{table.title()}" >> windowing(self.window_seconds,
                                                                             self.allowed_lateness)
            described.append(
                windowed
                | f"Rows{table.title()}" >> beam.Map(lambda e, t=table: _placed_with_fact(t, e, partition_by))
                .with_output_types(Tuple[str, Any])
                | f"Group{table.title()}" >> beam.GroupByKey()
                | f"Stage{table.title()}" >> beam.ParDo(_StagePaneFn(self.staging, partition_by)))
            if table == DOCUMENTS and self.dedup is not None:  # what a later --append dedups against
                described.append(
                    windowed
                    | "RowsIndex" >> beam.Map(lambda e, config=self.dedup: (INDEX, (index_row(e, config), None)))
                    .with_output_types(Tuple[str, Any])
                    | "GroupIndex" >> beam.GroupByKey()
                    | "StageIndex" >> beam.ParDo(_StagePaneFn(self.staging, partition_by)))
        return (
            described
            | "AllPaneFiles" >> beam.Flatten()
            | "OneKey" >> beam.Map(lambda item: ("lake", item)).with_output_types(Tuple[str, Any])
            | "PerPane" >> beam.GroupByKey()
            | "WithWindowEnd" >> beam.Map(_with_window_end).with_output_types(Tuple[str, Any])
            | "Rewindow" >> beam.WindowInto(window.GlobalWindows())
            | "CommitPane" >> beam.ParDo(_CommitPaneFn(self.output, self.staging, partition_by, self.dedup,
                                                       self.previous, self.run))
        )


def staging_of(output: str, run_id: str) -> str:
    return FileSystems.join(output.rstrip("/") or output, STAGING_DIR, run_id)


def count_file_rows(output: str, files: dict) -> dict:
    """Rows in the listed Parquet files of each table (from the footers, without reading the data); a listed
    file that is missing counts nothing (the totals then disagree with the summary's counts)."""
    rows = {}
    for table in TABLES:
        total = 0
        for rel in files.get(table, []):
            path = FileSystems.join(output, rel)
            if FileSystems.exists(path):
                with FileSystems.open(path) as handle:
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


def _unrecorded_panes(summary: dict) -> bool:
    """Whether the summary holds panes of a running stream (not finalized) that no record in `runs` counts:
    with one writer per lake, those of the stream now finishing, committed without a run record."""
    streaming = summary.get("streaming")
    return (isinstance(streaming, dict) and not streaming.get("final") and streaming.get("panes", 0) > 0
            and _unrecorded_counts(summary)["records_read"] > 0)


def _unrecorded_counts(summary: dict) -> dict:
    """The lake's counts that no record in `runs` accounts for: those of panes committed without a record."""
    runs = summary.get("runs", [])
    return {k: summary.get(k, 0) - sum(r.get(k, 0) for r in runs)
            for k in ("records_read", "documents", "duplicates", "rejected")}


def finalize_lake(output: str, staging: str, partition_by: str = DEFAULT_PARTITION_BY,
                  run: Optional[dict] = None, dedup: Optional[DedupConfig] = None) -> dict:
    """After the stream stopped: checks the files the summary lists against its counts, writes the final
    `_SUMMARY.json` (`reconciled`, `files_rows`, `streaming.final`, this run's record in `runs`), removes the
    staging folder when nothing was left in it, and releases the lake's writer lock."""
    summary = read_summary(output)
    run_id = (run or {}).get("run_id")
    mine = next((r for r in (summary or {}).get("runs", []) if run_id and r.get("run_id") == run_id), None)
    if summary is None or (run is not None and mine is None and not _unrecorded_panes(summary)):
        # no pane committed by this stream
        summary = stream_lake_summary(summary, _new_total(), partition_by, run, dedup)
        mine = summary["runs"][-1] if run is not None else None
    elif run is not None and mine is None:  # its panes were committed without a record: it joins `runs` now
        mine = dict(run, **_unrecorded_counts(summary))
        summary["runs"] = list(summary.get("runs", [])) + [mine]
    for table in TABLES:  # the three tables exist, empty or not
        if not FileSystems.exists(FileSystems.join(output, table)):
            FileSystems.mkdirs(FileSystems.join(output, table))
    summary.setdefault("files", {t: [] for t in TABLES})
    summary["layout"] = {"partition_by": partition_by, "format": 2}
    summary["files_rows"] = count_file_rows(output, summary["files"])
    leftovers = leftover_files(staging)
    summary.setdefault("streaming", {"panes": 0, "last_window_end": None})
    summary["streaming"]["final"] = True
    summary["streaming"]["uncommitted_files"] = leftovers
    summary["reconciled"] = bool(
        summary.get("reconciled", True)
        and summary["records_read"] == summary["documents"] + summary["duplicates"] + summary["rejected"]
        and all(summary["files_rows"][t] == summary[t] for t in TABLES) and not leftovers)
    summary["ok"] = bool(summary.get("ok", True)) and summary["reconciled"]
    if isinstance(summary.get("invariants"), dict):
        summary["invariants"]["reconciled"] = summary["reconciled"]
    if dedup is not None and "index" not in summary:  # a lake from before the running index
        index_files = _lake_files(output, INDEX)
        rows = 0
        for path in index_files:
            with FileSystems.open(path) as handle:
                rows += pq.ParquetFile(handle).metadata.num_rows
        summary["index"] = {"files": sorted(_relative(output, p) for p in index_files), "rows": rows,
                            "dedup": _dedup_settings(dedup)}
    if mine is not None:  # this stream's record in the lake's `runs`
        mine["committed_at"] = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        mine["reconciled"] = bool(mine.get("reconciled", True)) and not leftovers and (
            mine.get("records_read", 0) == mine.get("documents", 0) + mine.get("duplicates", 0) + mine.get("rejected", 0))
        mine["ok"] = mine["reconciled"]
        mine["uncommitted_files"] = len(leftovers)
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
    if run_id:
        writer_lock.release(output, run_id)
    return summary
