"""What the live progress counters cost: the same pipeline with and without the counting side branches.

    python bench/progress_overhead.py [N]

Runs Create(N) -> Reshuffle -> Map on the FnApiRunner, once bare and once with four counting branches (as
`wirewash run` adds for records read, documents, duplicates and rejected), alternating, best of 3 each.
Prints the seconds and the cost per element and per counted branch.
"""
from __future__ import annotations

import sys
import tempfile
import time

from wirewash.pipeline.cli import configure_logging

configure_logging()

import apache_beam as beam  # noqa: E402

from wirewash.pipeline.progress import CountProgress, read_counts  # noqa: E402
from wirewash.pipeline.runners import register_fnapi_runner  # noqa: E402

register_fnapi_runner()


def run(n: int, taps: bool) -> float:
    folder = tempfile.mkdtemp(prefix="wirewash-bench-")
    started = time.perf_counter()
    with beam.Pipeline(runner="FnApiRunner") as p:
        items = p | beam.Create(range(n)) | beam.Reshuffle() | beam.Map(lambda x: x + 1)
        if taps:
            _ = {f"{kind}:{k}": items for k, kind in enumerate(("read", "documents", "duplicates", "rejected"))} \
                | CountProgress(folder)
    seconds = time.perf_counter() - started
    if taps:
        assert read_counts(folder)["read"] == n, read_counts(folder)
    return seconds


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    bare, tapped = [], []
    for _ in range(3):
        bare.append(run(n, False))
        tapped.append(run(n, True))
    b, t = min(bare), min(tapped)
    print(f"{n} elements: bare {b:.2f} s, with 4 counting branches {t:.2f} s; "
          f"+{(t - b) / n * 1e6:.1f} us per element, +{(t - b) / n / 4 * 1e6:.1f} us per branch and element")


if __name__ == "__main__":
    main()
