"""Streaming mode: unbounded sources, event-time windows, stateful dedup, windowed Parquet commits.

    wirewash run --streaming --input 'incoming/*.jsonl' --output lake/ [--window_seconds 60] ...

The rooms of a stream: its source, `--input` a glob or folder, pubsub://... or kafka://... (pipeline/sources.py,
the watched folder in pipeline/watch.py, Kafka in pipeline/kafka.py); the batch stages, unchanged, with
stateful dedup, first arrival wins, state kept `--dedup_retention` seconds (pipeline/ingest.py); the lake
written window by window with a running `_SUMMARY.json` (pipeline/windowed_lake.py); assembled by
pipeline/build.py like a batch run. This module runs it: until it ends or is drained (Ctrl-C / SIGTERM
locally, a runner drain on Dataflow/Flink), when every open window fires; then `finalize_lake` adds the rows
actually found in the committed files and the `reconciled` verdict.
"""
from __future__ import annotations

import logging
import os
import threading

import apache_beam as beam

from wirewash.pipeline.lake import DEFAULT_PARTITION_BY
from wirewash.pipeline.watch import drain_requested, request_drain, reset_drain
from wirewash.pipeline.windowed_lake import finalize_lake

__all__ = ["run_streaming"]

LOG = logging.getLogger(__name__)


def run_streaming(pipeline: beam.Pipeline, output: str, quiet: bool = False) -> dict:
    """Runs a streaming pipeline until it ends or is drained (SIGINT / SIGTERM -> `request_drain`), then
    finalizes the lake and returns the final summary. Signal handlers are restored afterwards. `quiet`
    (`--quiet`): no "draining" notice; an abort (a second signal) is still logged as an error."""
    import signal

    previous = {}

    def drain(signum, frame):
        if drain_requested():  # a second signal: stop now, without finishing the windows
            raise KeyboardInterrupt
        if not quiet:
            LOG.warning("wirewash: %s received: draining (finishing the open windows; again to abort)...",
                        signal.Signals(signum).name)
        request_drain()

    reset_drain()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, drain)
    try:
        result = pipeline.run(test_runner_api=False)  # keeps LocalWatch's live event source in place
        result.wait_until_finish()
    except KeyboardInterrupt:  # the second signal: the runner's threads are not waited for
        LOG.error("wirewash: aborted; the open windows were not committed (their files stay in %s)",
                  pipeline.wirewash_staging)
        logging.shutdown()
        os._exit(130)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return finalize_lake(output, pipeline.wirewash_staging,
                         getattr(pipeline, "wirewash_partition_by", DEFAULT_PARTITION_BY),
                         getattr(pipeline, "wirewash_run", None), getattr(pipeline, "wirewash_dedup", None))
