"""What the live progress counters and the run's timing cost: the same pipeline with and without the
counting side branches, and the time `run_timing` takes after a run.

    python bench/progress_overhead.py [N]

Runs Create(N) -> Reshuffle -> Map on the FnApiRunner, once bare and once with one counting branch per
progress kind (as `wirewash run --progress` adds: records read, cleaned, documents, duplicates, rejected),
alternating, best of 3 each. Prints the seconds, the cost per element and per counted branch, and how long
reading the per-stage times from the runner takes (the times themselves are measured by Beam's own state
sampler, which runs whether or not we read it: no wirewash code runs per element for them).
"""
from __future__ import annotations

import sys
import tempfile
import time

from wirewash.pipeline.cli import configure_logging

configure_logging()

import apache_beam as beam  # noqa: E402

from wirewash.pipeline.progress import KINDS, CountProgress, read_counts  # noqa: E402
from wirewash.pipeline.runners import register_fnapi_runner  # noqa: E402

register_fnapi_runner()


TIMING_SECONDS = []  # how long run_timing took after each tapped run


def run(n: int, taps: bool) -> float:
    from wirewash.pipeline.timing import run_timing

    folder = tempfile.mkdtemp(prefix="wirewash-bench-")
    started = time.perf_counter()
    p = beam.Pipeline(runner="FnApiRunner")
    items = p | beam.Create(range(n)) | beam.Reshuffle() | beam.Map(lambda x: x + 1)
    if taps:
        _ = {f"{kind}:{k}": items for k, kind in enumerate(KINDS)} | CountProgress(folder)
    result = p.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - started
    if taps:
        assert read_counts(folder)["read"] == n, read_counts(folder)
        before = time.perf_counter()
        timing = run_timing(result, time.time() - seconds, time.time() - seconds)
        TIMING_SECONDS.append(time.perf_counter() - before)
        assert timing["stages"], timing
    return seconds


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    bare, tapped = [], []
    for _ in range(3):
        bare.append(run(n, False))
        tapped.append(run(n, True))
    b, t = min(bare), min(tapped)
    print(f"{n} elements: bare {b:.2f} s, with {len(KINDS)} counting branches {t:.2f} s; "
          f"+{(t - b) / n * 1e6:.1f} us per element, +{(t - b) / n / len(KINDS) * 1e6:.1f} us per branch and "
          f"element; reading the per-stage times after the run: {min(TIMING_SECONDS) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
