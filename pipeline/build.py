"""Assembly: settings in, a Beam pipeline out (built, not run), batch or streaming.

Batch: the input files -> `IngestArticles` (pipeline/ingest.py: every stage) -> `WriteLake` (staged Parquet,
one commit, pipeline/lake.py). Streaming: a source (pipeline/streaming.py) -> the same `IngestArticles` with
stateful dedup -> `WriteWindowedLake` (a commit per window). Every stage's rejections are flattened into one
`rejected` table; the count of records read is taken right after reading, so the commit can check that
read = documents + duplicates + rejected.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import posixpath
import shutil
import uuid
import weakref
from datetime import datetime, timezone
from typing import Callable, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from wirewash.pipeline.ingest import IngestArticles
from wirewash.pipeline.input_files import InputFile, not_read_by_type
from wirewash.pipeline.lake import (_write_marker, check_output_location, lake_layout, read_summary, remove_lake,
                                    remove_staging)
from wirewash.pipeline import writer_lock
from wirewash.pipeline.lake_write import WriteLake, remove_orphans
from wirewash.pipeline.runners import _explicit_flags, prepare_runner, resolve_runner, use_local_streaming_runner
from wirewash.pipeline.settings import RunSettings, default_input, settings_from_options
from wirewash.pipeline.sources import ReadStream
from wirewash.transforms.spill import Spill, make_spill_dir, remove_spill_dir
from wirewash.pipeline.version import wirewash_version
from wirewash.pipeline.windowed_lake import WriteWindowedLake, staging_of
from wirewash.transforms.dedup import DedupConfig

__all__ = ["IngestArticles", "RunSettings", "settings_from_options", "build_pipeline", "default_input",
           "input_bytes", "remove_spill", "temporary_folders", "build_streaming_pipeline"]


def input_bytes(files: list[InputFile]) -> int:
    """Total size of the matched input files (0 where a size is unknown)."""
    total = 0
    for result in FileSystems.match([f.path for f in files]) if files else ():
        total += sum(m.size_in_bytes or 0 for m in result.metadata_list)
    return total


def build_pipeline(options: PipelineOptions, settings: Optional[RunSettings] = None,
                   progress_dir: Optional[str] = None, announce: Optional[Callable[[], None]] = None) -> beam.Pipeline:
    """The whole pipeline for these options (batch, or streaming with --streaming), ready to `run()`. With
    `progress_dir` (local batch runs only), side branches count records into that folder for the live
    progress display. `announce` is called once the options, output and runner are checked, before the
    graph (seconds of work) is built: the CLI's first line."""
    prepare_runner(options)  # --runner=DaskRunner, and a one-sentence error for what a runner lacks
    settings = settings or settings_from_options(options)
    created = "://" not in settings.output and not os.path.lexists(settings.output)
    run_id = uuid.uuid4().hex
    # one writer per lake (pipeline/writer_lock.py): taken before anything in the lake is touched, so that a
    # run never clears a running stream's staging folder; released by the commit (or the stream's finalize)
    writer_lock.acquire(settings.output, _mode(settings), run_id)
    atexit.register(writer_lock.release, settings.output, run_id)  # a run that failed or stopped (not a kill)
    try:
        check_output_location(settings.output, settings.overwrite, settings.append)  # makes the folder, _staging/
        if settings.append:  # the lake's own granularity and index; a different explicit granularity is a mistake
            settings = settings._replace(partition_by=lake_layout(settings.output, settings.partition_by,
                                                                  _explicit_flags(options)),
                                         lake_index=append_index(settings.output, settings.dedup))
        return _build(options, settings, progress_dir, announce or (lambda: None), run_id)
    except BaseException:
        # a mistake found while building (an unknown runner, a bad rule file) leaves no folder behind
        remove_staging(settings.output)
        writer_lock.release(settings.output, run_id)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(settings.output)
        raise


def _build(options: PipelineOptions, settings: RunSettings, progress_dir: Optional[str], announce,
           run_id: Optional[str] = None) -> beam.Pipeline:
    runner = resolve_runner(options, input_bytes(settings.files), streaming=settings.streaming)
    if settings.streaming:
        announce()
        return build_streaming_pipeline(options, settings, run_id)
    pipeline = beam.Pipeline(runner=runner, options=options) if runner else beam.Pipeline(options=options)
    announce()
    try:
        return _assemble(pipeline, runner, settings, progress_dir, run_id)
    except BaseException:
        # Beam removes the pipeline's local temp folder at the end of `run()`, which will not come now; the
        # spill folder would only go with the pipeline object, which the traceback keeps alive
        shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)
        remove_spill(pipeline)
        raise


def _assemble(pipeline: beam.Pipeline, runner, settings: RunSettings, progress_dir: Optional[str],
              run_id: Optional[str] = None) -> beam.Pipeline:
    spill = Spill()
    if isinstance(runner, FnApiRunner):  # local: its workers share this machine's disk
        spill = Spill(make_spill_dir(settings.spill_parent))
        # removed when the pipeline object goes, or when the interpreter exits (the CLI also removes it
        # right after the run: `remove_spill`)
        pipeline._wirewash_spill = weakref.finalize(pipeline, remove_spill_dir, spill.folder)
    outputs = pipeline | "Ingest" >> IngestArticles(settings.files, settings.rule_files,
                                                    settings.max_record_bytes, settings.dedup,
                                                    settings.max_decompressed_bytes, spill, settings.lake_index)
    pipeline.wirewash_run = run_record(settings, run_id)  # its run_id: the CLI adds the run's `timing` after the run
    _ = outputs | "WriteLake" >> WriteLake(settings.output, settings.ingested_at, settings.overwrite,
                                           partition_by=settings.partition_by, append=settings.append,
                                           run=pipeline.wirewash_run, dedup=settings.dedup,
                                           lake_index=settings.lake_index, spill=spill)
    if progress_dir:
        from wirewash.pipeline.progress import CountProgress
        _ = ({"read:articles": outputs["read_articles"], "read:rejected": outputs["read_rejected"],
              "cleaned": outputs["cleaned"], "documents": outputs["documents"], "duplicates": outputs["duplicates"],
              "rejected": outputs["rejected"]} | "Progress" >> CountProgress(progress_dir))
    return pipeline


def build_streaming_pipeline(options, settings, run_id: Optional[str] = None) -> beam.Pipeline:
    """The streaming pipeline for these RunSettings (`settings.stream` set), ready to `run()`. With `--append`
    its windows join the lake in `--output` (its documents deduplicated against the lake's index first, its
    layout kept, its counts, files and runs carried on); with `--overwrite` the old lake is removed first."""
    stream = settings.stream
    if settings.overwrite:
        remove_lake(settings.output)  # only what a wirewash lake holds (check_output_location refused others)
    previous = read_summary(settings.output) if settings.append else None
    if previous is not None:  # files a killed run moved in but never listed: never counted, deleted now
        remove_orphans(settings.output, previous)
    local = use_local_streaming_runner(options)
    pipeline = beam.Pipeline(options=options)
    staging = staging_of(settings.output, run_id or uuid.uuid4().hex)
    pipeline.wirewash_staging = staging  # read back by run_streaming
    pipeline.wirewash_partition_by = settings.partition_by
    pipeline.wirewash_dedup = settings.dedup
    pipeline.wirewash_run = run_record(settings, posixpath.basename(staging))
    _write_marker(settings.output, staging)  # files land as windows close: the folder is a lake from now on
    read = pipeline | "ReadStream" >> ReadStream(stream.source, settings.max_record_bytes, stream.allowed_lateness,
                                                 stream.poll_interval, local=local)
    outputs = read | "Ingest" >> IngestArticles(rule_files=settings.rule_files, dedup=settings.dedup,
                                                lake_index=settings.lake_index,
                                                retention_seconds=stream.retention_seconds)
    _ = outputs | "WriteLake" >> WriteWindowedLake(settings.output, staging, stream.window_seconds,
                                                   stream.allowed_lateness, settings.partition_by, settings.dedup,
                                                   previous=previous, run=pipeline.wirewash_run)
    return pipeline


def temporary_folders(pipeline: beam.Pipeline) -> list[str]:
    """The local folders a built pipeline uses while it runs (its spill folder, Beam's temp folder)."""
    finalizer = getattr(pipeline, "_wirewash_spill", None)
    folders = [finalizer.peek()[2][0]] if finalizer is not None and finalizer.alive else []
    return folders + [pipeline.local_tempdir]


def append_index(output: str, config: DedupConfig) -> tuple:
    """The dedup index files an append into `output` dedups against (none when there is no lake yet: the
    append is a first run). Raises ValueError when the lake has no index or its fingerprints were made with
    other dedup settings."""
    summary = read_summary(output)
    if summary is None:
        return ()
    # a stream still writing it holds the writer lock (refused before this); a killed stream's running summary
    # lists every window it committed, with their index files: it can be appended to
    index = summary.get("index")
    if index is None:
        raise ValueError(f"{output} has no dedup index (written before --append existed): --append needs one; "
                         "rebuild the lake with --overwrite")
    wanted = {"threshold": config.threshold, "num_perm": config.num_perm, "seed": config.seed, "near": config.near}
    if index.get("dedup") != wanted:
        raise ValueError(f"{output}'s dedup index was built with {index.get('dedup')}, this run asks for {wanted}: "
                         "an append must use the lake's --near_threshold, --num_perm, --minhash_seed")
    return tuple(FileSystems.join(output, rel) for rel in index["files"])


def _mode(settings: RunSettings) -> str:
    """The run's `mode` in the lake's `runs`: batch, append, streaming or stream-append."""
    if settings.streaming:
        return "stream-append" if settings.append else "streaming"
    return "append" if settings.append else "batch"


def run_record(settings: RunSettings, run_id: Optional[str] = None) -> dict:
    """What the lake's `runs` keeps about this run (its counts and commit time are added at the commit)."""
    mode = _mode(settings)
    return {"run_id": run_id or uuid.uuid4().hex, "wirewash_version": wirewash_version(), "mode": mode,
            "started_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "ingested_at": settings.ingested_at, "inputs": list(settings.inputs), "input_files": len(settings.files),
            "skipped_inputs": settings.skipped_inputs,
            "not_read_inputs": not_read_by_type(settings.not_read_inputs),
            "options": {"append": settings.append, "overwrite": settings.overwrite,
                        "partition_by": settings.partition_by, "rules": list(settings.rule_files),
                        "max_record_bytes": settings.max_record_bytes, **settings.dedup._asdict()}}


def remove_spill(pipeline: beam.Pipeline) -> None:
    """Removes a built pipeline's spill folder now (it would go with the pipeline object, or at exit)."""
    finalizer = getattr(pipeline, "_wirewash_spill", None)
    if finalizer is not None:
        finalizer()
