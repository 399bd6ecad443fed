"""Where a run's time went: wall and CPU seconds from process start, and seconds per stage.

A batch run's record in the lake's `runs` gets, after the run, `timing`:

    {"wall_seconds": 12.3, "cpu_seconds": 20.1, "stages": {"startup": 3.1, "read": 0.4, ...}}

- `wall_seconds`: from the start of this process (interpreter start-up and imports included) to now;
- `cpu_seconds`: user + system CPU of this process and of its finished children (the local runner's worker
  processes, once the run has ended);
- `stages`: `startup` is process start to `pipeline.run()`; the others come from the execution time Beam's
  local runner measures for every transform itself (`ptransform_execution_time`, from its state sampler, so
  no wirewash code runs per element for it), grouped by stage (`stage_of`), summed over the worker
  processes and divided by their number: the share of the run's wall time each stage took. Runners that do
  not report it (Dataflow...) give `startup` only.

No Beam import here: `process_started` serves the CLI's first line, before Beam is loaded.
"""
from __future__ import annotations

import os
import resource
import time
from typing import Optional

__all__ = ["process_started", "stage_of", "stage_seconds", "run_timing", "EXECUTION_TIME", "STARTUP"]

_IMPORTED = time.time()
EXECUTION_TIME = "ptransform_execution_time:total_msecs"  # in Beam's metric name ...:total_msecs:v1
STARTUP = "startup"
# Top-level composites of pipeline/build.py -> stage names (those of the summary's `stages`, then write/commit).
_INGEST = {"Read": "read", "Extract": "extract", "Normalize": "normalize", "Boilerplate": "boilerplate",
           "Language": "language", "AgainstLake": "dedup", "Dedup": "dedup"}


def process_started() -> float:
    """When this process started (seconds since the epoch): from /proc on Linux (10 ms resolution), else
    when this module was first imported."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22, `starttime`, in clock ticks after boot (fields 1-2 cut off)
        with open("/proc/uptime", "rb") as handle:
            uptime = float(handle.read().split()[0])  # seconds since boot, now
        started = time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED
    return min(started, _IMPORTED)


def stage_of(step: str) -> str:
    """The stage a transform's full label belongs to: `Ingest/Language/...` -> language,
    `WriteLake/Commit` -> commit, any other `WriteLake/...` -> write, `Progress/...` -> progress, the rest
    (counts, flattens) -> other."""
    parts = step.split("/")
    if parts[0] == "Ingest" and len(parts) > 1 and parts[1] in _INGEST:
        return _INGEST[parts[1]]
    if parts[0] == "WriteLake":
        return "commit" if len(parts) > 1 and parts[1] == "Commit" else "write"
    if parts[0] == "Progress":
        return "progress"
    return "other"


def stage_seconds(step_msecs: dict, workers: int = 1) -> dict:
    """{full transform label: milliseconds} -> {stage: seconds}, summed per stage and divided by `workers`
    (rounded to milliseconds; stages that took no time left out)."""
    totals: dict = {}
    for step, msecs in step_msecs.items():
        stage = stage_of(step)
        totals[stage] = totals.get(stage, 0) + msecs
    return {stage: round(ms / 1000 / max(workers, 1), 3) for stage, ms in totals.items() if ms > 0}


def _step_msecs(result) -> dict:
    """{transform label: execution milliseconds} that the run's runner reports; {} when it reports none."""
    monitoring = getattr(result, "monitoring_metrics", None)
    if monitoring is None:
        return {}
    try:
        counters = monitoring().query().get("counters", [])
    except Exception:  # noqa: BLE001 - timing is a report, never a reason to fail a finished run
        return {}
    msecs: dict = {}
    for counter in counters:
        if EXECUTION_TIME in counter.key.metric.name and counter.key.step:
            value = counter.committed if counter.committed is not None else counter.attempted
            msecs[counter.key.step] = msecs.get(counter.key.step, 0) + int(value or 0)
    return msecs


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have ended."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def run_timing(result, started: float, run_started: float, workers: int = 1, now: Optional[float] = None) -> dict:
    """The `timing` of a finished run: `started` is the process start, `run_started` the moment
    `pipeline.run()` was called (both epoch seconds), `workers` the local runner's worker processes."""
    now = time.time() if now is None else now
    stages = {STARTUP: round(max(run_started - started, 0.0), 3)}
    stages.update(stage_seconds(_step_msecs(result), workers))
    return {"wall_seconds": round(now - started, 3), "cpu_seconds": round(cpu_seconds(), 3), "stages": stages}
