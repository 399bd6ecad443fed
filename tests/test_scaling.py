"""Speed wiring: the local runner choice, multi-process runs.

No timings here (they belong in bench/); these check that the wiring keeps every record and decision.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from wirewash.pipeline.runners import MULTIPROCESS_MIN_BYTES, local_workers, resolve_runner
from wirewash.pipeline.cli import main
from tests.helpers import ARTICLE_DE, ARTICLE_EN, ARTICLE_VI, lake_rows, summary, write_jsonl


def _records(n: int) -> list:
    stories = (ARTICLE_EN, ARTICLE_DE, ARTICLE_VI)
    out = []
    for i in range(n):
        if i % 17 == 5:
            out.append("{not json")
        elif i % 23 == 7:
            out.append(json.dumps({"id": f"big{i}", "text": "x" * 5000}))  # longer than max_record_bytes below
        else:
            # every 4th record copies an earlier story exactly; the others are unique variations
            body = stories[i % 3] if i % 4 == 0 else f"Story number {i}. " + stories[i % 3] + f" Coda {i * 7919}."
            out.append({"id": f"r{i}", "published": f"2024-01-{1 + i % 28:02d}", "text": body})
    return out


def _options(*flags) -> PipelineOptions:
    return PipelineOptions(list(flags))


def test_local_workers_choice():
    cores = __import__("os").cpu_count()
    assert local_workers(_options(), 0) == 1  # small input: in process
    assert local_workers(_options(), MULTIPROCESS_MIN_BYTES) == cores
    assert local_workers(_options("--direct_num_workers=1"), 10 * MULTIPROCESS_MIN_BYTES) == 1
    assert local_workers(_options("--direct_running_mode=in_memory"), 10 * MULTIPROCESS_MIN_BYTES) == 1
    assert local_workers(_options("--direct_running_mode=multi_processing", "--direct_num_workers=3"), 0) == 3


def test_resolve_runner_skips_prism_and_starts_quiet_workers():
    options = _options("--runner=DirectRunner")
    runner = resolve_runner(options, 10 * MULTIPROCESS_MIN_BYTES)
    assert isinstance(runner, FnApiRunner)  # never the DirectRunner, which tries to download Prism
    assert options.view_as(StandardOptions).runner == "FnApiRunner"
    if (__import__("os").cpu_count() or 1) > 1:
        assert "wirewash.pipeline.worker" in runner._default_environment.command_string
        assert options.view_as(DirectOptions).direct_num_workers > 1
    streaming = _options("--streaming")
    assert resolve_runner(streaming) is None and streaming.view_as(StandardOptions).runner == "BundleBasedDirectRunner"
    other = _options("--runner=DataflowRunner")
    assert resolve_runner(other, 10**9) is None and other.view_as(StandardOptions).runner == "DataflowRunner"


def _lake_facts(lake: Path) -> tuple:
    return (sorted((r["doc_id"], r["lang"], r["text"]) for r in lake_rows(lake, "documents")),
            sorted((r["doc_id"], r["duplicate_of"], r["kind"]) for r in lake_rows(lake, "duplicates")),
            sorted((r["source_location"], r["reason"]) for r in lake_rows(lake, "rejected")))


@pytest.mark.slow
def test_multiprocess_decides_like_one_process(tmp_path, capfd):
    source = write_jsonl(tmp_path / "in.jsonl", _records(120))
    common = ["run", "--input", str(source), "--ingested_at", "2026-01-01T00:00:00+00:00",
              "--max_record_bytes", "4096", "--quiet"]
    assert main(common + ["--output", str(tmp_path / "one"), "--direct_num_workers=1"]) == 0
    assert main(common + ["--output", str(tmp_path / "two"), "--direct_running_mode=multi_processing",
                          "--direct_num_workers=2"]) == 0
    assert _lake_facts(tmp_path / "one") == _lake_facts(tmp_path / "two")
    facts = summary(tmp_path / "two")
    assert facts["reconciled"] and facts["records_read"] == 120 and facts["duplicates"] > 0
    assert not (tmp_path / "two" / "_staging").exists()
    err = capfd.readouterr().err
    assert "apitools" not in err and "Prism" not in err and "Logging handler" not in err, err


_EXIT_NOW = """
import multiprocessing, sys, threading, time
from wirewash.pipeline.worker import _exit_now

if __name__ == "__main__":
    child = multiprocessing.Process(target=time.sleep, args=(120,))
    child.start()
    print(child.pid, flush=True)
    threading.Thread(target=time.sleep, args=(120,)).start()  # not a daemon: a normal exit would join it
    sys.stderr.write("last words")  # unflushed on purpose
    _exit_now()
"""


def test_a_worker_exits_at_once_when_its_harness_returns(tmp_path):
    """`_exit_now` (what pipeline/worker.py does once Beam's harness has returned): its own child processes
    killed, its output flushed, exit status 0, without waiting for what is left (a normal interpreter exit
    would join the thread below for two minutes; the launcher waits for each worker in turn)."""
    import os
    import subprocess
    import sys
    import time

    script = tmp_path / "exit_now.py"
    script.write_text(_EXIT_NOW)
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    assert done.stderr.endswith("last words")
    child = int(done.stdout.split()[0])
    for _ in range(50):  # killed and reaped: gone (a zombie would still be listed)
        if not os.path.exists(f"/proc/{child}"):
            break
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{child}")
