"""`wirewash query`: one snapshot per query, nothing outside the lake readable or writable, results streamed,
every mistake one line (exit 2), a timeout one line (exit 1), a closed pipe a quiet exit 0."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirewash.pipeline.cli import main
from wirewash.pipeline.query import (BATCH_ROWS, LakeChangedError, LakeNotFoundError, _listed_file, export, lake_snapshot,
                            open_lake, run_query)
from tests.helpers import SHAPES_RECORDS, write_jsonl

REPO = Path(__file__).resolve().parents[1]
RECORDS = SHAPES_RECORDS


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("query")
    lake = folder / "lake"
    assert main(["run", "--input", str(write_jsonl(folder / "in.jsonl", RECORDS)), "--output", str(lake),
                 "--quiet"]) == 0
    return lake


@pytest.fixture(scope="module")
def seeds_lake(tmp_path_factory, seeds_dir) -> Path:
    lake = tmp_path_factory.mktemp("seeds") / "lake"
    assert main(["run", "--input", str(seeds_dir), "--output", str(lake), "--quiet"]) == 0
    return lake


def fingerprint(lake: Path) -> dict:
    """Every path under the lake with a hash of its bytes: to prove a command changed nothing."""
    return {p.relative_to(lake).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(lake.rglob("*"))}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wirewash: error: ") and "Traceback" not in err, err
    return lines[0]


def copy_lake(lake: Path, to: Path) -> Path:
    shutil.copytree(lake, to)
    return to


def parquet_files(lake: Path, table: str) -> list[str]:
    return sorted(p.relative_to(lake).as_posix() for p in (lake / table).rglob("*.parquet"))


def with_files_key(lake: Path, files: dict) -> None:
    """Writes the `files` key the committing run records (a hand-made summary)."""
    summary = json.loads((lake / "_SUMMARY.json").read_text())
    summary["files"] = files
    (lake / "_SUMMARY.json").write_text(json.dumps(summary))


def count(lake, sql="SELECT count(*) FROM documents", snapshot=None) -> int:
    with open_lake(str(lake), snapshot) as con:
        return con.execute(sql).fetchone()[0]


# --- one snapshot ------------------------------------------------------------------------------------------

def test_the_views_read_exactly_the_files_the_summary_lists(lake, tmp_path):
    """With `files` in the summary, the views hold exactly those files: a Parquet file the summary does not
    list (a later run's, a stray copy) is invisible; paths relative to the lake or to the table both work."""
    copy = copy_lake(lake, tmp_path / "lake")
    documents = parquet_files(copy, "documents")
    assert len(documents) == 3
    stray = copy / "documents" / "lang=en" / "date=unknown" / "part-stray.parquet"
    stray.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(copy / documents[0], stray)
    with_files_key(copy, {"documents": documents[:2],
                          "duplicates": [p.split("/", 1)[1] for p in parquet_files(copy, "duplicates")],
                          "rejected": parquet_files(copy, "rejected")})
    snapshot = lake_snapshot(str(copy))
    assert snapshot.listed and [os.path.relpath(f, copy) for f in snapshot.files["documents"]] == documents[:2]
    assert count(copy) == 2
    assert count(copy, "SELECT count(*) FROM duplicates") == 1 and count(copy, "SELECT count(*) FROM rejected") == 1
    # without the key (lakes written before it existed): every Parquet file found, work folders skipped
    summary = json.loads((copy / "_SUMMARY.json").read_text())
    del summary["files"]
    (copy / "_SUMMARY.json").write_text(json.dumps(summary))
    (copy / "documents" / "_compacting").mkdir()
    shutil.copy(copy / documents[0], copy / "documents" / "_compacting" / "part-x.parquet")
    assert not lake_snapshot(str(copy)).listed and count(copy) == 4


@pytest.mark.parametrize("bad", ["../outside.parquet", "documents/../../outside.parquet", "/etc/x.parquet",
                                 "documents/x.csv", 17, "documents//x.parquet"])
def test_a_summary_listing_files_outside_its_table_is_refused(lake, tmp_path, bad):
    copy = copy_lake(lake, tmp_path / "lake")
    with_files_key(copy, {"documents": [bad], "duplicates": [], "rejected": []})
    with pytest.raises(LakeNotFoundError, match="damaged"):
        lake_snapshot(str(copy))


def overwrite_steps(lake: Path, new: Path) -> list:
    """The steps of an `--overwrite` commit replacing `lake` by the lake `new`, in pipeline/lake.py's order."""
    tables = ("documents", "duplicates", "rejected")
    return [lambda: (lake / "_SUMMARY.json").unlink(),
            lambda: [shutil.rmtree(lake / t, ignore_errors=True) for t in tables],
            lambda: [shutil.copytree(new / t, lake / t) for t in tables if (new / t).exists()],
            lambda: shutil.copy(new / "_SUMMARY.json", lake / "_SUMMARY.json")]


@pytest.mark.parametrize("listed", [True, False], ids=["files-listed", "older-lake"])
@pytest.mark.parametrize("snapshot_at", range(5))
def test_a_query_during_an_overwrite_answers_one_run_or_fails(lake, seeds_lake, tmp_path, listed, snapshot_at):
    """Issue 17 item 6: a query that takes its snapshot at any step of a concurrent `--overwrite` commit and
    runs at any later step answers with the old lake, the new one, or an error: never a mix, never 0
    documents (the old code checked the summary, then globbed at run time: 0 documents after step 2)."""
    new = copy_lake(seeds_lake, tmp_path / "new")
    tables = ("documents", "duplicates", "rejected")
    if listed:
        with_files_key(new, {t: parquet_files(new, t) for t in tables})
    for run_at in range(snapshot_at, 5):
        target = copy_lake(lake, tmp_path / f"lake-{run_at}")
        if listed:
            with_files_key(target, {t: parquet_files(target, t) for t in tables})
        steps = overwrite_steps(target, new)
        for step in steps[:snapshot_at]:
            step()
        try:
            snapshot = lake_snapshot(str(target))
        except LakeNotFoundError as err:
            assert 0 < snapshot_at < 4 and "no _SUMMARY.json" in str(err)
            continue
        for step in steps[snapshot_at:run_at]:
            step()
        try:
            answer = count(target, snapshot=snapshot)
        except LakeChangedError as err:
            assert snapshot_at == 0 and run_at >= 2 and "changed while the query ran" in str(err), err
            continue
        assert answer == (3 if snapshot_at == 0 else 5), (snapshot_at, run_at)


@pytest.mark.parametrize("parent", ["x=1", "lang=zz", "date=2020-01-01"])
def test_key_value_folders_above_the_lake_change_nothing(lake, tmp_path, capsys, parent):
    """DuckDB's hive partitioning reads every `key=value` folder of a path: a lake under `/data/lang=zz/`
    answered lang 'zz' for every document, one under `/data/x=1/` grew a column `x`."""
    copy = copy_lake(lake, tmp_path / parent / "lake")
    expected = [("de", "unknown"), ("en", "2024-03-01"), ("vi", "2024-03-03")]
    columns, rows = run_query(str(copy), "SELECT lang, date FROM documents ORDER BY lang")
    assert rows == expected
    assert run_query(str(copy), "SELECT * FROM documents")[0] == run_query(str(lake), "SELECT * FROM documents")[0]
    assert run_query(str(copy), "SELECT count(*) FROM documents WHERE lang = 'en'")[1] == [(1,)]
    assert main(["ddl", str(copy)]) == 0
    con = duckdb.connect()
    con.execute(capsys.readouterr().out)
    assert con.execute("SELECT lang, date FROM documents ORDER BY lang").fetchall() == expected
    assert [d[0] for d in con.execute("SELECT * FROM documents").description][-2:] == ["lang", "date"]


# --- nothing outside the lake ------------------------------------------------------------------------------

def test_duckdbs_default_spill_folder_is_not_readable(lake, tmp_path, monkeypatch, capsys):
    """Issue 17 item 5: DuckDB always allows its spill folder, by default `<cwd>/.tmp/`; ours is private,
    empty, and gone after the query."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "secret.txt").write_text("LEAKED")
    for path in (".tmp/secret.txt", str(tmp_path / ".tmp" / "secret.txt")):
        assert main(["query", str(lake), f"SELECT * FROM read_text('{path}')"]) == 2
        assert "Permission Error" in one_error_line(capsys)
    copy = copy_lake(lake, tmp_path / "lake")
    (copy / "documents" / "link.txt").symlink_to(tmp_path / ".tmp" / "secret.txt")
    assert main(["query", str(copy), f"SELECT * FROM read_text('{copy}/documents/link.txt')"]) == 2
    assert "Permission Error" in one_error_line(capsys)  # a link inside the lake to a file outside: refused
    _, rows = run_query(str(lake), "SELECT current_setting('temp_directory')")
    spill = rows[0][0]
    assert os.path.basename(spill).startswith("wirewash-query-") and not os.path.exists(spill)


@pytest.mark.parametrize("out", ["_SUMMARY.json", "documents/lang=en/x.parquet", "documents", ".",
                                 "via-link/_SUMMARY.json"])
def test_out_is_never_inside_the_lake(lake, tmp_path, capsys, out):
    (tmp_path / "via-link").symlink_to(lake, target_is_directory=True)
    target = tmp_path / out if out.startswith("via-link") else lake / out
    before = fingerprint(lake)
    for fmt in ("csv", "parquet"):
        assert main(["query", str(lake), "SELECT 1 AS x", "--format", fmt, "--out", str(target)]) == 2
        assert "inside the lake" in one_error_line(capsys)
    assert fingerprint(lake) == before


def test_a_failed_query_leaves_an_existing_out_file_as_it_was(lake, tmp_path, capsys):
    out = tmp_path / "result.parquet"
    out.write_bytes(b"previous result")
    assert main(["query", str(lake), "SELECT INTERVAL 3 DAY AS i", "--format", "parquet", "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert "column 'i' (month_day_nano_interval) cannot be written to a Parquet file" in line and "CAST" in line
    assert out.read_bytes() == b"previous result" and os.listdir(tmp_path) == ["result.parquet"]
    # the same column as text is fine
    assert main(["query", str(lake), "SELECT CAST(INTERVAL 3 DAY AS VARCHAR) AS i", "--format", "parquet",
                 "--out", str(out)]) == 0
    assert pq.read_table(out).to_pylist() == [{"i": "3 days"}]


# --- limits, timeouts, odd input ---------------------------------------------------------------------------

SQL = "SELECT doc_id FROM documents ORDER BY doc_id"


def test_limit_is_checked_and_zero_means_no_rows(lake, tmp_path, capsys):
    assert main(["query", str(lake), SQL, "--limit", "-1"]) == 2
    assert "--limit must be 0 or more" in one_error_line(capsys)
    assert main(["query", str(lake), SQL, "--limit", "0", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "doc_id\n"
    assert main(["query", str(lake), SQL, "--limit", "0"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(0 rows)"
    assert main(["query", str(lake), SQL, "--limit", "0", "--format", "json"]) == 0
    assert capsys.readouterr().out == ""
    out = tmp_path / "none.parquet"
    assert main(["query", str(lake), SQL, "--limit", "0", "--format", "parquet", "--out", str(out)]) == 0
    assert pq.read_table(out).num_rows == 0 and pq.read_schema(out).names == ["doc_id"]
    assert main(["query", str(lake), SQL, "--limit", "2", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["doc_id", "de", "en"]


def test_limit_holds_across_batches(lake, tmp_path):
    n = BATCH_ROWS * 2 + 7
    out = tmp_path / "r.parquet"
    with open(out, "wb") as handle:
        assert export(str(lake), "SELECT range AS i FROM range(1000000)", handle, "parquet", limit=n) == n
    assert pq.read_table(out).column("i").to_pylist() == list(range(n))
    with open(tmp_path / "r.csv", "w") as handle:
        assert export(str(lake), "SELECT range AS i FROM range(1000000)", handle, "csv", limit=n) == n
    assert (tmp_path / "r.csv").read_text().splitlines()[1:] == [str(i) for i in range(n)]


def test_a_query_running_past_its_timeout_stops_with_one_line(lake, capsys):
    assert main(["query", str(lake), "SELECT count(*) FROM range(1000000000000)", "--timeout", "0.5"]) == 1
    assert "ran longer than 0.5 s and was stopped (--timeout)" in one_error_line(capsys)
    assert main(["query", str(lake), "SELECT range FROM range(1000000000000)", "--format", "parquet",
                 "--out", os.devnull, "--timeout", "0.5"]) == 1
    assert "--timeout" in one_error_line(capsys)
    for bad in ("-1", "nan", "inf", "soon"):
        assert main(["query", str(lake), SQL, "--timeout", bad]) == 2
        one_error_line(capsys)


def run_cli(args: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wirewash.pipeline.cli", *args], capture_output=True, timeout=120,
                          cwd=REPO, **kwargs)


def test_sql_that_is_not_utf8_is_one_line(lake):
    proc = run_cli([b"query", str(lake).encode(), b"SELECT '\xff\xfe' AS x"])
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.decode().strip() == (
        "wirewash: error: the SQL is not valid UTF-8 (a byte b'\\xff' at character 8)")


def test_a_lake_path_that_is_not_utf8_is_one_line(lake, tmp_path):
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/lake-\xff"))
    shutil.copytree(lake, odd)
    proc = run_cli([b"query", os.fsencode(odd), b"SELECT count(*) FROM documents"])
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr
    assert proc.stderr.decode(errors="replace").count("\n") == 1 and b"not a UTF-8 path" in proc.stderr


def _strict_json(line: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(line, parse_constant=refuse)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=4))
def test_json_output_is_strict_json_for_every_double(lake, values):
    """`--format json` writes RFC 8259 JSON whatever DOUBLEs a query returns: NaN and infinities (valid in SQL,
    no literal in JSON) are null, alone, in lists and in structs; every finite value comes back exact."""
    doubles = ", ".join(f"'{value!r}'::DOUBLE AS c{i}" for i, value in enumerate(values))
    listed = "[" + ", ".join(f"'{value!r}'::DOUBLE" for value in values) + "]"
    sql = f"SELECT {doubles}, {listed} AS l, {{'v': '{values[0]!r}'::DOUBLE}} AS s"
    out = io.StringIO()
    assert export(str(lake), sql, out, fmt="json") == 1  # what `wirewash query --format json` streams
    row = _strict_json(out.getvalue())
    expected = [value if value == value and abs(value) != float("inf") else None for value in values]
    assert [row[f"c{i}"] for i in range(len(values))] == expected
    assert row["l"] == expected and row["s"] == {"v": expected[0]}


# --- streaming results and closed pipes --------------------------------------------------------------------

MEASURE = ("import resource, sys; from wirewash.pipeline.cli import main; code = main(sys.argv[1:]); "
           "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_a_300_million_row_result_streams_into_head(lake, fmt):
    """`wirewash query ... | head -2` on 300M rows: the result streams (peak memory stays small, where
    fetching it whole would take tens of GB) and the closed pipe ends the query quietly with exit 0."""
    proc = subprocess.Popen([sys.executable, "-c", MEASURE, "query", str(lake),
                             "SELECT range AS n, 'x' AS s FROM range(300000000)", "--format", fmt],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    head = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert head[0].strip() and head[1].strip()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maxrss "), err  # nothing but the measurement
    # KiB. The whole result is at least 2.7 GB of raw values (tens of GB as Python rows); a streaming query
    # peaks at the interpreter, DuckDB's read-ahead and its threads' buffers: 0.45-0.65 GB seen here, more
    # the busier the machine (DuckDB runs further ahead while the reader waits).
    assert int(lines[0].split()[1]) < 1_200_000


@pytest.mark.parametrize("command", [["ddl", "{lake}"], ["ddl", "{lake}", "--dialect", "spark"],
                                     ["query", "{lake}", "SELECT * FROM documents"], ["report", "{lake}"]])
def test_a_reader_that_leaves_early_is_no_error(lake, tmp_path, command):
    """`wirewash ddl ... | head`: the reader closes the pipe before the command writes; exit 0, nothing on
    stderr (no BrokenPipeError traceback, no 'Exception ignored')."""
    copy = copy_lake(lake, tmp_path / "lake")
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run([sys.executable, "-m", "wirewash.pipeline.cli", *[a.format(lake=copy) for a in command]],
                          stdout=write_end, stderr=subprocess.PIPE, timeout=120, cwd=REPO)
    os.close(write_end)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode()[-2000:]


def test_a_damaged_file_is_one_line_for_every_command(lake, tmp_path, capsys):
    """A Parquet file that is not one (disk damage, a hand edit): query exits 2, report exits 1 (it cannot
    read the lake), ddl exits 2: one line each, no traceback."""
    copy = copy_lake(lake, tmp_path / "lake")
    for part in sorted((copy / "documents").rglob("*.parquet")):
        part.write_bytes(b"not parquet at all")
    assert main(["query", str(copy), "SELECT count(*) FROM documents"]) == 2
    assert "query failed" in one_error_line(capsys)
    assert main(["report", str(copy)]) == 1
    assert "cannot read the lake" in one_error_line(capsys)
    assert main(["ddl", str(copy), "--dialect", "spark"]) == 2
    one_error_line(capsys)


# --- properties --------------------------------------------------------------------------------------------

PATH_PARTS = st.lists(st.sampled_from(["documents", "duplicates", "..", ".", "", "lang=en", "x.parquet",
                                       "/", "\\", "date=2024-03", "part-1.parquet", "a/../.."]), max_size=6)


@settings(max_examples=300, deadline=None)
@given(parts=PATH_PARTS, text=st.text(max_size=30), table=st.sampled_from(["documents", "duplicates", "rejected"]))
def test_a_listed_file_is_refused_or_inside_its_table(parts, text, table):
    """Whatever the summary lists, a view only ever gets a .parquet path inside the table's own folder."""
    for rel in ("/".join(parts), text, "/".join(parts) + text):
        try:
            path = _listed_file("/lake", table, rel)
        except LakeNotFoundError:
            continue
        assert os.path.normpath(path) == path and path.startswith(f"/lake/{table}/") and path.endswith(".parquet")
