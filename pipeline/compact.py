"""`wirewash compact LAKE`: the small Parquet files of each partition (left by appends and streaming windows)
rewritten into large ones, without changing a row; readers of the lake's file list see the old files or the
new ones, never both.
"""
from __future__ import annotations

import posixpath
import uuid
from collections import defaultdict
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from wirewash.pipeline.lake import (INDEX, MERGE_MAX_BYTES, RENAME_BATCH, STAGING_DIR, STAGING_MARKER, SUMMARY_FILE,
                                    TABLES, LakeExistsError, file_schema, read_summary, remove_staging)
from wirewash.pipeline import writer_lock
from wirewash.pipeline.lake_summary import write_summary
from wirewash.pipeline.lake_write import StagedFile, _ensure_dir, _write_staged_table, merge_groups

__all__ = ["compact", "compaction_plan"]


def compaction_plan(files: list[str], sizes: dict, rows: dict, max_bytes: int = MERGE_MAX_BYTES) -> list[list[str]]:
    """Relative paths of one table -> the groups of files to merge: per partition folder, the files packed by
    `merge_groups` (in path order, up to `max_bytes` of Parquet and MAX_ROWS_PER_FILE rows); groups of one
    file stay as they are and are left out."""
    by_folder = defaultdict(list)
    for path in files:
        by_folder[posixpath.dirname(path)].append(StagedFile("", posixpath.dirname(path), path, rows[path], sizes[path]))
    plan = []
    for folder in sorted(by_folder):
        plan += [[f.path for f in group] for group in merge_groups(by_folder[folder], max_bytes) if len(group) > 1]
    return plan


def compact(output: str, max_bytes: int = MERGE_MAX_BYTES) -> dict:
    """Rewrites the small files of each partition (tables and index) into large ones, sorted, without changing
    a row: new files are written to staging, checked (same rows, same schema), moved in; then `_SUMMARY.json`
    is replaced by one whose `files` lists them instead of the old ones (one atomic rename: a reader of the
    manifest sees the old set or the new set, never both), and only then are the old files deleted. Returns
    {"merged": old files replaced, "written": new files}. Raises LakeExistsError when `output` is not a
    committed lake, and LakeBusyError while another run (a stream, an append) writes it."""
    if read_summary(output) is None:
        raise LakeExistsError(f"{output} holds no committed wirewash lake ({SUMMARY_FILE} missing)")
    run_id = f"compact-{uuid.uuid4().hex}"
    writer_lock.acquire(output, "compaction", run_id)  # refused while a stream or a run writes the lake
    try:
        return _compact(output, max_bytes, run_id)
    finally:
        writer_lock.release(output, run_id)


def _compact(output: str, max_bytes: int, run_id: str) -> dict:
    previous = read_summary(output)
    if previous is None:
        raise LakeExistsError(f"{output} holds no committed wirewash lake ({SUMMARY_FILE} missing)")
    if "files" not in previous:
        raise LakeExistsError(f"{output} was written before the files manifest existed; rerun it with --overwrite "
                              "to compact it")
    staging = FileSystems.join(output, STAGING_DIR, run_id)
    FileSystems.mkdirs(staging)
    with FileSystems.create(FileSystems.join(output, STAGING_DIR, STAGING_MARKER)) as handle:
        handle.write(b"wirewash staging\n")
    layout = (previous.get("layout") or {}).get("partition_by", "day")  # the ingest layout's files hold lang, date
    manifests = {t: list(previous["files"].get(t, [])) for t in TABLES}
    if "index" in previous:
        manifests[INDEX] = list(previous["index"]["files"])
    replaced, written, moves = [], [], []
    for table, files in manifests.items():
        sizes, rows = {}, {}
        for rel in files:
            path = FileSystems.join(output, rel)
            sizes[rel] = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
            with FileSystems.open(path) as handle:
                rows[rel] = pq.ParquetFile(handle).metadata.num_rows
        for group in compaction_plan(files, sizes, rows, max_bytes):
            parts = []
            for rel in group:
                with FileSystems.open(FileSystems.join(output, rel)) as handle:
                    parts.append(pq.read_table(handle, schema=file_schema(table, layout)))
            merged = pa.concat_tables(parts)
            if merged.num_rows != sum(rows[rel] for rel in group):
                raise RuntimeError(f"compaction of {posixpath.dirname(group[0])} lost rows; nothing changed")
            _ensure_dir(FileSystems.join(staging, table))
            staged = _write_staged_table(table, "", staging, merged)
            rel = posixpath.join(posixpath.dirname(group[0]), f"part-{uuid.uuid4().hex}.parquet")
            moves.append((staged.path, FileSystems.join(output, rel)))
            replaced += group
            written.append((table, rel))
    if not moves:
        remove_staging(output)
        return {"merged": 0, "written": 0}
    FileSystems.rename([m[0] for m in moves], [m[1] for m in moves])
    gone = set(replaced)
    summary = dict(previous)
    summary["files"] = {t: sorted([f for f in manifests[t] if f not in gone] + [r for tb, r in written if tb == t])
                        for t in TABLES}
    if INDEX in manifests:
        summary["index"] = dict(previous["index"], files=sorted(
            [f for f in manifests[INDEX] if f not in gone] + [r for tb, r in written if tb == INDEX]))
    summary["compactions"] = list(previous.get("compactions", [])) + [{
        "at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "merged_files": len(replaced), "written_files": len(written)}]
    write_summary(output, staging, summary)
    old = [FileSystems.join(output, rel) for rel in replaced]
    for start in range(0, len(old), RENAME_BATCH):
        FileSystems.delete(old[start:start + RENAME_BATCH])
    remove_staging(output)
    return {"merged": len(replaced), "written": len(written)}
