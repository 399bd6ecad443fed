"""Options in, settings out: a run's options are read and checked once, here, into one frozen RunSettings.

`settings_from_options(options)` is the only reader of the options (wirewash's own, `--streaming` and the Beam
options wirewash acts on): it checks what each option's argparse type cannot (the rules between options, the
streaming source and ranges, the local runner's worker count), raising ValueError / InputError with one
sentence before anything is read or written, and decides the run's mode once (`RunSettings.streaming`).
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from importlib import resources
from typing import NamedTuple, Optional

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from wirewash.pipeline.input_files import InputError, InputFile, match_inputs
from wirewash.pipeline.lake import DEFAULT_PARTITION_BY, check_output_name
from wirewash.pipeline.options import WirewashOptions, check_options
from wirewash.pipeline.runners import prepare_runner
from wirewash.pipeline.sources import StreamSource, parse_source
from wirewash.transforms.boilerplate import load_rules
from wirewash.transforms.dedup import DedupConfig

__all__ = ["RunSettings", "StreamSettings", "settings_from_options", "stream_settings", "default_input",
           "check_beam_options", "outside_output"]


class StreamSettings(NamedTuple):
    """What a streaming run reads from and how it cuts windows and keeps dedup state."""

    source: StreamSource
    window_seconds: float
    allowed_lateness: float
    retention_seconds: float
    poll_interval: float


def stream_settings(opts) -> StreamSettings:
    """Validates the streaming options of a WirewashOptions view (the rule tying --dedup_retention to
    --window_seconds is `check_options`)."""
    if not 0.5 <= opts.window_seconds <= 86_400:
        raise ValueError(f"--window_seconds must be between 0.5 and 86400, got {opts.window_seconds}")
    if opts.allowed_lateness < 0:
        raise ValueError(f"--allowed_lateness must be >= 0 seconds, got {opts.allowed_lateness}")
    if not 0.1 <= opts.poll_interval <= 3600:
        raise ValueError(f"--poll_interval must be between 0.1 and 3600 seconds, got {opts.poll_interval}")
    return StreamSettings(parse_source(opts.input), opts.window_seconds, opts.allowed_lateness,
                          opts.dedup_retention, opts.poll_interval)


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
    not_read_inputs: tuple = ()  # files in input folders of a type wirewash does not read (a README, a .json)
    lake_index: tuple = ()  # --append: the lake's dedup index files
    stream: Optional[StreamSettings] = None  # a streaming run (`--streaming`): its source, windows and retention

    @property
    def streaming(self) -> bool:
        """The run's mode, decided once (here, from `--streaming`): every other place asks this."""
        return self.stream is not None


def default_input() -> str:
    """The seeds shipped inside the package (the same five files as the repository's seeds/)."""
    return str(resources.files("wirewash.seeds"))


MAX_LOCAL_WORKERS = 256  # local worker processes: one per core is the point; hundreds means a typo


def check_beam_options(options: PipelineOptions) -> None:
    """The Beam options wirewash itself acts on, checked like its own: the runner exists and can run this
    (`prepare_runner`), the local runner's worker count is in range (Beam declares `--direct_num_workers` as
    any int)."""
    prepare_runner(options)
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
    check_beam_options(options)  # before any file is listed or read: a bad value is found first
    ingested_at = opts.ingested_at or datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    if opts.append and opts.overwrite:
        raise ValueError("--append adds to the lake in --output and --overwrite replaces it: choose one")
    check_output_name(opts.output)  # before the writer lock or anything else touches the folder
    streaming = bool(options.view_as(StandardOptions).streaming)  # the mode, decided here once
    patterns = opts.input or [default_input()]
    not_read: list = []
    files = [] if streaming else match_inputs(patterns, not_read)  # a stream's input is watched, not listed now
    files, skipped = outside_output(files, opts.output)
    # the lake's own files (its summary, its Parquet files) are not the user's: not named as not read
    not_read = [path for path in not_read if not inside_output(path, opts.output)]
    if skipped and not files:
        raise InputError(f"every input file is inside the output lake {opts.output!r}: nothing to read")
    rule_files = tuple(opts.rules or ())
    load_rules(rule_files)  # a bad --rules file is one line (UsageError) before the output folder is touched
    stream = stream_settings(opts) if streaming else None
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
        not_read_inputs=tuple(not_read),
        stream=stream,
    )


def inside_output(path: str, output: str) -> bool:
    """Whether `path` lies inside the output lake (local paths compared after resolving links)."""
    if "://" in output:
        return path.startswith(output.rstrip("/") + "/")
    if "://" in path:
        return False
    root = os.path.realpath(output)
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def outside_output(files: list[InputFile], output: str) -> tuple[list[InputFile], int]:
    """The input files that are not inside the output lake, and how many were: a lake written inside its
    own input folder never reads its own files (its report, a user's notes) back as articles."""
    outside = [f for f in files if not inside_output(f.path, output)]
    return outside, len(files) - len(outside)
