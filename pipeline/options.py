"""wirewash's pipeline options: every flag of `wirewash run` that is not a Beam flag, documented once.

Beam's own flags (`--runner`, `--direct_num_workers`, `--direct_running_mode`, `--temp_location`,
`--project`, ...) pass through unchanged. Code reads these with `options.view_as(WirewashOptions)`, in
`pipeline/build.py` only; stages receive plain values.
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

__all__ = ["WirewashOptions", "DEFAULT_INPUT_HELP"]

DEFAULT_INPUT_HELP = "the five sample articles shipped with wirewash (seeds/)"


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
            "--rules", action="append", default=None, metavar="TOML",
            help="extra boilerplate rule file(s), same format as transforms/rules/boilerplate.toml")
        parser.add_argument(
            "--max_record_bytes", type=int, default=1_800_000, metavar="N",
            help="records (JSONL lines, .txt/.html files) larger than this are rejected as too_large "
                 "without being loaded (real pages reach ~1.5 MB). Default: 1800000")
        parser.add_argument(
            "--max_decompressed_bytes", type=int, default=16 << 30, metavar="N",
            help="a .gz input inflating beyond this many bytes, or beyond 100 times its compressed size, "
                 "stops being read (decompression_limit in rejected/). Default: 17179869184 (16 GiB)")
        parser.add_argument(
            "--near_threshold", type=float, default=0.5, metavar="J",
            help="Jaccard similarity of word 5-shingles from which two articles are near duplicates. "
                 "Default: 0.5 (candidates are verified on the shingle sets before they merge)")
        parser.add_argument(
            "--num_perm", type=int, default=128, metavar="N",
            help="MinHash permutations (signature length). Default: 128")
        parser.add_argument(
            "--minhash_seed", type=int, default=1, metavar="N",
            help="MinHash seed: the same on every worker and every run. Default: 1")
        parser.add_argument(
            "--no_near_dedup", action="store_true", default=False,
            help="only remove exact duplicates")
        parser.add_argument(
            "--near_window_days", type=float, default=30.0, metavar="DAYS",
            help="near (not exact) copies must be published within this many days of each other when both "
                 "dates are known; 0 turns the window off. Default: 30")
        parser.add_argument(
            "--spill_dir", default=None, metavar="DIR",
            help="local runs: where the articles wait between stages, compressed, instead of in memory (a "
                 "private folder is made inside it and removed when the run ends; about 1 KB per record). "
                 "Default: the system's temp folder ($TMPDIR)")
        parser.add_argument(
            "--ingested_at", default=None, metavar="ISO",
            help="ingest timestamp stored in every row (UTC ISO-8601). Default: when the run starts")
        # Streaming mode (`--streaming`, Beam's own flag): see pipeline/streaming.py and docs/streaming.md.
        parser.add_argument(
            "--window_seconds", type=float, default=60.0, metavar="S",
            help="streaming: length of the event-time windows; each window's rows are committed as new "
                 "Parquet files once the watermark passes its end. Default: 60")
        parser.add_argument(
            "--allowed_lateness", type=float, default=300.0, metavar="S",
            help="streaming: an article's `published` time is its event time when it is at most this many "
                 "seconds before its arrival (else the arrival time is); late records within it are written "
                 "in a later pane of their window. Default: 300")
        parser.add_argument(
            "--dedup_retention", type=float, default=604800.0, metavar="S",
            help="streaming: how long (event time) ids, content hashes and MinHash bands are remembered for "
                 "dedup; a copy arriving later is a new document. Bounds the state. Default: 604800 (7 days)")
        parser.add_argument(
            "--kafka_expansion_service", default=None, metavar="HOST:PORT",
            help="streaming from kafka://: a running Beam Java expansion service for ReadFromKafka (see "
                 "deploy/services/services.py). Default: Beam downloads and starts its own (needs Docker "
                 "or a Java environment the runner can start)")
        parser.add_argument(
            "--kafka_group_id", default="wirewash", metavar="ID",
            help="streaming from kafka://: the consumer group; its offsets are committed when the runner "
                 "finalizes a checkpoint, and a restarted job goes on from them. Default: wirewash")
        parser.add_argument(
            "--poll_interval", type=float, default=2.0, metavar="S",
            help="streaming: how often a watched folder or glob is listed; a file is read once its size "
                 "stayed the same over two listings. Default: 2")
