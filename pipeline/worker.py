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


HEAP_PROFILE_ENV = "WIREWASH_WORKER_HEAP"  # a folder: each worker logs its memory there (bench only)
HEAP_TRACE_ENV = "WIREWASH_WORKER_TRACE"  # "1": and dumps tracemalloc snapshots there too
HEAP_PROFILE_SECONDS = 15.0


def _native_heap() -> str:
    """glibc's view of this process's malloc heap (`mallinfo2`: bytes in use, free inside the heap, in mmapped
    chunks; MB) and the bytes Arrow's pool holds (pyarrow's jemalloc: spill compression, Parquet writes)."""
    import ctypes
    import sys

    fields = ""
    try:
        class _Info(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                              "usmblks", "fsmblks", "uordblks", "fordblks",
                                                              "keepcost")]

        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Info
        info = libc.mallinfo2()
        fields = (f"malloc_used={info.uordblks >> 20} malloc_free={info.fordblks >> 20} "
                  f"malloc_mmap={info.hblkhd >> 20} ")
    except (OSError, AttributeError):
        pass
    if "pyarrow" in sys.modules:
        fields += f"arrow={sys.modules['pyarrow'].total_allocated_bytes() >> 20}"
    return fields


def _memory_line() -> str:
    """This process's memory now, one line: RSS, traced Python bytes (0 unless tracemalloc runs), the data
    channels' backlog (messages/MB) and the native heaps, MB."""
    import tracemalloc

    from wirewash.pipeline.beam_internals import data_channel_backlog

    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
    messages, size = data_channel_backlog()
    return (f"rss={rss} traced={tracemalloc.get_traced_memory()[0] >> 20} channel={messages}/{size >> 20}MB "
            f"{_native_heap()}{_writers_held()}")


def _writers_held() -> str:
    """What the lake writers of this process buffer now and at most since the last line (MB), once they run."""
    import sys

    module = sys.modules.get("wirewash.pipeline.lake_write")  # not imported for this: pyarrow, Beam's IO
    if module is None:
        return ""
    return f" writers={module.BUDGET.held >> 20}/{module.BUDGET.take_peak() >> 20}MB"


def _profile_heap(folder: str, trace: bool) -> None:
    """Measurement only (`bench/memory.py --worker_heap DIR [--trace]`): every HEAP_PROFILE_SECONDS, appends
    the time, RSS, traced Python bytes, the data channels' backlog and the native heaps (`_native_heap`) to
    DIR/worker-PID.log; with `trace`, traces the Python allocations (6 frames) and dumps a snapshot to
    DIR/worker-PID-SEQ.snap, to compare two (`bench/memory.py --heap_diff`). Tracing slows the worker ~2x."""
    import threading
    import time
    import tracemalloc

    from wirewash.pipeline.beam_internals import watch_data_channels

    watch_data_channels()  # before the harness makes its channels
    if trace:
        tracemalloc.start(6)
    started, pid = time.monotonic(), os.getpid()

    def loop():
        seq = 0
        while True:
            time.sleep(HEAP_PROFILE_SECONDS)
            if trace:
                tracemalloc.take_snapshot().dump(os.path.join(folder, f"worker-{pid}-{seq:03d}.snap"))
            with open(os.path.join(folder, f"worker-{pid}.log"), "a") as log:
                log.write(f"{seq} {time.monotonic() - started:.1f} {_memory_line()}\n")
            seq += 1

    threading.Thread(target=loop, daemon=True).start()


def main() -> None:
    _quiet_stderr()
    _follow_launcher()
    if os.environ.get(HEAP_PROFILE_ENV):
        _profile_heap(os.environ[HEAP_PROFILE_ENV], os.environ.get(HEAP_TRACE_ENV) == "1")
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
