"""The CLI around the pipeline: user mistakes, the config file, progress, query formats and the DDL."""
from __future__ import annotations

import gzip
import io
import json
import time

import duckdb
import pyarrow.parquet as pq
import pytest

from wirewash.pipeline.cli import _checking_parser, main, parse_run_args
from wirewash.pipeline.config import UsageError, config_to_argv, merge_argv
from wirewash.pipeline.ddl import lake_ddl
from wirewash.pipeline.progress import ProgressDisplay, estimate_records, read_counts
from tests.helpers import ARTICLE_DE, ARTICLE_EN, ARTICLE_VI, lake_rows, summary, write_jsonl

RECORDS = [
    {"id": "en", "url": "https://a.example/en", "source": "a.example", "published": "2024-03-01T08:00:00Z",
     "text": ARTICLE_EN + "\n\nFollow the wirewash desk for more"},
    {"id": "en-copy", "url": "https://b.example/en", "source": "b.example", "published": "2024-03-02T08:00:00Z",
     "text": ARTICLE_EN},
    {"id": "vi", "source": "c.example", "published": "2024-03-03", "text": ARTICLE_VI},
    {"id": "de", "text": ARTICLE_DE},
    "{not json",
    {"id": "blank", "text": " "},
]


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wirewash: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    out = folder / "lake"
    assert main(["run", "--input", str(write_jsonl(folder / "in.jsonl", RECORDS)), "--output", str(out),
                 "--quiet", "--ingested_at", "2024-04-01T00:00:00Z"]) == 0
    return out


# --- user mistakes: one sentence, non-zero exit, never a trace -------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["frobnicate"], "unknown command 'frobnicate'"),
    ([], "no command given; choose from run, query, report, ddl, compact"),
    (["report", "lake\0"], "argument 'lake\\x00' holds a NUL character"),
    (["run", "--input", "a\0b"], "holds a NUL character"),
    (["run", "--inptu", "x.jsonl"], "unknown option --inptu for wirewash run (did you mean '--input'?)"),
    (["run", "--near-threshold=0.9"], "unknown option --near-threshold"),
    (["run", "seeds/"], "unexpected argument 'seeds/'"),
    (["run", "--num_perm", "many"], "--num_perm must be a whole number from 16 to 1024, got 'many'"),
    (["run", "--near_threshold", "2"], "--near_threshold must be a number in (0, 1], got '2'"),
    (["run", "--runner", "NoSuchRunner"], "unknown runner 'NoSuchRunner' for --runner; choose one of "),
    (["run", "--runner", "apache_beam.runners.NoSuchRunner"], "apache_beam.runners has no runner class 'NoSuchRunner'"),
    (["run", "--runner", "no_such_module.Runner"], "--runner no_such_module.Runner cannot be loaded here"),
    (["run", "--rules", "/nonexistent/rules.toml"], "/nonexistent/rules.toml: no such file or directory"),
    (["run", "--config", "/nonexistent/wirewash.toml"], "config file /nonexistent/wirewash.toml does not exist"),
    (["query", "/nonexistent/lake", "SELECT 1"], "is not a wirewash lake"),
    (["query"], "the following arguments are required: lake, sql"),
    (["ddl", "/nonexistent/lake", "--dialect", "oracle"], "argument --dialect: invalid choice: 'oracle'"),
    (["report", "/nonexistent/lake"], "is not a wirewash lake"),
])
def test_user_mistakes_are_one_sentence(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --output lake/ is relative: never the caller's folder
    assert main(argv) == 2
    assert expected in one_error_line(capsys)


BAD_VALUES = {
    "--ingested_at": ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z", "yesterday",
                      "2024-13-01", "", "\u0662\u0660\u0662\u0664-01-01x"],
    "--minhash_seed": ["-5", "18446744073709551616", "1.5", "0x10", ""],
    "--max_record_bytes": ["1e20", "99999999999999999999", "0", "-1", "1023", "nan", "9" * 5000],
    "--max_decompressed_bytes": ["1e3", "-1", str(1 << 60)],
    "--near_threshold": ["0", "-0.1", "1.0001", "nan", "inf", "-inf", "1e400", ""],
    "--num_perm": ["15", "1025", "0", "-128", "128.0"],
    "--near_window_days": ["-1", "nan", "inf", "1e9"],
    "--window_seconds": ["0", "0.4", "-60", "nan", "86401", "inf"],
    "--allowed_lateness": ["-1", "nan", "inf", "1e12"],
    "--dedup_retention": ["-1", "nan", "inf", "1e12"],
    "--poll_interval": ["0", "0.05", "-2", "nan", "3601"],
}


@pytest.mark.parametrize("option, value", [(o, v) for o, values in BAD_VALUES.items() for v in values])
def test_bad_option_values_stop_before_any_work(tmp_path, capsys, option, value):
    """Out of range, not finite or unparseable: one sentence naming the option, exit 2, and nothing touched
    (the output folder is not even created)."""
    out = tmp_path / "lake"
    argv = ["run", "--input", str(write_jsonl(tmp_path / "in.jsonl", RECORDS[:1])), "--output", str(out),
            f"{option}={value}"]
    assert main(argv) == 2
    assert f"{option} must be " in one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("argv, expected", [
    (["--max_record_bytes", "4096", "--max_decompressed_bytes", "2048"], "--max_decompressed_bytes must be at least"),
    (["--window_seconds", "100", "--dedup_retention", "5"], "--dedup_retention (5 s) must be at least one window"),
    (["--direct_num_workers", "-3"], "--direct_num_workers must be from 0 (one per core) to 256, got -3"),
    (["--direct_num_workers", "100000"], "--direct_num_workers must be from 0 (one per core) to 256"),
])
def test_rules_between_options_stop_before_any_work(tmp_path, capsys, argv, expected):
    out = tmp_path / "lake"
    assert main(["run", "--input", str(write_jsonl(tmp_path / "in.jsonl", RECORDS[:1])), "--output", str(out),
                 *argv]) == 2
    assert expected in one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("argv, expected", [(["--runner", "NoSuchRunner"], "unknown runner 'NoSuchRunner'"),
                                            (["--runner", "apache_beam.runners.Nope"], "has no runner class 'Nope'"),
                                            (["--direct_num_workers", "-1"], "--direct_num_workers must be")])
def test_a_bad_option_value_is_named_before_any_file_is_touched(tmp_path, monkeypatch, capsys, argv, expected):
    """A bad value (an unknown runner, an out-of-range count) is the error, whatever the folders hold: not the
    missing input, nor the default output lake/ that a stale run left as a non-lake folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lake" / "_staging" / "old").mkdir(parents=True)
    assert main(["run", "--input", "missing.jsonl", *argv]) == 2
    assert expected in one_error_line(capsys)
    assert [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*"))] == \
        ["lake", "lake/_staging", "lake/_staging/old"]


@pytest.mark.parametrize("argv", [["--runner", "NoSuchRunner"], ["--rules", "/nonexistent/rules.toml"]])
def test_a_mistake_found_while_building_leaves_no_output_folder(tmp_path, monkeypatch, capsys, argv):
    """Some mistakes show only once the output was probed (Beam names an unknown runner when the pipeline is
    made, a rule file is read when its stage is): the folder the probe made goes again, an existing one
    keeps nothing of the run."""
    monkeypatch.chdir(tmp_path)
    existing = tmp_path / "existing"
    existing.mkdir()
    assert main(["run", *argv]) == 2
    one_error_line(capsys)
    assert not (tmp_path / "lake").exists()
    assert main(["run", "--output", str(existing), *argv]) == 2
    one_error_line(capsys)
    assert list(existing.iterdir()) == []


def test_every_valued_option_declares_its_range():
    """By construction: each wirewash option that takes a number or a time is parsed by a range-checking
    type from pipeline/options.py, never by a bare int/float (which lets -5, 1e20, nan or inf through)."""
    from wirewash.pipeline.cli import _run_parser
    from wirewash.pipeline.options import Integer, Number, Timestamp
    actions = [a for a in _run_parser()._actions if a.option_strings and a.nargs != 0]
    assert all(a.type not in (int, float) for a in actions), [a.dest for a in actions if a.type in (int, float)]
    typed = {a.dest for a in actions if isinstance(a.type, (Integer, Number, Timestamp))}
    assert typed >= {"max_record_bytes", "max_decompressed_bytes", "near_threshold", "num_perm", "minhash_seed",
                     "near_window_days", "ingested_at", "window_seconds", "allowed_lateness", "dedup_retention",
                     "poll_interval"}


def test_range_types_accept_their_bounds_and_normalize():
    from wirewash.pipeline.options import Integer, Number, Timestamp
    assert Integer(0, 2**64 - 1)(str(2**64 - 1)) == 2**64 - 1 and Integer(16, 1024)(" 16 ") == 16
    assert Number(0.0, 1.0, low_open=True)("1") == 1.0 and Number(0.0, 5.0)("0") == 0.0
    assert Timestamp()("9999-12-31T23:59:59Z") == "9999-12-31T23:59:59+00:00"
    assert Timestamp()("2024-01-01T01:00:00+01:00") == "2024-01-01T00:00:00+00:00"
    assert Timestamp()("2024-01-01") == "2024-01-01T00:00:00+00:00"


def test_version(capsys):
    from importlib.metadata import version
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"wirewash {version('wirewash')}\n"


def test_pipeline_failure_is_one_line(tmp_path, capsys):
    """Beam wraps a worker's exception in its own; the user sees the innermost cause, once."""
    from wirewash.pipeline.cli import _failed
    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError as cause:
            raise RuntimeError("Pipeline failed\nTraceback (most recent call last):\n  File \"x.py\"") from cause
    except RuntimeError as wrapped:
        assert _failed(wrapped, str(tmp_path / "lake")) == 1
    line = one_error_line(capsys)
    assert "the run failed, nothing was committed to" in line and "No space left on device" in line


def test_unknown_run_option_stops_before_running(tmp_path, capsys):
    """Beam alone would discard `--overwirte` silently and run; wirewash refuses."""
    out = tmp_path / "lake"
    assert main(["run", "--input", str(write_jsonl(tmp_path / "in.jsonl", RECORDS[:1])), "--output", str(out),
                 "--overwirte"]) == 2
    assert "did you mean '--overwrite'" in one_error_line(capsys)
    assert not out.exists()


def test_beam_options_still_pass(tmp_path):
    known, beam_argv = parse_run_args(["--input", "a.jsonl", "--runner", "FnApiRunner", "--direct_num_workers=2",
                                       "--quiet", "--progress"])
    assert known.direct_num_workers == 2 and known.quiet and known.progress
    assert beam_argv == ["--input", "a.jsonl", "--runner", "FnApiRunner", "--direct_num_workers=2"]


def test_runner_specific_options_are_known(tmp_path):
    """The DaskRunner declares --dask_client_address in its own module: a run naming that runner (on the
    command line or in the config file) accepts it, and a typo in it is still caught."""
    known, _ = parse_run_args(["--runner=DaskRunner", "--dask_client_address", "tcp://127.0.0.1:8786"])
    assert known.address == "tcp://127.0.0.1:8786"
    config = tmp_path / "wirewash.toml"
    config.write_text('runner = "DaskRunner"\ndask_client_address = "tcp://127.0.0.1:8786"\n')
    known, _ = parse_run_args(["--config", str(config)])
    assert known.address == "tcp://127.0.0.1:8786"
    with pytest.raises(UsageError, match="did you mean '--dask_client_address'"):
        parse_run_args(["--runner=DaskRunner", "--dask_client_adress", "tcp://127.0.0.1:8786"])


def test_empty_glob_and_missing_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["run", "--input", str(tmp_path / "empty" / "*.jsonl"), "--output", str(tmp_path / "l")]) == 2
    assert "nothing matches" in one_error_line(capsys)
    assert main(["run", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "l")]) == 2
    one_error_line(capsys)


def test_bad_rule_file_is_one_sentence_and_leaves_no_temp_folder(tmp_path, capsys, monkeypatch):
    import tempfile
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where Beam makes its pipeline's temp folder
    rules = tmp_path / "rules.toml"
    rules.write_text('[rules.bad]\nen = ["(unclosed"]\n')
    assert main(["run", "--input", str(write_jsonl(tmp_path / "in.jsonl", RECORDS[:1])), "--output",
                 str(tmp_path / "l"), "--rules", str(rules)]) == 2
    assert "bad pattern" in one_error_line(capsys)
    assert list(scratch.iterdir()) == []  # Beam removes it at the end of run(); a failed build never runs


# --- config file ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("near_treshold = 0.9\n", "unknown option 'near_treshold' (did you mean 'near_threshold'?)"),
    ('near_threshold = "high"\n', "--near_threshold must be a number in (0, 1], got 'high'"),
    ("max_record_bytes = 1e20\n", "--max_record_bytes must be a whole number from 1024 to"),
    ("num_perm = 64.5\n", "--num_perm must be a whole number"),
    ("minhash_seed = -5\n", "--minhash_seed must be a whole number from 0 to"),
    ("near_window_days = nan\n", "--near_window_days must be a number in [0, 36600], got 'nan'"),
    ("ingested_at = 12:00:00\n", "--ingested_at must be an ISO-8601 timestamp"),
    ("ingested_at = 9999-12-31T23:59:59-14:00\n", "--ingested_at must be an ISO-8601 timestamp"),
    ("near_threshold = true\n", "near_threshold must be a number, got True"),
    ("overwrite = 1\n", "overwrite must be true or false"),
    ('output = ["a", "b"]\n', "output takes one value, got a list"),
    ("input = [\n", "is not valid TOML"),
])
def test_bad_config_values(tmp_path, text, expected, capsys):
    config = tmp_path / "wirewash.toml"
    config.write_text(text)
    assert main(["run", "--config", str(config)]) == 2
    line = one_error_line(capsys)
    assert expected in line and str(config) in line


def test_config_to_argv_and_merge(tmp_path):
    config = tmp_path / "wirewash.toml"
    config.write_text('input = ["a.jsonl", "gs://bucket/b.jsonl"]\noutput = "lake"\nno_near_dedup = true\n'
                      'overwrite = false\nnum_perm = 64\nrunner = "FnApiRunner"\n')
    parser = _checking_parser()
    argv = config_to_argv(str(config), parser)
    assert argv == [f"--input={tmp_path}/a.jsonl", "--input=gs://bucket/b.jsonl", f"--output={tmp_path}/lake",
                    "--no_near_dedup", "--num_perm=64", "--runner=FnApiRunner"]
    merged = merge_argv(argv, ["--input", "c.jsonl", "--num_perm=32"], parser)
    args, _ = parser.parse_known_args(merged)
    assert args.input == ["c.jsonl"] and args.num_perm == 32 and args.no_near_dedup
    config.write_text('[run]\nnum_perm = 64\n')
    assert config_to_argv(str(config), parser) == ["--num_perm=64"]
    with pytest.raises(UsageError, match="unknown option 'config'"):
        config.write_text('config = "other.toml"\n')
        config_to_argv(str(config), parser)


def test_config_file_drives_a_run_and_flags_win(tmp_path):
    """Every option from the file (relative paths from the file's folder), user rules added to the packaged
    ones, and a command-line flag that overrides the file."""
    project = tmp_path / "project"
    project.mkdir()
    write_jsonl(project / "in.jsonl", RECORDS)
    (project / "house_rules.toml").write_text('[rules.desk_promo]\nen = ["^follow the wirewash desk"]\n')
    (project / "wirewash.toml").write_text(
        'input = ["in.jsonl"]\noutput = "lake-from-config"\nrules = ["house_rules.toml"]\nquiet = true\n'
        'no_near_dedup = true\ningested_at = "2024-04-01T00:00:00Z"\nnear_threshold = 0.9\n')
    out = tmp_path / "lake-from-flag"
    assert main(["run", "--config", str(project / "wirewash.toml"), "--output", str(out)]) == 0
    assert not (project / "lake-from-config").exists()
    s = summary(out)
    assert s["boilerplate_lines_removed"].get("desk_promo") == 1
    assert (s["records_read"], s["documents"], s["duplicates"], s["rejected"]) == (6, 3, 1, 2)
    assert all("Follow the wirewash desk" not in d["text"] for d in lake_rows(out, "documents"))


# --- progress ------------------------------------------------------------------------------------------

def test_estimate_records(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"a":1}\n{"a":2}\n{"a":3}')
    with gzip.open(tmp_path / "b.jsonl.gz", "wb") as handle:
        handle.write(b'{"a":1}\n{"a":2}\n')
    (tmp_path / "c.txt").write_text("one article")
    paths = [str(tmp_path / n) for n in ("a.jsonl", "b.jsonl.gz", "c.txt")]
    assert estimate_records(paths) == 6
    assert estimate_records(paths + ["gs://bucket/x.jsonl"]) is None
    (tmp_path / "d.jsonl").write_bytes(gzip.compress(b'{"a":1}\n' * 4))  # gzip under a plain name: inflated
    assert estimate_records(paths + [str(tmp_path / "d.jsonl")]) == 10


def test_progress_channel_counts_match_the_lake(lake, tmp_path):
    """The counting side branches write the same numbers as the lake holds (here through the CLI's plain
    progress lines, which end with the final counts)."""
    err = io.StringIO()
    import contextlib
    with contextlib.redirect_stderr(err):
        assert main(["run", "--input", str(lake.parent / "in.jsonl"), "--output", str(tmp_path / "l"),
                     "--progress"]) == 0
    s = summary(tmp_path / "l")
    expected = f"[done] {s['documents']} documents, {s['duplicates']} duplicates, {s['rejected']} rejected"
    assert expected in err.getvalue()
    assert "apitools" not in err.getvalue() and "Prism" not in err.getvalue()


@pytest.mark.slow
def test_multi_processing_workers_stay_quiet(tmp_path, capfd):
    """Beam's worker subprocesses log their import noise straight to file descriptor 2; none of it shows."""
    out = tmp_path / "l"
    assert main(["run", "--input", str(write_jsonl(tmp_path / "in.jsonl", RECORDS)), "--output", str(out),
                 "--direct_running_mode", "multi_processing", "--direct_num_workers", "2", "--progress"]) == 0
    lines = capfd.readouterr().err.strip().splitlines()
    assert all(line.startswith(("wirewash", "  ", "next:")) for line in lines), lines
    assert lines[0] == "wirewash: reading 1 file, 2 kB"
    assert [line.split("] ", 1)[1] for line in lines if "[done]" in line] == [
        "3 documents, 1 duplicates, 2 rejected"]
    assert summary(out)["reconciled"]


def test_live_line_reads_the_channel(tmp_path):
    """On a terminal one line, redrawn in place, shows what the workers' progress files say: the phase and
    its progress against the estimated total; the line is cleared at the end for the summary."""
    (tmp_path / "in.jsonl").write_text("{}\n" * 40)
    stream = io.StringIO()
    with ProgressDisplay([str(tmp_path / "in.jsonl")], live=True, stream=stream) as display:
        for kind, count in (("read", 12), ("read", 8), ("cleaned", 15), ("rejected", 2)):
            (tmp_path / "x").write_text(json.dumps({"kind": kind, "count": count}))
            (tmp_path / "x").rename(f"{display.folder}/{kind}-{count}.json")
        assert read_counts(display.folder) == {"read": 20, "cleaned": 15, "documents": 0, "duplicates": 0,
                                               "rejected": 2}
        time.sleep(1.3)
    shown = stream.getvalue()
    assert "\r" in shown and "[1/4 read and clean] [#####-------] 17/40 records (42%), 2 rejected" in shown
    assert shown.endswith("\r\x1b[K")


# --- query formats ---------------------------------------------------------------------------------------

SQL = "SELECT doc_id, lang FROM documents ORDER BY doc_id"


def test_query_formats(lake, tmp_path, capsys):
    assert main(["query", str(lake), SQL]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["doc_id", "|", "lang"] and table[-1] == "(3 rows)"
    assert main(["query", str(lake), SQL, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["doc_id,lang", "de,de", "en,en", "vi,vi"]
    assert main(["query", str(lake), SQL, "--format", "json", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"doc_id": "de", "lang": "de"}
    out = tmp_path / "result.parquet"
    assert main(["query", str(lake), "SELECT lang, date, count(*) AS n FROM documents GROUP BY ALL ORDER BY lang",
                 "--format", "parquet", "--out", str(out)]) == 0
    assert pq.read_table(out).to_pylist() == [{"lang": "de", "date": "unknown", "n": 1},
                                             {"lang": "en", "date": "2024-03-01", "n": 1},
                                             {"lang": "vi", "date": "2024-03-03", "n": 1}]
    assert main(["query", str(lake), SQL, "--format", "csv", "--out", str(tmp_path / "r.csv")]) == 0
    assert (tmp_path / "r.csv").read_text().splitlines()[1] == "de,de"


def test_query_mistakes(lake, capsys):
    assert main(["query", str(lake), SQL, "--format", "parquet"]) == 2
    assert "--out" in one_error_line(capsys)
    assert main(["query", str(lake), "SELECT nope FROM documents"]) == 2
    assert "query failed" in one_error_line(capsys)
    assert main(["query", str(lake), "COPY documents TO '/tmp/x.csv'"]) == 2
    one_error_line(capsys)


# --- DDL -------------------------------------------------------------------------------------------------

def test_duckdb_ddl_reads_the_lake(lake, capsys):
    assert main(["ddl", str(lake), "--dialect", "duckdb"]) == 0
    con = duckdb.connect()
    con.execute(capsys.readouterr().out)
    assert con.execute("SELECT lang, date FROM documents ORDER BY lang").fetchall() == [
        ("de", "unknown"), ("en", "2024-03-01"), ("vi", "2024-03-03")]
    # the trailing "Follow the wirewash desk for more" is an edge fragment: the two copies are exact
    assert con.execute("SELECT doc_id, duplicate_of, kind FROM duplicates").fetchall() == [("en-copy", "en", "exact")]
    assert con.execute("SELECT count(*) FROM rejected").fetchone() == (2,)
    # lang and date live in the folder names only, never in the files
    files = list((lake / "documents").rglob("*.parquet"))
    assert files and all({"lang", "date"}.isdisjoint(pq.read_schema(f).names) for f in files)


def test_quiet_run_then_duckdb_ddl_for_empty_tables(tmp_path, seeds_dir, capsys):
    """--quiet prints nothing (even with --progress); the seeds have no duplicate and no rejection, and the
    DuckDB DDL still declares those tables (DuckDB cannot read an empty glob)."""
    lake = tmp_path / "seeds-lake"
    assert main(["run", "--input", str(seeds_dir), "--output", str(lake), "--quiet", "--progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    con = duckdb.connect()
    con.execute(lake_ddl(str(lake), "duckdb"))
    assert con.execute("SELECT count(*) FROM duplicates").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM documents WHERE lang = 'en'").fetchone() == (5,)


def test_start_up_runs_with_the_collector_paused_then_freezes_what_it_built(tmp_path, monkeypatch):
    """The graph is built with the cycle collector paused (it walked the growing start-up heap ~400 times),
    and before the run the survivors are frozen and the collector is on again; a command that stops early
    turns it back on too."""
    import gc

    import wirewash.pipeline.build as build

    seen, real = [], build.build_pipeline

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "build_pipeline", spy)
    frozen = gc.get_freeze_count()
    out = tmp_path / "lake"
    try:
        assert main(["run", "--input", str(write_jsonl(tmp_path / "in.jsonl", RECORDS[:1])), "--output", str(out),
                     "--quiet"]) == 0
        assert seen == [False] and gc.isenabled() and gc.get_freeze_count() > frozen
        assert main(["run", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o")]) == 2
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()
