"""Beam's SDK worker for wirewash's local multi-process runs, without Beam's start-up noise on stderr.

`python -m wirewash.pipeline.worker` is what `resolve_runner` asks the FnApiRunner to start, once per worker process,
instead of `python -m apache_beam.runners.worker.sdk_worker_main`. Same worker; only its own stderr is
filtered: the import-time "apitools not found" and the start-up INFO/WARNING lines stay hidden, errors still
show. Everything the worker logs also reaches the launching process through Beam's logging service.

Started early (`--warm`): `resolve_runner` starts the worker processes as soon as it knows a run is
multi-process, before the pipeline's graph is built, so that their start-up (the interpreter, Beam's and
wirewash's imports: ~0.8 s on an idle core, more under load) runs while the launcher builds the graph. A
warm worker waits on a listening socket the launcher made; what the FnApiRunner starts is then a relay
(`--relay PATH`: a bare interpreter, no Beam import) that hands its environment (the control address, the
pipeline options, the worker id) to one warm worker, waits for it and exits with its status. A relay that
finds no warm worker runs the worker itself.

A worker never outlives its launcher (whose pid `resolve_runner` passes in WIREWASH_LAUNCHER_PID): it ends
itself once the launcher is gone, however the launcher ended (pipeline/lifetime.py). Ctrl-C, which a terminal
sends to the whole process group, is left to the launcher: it stops the run, ends the workers and reports the
interruption, once.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys

WARM_FD_ENV = "WIREWASH_WARM_FD"  # the launcher's listening socket, inherited by a warm worker
# What a warm worker imports while it waits: Beam's harness and the modules the run's DoFns come from.
PRELOAD = ("apache_beam.runners.worker.sdk_worker_main", "wirewash.pipeline.ingest", "wirewash.pipeline.lake_write",
           "trafilatura")


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


def _harness() -> None:
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


def main() -> None:
    _quiet_stderr()
    _follow_launcher()
    _harness()
    _exit_now()


def warm() -> None:
    """`--warm`: imports what a worker needs, takes one relay's connection from the inherited listening
    socket, runs the harness with the relay's environment, sends the relay its exit status."""
    _quiet_stderr()
    _follow_launcher()
    _prepare()
    listener = socket.socket(fileno=int(os.environ.pop(WARM_FD_ENV)))
    connection, _ = listener.accept()
    listener.close()
    with connection.makefile("rb") as incoming:
        os.environ.update(json.loads(incoming.readline()))
    status = 1
    try:
        _harness()
        status = 0
    finally:
        try:
            connection.sendall(b"%d\n" % status)
            connection.close()
        except OSError:
            pass
        if status == 0:
            _exit_now()


def _prepare() -> None:
    """What every worker's DoFns set up first, done while the launcher builds the graph: the imports, then
    langdetect's profiles and the packaged boilerplate rules (both cached per process; ~0.25 s and ~0.5 s of
    CPU). Best effort: whatever fails here fails again, properly reported, in the DoFn's own setup."""
    import importlib

    try:
        for module in PRELOAD:
            importlib.import_module(module)
        from wirewash.transforms.boilerplate import load_rules
        from wirewash.transforms.language import load_langdetect

        load_langdetect()
        load_rules()
    except Exception:  # noqa: BLE001 - see above
        pass


def relay(path: str) -> int:
    """`--relay PATH`: hands this process's environment to a warm worker listening at PATH and returns its
    exit status (1 if it vanished); with no warm worker there, runs the worker here (`main`)."""
    _follow_launcher()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
    except OSError:
        connection.close()
        main()
        return 0
    with connection:
        connection.sendall(json.dumps(dict(os.environ)).encode("utf-8") + b"\n")
        answer = connection.makefile("rb").readline().strip()
    return int(answer) if answer.isdigit() else 1


def _exit_now() -> None:
    """Ends the worker as soon as its harness has returned (every bundle finished, every DoFn torn down):
    ends its own child processes (the page subprocess, when a DoFn left one), flushes the logs, then
    `os._exit(0)`. The launcher closes its workers one after another, waiting for each process to exit; a
    normal interpreter exit first frees every object of the worker's heap and joins what is left, ~0.8 s a
    worker on an idle core and 1.6 s loaded (docs/performance.md, "Start-up and finish"), paid once per
    worker while the other core idles."""
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
    if sys.argv[1:2] == ["--warm"]:
        warm()
    elif sys.argv[1:2] == ["--relay"] and len(sys.argv) > 2:
        sys.exit(relay(sys.argv[2]))
    else:
        main()
