"""Process lifetime of a local run: no child outlives it, and Ctrl-C or SIGTERM stop it at once, in one line.

- `follow(pid)`, in a child process: a daemon thread ends the child (exit code 1, silently) as soon as process
  `pid` has ended, however it ended (SIGKILL included): it waits on a pidfd (Linux 5.3+), else polls twice a
  second. `pipeline.worker` follows the launcher whose pid it gets in `LAUNCHER_ENV`; every process forked
  by the launcher during a run (the extraction subprocess of `transforms/extract.py`'s page guard)
  follows it through an at-fork hook (`guard_forks`), and ignores SIGINT there: the launcher handles Ctrl-C.
  A parent-death signal (`prctl(PR_SET_PDEATHSIG)`) is not used: Linux sends it when the *thread* that
  forked the child ends, and Beam forks from its own pool threads, so it would kill healthy children.
- `StopOnSignals`, in the launcher, around a local batch run: the first SIGINT or SIGTERM claims the commit
  (`claim`); when the claim succeeds, nothing will be committed, so it kills the run's processes (every
  descendant but those that were there before the run, as an embedding program's own children, and theirs),
  removes the run's temporary folders, prints one line and exits 130 without waiting for Beam's threads.
  Processes are signalled one by one, each through a pidfd after checking its start time (a reused pid is
  left alone), never as a process group: an in-process run shares its caller's group.
  All of it is the state of one `StopOnSignals` (one command): the signal handlers it installed are given
  back when the command ends, so nothing of one call reaches the next; a signal that ended the command then
  goes on to the caller's own handler, if it installed one.
  When the commit already holds the claim, the commit (a second or so) is let finish and the command exits
  130 right after it, saying the lake is complete. A second signal exits 130 at once.
- `claim(staging_root)`: one `mkdir` that only the first caller wins; the commit (`pipeline.lake.commit`)
  and a stop both call it, so a run is either committed whole or not at all. Local paths only: for object
  stores it always says yes (a remote runner's job is not stopped by the launcher's Ctrl-C anyway).
"""
from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import threading
import time
from typing import Optional

__all__ = ["follow", "guard_forks", "claim", "descendants", "kill_descendants", "kill_process", "StopOnSignals",
           "LAUNCHER_ENV", "EXIT_INTERRUPTED", "CLAIM"]

LAUNCHER_ENV = "WIREWASH_LAUNCHER_PID"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, for SIGTERM too: one code for "stopped by the user"
EXIT_ORPHANED = 1
CLAIM = "_CLAIM"

_guarded_owner: Optional[int] = None  # the launcher's pid while forks are guarded
_guards = 0  # how many armed runs of this process want forks guarded (runs in several threads each count)
_guard_lock = threading.Lock()


def follow(pid: int, check_parent: bool = False) -> None:
    """Ends this process once process `pid` has ended (a daemon thread; returns at once). With
    `check_parent`, `pid` must also be this process's parent, which closes the race of a parent that died
    before the watch began."""

    def watch():
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            os._exit(EXIT_ORPHANED)
        except (AttributeError, OSError):  # no pidfd here: poll
            fd = None
        if check_parent and os.getppid() != pid:
            os._exit(EXIT_ORPHANED)
        if fd is not None:
            select.select([fd], [], [])
        else:
            while _exists(pid):
                time.sleep(0.5)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="wirewash-follow", daemon=True).start()


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _after_fork_in_child() -> None:
    owner = _guarded_owner
    if owner is None or os.getppid() != owner:  # not a direct child of a guarded launcher
        return
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the launcher handles it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the launcher's handler
    except ValueError:  # not the main thread of this interpreter: leave the handlers
        pass
    follow(owner, check_parent=True)


_hook_registered = False


def guard_forks(enabled: bool = True) -> None:
    """While enabled, every process this one forks ignores SIGINT and follows this process (`follow`). Calls
    nest: forks stay guarded until each `guard_forks(True)` has had its `guard_forks(False)`."""
    global _guarded_owner, _hook_registered, _guards
    with _guard_lock:
        if enabled and not _hook_registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _hook_registered = True
        _guards = _guards + 1 if enabled else max(_guards - 1, 0)
        _guarded_owner = os.getpid() if _guards else None


def claim(staging_root: str) -> bool:
    """True for the first caller per run (the commit, or a stop), False for the second."""
    if "://" in staging_root:
        return True
    os.makedirs(staging_root, exist_ok=True)
    try:
        os.mkdir(os.path.join(staging_root, CLAIM))
    except FileExistsError:
        return False
    return True


def _stat(pid) -> Optional[tuple[int, int]]:
    """(parent pid, start time in clock ticks after boot) of a living process, from /proc; None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:  # ended meanwhile, or no /proc
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # after "pid (comm) ": state, ppid, ... starttime (22nd)
    return int(fields[1]), int(fields[19])


def _descendants_with_start(pid: int, skip: frozenset = frozenset()) -> list[tuple[int, int]]:
    """(pid, start time) of every living descendant of `pid`, not looking below the processes in `skip`."""
    children: dict[int, list[tuple[int, int]]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if entry.isdigit():
            found = _stat(entry)
            if found is not None:
                children.setdefault(found[0], []).append((int(entry), found[1]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in skip:
                found.append(child)
                todo.append(child[0])
    return found


def descendants(pid: Optional[int] = None) -> list[int]:
    """Pids of every living descendant of `pid` (default: this process), read from /proc; [] elsewhere."""
    return [child for child, _ in _descendants_with_start(os.getpid() if pid is None else pid)]


def kill_process(pid: int, started: int, sig: int = signal.SIGKILL) -> bool:
    """Sends `sig` to process `pid` only if it is still the process that started at `started` (a pid freed and
    reused meanwhile is left alone): through a pidfd, which names one process for good, where there is one.
    Never a process group. True when sent."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # gone, or no pidfd here: the start time check alone
        fd = None
    try:
        found = _stat(pid)
        if found is None or found[1] != started:
            return False
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(pid, sig)
        return True
    except OSError:
        return False
    finally:
        if fd is not None:
            os.close(fd)


def kill_descendants(keep: frozenset = frozenset()) -> None:
    """SIGKILLs each descendant of this process but those in `keep` ((pid, start time) pairs: the processes that
    were there before the run, and everything below them), one by one (`kill_process`); they would end by
    `follow` anyway, within a second."""
    for pid, started in _descendants_with_start(os.getpid(), keep):
        kill_process(pid, started)


def _identity(path: Optional[str]):
    """(device, inode, mtime) of a local file, None when it is missing (or not local)."""
    if not path or "://" in path:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns


def _say(line: str) -> None:
    # os.write, not print: the signal may have landed inside a write to sys.stderr (print would raise
    # "reentrant call"), and no lock may be taken here
    prefix = "\n" if sys.stderr.isatty() else ""  # after a live progress bar
    try:
        os.write(2, f"{prefix}wirewash: {line}\n".encode("utf-8", "replace"))
    except OSError:
        pass


class StopOnSignals:
    """Context manager around `wirewash run`: SIGINT and SIGTERM end it with exit 130 and one line.

    Until `arm` (while the options are read and the pipeline is built) a signal is recorded in `requested`
    and raises KeyboardInterrupt, as Python's own SIGINT handler does; the command checks `requested` again
    before it starts the run, in case a library swallowed the KeyboardInterrupt. `arm(output, staging_root,
    cleanup)`, right before a local batch run starts, switches to the stop described in the module
    docstring: `staging_root` is the lake's `_staging` folder (the claim lives there), `cleanup` callables
    remove the run's temporary folders (they must not take locks). After the block, `interrupted` names the
    signal that arrived during the commit (the command then exits 130), or is None. `disarm` gives the
    signals back to Python's defaults (KeyboardInterrupt) for runners that are not local.
    """

    def __init__(self):
        self.output: Optional[str] = None
        self.staging_root: Optional[str] = None
        self.cleanup: tuple = ()
        self.summary: Optional[str] = None
        self._summary_before = None
        self.requested: Optional[str] = None
        self.interrupted: Optional[str] = None
        self._previous: dict = {}
        self._armed = False
        self._guarding = False
        self._stopping = False
        self._pid = os.getpid()
        self._others: frozenset = frozenset()  # (pid, start) of the processes that were there before the run

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # ignored on entry (`nohup`, `cmd &`): stays so
                    self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc):
        if self._guarding:
            guard_forks(False)
            self._guarding = False
        self._armed = False
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._pass_on()
        return False

    def _pass_on(self) -> None:
        """A signal that ended the command goes on, once the command is over, to the handler its caller had
        installed, if any (a program embedding `main` that shuts down on SIGTERM, a test harness): the
        command's exit 130 does not swallow it. Python's defaults (exit 130 is the whole answer) get nothing."""
        name = self.interrupted or self.requested
        if not name:
            return
        sig = signal.Signals[name]
        handler = self._previous.get(sig)
        if callable(handler) and handler is not signal.default_int_handler:
            signal.raise_signal(sig)

    def arm(self, output: str, staging_root: str, cleanup: tuple = (), summary: Optional[str] = None) -> None:
        """`summary`: the lake's summary file, written last by the commit (a new file: a new inode)."""
        self.output, self.staging_root, self.cleanup = output, staging_root, tuple(cleanup)
        self.summary, self._summary_before = summary, _identity(summary)
        # the children this process already had (an embedding program's own) are not the run's to end
        self._others = frozenset(_descendants_with_start(self._pid))
        self._armed = True
        if not self._guarding:
            guard_forks(True)
            self._guarding = True

    def disarm(self) -> None:
        for sig in self._previous:
            signal.signal(sig, signal.default_int_handler)

    def _on_signal(self, signum, frame):
        if os.getpid() != self._pid:  # a forked child that kept the launcher's handler: the launcher decides
            return
        name = signal.Signals(signum).name
        if not self._armed:
            self.requested = self.requested or name
            raise KeyboardInterrupt
        if self._stopping:  # a second signal: out now
            threading.excepthook = lambda args: None
            kill_descendants(self._others)
            _say(f"interrupted again ({name}): stopped during the commit; {self.output} may be incomplete "
                 "(wirewash query refuses it; rerun with --overwrite)" if self.interrupted else
                 f"interrupted ({name})")
            os._exit(EXIT_INTERRUPTED)
        self._stopping = True
        self.requested = name
        try:
            won = claim(self.staging_root)
        except OSError:  # cannot even write there: nothing can be committed either
            won = True
        if not won:  # the commit is under way: let it finish (a second signal aborts)
            self.interrupted = name
            return
        # Beam's threads see their workers die below and would print tracebacks before this process ends
        threading.excepthook = lambda args: None
        kill_descendants(self._others)
        for step in self.cleanup:
            try:
                step()
            except Exception:  # noqa: BLE001 (best effort: the next run clears what stays)
                pass
        if self.summary and _identity(self.summary) not in (None, self._summary_before):
            # the commit had already ended (and removed the staging folder, claim included): the lake is whole
            shutil.rmtree(self.staging_root, ignore_errors=True)
            _say(f"interrupted ({name}) after the commit: {self.output} is a complete lake")
            os._exit(EXIT_INTERRUPTED)
        self._remove_staged_files()
        _say(f"interrupted ({name}): stopped, nothing was committed to {self.output}")
        os._exit(EXIT_INTERRUPTED)

    def _remove_staged_files(self) -> None:
        """Everything in the staging folder but the claim, which must stay until this process is gone."""
        if "://" in self.staging_root:
            return
        try:
            entries = os.listdir(self.staging_root)
        except OSError:
            return
        for entry in entries:
            if entry != CLAIM:
                shutil.rmtree(os.path.join(self.staging_root, entry), ignore_errors=True)
