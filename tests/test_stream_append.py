"""A stream into an existing lake (`wirewash run --streaming --append`): dedup against the lake's index, the
clusters and documents of one batch run, the lake's layout and runs carried on, one writer at a time, and a
killed stream that leaves every committed window and nothing half-written."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wirewash.pipeline import writer_lock
from wirewash.pipeline.cli import main
from wirewash.pipeline.lake import INDEX, STAGING_DIR, TABLES
from wirewash.pipeline.query import run_query
from tests.helpers import lake_rows, summary
from tests.test_append import FIXED, clusters, committed_files, two_inputs
from tests.test_streaming import committed_summary, drop, start_stream, stop, wait_for

REPO = Path(__file__).resolve().parents[1]


def records_of(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def lake_files(lake: Path) -> dict:
    """Every file of the lake but the staging folder and the writer lock, with its bytes."""
    return {p.relative_to(lake).as_posix(): p.read_bytes() for p in lake.rglob("*")
            if p.is_file() and STAGING_DIR not in p.relative_to(lake).parts and p.name != writer_lock.LOCK_FILE}


def wait_for_lock(lake: Path, proc: subprocess.Popen, mode: str) -> dict:
    path = lake / writer_lock.LOCK_FILE
    return wait_for(lambda: path.exists() and json.loads(path.read_text() or "{}").get("mode") == mode and
                    json.loads(path.read_text()), proc, what=f"the {mode}'s writer lock")


@pytest.mark.slow
def test_a_stream_appended_to_a_batch_lake_gives_the_clusters_and_documents_of_one_run(tmp_path, capsys):
    """Input A as a batch lake (month partitions), then input B streamed into it with --append: the documents
    and duplicate clusters of one batch run over A and B; the lake's copy is kept (first arrival wins) where
    one run keeps the earliest published. Meanwhile a batch append and a compaction are refused in one line."""
    a, b = two_inputs(tmp_path)
    one = tmp_path / "one"
    assert main(["run", "--input", str(a), "--input", str(b), "--output", str(one), "--quiet", *FIXED]) == 0
    lake, watch = tmp_path / "lake", tmp_path / "watch"
    watch.mkdir()
    assert main(["run", "--input", str(a), "--output", str(lake), "--partition_by", "month", "--quiet",
                 *FIXED]) == 0
    before = lake_files(lake)
    proc = start_stream(watch, lake, "--append")
    try:
        wait_for_lock(lake, proc, "stream-append")
        capsys.readouterr()
        assert main(["run", "--append", "--input", str(a), "--output", str(lake), "--quiet"]) == 2
        assert main(["compact", str(lake)]) == 2
        errors = capsys.readouterr().err.splitlines()
        assert len(errors) == 2 and all("is being written by a stream-append" in e for e in errors), errors
        drop(watch, "b.jsonl", records_of(b))
        wait_for(lambda: committed_summary(lake).get("records_read") == 30 + 19, proc, what="input B")
    finally:
        code, _, err = stop(proc, signal.SIGINT)
    assert code == 0, err[-3000:]
    s = summary(lake)
    assert len(lake_rows(lake, "documents")) == len(lake_rows(one, "documents")) == s["documents"] == 30
    assert clusters(lake) == clusters(one)
    kept = {d["doc_id"] for d in lake_rows(lake, "documents", "doc_id")}
    assert "a16" in kept and "b-early16" not in kept  # the lake's copy wins; one run keeps the earlier b-early16
    kinds = {d["doc_id"]: (d["kind"], d["duplicate_of"]) for d in lake_rows(lake, "duplicates", "doc_id, kind, duplicate_of")}
    assert [kinds[f"b-exact{i}"] for i in range(10, 13)] == [("exact", f"a{i}") for i in range(10, 13)]
    assert [kinds[f"b-near{i}"] for i in range(13, 16)] == [("near", f"a{i}") for i in range(13, 16)]
    # one lake: its layout kept, every run recorded, the manifest and index cover both runs
    assert s["layout"]["partition_by"] == "month"
    assert {str(r["date"]) for r in lake_rows(lake, "documents", "date")} <= {"2022-01", "2022-02"}
    assert [(r["mode"], r["records_read"]) for r in s["runs"]] == [("batch", 30), ("stream-append", 19)]
    assert s["records_read"] == 49 and s["reconciled"] and s["ok"] and s["streaming"]["final"]
    assert s["files_rows"] == {t: s[t] for t in TABLES}
    assert sorted(f for t in TABLES for f in s["files"][t]) == committed_files(lake)
    assert s["index"]["rows"] == 30 and sorted(s["index"]["files"]) == sorted(
        p.relative_to(lake).as_posix() for p in (lake / INDEX).glob("*.parquet"))
    assert all(lake_files(lake)[name] == data for name, data in before.items()
               if name not in ("_SUMMARY.json", "_REPORT.html"))  # the batch run's files are untouched
    assert not (lake / writer_lock.LOCK_FILE).exists() and not (lake / STAGING_DIR).exists()
    # every command works on the result, and a batch append can follow
    assert run_query(str(lake), "SELECT count(*) FROM documents")[1] == [(30,)]
    assert main(["report", str(lake), "--quiet"]) == 0 and main(["compact", str(lake)]) == 0
    assert run_query(str(lake), "SELECT count(*) FROM duplicates")[1] == [(s["duplicates"],)]


@pytest.mark.slow
def test_a_killed_stream_append_leaves_the_lake_readable_with_its_committed_windows(tmp_path):
    """SIGKILL of a stream appending to a lake, after its first window was committed: the lake's own files are
    byte for byte as they were, the committed window is in the tables and the summary, no half-written file is
    visible, the query answers; the next append (its lock is stale) removes what the kill left and completes."""
    a, b = two_inputs(tmp_path)
    lake, watch = tmp_path / "lake", tmp_path / "watch"
    watch.mkdir()
    assert main(["run", "--input", str(a), "--output", str(lake), "--quiet", *FIXED]) == 0
    before = lake_files(lake)
    cmd = [sys.executable, "-m", "wirewash.pipeline.cli", "run", "--streaming", "--append", "--input",
           f"{watch}/*.jsonl", "--output", str(lake), "--window_seconds", "2", "--poll_interval", "0.3"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        drop(watch, "b1.jsonl", records_of(b)[:10])
        wait_for(lambda: committed_summary(lake).get("records_read") == 40, proc, what="the first window")
        drop(watch, "b2.jsonl", records_of(b)[10:])  # the second file may be anywhere on its way when killed
        time.sleep(1.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    after = lake_files(lake)
    assert all(after[name] == data for name, data in before.items() if name != "_SUMMARY.json")
    s = summary(lake)
    listed = sorted(f for t in TABLES for f in s["files"][t])
    assert set(listed) >= {f for f in before if f.endswith(".parquet") and not f.startswith(INDEX)}
    assert all((lake / f).is_file() for f in listed)
    assert not [p for p in lake.rglob("*") if p.is_file() and STAGING_DIR not in p.relative_to(lake).parts
                and (p.name.startswith(".") or ".staged" in p.name or ".temp" in p.as_posix())]
    documents = run_query(str(lake), "SELECT count(*) FROM documents")[1][0][0]
    assert documents == s["documents"] >= 20 + 10 and s["records_read"] >= 40  # A's 20, B's first 10 new
    assert s["records_read"] == s["documents"] + s["duplicates"] + s["rejected"]
    assert s["runs"][-1]["mode"] == "stream-append" and s["streaming"]["final"] is False
    assert main(["report", str(lake), "--quiet"]) == 0
    # the killed stream's lock is stale: the next append takes it over, and finds the lake consistent
    rest = tmp_path / "rest.jsonl"
    rest.write_text("".join(json.dumps(r) + "\n" for r in records_of(b)[10:]))
    assert main(["run", "--append", "--input", str(rest), "--output", str(lake), "--quiet", *FIXED]) == 0
    final = summary(lake)
    assert final["reconciled"] and final["ok"]
    assert sorted(f for t in TABLES for f in final["files"][t]) == committed_files(lake)  # no orphan left
    assert final["documents"] == len(lake_rows(lake, "documents")) == 30  # the rest of B holds only copies


def test_a_stream_append_keeps_the_lakes_dedup_settings_and_refuses_others(tmp_path, capsys):
    """The stream's --append is checked like a batch one, before anything runs: other dedup settings than
    the lake's index were built with are one line, exit 2, and the lake is unchanged."""
    a, _ = two_inputs(tmp_path)
    lake = tmp_path / "lake"
    assert main(["run", "--input", str(a), "--output", str(lake), "--quiet", *FIXED]) == 0
    before = lake_files(lake)
    capsys.readouterr()
    argv = ["run", "--streaming", "--append", "--input", str(tmp_path / "in" / "*.jsonl"), "--output", str(lake)]
    assert main(argv + ["--num_perm", "64"]) == 2
    assert "an append must use the lake's" in capsys.readouterr().err
    assert main(argv + ["--partition_by", "month"]) == 2
    assert "differs from the lake's own" in capsys.readouterr().err
    assert lake_files(lake) == before and not (lake / writer_lock.LOCK_FILE).exists()


def test_one_writer_at_a_time_and_a_dead_writers_lock_is_taken_over(tmp_path, capsys):
    """A lock held by a live process refuses a second writer (a stream or a batch run) in one line, with the
    lake untouched; once that process is gone its lock is stale and the run goes ahead."""
    a, _ = two_inputs(tmp_path)
    lake = tmp_path / "lake"
    assert main(["run", "--input", str(a), "--output", str(lake), "--quiet", *FIXED]) == 0
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = dict(writer_lock._me("streaming", "other-run"), pid=holder.pid,
                    pid_started=writer_lock._started(holder.pid))
        (lake / writer_lock.LOCK_FILE).write_text(json.dumps(lock))
        before = lake_files(lake)
        capsys.readouterr()
        for argv in (["run", "--append", "--input", str(a)], ["run", "--streaming", "--append", "--input",
                                                             str(tmp_path / "w" / "*.jsonl")],
                     ["run", "--overwrite", "--input", str(a)]):
            assert main(argv + ["--output", str(lake), "--quiet"]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"is being written by a streaming (run other-run, pid {holder.pid}" in err
        assert lake_files(lake) == before and writer_lock.holder(str(lake))["run_id"] == "other-run"
    finally:
        holder.kill()
        holder.wait()
    assert writer_lock.holder(str(lake)) is None  # its holder is gone: stale
    assert main(["run", "--append", "--input", str(a), "--output", str(lake), "--quiet", *FIXED]) == 0
    assert summary(lake)["duplicates"] >= 30 and not (lake / writer_lock.LOCK_FILE).exists()
