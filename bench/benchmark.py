"""wirewash vs the one-process floor vs HuggingFace datatrove, on the same generated corpus.

    python bench/benchmark.py --pool ../shared/corpus --n 20000 [--runs 3] [--only wirewash,floor,peer]

1. Generates the corpus with ../shared/tools/make_corpus.py (seed 7, 30% HTML, its default duplicates,
   boilerplate and malformed lines) into bench/_work/ (git-ignored), unless it is there already.
2. Runs, in rounds (each round runs every contender once, so a burst of load on the shared machine hits all
   of them alike), `--runs` times:
   - wirewash: `bench/run_wirewash.py` = `wirewash run` on the DirectRunner, multi-processing, 2 workers;
   - floor: `bench/floor.py`, the same core library calls in one plain Python loop;
   - peer: `bench/peer_datatrove.py`, datatrove 0.10.1 in its own virtualenv (created on first use).
3. Prints, per contender, the median of: wall seconds, docs/s and MB/s (over the N input records and the
   corpus bytes, the same for everyone), CPU seconds of the whole process tree, peak RSS of every process
   (sampled every 0.1 s, children included); wirewash's per-stage time from Beam's metrics; and the ratios
   wirewash/peer and wirewash/floor, each computed within a round, then the median over rounds.

Nothing here is a test: timings depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONTENDERS = ("wirewash", "floor", "peer")
PEER_PACKAGES = ["datatrove==0.10.1", "trafilatura==2.3.1", "lxml_html_clean==0.4.6", "langdetect==1.0.9",
                 "tokenizers", "spacy", "orjson", "xxhash==3.6.0", "pyarrow"]  # xxhash 4 refuses str: datatrove
SAMPLE_INTERVAL = 0.1


# ---------------------------------------------------------------------------------------------------------
# Measuring one run
# ---------------------------------------------------------------------------------------------------------

def _label(proc) -> str:
    try:
        cmd = proc.cmdline()
    except Exception:
        return "?"
    text = " ".join(cmd)
    if os.path.basename(cmd[0]) in ("sh", "bash", "dash"):
        return "shell"
    for marker, name in (("sdk_worker_main", "beam-worker"), ("wirewash.pipeline.worker", "beam-worker"), ("run_wirewash", "wirewash"), ("floor.py", "floor"),
                         ("peer_datatrove", "datatrove"), ("forkserver", "forkserver"),
                         ("multiprocess", "mp-helper")):
        if marker in text:
            return name
    return os.path.basename(cmd[0]) if cmd else "?"


class TreeMonitor:
    """Samples the RSS of a process and all its descendants; keeps each process's peak."""

    def __init__(self, pid: int):
        import psutil

        self.root = psutil.Process(pid)
        self.peaks: dict[int, tuple[str, int]] = {}
        self.peak_at: dict[int, float] = {}  # when each process reached its peak (time.monotonic())
        self.cpu: dict[int, float] = {}  # user + system seconds at the last sample, per process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            procs = [self.root]
            try:
                procs += self.root.children(recursive=True)
            except Exception:  # a child that vanished mid-listing: list them one level at a time
                procs += self._children_one_by_one()
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
                except Exception:
                    continue
                self.cpu[proc.pid] = times.user + times.system
                label, peak = self.peaks.get(proc.pid, (None, 0))
                if label in (None, "shell"):  # a worker started through `sh -c` execs python later
                    label = _label(proc)
                if rss > peak:
                    self.peak_at[proc.pid] = time.monotonic()
                self.peaks[proc.pid] = (label, max(peak, rss))
            self._stop.wait(SAMPLE_INTERVAL)

    def _children_one_by_one(self) -> list:
        found, todo = [], [self.root]
        while todo:
            try:
                kids = todo.pop().children()
            except Exception:
                continue
            found += kids
            todo += kids
        return found

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def measure(cmd: list[str], log: Path, env=None) -> dict:
    """Runs `cmd`, returns wall seconds, CPU seconds of the process tree (datatrove's forkserver children
    included), per-process peak RSS (MB)."""
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        with TreeMonitor(proc.pid) as monitor:
            code = proc.wait()
    wall = time.monotonic() - started
    if code != 0:
        raise RuntimeError(f"{cmd[:3]}... exited with {code}; see {log}")
    cpu = sum(monitor.cpu.values())  # sampled: misses at most the last 0.1 s of each process
    procs = sorted(((label, rss / 2**20) for label, rss in monitor.peaks.values()), key=lambda p: -p[1])
    return {"wall": wall, "cpu": cpu, "procs": procs}


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------

def make_corpus(pool: Path, n: int, seed: int, html: float, work: Path) -> Path:
    corpus = work / f"corpus-n{n}-s{seed}-h{html}.jsonl"
    if not corpus.exists():
        tool = pool.parent / "tools" / "make_corpus.py"
        print(f"generating {corpus.name} with {tool} ...", flush=True)
        subprocess.run([sys.executable, str(tool), "--pool", str(pool), "--n", str(n), "--seed", str(seed),
                        "--html-fraction", str(html), "--out", str(corpus) + ".tmp",
                        "--truth", str(work / f"truth-n{n}-s{seed}-h{html}.jsonl"), "--quiet"], check=True)
        os.replace(str(corpus) + ".tmp", corpus)
    return corpus


def peer_input(corpus: Path, shards: int) -> tuple[Path, int]:
    """The corpus's parseable records as `shards` JSONL files for datatrove (it crashes on a line that is
    not a JSON object); `text` holds the raw HTML of HTML records, `format` says which."""
    folder = corpus.with_suffix(f".peer{shards}")
    marker = Path(f"{folder}.count")  # outside the folder: datatrove reads every file in it
    if marker.exists():
        return folder, int(marker.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    outs = [open(folder / f"{i:05d}.jsonl", "w", encoding="utf-8") for i in range(shards)]
    kept = 0
    with open(corpus, "rb") as handle:
        for line in handle:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            text, html = obj.get("text"), obj.get("html")
            # lone surrogates (hostile input) are not UTF-8: datatrove's writers would crash on them
            text, html = (v.encode("utf-8", "replace").decode("utf-8") if isinstance(v, str) else v
                          for v in (text, html))
            if isinstance(text, str) and text.strip():
                record = {"id": str(obj.get("id")), "text": text, "format": "text"}
            elif isinstance(html, str) and html.strip():
                record = {"id": str(obj.get("id")), "text": html, "format": "html"}
            else:
                continue
            outs[kept % shards].write(json.dumps(record, ensure_ascii=False) + "\n")
            kept += 1
    for out in outs:
        out.close()
    marker.write_text(str(kept))
    return folder, kept


def peer_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating datatrove's own virtualenv in {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python


def sample_chars() -> int:
    try:
        from wirewash.pipeline.cli import configure_logging

        configure_logging(verbose=False)  # importing the language stage imports Beam: hide its noise
        from wirewash.transforms.language import SAMPLE_CHARS
    except ImportError:
        return 1000
    return SAMPLE_CHARS


# ---------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=Path, required=True, help="article pool, e.g. ../shared/corpus")
    parser.add_argument("--n", type=int, default=20000, help="records in the generated corpus (default 20000)")
    parser.add_argument("--runs", type=int, default=3, help="rounds; medians are quoted (default 3)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--html-fraction", type=float, default=0.3)
    parser.add_argument("--work", type=Path, default=HERE / "_work", help="scratch folder (default bench/_work)")
    parser.add_argument("--peer-venv", type=Path, default=None, help="datatrove's virtualenv "
                        "(default WORK/datatrove-venv; created on first use)")
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated subset of "
                        f"{','.join(CONTENDERS)}")
    parser.add_argument("--floor-sample", choices=("full", "same"), default="full",
                        help="the floor's langdetect input: the full text, as the library is used plainly "
                             "(default), or the same bounded sample as wirewash")
    parser.add_argument("--workers", type=int, default=2, help="workers for wirewash and datatrove (default 2)")
    parser.add_argument("--wirewash-args", default="", help="extra arguments for wirewash (quoted)")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    args = parser.parse_args(argv)

    only = [c.strip() for c in args.only.split(",") if c.strip()]
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(args.pool.resolve(), args.n, args.seed, args.html_fraction, work)
    size_mb = corpus.stat().st_size / 2**20
    sample = sample_chars()
    commands = {}
    if "wirewash" in only:
        commands["wirewash"] = lambda r: [
            sys.executable, str(HERE / "run_wirewash.py"), str(work / f"metrics-{r}.json"), "--input", str(corpus),
            "--output", str(work / f"lake-{r}"), "--overwrite", "--ingested_at", "2026-01-01T00:00:00+00:00",
            "--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}",
            *args.wirewash_args.split()]
    if "floor" in only:
        floor_sample = sample if args.floor_sample == "same" else 10**9
        commands["floor"] = lambda r: [sys.executable, str(HERE / "floor.py"), str(corpus),
                                       str(work / f"floor-{r}.parquet"), str(floor_sample)]
    if "peer" in only:
        python = peer_python((args.peer_venv or work / "datatrove-venv").resolve())
        shards, kept = peer_input(corpus, args.workers)
        print(f"peer input: {kept} of {args.n} records are JSON objects with text or html (datatrove "
              "crashes on the others)", flush=True)
        commands["peer"] = lambda r: [str(python), str(HERE / "peer_datatrove.py"), str(shards),
                                      str(work / f"datatrove-{r}"), str(sample), str(args.workers),
                                      str(args.workers)]

    print(f"corpus: {corpus} ({args.n} records, {size_mb:.1f} MB); language sample {sample} chars "
          f"(floor: {'the same' if args.floor_sample == 'same' else 'full text'}); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    results = {name: [] for name in commands}
    for r in range(args.runs):
        for name, command in commands.items():
            m = measure(command(r), work / f"{name}-{r}.log")
            if name == "wirewash":
                m["metrics"] = json.loads((work / f"metrics-{r}.json").read_text())
            m["load"] = os.getloadavg()[0]
            results[name].append(m)
            if args.json:  # after every run, so an interrupted benchmark still leaves its figures
                args.json.write_text(json.dumps({"n": args.n, "mb": size_mb, "results": results}, indent=1))
            top = ", ".join(f"{label} {mb:.0f}" for label, mb in m["procs"][:6])
            print(f"round {r + 1}/{args.runs} {name:<9} {m['wall']:7.1f} s wall {m['cpu']:7.1f} s CPU  "
                  f"{args.n / m['wall']:7.1f} docs/s  peak RSS MB: {top}  (load {m['load']:.1f})", flush=True)
    report(results, args.n, size_mb)
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "mb": size_mb, "results": results}, indent=1))
    return 0


def report(results: dict, n: int, size_mb: float) -> None:
    med = statistics.median
    print(f"\n{'contender':<10} {'wall s':>8} {'docs/s':>8} {'MB/s':>7} {'CPU s':>8}  peak RSS (MB, max over runs and over the N processes of a kind)")
    for name, runs in results.items():
        peaks, counts = {}, {}
        for run in runs:
            for label, mb in run["procs"]:
                peaks[label] = max(peaks.get(label, 0), mb)
            for label in {l for l, _ in run["procs"]}:
                counts[label] = max(counts.get(label, 0), sum(1 for l, _ in run["procs"] if l == label))
        procs = "; ".join(f"{label} x{counts[label]}: {mb:.0f}" for label, mb in sorted(peaks.items(), key=lambda kv: -kv[1]))
        wall = med(r["wall"] for r in runs)
        print(f"{name:<10} {wall:8.1f} {n / wall:8.1f} {size_mb / wall:7.2f} {med(r['cpu'] for r in runs):8.1f}  {procs}")
    if "wirewash" in results:
        stages = {}
        for run in results["wirewash"]:
            for stage, ms in run["metrics"]["stage_msecs"].items():
                stages.setdefault(stage, []).append(ms / 1000)
        total = sum(med(v) for v in stages.values()) or 1
        print("\nwirewash per-stage time (Beam ptransform_execution_time, summed over workers, median s):")
        print("  " + ", ".join(f"{s} {med(v):.1f} ({100 * med(v) / total:.0f}%)" for s, v in
                               sorted(stages.items(), key=lambda kv: -med(kv[1]))))
        print(f"  summary: {results['wirewash'][-1]['metrics']['summary']}")
        for other in ("peer", "floor"):
            if other in results:
                ratios = [o["wall"] / w["wall"] for w, o in zip(results["wirewash"], results[other])]
                print(f"wirewash / {other} docs/s: median {med(ratios):.2f}x (per round: "
                      + ", ".join(f"{x:.2f}" for x in ratios) + ")")


if __name__ == "__main__":
    sys.exit(main())
