"""Live progress of a local run: records read, documents, duplicates, rejected, rate and ETA.

Beam's local runner runs the whole pipeline inside `pipeline.run()` and publishes its metrics only at the
end, and in multi-processing mode the work happens in other processes. So the counts travel through a
small progress channel instead: a temporary folder where each counting DoFn instance (one per worker
thread or process) keeps one tiny JSON file with its running counts, rewritten at most every
`FLUSH_SECONDS` (atomic rename), never per element. The CLI polls the folder from a thread and draws a tqdm
bar on a terminal, or prints a plain line now and then when asked for progress on a non-terminal.

The counting DoFns are side branches that output nothing, so they never change what the pipeline writes;
they are added only when progress is shown (see `build_pipeline(progress_dir=...)`).
"""
from __future__ import annotations

import glob
import gzip
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from typing import Optional

import apache_beam as beam

__all__ = ["CountProgress", "read_counts", "estimate_records", "ProgressDisplay", "KINDS", "format_line",
           "phase_of"]

KINDS = ("read", "documents", "duplicates", "rejected")
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
    """How many records the inputs hold: lines of (gzipped) JSONL, one per other file. None when a path is
    not local (counting would mean reading remote data twice)."""
    total = 0
    for path in paths:
        if "://" in path:
            return None
        name = path.lower()
        if name.endswith(".jsonl") or name.endswith(".jsonl.gz"):
            opener = gzip.open if name.endswith(".gz") else open
            lines, last = 0, b"\n"
            try:
                with opener(path, "rb") as handle:
                    while chunk := handle.read(1 << 20):
                        lines += chunk.count(b"\n")
                        last = chunk[-1:]
            except OSError:
                continue
            total += lines + (last != b"\n")
        else:
            total += 1
    return total


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def phase_of(counts: dict, total: Optional[int]) -> str:
    """What the run is doing once every record went through the per-record stages: the dedup groups, which
    emit nothing until they are complete. (Documents and duplicates are counted as they are written.)"""
    written = counts["documents"] + counts["duplicates"]
    if total and counts["read"] >= total and written == 0:
        return "deduplicating; "
    return ""


def format_line(counts: dict, total: Optional[int], elapsed: float) -> str:
    """One plain progress line: counts, rate and ETA (from records read against the estimated total)."""
    read = counts["read"]
    rate = read / elapsed if elapsed > 0 else 0.0
    of = f"/{total}" if total else ""
    eta = (total - read) / rate if total and rate > 0 and read < total else (0.0 if total and read >= total else None)
    return (f"wirewash: {read}{of} records read, {counts['documents']} documents, {counts['duplicates']} "
            f"duplicates, {counts['rejected']} rejected, {rate:.0f} records/s, ETA {_duration(eta)}")


class ProgressDisplay:
    """Owns the progress folder and the polling thread. `live`: a tqdm bar (terminal), else plain lines every
    `every` seconds. Use as a context manager around `pipeline.run()`."""

    def __init__(self, input_paths: list, live: bool, every: float = 5.0, stream=None):
        self.folder = tempfile.mkdtemp(prefix="wirewash-progress-")
        self.input_paths = list(input_paths)
        self.live = live
        self.every = 0.5 if live else every
        self.stream = stream or sys.stderr
        self.total: Optional[int] = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self):
        self.started = time.monotonic()
        # Counting the input's lines reads it once more: in a thread, so the run starts at once.
        counter = threading.Thread(target=self._estimate, name="wirewash-estimate", daemon=True)
        poller = threading.Thread(target=self._poll, name="wirewash-progress", daemon=True)
        self._threads = [counter, poller]
        for thread in self._threads:
            thread.start()
        return self

    def _estimate(self) -> None:
        self.total = estimate_records(self.input_paths)

    def _poll(self) -> None:
        bar = None
        if self.live:
            from tqdm import tqdm
            bar = tqdm(total=None, unit=" rec", desc="wirewash", file=self.stream, dynamic_ncols=True,
                       leave=False, mininterval=0)
        try:
            while not self._stop.wait(self.every):
                counts = read_counts(self.folder)
                if bar is not None:
                    if self.total and bar.total != self.total:
                        bar.total = self.total
                    bar.n = counts["read"]
                    bar.set_postfix_str(phase_of(counts, self.total) + f"{counts['documents']} docs, "
                                        f"{counts['duplicates']} dups, {counts['rejected']} rejected", refresh=False)
                    bar.refresh()
                else:
                    print(format_line(counts, self.total, time.monotonic() - self.started), file=self.stream,
                          flush=True)
        finally:
            if bar is not None:
                bar.close()

    def discard(self) -> None:
        """Removes the progress folder of a run that never started."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def __exit__(self, exc_type, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        if not self.live and exc_type is None:  # the final counts, once the run is complete
            print(format_line(read_counts(self.folder), self.total, time.monotonic() - self.started),
                  file=self.stream, flush=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        return False
