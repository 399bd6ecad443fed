"""What a run shows while and after it works: progress lines in phases, streaming lines, the end-of-run
summary, and the `timing` of the run's record. Line formats are pure functions, checked over many counts."""
from __future__ import annotations

import contextlib
import io
import time

import pytest
from hypothesis import given, settings, strategies as st

from wirewash.pipeline.cli import main
from wirewash.pipeline.progress import (COMMIT, DEDUP, DONE, PHASES, READ_CLEAN, WRITE, StreamLines, clock, eta,
                                        first_window_in, heartbeat_line, num, phase_of, progress_line, reading_line,
                                        size_text, watching_line, window_committed, window_line)
from wirewash.pipeline.summary_text import WIDTH, next_commands, ranked_list, summary_lines
from wirewash.pipeline.timing import run_timing, stage_of, stage_seconds
from tests.helpers import summary

COUNT = st.integers(min_value=0, max_value=10**11)
NAME = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=60)


def counts_of(read, cleaned, documents, duplicates, rejected):
    return {"read": read, "cleaned": cleaned, "documents": documents, "duplicates": duplicates, "rejected": rejected}


# --- batch progress --------------------------------------------------------------------------------------

def test_phases_follow_the_work():
    total = 100
    assert phase_of(counts_of(40, 30, 0, 0, 5), total) == READ_CLEAN
    # everything read, but not all of it through the per-record stages yet
    assert phase_of(counts_of(100, 80, 0, 0, 10), total) == READ_CLEAN
    # all read and cleaned, dedup still grouping: not 100% of anything, no ETA 0:00
    done_reading = counts_of(100, 90, 0, 0, 10)
    assert phase_of(done_reading, total) == DEDUP
    line = progress_line(done_reading, total, DEDUP, 12.0, 1.0, base=10)
    assert "[2/4 dedup] 10/100: 0 docs, 0 dups, 10 rejected" in line and "ETA" not in line and "100%" not in line
    # dedup emits: documents and duplicates are counted as they come, with the phase's own ETA
    line = progress_line(counts_of(100, 90, 40, 10, 10), total, DEDUP, 14.0, 2.5, base=10)
    assert "60/100: 40 docs, 10 dups, 10 rejected, ETA 0:02" in line
    # a wrong (too high) estimate: the first document still ends the reading phase
    assert phase_of(counts_of(90, 80, 1, 0, 10), 120) == DEDUP
    assert phase_of(counts_of(100, 90, 80, 10, 10), total) == WRITE
    assert phase_of(counts_of(100, 90, 80, 10, 10), total, committing=True) == COMMIT
    assert "[done] 80 documents" in progress_line(counts_of(100, 90, 80, 10, 10), total, DONE, 20.0, 0.0)


def test_reading_phase_line_counts_against_the_estimate():
    line = progress_line(counts_of(50, 40, 0, 0, 5), 150, READ_CLEAN, 10.0, 10.0)
    assert line == "wirewash 0:10 [1/4 read and clean] 45/150 records (30%), 5 rejected, 4/s, ETA 0:24"
    assert "documents" not in line  # not known before dedup
    assert progress_line(counts_of(5, 0, 0, 0, 0), None, READ_CLEAN, 1.0, 0.5).endswith("0 records, 0 rejected")


def test_num_is_exact_then_short():
    assert [num(n) for n in (0, 99_999, 100_000, 999_499, 999_500, 1_250_000, 12_345_678, 10**9, 10**15)] == [
        "0", "99999", "100k", "999k", "1.0M", "1.2M", "12M", "1.0B", ">999T"]


def test_eta_and_clock():
    assert eta(50, 100, 0, 10.0) == 10.0 and eta(50, 100, 50, 10.0) is None and eta(5, None, 0, 1.0) is None
    assert eta(1, 3000, 0, 10.0) is None and eta(30, 3000, 0, 10.0) == 990.0  # no guess from one record
    assert eta(50, 100, 0, 1.0) is None and eta(100, 100, 0, 5.0) == 0.0
    assert (clock(None), clock(59.4), clock(61), clock(3723), clock(1e6)) == ("?", "0:59", "1:01", "1:02:03", "277h")


@settings(max_examples=200, deadline=None)
@given(COUNT, COUNT, COUNT, COUNT, COUNT, st.one_of(st.none(), COUNT),
       st.floats(min_value=0, max_value=1e6), st.floats(min_value=0, max_value=1e6), st.booleans())
def test_progress_lines_fit_and_never_claim_done_early(read, cleaned, documents, duplicates, rejected, total,
                                                       elapsed, phase_elapsed, bar):
    counts = counts_of(read, cleaned, documents, duplicates, rejected)
    phase = phase_of(counts, total)
    for shown in range(len(PHASES) + 1):
        line = progress_line(counts, total, shown, elapsed, phase_elapsed, base=min(read, 10), bar=bar)
        assert len(line) <= WIDTH + (15 if bar else 0), line  # a live line (bar) is clipped to the terminal
    line = progress_line(counts, total, phase, elapsed, phase_elapsed, bar=bar)
    out = documents + duplicates + rejected
    if out < read:  # dedup (or reading) still runs: the line is not at its end
        assert phase in (READ_CLEAN, DEDUP) and "ETA 0:00" not in line and "[done]" not in line


def test_first_line_of_a_batch_run():
    assert reading_line(5, 21_000) == "wirewash: reading 5 files, 21 kB"
    assert reading_line(1, 3_400_000) == "wirewash: reading 1 file, 3.4 MB"
    assert reading_line(2, None) == "wirewash: reading 2 files"
    assert (size_text(0), size_text(250_000_000), size_text(12 * 10**12)) == ("0 kB", "250 MB", "12000 GB")


# --- streaming -------------------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(COUNT, st.dictionaries(NAME, COUNT, max_size=5), COUNT, st.floats(min_value=0, max_value=4e9),
       st.floats(min_value=0, max_value=1e5), st.one_of(st.none(), COUNT))
def test_streaming_lines_fit(read, documents, rejected, window_end, lag, files):
    from collections import Counter
    counts = {"read": read, "documents": Counter(documents), "duplicates": Counter(), "rejected": Counter(x=rejected)}
    line = window_line(counts, window_end, window_end + lag)
    assert len(line) <= WIDTH and f"{num(read)} records, {num(sum(documents.values()))} docs" in line
    assert len(heartbeat_line(1e5, files, read)) <= WIDTH


def test_streaming_first_line_and_window_line():
    assert first_window_in(1000.0, 60.0, 2.0) == 22.0
    line = watching_line("incoming/*.jsonl", 60.0, 22.0)
    assert line.startswith("wirewash: watching incoming/*.jsonl; windows of 60 s, the first closes in ~22 s")
    counts = {"read": 7, "documents": {("en", ()): 3}, "duplicates": {"exact": 2}, "rejected": {("read", "x"): 2}}
    assert window_line(counts, 7200.0, 7203.0) == (
        "wirewash: window to 02:00:00Z: 7 records, 3 docs, 2 dups, 2 rejected; lag 0:03")


def test_stream_lines_print_windows_and_a_heartbeat_when_idle():
    stream = io.StringIO()
    window_committed({"read": 1}, 0.0)  # no stream running here: nothing, no error
    with StreamLines(lambda: 3, every=0.3, stream=stream, started=time.time()):
        window_committed({"read": 4, "documents": {"a": 3}, "rejected": {"b": 1}}, time.time())
        time.sleep(1.6)
    window_committed({"read": 9}, 0.0)  # after the stream: silent again
    lines = stream.getvalue().splitlines()
    assert "window to" in lines[0] and "4 records, 3 docs, 0 dups, 1 rejected" in lines[0]
    assert len(lines) >= 2 and all(line.endswith("waiting for input: 3 files, 4 records so far")
                                   for line in lines[1:])


# --- the end-of-run summary -------------------------------------------------------------------------------

def test_ranked_list_shows_the_top_and_how_many_more():
    line = ranked_list("languages", {f"l{i:02d}": 100 - i for i in range(60)})
    assert line.startswith("  languages: l00 100, l01 99, ") and line.endswith(" more") and len(line) <= WIDTH
    shown = line.split(": ", 1)[1].split(", ")
    assert int(shown[-1].split("+")[1].split()[0]) == 60 - (len(shown) - 1)
    assert ranked_list("languages", {"en": 2, "de": 2, "vi": 3}) == "  languages: vi 3, de 2, en 2"
    assert ranked_list("languages", {}) is None
    assert len(ranked_list("rules", {"x" * 300: 1, "y": 1})) <= WIDTH


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(NAME, COUNT, max_size=80), st.dictionaries(NAME, COUNT, max_size=80), COUNT)
def test_summary_fits_in_100_columns_and_ends_with_next_commands(languages, rules, n):
    s = {"records_read": n, "documents": n, "duplicates": n, "rejected": n, "languages": languages,
         "boilerplate_lines_removed": rules, "duplicate_kinds": {"exact": n}, "rejected_reasons": {"too_short": n},
         "stages": {stage: {"in": n, "rejected": n, "out": n} for stage in ("read", "extract", "language")}
         | {"dedup": {"in": n, "rejected": n, "out": n, "duplicates": n}}}
    lines = summary_lines(s, "/data/lakes/news-2024", 12.345)
    assert all(len(line) <= WIDTH for line in lines), max(lines, key=len)
    assert " in 12.3 s" in lines[0] and lines[-3:] == ["next:"] + [f"  {c}" for c in next_commands(
        "/data/lakes/news-2024")]
    if languages:
        assert lines[[line.startswith("  languages: ") for line in lines].index(True)]


def test_next_commands_are_ready_to_paste():
    assert next_commands("my lake") == ["wirewash query 'my lake' \"SELECT lang, count(*) FROM documents GROUP BY "
                                        "lang\"", "wirewash report 'my lake'"]


# --- the run's timing -------------------------------------------------------------------------------------

def test_stage_of_and_stage_seconds():
    assert [stage_of(s) for s in ("Ingest/Language/ParDo(_DetectFn)", "Ingest/AgainstLake/x", "Ingest/RecordsRead/y",
                                  "WriteLake/Commit", "WriteLake/StageDocuments", "Progress/Count_read", "Foo")] == [
        "language", "dedup", "other", "commit", "write", "progress", "other"]
    assert stage_seconds({"Ingest/Dedup/a": 1500, "Ingest/Dedup/b": 500, "Ingest/Read/c": 0}, workers=2) == {
        "dedup": 1.0}


def test_timing_without_runner_metrics_has_startup_only():
    timing = run_timing(object(), 100.0, 103.5, now=110.0)
    assert timing["wall_seconds"] == 10.0 and timing["stages"] == {"startup": 3.5} and timing["cpu_seconds"] > 0


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory, seeds_dir):
    """A real `wirewash run` of the seeds, in process, without --progress (stderr is not a terminal)."""
    lake = tmp_path_factory.mktemp("progress") / "lake"
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        assert main(["run", "--input", str(seeds_dir), "--output", str(lake)]) == 0
    return lake, out.getvalue(), err.getvalue()


def test_a_seeds_run_says_what_it_reads_first_and_what_to_run_last(seeds_run):
    lake, out, err = seeds_run
    lines = err.splitlines()
    assert lines[0].startswith("wirewash: reading 5 files, ") and lines[0].endswith(" kB")
    # then what the folder holds but is not read (its README, the package's __init__.py), then the summary
    assert lines[1].startswith("wirewash: not read: ") and "(.md 1" in lines[1]
    assert lines[2].startswith("wirewash: 5 records read -> 5 documents, 0 duplicates, 0 rejected in ")
    assert lines[-3:] == ["next:", f'  wirewash query {lake} "SELECT lang, count(*) FROM documents GROUP BY lang"',
                          f"  wirewash report {lake}"]
    assert all(len(line) <= WIDTH for line in lines if str(lake) not in line) and out == ""


def test_the_run_record_holds_its_timing(seeds_run):
    lake, _, err = seeds_run
    timing = summary(lake)["runs"][-1]["timing"]
    assert set(timing) == {"wall_seconds", "cpu_seconds", "stages"}
    assert timing["wall_seconds"] > 0 and timing["cpu_seconds"] > 0 and timing["stages"]["startup"] > 0
    assert {"write", "commit"} & set(timing["stages"])  # measured by the runner for the Beam stages
    assert sum(timing["stages"].values()) <= timing["wall_seconds"]
    assert all(isinstance(v, float) for v in timing["stages"].values())
    summary_line = next(line for line in err.splitlines() if " records read -> " in line)
    shown = float(summary_line.rsplit(" in ", 1)[1].split()[0])
    assert shown == round(timing["wall_seconds"], 1)  # the time printed is the recorded one, from process start
    assert not (lake / "_staging").exists()
