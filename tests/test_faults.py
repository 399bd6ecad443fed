"""Faults: a run killed mid-write, reruns into an existing lake, output that cannot be written, and the
invariants that every run checks (fault-injected into real pipelines). See docs/guarantees.md."""
from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from wirewash.pipeline import ingest as pipeline_build
from wirewash.pipeline.cli import main
from wirewash.pipeline.lake import MARKER_FILE, STAGING_DIR, STAGING_MARKER, SUMMARY_FILE
from wirewash.pipeline.lake_write import WriteLake, commit
from wirewash.transforms.spill import SPILL_PREFIX
from tests.data.make_hostile import STORIES
from tests.helpers import lake_rows, sigkill_while_staging, summary
from wirewash.transforms.types import Article, Duplicate, Rejection

REPO = Path(__file__).resolve().parents[1]
WORDS = sorted(set(" ".join(STORIES).replace(",", "").replace(".", "").split()))
FIXED = ["--ingested_at", "2024-01-01T00:00:00Z"]
DOC_COLUMNS = "doc_id, text, title, published_at, lang, date, lang_prob, content_hash, source_location, ingested_at"


def dated_corpus(path: Path, n: int, seed: int = 5, words: int = 60) -> Path:
    """n distinct English-looking articles, each on its own day: one partition (one staged file) each."""
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(words)) + "."
            day = date(2001, 1, 1) + timedelta(days=i)
            handle.write(json.dumps({"id": f"k{i:05d}", "published": day.isoformat(), "text": text}) + "\n")
    return path


def tables_state(lake: Path) -> dict:
    """Every file of the lake outside `_staging/` with its bytes: to prove a lake was left untouched."""
    return {p.relative_to(lake).as_posix(): p.read_bytes() for p in sorted(lake.rglob("*"))
            if p.is_file() and STAGING_DIR not in p.relative_to(lake).parts}


def visible_parquet(lake: Path) -> list[Path]:
    """The Parquet files any reader of the lake can see, even one globbing `lake/**/*.parquet` (DuckDB)."""
    return list(lake.rglob("*.parquet"))


def docs(lake: Path) -> list:
    return sorted(map(str, lake_rows(lake, "documents", DOC_COLUMNS)))


# --- SIGKILL mid-write ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigkill_mid_write_leaves_no_partial_file_and_a_rerun_completes(tmp_path):
    corpus = dated_corpus(tmp_path / "c.jsonl", 150)
    reference = tmp_path / "reference"
    assert main(["run", "--input", str(corpus), "--output", str(reference), "--quiet", *FIXED]) == 0

    lake = tmp_path / "lake"
    spill = tmp_path / "spill"
    command = [sys.executable, "-m", "wirewash.pipeline.cli", "run", "--input", str(corpus), "--output", str(lake),
               "--quiet", "--spill_dir", str(spill), *FIXED]
    # Own session: the kill takes the run's helper processes (Beam's extraction subprocess pool) with it, as
    # a crash of the machine would; killing the pid alone would leave them orphaned behind the test.
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    staged = sigkill_while_staging(proc, lake / STAGING_DIR)
    assert proc.returncode == -signal.SIGKILL and staged

    # What readers see: no committed table, no summary, no Parquet file at all (staged files end in
    # .staged, whole or not); the CLI refuses the folder.
    assert not (lake / SUMMARY_FILE).exists() and not (lake / "documents").exists()
    assert visible_parquet(lake) == []
    assert main(["query", str(lake), "SELECT count(*) FROM documents"]) == 2
    leftovers = list((lake / STAGING_DIR).rglob("*.parquet.staged"))
    assert leftovers, "the killed run's staged files should still be there (and ignored)"
    killed = list(spill.iterdir())  # the killed run's spill folder, named after its process
    assert len(killed) == 1 and killed[0].name.startswith(f"{SPILL_PREFIX}{proc.pid}-")

    # The rerun is the same command (in-process here, to save an interpreter start): nothing was committed,
    # so it needs no --overwrite.
    assert main(command[3:]) == 0
    assert not (lake / STAGING_DIR).exists(), "stale staging of the killed run must be cleaned by the commit"
    assert list(spill.iterdir()) == [], "the rerun clears the killed run's spill folder, and removes its own"
    assert docs(lake) == docs(reference) and len(docs(lake)) == 150
    for path in visible_parquet(lake):
        pq.read_metadata(path)  # every committed file is whole
    assert summary(lake)["ok"]


def test_interrupted_commit_is_refused_until_overwrite(existing_lake, lake_of_a, two_corpora):
    """A kill during the commit leaves some table files and no _SUMMARY.json (the summary is written last):
    query and a plain rerun refuse that folder and say why; a rerun with --overwrite repairs it."""
    lake, corpus = existing_lake, two_corpora[0]
    (lake / SUMMARY_FILE).unlink()
    for part in sorted((lake / "documents").rglob("*.parquet"))[::2]:
        part.unlink()  # half the files had not been moved in yet
    assert main(["query", str(lake), "SELECT 1"]) == 2
    assert main(["run", "--input", str(corpus), "--output", str(lake), "--quiet", *FIXED]) == 2
    assert main(["run", "--input", str(corpus), "--output", str(lake), "--quiet", "--overwrite", *FIXED]) == 0
    assert docs(lake) == docs(lake_of_a)


def test_interrupted_commit_message(tmp_path, capsys):
    (tmp_path / "lake" / "documents").mkdir(parents=True)
    (tmp_path / "lake" / MARKER_FILE).write_text("{}")  # written before the commit's first file moved in
    assert main(["run", "--input", str(dated_corpus(tmp_path / "c.jsonl", 2)), "--output", str(tmp_path / "lake")]) == 2
    assert "incomplete lake" in capsys.readouterr().err


# --- reruns into an existing lake --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerun")
    return dated_corpus(root / "a.jsonl", 8, seed=1), dated_corpus(root / "b.jsonl", 5, seed=2)


@pytest.fixture(scope="module")
def lake_of_a(tmp_path_factory, two_corpora):
    lake = tmp_path_factory.mktemp("lake_a") / "lake"
    assert main(["run", "--input", str(two_corpora[0]), "--output", str(lake), "--quiet", *FIXED]) == 0
    return lake


@pytest.fixture
def existing_lake(tmp_path, lake_of_a):
    """A private copy of a complete lake (of corpus a), to rerun into."""
    return Path(shutil.copytree(lake_of_a, tmp_path / "lake"))


def test_rerun_without_overwrite_leaves_the_lake_untouched(existing_lake, two_corpora, capsys):
    _, b = two_corpora
    lake = existing_lake
    before = tables_state(lake)
    assert main(["run", "--input", str(b), "--output", str(lake), "--quiet"]) == 2
    assert "already holds a lake" in capsys.readouterr().err
    assert tables_state(lake) == before and not (lake / STAGING_DIR).exists()


def test_overwrite_replaces_the_whole_lake_never_a_mix(existing_lake, two_corpora):
    _, b = two_corpora
    lake = existing_lake
    stale = lake / STAGING_DIR / "killed-run" / "documents" / "lang=en" / "date=unknown"
    stale.mkdir(parents=True)
    (stale / "part-half.parquet.staged").write_bytes(b"PAR1\x00\x00 half written")  # a killed writer's leftover
    assert main(["run", "--input", str(b), "--output", str(lake), "--quiet", "--overwrite", *FIXED]) == 0
    b_records = {r["id"]: r["text"] for r in map(json.loads, b.read_text().splitlines())}
    assert {r["doc_id"]: r["text"] for r in lake_rows(lake, "documents")} == b_records  # nothing of a's lake
    assert lake_rows(lake, "duplicates") == [] and lake_rows(lake, "rejected") == []
    assert summary(lake)["records_read"] == 5 and not (lake / STAGING_DIR).exists()


def test_a_new_run_first_clears_what_killed_runs_left(tmp_path):
    """Before probing the output, a run frees the space that killed or failed runs left in _staging/."""
    from wirewash.pipeline.lake import check_output_location
    stale = tmp_path / "lake" / STAGING_DIR / "killed-run" / "documents"
    stale.mkdir(parents=True)
    (stale / "part-x.parquet.staged").write_bytes(b"\0" * 1000)
    (tmp_path / "lake" / STAGING_DIR / STAGING_MARKER).write_text("")  # made by the killed run's start
    check_output_location(str(tmp_path / "lake"), overwrite=False)
    assert not (tmp_path / "lake" / STAGING_DIR / "killed-run").exists()


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
@pytest.mark.parametrize("foreign", ["documents/thesis.txt", "documents/mine.csv", "_staging/notes.txt",
                                     "rejected/part-0.parquet"])
def test_a_folder_that_is_not_a_lake_is_refused_and_untouched(tmp_path, capsys, overwrite, foreign):
    """A folder holding a table's name (or a `_staging/`) that no wirewash run committed is someone else's:
    a run, with or without --overwrite, stops with one line (exit 2) and deletes nothing."""
    folder = tmp_path / "out"
    (folder / foreign).parent.mkdir(parents=True)
    (folder / foreign).write_text("my own work")
    before = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    corpus = dated_corpus(tmp_path / "c.jsonl", 2)
    assert main(["run", "--input", str(corpus), "--output", str(folder), "--quiet", *overwrite, *FIXED]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing was deleted" in err and "Traceback" not in err
    assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_overwrite_removes_the_old_report_and_keeps_foreign_files(existing_lake, two_corpora):
    """The report belongs to the lake it describes: an overwrite removes it with the old tables. A file of the
    user's inside a lake's folder is not the lake's: it stays."""
    lake = existing_lake
    (lake / "_REPORT.html").write_text("<html>old run</html>")
    (lake / "documents" / "notes.txt").write_text("mine")
    assert main(["run", "--input", str(two_corpora[1]), "--output", str(lake), "--quiet", "--overwrite", *FIXED]) == 0
    assert not (lake / "_REPORT.html").exists()
    assert (lake / "documents" / "notes.txt").read_text() == "mine"
    s = summary(lake)
    assert s["records_read"] == 5
    listed = sorted(f for t in ("documents", "duplicates", "rejected") for f in s["files"][t]) + s["index"]["files"]
    assert sorted(listed) == sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet"))


def test_a_lake_inside_its_input_folder_never_reads_itself(tmp_path, capsys):
    """`--output` inside the `--input` folder: the lake's own files (its report, a text file a user left in
    it) are skipped when listing the inputs, and the run says so; a rerun reads the same records."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    dated_corpus(inbox / "a.jsonl", 3)
    lake = inbox / "lake"
    assert main(["run", "--input", str(inbox), "--output", str(lake), "--quiet", *FIXED]) == 0
    (lake / "_REPORT.html").write_text("<html><body><p>" + "A report is not an article. " * 40 + "</p></body></html>")
    (lake / "documents" / "readme.txt").write_text("Notes about this lake. " * 40)
    capsys.readouterr()
    assert main(["run", "--input", str(inbox), "--output", str(lake), "--overwrite", *FIXED]) == 0
    assert "skipped 2 files inside the output lake" in capsys.readouterr().err
    assert summary(lake)["records_read"] == 3


def _limit_file_size(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    return apply


@pytest.mark.slow
def test_a_failed_overwrite_leaves_the_old_lake_whole(tmp_path, existing_lake):
    """The new run cannot write its files (a file-size limit: EFBIG, as a full disk gives ENOSPC): it exits
    1 with one clear line, and the old lake is exactly as it was."""
    lake = existing_lake
    before = tables_state(lake)
    big = dated_corpus(tmp_path / "big.jsonl", 60, seed=3, words=400)
    proc = subprocess.run([sys.executable, "-m", "wirewash.pipeline.cli", "run", "--input", str(big), "--output", str(lake),
                           "--overwrite", "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          preexec_fn=_limit_file_size(16 << 10))
    assert proc.returncode == 1, proc.stderr[-2000:]
    message = proc.stderr.strip().splitlines()
    assert len(message) == 1 and "nothing was committed" in message[0] and "File too large" in message[0], message
    assert "Traceback" not in proc.stderr
    assert tables_state(lake) == before


# --- output that cannot be written: fail fast, before any work ---------------------------------------------

@pytest.mark.parametrize("where", ["under_a_file", "dev_full", "proc"])
def test_unwritable_output_fails_fast_with_one_clear_line(tmp_path, capsys, where):
    (tmp_path / "file").write_text("x")
    output = {"under_a_file": tmp_path / "file" / "lake", "dev_full": Path("/dev/full"),
              "proc": Path("/proc/wirewash-lake")}[where]
    started = time.monotonic()
    assert main(["run", "--input", str(dated_corpus(tmp_path / "c.jsonl", 3)), "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wirewash: error: cannot write to the output folder") and len(err.splitlines()) == 1
    assert time.monotonic() - started < 10
    assert not Path("/proc/wirewash-lake").exists()


def _mount_tmpfs(mount: Path, options: str) -> None:
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 256 KiB filesystem (ENOSPC when full); skipped where mounting is not allowed."""
    _mount_tmpfs(tmp_path / "tiny", "size=256k")
    yield tmp_path / "tiny"
    subprocess.run(["umount", str(tmp_path / "tiny")], check=True)


@pytest.fixture
def read_only_fs(tmp_path):
    """A real read-only filesystem (EROFS, even for root); skipped where mounting is not allowed."""
    _mount_tmpfs(tmp_path / "ro", "ro,size=64k")
    yield tmp_path / "ro"
    subprocess.run(["umount", str(tmp_path / "ro")], check=True)


def test_read_only_filesystem_fails_fast(read_only_fs, tmp_path, capsys):
    corpus = dated_corpus(tmp_path / "c.jsonl", 3)
    assert main(["run", "--input", str(corpus), "--output", str(read_only_fs / "lake")]) == 2
    err = capsys.readouterr().err
    assert "cannot write to the output folder" in err and "Read-only file system" in err


def test_full_disk_fails_fast(tiny_tmpfs, tmp_path, capsys):
    fd = os.open(tiny_tmpfs / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    corpus = dated_corpus(tmp_path / "c.jsonl", 3)
    assert main(["run", "--input", str(corpus), "--output", str(tiny_tmpfs / "lake")]) == 2
    err = capsys.readouterr().err
    assert "cannot write to the output folder" in err and "No space left on device" in err


def test_disk_filling_up_mid_run_fails_cleanly(tiny_tmpfs, tmp_path, capsys):
    big = dated_corpus(tmp_path / "big.jsonl", 150, seed=4, words=400)
    assert main(["run", "--input", str(big), "--output", str(tiny_tmpfs / "lake"), "--quiet",
                 "--partition_by", "day"]) == 1  # 150 files: more than the 256 KiB hold
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing was committed" in err[0] and "No space left on device" in err[0], err
    assert not (tiny_tmpfs / "lake" / "documents").exists() and not (tiny_tmpfs / "lake" / SUMMARY_FILE).exists()
    assert not (tiny_tmpfs / "lake" / STAGING_DIR).exists(), "the failed run must give its space back"
    small = dated_corpus(tmp_path / "small.jsonl", 3)
    assert main(["run", "--input", str(small), "--output", str(tiny_tmpfs / "lake"), "--quiet"]) == 0


# --- invariants, with faults injected into real pipelines ---------------------------------------------------

def _art(doc_id, loc, lang="en"):
    return Article(doc_id, loc, "text", text="some text " + doc_id, lang=lang)


def test_write_lake_reports_every_invariant_violation(tmp_path):
    """WriteLake fed inconsistent outputs (as a buggy stage would produce): the summary says what broke."""
    lake = tmp_path / "lake"
    with TestPipeline(runner="FnApiRunner") as p:
        inputs = {
            "documents": p | "D" >> beam.Create([_art("a", "f:1"), _art("a", "f:2"), _art("b", "f:3", "x/../..")]),
            "duplicates": p | "U" >> beam.Create([Duplicate("c", "ghost", "exact", 1.0, "f:4"),
                                                  Duplicate("d", "b", "near", 0.9, "f:5")]),
            "rejected": p | "R" >> beam.Create([Rejection(None, "f:6", "read", "bad_json")]),
            "records_read": p | "N" >> beam.Create([7]),
        }
        _ = inputs | WriteLake(str(lake), "2024-01-01T00:00:00+00:00")
    s = summary(lake)
    assert s["invariants"] == {"reconciled": False, "dangling_duplicate_of": 1, "duplicate_doc_ids": 1,
                               "invalid_partitions": 0, "unread_input": []}
    assert s["ok"] is False and s["records_read"] == 7 and s["documents"] == 3
    assert s["languages"] == {"en": 2, "und": 1}  # the hostile language code became und, not a folder
    assert sorted(p.relative_to(lake / "documents").as_posix() for p in (lake / "documents").glob("*/*")) == [
        "lang=en/date=unknown", "lang=und/date=unknown"]


def _write_lake_graph(p, lake, documents, duplicates, rejected):
    articles = p | "A" >> beam.Create([d for d in documents])
    read_rejected = p | "RR" >> beam.Create([r for r in rejected])
    inputs = {"documents": articles, "duplicates": p | "U" >> beam.Create(duplicates), "rejected": read_rejected,
              "records_read": pipeline_build._count_records(articles, read_rejected)}
    return inputs | WriteLake(str(lake), "2024-01-01T00:00:00+00:00")


def test_the_commits_side_inputs_take_no_default_value_stage(tmp_path):
    """Each side input built with a default value (`Count.Globally`, `ToDict`, a defaulted global combine) cost
    the local runner one more stage (a `DoOnce` impulse), a round trip to every worker: only the records read
    (one int, even for no input) and the staged file list (the commit runs even with nothing staged) keep one."""
    p = TestPipeline(runner="FnApiRunner")
    _write_lake_graph(p, tmp_path / "lake", [_art("a", "f:1")], [], [])
    names = {t.unique_name for t in p.to_runner_api().components.transforms.values()}
    defaults = sorted({n.split("/DoOnce")[0] for n in names if "/DoOnce" in n})
    assert defaults == ["RecordsRead", "WriteLake/ListStaged/Park"], defaults


def test_a_lake_without_documents_or_violations_commits_zeros(tmp_path):
    """No documents, no duplicates, no violation: the side inputs without defaults are empty, and the summary
    still counts every table (0) and every invariant."""
    lake = tmp_path / "lake"
    with TestPipeline(runner="FnApiRunner") as p:
        _write_lake_graph(p, lake, [], [], [Rejection(None, "f:1", "read", "bad_json")])
    s = summary(lake)
    assert (s["records_read"], s["documents"], s["duplicates"], s["rejected"]) == (1, 0, 0, 1)
    assert s["invariants"] == {"reconciled": True, "dangling_duplicate_of": 0, "duplicate_doc_ids": 0,
                               "invalid_partitions": 0, "unread_input": []} and s["ok"] is True
    assert s["languages"] == {} and s["rejected_reasons"] == {"bad_json": 1}


def test_commit_rechecks_partition_paths(tmp_path):
    staging = tmp_path / "lake" / STAGING_DIR / "run"
    folder = staging / "documents" / "lang=en" / "date=9999-99-99"
    folder.mkdir(parents=True)
    pq.write_table(__import__("pyarrow").table({"doc_id": ["x"]}), folder / "part-a.parquet")
    facts = {"documents": Counter({("en", ()): 1}), "duplicates": Counter(), "rejected": Counter()}
    s = commit([("documents", "lang=en/date=9999-99-99", str(folder / "part-a.parquet"), 1)],
               str(tmp_path / "lake"), str(staging), facts, 1, overwrite=False)
    assert s["invariants"]["invalid_partitions"] == 1 and s["ok"] is False


class _LosesRecords(beam.PTransform):
    """A normalize stage with a bug: it silently drops every record whose doc_id ends in 3."""

    def expand(self, articles):
        from wirewash.transforms.normalize import NormalizeArticles
        out = articles | "Real" >> NormalizeArticles()
        return {"articles": out["articles"] | "Lose" >> beam.Filter(lambda a: not a.doc_id.endswith("3")),
                "rejected": out["rejected"]}


class _PointsNowhere(beam.PTransform):
    """A dedup stage with a bug: its duplicates point at a document that does not exist."""

    def __init__(self, config, spill=None):
        super().__init__()
        self.config = config
        self.spill = spill

    def expand(self, articles):
        from wirewash.transforms.dedup import DeduplicateArticles
        out = articles | "Real" >> DeduplicateArticles(self.config, self.spill)
        broken = out["duplicates"] | "Break" >> beam.Map(lambda d: d._replace(duplicate_of="ghost"))
        return {**out, "duplicates": broken}


def test_cli_exits_1_when_a_stage_loses_records(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline_build, "NormalizeArticles", _LosesRecords)
    lake = tmp_path / "lake"
    assert main(["run", "--input", str(dated_corpus(tmp_path / "c.jsonl", 12)), "--output", str(lake), "--quiet"]) == 1
    assert "counts do not reconcile: 12 read != 11 documents + 0 duplicates + 0 rejected" in capsys.readouterr().err
    assert summary(lake)["ok"] is False


def test_cli_exits_1_when_a_duplicate_points_nowhere(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline_build, "DeduplicateArticles", _PointsNowhere)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"s{i}", "text": STORIES[0]}) + "\n" for i in range(3)))
    assert main(["run", "--input", str(corpus), "--output", str(tmp_path / "lake"), "--quiet"]) == 1
    assert "lake invariants violated: dangling_duplicate_of 2" in capsys.readouterr().err


# --- signals: Ctrl-C, SIGTERM and SIGKILL of a real run with HTML pages ------------------------------------
# HTML pages go through Beam's extraction subprocess (transforms/extract.py); multi-processing runs add Beam
# worker processes. Each run is its own session, so every process it started can be found afterwards
# (processes keep their session id when their parent dies).

def html_corpus(path: Path, n: int, seed: int = 11) -> Path:
    """n distinct HTML pages in JSONL (`html` field): about 15 ms of extraction each."""
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for i in range(n):
            paragraphs = "".join(f"<p>{' '.join(rng.choice(WORDS) for _ in range(40)).capitalize()}.</p>"
                                 for _ in range(8))
            html = (f"<html><head><title>Story {i}</title></head><body><nav>Home | News</nav><article>"
                    f"<h1>Story {i}</h1>{paragraphs}</article><footer>(c) site</footer></body></html>")
            handle.write(json.dumps({"id": f"p{i}", "url": f"https://n.example/{i}", "html": html}) + "\n")
    return path


def session_processes(sid: int) -> list[int]:
    """Living (not zombie) processes of session `sid`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[3] == str(sid) and fields[0] != "Z":
            found.append(int(entry))
    return found


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    return html_corpus(tmp_path_factory.mktemp("pages") / "pages.jsonl", 1200)


MODES = {"in_process": [], "multi_processing": ["--direct_running_mode", "multi_processing",
                                                "--direct_num_workers", "2"]}


def start_run(pages: Path, lake: Path, mode: str) -> subprocess.Popen:
    """A real `wirewash run` in its own session, returned once it has child processes at work."""
    from wirewash.pipeline.lifetime import descendants
    proc = subprocess.Popen([sys.executable, "-m", "wirewash.pipeline.cli", "run", "--input", str(pages), "--output",
                             str(lake), "--quiet", *FIXED, *MODES[mode]], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not descendants(proc.pid):
        time.sleep(0.02)
    time.sleep(0.5)  # pages are being extracted
    assert proc.poll() is None, "the run ended before the signal: " + proc.stderr.read().decode()[-500:]
    return proc


def ended(proc: subprocess.Popen, within: float = 15) -> tuple[float, str]:
    """Seconds the process took to end, and its stderr; kills its session if it hangs."""
    started = time.monotonic()
    try:
        _, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"the run did not end within {within} s of the signal: {err.decode()[-500:]}")
    return time.monotonic() - started, err.decode()


def no_process_left(sid: int, within: float = 5) -> list[int]:
    deadline = time.monotonic() + within
    while session_processes(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = session_processes(sid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)  # not behind the test
    return left


@pytest.mark.slow
@pytest.mark.parametrize("sig, whole_group, mode", [
    (signal.SIGINT, True, "in_process"),  # Ctrl-C at a terminal: the whole foreground process group
    (signal.SIGTERM, False, "multi_processing"),  # `kill PID`, systemd, docker stop
])
def test_ctrl_c_and_sigterm_stop_a_run_in_one_line(tmp_path, pages, sig, whole_group, mode):
    """Exit 130 within seconds, one line, no traceback (not from the children either), no process of the run
    left, nothing committed."""
    lake = tmp_path / "lake"
    proc = start_run(pages, lake, mode)
    (os.killpg if whole_group else os.kill)(proc.pid, sig)
    seconds, err = ended(proc)
    assert proc.returncode == 130, err[-2000:]
    assert err.splitlines() == [f"wirewash: interrupted ({sig.name}): stopped, nothing was committed to {lake}"]
    assert seconds < 5
    assert no_process_left(proc.pid) == []
    assert not (lake / SUMMARY_FILE).exists() and visible_parquet(lake) == []
    assert main(["run", "--input", str(dated_corpus(tmp_path / "c.jsonl", 3)), "--output", str(lake), "--quiet",
                 *FIXED]) == 0, "the next run into the same folder needs no --overwrite"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["in_process", "multi_processing"])
def test_sigkill_leaves_no_child_process_behind(tmp_path, pages, mode):
    """The launcher alone is killed (no chance to clean up): its extraction subprocess and Beam workers see
    it gone and end within seconds, instead of waiting forever on a pipe."""
    from wirewash.pipeline.lifetime import descendants
    proc = start_run(pages, tmp_path / "lake", mode)
    children = descendants(proc.pid)
    assert children
    os.kill(proc.pid, signal.SIGKILL)
    ended(proc)
    assert no_process_left(proc.pid) == [], f"orphans of the killed run (its children were {children})"
    assert not (tmp_path / "lake" / SUMMARY_FILE).exists()


def test_follow_ends_a_process_when_the_followed_one_is_killed(tmp_path):
    """`follow` without Beam: a grandchild following its parent ends once that parent is SIGKILLed."""
    script = ("import os, subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import os, time; from wirewash.pipeline.lifetime import follow; "
              "follow(os.getppid()); print(os.getpid(), flush=True); time.sleep(60)'])\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, start_new_session=True,
                            stdout=subprocess.PIPE, text=True)
    try:
        # The follower prints its pid once its watch has started. (Importing the package can take seconds on
        # a loaded machine: a fixed sleep let the parent die first, and the follower then followed init.)
        follower = int(proc.stdout.readline())
        assert sorted(session_processes(proc.pid)) == sorted([proc.pid, follower])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert no_process_left(proc.pid, within=3) == []
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_forked_children_ignore_ctrl_c_and_follow_the_launcher():
    """What every process forked during a run gets (Beam's extraction subprocess is one): SIGINT ignored (the
    launcher handles Ctrl-C once), the launcher's SIGTERM handler dropped, and a watch on the launcher."""
    import multiprocessing
    import threading

    from wirewash.pipeline.lifetime import guard_forks

    def report(queue):
        queue.put((signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
                   signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
                   any(t.name == "wirewash-follow" for t in threading.enumerate())))

    context = multiprocessing.get_context("fork")
    results = []
    for guarded in (True, False):
        guard_forks(guarded)
        try:
            queue = context.Queue()
            child = context.Process(target=report, args=(queue,))
            child.start()
            results.append(queue.get(timeout=20))
            child.join()
        finally:
            guard_forks(False)
    assert results[0] == (True, True, True)
    assert results[1][2] is False


def test_a_stop_and_the_commit_cannot_both_win(tmp_path, existing_lake, two_corpora):
    """The commit and a Ctrl-C claim the run in one mkdir: once a stop holds it, the commit refuses before
    touching the lake; once the commit holds it, a stop lets it finish (and the command then exits 130)."""
    from wirewash.pipeline.lifetime import StopOnSignals, claim
    lake = existing_lake
    before = tables_state(lake)
    staging = lake / STAGING_DIR
    assert claim(str(staging)) is True and claim(str(staging)) is False
    facts = {"documents": Counter(), "duplicates": Counter(), "rejected": Counter()}
    with pytest.raises(RuntimeError, match="stopped before its commit"):
        commit([], str(lake), str(staging / "run"), facts, 0, overwrite=True)
    assert tables_state(lake) == before

    shutil.rmtree(staging)
    with StopOnSignals() as stop:
        stop.arm(str(lake), str(staging))
        assert claim(str(staging))  # as the commit does when it begins
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the handler runs (and returns: the commit goes on)
    assert stop.interrupted == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_before_the_run_starts_is_one_line(tmp_path, capsys):
    """While the pipeline is being built a signal is a KeyboardInterrupt; the command says which signal."""
    from wirewash.pipeline.lifetime import StopOnSignals
    with StopOnSignals() as stop:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert stop.requested == "SIGTERM"
    import wirewash.pipeline.settings as build

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    original = build.settings_from_options
    build.settings_from_options = interrupted
    try:
        assert main(["run", "--output", str(tmp_path / "lake")]) == 130
    finally:
        build.settings_from_options = original
    err = capsys.readouterr().err
    assert err == "wirewash: interrupted (SIGINT): stopped before the run began; nothing was written\n"
    assert not (tmp_path / "lake").exists()


def test_calls_of_main_in_one_process_leave_nothing_to_the_next(tmp_path, monkeypatch, capsys):
    """A program calling `main` again and again (or a fuzzer): a call stopped by SIGTERM before its run, then
    runs whose HTML pages go through the extraction subprocess (forked, then ended by the run's cleanup). Each
    call gives the caller's own signal handlers back, no signal reaches the caller after a call (nothing of a
    run's cleanup is sent to the caller's process or group), the signal that stopped a call goes on to the
    caller's own handler once, and each later run runs and accounts for every record."""
    import wirewash.pipeline.settings as settings_module
    received = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        mine = {sig: signal.getsignal(sig) for sig in previous}
        original = settings_module.settings_from_options

        def interrupted(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(2)
        monkeypatch.setattr(settings_module, "settings_from_options", interrupted)
        assert main(["run", "--output", str(tmp_path / "stopped")]) == 130
        monkeypatch.setattr(settings_module, "settings_from_options", original)
        assert capsys.readouterr().err.endswith("interrupted (SIGTERM): stopped before the run began; nothing was "
                                                "written\n")
        # the caller's own SIGTERM handler hears of the signal once the command is over, and only once
        assert {sig: signal.getsignal(sig) for sig in previous} == mine and received == [signal.SIGTERM]
        received.clear()
        corpus = html_corpus(tmp_path / "pages.jsonl", 4)
        for n in range(2):
            lake = tmp_path / f"lake{n}"
            assert main(["run", "--input", str(corpus), "--output", str(lake), "--quiet", *FIXED]) == 0, \
                capsys.readouterr().err
            assert summary(lake)["records_read"] == 4 and summary(lake)["reconciled"]
            time.sleep(0.5)  # a late signal of the run's cleanup would land here
            assert {sig: signal.getsignal(sig) for sig in previous} == mine and received == []
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_a_signal_the_caller_ignores_stays_ignored(tmp_path, monkeypatch):
    """A command started with SIGINT ignored (`wirewash run ... &` in a script, `nohup`) is not stopped by a
    Ctrl-C meant for the foreground job: the command keeps the signal ignored and its run goes through."""
    import wirewash.pipeline.settings as settings_module
    original = settings_module.settings_from_options

    def ctrl_c_then_go_on(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
        return original(*args, **kwargs)
    monkeypatch.setattr(settings_module, "settings_from_options", ctrl_c_then_go_on)
    corpus = dated_corpus(tmp_path / "c.jsonl", 2)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert main(["run", "--input", str(corpus), "--output", str(tmp_path / "lake"), "--quiet", *FIXED]) == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert summary(tmp_path / "lake")["records_read"] == 2


@pytest.mark.slow
def test_a_stop_ends_the_runs_processes_and_not_its_callers(tmp_path):
    """`main` called by a program that has a child process of its own: SIGTERM during the run ends the run's
    processes (the extraction subprocess) and not the caller's child, which was there before the run."""
    corpus = html_corpus(tmp_path / "pages.jsonl", 300)
    script = ("import os, signal, subprocess, sys, threading, time\n"
              "from wirewash.pipeline import cli, lifetime\n"
              "own = subprocess.Popen(['sleep', '120'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
              "print(own.pid, flush=True)\n"
              "arm = lifetime.StopOnSignals.arm\n"
              "def armed(self, *args, **kwargs):\n"
              "    arm(self, *args, **kwargs)\n"
              "    def stop_once_the_run_has_a_process():\n"
              "        deadline = time.monotonic() + 120\n"
              "        while time.monotonic() < deadline and len(lifetime.descendants()) < 2:\n"
              "            time.sleep(0.01)\n"
              "        print(' '.join(map(str, lifetime.descendants())), flush=True)\n"
              "        os.kill(os.getpid(), signal.SIGTERM)\n"
              "    threading.Thread(target=stop_once_the_run_has_a_process, daemon=True).start()\n"
              "lifetime.StopOnSignals.arm = armed\n"
              f"sys.exit(cli.main(['run', '--input', {str(corpus)!r}, '--output', {str(tmp_path / 'lake')!r}, "
              "'--quiet']))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    own = None
    try:
        out, err = proc.communicate(timeout=180)
        own, children = int(out.split()[0]), {int(pid) for pid in out.splitlines()[1].split()}
        assert proc.returncode == 130, err[-2000:]
        assert err.splitlines()[-1].startswith("wirewash: interrupted (SIGTERM): stopped, nothing was committed")
        assert own in children and len(children) >= 2
        # the run's processes are gone, the caller's child lives. One forked after the stop listed the
        # descendants (a worker still starting, a page subprocess) ends by `lifetime.follow` once it sees its
        # parent gone: a few seconds at most on a loaded machine, so the check waits that long, no longer.
        deadline = time.monotonic() + 10
        while session_processes(proc.pid) != [own] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert session_processes(proc.pid) == [own]
    finally:
        for pid in session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.wait()


def test_a_stop_after_the_commit_says_the_lake_is_complete(tmp_path):
    """The commit removes its claim with the staging folder when it ends; a signal after that (the run is still
    finishing) finds a new _SUMMARY.json and says the lake is complete instead of "nothing was committed"."""
    lake = tmp_path / "lake"
    script = ("import os, signal, sys, time\n"
              "from wirewash.pipeline.lifetime import StopOnSignals\n"
              f"lake = {str(lake)!r}\n"
              "with StopOnSignals() as stop:\n"
              "    stop.arm(lake, lake + '/_staging', summary=lake + '/_SUMMARY.json')\n"
              "    os.makedirs(lake)\n"
              "    open(lake + '/_SUMMARY.json', 'w').write('{}')  # the commit's last step\n"
              "    os.kill(os.getpid(), int(sys.argv[1]))\n"
              "    time.sleep(10)\n")
    for sig, before in ((signal.SIGTERM, False), (signal.SIGINT, True)):
        shutil.rmtree(lake, ignore_errors=True)
        if before:  # no commit yet: the stop claims the run
            script_now = script.replace("    open(lake + '/_SUMMARY.json', 'w').write('{}')  # the commit's last step\n", "")
        else:
            script_now = script
        done = subprocess.run([sys.executable, "-c", script_now, str(int(sig))], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 130, done.stderr
        expected = (f"interrupted ({sig.name}): stopped, nothing was committed to {lake}" if before else
                    f"interrupted ({sig.name}) after the commit: {lake} is a complete lake")
        assert done.stderr == f"wirewash: {expected}\n"
        assert (lake / SUMMARY_FILE).exists() is not before


def test_files_a_folder_holds_but_wirewash_does_not_read_are_named_by_type(tmp_path, capsys):
    """A folder input reads its .jsonl/.jsonl.gz/.txt/.html files; the others (a .json export, a compressed
    .jsonl.zst, a README) are not read, and the run says how many of each type, once, and keeps it in its
    record; the lake's own files (output inside the input folder) are not counted."""
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    dated_corpus(inbox / "a.jsonl", 3)
    (inbox / "export.json").write_text("[]")
    (inbox / "sub" / "more.json").write_text("{}")
    (inbox / "b.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    (inbox / "README.md").write_text("notes")
    lake = inbox / "lake"
    assert main(["run", "--input", str(inbox), "--output", str(lake), *FIXED]) == 0
    err = capsys.readouterr().err
    assert "wirewash: not read: 4 files of other types in the input folders (.json 2, .jsonl.zst 1, .md 1)" in err
    assert summary(lake)["runs"][-1]["not_read_inputs"] == {".json": 2, ".jsonl.zst": 1, ".md": 1}
    assert main(["run", "--input", str(inbox), "--output", str(lake), "--overwrite", "--quiet", *FIXED]) == 0
    assert capsys.readouterr().err == ""
    assert main(["run", "--input", str(inbox), "--output", str(lake), "--overwrite", *FIXED]) == 0
    assert "not read: 4 files" in capsys.readouterr().err  # the lake's .json and .parquet files are not counted
