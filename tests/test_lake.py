"""Lake writing: partitions from validated values, explicit schemas, a summary that reconciles."""
from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from pipeline.lake import (DOCUMENTS_SCHEMA, LakeExistsError, check_output_location, commit, document_row,
                           partition_of, summarize)
from transforms.types import Article

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
    with pytest.raises(LakeExistsError, match="--overwrite"):
        check_output_location(str(tmp_path), overwrite=False)
    check_output_location(str(tmp_path), overwrite=True)


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
    assert json.loads((tmp_path / "lake" / "_SUMMARY.json").read_text())["documents"] == 1
    assert not (tmp_path / "lake" / "_staging").exists()


def test_staging_folder_created_by_another_worker_first_is_fine(tmp_path):
    from pipeline.lake import _ensure_dir
    folder = str(tmp_path / "staging" / "rejected")
    _ensure_dir(folder)
    _ensure_dir(folder)  # a concurrent worker won the race: no "File exists"
    assert (tmp_path / "staging" / "rejected").is_dir()
