"""`wirewash ddl LAKE --dialect duckdb|bigquery|athena|spark`: the SQL that declares a lake's tables.

`documents` is hive-partitioned: `lang` and `date` live only in the folder names
(`documents/lang=en/date=2024-01-31/part-*.parquet`), never in the files, so every dialect declares them as
partition columns, typed as strings (`date` can be `unknown`). `duplicates` and `rejected` are plain folders
of Parquet files. Column types come from the lake's own Parquet files (the schemas in `pipeline/lake.py` when
a table has no file).
"""
from __future__ import annotations

import os
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.query import TABLES, LakeNotFoundError

__all__ = ["DIALECTS", "PARTITION_COLUMNS", "lake_ddl", "table_schema"]

DOCUMENTS = "documents"
DIALECTS = ("duckdb", "bigquery", "athena", "spark")
PARTITION_COLUMNS = ("lang", "date")
DEFAULT_SCHEMA = "wirewash"

# Arrow type (as str) -> type name per dialect.
_TYPES = {
    "duckdb": {"string": "VARCHAR", "float": "FLOAT", "double": "DOUBLE", "int32": "INTEGER", "int64": "BIGINT",
               "bool": "BOOLEAN", "timestamp[us, tz=UTC]": "TIMESTAMPTZ"},
    "athena": {"string": "string", "float": "float", "double": "double", "int32": "int", "int64": "bigint",
               "bool": "boolean", "timestamp[us, tz=UTC]": "timestamp"},
    "spark": {"string": "STRING", "float": "FLOAT", "double": "DOUBLE", "int32": "INT", "int64": "BIGINT",
              "bool": "BOOLEAN", "timestamp[us, tz=UTC]": "TIMESTAMP"},
}


def _parquet_files(folder: str) -> list[str]:
    return sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                  if name.endswith(".parquet"))


def table_schema(lake: str, table: str) -> pa.Schema:
    """The table's columns as written (first Parquet file), without the hive partition columns."""
    files = _parquet_files(os.path.join(lake, table))
    if files:
        schema = pq.read_schema(files[0])
    else:
        from pipeline.lake import SCHEMAS  # imports Beam: only when a table has no file

        schema = SCHEMAS[table]
    return pa.schema([f for f in schema if f.name not in PARTITION_COLUMNS]).remove_metadata()


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _columns(schema: pa.Schema, dialect: str, quote: str) -> list[str]:
    types = _TYPES[dialect]
    return [f"{quote}{f.name}{quote} {types.get(str(f.type), types['string'])}" for f in schema]


def _duckdb(lake: str, location: str, schemas: dict) -> list[str]:
    statements = []
    for table in TABLES:
        if table == DOCUMENTS:
            source = (f"read_parquet({_quote(location + '/documents/*/*/*.parquet')}, hive_partitioning = true, "
                      "hive_types = {'lang': VARCHAR, 'date': VARCHAR})")
        else:
            source = f"read_parquet({_quote(location + '/' + table + '/*.parquet')})"
        if location == lake and not _parquet_files(os.path.join(lake, table)):
            # DuckDB cannot read an empty glob; a run's lake never changes, so an empty typed view is exact.
            cols = _columns(schemas[table], "duckdb", '"')
            if table == DOCUMENTS:
                cols += [f'"{c}" VARCHAR' for c in PARTITION_COLUMNS]
            select = ", ".join(f"CAST(NULL AS {c.split(' ', 1)[1]}) AS {c.split(' ', 1)[0]}" for c in cols)
            statements.append(f"-- {table}: no files in this lake\n"
                              f"CREATE OR REPLACE VIEW {table} AS SELECT {select} WHERE false;")
        else:
            statements.append(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {source};")
    return statements


def _bigquery(location: str, schema: str, schemas: dict) -> list[str]:
    statements = []
    for table in TABLES:
        prefix = f"{location}/{table}"
        partition = ("WITH PARTITION COLUMNS (\n  lang STRING,\n  date STRING\n)\n" if table == DOCUMENTS else "")
        options = ["format = 'PARQUET'", f"uris = [{_quote(prefix + ('/*' if table == DOCUMENTS else '/*.parquet'))}]"]
        if table == DOCUMENTS:
            options += [f"hive_partition_uri_prefix = {_quote(prefix)}", "require_hive_partition_filter = false"]
        # Parquet is self-describing: BigQuery takes the columns from the files.
        statements.append(f"CREATE OR REPLACE EXTERNAL TABLE `{schema}.{table}`\n{partition}"
                          f"OPTIONS (\n  " + ",\n  ".join(options) + "\n);")
    return statements


def _athena(location: str, schema: str, schemas: dict) -> list[str]:
    statements = [f"CREATE DATABASE IF NOT EXISTS {schema};"]
    for table in TABLES:
        cols = ",\n  ".join(_columns(schemas[table], "athena", "`"))
        partition = "PARTITIONED BY (\n  `lang` string,\n  `date` string\n)\n" if table == DOCUMENTS else ""
        statements.append(f"CREATE EXTERNAL TABLE IF NOT EXISTS {schema}.{table} (\n  {cols}\n)\n{partition}"
                          f"STORED AS PARQUET\nLOCATION {_quote(location + '/' + table + '/')};")
    statements.append(f"-- load the lang=/date= folders as partitions\nMSCK REPAIR TABLE {schema}.{DOCUMENTS};")
    return statements


def _spark(location: str, schema: str, schemas: dict) -> list[str]:
    statements = [f"CREATE DATABASE IF NOT EXISTS {schema};"]
    for table in TABLES:
        cols = _columns(schemas[table], "spark", "`")
        partition = ""
        if table == DOCUMENTS:
            cols += ["`lang` STRING", "`date` STRING"]
            partition = "PARTITIONED BY (`lang`, `date`)\n"
        statements.append(f"CREATE TABLE IF NOT EXISTS {schema}.{table} (\n  " + ",\n  ".join(cols) + "\n)\n"
                          f"USING PARQUET\n{partition}LOCATION {_quote(location + '/' + table)};")
    statements.append(f"-- load the lang=/date= folders as partitions\nMSCK REPAIR TABLE {schema}.{DOCUMENTS};")
    return statements


def lake_ddl(lake: str, dialect: str, location: Optional[str] = None, schema: Optional[str] = None) -> str:
    """The DDL declaring the lake's three tables in `dialect`, reading from `location` (default: the lake's
    absolute path). Raises LakeNotFoundError when `lake` is not a wirewash lake."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; choose from {', '.join(DIALECTS)}")
    lake = os.path.abspath(lake)
    if not os.path.exists(os.path.join(lake, "_SUMMARY.json")):  # as `wirewash query`: only committed lakes
        raise LakeNotFoundError(f"{lake} is not a complete wirewash lake (no _SUMMARY.json)")
    location = (location or lake).rstrip("/")
    schemas = {table: table_schema(lake, table) for table in TABLES}
    header = f"-- wirewash lake {lake} as {dialect} tables" + (f", read from {location}" if location != lake else "")
    if dialect == "duckdb":
        body = _duckdb(lake, location, schemas)
    elif dialect == "bigquery":
        body = _bigquery(location, schema or DEFAULT_SCHEMA, schemas)
    elif dialect == "athena":
        body = _athena(location, schema or DEFAULT_SCHEMA, schemas)
    else:
        body = _spark(location, schema or DEFAULT_SCHEMA, schemas)
    return "\n\n".join([header] + body)
