"""Assembly: options in, a Beam pipeline out (built, not run).

read -> extract (HTML) -> normalize -> boilerplate -> language -> dedup -> lake. Every stage's rejections are
flattened into one `rejected` table; the count of records read is taken right after reading, so the commit
can check that read = documents + duplicates + rejected.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import uuid
import weakref
from datetime import datetime, timezone
from importlib import resources
from typing import Callable, NamedTuple, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineRunner
from apache_beam.transforms.environments import SubprocessSDKEnvironment

from wirewash.pipeline.beam_internals import given_flags
from wirewash.pipeline.io import (DEFAULT_MAX_DECOMPRESSED_BYTES, DEFAULT_MAX_RECORD_BYTES, InputError, InputFile, ReadArticles,
                         match_inputs)
from wirewash.pipeline.lake import (DEFAULT_PARTITION_BY, WriteLake, check_output_location, lake_layout, read_summary,
                           remove_staging)
from wirewash.pipeline.lifetime import LAUNCHER_ENV
from wirewash.pipeline.options import WirewashOptions, check_options
from wirewash.pipeline.runners import prepare_runner
from wirewash.pipeline.version import wirewash_version
from wirewash.transforms.boilerplate import StripBoilerplate, load_rules
from wirewash.transforms.dedup import DedupConfig, DeduplicateArticles
from wirewash.transforms.extract import ExtractText
from wirewash.transforms.language import DetectLanguage
from wirewash.transforms.lake_dedup import DedupAgainstLake
from wirewash.transforms.normalize import NormalizeArticles
from wirewash.transforms.spill import Spill, make_spill_dir, remove_spill_dir

__all__ = ["IngestArticles", "RunSettings", "settings_from_options", "build_pipeline", "default_input",
           "resolve_runner", "local_workers", "input_bytes", "tune_malloc", "remove_spill",
           "temporary_folders", "check_beam_options"]


class RunSettings(NamedTuple):
    """Everything a run needs, read once from the options."""

    files: list
    output: str
    overwrite: bool
    rule_files: tuple
    max_record_bytes: int
    max_decompressed_bytes: int
    dedup: DedupConfig
    ingested_at: str
    spill_parent: Optional[str] = None
    partition_by: str = DEFAULT_PARTITION_BY
    append: bool = False
    inputs: tuple = ()  # the --input arguments as given (recorded in the lake's `runs`)
    skipped_inputs: int = 0  # files under --output that a folder or glob matched (never read)
    lake_index: tuple = ()  # --append: the lake's dedup index files


def default_input() -> str:
    """The seeds shipped inside the package (the same five files as the repository's seeds/)."""
    return str(resources.files("wirewash.seeds"))


MAX_LOCAL_WORKERS = 256  # local worker processes: one per core is the point; hundreds means a typo


def check_beam_options(options: PipelineOptions) -> None:
    """The Beam options wirewash itself acts on (the local runner's worker count), range-checked like its own:
    Beam declares `--direct_num_workers` as any int."""
    workers = options.view_as(DirectOptions).direct_num_workers
    if workers is not None and not 0 <= workers <= MAX_LOCAL_WORKERS:
        raise ValueError(f"--direct_num_workers must be from 0 (one per core) to {MAX_LOCAL_WORKERS}, got {workers}")


def settings_from_options(options: PipelineOptions) -> RunSettings:
    """Validates the options (raising ValueError / InputError with one clear sentence) into RunSettings.

    Each wirewash option's range is its argparse type (pipeline/options.py), so options parsed from a command
    line are already in range; the rules between options and the local runner's options are checked here,
    before anything is read or written."""
    opts = options.view_as(WirewashOptions)
    check_options(opts)  # each option's own range was checked when it was parsed (pipeline/options.py)
    check_beam_options(options)
    ingested_at = opts.ingested_at or datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    if opts.append and opts.overwrite:
        raise ValueError("--append adds to the lake in --output and --overwrite replaces it: choose one")
    streaming = options.view_as(StandardOptions).streaming  # a stream's input is watched, not listed now
    patterns = opts.input or [default_input()]
    files = [] if streaming else match_inputs(patterns)
    files, skipped = outside_output(files, opts.output)
    if skipped and not files:
        raise InputError(f"every input file is inside the output lake {opts.output!r}: nothing to read")
    rule_files = tuple(opts.rules or ())
    load_rules(rule_files)  # a bad --rules file is one line (UsageError) before the output folder is touched
    return RunSettings(
        files=files,
        output=opts.output,
        overwrite=opts.overwrite,
        rule_files=rule_files,
        max_record_bytes=opts.max_record_bytes,
        max_decompressed_bytes=opts.max_decompressed_bytes,
        dedup=DedupConfig(threshold=opts.near_threshold, num_perm=opts.num_perm, seed=opts.minhash_seed,
                          near=not opts.no_near_dedup, near_window_days=opts.near_window_days),
        ingested_at=ingested_at,
        spill_parent=opts.spill_dir,
        partition_by=opts.partition_by or DEFAULT_PARTITION_BY,
        append=opts.append,
        inputs=tuple(patterns),
        skipped_inputs=skipped,
    )


def outside_output(files: list[InputFile], output: str) -> tuple[list[InputFile], int]:
    """The input files that are not inside the output lake, and how many were: a lake written inside its
    own input folder never reads its own files (its report, a user's notes) back as articles."""
    if "://" in output:
        root = output.rstrip("/") + "/"
        inside = [f for f in files if f.path.startswith(root)]
    else:
        root = os.path.realpath(output)
        inside = [f for f in files if "://" not in f.path
                  and os.path.commonpath([root, os.path.realpath(f.path)]) == root]
    return [f for f in files if f not in inside], len(inside)


def _count_records(articles, rejected):
    return ((articles | "CountArticles" >> beam.combiners.Count.Globally(),
             rejected | "CountReadRejections" >> beam.combiners.Count.Globally())
            | "BothCounts" >> beam.Flatten() | "RecordsRead" >> beam.CombineGlobally(sum))


class IngestArticles(beam.PTransform):
    """PBegin -> {documents, duplicates, rejected, records_read}: every stage but the writing."""

    def __init__(self, files: list[InputFile], rule_files: tuple = (), max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 dedup: DedupConfig = DedupConfig(), max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
                 spill: Optional[Spill] = None, lake_index: tuple = (), read: Optional[beam.PTransform] = None):
        super().__init__()
        self.read = read  # input -> {articles, rejected, tallies} in place of reading `files` (pipeline/api.py)
        self.lake_index = tuple(lake_index)  # an append: dedup against these index files of the lake first
        self.files = files
        self.rule_files = rule_files
        self.max_record_bytes = max_record_bytes
        self.dedup = dedup
        self.max_decompressed_bytes = max_decompressed_bytes
        self.spill = spill or Spill()  # where articles wait at stage boundaries (transforms/spill.py)

    def expand(self, pbegin):
        read = pbegin | "Read" >> (self.read or ReadArticles(self.files, self.max_record_bytes, self.max_decompressed_bytes))
        records_read = _count_records(read["articles"], read["rejected"])
        extracted = read["articles"] | "Extract" >> ExtractText()
        normalized = extracted["articles"] | "Normalize" >> NormalizeArticles()
        cleaned = normalized["articles"] | "Boilerplate" >> StripBoilerplate(self.rule_files, spill=self.spill)
        tagged = cleaned["articles"] | "Language" >> DetectLanguage()
        of_lake = {"duplicates": [], "rejected": []}
        if self.lake_index:  # `--append`: copies of the lake's documents leave first (the lake's copy wins)
            against = tagged["articles"] | "AgainstLake" >> DedupAgainstLake(list(self.lake_index), self.dedup)
            articles, of_lake = against["articles"], {k: [against[k]] for k in of_lake}
        else:
            articles = tagged["articles"]
        deduped = articles | "Dedup" >> DeduplicateArticles(self.dedup, self.spill)
        rejected = ((read["rejected"], extracted["rejected"], normalized["rejected"], cleaned["rejected"],
                     tagged["rejected"], deduped["rejected"], *of_lake["rejected"]) | "AllRejected" >> beam.Flatten())
        duplicates = (deduped["duplicates"], *of_lake["duplicates"]) | "AllDuplicates" >> beam.Flatten()
        return {"documents": deduped["documents"], "duplicates": duplicates, "rejected": rejected,
                "records_read": records_read, "removed_lines": cleaned.get("removed_lines"),
                "read_tallies": read["tallies"],
                # for live progress only (pipeline/progress.py): records as they enter the stages, and dedup
                "read_articles": read["articles"], "read_rejected": read["rejected"], "cleaned": articles}


LOCAL_RUNNERS = (None, "DirectRunner", "direct", "Direct")
# Below this much input, two worker processes (~1.7 s to start, and every stage boundary crossing a process)
# cost more than they save; the in-process runner is faster.
MULTIPROCESS_MIN_BYTES = 4 << 20
WORKER_COMMAND = "-m wirewash.pipeline.worker"
# glibc's malloc keeps memory the local runner's threads have freed: it gives every thread that allocates under
# contention its own arena (up to 8 per core) and rarely hands an arena's free pages back, and after a large
# block is freed it raises its mmap threshold (up to 32 MB), so later multi-MB data-plane buffers come from
# the heap and leave holes there. Two arenas and a fixed 1 MB mmap threshold, for the launcher (set at run
# time, before the runner starts its threads) and the worker processes (through their environment): at
# 10,000 records the launcher went 646 -> 423 MB (arenas) -> 364 MB (threshold), the workers 661 -> 467 MB.
MALLOC_ARENAS = 2
MALLOC_MMAP_THRESHOLD = 1 << 20
M_ARENA_MAX, M_MMAP_THRESHOLD = -8, -3  # mallopt() parameter numbers, from glibc's malloc.h
WORKER_MALLOC_ENV = f"MALLOC_ARENA_MAX={MALLOC_ARENAS} MALLOC_MMAP_THRESHOLD_={MALLOC_MMAP_THRESHOLD}"


def tune_malloc() -> bool:
    """Caps this process's glibc malloc arenas and fixes its mmap threshold (see above); False where there
    is no glibc (other systems keep their allocator as it is)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)) and bool(
            libc.mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD))
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False


def _explicit_flags(options: PipelineOptions) -> set:
    """Names of the options given on the command line (a default that was typed counts as given)."""
    flags = given_flags(options)
    return {f.split("=", 1)[0].lstrip("-") for f in flags if f.startswith("--")}


def local_workers(options: PipelineOptions, input_bytes: int) -> int:
    """How many worker processes a local batch run gets: 1 (in-process) or several (one per core).

    Explicit `--direct_running_mode` / `--direct_num_workers` win; otherwise inputs of at least
    MULTIPROCESS_MIN_BYTES get one process per core, smaller ones stay in process.
    """
    direct = options.view_as(DirectOptions)
    given = _explicit_flags(options)
    cores = os.cpu_count() or 1
    if "direct_running_mode" in given:
        if direct.direct_running_mode != "multi_processing":
            return 1
        return direct.direct_num_workers or cores if "direct_num_workers" in given else cores
    if "direct_num_workers" in given:
        return direct.direct_num_workers or cores
    return cores if input_bytes >= MULTIPROCESS_MIN_BYTES else 1


def resolve_runner(options: PipelineOptions, input_bytes: int = 0) -> Optional[PipelineRunner]:
    """The runner for these options. Any explicit non-direct `--runner` is left alone (returns None).

    Local batch runs use the FnApiRunner (what the DirectRunner falls back to, minus its attempt to download
    the Prism binary): in process for small inputs, else with one worker process per core (see
    `local_workers`), each started as `python -m wirewash.pipeline.worker` so that workers do not print Beam's start-up
    noise. Local streaming runs use the BundleBasedDirectRunner. Local batch runs tune glibc's malloc
    (launcher and workers, `tune_malloc`), so that memory the runner's threads free goes back to use.
    """
    standard = options.view_as(StandardOptions)
    if standard.runner not in LOCAL_RUNNERS + ("FnApiRunner",):
        return None
    if standard.runner != "FnApiRunner" and standard.streaming:
        standard.runner = "BundleBasedDirectRunner"
        return None
    standard.runner = "FnApiRunner"
    tune_malloc()
    workers = local_workers(options, input_bytes)
    direct = options.view_as(DirectOptions)
    if workers <= 1:
        if direct.direct_running_mode == "multi_processing":
            direct.direct_running_mode = "in_memory"
        direct.direct_num_workers = 1
        return FnApiRunner()
    # The FnApiRunner would start Beam's own worker command for `multi_processing`; ours is the same worker
    # with a quiet stderr, passed as the default environment with the running mode left in memory.
    direct.direct_running_mode = "in_memory"
    direct.direct_num_workers = workers
    command = f"{shlex.quote(sys.executable)} {WORKER_COMMAND}"
    if os.name == "posix":  # Beam starts the command through the shell; workers follow this process
        # `exec`: the worker replaces the shell, so the shell cannot die of a terminal's Ctrl-C before it
        command = f"{WORKER_MALLOC_ENV} {LAUNCHER_ENV}={os.getpid()} exec {command}"
    return FnApiRunner(default_environment=SubprocessSDKEnvironment.from_command_string(command))


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
    check_output_location(settings.output, settings.overwrite, settings.append)  # makes the folder and _staging/
    try:
        if settings.append:  # the lake's own granularity and index; a different explicit granularity is a mistake
            settings = settings._replace(partition_by=lake_layout(settings.output, settings.partition_by,
                                                                  _explicit_flags(options)),
                                         lake_index=append_index(settings.output, settings.dedup))
        return _build(options, settings, progress_dir, announce or (lambda: None))
    except BaseException:
        # a mistake found while building (an unknown runner, a bad rule file) leaves no folder behind
        remove_staging(settings.output)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(settings.output)
        raise


def _build(options: PipelineOptions, settings: RunSettings, progress_dir: Optional[str], announce) -> beam.Pipeline:
    runner = resolve_runner(options, input_bytes(settings.files))
    if options.view_as(StandardOptions).streaming:
        from wirewash.pipeline.streaming import build_streaming_pipeline
        announce()
        return build_streaming_pipeline(options, settings)
    pipeline = beam.Pipeline(runner=runner, options=options) if runner else beam.Pipeline(options=options)
    announce()
    try:
        return _assemble(pipeline, runner, settings, progress_dir)
    except BaseException:
        # Beam removes the pipeline's local temp folder at the end of `run()`, which will not come now; the
        # spill folder would only go with the pipeline object, which the traceback keeps alive
        shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)
        remove_spill(pipeline)
        raise


def _assemble(pipeline: beam.Pipeline, runner, settings: RunSettings, progress_dir: Optional[str]) -> beam.Pipeline:
    spill = Spill()
    if isinstance(runner, FnApiRunner):  # local: its workers share this machine's disk
        spill = Spill(make_spill_dir(settings.spill_parent))
        # removed when the pipeline object goes, or when the interpreter exits (the CLI also removes it
        # right after the run: `remove_spill`)
        pipeline._wirewash_spill = weakref.finalize(pipeline, remove_spill_dir, spill.folder)
    outputs = pipeline | "Ingest" >> IngestArticles(settings.files, settings.rule_files,
                                                    settings.max_record_bytes, settings.dedup,
                                                    settings.max_decompressed_bytes, spill, settings.lake_index)
    pipeline.wirewash_run = run_record(settings)  # its run_id: the CLI adds the run's `timing` after the run
    _ = outputs | "WriteLake" >> WriteLake(settings.output, settings.ingested_at, settings.overwrite,
                                           partition_by=settings.partition_by, append=settings.append,
                                           run=pipeline.wirewash_run, dedup=settings.dedup,
                                           lake_index=settings.lake_index)
    if progress_dir:
        from wirewash.pipeline.progress import CountProgress
        _ = ({"read:articles": outputs["read_articles"], "read:rejected": outputs["read_rejected"],
              "cleaned": outputs["cleaned"], "documents": outputs["documents"], "duplicates": outputs["duplicates"],
              "rejected": outputs["rejected"]} | "Progress" >> CountProgress(progress_dir))
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
    if summary.get("streaming", {}).get("final") is False:
        raise ValueError(f"{output} is a streaming lake still being written: append to it after the stream stops")
    index = summary.get("index")
    if index is None:
        raise ValueError(f"{output} has no dedup index (written before --append existed): --append needs one; "
                         "rebuild the lake with --overwrite")
    wanted = {"threshold": config.threshold, "num_perm": config.num_perm, "seed": config.seed, "near": config.near}
    if index.get("dedup") != wanted:
        raise ValueError(f"{output}'s dedup index was built with {index.get('dedup')}, this run asks for {wanted}: "
                         "an append must use the lake's --near_threshold, --num_perm, --minhash_seed")
    return tuple(FileSystems.join(output, rel) for rel in index["files"])


def run_record(settings: RunSettings) -> dict:
    """What the lake's `runs` keeps about this run (its counts and commit time are added at the commit)."""
    mode = "append" if settings.append else "batch"
    return {"run_id": uuid.uuid4().hex, "wirewash_version": wirewash_version(), "mode": mode,
            "started_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "ingested_at": settings.ingested_at, "inputs": list(settings.inputs), "input_files": len(settings.files),
            "skipped_inputs": settings.skipped_inputs,
            "options": {"append": settings.append, "overwrite": settings.overwrite,
                        "partition_by": settings.partition_by, "rules": list(settings.rule_files),
                        "max_record_bytes": settings.max_record_bytes, **settings.dedup._asdict()}}


def remove_spill(pipeline: beam.Pipeline) -> None:
    """Removes a built pipeline's spill folder now (it would go with the pipeline object, or at exit)."""
    finalizer = getattr(pipeline, "_wirewash_spill", None)
    if finalizer is not None:
        finalizer()
