"""How many elements cross a stage boundary in one `wirewash run`, and where (docs/performance.md, rounds 3-4).

    python bench/crossings.py [--top N] -- RUN ARGUMENTS...
    python bench/crossings.py -- --input CORPUS.jsonl --output LAKE --overwrite --quiet --direct_num_workers=1 \\
        --ingested_at=2026-01-01T00:00:00+00:00

Runs `wirewash run RUN ARGUMENTS` in this process (use `--direct_num_workers=1`: worker processes count in
themselves, unseen here) and counts every element a bundle reads from the runner: Beam's data-input
operation (`bundle_processor.DataInputOperation.output`, a private name: a bench measurement, not wirewash
code), by the step that reads it (a stage's input: the PCollection after a GroupByKey, a Flatten, a side
input...). Each such element was encoded, buffered by the runner and decoded: what round 3 measured at
5-16 µs of CPU each in process, twice through gRPC with worker processes. Prints the total and the steps
reading the most, on stderr after the run's own output.
"""
from __future__ import annotations

import argparse
import atexit
import collections
import runpy
import sys


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=20, help="steps to list (default 20)")
    parser.add_argument("run", nargs=argparse.REMAINDER, help="-- then the arguments of `wirewash run`")
    args = parser.parse_args(argv)
    run = args.run[1:] if args.run[:1] == ["--"] else args.run

    from apache_beam.runners.worker import bundle_processor, operations

    counts: collections.Counter = collections.Counter()
    output = operations.Operation.output

    def counted(self, windowed_value, output_index=0):
        counts[self.name_context.step_name] += 1
        return output(self, windowed_value, output_index)

    bundle_processor.DataInputOperation.output = counted

    def report() -> None:
        print(f"CROSSINGS {sum(counts.values())}", file=sys.stderr)
        for step, n in counts.most_common(args.top):
            print(f"  {n:>8} {step}", file=sys.stderr)

    atexit.register(report)
    sys.argv = ["wirewash", "run", *run]
    try:
        runpy.run_module("wirewash.pipeline.cli", run_name="__main__")
    except SystemExit as stop:
        if stop.code:
            raise


if __name__ == "__main__":
    main(sys.argv[1:])
