"""Beam's SDK worker for wirewash's local multi-process runs, without Beam's start-up noise on stderr.

`python -m wirewash.pipeline.worker` is what `resolve_runner` asks the FnApiRunner to start, once per worker process,
instead of `python -m apache_beam.runners.worker.sdk_worker_main`. Same worker; only its own stderr is
filtered: the import-time "apitools not found" and the start-up INFO/WARNING lines stay hidden, errors still
show. Everything the worker logs also reaches the launching process through Beam's logging service.

A worker never outlives its launcher (whose pid `resolve_runner` passes in WIREWASH_LAUNCHER_PID): it ends
itself once the launcher is gone, however the launcher ended (pipeline/lifetime.py). Ctrl-C, which a terminal
sends to the whole process group, is left to the launcher: it stops the run, ends the workers and reports the
interruption, once. Once Beam's harness has returned, the worker ends at once (`_exit_now`): the launcher
waits for each worker's exit in turn, and a normal interpreter exit spent most of a second freeing the heap.
"""
from __future__ import annotations

import logging
import os
import signal
import sys


def _quiet_stderr() -> None:
    # Before apache_beam is imported: its import calls logging.warning(), which would otherwise install a
    # stderr handler at WARNING on the root logger (logging.basicConfig).
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.ERROR)
    handler.setFormatter(logging.Formatter("%(levelname)s wirewash worker %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def _follow_launcher() -> None:
    from wirewash.pipeline.lifetime import LAUNCHER_ENV, _exists, follow

    launcher = os.environ.get(LAUNCHER_ENV, "")
    if not launcher.isdigit():
        return
    follow(int(launcher))

    def on_sigint(signum, frame):
        # A terminal's Ctrl-C reaches the whole group: ignored while the launcher lives (it stops the run and
        # this worker); Beam's harness also sends SIGINT to itself to end (terminate_sdk_harness): silently
        if not _exists(int(launcher)):
            os._exit(130)

    signal.signal(signal.SIGINT, on_sigint)


HEAP_PROFILE_ENV = "WIREWASH_WORKER_HEAP"  # a folder: each worker dumps tracemalloc snapshots there (bench only)
HEAP_PROFILE_SECONDS = 15.0


def _profile_heap(folder: str) -> None:
    """Measurement only (`bench/memory.py --worker_heap DIR`): traces this worker's Python allocations and
    dumps a tracemalloc snapshot to DIR/worker-PID-SEQ.snap every HEAP_PROFILE_SECONDS, with the time and RSS
    in DIR/worker-PID.log, so that snapshots taken through a stage can be compared (`bench/memory.py
    --heap_diff`). Slows the worker ~2x."""
    import threading
    import time
    import tracemalloc

    tracemalloc.start(6)
    started, pid = time.monotonic(), os.getpid()

    def loop():
        seq = 0
        while True:
            time.sleep(HEAP_PROFILE_SECONDS)
            snapshot = tracemalloc.take_snapshot()
            snapshot.dump(os.path.join(folder, f"worker-{pid}-{seq:03d}.snap"))
            with open(f"/proc/{pid}/statm") as statm:
                rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
            traced, _ = tracemalloc.get_traced_memory()
            with open(os.path.join(folder, f"worker-{pid}.log"), "a") as log:
                log.write(f"{seq} {time.monotonic() - started:.1f} rss={rss} traced={traced >> 20}\n")
            seq += 1

    threading.Thread(target=loop, daemon=True).start()


def main() -> None:
    _quiet_stderr()
    _follow_launcher()
    if os.environ.get(HEAP_PROFILE_ENV):
        _profile_heap(os.environ[HEAP_PROFILE_ENV])
    # Beam's imports with the cycle collector paused, their objects then frozen: it walked that growing heap
    # ~230 times during the imports (~0.05 s of CPU a worker), and every full collection of the run would walk
    # it again. A worker's own garbage is no concern: it ends with `os._exit`.
    from wirewash.transforms.heap import frozen_after

    with frozen_after():
        from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)
    _exit_now()


def _exit_now() -> None:
    """Ends the worker as soon as its harness has returned (every bundle finished, every DoFn torn down):
    ends its own child processes (the page subprocess, when a DoFn left one), flushes the logs, then
    `os._exit(0)`. The launcher closes its workers one after another, waiting for each process to exit; a
    normal interpreter exit first frees every object of the worker's heap and joins what is left, ~0.8 s a
    worker at load 3 and 1.6 s at load 9 (docs/performance.md, "Cores busy"), paid once per worker while
    the other core idles."""
    import multiprocessing

    for child in multiprocessing.active_children():
        child.kill()
        child.join(5)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


if __name__ == "__main__":
    main()
