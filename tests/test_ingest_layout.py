"""The ingest layout (`--partition_by ingest`, issue 19): documents under one `ingest_date=YYYY-MM-DD` folder per
ingest day, `lang` and `date` stored in the files with the folder layouts' values, rows sorted by (lang, date,
published_at, doc_id). Every layout gives the same rows; runs, appends, compaction, query, report, ddl, streams
and the library's WriteToLake work on it; `lake_contract` is our own check_lake for every layout."""
from __future__ import annotations

import json
import re
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirewash.pipeline.cli import main
from wirewash.pipeline.lake import (DOCUMENTS_SCHEMA, INGEST, LANGUAGES, LAYOUTS, PARTITION_BY, SORT_KEYS, TABLES,
                                    document_row, file_schema, lang_and_date, partition_of, sort_rows, valid_partition)
from wirewash.pipeline import query
from wirewash.pipeline.query import run_query
from wirewash.transforms.types import Article
from tests.helpers import ARTICLE_DE, ARTICLE_EN, ARTICLE_VI, summary, write_jsonl
from tests.test_append import edited, record, story

DAY1, DAY2 = "2024-05-01T23:00:00+00:00", "2024-05-02T01:00:00+00:00"
ART = Article(doc_id="d", url=None, source=None, title=None, published_at="2023-06-27T10:00:00+00:00", text="x",
              content_hash="h", lang="en", lang_prob=0.9, format="text", source_location="f:1")
FOLDER = {"day": re.compile(r"^lang=([a-z]{2,3})/date=(\d{4}-\d{2}-\d{2}|unknown)$"),
          "month": re.compile(r"^lang=([a-z]{2,3})/date=(\d{4}-\d{2}|unknown)$"),
          "year": re.compile(r"^lang=([a-z]{2,3})/date=(\d{4}|unknown)$"),
          INGEST: re.compile(r"^ingest_date=(\d{4}-\d{2}-\d{2})$")}


# --- our contract checker (check_lake.py's rules, for every layout) ---------------------------------------

def lake_contract(lake: Path) -> list[str]:
    """The problems of a lake against its layout's contract (empty: it holds). As ../shared/tools/check_lake.py:
    counts match the summary, doc_ids unique, every duplicate_of a document, every rejection with a reason;
    and per layout: folder layouts `lang=<code>/date=<period at the lake's granularity|unknown>`; the ingest
    layout `ingest_date=<the UTC day of every row's ingested_at>`, `lang` and `date` columns in every file
    with the values the day layout's folders would have, rows sorted by (lang, date, published_at, doc_id),
    at most one file per folder per run."""
    s = summary(lake)
    layout = s["layout"]["partition_by"]
    problems = []
    files = [lake / rel for rel in s["files"]["documents"]]
    for path in files:
        folder = path.parent.relative_to(lake / "documents").as_posix()
        match = FOLDER[layout].match(folder)
        if not match or not valid_partition(folder):
            problems.append(f"documents/{folder} is not a {layout} folder")
            continue
        table = pq.read_table(path)
        if layout != INGEST:
            if {"lang", "date"} & set(table.column_names):
                problems.append(f"{path.name}: lang/date stored in a file of a folder layout")
            continue
        if table.schema.names != file_schema("documents", INGEST).names:
            problems.append(f"{path.name}: columns {table.schema.names}")
            continue
        rows = table.to_pylist()
        for row in rows:
            day = row["published_at"].date().isoformat() if row["published_at"] else None
            expected = day if day and 1800 <= int(day[:4]) <= 2200 else "unknown"
            if row["lang"] not in LANGUAGES | {"und"} or row["date"] != expected:
                problems.append(f"{row['doc_id']}: lang {row['lang']!r}, date {row['date']!r}")
            if row["ingested_at"].astimezone(timezone.utc).date().isoformat() != match.group(1):
                problems.append(f"{row['doc_id']}: ingested_at {row['ingested_at']} outside {folder}")
        order = [(r["lang"], r["date"], r["published_at"] is None, r["published_at"] or 0, r["doc_id"]) for r in rows]
        if order != sorted(order):
            problems.append(f"{path.name}: rows not sorted by lang, date, published_at, doc_id")
    per_folder = {}
    for path in files:
        per_folder[path.parent] = per_folder.get(path.parent, 0) + 1
    allowed = len(s.get("runs", [])) + s.get("streaming", {}).get("panes", 0)  # one per run or stream pane
    if layout == INGEST and any(n > allowed for n in per_folder.values()):
        problems.append(f"more files than runs in a folder: {per_folder}")
    ids = [r[0] for r in run_query(str(lake), "SELECT doc_id FROM documents")[1]]
    if len(ids) != len(set(ids)):
        problems.append("doc_id is not unique")
    dangling = run_query(str(lake), "SELECT count(*) FROM duplicates WHERE duplicate_of NOT IN "
                                    "(SELECT doc_id FROM documents)")[1][0][0]
    if dangling:
        problems.append(f"{dangling} duplicates point at no document")
    if run_query(str(lake), "SELECT count(*) FROM rejected WHERE coalesce(trim(reason), '') = ''")[1][0][0]:
        problems.append("a rejected row has no reason")
    counts = {t: run_query(str(lake), f"SELECT count(*) FROM {t}")[1][0][0] for t in TABLES}
    if any(s[t] != counts[t] for t in TABLES) or s["records_read"] != sum(counts.values()):
        problems.append(f"summary {[s[t] for t in TABLES]} vs files {counts}")
    return problems


# --- pure functions ---------------------------------------------------------------------------------------

@given(st.dates(min_value=date(1700, 1, 1), max_value=date(2300, 12, 31)) | st.none(),
       st.sampled_from(sorted(LANGUAGES)[:20] + ["xx", "", "und"]), st.sampled_from(sorted(PARTITION_BY)),
       st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)))
@settings(max_examples=200, deadline=None)
def test_the_files_hold_the_folder_layouts_values(day, lang, granularity, ingested):
    """An ingest-layout row holds the `lang` and `date` the day layout's folder would have (the other
    granularities' folders are its prefix), and its folder is the UTC day of its ingest time, a valid one."""
    article = ART._replace(lang=lang, published_at=day.isoformat() + "T12:00:00+00:00" if day else None)
    row = document_row(article, ingested, INGEST)
    assert f"lang={row['lang']}/date={row['date']}" == partition_of(article, "day")
    folder_lang, folder_date = partition_of(article, granularity)[5:].split("/date=")
    assert folder_lang == row["lang"] and (folder_date == row["date"][:PARTITION_BY[granularity]]
                                           if row["date"] != "unknown" else folder_date == "unknown")
    folder = partition_of(article, INGEST, ingested)
    assert folder == f"ingest_date={ingested.date().isoformat()}" and valid_partition(folder)
    assert set(document_row(article, ingested)) == set(DOCUMENTS_SCHEMA.names)  # folder layouts: no lang/date
    assert lang_and_date(article) == (row["lang"], row["date"])


def test_ingest_folders_are_validated():
    assert valid_partition("ingest_date=2024-02-29") and not valid_partition("ingest_date=2023-02-29")
    assert not valid_partition("ingest_date=2024-02") and not valid_partition("ingest_date=../x")
    assert partition_of(ART, INGEST, datetime(2024, 1, 1, 23, 30)) == "ingest_date=2024-01-01"  # naive: UTC
    assert query.INGEST == INGEST  # query.py names it without importing Beam


@given(st.lists(st.tuples(st.sampled_from(["en", "vi", "de", "und"]), st.sampled_from(["2024-01-02", "2023-12-31",
                                                                                       "unknown"]),
                          st.integers(0, 10**6), st.text("abc", min_size=1, max_size=3)), max_size=60))
@settings(max_examples=100, deadline=None)
def test_in_file_rows_sort_by_language_then_day(rows):
    """A file of the ingest layout is sorted by lang, then date, then publication time and doc_id: the rows of
    one language and one month are adjacent, so row-group min/max statistics prune everything else."""
    table = pa.table({"doc_id": [r[3] for r in rows], "published_at": pa.array([r[2] for r in rows], pa.int64()),
                      "source": [None] * len(rows), "lang": [r[0] for r in rows], "date": [r[1] for r in rows]})
    out = sort_rows("documents", table).to_pylist()
    assert [(r["lang"], r["date"], r["published_at"], r["doc_id"]) for r in out] == sorted(
        (r[0], r[1], r[2], r[3]) for r in rows)
    assert [k for k, _ in SORT_KEYS["documents_in_file"]] == ["lang", "date", "published_at", "doc_id"]


# --- real runs --------------------------------------------------------------------------------------------

RECORDS = [record(f"a{i}", story(i), i * 20) for i in range(12)]
RECORDS += [record("a-exact", story(3), 70), record("a-near", edited(story(5), 5), 110), '{"broken',
            {"id": "vi", "published": "2024-03-03", "text": ARTICLE_VI},
            {"id": "de", "published": "1650-01-01", "text": ARTICLE_DE},  # out of range: date unknown
            {"id": "en", "text": ARTICLE_EN}]  # undated


def _run(folder: Path, layout: str, records=RECORDS, ingested_at: str = DAY1, *flags: str) -> Path:
    lake = folder / "lake"
    path = write_jsonl(folder / f"in-{len(list(folder.glob('in-*')))}.jsonl", records)
    assert main(["run", "--input", str(path), "--output", str(lake), "--quiet", "--partition_by", layout,
                 "--ingested_at", ingested_at, *flags]) == 0
    return lake


@pytest.fixture(scope="module")
def lakes(tmp_path_factory) -> dict:
    return {layout: _run(tmp_path_factory.mktemp(layout), layout) for layout in LAYOUTS}


def _rows(lake: Path, table: str) -> list:
    """A table's rows through `wirewash query`, as sorted JSON strings; documents without `date` (its width
    depends on the layout) and `ingest_date` (the ingest layout's folder)."""
    columns = run_query(str(lake), f"SELECT * FROM {table} LIMIT 0")[0]
    kept = [c for c in columns if table != "documents" or c not in ("date", "ingest_date")]
    names, rows = run_query(str(lake), f"SELECT {', '.join(kept)} FROM {table}")
    return sorted(json.dumps(dict(zip(names, r)), default=str, sort_keys=True) for r in rows)


def test_every_layout_gives_the_same_rows(lakes):
    """The same input in every layout: the same documents (every column, `lang` included), duplicates and
    rejections through `wirewash query`; `date` is text everywhere, the day's value in the day and ingest
    layouts, its prefix in month and year; only the ingest layout adds `ingest_date` (its folder)."""
    reference = lakes["day"]
    for layout, lake in lakes.items():
        for table in TABLES:
            assert _rows(lake, table) == _rows(reference, table), (layout, table)
        columns, dates = run_query(str(lake), "SELECT doc_id, date, typeof(date), typeof(lang) FROM documents "
                                              "ORDER BY doc_id")
        _, days = run_query(str(reference), "SELECT doc_id, date FROM documents ORDER BY doc_id")
        width = PARTITION_BY.get(layout, 10)
        assert [(d, v if v == "unknown" else v[:width], "VARCHAR", "VARCHAR") for d, v in days] == dates
        names = run_query(str(lake), "SELECT * FROM documents LIMIT 0")[0]
        assert names[-2:] == ["lang", "date"] if layout != INGEST else names[-3:] == ["lang", "date", "ingest_date"]
    assert {r[0] for r in run_query(str(lakes["day"]), "SELECT date FROM documents")[1]} >= {"unknown", "2024-03-03"}


def test_every_layout_keeps_its_contract(lakes):
    for layout, lake in lakes.items():
        assert lake_contract(lake) == [], layout
        assert summary(lake)["layout"] == {"partition_by": layout, "format": 2}
    ingest = lakes[INGEST]
    assert [p.relative_to(ingest).as_posix().rsplit("/", 1)[0] for p in (ingest / "documents").rglob("*.parquet")
            ] == ["documents/ingest_date=2024-05-01"]  # one file for the run
    assert len(list((lakes["day"] / "documents").rglob("*.parquet"))) > 5


def test_the_contract_checker_finds_what_breaks_it(lakes, tmp_path):
    """`lake_contract` can fail: an unsorted file, a file in a folder of another day, a wrong `date`."""
    lake = Path(shutil.copytree(lakes[INGEST], tmp_path / "lake"))
    path = next((lake / "documents").rglob("*.parquet"))
    table = pq.read_table(path)
    pq.write_table(table.take(list(range(table.num_rows))[::-1]), path)
    assert any("not sorted" in p for p in lake_contract(lake))
    dates = table["date"].to_pylist()
    dates[0] = "2099-01-01"
    pq.write_table(table.set_column(table.schema.get_field_index("date"), "date", pa.array(dates)), path)
    assert any("date '2099-01-01'" in p for p in lake_contract(lake))
    moved = lake / "documents" / "ingest_date=2024-05-03"
    moved.mkdir()
    pq.write_table(table, moved / path.name)
    path.unlink()
    s = summary(lake)
    s["files"]["documents"] = [f"documents/ingest_date=2024-05-03/{path.name}"]
    (lake / "_SUMMARY.json").write_text(json.dumps(s))
    assert any("outside ingest_date=2024-05-03" in p for p in lake_contract(lake))


def test_appends_compaction_and_every_command_on_the_ingest_layout(tmp_path, capsys):
    """An ingest lake keeps its layout through appends (recorded in `layout`; another explicit layout is
    refused): a later day adds a folder, the same day a second file in its folder; the append dedups
    against the lake; `wirewash compact` merges the day's files into one sorted file with the same rows;
    query, report and the DuckDB DDL read it all."""
    lake = _run(tmp_path, INGEST)
    more = [record("b-exact", story(1), 200), record("b-new", story(50), 210),
            {"id": "b-vi", "published": "2024-03-04", "text": ARTICLE_VI + " Thêm một câu."}]
    assert main(["run", "--append", "--input", str(write_jsonl(tmp_path / "b.jsonl", more)), "--output", str(lake),
                 "--quiet", "--ingested_at", DAY2]) == 0  # no --partition_by: the lake's own
    late = [record("c-new", story(60), 220), record("c-near", edited(story(50), 9), 215)]
    assert main(["run", "--append", "--input", str(write_jsonl(tmp_path / "c.jsonl", late)), "--output", str(lake),
                 "--quiet", "--ingested_at", DAY2.replace("01:00", "05:00")]) == 0
    capsys.readouterr()
    assert main(["run", "--append", "--input", str(tmp_path / "c.jsonl"), "--output", str(lake), "--quiet",
                 "--partition_by", "day"]) == 2
    assert "differs from the lake's own (ingest)" in capsys.readouterr().err
    s = summary(lake)
    assert s["layout"]["partition_by"] == INGEST and len(s["runs"]) == 3 and s["reconciled"]
    folders = sorted(p.parent.name for p in (lake / "documents").rglob("*.parquet"))
    assert folders == ["ingest_date=2024-05-01", "ingest_date=2024-05-02", "ingest_date=2024-05-02"]
    assert dict(run_query(str(lake), "SELECT doc_id, duplicate_of FROM duplicates WHERE doc_id LIKE 'b%' "
                                     "OR doc_id LIKE 'c%'")[1]) == {"b-exact": "a1", "b-vi": "vi", "c-near": "b-new"}
    assert lake_contract(lake) == []
    before = _rows(lake, "documents"), _rows(lake, "duplicates"), _rows(lake, "rejected")
    by_day = dict(run_query(str(lake), "SELECT ingest_date, count(*) FROM documents GROUP BY 1")[1])
    assert main(["compact", str(lake), "--quiet"]) == 0
    assert (_rows(lake, "documents"), _rows(lake, "duplicates"), _rows(lake, "rejected")) == before
    assert sorted(p.parent.name for p in (lake / "documents").rglob("*.parquet")) == [
        "ingest_date=2024-05-01", "ingest_date=2024-05-02"]
    assert dict(run_query(str(lake), "SELECT ingest_date, count(*) FROM documents GROUP BY 1")[1]) == by_day
    assert lake_contract(lake) == []  # the merged file is sorted again
    assert main(["report", str(lake), "--quiet"]) == 0
    assert "<code>date</code> column holds days" in (lake / "_REPORT.html").read_text()
    assert main(["ddl", str(lake), "--dialect", "duckdb"]) == 0
    con = duckdb.connect()
    con.execute(capsys.readouterr().out)
    assert sorted(con.execute("SELECT doc_id, lang, date, ingest_date FROM documents").fetchall()) == sorted(
        run_query(str(lake), "SELECT doc_id, lang, date, ingest_date FROM documents")[1])
    assert con.execute("SELECT count(*) FROM documents WHERE ingest_date = '2024-05-02'").fetchone()[0] == \
        by_day["2024-05-02"]


def test_an_ingest_lake_below_a_key_value_folder_reads_the_same(lakes, tmp_path):
    """DuckDB's hive partitioning would read `x=1` of the lake's own path as a column: the view takes
    `ingest_date` from the file names there, `lang` and `date` from the files."""
    moved = Path(shutil.copytree(lakes[INGEST], tmp_path / "x=1" / "lake"))
    query = "SELECT doc_id, lang, date, ingest_date FROM documents ORDER BY doc_id"
    assert run_query(str(moved), query) == run_query(str(lakes[INGEST]), query)


@pytest.mark.parametrize("dialect, location", [("spark", None), ("athena", "s3://b/lake"),
                                               ("bigquery", "gs://b/lake")])
def test_warehouse_ddl_partitions_the_ingest_layout_by_ingest_date(lakes, dialect, location):
    """Spark, Athena and BigQuery: `lang` and `date` are ordinary string columns, `ingest_date` the one string
    partition column (Athena and BigQuery list it apart from the columns, Spark among them)."""
    from wirewash.pipeline.ddl import lake_ddl

    ddl = lake_ddl(str(lakes[INGEST]), dialect, location=location)
    documents = ddl[ddl.index("documents"):ddl.index("duplicates")]
    string = "string" if dialect == "athena" else "STRING"
    assert f"`lang` {string},\n  `date` {string}" in documents
    assert {"spark": "PARTITIONED BY (`ingest_date`)", "athena": "PARTITIONED BY (\n  `ingest_date` string\n)",
            "bigquery": "WITH PARTITION COLUMNS (\n  `ingest_date` STRING\n)"}[dialect] in documents
    assert "lang=" not in ddl and ("MSCK REPAIR" in ddl) == (dialect != "bigquery")


def test_write_to_lake_writes_the_ingest_layout(tmp_path):
    """The library's WriteToLake takes the same layouts (an unknown one is refused when built)."""
    import apache_beam as beam

    from wirewash.pipeline.api import CleanArticles, WriteToLake

    lake = tmp_path / "lake"
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = (p | beam.Create([{"id": "en", "text": ARTICLE_EN, "published": "2024-03-01"},
                              {"id": "vi", "text": ARTICLE_VI}])
             | CleanArticles() | WriteToLake(str(lake), partition_by=INGEST, ingested_at=DAY1))
    assert lake_contract(lake) == [] and summary(lake)["layout"]["partition_by"] == INGEST
    assert sorted(run_query(str(lake), "SELECT doc_id, lang, date, ingest_date FROM documents")[1]) == [
        ("en", "en", "2024-03-01", "2024-05-01"), ("vi", "vi", "unknown", "2024-05-01")]
    with pytest.raises(ValueError, match="partition_by 'week'"):
        WriteToLake(str(tmp_path / "other"), partition_by="week")


def test_a_stream_writes_the_ingest_layout(tmp_path):
    """A stream's panes land in the ingest day's folder (the UTC day they were written), with `lang` and
    `date` in the files; the finished lake keeps the contract and reads like a batch one."""
    from wirewash.pipeline.windowed_lake import finalize_lake, staging_of
    from wirewash.transforms.dedup import DedupConfig
    from tests.test_streaming import article, documents_stream, write_test_stream

    lake = tmp_path / "lake"
    stream = documents_stream((article("s-en", ARTICLE_EN), 1), (article("s-vi", ARTICLE_VI, "vi"), 12))
    staging = staging_of(str(lake), "stream")
    run = {"run_id": "stream", "mode": "streaming"}  # one record for the panes and the end, as a real run
    write_test_stream(stream, lake, staging, partition_by=INGEST, dedup=DedupConfig(), run=run)
    final = finalize_lake(str(lake), staging, INGEST, run=run, dedup=DedupConfig())
    assert final["reconciled"] and final["layout"]["partition_by"] == INGEST
    files = final["files"]["documents"]
    assert len(files) == 2 and all(re.match(r"documents/ingest_date=\d{4}-\d{2}-\d{2}/part-", f) for f in files)
    assert lake_contract(lake) == []
    assert sorted(r[0] for r in run_query(str(lake), "SELECT lang FROM documents")[1]) == ["en", "vi"]


@pytest.mark.slow
def test_spark_ddl_runs_on_the_ingest_layout(lakes, tmp_path):
    """The Spark DDL of an ingest lake, executed by Spark 4 (pyspark, local mode): `SELECT *` gives the rows of
    `wirewash query` (`lang` and `date` from the files, `ingest_date` from the folder, the list column a list),
    Spark prunes on `ingest_date`, and writes nothing into the lake."""
    pytest.importorskip("pyspark", reason="needs pyspark (pip install -e '.[test]')")
    if not shutil.which("java"):
        pytest.skip("needs Java 17+ on PATH for pyspark (apt-get install openjdk-17-jre-headless)")
    import signal

    from pyspark.sql import SparkSession

    from wirewash.pipeline.ddl import lake_ddl
    from tests.test_ddl import fingerprint, statements

    lake = lakes[INGEST]
    before = fingerprint(lake)
    sigint = signal.getsignal(signal.SIGINT)  # SparkContext installs its own and stop() leaves it in place
    spark = (SparkSession.builder.master("local[1]").appName("wirewash-ingest-ddl-test")
             .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.warehouse.dir", str(tmp_path / "warehouse"))
             .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={tmp_path}")
             .getOrCreate())
    try:
        for sql in statements(lake_ddl(str(lake), "spark", schema="ingest")):
            spark.sql(sql)
        got = sorted((r["doc_id"], r["lang"], r["date"], r["ingest_date"], tuple(r["other_langs"]))
                     for r in spark.sql("SELECT * FROM ingest.documents").collect())
        want = sorted((d, lang, day, ingest, tuple(other)) for d, lang, day, ingest, other in run_query(
            str(lake), "SELECT doc_id, lang, date, ingest_date, other_langs FROM documents")[1])
        assert got == want and len(got) > 10
        assert spark.sql("SELECT count(*) AS n FROM ingest.documents WHERE ingest_date = '2024-05-02'"
                         ).collect()[0]["n"] == 0
        assert spark.sql("SELECT count(*) AS n FROM ingest.duplicates").collect()[0]["n"] == summary(lake)["duplicates"]
    finally:
        spark.stop()
        signal.signal(signal.SIGINT, sigint)
    assert fingerprint(lake) == before
