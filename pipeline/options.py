"""wirewash's pipeline options: every flag of `wirewash run` that is not a Beam flag, documented once.

Beam's own flags (`--runner`, `--direct_num_workers`, `--direct_running_mode`, `--temp_location`,
`--project`, ...) pass through unchanged. Code reads these with `options.view_as(WirewashOptions)`, in
`pipeline/settings.py` only (and `pipeline/kafka.py`, for the Kafka consumer); stages receive plain values.

Each option declares its type and its valid range here, once, as an argparse `type=` (`Integer`, `Number`,
`Timestamp`): a value out of range, not finite, or unparseable stops the command line (and the same value
from `--config`) before any work, in one sentence naming the option. The two rules that tie options
together are `check_options`, called once by `settings_from_options`.
"""
from __future__ import annotations

import argparse
import math
from datetime import datetime, timezone

from apache_beam.options.pipeline_options import PipelineOptions

from wirewash.transforms.dedup import DedupConfig
from wirewash.pipeline.config import _actions

__all__ = ["WirewashOptions", "DEFAULT_INPUT_HELP", "Integer", "Number", "Timestamp", "check_options"]

DEFAULT_INPUT_HELP = "the five sample articles shipped with wirewash (seeds/)"


def _shown(text: str) -> str:
    """The user's value, quoted and cut short (an error line stays one short line)."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


class _Range:
    """argparse type base: `parse` the text (None when it is not a value), then `holds` checks the range;
    either failing raises one message naming the range (`range_text`)."""

    def __call__(self, text: str):
        value = self.parse(str(text).strip())
        if value is None or not self.holds(value):
            raise argparse.ArgumentTypeError(f"must be {self.range_text}, got {_shown(str(text))}")
        return value


class Integer(_Range):
    """argparse type: a whole number in [low, high]; the message says the range."""

    def __init__(self, low: int, high: int):
        self.low, self.high = low, high

    @staticmethod
    def parse(text: str):
        try:
            return int(text)
        except ValueError:  # also Python's 4,300-digit limit on int()
            return None

    def holds(self, value: int) -> bool:
        return self.low <= value <= self.high

    @property
    def range_text(self) -> str:
        return f"a whole number from {self.low} to {self.high}"

    def __repr__(self):
        return f"Integer({self.low}, {self.high})"


class Number(_Range):
    """argparse type: a finite number in [low, high] (`low_open`: low itself excluded); NaN and inf never."""

    def __init__(self, low: float, high: float, low_open: bool = False):
        self.low, self.high, self.low_open = low, high, low_open

    @staticmethod
    def parse(text: str):
        try:
            return float(text)
        except ValueError:
            return None

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return math.isfinite(value) and above and value <= self.high

    @property
    def range_text(self) -> str:
        return f"a number in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    def __repr__(self):
        return f"Number({self.low}, {self.high}, low_open={self.low_open})"


class Timestamp:
    """argparse type: an ISO-8601 timestamp (no zone = UTC) between 1970 and the end of 9999 once in UTC;
    returns it as a UTC ISO string (`2024-01-01T00:00:00+00:00`)."""

    LOW = datetime(1970, 1, 1, tzinfo=timezone.utc)

    def __call__(self, text: str) -> str:
        try:
            parsed = datetime.fromisoformat(str(text).strip())
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            utc = parsed.astimezone(timezone.utc)  # OverflowError past year 9999 (9999-12-31T23:00-14:00)
        except (ValueError, OverflowError):
            utc = None
        if utc is None or utc < self.LOW:
            raise argparse.ArgumentTypeError(f"must be {self.range_text} (e.g. 2024-01-01T00:00:00Z), "
                                             f"got {_shown(str(text))}")
        return utc.isoformat()

    range_text = "an ISO-8601 timestamp from 1970 to 9999 in UTC"

    def __repr__(self):
        return "Timestamp()"


# Bounds. Record sizes: a record is held in memory whole, so 1 GiB is the most that is sensible; a
# decompressed stream is counted, never held, so its cap may go to 1 PiB. MinHash: rensa takes a 64-bit
# seed; more than 1,024 permutations buys nothing at this threshold range and costs linear time per record.
DEDUP = DedupConfig()  # the dedup stage's defaults are the flags' defaults
MAX_RECORD_BYTES = 1 << 30
MAX_DECOMPRESSED_BYTES = 1 << 50
YEAR_SECONDS = 366 * 86_400


def check_options(opts) -> None:
    """The rules between options (each option's own range is its `type=`); ValueError with one sentence."""
    if opts.max_decompressed_bytes < opts.max_record_bytes:
        raise ValueError(f"--max_decompressed_bytes must be at least --max_record_bytes "
                         f"({opts.max_record_bytes}), got {opts.max_decompressed_bytes}")
    if opts.dedup_retention < opts.window_seconds:
        raise ValueError(f"--dedup_retention ({opts.dedup_retention:g} s) must be at least one window "
                         f"(--window_seconds {opts.window_seconds:g} s)")


class WirewashOptions(PipelineOptions):
    """Input, output and stage settings of a wirewash run."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input", action="append", default=None, metavar="PATH",
            help="input file, folder or glob; local, gs:// or s3://. Repeat for several. Formats by name: "
                 ".jsonl, .jsonl.gz (id, url, source, title, published, text|html per line), .txt (one "
                 f"article), .html/.htm (one page). Default: {DEFAULT_INPUT_HELP}.")
        parser.add_argument(
            "--output", default="lake", metavar="LAKE",
            help="lake folder to write (documents/, duplicates/, rejected/, _SUMMARY.json). Default: lake")
        parser.add_argument(
            "--overwrite", action="store_true", default=False,
            help="replace the lake already in --output (without it, an existing lake stops the run)")
        parser.add_argument(
            "--append", action="store_true", default=False,
            help="add this run to the lake already in --output: its articles are deduplicated against the "
                 "lake's documents (from the lake's dedup index), and the run becomes visible all at once")
        parser.add_argument(
            "--partition_by", choices=("day", "month", "year", "ingest"), default=None,
            help="documents layout: lang=/date= folders with the publication day YYYY-MM-DD, month YYYY-MM or "
                 "year YYYY; or ingest: one ingest_date=YYYY-MM-DD folder per ingest day, lang and date (a day) "
                 "stored in the files, sorted (few large files: fast scans, not the folder contract). Default: "
                 "day, the lake contract (an --append keeps the lake's own)")
        parser.add_argument(
            "--rules", action="append", default=None, metavar="TOML",
            help="extra boilerplate rule file(s), same format as transforms/rules/boilerplate.toml")
        parser.add_argument(
            "--max_record_bytes", type=Integer(1024, MAX_RECORD_BYTES), default=1_800_000, metavar="N",
            help="records (JSONL lines, .txt/.html files) larger than this are rejected as too_large "
                 "without being loaded (real pages reach ~1.5 MB). Default: 1800000")
        parser.add_argument(
            "--max_decompressed_bytes", type=Integer(1024, MAX_DECOMPRESSED_BYTES), default=16 << 30, metavar="N",
            help="a .gz input inflating beyond this many bytes, or beyond 100 times its compressed size, "
                 "stops being read (decompression_limit in rejected/). Default: 17179869184 (16 GiB)")
        parser.add_argument(
            "--near_threshold", type=Number(0.0, 1.0, low_open=True), default=DEDUP.threshold, metavar="J",
            help="Jaccard similarity of word 5-shingles from which two articles are near duplicates. "
                 f"Default: {DEDUP.threshold:g} (candidates are verified on the shingle sets before they merge)")
        parser.add_argument(
            "--num_perm", type=Integer(16, 1024), default=DEDUP.num_perm, metavar="N",
            help=f"MinHash permutations (signature length). Default: {DEDUP.num_perm}")
        parser.add_argument(
            "--minhash_seed", type=Integer(0, 2**64 - 1), default=DEDUP.seed, metavar="N",
            help=f"MinHash seed: the same on every worker and every run. Default: {DEDUP.seed}")
        parser.add_argument(
            "--no_near_dedup", action="store_true", default=False,
            help="only remove exact duplicates")
        parser.add_argument(
            "--near_window_days", type=Number(0.0, 36_600.0), default=DEDUP.near_window_days, metavar="DAYS",
            help="near (not exact) copies must be published within this many days of each other when both "
                 f"dates are known; 0 turns the window off. Default: {DEDUP.near_window_days:g}")
        parser.add_argument(
            "--spill_dir", default=None, metavar="DIR",
            help="local runs: where the articles wait between stages, compressed, instead of in memory (a "
                 "private folder is made inside it and removed when the run ends; about 1 KB per record). "
                 "Default: the system's temp folder ($TMPDIR)")
        parser.add_argument(
            "--ingested_at", type=Timestamp(), default=None, metavar="ISO",
            help="ingest timestamp stored in every row (UTC ISO-8601). Default: when the run starts")
        # Streaming mode (`--streaming`, Beam's own flag): see pipeline/streaming.py and docs/streaming.md.
        parser.add_argument(
            "--window_seconds", type=Number(0.5, 86_400.0), default=60.0, metavar="S",
            help="streaming: length of the event-time windows; each window's rows are committed as new "
                 "Parquet files once the watermark passes its end. Default: 60")
        parser.add_argument(
            "--allowed_lateness", type=Number(0.0, 10 * YEAR_SECONDS), default=300.0, metavar="S",
            help="streaming: an article's `published` time is its event time when it is at most this many "
                 "seconds before its arrival (else the arrival time is); late records within it are written "
                 "in a later pane of their window. Default: 300")
        parser.add_argument(
            "--dedup_retention", type=Number(0.0, 10 * YEAR_SECONDS), default=604800.0, metavar="S",
            help="streaming: how long (event time) ids, content hashes and MinHash bands are remembered for "
                 "dedup; a copy arriving later is a new document. Bounds the state. Default: 604800 (7 days)")
        parser.add_argument(
            "--kafka_expansion_service", default=None, metavar="HOST:PORT",
            help="streaming from kafka://: a running Beam Java expansion service for ReadFromKafka (see "
                 "deploy/services/services.py). Default: Beam downloads and starts its own (needs Docker "
                 "or a Java environment the runner can start)")
        parser.add_argument(
            "--kafka_group_id", default="wirewash", metavar="ID",
            help="streaming from kafka://: the consumer group; the Kafka consumer commits its offsets every "
                 "second (auto-commit) and a restarted job goes on from them. Default: wirewash")
        parser.add_argument(
            "--kafka_resume_from", default=None, metavar="LAKE[,LAKE...]",
            help="streaming from kafka://: the lakes earlier runs of this topic wrote; the run starts where they "
                 "stop and skips records they hold (neither lost nor counted twice; docs/guarantees.md)")
        parser.add_argument(
            "--poll_interval", type=Number(0.1, 3600.0), default=2.0, metavar="S",
            help="streaming: how often a watched folder or glob is listed; a file is read once its size "
                 "stayed the same over two listings. Default: 2")
        _show_ranges(parser)


def _show_ranges(parser) -> None:
    """Each range-checked option's help ends with its range (the one its type checks)."""
    for action in _actions(parser).values():  # argparse's private list, behind pipeline/config.py's `_actions`
        text = getattr(action.type, "range_text", None)
        if text and action.help and "Valid: " not in action.help:
            action.help += f". Valid: {text}"
