"""Runs that append (`wirewash run --append`): dedup against the lake's index, the same clusters as one run,
the whole lake and each run in the summary, and a killed append that leaves the lake as it was."""
from __future__ import annotations

import random
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from wirewash.pipeline.cli import main
from wirewash.pipeline.lake import INDEX, STAGING_DIR, TABLES
from wirewash.pipeline.writer_lock import LOCK_FILE
from tests.helpers import lake_rows, sigkill_while_staging, summary, write_jsonl

REPO = Path(__file__).resolve().parents[1]
FIXED = ["--ingested_at", "2024-01-01T00:00:00Z"]
WORDS = ("river council budget bridge school market harbour train museum festival hospital farmer election storm "
         "library factory airport forest village mayor teacher doctor season report plan road price energy water "
         "garden court police station island summer winter coast valley choir bakery tunnel ferry").split()


def story(seed: int, words: int = 150) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "."


def edited(text: str, seed: int) -> str:
    """A near copy: two words changed (word 5-shingle Jaccard about 0.9)."""
    rng = random.Random(seed)
    words = text.split()
    for i in rng.sample(range(len(words)), 2):
        words[i] = "edited"
    return " ".join(words)


def record(doc_id: str, text: str, day: int) -> dict:
    return {"id": doc_id, "published": (date(2022, 1, 1) + timedelta(days=day)).isoformat(), "text": text}


def two_inputs(folder: Path) -> tuple[Path, Path]:
    """Input A: 20 stories, exact copies of 0-4, near copies of 5-9. Input B: 10 new stories with an exact
    and a near copy among themselves, exact copies of A's 10-12, near copies of A's 13-15, and a copy of 16
    published before A's (one run keeps B's copy, an append keeps the lake's)."""
    texts = {i: story(i) for i in range(30)}
    a = [record(f"a{i}", texts[i], i) for i in range(20)]
    a += [record(f"a-exact{i}", texts[i], i + 1) for i in range(5)]
    a += [record(f"a-near{i}", edited(texts[i], i), i + 1) for i in range(5, 10)]
    b = [record(f"b{i}", texts[i], i) for i in range(20, 30)]
    b += [record("b-exact20", texts[20], 21), record("b-near21", edited(texts[21], 21), 22)]
    b += [record(f"b-exact{i}", texts[i], i + 2) for i in range(10, 13)]
    b += [record(f"b-near{i}", edited(texts[i], i), i + 2) for i in range(13, 16)]
    b += [record("b-early16", texts[16], 0)]
    return write_jsonl(folder / "a.jsonl", a), write_jsonl(folder / "b.jsonl", b)


def clusters(lake: Path) -> set:
    """Every document with its copies, as sets of doc_ids (which copy is kept does not matter)."""
    members = {d["doc_id"]: {d["doc_id"]} for d in lake_rows(lake, "documents", "doc_id")}
    for dup in lake_rows(lake, "duplicates", "doc_id, duplicate_of"):
        members[dup["duplicate_of"]].add(dup["doc_id"])
    return {frozenset(m) for m in members.values()}


def committed_files(lake: Path) -> list[str]:
    return sorted(p.relative_to(lake).as_posix() for t in TABLES for p in (lake / t).rglob("*.parquet"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return two_inputs(tmp_path_factory.mktemp("append"))


@pytest.fixture(scope="module")
def one_run(tmp_path_factory, inputs):
    lake = tmp_path_factory.mktemp("one") / "lake"
    assert main(["run", "--input", str(inputs[0]), "--input", str(inputs[1]), "--output", str(lake), "--quiet",
                 *FIXED]) == 0
    return lake


@pytest.fixture(scope="module")
def appended(tmp_path_factory, inputs):
    lake = tmp_path_factory.mktemp("two") / "lake"
    for path in inputs:  # the first append makes the lake
        assert main(["run", "--append", "--input", str(path), "--output", str(lake), "--quiet", *FIXED]) == 0
    return lake


def test_two_appends_give_the_clusters_and_documents_of_one_run(one_run, appended):
    assert len(lake_rows(appended, "documents")) == len(lake_rows(one_run, "documents")) == 30
    assert clusters(appended) == clusters(one_run)
    kept = {d["doc_id"] for d in lake_rows(appended, "documents", "doc_id")}
    assert "a16" in kept and "b-early16" not in kept  # the append keeps the lake's copy: first arrival wins
    assert "b-early16" in {d["doc_id"] for d in lake_rows(one_run, "documents", "doc_id")}
    kinds = {d["doc_id"]: d["kind"] for d in lake_rows(appended, "duplicates", "doc_id, kind")}
    assert [kinds[f"b-exact{i}"] for i in range(10, 13)] == ["exact"] * 3
    assert [kinds[f"b-near{i}"] for i in range(13, 16)] == ["near"] * 3


def test_the_summary_covers_the_whole_lake_and_each_run(appended, inputs):
    s = summary(appended)
    read = [sum(1 for _ in open(p)) for p in inputs]
    assert s["records_read"] == sum(read) and s["reconciled"] and s["ok"]
    assert s["documents"] == 30 and s["documents"] + s["duplicates"] + s["rejected"] == s["records_read"]
    assert [r["records_read"] for r in s["runs"]] == read
    assert [r["mode"] for r in s["runs"]] == ["append", "append"]
    assert all(r["started_at"] <= r["committed_at"] and r["wirewash_version"] for r in s["runs"])
    # each append keeps its own timing (the second rewrite of the summary leaves the first run's alone)
    assert all(sum(r["timing"]["stages"].values()) <= r["timing"]["wall_seconds"] for r in s["runs"])
    assert s["runs"][1]["inputs"] == [str(inputs[1])]
    assert sorted(f for t in TABLES for f in s["files"][t]) == committed_files(appended)
    assert s["index"]["rows"] == 30 and len(s["index"]["files"]) == 2
    assert s["files_rows"] == {t: s[t] for t in TABLES}
    assert main(["query", str(appended), "SELECT count(*) FROM documents"]) == 0


def test_append_refuses_other_dedup_settings_or_granularity(appended, inputs, capsys):
    for flags in (["--num_perm", "64"], ["--partition_by", "month"]):
        assert main(["run", "--append", "--input", str(inputs[0]), "--output", str(appended), "--quiet",
                     *flags]) == 2
        assert capsys.readouterr().err.count("\n") == 1


def _article_lines(path: Path, n: int, seed: int) -> Path:
    return write_jsonl(path, [record(f"k{seed}-{i}", story(seed * 10_000 + i, 60), i % 300) for i in range(n)])


@pytest.mark.slow
def test_a_killed_append_leaves_the_lake_as_it_was(tmp_path):
    lake = tmp_path / "lake"
    # Day partitions: the append's writer is busy with about 300 files, time enough to kill it mid-write.
    assert main(["run", "--input", str(_article_lines(tmp_path / "a.jsonl", 20, 1)), "--output", str(lake),
                 "--quiet", "--partition_by", "day", *FIXED]) == 0
    before = {p.relative_to(lake).as_posix(): p.read_bytes() for p in lake.rglob("*")
              if p.is_file() and STAGING_DIR not in p.relative_to(lake).parts and p.name != LOCK_FILE}
    big = _article_lines(tmp_path / "b.jsonl", 400, 2)
    command = [sys.executable, "-m", "wirewash.pipeline.cli", "run", "--append", "--input", str(big), "--output", str(lake),
               "--quiet", "--spill_dir", str(tmp_path / "spill"), *FIXED]  # the lake's own granularity: day
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    sigkill_while_staging(proc, lake / STAGING_DIR, what="append")
    # the killed run's writer lock stays (stale: its process is gone), as its staging folder does
    after = {p.relative_to(lake).as_posix(): p.read_bytes() for p in lake.rglob("*")
             if p.is_file() and STAGING_DIR not in p.relative_to(lake).parts and p.name != LOCK_FILE}
    assert after == before
    assert main(["query", str(lake), "SELECT count(*) FROM documents"]) == 0
    # The next append completes, and counts the killed one's records nowhere.
    assert main(command[3:]) == 0
    s = summary(lake)
    assert s["records_read"] == 420 and s["reconciled"] and len(s["runs"]) == 2
    assert sorted(f for t in TABLES for f in s["files"][t]) == committed_files(lake)
    assert not (lake / STAGING_DIR).exists() and (lake / INDEX).is_dir()


def test_a_batch_append_onto_a_streaming_lake(tmp_path):
    """Streaming lakes have the batch format (manifest, index): a batch append dedups against the stream's
    documents and adds to its lake."""
    from wirewash.pipeline.windowed_lake import finalize_lake, staging_of
    from tests.helpers import ARTICLE_DE, ARTICLE_EN, ARTICLE_VI
    from tests.test_streaming import article, documents_stream, write_test_stream
    from wirewash.transforms.dedup import DedupConfig

    lake = tmp_path / "lake"
    stream = documents_stream((article("s-en", ARTICLE_EN), 1), (article("s-vi", ARTICLE_VI, "vi"), 2))
    staging = staging_of(str(lake), "stream")
    write_test_stream(stream, lake, staging, dedup=DedupConfig())
    streamed = finalize_lake(str(lake), staging, dedup=DedupConfig())
    assert streamed["reconciled"] and streamed["index"]["rows"] == 2
    new = write_jsonl(tmp_path / "new.jsonl", [{"id": "b-en-copy", "text": ARTICLE_EN},
                                               {"id": "b-de", "text": ARTICLE_DE}])
    assert main(["run", "--append", "--input", str(new), "--output", str(lake), "--quiet", *FIXED]) == 0
    s = summary(lake)
    assert (s["records_read"], s["documents"], s["duplicates"], s["reconciled"]) == (4, 3, 1, True)
    assert {d["doc_id"]: d["duplicate_of"] for d in lake_rows(lake, "duplicates")} == {"b-en-copy": "s-en"}
    assert sorted(f for t in TABLES for f in s["files"][t]) == committed_files(lake)
    assert s["index"]["rows"] == 3 and [r["mode"] for r in s["runs"]] == ["append"]
