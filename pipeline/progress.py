"""What a run shows while it works: its first line, live progress in phases, and streaming window lines.

Beam's local runner runs the whole pipeline inside `pipeline.run()` and publishes its metrics only at the
end, and in multi-processing mode the work happens in other processes. So the counts travel through a
small progress channel instead: a temporary folder where each counting DoFn instance (one per worker
thread or process) keeps one tiny JSON file with its running counts, rewritten at most every
`FLUSH_SECONDS` (atomic rename), never per element. The CLI polls the folder from a thread and redraws one
line on a terminal, or prints a plain line now and then (and at each phase change) when asked for progress
on a non-terminal. The line follows the run's phases (`PHASES`: read and clean, deduplicate, write,
commit), each with its own count, total and ETA, so that no phase shows 100% while another still runs;
documents and duplicates are shown once dedup emits them. Times count from the process's start.

Streaming runs print a line per committed window and a heartbeat when idle (`StreamLines`). The line
formats are pure functions (`progress_line`, `window_line`, `heartbeat_line`, `reading_line`...).

The counting DoFns are side branches that output nothing, so they never change what the pipeline writes;
they are added only when progress is shown (see `build_pipeline(progress_dir=...)`).
"""
from __future__ import annotations

import glob
import gzip
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from typing import Optional

import apache_beam as beam

from wirewash.pipeline.io import GZIP_MAGIC

__all__ = ["CountProgress", "read_counts", "estimate_records", "ProgressDisplay", "KINDS", "PHASES", "phase_of",
           "progress_line", "reading_line", "eta", "clock", "local_bytes", "window_line", "heartbeat_line",
           "watching_line", "start_line", "stream_file_counter", "StreamLines", "window_committed",
           "first_window_in"]

KINDS = ("read", "cleaned", "documents", "duplicates", "rejected")
PHASES = ("read and clean", "dedup", "write", "commit")
READ_CLEAN, DEDUP, WRITE, COMMIT, DONE = range(len(PHASES) + 1)
FLUSH_SECONDS = 0.5


class _CountFn(beam.DoFn):
    """Counts elements of one kind; rewrites this instance's file at most every FLUSH_SECONDS."""

    def __init__(self, folder: str, kind: str):
        self.folder = folder
        self.kind = kind

    def setup(self):
        self.path = os.path.join(self.folder, f"{self.kind}-{os.getpid()}-{uuid.uuid4().hex}.json")
        self.count = 0
        self.flushed = 0.0

    def process(self, element):
        self.count += 1
        now = time.monotonic()
        if now - self.flushed >= FLUSH_SECONDS:
            self._flush(now)
        return ()

    def finish_bundle(self):
        self._flush(time.monotonic())

    def _flush(self, now: float) -> None:
        self.flushed = now
        tmp = f"{self.path}.tmp"
        try:
            with open(tmp, "w") as handle:
                handle.write(json.dumps({"kind": self.kind, "count": self.count}))
            os.replace(tmp, self.path)
        except OSError:  # progress is best effort: the run itself must not fail for it
            pass


class CountProgress(beam.PTransform):
    """{kind: PCollection} -> nothing; each element counted into the progress folder under its kind."""

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def expand(self, pcolls):
        for kind, pcoll in sorted(pcolls.items()):
            _ = pcoll | f"Count_{kind}" >> beam.ParDo(_CountFn(self.folder, kind.split(":")[0]))
        return beam.pvalue.PDone(next(iter(pcolls.values())).pipeline)


def read_counts(folder: str) -> dict:
    """Sums the counts of every progress file in the folder: {kind: count} for each of KINDS."""
    totals = dict.fromkeys(KINDS, 0)
    for path in glob.glob(os.path.join(folder, "*.json")):
        try:
            with open(path) as handle:
                data = json.load(handle)
            totals[data["kind"]] = totals.get(data["kind"], 0) + int(data["count"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a file being replaced right now: next poll
    return totals


def estimate_records(paths: list) -> Optional[int]:
    """How many records the inputs hold: lines of (gzipped, by name or content) JSONL, one per other file. None when a path is
    not local (counting would mean reading remote data twice)."""
    total = 0
    for path in paths:
        if "://" in path:
            return None
        name = path.lower()
        if name.endswith(".jsonl") or name.endswith(".jsonl.gz"):
            lines, last = 0, b"\n"
            try:
                with open(path, "rb") as stored:
                    gzipped = name.endswith(".gz") or stored.read(len(GZIP_MAGIC)) == GZIP_MAGIC
                with (gzip.open if gzipped else open)(path, "rb") as handle:
                    while chunk := handle.read(1 << 20):
                        lines += chunk.count(b"\n")
                        last = chunk[-1:]
            except OSError:
                continue
            total += lines + (last != b"\n")
        else:
            total += 1
    return total


def clock(seconds: Optional[float]) -> str:
    """Seconds as m:ss (h:mm:ss past an hour, whole hours past 99); "?" when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    if hours > 99:
        return f"{hours}h"
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def num(n: int) -> str:
    """A count in at most 5 characters: exact below 100,000, then 123k, 1.2M, 12M, 1.2B..."""
    if n < 100_000:
        return str(n)
    for unit, scale in (("k", 1e3), ("M", 1e6), ("B", 1e9), ("T", 1e12)):
        value = n / scale
        if value < 999.5:
            return f"{value:.1f}{unit}" if value < 9.95 else f"{value:.0f}{unit}"
    return ">999T"


def size_text(n_bytes: Optional[int]) -> str:
    """Bytes as kB below 1 MB, MB (one decimal below 10), GB past 10,000 MB."""
    if n_bytes is None:
        return "? MB"
    mb = n_bytes / 1e6
    if mb < 1:
        return f"{max(n_bytes / 1e3, 1):.0f} kB" if n_bytes else "0 kB"
    if mb >= 10_000:
        return f"{mb / 1000:.0f} GB"
    return f"{mb:.1f} MB" if mb < 10 else f"{mb:.0f} MB"


def local_bytes(paths: list) -> Optional[int]:
    """Total size of local input files (os.stat, no Beam); None when a path is remote."""
    total = 0
    for path in paths:
        if "://" in path:
            return None
        try:
            total += os.stat(path).st_size
        except OSError:
            continue  # the reader says what is wrong with it
    return total


def reading_line(n_files: int, n_bytes: Optional[int]) -> str:
    """The first line of a batch run: what it is about to read."""
    size = f", {size_text(n_bytes)}" if n_bytes is not None else ""
    return f"wirewash: reading {n_files} file{'s' if n_files != 1 else ''}{size}"


def phase_of(counts: dict, total: Optional[int], committing: bool = False) -> int:
    """Which of PHASES a run is in, from its counts (`total`: the estimated records, None if unknown).

    Reading and cleaning is over when every record is counted through the per-record stages (cleaned,
    rejected or a copy of the lake) and the total is reached, or when dedup has emitted a document (it
    emits nothing before its whole input is grouped). Writing follows once every record read is out as a
    document, duplicate or rejection; `committing` is the commit's own signal."""
    if committing:
        return COMMIT
    read, out = counts["read"], counts["documents"] + counts["duplicates"] + counts["rejected"]
    through = counts["cleaned"] + counts["rejected"] + counts["duplicates"]
    done_reading = counts["documents"] > 0 or bool(total and read >= total and through >= read)
    if not done_reading:
        return READ_CLEAN
    return WRITE if out >= read else DEDUP


def eta(done: int, of: Optional[int], base: int, phase_elapsed: float) -> Optional[float]:
    """Seconds left in a phase at its rate so far (`base`: the count when the phase began); None when the
    end is unknown, or until 1% of the phase (and at least 2 records) moved, over at least 2 seconds."""
    if not of or done - base < max(2, (of - base) // 100) or phase_elapsed < 2:
        return None
    if done >= of:
        return 0.0
    return max((of - done) / ((done - base) / phase_elapsed), 1.0)  # work left: never under a second


def _eta_text(left: Optional[float]) -> str:
    """", ETA m:ss", rounded up: a phase with work left never shows 0:00."""
    return "" if left is None else f", ETA {clock(math.ceil(left))}"


def progress_bar(fraction: float, width: int = 12) -> str:
    filled = int(max(0.0, min(fraction, 1.0)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def phase_done(counts: dict, phase: int) -> int:
    """The count a phase's progress is measured by (see `progress_line`)."""
    if phase == READ_CLEAN:
        return min(counts["cleaned"] + counts["rejected"] + counts["duplicates"], counts["read"])
    return counts["documents"] + counts["duplicates"] + counts["rejected"]


def progress_line(counts: dict, total: Optional[int], phase: int, elapsed: float, phase_elapsed: float,
                  base: int = 0, bar: bool = False) -> str:
    """One progress line (under 100 columns, plus the `bar` of a live terminal line, which is clipped to
    the terminal; counts past 100,000 rounded, see `num`): time since the process started,
    the phase (n/4), its progress and ETA. Reading and cleaning counts records through the per-record
    stages against the estimated total, with the rejections so far (documents and duplicates are not known
    yet); deduplicating counts records out (documents + duplicates + rejected) against those read; writing
    and committing show the final counts. `base`: the phase's count when it began (its rate starts there)."""
    if phase >= DONE:
        return (f"wirewash {clock(elapsed)} [done] {num(counts['documents'])} documents, "
                f"{num(counts['duplicates'])} duplicates, {num(counts['rejected'])} rejected")
    head = f"wirewash {clock(elapsed)} [{phase + 1}/{len(PHASES)} {PHASES[phase]}]"
    done = phase_done(counts, phase)
    if phase == READ_CLEAN:
        of = total if total and total >= counts["read"] else None
        rate = (done - base) / phase_elapsed if phase_elapsed >= 1 else None
        left = eta(done, of, base, phase_elapsed)
        share = f" {progress_bar(done / of)}" if bar and of else ""
        amount = f"{num(done)}/{num(of)} records ({100 * done // of}%)" if of else f"{num(done)} records"
        return (f"{head}{share} {amount}, {num(counts['rejected'])} rejected"
                + (f", {num(max(round(rate), 0))}/s" if rate is not None else "")
                + _eta_text(left))
    kept = f"{num(counts['documents'])} docs, {num(counts['duplicates'])} dups, {num(counts['rejected'])} rejected"
    if phase == DEDUP:
        of = counts["read"]
        left = eta(done, of, base, phase_elapsed)
        share = f" {progress_bar(done / of)}" if bar and of else ""
        return f"{head}{share} {num(done)}/{num(of)}: {kept}" + _eta_text(left)
    if phase == WRITE:
        return f"{head} {kept}; merging files"
    return f"{head} {kept} into the lake"


# --- streaming -------------------------------------------------------------------------------------------

HEARTBEAT_SECONDS = 30.0  # a streaming run idle this long says it is still waiting


def first_window_in(now: float, window_seconds: float, poll_interval: float) -> float:
    """Seconds until the first window (fixed, aligned on the epoch) can close: its end, plus one poll."""
    return window_seconds - (now % window_seconds) + poll_interval


def watching_line(source: str, window_seconds: float, first_in: float) -> str:
    """The first line of a streaming run."""
    return (f"wirewash: watching {source}; windows of {window_seconds:g} s, the first closes in ~{first_in:.0f} s "
            "(Ctrl-C stops after committing the open windows)")


def _total(value) -> int:
    return sum(value.values()) if isinstance(value, dict) else int(value or 0)


def window_line(counts: dict, window_end: float, now: float) -> str:
    """One line per committed window pane (under 100 columns): its end (UTC, as the lake's times), its records, documents, duplicates and rejected,
    and the lag (how long after the window's end it was committed). `counts`: the pane's counts as the
    running summary gets them ({read: n, documents/duplicates/rejected: Counter of facts})."""
    end = time.strftime("%H:%M:%S", time.gmtime(window_end))
    return (f"wirewash: window to {end}Z: {num(_total(counts.get('read')))} records, "
            f"{num(_total(counts.get('documents')))} docs, {num(_total(counts.get('duplicates')))} dups, "
            f"{num(_total(counts.get('rejected')))} rejected; lag {clock(max(now - window_end, 0.0))}")


def heartbeat_line(elapsed: float, files: Optional[int], records: int) -> str:
    """What an idle stream says now and then: how much it has taken in so far (`files`: None for a message
    source)."""
    seen = f"{num(files)} file{'s' if files != 1 else ''}, " if files is not None else ""
    return f"wirewash {clock(elapsed)} waiting for input: {seen}{num(records)} records so far"


_STREAM_LINES = None  # the StreamLines of this process's running stream, when it prints


def window_committed(counts: dict, window_end: float) -> None:
    """Called by the streaming summary after each committed pane: prints its line when this process runs a
    stream that prints (`StreamLines`); nothing elsewhere (a remote worker, --quiet)."""
    lines = _STREAM_LINES
    if lines is not None:
        lines.window(counts, window_end)


class StreamLines:
    """While a local stream runs: a line per committed window (`window_committed`) and a heartbeat after
    `every` seconds without one. `count_files`: a callable giving the files seen so far (None for a message
    source). A context manager around the run."""

    def __init__(self, count_files=None, every: float = HEARTBEAT_SECONDS, stream=None,
                 started: Optional[float] = None):
        from wirewash.pipeline.timing import process_started

        self.count_files = count_files
        self.every = every
        self.stream = stream or sys.stderr
        self.started = process_started() if started is None else started
        self.records = 0
        self.last = time.time()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="wirewash-heartbeat", daemon=True)

    def window(self, counts: dict, window_end: float) -> None:
        now = time.time()
        with self._lock:
            self.records += _total(counts.get("read"))
            self.last = now
            print(window_line(counts, window_end, now), file=self.stream, flush=True)

    def _beat(self) -> None:
        while not self._stop.wait(min(self.every, 1.0)):
            now = time.time()
            with self._lock:
                if now - self.last < self.every:
                    continue
                self.last = now
                files = None
                if self.count_files is not None:
                    try:
                        files = self.count_files()
                    except Exception:  # noqa: BLE001 - a listing that fails now says nothing this time
                        files = None
                print(heartbeat_line(now - self.started, files, self.records), file=self.stream, flush=True)

    def __enter__(self):
        global _STREAM_LINES
        _STREAM_LINES = self
        self.last = time.time()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        global _STREAM_LINES
        _STREAM_LINES = None
        self._stop.set()
        self._thread.join(timeout=2)
        return False


def start_line(options, settings) -> str:
    """The first line of `wirewash run`, printed as soon as the inputs are known: what a batch run reads,
    or what a stream watches."""
    from apache_beam.options.pipeline_options import StandardOptions

    if options.view_as(StandardOptions).streaming:
        from wirewash.pipeline.options import WirewashOptions

        opts = options.view_as(WirewashOptions)
        return watching_line(" ".join(settings.inputs), opts.window_seconds,
                             first_window_in(time.time(), opts.window_seconds, opts.poll_interval))
    paths = [f.path for f in settings.files]
    line = reading_line(len(paths), local_bytes(paths))
    not_read = list(settings.not_read_inputs)
    if not_read:  # a second line: what the input folders held that is not read (a README, a .json export)
        from wirewash.pipeline.input_files import describe_not_read

        line += f"\nwirewash: {describe_not_read(not_read)}"
    return line


def stream_file_counter(options):
    """For a stream watching a local glob or folder: a callable counting the files there now; else None."""
    from wirewash.pipeline.options import WirewashOptions
    from wirewash.pipeline.sources import KIND_FILES, parse_source

    try:
        source = parse_source(options.view_as(WirewashOptions).input)
    except ValueError:
        return None
    if source.kind != KIND_FILES or "://" in source.location:
        return None
    return lambda: sum(1 for path in glob.iglob(source.location, recursive=True) if os.path.isfile(path))


class ProgressDisplay:
    """Owns the progress folder and the polling thread. `live`: one line redrawn in place (a terminal), else
    a plain line every `every` seconds and at each phase change, and the last counts at the end. Times count
    from `started` (epoch seconds; default: this process's start). `output`: the lake, whose commit claim
    (pipeline/lifetime.py) says the commit began. Use as a context manager around `pipeline.run()`."""

    def __init__(self, input_paths: list, live: bool, every: float = 5.0, stream=None, output: Optional[str] = None,
                 started: Optional[float] = None):
        from wirewash.pipeline.timing import process_started

        self.folder = tempfile.mkdtemp(prefix="wirewash-progress-")
        self.input_paths = list(input_paths)
        self.live = live
        self.every = 0.5 if live else every
        self.stream = stream or sys.stderr
        self.started = process_started() if started is None else started
        self.claim = None
        if output and "://" not in output:
            from wirewash.pipeline.lake import STAGING_DIR
            from wirewash.pipeline.lifetime import CLAIM
            self.claim = os.path.join(output, STAGING_DIR, CLAIM)
        self.total: Optional[int] = None
        self.phase, self.phase_started, self.phase_base = READ_CLEAN, time.time(), 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self):
        self.phase_started = time.time()
        # Counting the input's lines reads it once more: in a thread, so the run starts at once.
        counter = threading.Thread(target=self._estimate, name="wirewash-estimate", daemon=True)
        poller = threading.Thread(target=self._poll, name="wirewash-progress", daemon=True)
        self._threads = [counter, poller]
        for thread in self._threads:
            thread.start()
        return self

    def _estimate(self) -> None:
        self.total = estimate_records(self.input_paths)

    def line(self, bar: bool = False, done: bool = False) -> str:
        """The progress line for the counts in the folder now (moves to the next phase when they say so)."""
        counts = read_counts(self.folder)
        now = time.time()
        phase = DONE if done else max(self.phase, phase_of(counts, self.total,
                                                           bool(self.claim and os.path.isdir(self.claim))))
        if phase != self.phase:
            self.phase, self.phase_started, self.phase_base = phase, now, phase_done(counts, phase)
        return progress_line(counts, self.total, self.phase, now - self.started, now - self.phase_started,
                             self.phase_base, bar=bar)

    def _poll(self) -> None:
        last_print, last_phase = 0.0, None
        while not self._stop.wait(0.5):
            line = self.line(bar=self.live)
            if self.live:
                width = shutil.get_terminal_size((100, 20)).columns - 1
                self.stream.write("\r" + line[:width] + "\x1b[K")
                self.stream.flush()
            elif self.phase != last_phase or time.monotonic() - last_print >= self.every:
                print(line, file=self.stream, flush=True)
                last_print, last_phase = time.monotonic(), self.phase

    def discard(self) -> None:
        """Removes the progress folder of a run that never started."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def __exit__(self, exc_type, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        if self.live:
            self.stream.write("\r\x1b[K")  # the summary takes the line
            self.stream.flush()
        elif exc_type is None:  # the final counts, once the run is complete
            print(self.line(done=True), file=self.stream, flush=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        return False
