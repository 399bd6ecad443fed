"""One writer per lake: a run (batch, append, stream) or a compaction holds `LAKE/_WRITER.json` while it writes.

A stream writes its lake for hours; a batch append or a second stream started meanwhile would clear the
stream's `_staging/` folder and race its summary. So every writer first creates the lock file (exclusively on
a local disk: `O_EXCL`), naming itself: mode, run id, host, pid and the pid's start time. A second writer is
refused with one sentence naming the first. A lock whose holder is gone (same host, that process no longer
running: a killed run) is stale and taken over; so is one left by this very process (the CLI runs one run at
a time in a process; a failed in-process run may leave its lock). A lock from another host cannot be checked:
it is honoured, and the message says how to remove it. On object stores (`gs://`, `s3://`) the creation is
not atomic (a check, then a write): two writers starting within the same second can both pass.
"""
from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from wirewash.pipeline.lake import LakeExistsError, short_error

__all__ = ["LOCK_FILE", "LakeBusyError", "acquire", "release", "holder"]

LOCK_FILE = "_WRITER.json"


class LakeBusyError(LakeExistsError):
    """Another run (a stream, an append, a compaction) is writing this lake."""


def _started(pid: int) -> Optional[str]:
    """The start time of process `pid` (clock ticks since boot, from /proc), or None when it is not running."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()[19].decode()


def _me(mode: str, run_id: str) -> dict:
    return {"mode": mode, "run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
            "pid_started": _started(os.getpid()),
            "since": datetime.now(timezone.utc).replace(microsecond=0).isoformat()}


def _read(path: str) -> Optional[dict]:
    try:
        with FileSystems.open(path) as handle:
            found = json.loads(handle.read().decode("utf-8"))
        return found if isinstance(found, dict) else {}
    except Exception:  # gone meanwhile, or half written by a killed writer: treated as unreadable
        return None if not FileSystems.exists(path) else {}


def _alive(lock: dict) -> bool:
    """Whether the lock's holder may still be writing (a lock from another host: assumed so)."""
    if lock.get("host") != socket.gethostname():
        return True
    pid = lock.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False  # unreadable, or this process's own leftover (runs in one process are sequential)
    started = _started(pid)
    return started is not None and started == lock.get("pid_started")


def holder(output: str) -> Optional[dict]:
    """The lock of the writer currently writing `output`, or None (no lock, or a stale one)."""
    lock = _read(FileSystems.join(output, LOCK_FILE))
    return lock if lock is not None and _alive(lock) else None


def _busy(output: str, lock: dict) -> LakeBusyError:
    path = FileSystems.join(output, LOCK_FILE)
    who = (f"a {lock.get('mode', 'run')} (run {lock.get('run_id', '?')}, pid {lock.get('pid', '?')} on "
           f"{lock.get('host', '?')}, since {lock.get('since', '?')})")
    return LakeBusyError(f"{output} is being written by {who}: stop it first, or wait for it to end "
                         f"(if no run is writing it, remove {path})")


def _create_exclusive(path: str, data: bytes) -> bool:
    if "://" in path:  # object stores: no exclusive create
        if FileSystems.exists(path):
            return False
        with FileSystems.create(path) as handle:
            handle.write(data)
        return True
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return True


def acquire(output: str, mode: str, run_id: str) -> dict:
    """Takes the lake's writer lock for this run (creating the output folder when needed), or raises
    LakeBusyError naming the writer that holds it. A stale lock (its holder gone) is taken over."""
    output = output.rstrip("/") or output
    path = FileSystems.join(output, LOCK_FILE)
    mine = _me(mode, run_id)
    data = json.dumps(mine, indent=2).encode("utf-8")
    for _ in range(3):
        try:
            if "://" not in output:
                os.makedirs(output, exist_ok=True)
            if _create_exclusive(path, data):
                return mine
        except OSError as err:  # read-only, full, under a regular file, /proc...: as check_output_location says
            raise OSError(f"cannot write to the output folder {output}: {short_error(err)}") from err
        lock = _read(path)
        if lock is None:  # released meanwhile: try again
            continue
        if _alive(lock):
            raise _busy(output, lock)
        try:  # stale: its holder is gone
            FileSystems.delete([path])
        except Exception:  # another starting writer removed it first
            pass
    lock = _read(path) or {}
    raise _busy(output, lock)


def release(output: str, run_id: str) -> None:
    """Removes the lock when this run holds it (a lock taken over by another run is left alone)."""
    path = FileSystems.join(output.rstrip("/") or output, LOCK_FILE)
    lock = _read(path)
    if lock is not None and lock.get("run_id") == run_id:
        try:
            FileSystems.delete([path])
        except Exception:  # best effort: a lock left behind is stale once this process ends
            pass
