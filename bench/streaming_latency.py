"""Streaming latency: how long after a record is dropped into the watched input it can be queried.

    python bench/streaming_latency.py [--window 10] [--records 3] [--work bench/_work/stream]

Starts `wirewash run --streaming` on a watched folder (`--poll_interval 1`), waits until it has committed a
first warm-up record, then, one at a time, `mv`s a one-record JSONL file into the folder and polls the lake
with DuckDB (every 0.2 s) until that record's `doc_id` is in `documents`. Prints each latency and whether it
is within one window + 5 s (the target). Finally sends SIGINT (drain) and checks the run exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORDS = ("river council budget bridge school market harbour train museum festival hospital farmer election "
         "storm library factory airport forest village mayor teacher doctor season report plan road price "
         "energy water garden court police station island summer winter coast valley museum choir bakery").split()


def article_text(seed: str) -> str:
    """A distinct, English-looking article per seed: unrelated records must not be near duplicates."""
    rng = random.Random(seed)
    sentences = [" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "." for _ in range(8)]
    return " ".join(sentences)


def queryable(lake: Path, doc_id: str) -> bool:
    import duckdb

    if not any((lake / "documents").rglob("*.parquet")):
        return False
    try:
        con = duckdb.connect()
        found = con.execute(f"SELECT count(*) FROM read_parquet('{lake}/documents/**/*.parquet', "
                            f"hive_partitioning=true) WHERE doc_id = ?", [doc_id]).fetchone()[0]
    except Exception:  # a listing that raced a rename: ask again
        return False
    return found > 0


def drop(folder: Path, doc_id: str, n: int, tag: str) -> float:
    """Writes a one-record file beside the folder and moves it in whole; returns the time of the move."""
    tmp = folder.parent / f"{doc_id}.jsonl"
    tmp.write_text(json.dumps({"id": doc_id, "url": f"https://water.example/{doc_id}",
                               "text": article_text(f"{tag}-{n}")}) + "\n")
    moved = time.monotonic()
    os.replace(tmp, folder / tmp.name)
    return moved


def wait_for(lake: Path, doc_id: str, since: float, limit: float) -> float | None:
    while time.monotonic() - since < limit:
        if queryable(lake, doc_id):
            return time.monotonic() - since
        time.sleep(0.2)
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=10.0, help="--window_seconds of the run (default 10)")
    parser.add_argument("--records", type=int, default=3, help="records dropped one after another (default 3)")
    parser.add_argument("--work", type=Path, default=HERE / "_work" / "stream")
    args = parser.parse_args(argv)

    shutil.rmtree(args.work, ignore_errors=True)
    incoming, lake = args.work / "incoming", args.work / "lake"
    incoming.mkdir(parents=True)
    tag = str(int(time.time()))
    cmd = [sys.executable, "-m", "wirewash.pipeline.cli", "run", "--streaming", "--input", f"{incoming}/*.jsonl",
           "--output", str(lake), "--window_seconds", str(args.window), "--poll_interval", "1", "--quiet"]
    log = open(args.work / "run.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    latencies = []
    try:
        started = drop(incoming, "warmup", 0, tag)  # start-up (imports, first listing) is not latency
        warm = wait_for(lake, "warmup", started, 120 + 3 * args.window)
        print(f"warm-up record queryable after {warm:.1f} s (includes start-up)" if warm else "warm-up timed out",
              flush=True)
        for i in range(1, args.records + 1):
            doc_id = f"latency-{i}"
            moved = drop(incoming, doc_id, i, tag)
            seconds = wait_for(lake, doc_id, moved, 60 + 3 * args.window)
            latencies.append(seconds)
            verdict = "within" if seconds is not None and seconds <= args.window + 5 else "NOT within"
            print(f"record {i}: queryable after {seconds if seconds is None else round(seconds, 1)} s "
                  f"({verdict} one window + 5 s = {args.window + 5:.0f} s)", flush=True)
            time.sleep(args.window / 3)  # drop the next one at another phase of the window
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "killed"
        log.close()
    ok = [x for x in latencies if x is not None]
    print(f"window {args.window:.0f} s: latencies {', '.join(f'{x:.1f}' for x in ok)} s; max "
          f"{max(ok) if ok else float('nan'):.1f} s; target {args.window + 5:.0f} s; drain exit code {code}")
    return 0 if ok and len(ok) == len(latencies) and max(ok) <= args.window + 5 and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
