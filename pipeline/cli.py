"""The `wirewash` command: `run` builds a lake, `query` asks it SQL, `report` draws it, `ddl` declares it.

    wirewash run --input seeds/ --output lake/ [--config wirewash.toml] [Beam options...]
    wirewash query lake/ "SELECT lang, count(*) FROM documents GROUP BY lang" [--format csv|json|parquet]
    wirewash report lake/
    wirewash ddl lake/ --dialect bigquery --location gs://bucket/lake

User mistakes (missing input, an existing lake, an unknown option or command, a bad value or config file) get
one sentence and exit code 2, never a trace; a run that fails or whose counts do not reconcile exits 1; Beam's
noise (the Prism download attempt, "apitools not found") is hidden unless --verbose.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import re
import shutil
import sys
import time

from wirewash.pipeline.config import NOTICES, UsageError
from wirewash.pipeline.version import wirewash_version

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_NOISE = ("apitools not found", "PrismRunner", "Prism", "falling back to DirectRunner",
          "Falling back to DirectRunner", "Discarding unparseable args")


class _HideBeamNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(marker in message for marker in _NOISE)


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Warnings (or INFO with --verbose) to stderr, without the Beam messages that mean nothing to users;
    `quiet` (--quiet) silences the notices logger (`config.NOTICES`), errors stay.

    Must run before apache_beam is imported: its import logs "apitools not found" on the root logger.
    """
    if not verbose:
        # gRPC's C core logs to file descriptor 2 itself (e.g. "skipping fork() handlers" when the local
        # runner starts worker processes); inherited by those workers too.
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    root = logging.getLogger()
    if not any(isinstance(f, _HideBeamNoise) for f in root.filters):
        root.addFilter(_HideBeamNoise())
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_HideBeamNoise())
        root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    # The extraction libraries log ERRORs per page they cannot parse ("empty HTML tree", several lines a page):
    # such a page is already its record's rejection (`no_text_extracted`), said once, in the lake.
    for name in ("apache_beam", "trafilatura", "htmldate", "courlan", "urllib3"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.CRITICAL)
    # A failing run is reported by run_command in one line; Beam's own ERROR log would add its traceback.
    logging.getLogger("apache_beam").setLevel(logging.INFO if verbose else logging.CRITICAL)
    logging.getLogger(NOTICES).setLevel(logging.ERROR if quiet else logging.NOTSET)


def _error(message: str) -> int:
    message = " ".join(line.strip() for line in str(message).splitlines() if line.strip())  # one line
    print(f"wirewash: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _run_parser() -> argparse.ArgumentParser:
    """The parser that `wirewash run --help` shows: wirewash's own options and the CLI's."""
    from wirewash.pipeline.options import WirewashOptions

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
    _add_cli_args(parser)
    return parser


def _add_cli_args(parser) -> None:
    parser.add_argument("--config", metavar="TOML",
                        help="read options from this TOML file (keys are option names: input, output, rules, "
                             "near_threshold, runner...); command-line flags win")
    parser.add_argument("--verbose", action="store_true", help="show Beam's and the libraries' INFO logs")
    parser.add_argument("--quiet", action="store_true",
                        help="print no progress and no notices: no first line, progress or window lines, stream "
                             "drain notice or summary; errors and the one line saying a run was interrupted stay")
    parser.add_argument("--progress", action="store_true",
                        help="print progress lines even when stderr is not a terminal (on a terminal, a live "
                             "progress bar is shown anyway for local runs)")


CLI_ONLY = ("config", "verbose", "quiet", "progress")


def _checking_parser():
    """A parser that knows every option a run accepts (Beam's, wirewash's, the CLI's) and raises UsageError
    instead of exiting: Beam itself silently discards arguments it does not know."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from wirewash.pipeline.beam_internals import beam_argument_parser

    import wirewash.pipeline.options  # noqa: F401  (registers WirewashOptions with PipelineOptions)

    class Parser(beam_argument_parser()):
        def error(self, message):
            # "argument --num_perm: must be ..." (a range type of pipeline/options.py) -> "--num_perm must be ..."
            raise UsageError(re.sub(r"^argument (--[\w-]+): (?=must be )", r"\1 ", message))

    parser = Parser(prog="wirewash run", allow_abbrev=False, add_help=False)
    seen = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)
    _add_cli_args(parser)
    return parser


def _runner_named(argv: list[str]) -> str | None:
    """The --runner of the command line, else of the --config file (read leniently: checked later)."""
    runner, config = None, None
    for i, arg in enumerate(argv):
        for name in ("--runner", "--config"):
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
            else:
                continue
            runner, config = (value, config) if name == "--runner" else (runner, value)
    if runner is None and config:
        try:
            import tomllib
            with open(config, "rb") as handle:
                data = tomllib.load(handle)
            runner = (data.get("run") or {}).get("runner") or data.get("runner")
        except (OSError, ValueError, AttributeError):
            pass
    return runner if isinstance(runner, str) else None


def _register_runner_options(argv: list[str]) -> bool:
    """Some runners declare their options in their own module (the DaskRunner's --dask_client_address...):
    import it first, so the checking parser knows them. A runner that cannot be imported is reported later,
    by the runner itself, in one sentence: then unknown options are left to it (returns False)."""
    import importlib

    from wirewash.pipeline.runners import is_dask_runner

    runner = _runner_named(argv)
    if not runner:
        return True
    if is_dask_runner(runner):
        module = "apache_beam.runners.dask.dask_runner"
    elif "." in runner:
        module = runner.rsplit(".", 1)[0]
    elif runner.lower() in ("renderrunner", "render"):
        module = "apache_beam.runners.render"
    elif runner.lower() in ("portablerunner", "flinkrunner", "sparkrunner"):
        return False  # a job server declares its own options (Flink's --checkpointing_interval...) at submit
    else:
        return True
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 (missing extra, bad name: the run's own checks say so)
        return False
    return True


def _check_unknown(unknown: list[str], parser) -> None:
    if not unknown:
        return
    from wirewash.pipeline.config import _actions, _suggest

    first = unknown[0]
    names = [f"--{n}" for n in _actions(parser)]
    if first.startswith("-"):
        flag = first.split("=", 1)[0]
        raise UsageError(f"unknown option {flag} for wirewash run{_suggest(flag, names)}; "
                         "see wirewash run --help")
    raise UsageError(f"unexpected argument {first!r} for wirewash run (inputs go after --input, e.g. "
                     f"--input {first}); see wirewash run --help")


def parse_run_args(argv: list[str]):
    """(parsed namespace, Beam argv) for `wirewash run` arguments, config file merged in.

    Raises UsageError for an unknown option, a bad value or a bad config file.
    """
    from wirewash.pipeline.config import config_to_argv, merge_argv

    runner_known = _register_runner_options(argv)
    parser = _checking_parser()
    known, unknown = parser.parse_known_args(argv)
    if runner_known:
        _check_unknown(unknown, parser)
    merged = argv
    if known.config:
        merged = merge_argv(config_to_argv(known.config, parser), argv, parser)
        known, unknown = parser.parse_known_args(merged)
        if runner_known:
            _check_unknown(unknown, parser)
    cli_only = {f"--{n}" for n in CLI_ONLY}
    beam_argv, skip = [], False
    for arg in merged:
        if skip:
            skip = False
            continue
        flag = arg.split("=", 1)[0]
        if flag in cli_only:
            skip = flag == "--config" and "=" not in arg
            continue
        beam_argv.append(arg)
    return known, beam_argv


def _print_summary(summary: dict, output: str, seconds: float) -> None:
    from wirewash.pipeline.summary_text import summary_lines

    print("\n".join(summary_lines(summary, output, seconds)), file=sys.stderr, flush=True)


def _is_local_runner(options) -> bool:
    from apache_beam.options.pipeline_options import StandardOptions

    from wirewash.pipeline.runners import is_local_runner

    return is_local_runner(options.view_as(StandardOptions).runner)


def run_command(argv: list[str], stop=None) -> int:
    """`wirewash run`. `stop` is the command's StopOnSignals (pipeline/lifetime.py): Ctrl-C / SIGTERM end the
    run with exit 130 and one line, whatever it is doing."""
    from wirewash.pipeline.lifetime import StopOnSignals

    with StopOnSignals() if stop is None else contextlib.nullcontext(stop) as stop, _StartUp() as started:
        try:
            return _run_command(argv, stop, started)
        except KeyboardInterrupt:
            if stop.requested:
                return _interrupted(stop.requested, "stopped before the run began; nothing was written")
            raise


class _StartUp:
    """The cycle collector paused from the command's start (Beam's imports, the options, the graph: a heap that
    only grows) to the run's (`done`, or leaving the block), then one collection and the survivors
    frozen (`gc.freeze`): they live as long as the run, and the collections during the run no longer walk them.
    Left running, the collector walked that growing heap ~400 times during start-up (~0.19 s of CPU at 20
    records, three of them full collections). Nothing a run computes changes."""

    def __enter__(self):
        self.paused = gc.isenabled()
        gc.disable()
        return self

    def done(self) -> None:
        if self.paused:
            self.paused = False
            gc.collect()  # the start-up's own garbage (cycles) goes now, rather than being frozen with the rest
            gc.freeze()
            gc.enable()

    def __exit__(self, *exc):
        self.done()


def _run_command(argv: list[str], stop, started: "_StartUp | None" = None) -> int:
    if any(a in ("-h", "--help") for a in argv):
        _run_parser().print_help()
        return EXIT_OK
    args, beam_argv = parse_run_args(argv)
    configure_logging(args.verbose, args.quiet)

    from apache_beam.options.pipeline_options import PipelineOptions

    from wirewash.pipeline.build import build_pipeline, remove_spill
    from wirewash.pipeline.settings import settings_from_options
    from wirewash.pipeline.input_files import InputError
    from wirewash.pipeline.lake import SUMMARY_FILE, LakeExistsError, short_error
    from wirewash.pipeline.progress import ProgressDisplay, StreamLines, start_line, stream_file_counter
    from wirewash.pipeline.timing import process_started, run_timing

    options = PipelineOptions(beam_argv)
    display = None
    try:
        settings = settings_from_options(options)
        if settings.skipped_inputs and not args.quiet:
            print(f"wirewash: skipped {settings.skipped_inputs} files inside the output lake {settings.output} "
                  "(a lake never reads its own files)", file=sys.stderr)
        live = sys.stderr.isatty()
        if not args.quiet and (live or args.progress) and _is_local_runner(options) and not settings.streaming:  # a stream has its own lines
            display = ProgressDisplay([f.path for f in settings.files], live=live, output=settings.output)
        # the first line, once the run is checked: what it reads or watches
        announce = None if args.quiet else lambda: print(start_line(options, settings), file=sys.stderr, flush=True)
        pipeline = build_pipeline(options, settings, progress_dir=display.folder if display else None,
                                  announce=announce)
    except OSError as err:
        if display:
            display.discard()
        if err.filename and err.strerror:  # e.g. a --rules file that is not there: no "[Errno 2]" noise
            return _error(f"{err.filename}: {err.strerror.lower()}")
        return _error(str(err))
    except (InputError, LakeExistsError, ValueError) as err:
        if display:
            display.discard()
        return _error(str(err))
    if stop.requested:  # a KeyboardInterrupt was swallowed while the pipeline was built
        shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)
        remove_spill(pipeline)
        if display:
            display.discard()
        return _interrupted(stop.requested, "stopped before the run began; nothing was written")
    run_started = time.time()
    summary = None
    try:
        if settings.streaming:  # runs until drained (Ctrl-C / SIGTERM); see streaming.py
            from wirewash.pipeline.streaming import run_streaming
            lines = not args.quiet and _is_local_runner(options)
            with StreamLines(stream_file_counter(options)) if lines else contextlib.nullcontext():
                if started:
                    started.done()
                summary = run_streaming(pipeline, settings.output, quiet=args.quiet)
        else:
            # Local worker processes are quiet by themselves (pipeline/worker.py, started by resolve_runner).
            _arm(stop, options, settings.output, pipeline, display)
            with display or contextlib.nullcontext():
                try:
                    if started:
                        started.done()
                    result = pipeline.run()
                    result.wait_until_finish()
                finally:
                    remove_spill(pipeline)
    except Exception as err:  # a full disk or a lost output folder mid-run: one line, not a Beam traceback
        if stop.interrupted:
            return _interrupted(stop.interrupted, f"stopped during the commit, which failed: {short_error(err)}")
        if args.verbose:
            raise
        return _failed(err, settings.output, streaming=settings.streaming)
    if stop.interrupted:  # the signal came during the commit, which was let finish
        return _interrupted(stop.interrupted, f"the commit had begun and was let finish: {settings.output} is "
                                              "a complete lake")
    seconds = time.time() - process_started()

    from apache_beam.io.filesystems import FileSystems
    summary_path = FileSystems.join(settings.output, SUMMARY_FILE)
    if summary is None:  # a batch run: its `timing` joins its record in the lake's `runs`
        from apache_beam.options.pipeline_options import DirectOptions

        from wirewash.pipeline.lake_summary import add_to_run
        timing = run_timing(result, process_started(), run_started,
                            options.view_as(DirectOptions).direct_num_workers or 1)
        seconds = timing["wall_seconds"]
        try:
            summary = add_to_run(settings.output, pipeline.wirewash_run["run_id"], {"timing": timing})
        except Exception as err:  # noqa: BLE001 - the lake is committed; its timing is a report
            logging.getLogger(__name__).warning("wirewash: the run's timing was not recorded: %s", short_error(err))
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


def _arm(stop, options, output: str, pipeline, display) -> None:
    """Local batch runs: from now on SIGINT / SIGTERM stop the run at once, commit nothing, kill every child
    process and exit 130 (pipeline/lifetime.py). Other runners get Python's default (KeyboardInterrupt)."""
    from wirewash.pipeline.build import temporary_folders
    from wirewash.pipeline.lake import STAGING_DIR, SUMMARY_FILE

    if not _is_local_runner(options):
        stop.disarm()
        return
    folders = temporary_folders(pipeline) + ([display.folder] if display else [])
    cleanup = tuple((lambda f=f: shutil.rmtree(f, ignore_errors=True)) for f in folders)
    lake = output.rstrip("/") or output
    stop.arm(output, os.path.join(lake, STAGING_DIR), cleanup, summary=os.path.join(lake, SUMMARY_FILE))


def _interrupted(signal_name: str, what: str) -> int:
    print(f"wirewash: interrupted ({signal_name}): {what}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _failed(err: BaseException, output: str, streaming: bool = False) -> int:
    """One line for a run that failed inside the pipeline (a full disk, a lost output folder...): the innermost
    cause of Beam's wrapped error; the trace only with --verbose."""
    from wirewash.pipeline.lake import remove_staging, short_error

    logging.getLogger(__name__).debug("run failed", exc_info=True)
    if streaming:  # windows committed before the failure stay; the summary says what they hold
        print(f"wirewash: error: the stream failed: {short_error(err)} (--verbose shows Beam's log)",
              file=sys.stderr)
        return EXIT_FAILED
    remove_staging(output)  # give back the space (a full disk is a common cause)
    print(f"wirewash: error: the run failed, nothing was committed to {output}: {short_error(err)} "
          "(--verbose shows Beam's log)", file=sys.stderr)
    return EXIT_FAILED


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one sentence) instead of printing usage and exiting."""

    def error(self, message):
        raise UsageError(f"{message}; see {self.prog} --help")


def _end_quietly_on_broken_pipe() -> int:
    """The reader of our output left (`wirewash query ... | head`): not an error. Later writes to stdout (the
    interpreter's final flush) go to /dev/null instead of raising again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_OK


@contextlib.contextmanager
def _output_file(path: str, binary: bool):
    """Opens `path` for the result; a regular file (or a new one) is written aside and renamed into place
    only when the whole result is written, so a failed or stopped query leaves no partial file."""
    mode = "wb" if binary else "w"
    kwargs = {} if binary else {"encoding": "utf-8", "newline": ""}
    if os.path.exists(path) and not os.path.isfile(path):  # /dev/null, a FIFO...: write straight through
        with open(path, mode, **kwargs) as handle:
            yield handle
        return
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def query_command(argv: list[str]) -> int:
    from wirewash.pipeline.query import DEFAULT_TIMEOUT, FORMATS

    parser = _Parser(
        prog="wirewash query",
        description="Run one SQL SELECT over a lake with DuckDB. Tables: documents (with columns lang and date, "
                    "both text, and ingest_date in the ingest layout), duplicates, rejected. The lake is opened read-only; the result "
                    "streams in batches.")
    parser.add_argument("lake", help="lake folder written by wirewash run")
    parser.add_argument("sql", help="one SQL statement, e.g. \"SELECT lang, count(*) FROM documents GROUP BY lang\"")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="output format (default: table); json is one object per line; parquet needs --out")
    parser.add_argument("--out", metavar="FILE",
                        help="write the result to this file (never inside the lake) instead of printing it")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="return at most N rows (0: none, only the header)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"stop a query running longer than this (default: {DEFAULT_TIMEOUT:g}; 0: no limit)")
    args = parser.parse_args(argv)
    if args.format == "parquet" and not args.out:
        raise UsageError("--format parquet writes a file: add --out FILE.parquet")
    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit must be 0 or more, not {args.limit}")
    if not args.timeout >= 0 or args.timeout == float("inf"):
        raise UsageError(f"--timeout must be a number of seconds, 0 or more (0: no limit), not {args.timeout}")

    import duckdb

    from wirewash.pipeline.query import (LakeChangedError, LakeNotFoundError, QueryNotAllowedError, QueryTimeoutError,
                                ResultNotWritableError, check_out_path, check_read_only, export)

    try:
        check_read_only(args.sql)
        if args.out:
            check_out_path(args.lake, args.out)
            with _output_file(args.out, binary=args.format == "parquet") as handle:
                rows = export(args.lake, args.sql, handle, args.format, args.limit, args.timeout)
            print(f"wirewash: {rows} row{'s' if rows != 1 else ''} written to {args.out}", file=sys.stderr)
        else:
            export(args.lake, args.sql, sys.stdout, args.format, args.limit, args.timeout)
            sys.stdout.flush()
    except BrokenPipeError:
        return _end_quietly_on_broken_pipe()
    except (LakeNotFoundError, QueryNotAllowedError, ResultNotWritableError) as err:
        return _error(str(err))
    except (QueryTimeoutError, LakeChangedError) as err:
        print(f"wirewash: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except duckdb.Error as err:
        return _error(f"query failed: {str(err).splitlines()[0]}")
    except OSError as err:
        if err.errno is None:  # DuckDB reports the failure of a streamed Arrow result as a plain OSError
            return _error(f"query failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
        return _error(f"cannot write {args.out or 'the result'}: {err.strerror or err}")
    return EXIT_OK


def report_command(argv: list[str]) -> int:
    parser = _Parser(
        prog="wirewash report",
        description="Write LAKE/_REPORT.html: a self-contained page (no network) with the run's counts per "
                    "stage, languages, documents per day and per source, duplicate clusters, boilerplate "
                    "removed per rule and rejected records by reason.")
    parser.add_argument("lake", help="lake folder written by wirewash run")
    parser.add_argument("--out", metavar="FILE", help="where to write the page (default: LAKE/_REPORT.html)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)

    import duckdb

    from wirewash.pipeline.query import LakeChangedError, LakeNotFoundError
    from wirewash.pipeline.report import write_report

    try:
        path = write_report(args.lake, args.out)
    except LakeNotFoundError as err:
        return _error(str(err))
    except (duckdb.Error, LakeChangedError) as err:  # a damaged file, a lake replaced meanwhile
        print(f"wirewash: error: cannot read the lake: {str(err).splitlines()[0]}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as err:
        return _error(f"cannot write the report: {err.strerror or err}")
    if not args.quiet:
        try:
            print(f"wirewash: report written to {path}", flush=True)
        except BrokenPipeError:
            return _end_quietly_on_broken_pipe()
    return EXIT_OK


def ddl_command(argv: list[str]) -> int:
    from wirewash.pipeline.ddl import DIALECTS, lake_ddl

    parser = _Parser(
        prog="wirewash ddl",
        description="Print the SQL that declares the lake's three tables as external tables (partition columns "
                    "lang and date declared, or ingest_date in the ingest layout), for DuckDB, BigQuery, Athena or Spark SQL.")
    parser.add_argument("lake", help="lake folder written by wirewash run (read for its schema)")
    parser.add_argument("--dialect", choices=DIALECTS, default="duckdb", help="SQL dialect (default: duckdb)")
    parser.add_argument("--location", metavar="URI",
                        help="where the tables will be read from, if not LAKE itself: e.g. gs://bucket/lake "
                             "after uploading it")
    parser.add_argument("--schema", metavar="NAME",
                        help="dataset / database to create the tables in (BigQuery needs one; default: wirewash)")
    args = parser.parse_args(argv)

    from wirewash.pipeline.query import LakeNotFoundError

    try:
        print(lake_ddl(args.lake, args.dialect, location=args.location, schema=args.schema))
        sys.stdout.flush()
    except BrokenPipeError:
        return _end_quietly_on_broken_pipe()
    except (LakeNotFoundError, ValueError) as err:  # pyarrow's ArrowInvalid (a damaged file) is a ValueError
        return _error(str(err))
    except OSError as err:
        return _error(f"cannot read the lake: {err.strerror or err}")
    return EXIT_OK


def compact_command(argv: list[str]) -> int:
    parser = _Parser(
        prog="wirewash compact",
        description="Rewrite the small Parquet files of each partition of a lake (left by appends and streaming "
                    "windows) into large ones, without changing a row; readers of the lake's file list see the "
                    "old files or the new ones, never both.")
    parser.add_argument("lake", help="lake folder written by wirewash run")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)

    from wirewash.pipeline.compact import compact
    from wirewash.pipeline.lake import LakeExistsError

    try:
        done = compact(args.lake)
    except LakeExistsError as err:
        return _error(str(err))
    except OSError as err:
        return _error(f"cannot compact {args.lake}: {err.strerror or err}")
    if not args.quiet:
        print(f"wirewash: {done['merged']} files rewritten as {done['written']}" if done["merged"]
              else "wirewash: nothing to compact (one file per partition already)")
    return EXIT_OK


COMMANDS = {"run": run_command, "query": query_command, "report": report_command, "ddl": ddl_command,
            "compact": compact_command}
SUMMARIES = {"run": "build a lake", "query": "SQL over a lake", "report": "write LAKE/_REPORT.html",
             "ddl": "external-table DDL for a lake", "compact": "merge a lake's small files"}


def _main(argv: list[str] | None, stop) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging(verbose="--verbose" in argv)
    top = argparse.ArgumentParser(
        prog="wirewash",
        description="Clean, deduplicated, language-tagged Parquet lakes from messy news articles.",
        epilog="Commands: " + "; ".join(f"{c} ({s})" for c, s in SUMMARIES.items()) +
               ". 'wirewash COMMAND --help' shows a command's options.")
    top.add_argument("command", choices=list(COMMANDS), help="what to do")
    top.add_argument("--version", action="store_true", help="print wirewash's version and exit")
    if argv[:1] == ["--version"]:
        print(f"wirewash {wirewash_version()}")
        return EXIT_OK
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        if not argv:  # a mistake like any other: its one line on stderr, after the help
            return _error(f"no command given; choose from {', '.join(COMMANDS)}")
        return EXIT_OK
    if argv[0] not in COMMANDS:
        return _error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)} "
                      "(wirewash --help lists them)")
    with_nul = next((arg for arg in argv if "\0" in arg), None)
    if with_nul is not None:  # a command line cannot hold one; a program calling main can: no path or value does
        return _error(f"argument {with_nul!r} holds a NUL character, which no path, value or SQL can contain")
    try:
        if argv[0] == "run":
            return run_command(argv[1:], stop)
        return COMMANDS[argv[0]](argv[1:])
    except UsageError as err:
        return _error(str(err))


def main(argv: list[str] | None = None) -> int:
    """The `wirewash` command. SIGINT and SIGTERM end any command with one line and exit 130 (a local run:
    see `run_command`)."""
    from wirewash.pipeline.lifetime import StopOnSignals

    with StopOnSignals() as stop:
        try:
            return _main(argv, stop)
        except KeyboardInterrupt:
            print(f"wirewash: interrupted{f' ({stop.requested})' if stop.requested else ''}", file=sys.stderr)
            return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
