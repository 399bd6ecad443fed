"""The `wirewash` command: `run` builds a lake, `query` asks it SQL.

    wirewash run --input seeds/ --output lake/ [Beam options...]
    wirewash query lake/ "SELECT lang, count(*) FROM documents GROUP BY lang"

User mistakes (missing input, an existing lake, a bad value) get one sentence and exit code 2; a run whose
counts do not reconcile exits 1; Beam's noise (the Prism download attempt, "apitools not found") is hidden
unless --verbose.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_NOISE = ("apitools not found", "PrismRunner", "Prism", "falling back to DirectRunner",
          "Falling back to DirectRunner", "Discarding unparseable args")


class _HideBeamNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(marker in message for marker in _NOISE)


def configure_logging(verbose: bool = False) -> None:
    """Warnings (or INFO with --verbose) to stderr, without the Beam messages that mean nothing to users.

    Must run before apache_beam is imported: its import logs "apitools not found" on the root logger.
    """
    root = logging.getLogger()
    if not any(isinstance(f, _HideBeamNoise) for f in root.filters):
        root.addFilter(_HideBeamNoise())
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_HideBeamNoise())
        root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    for name in ("apache_beam", "trafilatura", "htmldate", "courlan", "urllib3"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
    # A failing run is reported by run_command in one line; Beam's own ERROR log would add its traceback.
    logging.getLogger("apache_beam").setLevel(logging.INFO if verbose else logging.CRITICAL)


def _error(message: str) -> int:
    print(f"wirewash: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _run_parser() -> argparse.ArgumentParser:
    from pipeline.options import WirewashOptions

    parser = argparse.ArgumentParser(
        prog="wirewash run",
        description="Turn news articles (JSONL, text, HTML) into a clean, deduplicated, language-tagged "
                    "Parquet lake. Runs locally on Beam's DirectRunner unless --runner says otherwise; "
                    "every other Beam pipeline option (--runner, --direct_num_workers, "
                    "--direct_running_mode, --temp_location, --project, --region...) is passed to Beam.",
        epilog="Example: wirewash run --input seeds/ --output lake/  then  "
               "wirewash query lake/ \"SELECT lang, count(*) FROM documents GROUP BY lang\"")
    WirewashOptions._add_argparse_args(parser)
    parser.add_argument("--streaming", action="store_true",
                        help="keep running: watch --input (a glob or folder, pubsub://..., kafka://...) and commit "
                             "Parquet per --window_seconds; Ctrl-C drains (see docs/streaming.md)")
    parser.add_argument("--verbose", action="store_true", help="show Beam's and the libraries' INFO logs")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return parser


def _print_summary(summary: dict, output: str, seconds: float) -> None:
    print(f"wirewash: {summary['records_read']} records read -> {summary['documents']} documents, "
          f"{summary['duplicates']} duplicates, {summary['rejected']} rejected in {seconds:.1f} s; lake: {output}")
    for stage, counts in summary.get("stages", {}).items():
        extra = f", {counts['duplicates']} duplicates" if "duplicates" in counts else ""
        print(f"  {stage:<12} {counts['in']:>8} in  {counts['rejected']:>6} rejected{extra}  -> {counts['out']}")
    for title, key in (("languages", "languages"), ("boilerplate lines removed", "boilerplate_lines_removed"),
                       ("duplicates by kind", "duplicate_kinds"), ("rejected by reason", "rejected_reasons")):
        items = summary.get(key) or {}
        if items:
            ranked = sorted(items.items(), key=lambda kv: (-kv[1], kv[0]))
            print(f"  {title}: " + ", ".join(f"{k} {v}" for k, v in ranked))


def run_command(argv: list[str]) -> int:
    parser = _run_parser()
    args, _ = parser.parse_known_args(argv)
    configure_logging(args.verbose)

    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from pipeline.build import build_pipeline, settings_from_options
    from pipeline.io import InputError
    from pipeline.lake import SUMMARY_FILE, LakeExistsError

    beam_argv = [a for a in argv if a not in ("--verbose", "--quiet")]
    options = PipelineOptions(beam_argv)
    try:
        settings = settings_from_options(options)
        pipeline = build_pipeline(options, settings)
    except (InputError, LakeExistsError, ValueError, OSError) as err:
        return _error(str(err))
    started = time.monotonic()
    if options.view_as(StandardOptions).streaming:  # runs until drained (Ctrl-C / SIGTERM); see streaming.py
        from pipeline.streaming import run_streaming
        summary = run_streaming(pipeline, settings.output)
    else:
        try:
            result = pipeline.run()
            result.wait_until_finish()
        except Exception as err:  # a full disk or a lost output folder mid-run: one line, not a Beam traceback
            from pipeline.lake import remove_staging, short_error
            logging.getLogger(__name__).debug("run failed", exc_info=True)
            remove_staging(settings.output)  # give back the space (a full disk is a common cause)
            print(f"wirewash: error: the run failed, nothing was committed to {settings.output}: "
                  f"{short_error(err)} (--verbose shows Beam's log)", file=sys.stderr)
            return EXIT_FAILED
        summary = None
    seconds = time.monotonic() - started

    from apache_beam.io.filesystems import FileSystems
    summary_path = FileSystems.join(settings.output, SUMMARY_FILE)
    if summary is None:
        with FileSystems.open(summary_path) as handle:
            summary = json.loads(handle.read().decode("utf-8"))
    if not args.quiet:
        _print_summary(summary, settings.output, seconds)
    if not summary.get("reconciled"):
        print(f"wirewash: error: counts do not reconcile: {summary['records_read']} read != "
              f"{summary['documents']} documents + {summary['duplicates']} duplicates + "
              f"{summary['rejected']} rejected (see {summary_path})", file=sys.stderr)
        return EXIT_FAILED
    broken = {k: v for k, v in summary.get("invariants", {}).items() if k != "reconciled" and v}
    if broken:
        print("wirewash: error: lake invariants violated: " + ", ".join(f"{k} {v}" for k, v in broken.items())
              + f" (see {summary_path})", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def query_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="wirewash query",
        description="Run SQL over a lake with DuckDB. Tables: documents (with partition columns lang and "
                    "date), duplicates, rejected. The lake is opened read-only.")
    parser.add_argument("lake", help="lake folder written by wirewash run")
    parser.add_argument("sql", help="one SQL statement, e.g. \"SELECT lang, count(*) FROM documents GROUP BY lang\"")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="output format (default: table)")
    parser.add_argument("--limit", type=int, default=None, help="print at most this many rows")
    args = parser.parse_args(argv)

    import duckdb

    from pipeline.query import LakeNotFoundError, QueryNotAllowedError, format_rows, run_query

    try:
        columns, rows = run_query(args.lake, args.sql, limit=args.limit)
    except (LakeNotFoundError, QueryNotAllowedError) as err:
        return _error(str(err))
    except duckdb.Error as err:
        return _error(f"query failed: {str(err).splitlines()[0]}")
    print(format_rows(columns, rows, args.format))
    return EXIT_OK


COMMANDS = {"run": run_command, "query": query_command}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging(verbose="--verbose" in argv)
    top = argparse.ArgumentParser(
        prog="wirewash",
        description="Clean, deduplicated, language-tagged Parquet lakes from messy news articles.",
        epilog="Commands: run (build a lake), query (SQL over a lake). "
               "'wirewash COMMAND --help' shows a command's options.")
    top.add_argument("command", choices=sorted(COMMANDS), help="what to do")
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return EXIT_OK if argv else EXIT_USAGE
    if argv[0] not in COMMANDS:
        top.print_usage(sys.stderr)
        return _error(f"unknown command {argv[0]!r}; choose from {', '.join(sorted(COMMANDS))}")
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
