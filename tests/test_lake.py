"""Lake writing: partitions from validated values, explicit schemas, a summary that reconciles."""
from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from wirewash.pipeline.lake import (DOCUMENTS_SCHEMA, MARKER_FILE, PARTITION_BY, SUMMARY_FILE, LakeExistsError,
                                    check_output_location, document_row, partition_of, remove_lake, valid_partition)
from wirewash.pipeline.lake_summary import summarize
from wirewash.pipeline.lake_write import commit, merge_groups
from wirewash.transforms.types import Article

ART = Article("d1", "f:1", "text", text="Hello world", lang="en", published_at="2023-06-27T10:00:00+00:00")


@pytest.mark.parametrize("lang, published, expected", [
    ("en", "2023-06-27T10:00:00+00:00", "lang=en/date=2023-06-27"),
    ("und", None, "lang=und/date=unknown"),
    ("../../etc", "2023-06-27T10:00:00+00:00", "lang=und/date=2023-06-27"),
    ("en", "../../etc/passwd", "lang=en/date=unknown"),
    ("en", "2023-02-30T00:00:00+00:00", "lang=en/date=unknown"),
    ("EN", "9999-99-99", "lang=und/date=unknown"),
])
def test_partition_values_come_from_a_closed_set(lang, published, expected):
    assert partition_of(ART._replace(lang=lang, published_at=published)) == expected


@pytest.mark.parametrize("partition_by, expected", [("day", "2023-06-27"), ("month", "2023-06"), ("year", "2023")])
def test_partition_granularity(partition_by, expected):
    partition = partition_of(ART, partition_by)
    assert partition == f"lang=en/date={expected}" and valid_partition(partition)
    assert partition_of(ART._replace(published_at="2023-02-30"), partition_by) == "lang=en/date=unknown"


@given(st.dates(min_value=date(1700, 1, 1), max_value=date(2300, 12, 31)), st.sampled_from(sorted(PARTITION_BY)),
       st.sampled_from(["en", "vi", "und", "xx", "../", "EN"]))
@settings(max_examples=200, deadline=None)
def test_every_partition_built_is_valid_and_cut_from_the_day(day, partition_by, lang):
    """Whatever the date and language, the partition is one the commit accepts, and its period is a prefix of
    the publication day (or `unknown` outside 1800-2200)."""
    partition = partition_of(ART._replace(lang=lang, published_at=day.isoformat() + "T00:00:00+00:00"), partition_by)
    assert valid_partition(partition)
    period = partition.split("date=")[1]
    assert period == (day.isoformat()[:PARTITION_BY[partition_by]] if 1800 <= day.year <= 2200 else "unknown")


def test_document_row_matches_schema():
    from datetime import datetime, timezone
    row = document_row(ART, datetime(2024, 1, 1, tzinfo=timezone.utc))
    assert set(row) == set(DOCUMENTS_SCHEMA.names)
    assert row["n_chars"] == 11 and row["n_words"] == 2


def test_summary_reconciles_and_counts_per_stage():
    docs = Counter({("en", ("read_more", "read_more")): 2, ("vi", ()): 1})
    dups = Counter({"exact": 2, "near": 1})
    rej = Counter({("read", "bad_json"): 1, ("extract", "no_text_extracted"): 1})
    s = summarize(8, docs, dups, rej)
    assert (s["records_read"], s["documents"], s["duplicates"], s["rejected"], s["reconciled"]) == (8, 3, 3, 2, True)
    assert s["boilerplate_lines_removed"] == {"read_more": 4}
    assert s["languages"] == {"en": 2, "vi": 1}
    assert s["stages"]["read"] == {"in": 8, "rejected": 1, "out": 7}
    assert s["stages"]["dedup"] == {"in": 6, "rejected": 0, "out": 3, "duplicates": 3}
    assert summarize(9, docs, dups, rej)["reconciled"] is False


def test_existing_lake_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "documents").mkdir()
    (tmp_path / MARKER_FILE).write_text("{}")
    with pytest.raises(LakeExistsError, match="--overwrite"):
        check_output_location(str(tmp_path), overwrite=False)
    check_output_location(str(tmp_path), overwrite=True)


@pytest.mark.parametrize("table, name", [("documents", "thesis.txt"), ("documents", "mine.csv"),
                                         ("rejected", "old.parquet")])
def test_a_folder_that_is_not_a_lake_is_never_replaced(tmp_path, table, name):
    """A folder with a table's name but no summary or marker is someone else's: refused, nothing deleted."""
    mine = tmp_path / table / name
    mine.parent.mkdir()
    mine.write_text("my own work")
    for overwrite in (False, True):
        with pytest.raises(LakeExistsError, match="not a wirewash lake"):
            check_output_location(str(tmp_path), overwrite=overwrite)
    with pytest.raises(LakeExistsError, match="not a wirewash lake"):
        remove_lake(str(tmp_path))
    assert mine.read_text() == "my own work"


def test_a_foreign_staging_folder_is_left_alone(tmp_path):
    foreign = tmp_path / "_staging" / "notes.txt"
    foreign.parent.mkdir()
    foreign.write_text("keep")
    with pytest.raises(LakeExistsError, match="_staging"):
        check_output_location(str(tmp_path), overwrite=False)
    assert foreign.read_text() == "keep"


def test_remove_lake_deletes_only_what_the_lake_holds(tmp_path):
    part = tmp_path / "documents" / "lang=en" / "date=2023-06" / "part-a.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(__import__("pyarrow").table({"doc_id": ["x"]}), part)
    notes = tmp_path / "documents" / "notes.txt"
    notes.write_text("mine")
    for name in (SUMMARY_FILE, "_REPORT.html"):
        (tmp_path / name).write_text("{}")
    remove_lake(str(tmp_path))
    assert notes.read_text() == "mine"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "documents", "documents/notes.txt"]


def test_merge_groups_bound_size_and_rows():
    from wirewash.pipeline.lake_write import StagedFile
    files = [StagedFile("documents", "p", f"f{i}", rows=10, size=30) for i in range(10)]
    groups = merge_groups(files, max_bytes=100, max_rows=1000)
    assert [len(g) for g in groups] == [3, 3, 3, 1]
    assert sorted(f for g in groups for f in g) == sorted(files)
    assert [len(g) for g in merge_groups(files, max_bytes=10**9, max_rows=25)] == [2, 2, 2, 2, 2]


def test_unwritable_output_fails_fast(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="cannot write"):
        check_output_location(str(blocker / "lake"), overwrite=False)


def test_commit_moves_only_reported_files(tmp_path):
    import pyarrow as pa
    staging = tmp_path / "lake" / "_staging" / "run"
    folder = staging / "documents" / "lang=en" / "date=unknown"
    folder.mkdir(parents=True)
    reported, orphan = folder / "part-a.parquet", folder / "part-orphan.parquet"
    for path in (reported, orphan):
        pq.write_table(pa.table({"doc_id": ["x"]}), path)
    facts = {"documents": Counter({("en", ()): 1}), "duplicates": Counter(), "rejected": Counter()}
    s = commit([("documents", "lang=en/date=unknown", str(reported), 1)], str(tmp_path / "lake"), str(staging),
               facts, 1, overwrite=False)
    assert s["reconciled"]
    files = sorted(p.relative_to(tmp_path / "lake").as_posix() for p in (tmp_path / "lake").rglob("*.parquet"))
    assert files == ["documents/lang=en/date=unknown/part-a.parquet"]
    written = json.loads((tmp_path / "lake" / "_SUMMARY.json").read_text())
    assert written["documents"] == 1
    assert written["files"] == {"documents": files, "duplicates": [], "rejected": []}
    assert all((tmp_path / "lake" / t).is_dir() for t in ("documents", "duplicates", "rejected"))
    assert not (tmp_path / "lake" / "_staging").exists()


def test_staging_folder_created_by_another_worker_first_is_fine(tmp_path):
    from wirewash.pipeline.lake_write import _ensure_dir
    folder = str(tmp_path / "staging" / "rejected")
    _ensure_dir(folder)
    _ensure_dir(folder)  # a concurrent worker won the race: no "File exists"
    assert (tmp_path / "staging" / "rejected").is_dir()


def test_an_appended_summary_adds_up_over_runs():
    from wirewash.pipeline.lake_summary import lake_summary
    first = summarize(5, Counter({("en", ("read_more",)): 3}), Counter({"exact": 1}), Counter({("read", "bad_json"): 1}))
    second = summarize(4, Counter({("vi", ()): 2}), Counter({"near": 1}), Counter({("read", "bad_json"): 1}))
    for s, lines in ((first, {"read_more": {"Read more": 3}, "share": {"Share": 1}}),
                     (second, {"read_more": {"Read more": 1, "More": 2}})):
        s.update(files_rows={t: s[t] for t in ("documents", "duplicates", "rejected")}, ok=True,
                 invariants={"reconciled": True, "duplicate_doc_ids": 0, "unread_input": []},
                 boilerplate_removed_lines=lines)
    first.update(ok=False, invariants={**first["invariants"], "unread_input": ["a.jsonl: not read to its end"]})
    files = {"documents": ["documents/a.parquet"], "duplicates": [], "rejected": []}
    one = lake_summary(None, first, files, "month", {"run_id": "1"})
    both = lake_summary(one, second, {**files, "documents": ["documents/a.parquet", "documents/b.parquet"]},
                        "month", {"run_id": "2"})
    assert (both["records_read"], both["documents"], both["duplicates"], both["rejected"]) == (9, 5, 2, 2)
    assert both["reconciled"] and both["languages"] == {"en": 3, "vi": 2}
    # a clean append neither hides nor forgets the first run's unread file
    assert not both["ok"] and both["invariants"]["unread_input"] == ["a.jsonl: not read to its end"]
    assert both["stages"]["read"] == {"in": 9, "rejected": 2, "out": 7}
    assert both["duplicate_kinds"] == {"exact": 1, "near": 1}
    assert both["boilerplate_removed_lines"] == {"read_more": {"Read more": 4, "More": 2}, "share": {"Share": 1}}
    assert [(r["run_id"], r["records_read"]) for r in both["runs"]] == [("1", 5), ("2", 4)]
    assert both["files"]["documents"] == ["documents/a.parquet", "documents/b.parquet"]
    assert both["files_rows"] == {"documents": 5, "duplicates": 2, "rejected": 2}


count_trees = st.recursive(st.integers(0, 100), lambda inner: st.dictionaries(st.sampled_from("abc"), inner, max_size=3),
                           max_leaves=10)


@given(count_trees, count_trees)
@settings(max_examples=200, deadline=None)
def test_adding_count_trees_keeps_every_leaf(a, b):
    """Summing two runs' counts never loses a key present on one side only, and totals add up."""
    from wirewash.pipeline.lake_summary import add_counts

    def total(tree):
        return sum(map(total, tree.values())) if isinstance(tree, dict) else tree

    def same_shape(x, y):
        return isinstance(x, dict) == isinstance(y, dict) and (
            not isinstance(x, dict) or all(k not in y or same_shape(x[k], y[k]) for k in x))

    if same_shape(a, b):
        assert total(add_counts(a, b)) == total(a) + total(b)
