"""Runs wirewash exactly as `wirewash run ARGS...` builds it, then dumps Beam's per-stage timings as JSON.

    python bench/run_wirewash.py METRICS.json [wirewash run arguments and Beam options...]

Per-stage time comes from Beam's own execution-time metrics (`ptransform_execution_time:total_msecs`, one
per transform, measured by the SDK workers' state sampler and summed over workers), grouped by the stage
a transform belongs to (`Ingest/<Stage>/...`, `WriteLake/...`).
"""
from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

from wirewash.pipeline.cli import configure_logging

configure_logging(verbose=False)  # before apache_beam is imported: hides "apitools not found"

from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from wirewash.pipeline.build import build_pipeline, settings_from_options  # noqa: E402

TOTAL_MSECS = "ptransform_execution_time:total_msecs"


def stage_of(step: str) -> str:
    """`Ingest/Language/Langdetect` -> `language`; `WriteLake/StageDocuments` -> `write`; counts -> `count`."""
    parts = step.split("/")
    if parts[0] == "WriteLake":
        return "write"
    if parts[0] == "Ingest" and len(parts) > 1:
        name = parts[1].lower()
        return name if name in ("read", "extract", "normalize", "boilerplate", "language", "dedup") else "count"
    return "other"


def stage_msecs(result) -> dict:
    """{stage: milliseconds} from the run's monitoring metrics."""
    totals = defaultdict(int)
    for counter in result.monitoring_metrics().query()["counters"]:
        if TOTAL_MSECS in counter.key.metric.name:
            totals[stage_of(counter.key.step)] += counter.committed or 0
    return dict(sorted(totals.items()))


def main(argv: list[str]) -> int:
    metrics_path, args = argv[0], argv[1:]
    options = PipelineOptions(args)
    settings = settings_from_options(options)
    started = time.monotonic()
    result = build_pipeline(options, settings).run()
    result.wait_until_finish()
    seconds = time.monotonic() - started
    with open(f"{settings.output}/_SUMMARY.json", encoding="utf-8") as handle:
        summary = json.load(handle)
    with open(metrics_path, "w", encoding="utf-8") as handle:
        json.dump({"seconds": seconds, "stage_msecs": stage_msecs(result),
                   "summary": {k: summary[k] for k in ("records_read", "documents", "duplicates", "rejected",
                                                       "reconciled")}}, handle)
    return 0 if summary.get("reconciled") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
