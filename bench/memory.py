"""Peak memory of a wirewash run, per process, and (optionally) what the launcher's runner holds.

    python bench/memory.py --pool ../shared/corpus --n 20000 [--workers 2] [--buffers]
    python bench/memory.py --corpus /tmp/c.jsonl [--buffers] [--timeline FILE]

Generates the corpus like `bench/benchmark.py` (seed 7, 30% HTML) unless `--corpus` is given, runs
`wirewash run` on it (local FnApiRunner, `--workers` worker processes) and prints the peak RSS of every
process of the run (sampled every 0.1 s with `benchmark.TreeMonitor`).

With `--timeline FILE` the launcher writes, as the run goes, when each fused stage starts (from the
FnApiRunner's bundle log) and the RSS of every process of the run (every 0.5 s while it grows, else every
10 s): which stage a peak belongs to. It costs nothing measurable.

With `--buffers` the launcher also samples, every 2 s, the PCollection buffers that Beam's FnApiRunner keeps
between fused stages (`pcoll_buffers`: list buffers of encoded elements, grouping buffers of decoded
values) and the side inputs it keeps as state, and prints the largest, by PCollection: that is where the
launcher's memory goes. Sizes are estimates (encoded bytes; grouped values are re-encoded with pickle on a
sample), good for ranking, not to the byte.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from benchmark import TreeMonitor, make_corpus  # noqa: E402

BUFFER_SAMPLE_SECONDS = 2.0


# ---------------------------------------------------------------------------------------------------------
# Child mode: the run itself, optionally watching the runner's buffers
# ---------------------------------------------------------------------------------------------------------

def _buffer_bytes(buffer) -> int:
    """Estimated bytes a FnApiRunner buffer holds (encoded elements, or decoded grouped values)."""
    total = 0
    for attr in ("_inputs",):
        items = getattr(buffer, attr, None) or []
        total += sum(len(b) for b in list(items))
    grouped = getattr(buffer, "_grouped_output", None) or []
    total += sum(len(b) for part in list(grouped) for b in part)
    table = getattr(buffer, "_table", None)
    if table:
        keys = list(table.items())
        values = [v for _, vs in keys[:200] for v in vs[:5]]
        count = sum(len(vs) for _, vs in keys)
        per_value = sum(len(pickle.dumps(v, protocol=4)) for v in values) / max(1, len(values))
        total += int(count * per_value) + sum(len(k) for k, _ in keys)
    return total


def _watch_buffers(report: dict, stop: threading.Event) -> None:
    import psutil
    from apache_beam.runners.portability.fn_api_runner import execution

    live: list = []  # (PCollection buffer name, weak reference): the watcher must not keep buffers alive
    original = execution.BundleContextManager.get_buffer

    def get_buffer(self, buffer_id, transform_id):
        buffer = original(self, buffer_id, transform_id)
        name = buffer_id.decode("utf-8", "replace") if isinstance(buffer_id, bytes) else str(buffer_id)
        if not any(ref() is buffer for _, ref in live):
            live.append((name, weakref.ref(buffer)))
        return buffer

    execution.BundleContextManager.get_buffer = get_buffer
    me = psutil.Process()

    def loop():
        while not stop.wait(BUFFER_SAMPLE_SECONDS):
            sizes: dict = {}
            live[:] = [(name, ref) for name, ref in live if ref() is not None]
            for name, ref in list(live):
                buffer = ref()
                try:
                    sizes[name] = sizes.get(name, 0) + _buffer_bytes(buffer)
                except Exception:
                    continue
            buffer = None
            rss = me.memory_info().rss
            total = sum(sizes.values())
            for name, size in sizes.items():
                report["max_by_buffer"][name] = max(report["max_by_buffer"].get(name, 0), size)
            if rss > report["peak_rss"]:
                report["peak_rss"], report["at_peak"] = rss, {k: v for k, v in sizes.items() if v}
            report["max_total"] = max(report["max_total"], total)

    threading.Thread(target=loop, daemon=True).start()


def _watch_allocations(report: dict, stop: threading.Event) -> None:
    """tracemalloc in the launcher: at each new peak of traced memory (10% above the last one), the largest
    allocation sites, by the innermost frames of wirewash or Beam that made them."""
    import tracemalloc

    tracemalloc.start(8)

    def loop():
        last = 0
        while not stop.wait(BUFFER_SAMPLE_SECONDS):
            current, _ = tracemalloc.get_traced_memory()
            if current > last * 1.1:
                last = current
                stats = tracemalloc.take_snapshot().statistics("traceback")[:12]
                report["allocations"] = {"traced": current, "top": [
                    [stat.size, [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in stat.traceback][-8:]]
                    for stat in stats]}

    threading.Thread(target=loop, daemon=True).start()


def _write_timeline(path: str) -> None:
    """Appends to `path` "seconds STAGE name" when the runner starts a new fused stage, and "seconds RSS
    launcher worker..." (MB, launcher first) every 0.5 s when the launcher grew by 3%, else every 10 s."""
    import logging

    import psutil

    out = open(path, "w", buffering=1)
    started = time.monotonic()
    me = psutil.Process()

    class StageStarts(logging.Handler):
        last = None

        def emit(self, record):
            message = record.getMessage()
            if message.startswith("Running bundle for stage "):
                name = message.split("\n")[0][len("Running bundle for stage "):]
                if name != StageStarts.last:
                    StageStarts.last = name
                    out.write(f"{time.monotonic() - started:8.1f} STAGE {name[:400]}\n")

    bundles = logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner.run_bundle")
    bundles.setLevel(logging.DEBUG)
    bundles.addHandler(StageStarts())
    bundles.propagate = False

    def sample():
        peak, last = 0, 0.0
        while True:
            time.sleep(0.5)
            rss = []
            for proc in [me] + me.children(recursive=True):
                try:
                    rss.append(proc.memory_info().rss >> 20)
                except Exception:
                    continue
            now = time.monotonic() - started
            if rss[0] > peak * 1.03 or now - last >= 10:
                peak, last = max(peak, rss[0]), now
                out.write(f"{now:8.1f} RSS " + " ".join(str(mb) for mb in rss if mb > 20) + "\n")

    threading.Thread(target=sample, daemon=True).start()


def child(argv: list[str]) -> int:
    """Runs `wirewash run ARGV` in this process (the launcher); with WIREWASH_BUFFERS=FILE, also writes the
    buffer report there."""
    from wirewash.pipeline.cli import configure_logging

    configure_logging(verbose=False)
    from apache_beam.options.pipeline_options import PipelineOptions

    from wirewash.pipeline.build import build_pipeline, settings_from_options

    report_path = os.environ.get("WIREWASH_BUFFERS")
    report = {"max_by_buffer": {}, "at_peak": {}, "peak_rss": 0, "max_total": 0}
    stop = threading.Event()
    if report_path:
        _watch_buffers(report, stop)
    if os.environ.get("WIREWASH_TRACEMALLOC"):
        _watch_allocations(report, stop)
    if os.environ.get("WIREWASH_TIMELINE"):
        _write_timeline(os.environ["WIREWASH_TIMELINE"])
    options = PipelineOptions(argv)
    settings = settings_from_options(options)
    build_pipeline(options, settings).run().wait_until_finish()
    stop.set()
    if report_path:
        Path(report_path).write_text(json.dumps(report))
    return 0


def heap_diff(before: Path, after: Path, top: int = 15) -> int:
    """The allocation sites (innermost 6 frames) that grew most between two tracemalloc snapshots."""
    import tracemalloc

    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    old, new = (tracemalloc.Snapshot.load(str(p)).filter_traces(ignore) for p in (before, after))
    total = [sum(s.size for s in snap.statistics("filename")) >> 20 for snap in (old, new)]
    print(f"traced {total[0]} -> {total[1]} MB; largest growth:")
    for stat in new.compare_to(old, "traceback")[:top]:
        frames = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in stat.traceback]
        print(f"  {stat.size_diff / 2**20:+8.2f} MB {stat.count_diff:+9d} blocks  " + " <- ".join(reversed(frames)))
    return 0


# ---------------------------------------------------------------------------------------------------------
# Parent mode
# ---------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=Path, help="article pool, e.g. ../shared/corpus")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--corpus", type=Path, help="an existing corpus instead of generating one")
    parser.add_argument("--work", type=Path, default=HERE / "_work", help="scratch folder (default bench/_work)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--buffers", action="store_true", help="also report what the runner's buffers hold "
                        "(sampling them costs time: take RSS figures from runs without it)")
    parser.add_argument("--tracemalloc", action="store_true", help="with --buffers: also trace the launcher's "
                        "allocations (slow) and print the largest allocation sites at its peak")
    parser.add_argument("--timeline", type=Path, help="write stage starts and every process's RSS over time "
                        "to this file")
    parser.add_argument("--worker_heap", type=Path, help="each worker logs its RSS and data-channel backlog "
                        "every 15 s to worker-PID.log in this folder")
    parser.add_argument("--trace", action="store_true", help="with --worker_heap: also trace each worker's "
                        "Python allocations and dump a tracemalloc snapshot there every 15 s (slows workers "
                        "~2x); compare two with --heap_diff")
    parser.add_argument("--heap_diff", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                        help="print what grew between two worker snapshots (by traceback), then exit")
    parser.add_argument("--wirewash-args", default="", help="extra arguments for wirewash (quoted)")
    args = parser.parse_args(argv)
    if args.heap_diff:
        return heap_diff(*args.heap_diff)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.corpus:
        corpus = args.corpus.resolve()
    elif args.pool:
        corpus = make_corpus(args.pool.resolve(), args.n, args.seed, 0.3, work)
    else:
        parser.error("give --pool (and --n) or --corpus")
    lake = work / f"memory-lake-{corpus.stem}"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--input", str(corpus), "--output", str(lake),
           "--overwrite", "--ingested_at", "2026-01-01T00:00:00+00:00",
           "--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}",
           *args.wirewash_args.split()]
    env = dict(os.environ)
    buffers = work / f"memory-buffers-{corpus.stem}.json"
    if args.buffers:
        env["WIREWASH_BUFFERS"] = str(buffers)
    if args.buffers and args.tracemalloc:
        env["WIREWASH_TRACEMALLOC"] = "1"
    if args.timeline:
        env["WIREWASH_TIMELINE"] = str(args.timeline.resolve())
    if args.worker_heap:
        args.worker_heap.mkdir(parents=True, exist_ok=True)
        env["WIREWASH_WORKER_HEAP"] = str(args.worker_heap.resolve())  # pipeline/worker.py HEAP_PROFILE_ENV
        env["WIREWASH_WORKER_TRACE"] = "1" if args.trace else "0"
    log = work / f"memory-{corpus.stem}.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=HERE.parent, env=env)
        with TreeMonitor(proc.pid) as monitor:
            code = proc.wait()
    wall = time.monotonic() - started
    if code != 0:
        print(f"run failed ({code}); see {log}", file=sys.stderr)
        return 1
    summary = json.loads((lake / "_SUMMARY.json").read_text())
    procs = sorted(((label, rss / 2**20) for label, rss in monitor.peaks.values()), key=lambda p: -p[1])
    print(f"corpus {corpus} ({corpus.stat().st_size / 2**20:.0f} MB, {summary.get('records_read')} records), "
          f"{args.workers} workers, {wall:.0f} s wall, load {os.getloadavg()[0]:.1f}")
    print("peak RSS MB per process: " + ", ".join(f"{label} {mb:.0f}" for label, mb in procs if mb > 20))
    # seconds from the start, comparable with the --timeline's (the launcher starts ~1 s after this clock)
    print("reached at (s): " + ", ".join(f"{label} {monitor.peak_at[pid] - started:.1f}" for pid, (label, rss)
                                         in sorted(monitor.peaks.items(), key=lambda kv: -kv[1][1]) if rss > 20 << 20))
    print(json.dumps({"n": summary.get("records_read"), "wall": round(wall, 1), "workers": args.workers,
                      "peak_rss_mb": [[label, round(mb)] for label, mb in procs if mb > 20]}))
    if args.buffers:
        report = json.loads(buffers.read_text())
        print(f"runner buffers: largest total {report['max_total'] / 2**20:.0f} MB; launcher RSS peak "
              f"{report['peak_rss'] / 2**20:.0f} MB; at that moment (MB): " + ", ".join(
            f"{name} {size / 2**20:.0f}" for name, size in sorted(report["at_peak"].items(), key=lambda kv: -kv[1])[:8]))
        print("largest buffers (max over the run, MB):")
        for name, size in sorted(report["max_by_buffer"].items(), key=lambda kv: -kv[1])[:15]:
            print(f"  {size / 2**20:8.1f}  {name}")
        if report.get("allocations"):
            print(f"launcher allocations at the traced peak ({report['allocations']['traced'] / 2**20:.0f} MB):")
            for size, frames in report["allocations"]["top"]:
                print(f"  {size / 2**20:8.1f}  " + " <- ".join(reversed(frames[-4:])))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2:]))
    sys.exit(main())
