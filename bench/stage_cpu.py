"""CPU per record, per stage, of one wirewash run: process CPU time split by a sampling profiler (py-spy).

    python bench/stage_cpu.py CORPUS.jsonl LAKE [--rate HZ] [--json OUT.json] [--keep-profile RAW.txt]

Two runs of `wirewash run --input CORPUS --output LAKE --overwrite` in ONE process (the in-process runner,
`--direct_num_workers=1`; the extraction subprocess is its child): the first bare, for the CPU seconds
(user + system) of the process and of its children, the second under `py-spy record` (on-CPU samples of
the process), for where the process's go. Each sample is charged to the innermost wirewash module on its
stack (`transforms/normalize.py` -> normalize, `transforms/spill.py` -> spill, library code to the stage that
called it); module loading is "imports", samples with no wirewash frame are Beam's own per-element and
per-bundle work ("beam"), a thread seen waiting is not counted. Stage CPU = its share of the samples x the
process's CPU; the children's CPU (the extraction subprocess: trafilatura, and pickling pages to it) is
charged to extract. CPU rather than wall
time: the machine is shared, and CPU seconds barely depend on the load. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter

# (path fragment of a frame's file, stage it is charged to): the outermost match on a stack wins
STAGES = (("transforms/extract.py", "extract"),
          ("transforms/normalize.py", "normalize"), ("transforms/repeated_lines.py", "boilerplate"),
          ("transforms/boilerplate.py", "boilerplate"), ("transforms/linear_regex.py", "boilerplate"),
          ("transforms/language.py", "language"), ("transforms/dedup.py", "dedup"),
          ("transforms/stateful_dedup.py", "dedup"), ("pipeline/lake.py", "write"), ("pipeline/lake_write.py", "write"),
          ("pipeline/io.py", "read"),
          ("pipeline/report.py", "summary"))
COUNTING = ("pipeline/build.py", "pipeline/progress.py")  # the records-read count, the progress display
_FRAME = re.compile(r"\(([^():]+):\d+\)")
# Leaf frames of a thread waiting (py-spy, under load, may see a thread woken but not yet off these): not CPU
WAITING = ("Thread.run (threading.py", "select (selectors.py", "Condition.wait (threading.py",
           "Event.wait (threading.py", "Queue.get (", "Connection._recv (", "_worker (concurrent/futures/thread.py",
           "watch (pipeline/lifetime.py")


def stage_of_stack(stack: str) -> str:
    """The stage a collapsed py-spy stack (`outer;...;inner`) is charged to: None for a thread waiting,
    "imports" for module loading (start-up), "spill" for parking and fetching, else the outermost wirewash
    module's stage (a helper of another module, like normalize's `dedup_key` in dedup, counts for the stage
    that called it), else "beam"."""
    frames = stack.split(";")
    if frames[-1].startswith("process ") or any(wait in frames[-1] for wait in WAITING):
        return None
    if "importlib._bootstrap" in stack:
        return "imports"
    if "transforms/spill.py" in stack:
        return "spill"
    for frame in frames:
        match = _FRAME.search(frame)
        if match:
            path = match.group(1)
            for fragment, stage in STAGES:
                if path.endswith(fragment):
                    return stage
    return "count" if any(fragment in stack for fragment in COUNTING) else "beam"


# `wirewash run ...` in this process, then its own CPU and its children's (the extraction subprocess) on stderr
_RUN = """import resource, runpy, sys
sys.argv = ["wirewash"] + sys.argv[1:]
try:
    runpy.run_module("wirewash.pipeline.cli", run_name="__main__")
except SystemExit as stop:
    if stop.code:
        raise
finally:
    cpu = lambda who: sum(getattr(resource.getrusage(who), f) for f in ("ru_utime", "ru_stime"))
    print("CPU", cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN), file=sys.stderr)
"""


INGESTED_AT = "2026-01-01T00:00:00+00:00"  # fixed, so that two lakes compare row for row (bench/compare_lakes.py)


def wirewash_command(corpus: str, lake: str) -> list:
    return [sys.executable, "-c", _RUN, "run", "--input", corpus, "--output", lake, "--overwrite",
            "--quiet", "--direct_running_mode=in_memory", "--direct_num_workers=1", f"--ingested_at={INGESTED_AT}"]


def run_cpu(command: list) -> tuple:
    """(CPU seconds of the process, of its children) of a bare run."""
    done = subprocess.run(command, check=True, stderr=subprocess.PIPE, text=True)
    line = [ln for ln in done.stderr.splitlines() if ln.startswith("CPU ")][-1]
    own, children = map(float, line.split()[1:])
    return own, children


def records_in(corpus: str) -> int:
    with open(corpus, "rb") as handle:
        return sum(1 for _ in handle)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus")
    parser.add_argument("lake")
    parser.add_argument("--rate", type=int, default=97, help="py-spy samples per second (default 97)")
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("--keep-profile", help="keep py-spy's raw (collapsed) profile here")
    args = parser.parse_args(argv)
    records = records_in(args.corpus)
    own, children = run_cpu(wirewash_command(args.corpus, args.lake))
    raw = args.keep_profile or tempfile.mktemp(suffix=".txt")
    subprocess.run(["py-spy", "record", "--rate", str(args.rate), "--format", "raw", "-o", raw,
                    "--", *wirewash_command(args.corpus, args.lake + ".profiled")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(args.lake + ".profiled", ignore_errors=True)
    samples = Counter()
    with open(raw, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            stage = stage_of_stack(stack)
            if count.isdigit() and stage:
                samples[stage] += int(count)
    if not args.keep_profile:
        os.unlink(raw)
    total = sum(samples.values()) or 1
    per_record = {stage: 1000 * own * n / total / records for stage, n in samples.items()}
    per_record["extract"] = per_record.get("extract", 0.0) + 1000 * children / records  # its subprocess
    result = {"records": records, "cpu_seconds": round(own + children, 2),
              "cpu_seconds_subprocesses": round(children, 2),
              "cpu_ms_per_record": round(1000 * (own + children) / records, 3), "samples": total,
              "stage_ms_per_record": {stage: round(ms, 3) for stage, ms in
                                      sorted(per_record.items(), key=lambda item: -item[1])}}
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
