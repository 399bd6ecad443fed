"""The lake's manifest: the Parquet files `_SUMMARY.json` lists (`files.<table>`, `index.files`).

A listed path is the lake's own only when it is a relative path of a `.parquet` file inside its table's
folder (`documents/lang=en/date=2024-03-01/part-1.parquet`, or relative to the table: `lang=en/...`). Every
reader of the manifest checks it here first (`wirewash query`, `report` and `ddl` per path, and every writer
through `lake.read_summary`: `compact`, an append, a stream), so a damaged or crafted summary never makes
wirewash read, write or delete a file outside the lake. No Apache Beam import: `wirewash query` starts fast.
"""
from __future__ import annotations

import os
from typing import Optional

from wirewash.transforms.types import TABLES

__all__ = ["INDEX_FOLDER", "listed_path", "manifest_problem", "leaves_the_lake"]

INDEX_FOLDER = "_index"  # the dedup index's folder (lake.INDEX)


def listed_path(table: str, rel) -> str:
    """`rel`, a path the manifest lists among `table`'s files, as a path relative to the lake
    (`table/...`). Raises ValueError (the message says why, after the words "the summary") when it is not a
    relative path of a `.parquet` file, or when it leaves the table's folder (`..`, an absolute path, a URL)."""
    if (not isinstance(rel, str) or not rel.endswith(".parquet") or rel.startswith("/") or "\\" in rel
            or ":" in rel or "\x00" in rel):
        raise ValueError(f"lists {rel!r} among the {table} files: not a relative path of a .parquet file")
    parts = rel.split("/")
    if parts[0] != table:
        parts = [table] + parts
    if any(p in ("", ".", "..") for p in parts[1:]):
        raise ValueError(f"lists {rel!r} among the {table} files, a path that leaves the {table} folder")
    return "/".join(parts)


def _listed(summary: dict) -> list[tuple[str, object]]:
    """(table or the index folder, what the manifest lists for it: a list when the summary is sound)."""
    files, index = summary.get("files") or {}, summary.get("index") or {}
    return [(table, files.get(table) or []) for table in TABLES] + [(INDEX_FOLDER, index.get("files") or [])]


def manifest_problem(summary) -> Optional[str]:
    """Why a parsed `_SUMMARY.json` cannot be trusted with the lake's files (not a JSON object; a manifest that
    is not lists of the lake's own paths, see `listed_path`), or None."""
    if not isinstance(summary, dict):
        return "is not a JSON object"
    if not isinstance(summary.get("files", {}), dict) or not isinstance(summary.get("index", {}), dict):
        return "has a `files` or `index` entry that is not an object"
    for table, names in _listed(summary):
        if not isinstance(names, list):
            return f"lists the {table} files as {type(names).__name__}, not a list"
        for rel in names:
            try:
                listed_path(table, rel)
            except ValueError as err:
                return str(err)
    return None


def leaves_the_lake(lake: str, summary: dict) -> Optional[str]:
    """For a local lake: the first listed path (already `listed_path`-checked) whose real path is outside the
    lake's (a table folder, or a file, that is a symbolic link out of it), as a sentence; else None."""
    if "://" in lake:
        return None
    root = os.path.realpath(lake)
    folders: dict = {}  # each partition folder resolved once; a file itself only when it is a link
    for table, names in _listed(summary):
        for rel in names:
            path = os.path.join(lake, *listed_path(table, rel).split("/"))
            folder, name = os.path.split(path)
            if folder not in folders:
                folders[folder] = os.path.realpath(folder)
            real = os.path.realpath(path) if os.path.islink(path) else os.path.join(folders[folder], name)
            if not real.startswith(root.rstrip(os.sep) + os.sep):
                return f"lists {rel!r}, which is a symbolic link out of the lake (to {real})"
    return None
