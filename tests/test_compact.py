"""`wirewash compact`: small files merged, every row kept, the manifest swapped atomically under a reader."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirewash.pipeline.cli import main
from wirewash.pipeline.compact import compaction_plan
from wirewash.pipeline.lake import INDEX, TABLES
from tests.helpers import summary, write_jsonl
from tests.test_append import FIXED, edited, record, story


def all_rows(lake: Path) -> dict:
    """Every row of every table and of the index, with its partition folder, as sorted JSON strings."""
    out = {}
    for table in TABLES + (INDEX,):
        rows = []
        for path in sorted((lake / table).rglob("*.parquet")):
            folder = path.parent.relative_to(lake).as_posix()
            rows += [json.dumps({**r, "_folder": folder}, default=str, sort_keys=True)
                     for r in pq.read_table(path).to_pylist()]
        out[table] = sorted(rows)
    return out


@pytest.fixture(scope="module")
def appended_three_times(tmp_path_factory):
    """Three appends into the same few months: three files per partition, and copies across the runs."""
    root = tmp_path_factory.mktemp("compact")
    lake = root / "lake"
    for run in range(3):
        records = [record(f"r{run}-{i}", story(run * 100 + i), i * 9) for i in range(12)]
        records += [record(f"r{run}-copy", story(i := (run + 1) % 3 * 100), 5),
                    record(f"r{run}-near", edited(story(i + 1), run), 14), '{"broken']
        path = write_jsonl(root / f"in{run}.jsonl", records)
        assert main(["run", "--append", "--input", str(path), "--output", str(lake), "--quiet", *FIXED]) == 0
    return lake


def test_compaction_keeps_every_row_and_leaves_one_file_per_partition(appended_three_times, tmp_path):
    import shutil
    lake = Path(shutil.copytree(appended_three_times, tmp_path / "lake"))
    before_rows, before = all_rows(lake), summary(lake)
    folders = {p.parent for p in (lake / "documents").rglob("*.parquet")}
    assert len(list((lake / "documents").rglob("*.parquet"))) > len(folders)  # something to compact
    assert main(["compact", str(lake), "--quiet"]) == 0
    assert all_rows(lake) == before_rows
    after = summary(lake)
    assert all(len(list(f.glob("*.parquet"))) == 1 for f in folders)
    assert {k: after[k] for k in ("records_read", "documents", "duplicates", "rejected", "runs")} == \
        {k: before[k] for k in ("records_read", "documents", "duplicates", "rejected", "runs")}
    listed = sorted(f for t in TABLES for f in after["files"][t]) + sorted(after["index"]["files"])
    on_disk = sorted(p.relative_to(lake).as_posix() for t in TABLES for p in (lake / t).rglob("*.parquet"))
    assert listed == on_disk + sorted(p.relative_to(lake).as_posix() for p in (lake / INDEX).glob("*.parquet"))
    assert after["compactions"][-1]["merged_files"] > after["compactions"][-1]["written_files"]
    assert main(["compact", str(lake)]) == 0  # nothing left to do: a no-op
    assert all_rows(lake) == before_rows
    # An append after compaction still dedups against every document (the index was compacted too).
    again = write_jsonl(tmp_path / "again.jsonl", [record("late-copy", story(0), 3)])
    compacted = summary(lake)
    assert main(["run", "--append", "--input", str(again), "--output", str(lake), "--quiet", *FIXED]) == 0
    appended = summary(lake)
    assert appended["documents"] == before["documents"] and appended["duplicates"] == before["duplicates"] + 1
    assert set(compacted) <= set(appended)  # the append keeps every part of the lake's summary...
    assert appended["compactions"] == compacted["compactions"]  # ...its history included


def _manifest_rows(lake: Path) -> int:
    """What a reader of the manifest counts: the rows of the documents listed in `_SUMMARY.json`. A file that
    vanished (compacted away after the manifest was read) means: read the manifest again."""
    for _ in range(5):
        listed = json.loads((lake / "_SUMMARY.json").read_text())["files"]["documents"]
        try:
            return sum(pq.read_metadata(lake / rel).num_rows for rel in listed)
        except FileNotFoundError:
            continue
    raise AssertionError("the manifest kept naming files that do not exist")


def test_a_reader_of_the_manifest_sees_every_row_during_compaction(appended_three_times, tmp_path):
    import shutil
    lake = Path(shutil.copytree(appended_three_times, tmp_path / "lake"))
    expected = summary(lake)["documents"]
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            seen.append(_manifest_rows(lake))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert main(["compact", str(lake), "--quiet"]) == 0
    finally:
        stop.set()
        thread.join()
    assert seen and set(seen) == {expected}


def test_compact_refuses_what_is_not_a_committed_lake(tmp_path, capsys):
    (tmp_path / "documents").mkdir()
    assert main(["compact", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 50), st.integers(1, 30)), max_size=40),
       st.integers(10, 100))
@settings(max_examples=100, deadline=None)
def test_compaction_plan_groups_files_of_one_folder_within_bounds(files, max_bytes):
    paths = [f"documents/{folder}/part-{i}.parquet" for i, (folder, _, _) in enumerate(files)]
    sizes = {p: s for p, (_, s, _) in zip(paths, files)}
    rows = {p: r for p, (_, _, r) in zip(paths, files)}
    plan = compaction_plan(paths, sizes, rows, max_bytes)
    grouped = [p for group in plan for p in group]
    assert len(grouped) == len(set(grouped))
    for group in plan:
        assert len(group) > 1 and len({p.rsplit("/", 1)[0] for p in group}) == 1
        assert sum(sizes[p] for p in group) <= max_bytes


def test_a_stream_append_keeps_the_lakes_history():
    """What the batch append above shows holds for a stream appended to a compacted lake: its summaries (one
    per pane, built by the same `lake_summary`) keep `compactions`."""
    from wirewash.pipeline.windowed_lake import _new_total, stream_lake_summary

    history = [{"at": "2024-01-01T00:00:00+00:00", "merged_files": 3, "written_files": 1}]
    previous = {"records_read": 1, "documents": 1, "duplicates": 0, "rejected": 0, "reconciled": True, "ok": True,
                "invariants": {"reconciled": True}, "files": {t: [] for t in TABLES}, "runs": [],
                "compactions": history}
    assert stream_lake_summary(previous, _new_total(), "day", {"run_id": "s"}, None)["compactions"] == history
