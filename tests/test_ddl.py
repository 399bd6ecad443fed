"""`wirewash ddl`: each dialect's DDL declares every column with its real type (lists as arrays), partitions
`lang` and `date` as strings, reads only from where the engine can, and cannot be used to inject SQL. The
DuckDB DDL runs in DuckDB (here and in tests/test_report.py on every lake shape) and the Spark DDL in a real
local Spark (pyspark 4); BigQuery and Athena are checked against their documentation (pipeline/ddl.py)."""
from __future__ import annotations

import hashlib
import re
import shutil
import signal
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirewash.pipeline.cli import main
from wirewash.pipeline.ddl import DdlError, lake_ddl
from tests.helpers import SHAPES_RECORDS, write_jsonl

RECORDS = SHAPES_RECORDS
LOCATIONS = {"duckdb": None, "spark": None, "bigquery": "gs://bucket/lake/", "athena": "s3://bucket/lake/"}


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ddl")
    lake = folder / "lake"
    assert main(["run", "--input", str(write_jsonl(folder / "in.jsonl", RECORDS)), "--output", str(lake),
                 "--quiet", "--ingested_at", "2024-04-01T00:00:00Z"]) == 0
    return lake


@pytest.fixture(scope="module")
def seeds_lake(tmp_path_factory, seeds_dir) -> Path:
    """No duplicate, no rejection, and those tables have no folder at all (as in lakes written before empty
    tables had one: today's commit makes them empty, rmdir refuses a folder that is not)."""
    lake = tmp_path_factory.mktemp("ddl-seeds") / "lake"
    assert main(["run", "--input", str(seeds_dir), "--output", str(lake), "--quiet"]) == 0
    (lake / "duplicates").rmdir()
    (lake / "rejected").rmdir()
    return lake


def statements(ddl: str) -> list[str]:
    """The DDL's statements, without comment lines."""
    body = "\n".join(line for line in ddl.splitlines() if not line.startswith("--"))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


def statement(ddl: str, table: str) -> str:
    return next(s for s in statements(ddl) if re.search(rf"TABLE[^(]*\b{table}\b", s) and "MSCK" not in s)


def fingerprint(lake: Path) -> dict:
    return {p.relative_to(lake).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(lake.rglob("*")) if p.name != "_REPORT.html"}


ARRAYS = {"duckdb": "VARCHAR[]", "spark": "ARRAY<STRING>", "bigquery": "ARRAY<STRING>", "athena": "array<string>"}


@pytest.mark.parametrize("dialect", ARRAYS)
@pytest.mark.parametrize("which", ["lake", "seeds_lake"])
def test_every_column_is_declared_with_its_type_lists_as_arrays(dialect, which, request):
    """Issue 19: Spark and Athena declared `other_langs` as STRING, so `SELECT *` failed on the list the files
    hold; every table is declared column by column (BigQuery too: an empty table cannot be inferred)."""
    lake = request.getfixturevalue(which)
    ddl = lake_ddl(str(lake), dialect, location=LOCATIONS[dialect], schema="news")
    if dialect == "duckdb":  # views over the files (typed views for tables without one): ask DuckDB
        con = duckdb.connect()
        con.execute(ddl)
        types = dict(con.execute("SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
                                 ).fetchall())
        assert types["documents.other_langs"] == "VARCHAR[]" and types["documents.date"] == "VARCHAR"
        assert types["duplicates.duplicate_of"] == "VARCHAR" and types["rejected.reason"] == "VARCHAR"
        assert types["documents.published_at"] == "TIMESTAMP WITH TIME ZONE"
        return
    documents = statement(ddl, "documents")
    assert re.search(rf"\bother_langs\W+{re.escape(ARRAYS[dialect])}", documents), documents
    for table, column in (("duplicates", "duplicate_of"), ("rejected", "reason")):
        assert column in statement(ddl, table), (table, ddl)
    assert "published_at" in documents


def test_bigquery_follows_its_external_table_ddl(lake):
    ddl = lake_ddl(str(lake), "bigquery", location="gs://bucket/lake/", schema="news")
    assert statements(ddl)[0] == "CREATE SCHEMA IF NOT EXISTS `news`"
    documents = statement(ddl, "documents")
    columns, rest = documents.split("WITH PARTITION COLUMNS")
    assert columns.startswith("CREATE OR REPLACE EXTERNAL TABLE `news.documents` (")
    assert "`lang`" not in columns and "`date`" not in columns  # the keys must not be in the files' columns
    assert "`published_at` TIMESTAMP" in columns and "`n_words` INT64" in columns and "`lang_prob` FLOAT64" in columns
    assert "(\n  `lang` STRING,\n  `date` STRING\n)" in rest
    for option in ("format = 'PARQUET'", "uris = ['gs://bucket/lake/documents/*']", "enable_list_inference = true",
                   "hive_partition_uri_prefix = 'gs://bucket/lake/documents'", "require_hive_partition_filter = false"):
        assert option in rest, option
    duplicates = statement(ddl, "duplicates")
    assert "uris = ['gs://bucket/lake/duplicates/*.parquet']" in duplicates and "PARTITION" not in duplicates
    assert str(lake) not in ddl.split("\n", 1)[1]  # read from --location, never the local folder


def test_athena_follows_its_hive_ddl(lake):
    ddl = lake_ddl(str(lake), "athena", location="s3://bucket/lake", schema="news")
    assert statements(ddl)[0] == "CREATE DATABASE IF NOT EXISTS `news`"
    columns, partitions = statement(ddl, "documents").split("PARTITIONED BY")
    assert columns.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS `news`.`documents` (")
    assert "`lang`" not in columns and "`date`" not in columns and "`published_at` timestamp" in columns
    assert "`lang` string" in partitions and "`date` string" in partitions
    assert "STORED AS PARQUET\nLOCATION 's3://bucket/lake/documents/'" in partitions
    assert statements(ddl)[-1] == "MSCK REPAIR TABLE `news`.`documents`"


@pytest.mark.parametrize("dialect, location, message", [
    ("bigquery", None, "bigquery reads external tables from Cloud Storage only, not a local lake"),
    ("bigquery", "s3://bucket/lake", "from Cloud Storage only, not --location s3://bucket/lake"),
    ("bigquery", "/data/lake", "from Cloud Storage only"),
    ("bigquery", "gs://", "names no bucket"),
    ("athena", None, "athena reads external tables from Amazon S3 only, not a local lake"),
    ("athena", "gs://bucket/lake", "from Amazon S3 only"),
    ("spark", "hdfs://nn/lake'; DROP TABLE x; --", "a quote or a backslash"),
    ("athena", "s3://bucket/la\nke", "holds a control character, a quote or a backslash"),
    ("duckdb", "s3://bucket/la\rke", "holds a control character"),
])
def test_locations_an_engine_cannot_read_are_refused(lake, capsys, dialect, location, message):
    args = ["ddl", str(lake), "--dialect", dialect] + (["--location", location] if location else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wirewash: error: ") and message in err, err


@pytest.mark.parametrize("schema", ["w; DROP DATABASE prod; --", "", "1st", "a.b", "a`b", "news\n", "x" * 129,
                                    "caf\u00e9"])
def test_schema_must_be_a_plain_name(lake, capsys, schema):
    assert main(["ddl", str(lake), "--dialect", "spark", "--schema", schema]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a plain name" in err and "DROP DATABASE prod; --\n" not in err


@pytest.mark.parametrize("schema", ["news", "_x9", "Wire_Wash"])
def test_plain_schema_names_are_used_as_given(lake, schema):
    assert f"CREATE DATABASE IF NOT EXISTS `{schema}`;" in lake_ddl(str(lake), "spark", schema=schema)


def test_a_lake_path_cannot_break_out_of_the_comment(lake, tmp_path, capsys):
    """Issue 17 item 11: a newline in the lake's path used to end the header comment and start SQL. The
    comment escapes it; as a location (the default for DuckDB and Spark) such a path is refused, one line;
    a quote in it is doubled in DuckDB's literal, and the DDL still reads the lake."""
    odd = tmp_path / "lake\nDROP TABLE documents; --"
    shutil.copytree(lake, odd)
    ddl = lake_ddl(str(odd), "athena", location="s3://bucket/lake")
    header = ddl.splitlines()[0]
    assert header.startswith("-- wirewash lake ") and "lake\\nDROP TABLE documents; --" in header
    assert [s.split()[0] for s in statements(ddl)] == ["CREATE"] * 4 + ["MSCK"]
    for dialect in ("duckdb", "spark"):
        assert main(["ddl", str(odd), "--dialect", dialect]) == 2
        assert "holds a control character" in capsys.readouterr().err
    quoted = tmp_path / "it's a lake"
    shutil.copytree(lake, quoted)
    con = duckdb.connect()
    con.execute(lake_ddl(str(quoted), "duckdb"))
    assert con.execute("SELECT count(*) FROM documents").fetchone() == (3,)
    with pytest.raises(DdlError, match="a quote or a backslash"):
        lake_ddl(str(quoted), "spark")


def test_ddl_refuses_what_is_not_a_complete_lake(tmp_path, capsys):
    assert main(["ddl", str(tmp_path)]) == 2
    assert "not a wirewash lake" in capsys.readouterr().err


@pytest.mark.slow
def test_spark_ddl_runs_in_local_spark(lake, seeds_lake, tmp_path):
    """The Spark DDL, executed by Spark 4 (pyspark, local mode) on a lake with every table filled and on one
    whose duplicates and rejected tables have no folder: `SELECT *` works (the list column included), rows
    and partition values match the lake, and Spark writes nothing into it."""
    pyspark = pytest.importorskip("pyspark", reason="needs pyspark (pip install -e '.[test]')")
    if not shutil.which("java"):
        pytest.skip("needs Java 17+ on PATH for pyspark (apt-get install openjdk-17-jre-headless)")
    from pyspark.sql import SparkSession

    before = {path: fingerprint(path) for path in (lake, seeds_lake)}
    sigint = signal.getsignal(signal.SIGINT)  # SparkContext installs its own and stop() leaves it in place
    spark = (SparkSession.builder.master("local[1]").appName("wirewash-ddl-test")
             .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.warehouse.dir", str(tmp_path / "warehouse"))
             # C1 only and the serial GC: Spark starts sooner on 2 cores (tests/jvm_services.py says why)
             .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={tmp_path} -XX:TieredStopAtLevel=1 "
                                                      "-XX:+UseSerialGC")
             .config("spark.sql.shuffle.partitions", "1")
             .getOrCreate())
    try:
        for schema, path in (("full", lake), ("seeds", seeds_lake)):
            for sql in statements(lake_ddl(str(path), "spark", schema=schema)):
                spark.sql(sql)
        rows = {r["doc_id"]: r for r in spark.sql("SELECT * FROM full.documents").collect()}
        assert sorted(rows) == ["de", "en", "vi"]
        assert (rows["en"]["lang"], rows["en"]["date"], rows["de"]["date"]) == ("en", "2024-03-01", "unknown")
        assert all(isinstance(r["other_langs"], list) for r in rows.values())
        assert [tuple(r) for r in spark.sql("SELECT doc_id, duplicate_of, kind FROM full.duplicates").collect()] == [
            ("en-copy", "en", "exact")]
        assert spark.sql("SELECT reason FROM full.rejected").collect()[0]["reason"] == "bad_json"
        assert spark.sql("SELECT count(*) AS n FROM seeds.documents WHERE date = 'unknown'").collect()[0]["n"] == 5
        assert spark.sql("SELECT * FROM seeds.duplicates").count() == 0
        assert spark.sql("SELECT * FROM seeds.rejected").count() == 0
    finally:
        spark.stop()
        signal.signal(signal.SIGINT, sigint)  # later tests (tests/test_faults.py) check Ctrl-C handling
    assert {path: fingerprint(path) for path in (lake, seeds_lake)} == before
    assert pyspark.__version__.startswith("4.")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=st.text(max_size=20), location=st.text(max_size=30))
def test_whatever_the_options_the_ddl_is_refused_or_safe(lake, schema, location):
    """Any --schema and --location: a DdlError, or DDL whose every line is a comment or SQL that keeps the
    schema a plain name and the location inside a string literal (no control character anywhere)."""
    for dialect in ("spark", "athena"):
        try:
            ddl = lake_ddl(str(lake), dialect, location=("s3://b/" if dialect == "athena" else "") + location or None,
                           schema=schema)
        except DdlError:
            continue
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", schema)
        assert all(c.isprintable() or c == "\n" for c in ddl)
        assert ddl.count("'") % 2 == 0 and "\\" not in ddl
