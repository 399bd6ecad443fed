"""`wirewash ddl LAKE --dialect duckdb|bigquery|athena|spark`: the SQL that declares a lake's tables.

`documents` is hive-partitioned: `lang` and `date` live only in the folder names
(`documents/lang=en/date=2024-01/part-*.parquet`), never in the files, so every dialect declares them as
partition columns, typed as strings (`date` is a day, a month or a year, or `unknown`, depending on the lake).
In the ingest layout (`--partition_by ingest`) `lang` and `date` are ordinary string columns of the files and
the one partition column is `ingest_date` (`documents/ingest_date=2024-01-31/part-*.parquet`), a string too.
`duplicates` and `rejected` are plain folders of Parquet files. Columns are declared explicitly, with the
types of the lake's own Parquet files (the schemas in `pipeline/lake.py` when a table has no file), so an empty
table is declared too; list columns (`other_langs`) are arrays in every dialect.

Where each dialect reads from: DuckDB and Spark any path or URI they can open (default: the lake's absolute
path); BigQuery only Cloud Storage (`--location gs://...`), Athena only S3 (`--location s3://...`): anything
else is refused. Names are checked, not quoted blindly: `--schema` must be an identifier; a location holding a
control character is refused, and for the warehouses a quote or a backslash too (their string escapes differ
from standard SQL's `''`, which DuckDB uses); the lake's path in the header comment has its control
characters escaped, so it cannot end the comment.

Checked against the engines: the DuckDB and Spark (pyspark 4, local mode) DDL is executed in
tests/test_ddl.py on real lakes. BigQuery and Athena do not run here; their DDL follows their documentation:
- BigQuery, "CREATE EXTERNAL TABLE" (data-definition-language) and "Use externally partitioned data"
  (hive-partitioned-queries): `CREATE SCHEMA IF NOT EXISTS`; a column list, then `WITH PARTITION COLUMNS
  (lang STRING, date STRING)`, then OPTIONS `format = 'PARQUET'`, `uris = ['gs://.../documents/*']`,
  `hive_partition_uri_prefix` ending right before the first `key=value` folder, partition keys not in the
  files; `enable_list_inference = true` so a Parquet LIST reads as `ARRAY<STRING>`; types STRING, INT64,
  FLOAT64, BOOL, TIMESTAMP; sources on Cloud Storage only.
- Athena, "CREATE TABLE" / "Data types in Amazon Athena" / "Escape reserved keywords" / "MSCK REPAIR TABLE":
  Hive type names in DDL (`string`, `int`, `float`, `timestamp`, `array<string>`), backticks around
  reserved words such as `date`, `PARTITIONED BY` columns not repeated in the column list, `STORED AS
  PARQUET`, `LOCATION 's3://.../'`, then `MSCK REPAIR TABLE` to load the partitions (one statement at a time
  in the console).
"""
from __future__ import annotations

import re
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from wirewash.pipeline.query import INGEST, TABLES, documents_select, lake_snapshot, layout_of

__all__ = ["DIALECTS", "PARTITION_COLUMNS", "lake_ddl", "table_schema", "column_type", "DdlError"]

DOCUMENTS = "documents"
DIALECTS = ("duckdb", "bigquery", "athena", "spark")
PARTITION_COLUMNS = ("lang", "date")
INGEST_PARTITION_COLUMNS = ("ingest_date",)  # the ingest layout: `lang` and `date` are columns of the files
DEFAULT_SCHEMA = "wirewash"
REQUIRED_SCHEME = {"bigquery": ("gs://", "Cloud Storage"), "athena": ("s3://", "Amazon S3")}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_QUOTES = re.compile(r"['\\]")


class DdlError(ValueError):
    """The options cannot make a valid DDL (a bad schema name, a location the dialect cannot read)."""


# Arrow type id -> type name per dialect (lists are built from their element type).
_SCALARS = {
    "duckdb": {"string": "VARCHAR", "float": "FLOAT", "double": "DOUBLE", "int32": "INTEGER", "int64": "BIGINT",
               "bool": "BOOLEAN", "timestamp[us, tz=UTC]": "TIMESTAMPTZ"},
    "bigquery": {"string": "STRING", "float": "FLOAT64", "double": "FLOAT64", "int32": "INT64", "int64": "INT64",
                 "bool": "BOOL", "timestamp[us, tz=UTC]": "TIMESTAMP"},
    "athena": {"string": "string", "float": "float", "double": "double", "int32": "int", "int64": "bigint",
               "bool": "boolean", "timestamp[us, tz=UTC]": "timestamp"},
    "spark": {"string": "STRING", "float": "FLOAT", "double": "DOUBLE", "int32": "INT", "int64": "BIGINT",
              "bool": "BOOLEAN", "timestamp[us, tz=UTC]": "TIMESTAMP"},
}


def column_type(arrow_type: pa.DataType, dialect: str) -> str:
    """The dialect's name for an Arrow type of the lake (dictionary-encoded types by their values)."""
    if pa.types.is_dictionary(arrow_type):
        return column_type(arrow_type.value_type, dialect)
    if pa.types.is_large_string(arrow_type):
        arrow_type = pa.string()
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        element = column_type(arrow_type.value_type, dialect)
        return {"duckdb": f"{element}[]", "athena": f"array<{element}>"}.get(dialect, f"ARRAY<{element}>")
    try:
        return _SCALARS[dialect][str(arrow_type)]
    except KeyError:
        raise DdlError(f"no {dialect} type for the lake's column type {arrow_type}") from None


def table_schema(files: list, table: str, layout: str = "day") -> pa.Schema:
    """The table's columns as written (its first Parquet file; the lake's schema when it has none), without
    the hive partition columns (the ingest layout's files hold `lang` and `date`: kept)."""
    if files:
        schema = pq.read_schema(files[0])
    else:
        from wirewash.pipeline.lake import file_schema  # imports Beam: only when a table has no file

        schema = file_schema(table, layout)
    return pa.schema([f for f in schema if f.name not in partition_columns(table, layout)]).remove_metadata()


def partition_columns(table: str, layout: str) -> tuple:
    """The hive partition columns (folder names, never in the files) of a table in a layout."""
    if table != DOCUMENTS:
        return ()
    return INGEST_PARTITION_COLUMNS if layout == INGEST else PARTITION_COLUMNS


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _comment(text: str) -> str:
    """Text for a `--` comment: control characters (a newline would end the comment) escaped."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


def _columns(schema: pa.Schema, dialect: str, quote: str) -> list[str]:
    return [f"{quote}{f.name}{quote} {column_type(f.type, dialect)}" for f in schema]


def _duckdb(location: str, schemas: dict, empty: set, layout: str) -> list[str]:
    statements = []
    for table in TABLES:
        if table in empty:
            # DuckDB cannot read an empty glob: an empty view with the table's columns.
            cols = _columns(schemas[table], "duckdb", '"')
            cols += [f'"{c}" VARCHAR' for c in partition_columns(table, layout)]
            select = ", ".join(f"CAST(NULL AS {c.split(' ', 1)[1]}) AS {c.split(' ', 1)[0]}" for c in cols)
            statements.append(f"-- {table}: no file yet in this lake (run wirewash ddl again once it has some)\n"
                              f"CREATE OR REPLACE VIEW {table} AS SELECT {select} WHERE false;")
        elif table == DOCUMENTS:
            depth = "/*" * (len(partition_columns(table, layout)) + 1)
            select = documents_select(_quote(f"{location}/documents{depth}.parquet"), location, layout)
            statements.append(f"CREATE OR REPLACE VIEW {table} AS {select};")
        else:
            statements.append(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet("
                              f"{_quote(location + '/' + table + '/*.parquet')}, union_by_name = true, "
                              "hive_partitioning = false);")
    return statements


def _partition_list(table: str, layout: str, dialect: str, quote: str) -> list[str]:
    return [f"{quote}{c}{quote} {column_type(pa.string(), dialect)}" for c in partition_columns(table, layout)]


def _bigquery(location: str, schema: str, schemas: dict, layout: str) -> list[str]:
    statements = [f"-- the dataset must be in the bucket's location (add OPTIONS (location = '...') if not the "
                  f"default)\nCREATE SCHEMA IF NOT EXISTS `{schema}`;"]
    for table in TABLES:
        prefix = f"{location}/{table}"
        cols = ",\n  ".join(_columns(schemas[table], "bigquery", "`"))
        keys = _partition_list(table, layout, "bigquery", "`")
        partition = "WITH PARTITION COLUMNS (\n  " + ",\n  ".join(keys) + "\n)\n" if keys else ""
        options = ["format = 'PARQUET'", f"uris = [{_quote(prefix + ('/*' if table == DOCUMENTS else '/*.parquet'))}]",
                   "enable_list_inference = true"]
        if table == DOCUMENTS:
            options += [f"hive_partition_uri_prefix = {_quote(prefix)}", "require_hive_partition_filter = false"]
        statements.append(f"CREATE OR REPLACE EXTERNAL TABLE `{schema}.{table}` (\n  {cols}\n)\n{partition}"
                          "OPTIONS (\n  " + ",\n  ".join(options) + "\n);")
    return statements


def _athena(location: str, schema: str, schemas: dict, layout: str) -> list[str]:
    statements = [f"CREATE DATABASE IF NOT EXISTS `{schema}`;"]
    for table in TABLES:
        cols = ",\n  ".join(_columns(schemas[table], "athena", "`"))
        keys = _partition_list(table, layout, "athena", "`")
        partition = "PARTITIONED BY (\n  " + ",\n  ".join(keys) + "\n)\n" if keys else ""
        statements.append(f"CREATE EXTERNAL TABLE IF NOT EXISTS `{schema}`.`{table}` (\n  {cols}\n)\n{partition}"
                          f"STORED AS PARQUET\nLOCATION {_quote(location + '/' + table + '/')};")
    statements.append(_repair(schema, layout))
    return statements


def _repair(schema: str, layout: str) -> str:
    folders = "ingest_date=" if layout == INGEST else "lang=/date="
    return (f"-- load the {folders} folders as partitions (again after each run)\n"
            f"MSCK REPAIR TABLE `{schema}`.`{DOCUMENTS}`;")


def _spark(location: str, schema: str, schemas: dict, layout: str) -> list[str]:
    statements = [f"CREATE DATABASE IF NOT EXISTS `{schema}`;"]
    for table in TABLES:
        keys = partition_columns(table, layout)
        cols = _columns(schemas[table], "spark", "`") + _partition_list(table, layout, "spark", "`")
        partition = "PARTITIONED BY (" + ", ".join(f"`{c}`" for c in keys) + ")\n" if keys else ""
        statements.append(f"CREATE TABLE IF NOT EXISTS `{schema}`.`{table}` (\n  " + ",\n  ".join(cols) + "\n)\n"
                          f"USING PARQUET\n{partition}LOCATION {_quote(location + '/' + table)};")
    statements.append(_repair(schema, layout))
    return statements


def _check_location(dialect: str, location: str, given: bool) -> None:
    scheme, store = REQUIRED_SCHEME.get(dialect, (None, None))
    if scheme and not location.startswith(scheme):
        what = f"--location {_comment(location)}" if given else "a local lake"
        raise DdlError(f"{dialect} reads external tables from {store} only, not {what}: upload the lake and give "
                       f"--location {scheme}BUCKET/PATH")
    if scheme and not location[len(scheme):].strip("/"):
        raise DdlError(f"--location {location} names no bucket: give {scheme}BUCKET/PATH")
    unprintable = any(not c.isprintable() for c in location)  # line breaks, C0/C1 controls, separators
    if unprintable or (dialect != "duckdb" and _QUOTES.search(location)):  # DuckDB: standard '' quoting
        raise DdlError(f"the location {_comment(location)!r} holds a control character"
                       + ("" if dialect == "duckdb" else ", a quote or a backslash, which string literals of "
                          f"{dialect} do not escape as others do") + ": give --location without them")


def lake_ddl(lake: str, dialect: str, location: Optional[str] = None, schema: Optional[str] = None) -> str:
    """The DDL declaring the lake's three tables in `dialect`, reading from `location` (default: the lake's
    absolute path, for DuckDB and Spark). Raises LakeNotFoundError when `lake` is not a complete wirewash lake,
    DdlError for a bad `schema` or a location the dialect cannot read."""
    if dialect not in DIALECTS:
        raise DdlError(f"unknown dialect {dialect!r}; choose from {', '.join(DIALECTS)}")
    schema = DEFAULT_SCHEMA if schema is None else schema
    if not _IDENTIFIER.fullmatch(schema):
        raise DdlError(f"--schema {_comment(schema)!r} is not a plain name: use letters, digits and underscores "
                       "(not starting with a digit, at most 128)")
    snapshot = lake_snapshot(lake)  # as `wirewash query`: only committed lakes
    lake = snapshot.lake
    _check_location(dialect, location or lake, location is not None)
    target = (location or lake).rstrip("/")
    layout = layout_of(snapshot.summary)
    schemas = {table: table_schema(snapshot.files[table], table, layout) for table in TABLES}
    header = f"-- wirewash lake {_comment(lake)} as {dialect} tables" + (
        f", read from {_comment(target)}" if target != lake else "")
    if dialect == "duckdb":
        body = _duckdb(target, schemas, {t for t in TABLES if not snapshot.files[t]}, layout)
    elif dialect == "bigquery":
        body = _bigquery(target, schema, schemas, layout)
    elif dialect == "athena":
        body = _athena(target, schema, schemas, layout)
    else:
        body = _spark(target, schema, schemas, layout)
    return "\n\n".join([header] + body)
