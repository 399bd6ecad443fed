"""SQL over a lake with DuckDB: `documents`, `duplicates` and `rejected` views over the Parquet files.

The connection is in-memory and only reads: views over `read_parquet(..., hive_partitioning=true)`; after
they are defined, DuckDB's access to other files is switched off and its configuration locked, so a query
cannot read or write outside the lake. DuckDB's directory allow-list would still let `COPY ... TO` write
inside the lake, so only one SELECT statement is accepted (`EXPLAIN ANALYZE COPY` runs the COPY: refused
too). A lake without `_SUMMARY.json` was interrupted before its commit finished: refused.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import duckdb

__all__ = ["connect_lake", "run_query", "write_parquet", "format_rows", "LakeNotFoundError", "QueryNotAllowedError",
           "check_read_only", "TABLES"]

# The lake's tables (as in pipeline/lake.py). Not imported from there: that module imports Apache Beam, which
# would add over a second to the start of every `wirewash query`, `report` and `ddl`.
TABLES = ("documents", "duplicates", "rejected")


def _empty_columns(table: str) -> list:
    """(name, type) of a table that has no file, from the lake's Arrow schemas (imported only then)."""
    from pipeline.lake import SCHEMAS

    columns = [(f.name, f.type) for f in SCHEMAS[table]]
    return columns + [("lang", "VARCHAR"), ("date", "VARCHAR")] if table == "documents" else columns


_DUCK_TYPES = {"string": "VARCHAR", "float": "FLOAT", "int32": "INTEGER", "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
               "VARCHAR": "VARCHAR"}


class LakeNotFoundError(FileNotFoundError):
    """The folder given is not a wirewash lake."""


class QueryNotAllowedError(ValueError):
    """The SQL is not a single read-only SELECT."""


def check_read_only(sql: str) -> None:
    """Raises QueryNotAllowedError unless `sql` is exactly one SELECT statement (SELECT, FROM-first, WITH,
    VALUES, DESCRIBE, SHOW and SUMMARIZE all parse as SELECT)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error:
        return  # a syntax error: let the real execution report it, with its position
    kinds = [str(st.type).rsplit(".", 1)[-1] for st in statements]
    if kinds != ["SELECT"]:
        raise QueryNotAllowedError(
            f"wirewash query runs one read-only SELECT statement; got {', '.join(kinds) or 'nothing'}")


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect_lake(lake: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the lake's three tables as views; read-only, locked down."""
    lake = os.path.abspath(lake)
    if not os.path.exists(os.path.join(lake, "_SUMMARY.json")):
        if any(os.path.isdir(os.path.join(lake, t)) for t in TABLES):
            raise LakeNotFoundError(f"{lake} is an incomplete lake (no _SUMMARY.json: its run was interrupted); "
                                    "rerun wirewash run with --overwrite")
        raise LakeNotFoundError(f"{lake} is not a wirewash lake (no _SUMMARY.json)")
    con = duckdb.connect(":memory:")
    for table in TABLES:
        folder = os.path.join(lake, table)
        has_files = os.path.isdir(folder) and any(
            name.endswith(".parquet") for _, _, names in os.walk(folder) for name in names)
        if has_files:
            pattern = _sql_string(os.path.join(folder, "**", "*.parquet"))
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({pattern}, hive_partitioning=true, "
                        "union_by_name=true)")
        else:
            columns = ", ".join(f"CAST(NULL AS {_DUCK_TYPES.get(str(t), 'VARCHAR')}) AS {n}"
                                for n, t in _empty_columns(table))
            con.execute(f"CREATE VIEW {table} AS SELECT {columns} WHERE false")
    # Views keep working; no new file access, no settings change, from here on.
    con.execute(f"SET allowed_directories = [{_sql_string(lake + os.sep)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def run_query(lake: str, sql: str, fmt: str = "table", limit: Optional[int] = None):
    """Runs one SELECT statement over the lake; returns (column names, rows)."""
    check_read_only(sql)
    con = connect_lake(lake)
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description or []]
    rows = cursor.fetchmany(limit) if limit else cursor.fetchall()
    return columns, rows


def write_parquet(lake: str, sql: str, out: str, limit: Optional[int] = None) -> int:
    """Runs one SQL statement over the lake and writes the result to the Parquet file `out` (zstd); returns
    the number of rows. The file is written by pyarrow, outside DuckDB's locked-down connection."""
    import pyarrow.parquet as pq

    import pyarrow as pa

    check_read_only(sql)
    con = connect_lake(lake)
    relation = con.sql(sql)
    table = relation.to_arrow_table() if relation is not None else pa.table({})
    if limit is not None:
        table = table.slice(0, limit)
    pq.write_table(table, out, compression="zstd")
    return table.num_rows


def format_rows(columns: list, rows: list, fmt: str = "table", max_width: int = 60) -> str:
    """Renders a result as an aligned text table, CSV or JSON lines."""
    if fmt == "json":
        return "\n".join(json.dumps(dict(zip(columns, row)), default=str, ensure_ascii=False) for row in rows)
    if fmt == "csv":
        import csv
        import io
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")

    def cell(value) -> str:
        text = "NULL" if value is None else str(value)
        text = " ".join(text.split())
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)
