"""Where the cores are idle during a `wirewash run`: CPU / wall per phase, launcher and workers apart.

    python bench/timeline.py CORPUS.jsonl [--workers 2] [--json OUT.json] [--wirewash-args "..."]

Runs `wirewash run CORPUS --output LAKE --overwrite --ingested_at 2026-01-01T00:00:00+00:00` through the
CLI's own run path (`wirewash.pipeline.cli.main`, in a child process, so the finish after the runner, the
timing record and the summary lines, is measured too) and samples every process of the run (launcher,
workers, their children) every 0.25 s with psutil: CPU seconds (user + system) and RSS.

The child records, with wall-clock times, what the local runner (the FnApiRunner) does: its start, the
start of the worker processes, each fused stage (the FnApiRunner runs stages one after another, each split
into one part per worker; a stage ends with its slowest part), each part's own end, and the end of the run.
The phases printed:

- `startup`: process start to the runner's start (imports, options, input listing, building the graph);
- `runner setup`: the runner translating the graph and starting the worker processes;
- `stage NAME`: one fused stage, from its start to its end (its parts' spread shows a straggler);
- `between stages`: the runner's own work from one stage's end to the next one's start (in the launcher);
- `finish`: the last stage's end to the process's exit (the runner's shutdown, the timing record, the
  summary lines);

Start-up + finish is everything before the stage that reads the records (its first stage lists the
files while the workers import Beam) plus the finish. Each phase has wall seconds, CPU seconds of the
launcher and of the workers, CPU / wall (2.0 = both cores busy), and an idle-machine model: the phase's
wall if every process ran whenever it had work (`modeled_wall`: the busiest serial chain's CPU, or all of
the phase's CPU over the cores, whichever is more). On a loaded machine the measured walls say little; the
model, built from CPU seconds, shows what is serial (one process working while the others wait) or
unbalanced (one worker's part longer than the other's) whatever the load. It cannot see waits on disk or
on another process (workers closed one after the other count as parallel). CPU between samples is
interpolated, so a phase of under ~0.5 s is approximate; the totals are exact to the last sample. The
machine is shared: compare CPU seconds, interleave runs, and note the load (printed).

To compare two versions, run the same command with `PYTHONPATH` set to an exported copy of the other
version (`git archive REV pipeline transforms seeds | tar -x -C /tmp/before/wirewash`, plus an empty
`__init__.py`): the child and its workers then import that copy. With WIREWASH_TIMELINE_TRACE=1 the events
also time the runner's closing of each worker (`GrpcWorkerHandler.close`, `stop_worker`).
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
SAMPLE_SECONDS = 0.25
CORES = os.cpu_count() or 1
INGESTED_AT = "2026-01-01T00:00:00+00:00"


# ---------------------------------------------------------------------------------------------------------
# Child: the CLI's run, with the runner's events written to WIREWASH_TIMELINE_EVENTS
# ---------------------------------------------------------------------------------------------------------

def _hook_runner(path: str) -> None:
    """Wraps the FnApiRunner's stage, part and worker start-up calls to append JSON events to `path`."""
    out = open(path, "w", buffering=1)
    lock = threading.Lock()

    def event(kind: str, **fields) -> None:
        with lock:
            out.write(json.dumps({"t": time.time(), "event": kind, **fields}) + "\n")

    from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers

    run_stages = fn_runner.FnApiRunner.run_stages

    def timed_run_stages(self, stage_context, stages):
        event("run_stages", stages=len(stages), workers=self._num_workers)
        try:
            return run_stages(self, stage_context, stages)
        finally:
            event("stages_done")

    execute = fn_runner.FnApiRunner._execute_bundle

    def timed_execute(self, context, manager, bundle_input):
        event("stage_start", stage=manager.stage.name)
        try:
            return execute(self, context, manager, bundle_input)
        finally:
            event("stage_end", stage=manager.stage.name)

    process = fn_runner.BundleManager.process_bundle

    def timed_part(self, inputs, *args, **kwargs):
        started = time.time()
        try:
            return process(self, inputs, *args, **kwargs)
        finally:
            event("part", stage=self.bundle_context_manager.stage.name, started=started)

    get_handlers = worker_handlers.WorkerHandlerManager.get_worker_handlers

    def timed_handlers(self, environment_id, num_workers):
        fresh = environment_id not in self._cached_handlers or len(self._cached_handlers[environment_id]) < num_workers
        if fresh:
            event("workers_start")
        try:
            return get_handlers(self, environment_id, num_workers)
        finally:
            if fresh:
                event("workers_ready")

    def traced(cls, name):
        original = getattr(cls, name)

        def wrapper(self, *a, **k):
            event(f"{cls.__name__}.{name}>")
            try:
                return original(self, *a, **k)
            finally:
                event(f"{cls.__name__}.{name}<")
        setattr(cls, name, wrapper)

    if os.environ.get("WIREWASH_TIMELINE_TRACE"):
        traced(worker_handlers.GrpcWorkerHandler, "close")
        traced(worker_handlers.SubprocessSdkWorkerHandler, "stop_worker")
        traced(worker_handlers.ControlConnection, "close")
        traced(worker_handlers.WorkerHandlerManager, "close_all")
    fn_runner.FnApiRunner.run_stages = timed_run_stages
    fn_runner.FnApiRunner._execute_bundle = timed_execute
    fn_runner.BundleManager.process_bundle = timed_part
    worker_handlers.WorkerHandlerManager.get_worker_handlers = timed_handlers
    import atexit

    atexit.register(event, "exit")


def child(argv: list[str]) -> int:
    from wirewash.pipeline.timing import process_started

    events = os.environ["WIREWASH_TIMELINE_EVENTS"]
    with open(events, "w") as handle:
        handle.write(json.dumps({"t": process_started(), "event": "process_start"}) + "\n")
    from wirewash.pipeline.cli import configure_logging

    configure_logging(verbose=False)
    _hook_runner(events + ".runner")
    from wirewash.pipeline.cli import main as cli_main

    return cli_main(["run", *argv])


# ---------------------------------------------------------------------------------------------------------
# Parent: sampling and the table
# ---------------------------------------------------------------------------------------------------------

def _sample(root_pid: int, samples: dict, labels: dict, parents: dict, stop: threading.Event) -> None:
    """samples[pid] = [(t, cpu seconds, rss bytes)...] for the process and its descendants until `stop`."""
    import psutil

    root = psutil.Process(root_pid)
    while not stop.is_set():
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            procs = [root]
        for proc in procs:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    rss = proc.memory_info().rss
                    parents.setdefault(proc.pid, proc.ppid())
                    if proc.pid not in labels or labels[proc.pid] == "shell":
                        cmd = " ".join(proc.cmdline())
                        labels[proc.pid] = ("launcher" if proc.pid == root_pid else
                                            "worker" if "pipeline.worker" in cmd or "sdk_worker" in cmd else
                                            "shell" if cmd.startswith(("/bin/sh", "sh ")) else "other")
            except psutil.Error:
                continue
            samples.setdefault(proc.pid, []).append((time.time(), times.user + times.system, rss))
        stop.wait(SAMPLE_SECONDS)


def cpu_at(series: list, t: float) -> float:
    """Cumulative CPU seconds of one process at time `t`, interpolated between samples (0 before the
    first sample, the last value after the last)."""
    times = [s[0] for s in series]
    i = bisect.bisect_left(times, t)
    if i == 0:
        return 0.0 if t < times[0] else series[0][1]
    if i >= len(series):
        return series[-1][1]
    (t0, c0, _), (t1, c1, _) = series[i - 1], series[i]
    return c0 + (c1 - c0) * (t - t0) / max(t1 - t0, 1e-9)


def phases(events: list[dict]) -> list[tuple[str, float, float]]:
    """(name, start, end) per phase from the child's events, in time order (see the module docstring)."""
    by = lambda kind: [e for e in events if e["event"] == kind]  # noqa: E731
    start = by("process_start")[0]["t"]
    starts, ends = by("stage_start"), by("stage_end")
    end = by("exit")[-1]["t"] if by("exit") else max(e["t"] for e in events)
    if not starts:
        return [("startup", start, end)]
    runner = by("run_stages")[0]["t"] if by("run_stages") else starts[0]["t"]
    out = [("startup", start, runner), ("runner setup", runner, starts[0]["t"])]
    previous_end = None
    for s, e in zip(starts, ends):
        if previous_end is not None and s["t"] - previous_end > 0:
            out.append(("between stages", previous_end, s["t"]))
        out.append((f"stage {s['stage']}", s["t"], e["t"]))
        previous_end = e["t"]
    out.append(("finish", previous_end, end))
    return out


FIRST_READING_STAGE = "ParseFiles"  # the stage that reads records (ends the start-up: workers up, files listed)


def short_stage(name: str) -> str:
    """A fused stage's name is its transforms joined by '+' (in parentheses, some as `ref_...` ids): keep
    the first and the last, without the wirewash composites' common prefixes."""
    if not name.startswith("stage "):
        return name
    parts = [re.sub(r"^ref_(AppliedPTransform|PCollection)_", "", p.strip("()")) for p in name[6:].split("+")]
    clean = [re.sub(r"_\d+$", "", p).replace("Ingest-", "").replace("Ingest/", "").replace("WriteLake", "W")
             for p in parts]
    return (clean[0] if len(clean) == 1 else f"{clean[0]} .. {clean[-1]} ({len(clean)})")[:80]


def chains(samples: dict, parents: dict, root: int) -> dict:
    """pid -> the process it runs serially with: the launcher's own child it descends from (a worker's page
    subprocess belongs to its worker, which waits for it), or the launcher itself."""
    def chain(pid: int) -> int:
        seen = 0
        while pid != root and parents.get(pid) not in (root, None) and seen < 20:
            pid, seen = parents[pid], seen + 1
        return pid
    return {pid: chain(pid) for pid in samples}


def modeled_wall(by_chain: dict, cores: int = CORES) -> float:
    """What a phase would take on an idle machine if every process ran whenever it had work (CPU-bound):
    its busiest serial chain's CPU seconds, or its CPU seconds spread over every core, whichever is more.
    Load on a shared machine moves it little (CPU seconds, not wall); waiting on disk or on another process
    it does not see."""
    return max(max(by_chain.values(), default=0.0), sum(by_chain.values()) / cores)


def table(events: list[dict], samples: dict, labels: dict, merge_below: float = 0.3,
          chain_of: Optional[dict] = None) -> tuple[list[dict], dict]:
    """Rows {phase, wall, launcher, workers, other, ratio, model, parts} and the totals. Stages shorter than
    `merge_below` seconds are summed into one row "short stages (N)"; "between stages" rows are summed."""
    chain_of = chain_of or {pid: pid for pid in samples}
    parts: dict = {}
    for e in events:
        if e["event"] == "part":
            parts.setdefault(e["stage"], []).append(e["t"] - e["started"])

    def cpu(kind: str, a: float, b: float) -> float:
        return sum(cpu_at(s, b) - cpu_at(s, a) for pid, s in samples.items() if labels.get(pid, "other") == kind)

    rows, merged = [], {}
    for name, a, b in phases(events):
        by_chain: dict = {}
        for pid, series in samples.items():
            by_chain[chain_of[pid]] = by_chain.get(chain_of[pid], 0.0) + cpu_at(series, b) - cpu_at(series, a)
        row = {"phase": name, "wall": b - a, "launcher": cpu("launcher", a, b), "workers": cpu("worker", a, b),
               "other": cpu("other", a, b) + cpu("shell", a, b), "model": modeled_wall(by_chain)}
        stage = name[len("stage "):] if name.startswith("stage ") else None
        if stage and parts.get(stage):
            spans = parts[stage]
            row["parts"] = f"{len(spans)}: " + "/".join(f"{p:.1f}" for p in sorted(spans, reverse=True)[:4])
        if name == "between stages" or (stage and row["wall"] < merge_below):
            key = "between stages" if name == "between stages" else "short stages"
            m = merged.setdefault(key, {"phase": key, "wall": 0.0, "launcher": 0.0, "workers": 0.0, "other": 0.0,
                                        "model": 0.0, "n": 0})
            for k in ("wall", "launcher", "workers", "other", "model"):
                m[k] += row[k]
            m["n"] += 1
            continue
        rows.append(row)
    for key in ("short stages", "between stages"):
        if key in merged:
            m = merged[key]
            m["phase"] = f"{key} ({m.pop('n')})"
            rows.insert(len(rows) - 1, m)  # before finish
    for row in rows:
        row["cpu"] = row["launcher"] + row["workers"] + row["other"]
        row["ratio"] = row["cpu"] / row["wall"] if row["wall"] > 0 else 0.0
        row["model_ratio"] = row["cpu"] / row["model"] if row["model"] > 0 else 0.0
    total = {k: sum(r[k] for r in rows) for k in ("wall", "launcher", "workers", "other", "cpu", "model")}
    stage_rows = [r for r in rows if r["phase"].startswith(("stage ", "short stages", "between stages"))]
    stages = {k: sum(r[k] for r in stage_rows) for k in ("wall", "cpu", "model")}
    first = next((i for i, r in enumerate(rows) if FIRST_READING_STAGE in r["phase"]), 1)
    fixed = rows[:first] + [r for r in rows if r["phase"] == "finish"]
    total.update(ratio=total["cpu"] / total["wall"], stages_wall=stages["wall"], stages_cpu=stages["cpu"],
                 stages_ratio=stages["cpu"] / max(stages["wall"], 1e-9),
                 stages_model=stages["model"], stages_model_ratio=stages["cpu"] / max(stages["model"], 1e-9),
                 startup_finish_model=sum(r["model"] for r in rows[:next(
                     (i for i, r in enumerate(rows) if FIRST_READING_STAGE in r["phase"]), 1)]
                     + [r for r in rows if r["phase"] == "finish"]),
                 startup_finish_wall=sum(r["wall"] for r in fixed), startup_finish_cpu=sum(r["cpu"] for r in fixed),
                 reading_wall=total["wall"] - sum(r["wall"] for r in fixed),
                 reading_cpu=total["cpu"] - sum(r["cpu"] for r in fixed),
                 reading_model=total["model"] - sum(r["model"] for r in fixed))
    total["reading_ratio"] = total["reading_cpu"] / max(total["reading_wall"], 1e-9)
    total["reading_model_ratio"] = total["reading_cpu"] / max(total["reading_model"], 1e-9)
    return rows, total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2; 1 = in process)")
    parser.add_argument("--lake", type=Path, help="output lake (default: beside the corpus, lake-timeline)")
    parser.add_argument("--json", type=Path, help="write the rows, totals and raw events here")
    parser.add_argument("--wirewash-args", default="", help="extra arguments for wirewash run (quoted)")
    args = parser.parse_args(argv)
    corpus = args.corpus.resolve()
    lake = (args.lake or corpus.parent.parent / f"lake-timeline-{corpus.stem}").resolve()
    events_path = lake.parent / f"{lake.name}.events"
    mode = (["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"] if args.workers > 1
            else ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--input", str(corpus), "--output", str(lake),
           "--overwrite", "--quiet", "--ingested_at", INGESTED_AT, *mode, *args.wirewash_args.split()]
    env = dict(os.environ, WIREWASH_TIMELINE_EVENTS=str(events_path))
    load_before = os.getloadavg()[0]
    samples: dict = {}
    labels: dict = {}
    parents: dict = {}
    stop = threading.Event()
    proc = subprocess.Popen(cmd, cwd=HERE.parent, env=env)
    sampler = threading.Thread(target=_sample, args=(proc.pid, samples, labels, parents, stop), daemon=True)
    sampler.start()
    code = proc.wait()
    stop.set()
    sampler.join()
    if code != 0:
        print(f"run failed ({code})", file=sys.stderr)
        return 1
    events = [json.loads(line) for p in (events_path, Path(f"{events_path}.runner")) for line in open(p)]
    events.sort(key=lambda e: e["t"])
    rows, total = table(events, samples, labels, chain_of=chains(samples, parents, proc.pid))
    summary = json.loads((lake / "_SUMMARY.json").read_text())
    peaks = {}
    for pid, series in samples.items():
        peaks.setdefault(labels.get(pid, "other"), []).append(max(s[2] for s in series) >> 20)
    print(f"{corpus.name}: {summary['records_read']} records, {args.workers} worker(s); load {load_before:.1f} "
          f"before, {os.getloadavg()[0]:.1f} after; documents {summary['documents']}, duplicates "
          f"{summary['duplicates']}, rejected {summary['rejected']}")
    print("| phase | wall s | launcher CPU s | workers CPU s | other CPU s | CPU / wall | idle-machine model s "
          "| CPU / model | parts (n: s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {short_stage(r['phase'])} | {r['wall']:.2f} | {r['launcher']:.2f} | {r['workers']:.2f} | "
              f"{r['other']:.2f} | {r['ratio']:.2f} | {r['model']:.2f} | {r['model_ratio']:.2f} | {r.get('parts', '')} |")
    print(f"| **total** | {total['wall']:.2f} | {total['launcher']:.2f} | {total['workers']:.2f} | {total['other']:.2f} "
          f"| {total['ratio']:.2f} | {total['model']:.2f} | {total['cpu'] / total['model']:.2f} | |")
    print(f"stages (all): {total['stages_wall']:.2f} s wall, {total['stages_cpu']:.2f} s CPU, CPU / wall "
          f"{total['stages_ratio']:.2f}; from the first record read to the last stage's end: {total['reading_wall']:.2f} s "
          f"wall, CPU / wall {total['reading_ratio']:.2f}; start-up (to the first stage reading records) + finish: "
          f"{total['startup_finish_wall']:.2f} s wall, {total['startup_finish_cpu']:.2f} s CPU")
    print(f"idle-machine model: stages {total['stages_model']:.2f} s, CPU / model {total['stages_model_ratio']:.2f}; from "
          f"the first record read: CPU / model {total['reading_model_ratio']:.2f}; start-up + finish "
          f"{total['startup_finish_model']:.2f} s")
    print("peak RSS MB: " + ", ".join(f"{k} {sorted(v, reverse=True)}" for k, v in peaks.items()))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "total": total, "load": [load_before, os.getloadavg()[0]],
                                         "summary": {k: summary[k] for k in ("records_read", "documents",
                                                                             "duplicates", "rejected")},
                                         "peaks_mb": peaks, "events": events}, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2:]))
    sys.exit(main())
