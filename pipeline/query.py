"""SQL over a lake with DuckDB: `documents`, `duplicates` and `rejected` views over the committed Parquet files.

One snapshot: `_SUMMARY.json` is read once, and the views list exactly the files it names under `files`
(older lakes without that key, and streams still being written: the files found under each table's folder). A query therefore never mixes two
runs, and never answers from a half-replaced lake; a file that disappears under it (a concurrent
`--overwrite`) is an error, never a smaller answer.

Read-only and confined: the connection is in-memory; once the views are defined, DuckDB's access to other
files is switched off (only the lake and a private, empty spill folder stay readable: DuckDB's default spill
folder `<cwd>/.tmp/` would otherwise be readable too) and its configuration locked. DuckDB's directory
allow-list would still let `COPY ... TO` write inside the lake, so only one SELECT statement is accepted
(`EXPLAIN ANALYZE COPY` runs the COPY: refused too). A lake without `_SUMMARY.json` was interrupted before
its commit finished: refused. `lang` and `date` are always VARCHAR (`date` is a day, a month, a year or
`unknown`, depending on the lake), so a query means the same on every lake: read from the folder names, or
from the files in the ingest layout (`--partition_by ingest`), whose view adds its folder, `ingest_date`.

Results stream in batches of BATCH_ROWS (never the whole result in memory); a timer thread interrupts a
query that runs longer than its timeout.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import IO, Iterator, Optional

import duckdb

from wirewash.pipeline.manifest import leaves_the_lake, listed_path
from wirewash.transforms.types import TABLES

__all__ = ["open_lake", "lake_snapshot", "run_query", "export", "format_rows", "check_read_only",
           "check_out_path", "Snapshot", "LakeNotFoundError", "QueryNotAllowedError", "QueryTimeoutError",
           "ResultNotWritableError", "LakeChangedError", "documents_select", "layout_of", "TABLES", "FORMATS", "DEFAULT_TIMEOUT", "BATCH_ROWS"]

# The lake's summary file (as in pipeline/lake.py). Not imported from there: that module imports Apache Beam,
# which would add over a second to the start of every `wirewash query`, `report` and `ddl` (the tables' names
# come from transforms/types.py, which imports nothing).
SUMMARY_FILE = "_SUMMARY.json"
PARTITION_TYPES = "{'lang': 'VARCHAR', 'date': 'VARCHAR'}"
INGEST = "ingest"  # the layout keeping `lang` and `date` in the files (pipeline/lake.py)
INGEST_TYPES = "{'ingest_date': 'VARCHAR'}"
FORMATS = ("table", "csv", "json", "parquet")
DEFAULT_TIMEOUT = 600.0  # seconds; generous: a full scan of a large lake takes seconds
BATCH_ROWS = 10_000
MAX_CELL = 60  # characters of a cell in the table format


class LakeNotFoundError(FileNotFoundError):
    """The folder given is not a (complete, readable) wirewash lake."""


class QueryNotAllowedError(ValueError):
    """The SQL is not a single read-only SELECT, or not text."""


class QueryTimeoutError(RuntimeError):
    """The query ran longer than its timeout and was interrupted."""


class ResultNotWritableError(ValueError):
    """The result has a column the output format cannot hold."""


class LakeChangedError(RuntimeError):
    """A file of the snapshot disappeared while the query ran (a concurrent commit replaced the lake)."""


# --- the snapshot ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Snapshot:
    """One committed state of a lake: its summary and the absolute paths of each table's Parquet files."""
    lake: str
    summary: dict
    files: dict
    listed: bool  # True: the file list came from the summary; False: found by listing the folders (old lakes)


def _listed_file(lake: str, table: str, rel) -> str:
    """The absolute path of one file named by the summary, refusing anything outside the table's folder
    (`manifest.listed_path`)."""
    try:
        return os.path.join(lake, *listed_path(table, rel).split("/"))
    except ValueError as err:
        raise LakeNotFoundError(f"{lake}/{SUMMARY_FILE} {err}; the lake is damaged") from None


def _found_files(lake: str, table: str) -> list[str]:
    """Parquet files under a table's folder (lakes written before the summary listed them); folders whose
    name starts with `_` or `.` (work in progress) are skipped."""
    found = []
    for root, dirs, names in os.walk(os.path.join(lake, table)):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        found += [os.path.join(root, n) for n in names if n.endswith(".parquet") and not n.startswith(("_", "."))]
    return sorted(found)


def lake_snapshot(lake: str) -> Snapshot:
    """Reads `LAKE/_SUMMARY.json` once and returns the files it commits (`files`: {table: [paths]}), or, when
    it has no `files` key (older lakes), the Parquet files found under each
    table's folder (a missing folder is an empty table), provided the summary file is still the same one after the listing. Raises
    LakeNotFoundError for a folder that is not a complete lake, or a damaged summary."""
    lake = os.path.abspath(lake)
    path = os.path.join(lake, SUMMARY_FILE)
    for _ in range(3):
        summary, raw_stat = _read_summary(lake, path)
        listed = summary.get("files")
        # A stream's summary, like a batch one, is written after the files it lists are in place (each pane's
        # commit, pipeline/windowed_lake.py): its list is the snapshot, a pane whole or not at all.
        if isinstance(listed, dict):
            files = {}
            for table in TABLES:
                names = listed.get(table) or []
                if not isinstance(names, list):
                    raise LakeNotFoundError(f"{path}: files.{table} is not a list; the lake is damaged")
                files[table] = sorted(_listed_file(lake, table, rel) for rel in names)
            escaped = leaves_the_lake(lake, {"files": {t: listed.get(t) or [] for t in TABLES}})
            if escaped:
                raise LakeNotFoundError(f"{path} {escaped}; the lake is damaged")
            return Snapshot(lake, summary, files, listed=True)
        # An older lake: list the folders, then check that no commit replaced the summary meanwhile.
        files = {t: _found_files(lake, t) for t in TABLES}
        escaped = leaves_the_lake(lake, {"files": {t: [os.path.relpath(f, lake).replace(os.sep, "/") for f in files[t]]
                                                   for t in TABLES}})
        if escaped:
            raise LakeNotFoundError(f"{lake} {escaped.replace('lists', 'holds', 1)}; the lake is damaged")
        with contextlib.suppress(OSError):
            if _stat_key(os.stat(path)) == raw_stat:
                return Snapshot(lake, summary, files, listed=False)
    raise LakeNotFoundError(f"{lake} changed while it was being read (a run is committing): try again")


def _stat_key(st: os.stat_result) -> tuple:
    return st.st_ino, st.st_size, st.st_mtime_ns


def _read_summary(lake: str, path: str) -> tuple[dict, tuple]:
    """The summary (read once) and the identity of the file read."""
    try:
        with open(path, "rb") as handle:
            raw, key = handle.read(), _stat_key(os.fstat(handle.fileno()))
    except FileNotFoundError:
        if any(os.path.isdir(os.path.join(lake, t)) for t in TABLES):
            raise LakeNotFoundError(f"{lake} is an incomplete lake (no {SUMMARY_FILE}: its run was interrupted "
                                    "or is committing); rerun wirewash run with --overwrite") from None
        raise LakeNotFoundError(f"{lake} is not a wirewash lake (no {SUMMARY_FILE})") from None
    except OSError as err:
        raise LakeNotFoundError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        summary = json.loads(raw)
    except ValueError:
        summary = None
    if not isinstance(summary, dict):
        raise LakeNotFoundError(f"{path} is not a JSON object: the lake is damaged")
    return summary, key


# --- the connection ----------------------------------------------------------------------------------------

def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def layout_of(summary: dict) -> str:
    """The lake's documents layout from its summary (`layout.partition_by`; lakes without it used days)."""
    layout = summary.get("layout") if isinstance(summary, dict) else None
    value = layout.get("partition_by") if isinstance(layout, dict) else None
    return value if isinstance(value, str) else "day"


def documents_select(source: str, root: str, layout: str = "day") -> str:
    """SELECT over `read_parquet(source)` of the documents files, with `lang` and `date` as VARCHAR: from their
    folders, or from the files in the ingest layout (INGEST), whose `ingest_date` folder is a VARCHAR column
    after them. DuckDB's hive partitioning reads every `key=value` folder of the whole path, so when the
    lake's own path (`root`) holds one (`/data/lang=x/lake`), the folder columns are cut from the file names
    instead (still pruned per file by DuckDB's file filters)."""
    if layout == INGEST:
        if "=" not in root:
            return (f"SELECT * FROM read_parquet({source}, union_by_name = true, hive_partitioning = true, "
                    f"hive_types = {INGEST_TYPES})")
        return ("SELECT * EXCLUDE (filename), regexp_extract(filename, '/ingest_date=([^/]*)/[^/]*$', 1) AS "
                f"ingest_date FROM read_parquet({source}, union_by_name = true, hive_partitioning = false, "
                "filename = true)")
    if "=" not in root:
        return (f"SELECT * EXCLUDE (lang, date), lang, date FROM read_parquet({source}, union_by_name = true, "
                f"hive_partitioning = true, hive_types = {PARTITION_TYPES})")
    return ("SELECT * EXCLUDE (filename), regexp_extract(filename, '/lang=([^/]*)/date=[^/]*/[^/]*$', 1) AS lang, "
            "regexp_extract(filename, '/date=([^/]*)/[^/]*$', 1) AS date "
            f"FROM read_parquet({source}, union_by_name = true, hive_partitioning = false, filename = true)")


def _empty_table(table: str, layout: str = "day"):
    """An empty Arrow table with the table's columns as the views show them (the lake's schemas; imported only
    when needed): documents end with `lang`, `date` (and `ingest_date` in the ingest layout)."""
    import pyarrow as pa

    from wirewash.pipeline.lake import SCHEMAS

    schema = SCHEMAS[table]
    if table == "documents":
        schema = schema.append(pa.field("lang", pa.string())).append(pa.field("date", pa.string()))
        if layout == INGEST:
            schema = schema.append(pa.field("ingest_date", pa.string()))
    return schema.empty_table()


@contextlib.contextmanager
def open_lake(lake: str, snapshot: Optional[Snapshot] = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection with the snapshot's three tables as views; read-only, locked down.
    The private spill folder is removed when the block ends."""
    snapshot = snapshot or lake_snapshot(lake)
    lake = snapshot.lake
    for name in [lake] + [f for files in snapshot.files.values() for f in files]:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise LakeNotFoundError(f"{name.encode('utf-8', 'surrogateescape')!r} is not a UTF-8 path, which "
                                    "DuckDB cannot open: rename it") from None
    spill = tempfile.mkdtemp(prefix="wirewash-query-")
    con = duckdb.connect(":memory:")
    try:
        _define_views(con, snapshot, spill)
        yield con
    except (duckdb.Error, OSError) as err:
        gone = [f for files in snapshot.files.values() for f in files if not os.path.exists(f)]
        if gone and not isinstance(err, BrokenPipeError):
            raise LakeChangedError(f"{lake} changed while the query ran ({len(gone)} of its files are gone: a run "
                                   "committed meanwhile); run it again") from err
        raise
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _define_views(con, snapshot: Snapshot, spill: str) -> None:
    # DuckDB may always read its spill folder: make it ours and empty, not <cwd>/.tmp/.
    con.execute(f"SET temp_directory = {_sql_string(spill)}")
    for table in TABLES:
        files = snapshot.files[table]
        if files:
            listing = "[" + ", ".join(_sql_string(f) for f in files) + "]"
            select = (documents_select(listing, snapshot.lake, layout_of(snapshot.summary)) if table == "documents"
                      else f"SELECT * FROM read_parquet({listing}, union_by_name = true, hive_partitioning = false)")
            con.execute(f"CREATE VIEW {table} AS {select}")
        else:
            con.register(table, _empty_table(table, layout_of(snapshot.summary)))
    # Views keep working; no new file access, no settings change, from here on.
    con.execute(f"SET allowed_directories = [{_sql_string(snapshot.lake + os.sep)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def check_read_only(sql: str) -> None:
    """Raises QueryNotAllowedError unless `sql` is text (UTF-8) and exactly one SELECT statement (SELECT,
    FROM-first, WITH, VALUES, DESCRIBE, SHOW and SUMMARIZE all parse as SELECT)."""
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as err:
        byte = sql[err.start].encode("utf-8", "surrogateescape")
        raise QueryNotAllowedError(f"the SQL is not valid UTF-8 (a byte {byte!r} at character {err.start})") from None
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error:
        return  # a syntax error: let the real execution report it, with its position
    kinds = [str(st.type).rsplit(".", 1)[-1] for st in statements]
    if kinds != ["SELECT"]:
        raise QueryNotAllowedError(
            f"wirewash query runs one read-only SELECT statement; got {', '.join(kinds) or 'nothing'}")


def check_out_path(lake: str, out: str) -> None:
    """Raises QueryNotAllowedError when `out` (symbolic links followed) is the lake or inside it: a query
    result must never replace or add a file of the lake."""
    root, target = os.path.realpath(lake), os.path.realpath(out)
    if target == root or target.startswith(root.rstrip(os.sep) + os.sep):
        raise QueryNotAllowedError(f"--out {out} is inside the lake folder {lake}: write the result elsewhere")


@contextlib.contextmanager
def _deadline(con, seconds: Optional[float]):
    """Interrupts the connection after `seconds` (None or 0: never); raises QueryTimeoutError then."""
    if not seconds:
        yield lambda: None
        return
    fired = threading.Event()

    def stop():
        fired.set()
        con.interrupt()

    def check():
        if fired.is_set():
            raise QueryTimeoutError(f"the query ran longer than {seconds:g} s and was stopped (--timeout)")

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        yield check
    except (duckdb.Error, OSError):  # an interrupted Arrow stream raises OSError
        check()
        raise
    finally:
        timer.cancel()


def _row_batches(con, sql: str, limit: Optional[int], check) -> tuple[list, Iterator[list]]:
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description or []]

    def batches():
        remaining = limit
        while remaining is None or remaining > 0:
            rows = cursor.fetchmany(BATCH_ROWS if remaining is None else min(BATCH_ROWS, remaining))
            check()
            if not rows:
                return
            if remaining is not None:
                remaining -= len(rows)
            yield rows

    return columns, batches()


def run_query(lake: str, sql: str, limit: Optional[int] = None, timeout: Optional[float] = DEFAULT_TIMEOUT):
    """Runs one SELECT statement over the lake; returns (column names, rows). For small results: `export`
    streams large ones."""
    check_read_only(sql)
    with open_lake(lake) as con, _deadline(con, timeout) as check:
        columns, batches = _row_batches(con, sql, limit, check)
        return columns, [row for batch in batches for row in batch]


# --- output ------------------------------------------------------------------------------------------------

def _cell(value, max_width: int = MAX_CELL) -> str:
    text = " ".join(("NULL" if value is None else str(value)).split())
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def _json_value(value):
    """`value` as strict JSON allows it: NaN and infinities (valid DOUBLEs in SQL, no JSON literal) become
    null, inside lists and structs too."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    return value


def _json_line(columns: list, row) -> str:
    """One row as one line of strict JSON (RFC 8259: no NaN); values JSON has no type for are strings."""
    return json.dumps({column: _json_value(value) for column, value in zip(columns, row)}, default=str,
                      ensure_ascii=False, allow_nan=False)


def format_rows(columns: list, rows: list, fmt: str = "table") -> str:
    """Renders a small result as an aligned text table, CSV or JSON lines (what `export` streams)."""
    import io

    buffer = io.StringIO()
    _write_text(columns, iter([rows]), fmt, buffer)
    return buffer.getvalue().rstrip("\n")


def _write_text(columns: list, batches: Iterator[list], fmt: str, stream: IO[str]) -> int:
    """Writes batches of rows as table, CSV or JSON lines; returns the row count. The table's column widths
    come from the first batch (later, wider cells push their line out of alignment, nothing is cut further)."""
    count = 0
    if fmt == "csv":
        import csv

        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        for rows in batches:
            writer.writerows(rows)
            count += len(rows)
        return count
    if fmt == "json":
        for rows in batches:
            stream.write("".join(_json_line(columns, row) + "\n" for row in rows))
            count += len(rows)
        return count
    widths = None
    for rows in batches:
        cells = [[_cell(v) for v in row] for row in rows]
        if widths is None:
            widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
            stream.write(" | ".join(c.ljust(w) for c, w in zip(columns, widths)) + "\n"
                         + "-+-".join("-" * w for w in widths) + "\n")
        stream.write("".join(" | ".join(v.ljust(w) for v, w in zip(r, widths)) + "\n" for r in cells))
        count += len(rows)
    if widths is None:
        stream.write(" | ".join(columns) + "\n" + "-+-".join("-" * len(c) for c in columns) + "\n")
    stream.write(f"({count} row{'s' if count != 1 else ''})\n")
    return count


def _parquet_schema(schema):
    """The schema a Parquet file can hold, or ResultNotWritableError naming the first column it cannot."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    for field in schema:
        try:
            pq.ParquetWriter(io.BytesIO(), pa.schema([field])).close()
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, TypeError) as err:
            raise ResultNotWritableError(
                f"column {field.name!r} ({field.type}) cannot be written to a Parquet file ({err}): CAST it, "
                "e.g. to VARCHAR, or use --format csv or json") from None
    return schema


def _write_parquet(con, sql: str, limit: Optional[int], check, out: IO[bytes]) -> int:
    import pyarrow.parquet as pq

    relation = con.sql(sql)
    reader = relation.to_arrow_reader(BATCH_ROWS)
    writer = pq.ParquetWriter(out, _parquet_schema(reader.schema), compression="zstd")
    count = 0
    try:
        for batch in reader:
            check()
            if limit is not None:
                batch = batch.slice(0, limit - count)
            if batch.num_rows:
                writer.write_batch(batch)
                count += batch.num_rows
            if limit is not None and count >= limit:
                break
        check()
    finally:
        writer.close()
    return count


def export(lake: str, sql: str, out: IO, fmt: str = "table", limit: Optional[int] = None,
           timeout: Optional[float] = DEFAULT_TIMEOUT) -> int:
    """Runs one SELECT over the lake and streams its result to `out` (a text stream; a binary one for
    `parquet`), BATCH_ROWS at a time; returns the number of rows. `limit` caps the rows (0: none, only the
    header); `timeout` (seconds; None or 0: none) interrupts a query that runs longer."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if limit is not None and limit < 0:
        raise ValueError("limit must be 0 or more")
    check_read_only(sql)
    with open_lake(lake) as con, _deadline(con, timeout) as check:
        if fmt == "parquet":
            return _write_parquet(con, sql, limit, check, out)
        columns, batches = _row_batches(con, sql, limit, check)
        return _write_text(columns, batches, fmt, out)
