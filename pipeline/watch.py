"""The watched folder: a glob or folder read as files settle in it, for as long as the stream runs.

A file is read when its size and modification time have stayed the same over two polls (so a file still being
copied is not read half-way), exactly the bytes listed; a file that grows after it was read has its new lines
read then, and any other change after the read is rejected by name (`changed_after_read`), never ignored
(`new_settled_files`). Two watchers emit the same ByteRange tuples: `WatchFiles`, a splittable DoFn that ticks
every `--poll_interval` (Dataflow, Flink, the FnApiRunner), and `LocalWatch`, a live TestStream for the local
DirectRunner, which cannot run unbounded splittable DoFns. `request_drain()` stops both.
"""
from __future__ import annotations

import logging
import os
import posixpath
import threading
import time
from typing import Any, Optional, Tuple

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms import window
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import Timestamp

from wirewash.pipeline.ingest import STREAM_NAMESPACE as NAMESPACE
from wirewash.pipeline.input_files import ByteRange, InputFile, format_of, glob_root, readable_name, to_wire
from wirewash.pipeline.io import rangeable_head

__all__ = ["WatchFiles", "LocalWatch", "new_settled_files", "request_drain", "reset_drain",
           "drain_requested", "REASON_CHANGED"]

LOG = logging.getLogger("wirewash.pipeline.streaming")  # the stream's messages keep one logger name
_FOREVER_TICKS = 1 << 62


_DRAIN = threading.Event()


def request_drain() -> None:
    """Stops the file watchers of this process: their ticks end, the watermark goes to the end of time, every
    open window fires and the pipeline finishes (in-process runners; on Dataflow/Flink use the runner's drain)."""
    _DRAIN.set()


def reset_drain() -> None:
    _DRAIN.clear()


def drain_requested() -> bool:
    return _DRAIN.is_set()


class _TickRestrictions(RestrictionProvider):
    def initial_restriction(self, element):
        return OffsetRange(0, _FOREVER_TICKS)

    def create_tracker(self, restriction):
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element, restriction):
        return 1

    def truncate(self, element, restriction):  # a runner drain stops the ticks at once
        return None


class _TickFn(beam.DoFn):
    """A splittable DoFn emitting the current time every `interval` seconds (as PeriodicImpulse does, and
    advancing the watermark with it) until `request_drain()` is called: then it ends its restriction, which
    sends the watermark to the end of time."""

    def __init__(self, interval: float):
        self.interval = interval

    @beam.DoFn.unbounded_per_element()
    def process(self, start, tracker=beam.DoFn.RestrictionParam(_TickRestrictions()),
                watermark=beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider())):
        index = tracker.current_restriction().start
        while True:
            if _DRAIN.is_set():
                tracker.try_claim(tracker.current_restriction().stop)  # claims past the end: done
                return
            due = start + self.interval * index
            if due > time.time():
                current = watermark.current_watermark()
                if current is None or Timestamp.of(due) > current:
                    watermark.set_watermark(Timestamp.of(due))
                tracker.defer_remainder(Timestamp.of(min(due, time.time() + self.interval)))
                return
            if not tracker.try_claim(index):
                return
            current = watermark.current_watermark()
            if current is None or Timestamp.of(due) > current:
                watermark.set_watermark(Timestamp.of(due))
            yield window.TimestampedValue(due, Timestamp.of(due))
            index += 1


def _list_files(tick, pattern: str):
    """One poll: ('watch', [(path, size, mtime)...]) for every supported file matching the pattern."""
    try:
        found = FileSystems.match([pattern])[0].metadata_list
    except Exception as err:  # a missing folder is an empty one; log once per poll
        LOG.warning("cannot list %s: %s", pattern, err)
        found = []
    # a path that is not UTF-8 travels as its bytes (`to_wire`): Beam's coders encode str as UTF-8
    listing = [(to_wire((m.path,))[0], m.size_in_bytes, getattr(m, "last_updated_in_seconds", 0.0) or 0.0)
               for m in sorted(found, key=lambda m: m.path) if format_of(m.path) is not None]
    yield "watch", listing


class _NewFilesFn(beam.DoFn):
    """('watch', listing) -> ByteRange tuples to read (`new_settled_files`)."""

    SEEN = ReadModifyWriteStateSpec("seen", PickleCoder())  # {path: (size, mtime, read size, read mtime)}

    def __init__(self, root: str):
        self.root = root

    def process(self, element, seen_state=beam.DoFn.StateParam(SEEN)):
        _, listing = element
        seen = seen_state.read() or {}
        before = dict(seen)
        for input_file in new_settled_files(listing, seen, self.root):
            Metrics.counter(NAMESPACE, "files").inc()
            yield input_file
        if seen != before:
            seen_state.write(seen)


class WatchFiles(beam.PTransform):
    """PBegin -> ByteRange tuples: every supported file matching `pattern`, once it settled, and the lines
    appended to it later (`new_settled_files`)."""

    def __init__(self, pattern: str, poll_interval: float = 2.0):
        super().__init__()
        self.pattern = pattern
        self.poll_interval = poll_interval

    def expand(self, pbegin):
        root = glob_root(self.pattern)
        return (
            pbegin
            | "Start" >> beam.Create([time.time()])
            | "Tick" >> beam.ParDo(_TickFn(self.poll_interval))
            | "List" >> beam.FlatMap(_list_files, self.pattern).with_output_types(Tuple[str, Any])
            | "NewFiles" >> beam.ParDo(_NewFilesFn(root))
        )


REASON_CHANGED = "changed_after_read"


def new_settled_files(listing, state: dict, root: str, peek=None) -> list:
    """One poll of the watcher: ByteRange tuples (their `file` as `pipeline.input_files.to_wire` made it) to read now.

    `listing` holds (path, size, mtime); `state` ({path: (size, mtime, read size, read mtime)}) is updated in
    place. A file is due when its size and mtime did not change since the previous poll and differ from what
    was read of it. Due for the first time: a plain UTF-8 JSONL file is read as the range [0, size) (exactly
    the bytes listed, even if it grows meanwhile), any other file whole. Due again (it changed after it was
    read): a plain JSONL file that grew from a line end has the new lines read as the range [read size, size)
    with their true line numbers; any other change (shrunk, rewritten, grown mid-line, a .gz, .txt or .html)
    is one `changed_after_read` rejection at `file@read size:0`, so it is never silent. `peek(path, offset,
    length)` reads bytes (default: through Beam's FileSystems)."""
    peek = peek or _peek
    ready = []
    for item in listing:
        path, size, mtime = (tuple(item) + (0.0,))[:3]
        path = os.fsdecode(path) if isinstance(path, bytes) else path
        seen = state.get(path)
        if seen is None or tuple(seen[:2]) != (size, mtime):  # new, or still changing
            state[path] = (size, mtime) + (tuple(seen[2:4]) if seen else (None, None))
            continue
        read_size, read_mtime = seen[2], seen[3]
        if (read_size, read_mtime) == (size, mtime):
            continue
        state[path] = (size, mtime, size, mtime)
        rel = readable_name(path[len(root):] if path.startswith(root) else posixpath.basename(path))
        input_file = InputFile(path, rel or readable_name(posixpath.basename(path)), format_of(path))
        ready.append(tuple(_next_read(input_file, read_size, size, peek)))
    return ready


def _rangeable(input_file: InputFile, peek) -> bool:
    """Plain (not compressed) JSONL that is not UTF-16: readable as line-aligned byte ranges."""
    return input_file.format == "jsonl" and not input_file.path.lower().endswith(".gz") and rangeable_head(
        peek(input_file.path, 0, 3))


def _next_read(input_file: InputFile, read_size: Optional[int], size: int, peek) -> ByteRange:
    wired = to_wire(input_file)
    try:
        if not read_size:  # never read, or read while it was empty: all of it now, as a first read
            return ByteRange(wired, 0, size, 1) if size and _rangeable(input_file, peek) else ByteRange(wired)
        if size > read_size and _rangeable(input_file, peek) and peek(input_file.path, read_size - 1, 1) == b"\n":
            first_line = 1 + sum(peek(input_file.path, offset, min(1 << 20, read_size - offset)).count(b"\n")
                                 for offset in range(0, read_size, 1 << 20))
            return ByteRange(wired, read_size, size, first_line)
    except Exception as err:  # noqa: BLE001 - unreadable now: the reader reports it by name
        LOG.warning("cannot look into %s: %s", input_file.rel_path, err)
        return ByteRange(wired)
    message = (f"{input_file.rel_path} changed after {read_size} bytes of it were read (now {size} bytes); "
               f"only lines appended after a line end are read")
    return ByteRange(to_wire(input_file._replace(rel_path=f"{input_file.rel_path}@{read_size}",
                                                 problem=(REASON_CHANGED, message))))


def _peek(path: str, offset: int, length: int) -> bytes:
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        handle.seek(offset)
        return handle.read(length)


class _LiveEvents:
    """TestStream events produced while the pipeline runs: each poll lists the pattern, emits the new
    settled files (timestamped now) and advances the watermark to now; ends at `request_drain()`.

    The DirectRunner cannot run unbounded splittable DoFns (it fails with "... was not replaced as
    expected"), and its TestStream reads its events lazily: so local streaming feeds a TestStream from
    this generator. TestStream adds its set-up and tear-down events with `+`, which this object keeps lazy.
    """

    def __init__(self, pattern: str, poll_interval: float, parts=None):
        self.pattern = pattern
        self.poll_interval = poll_interval
        self.parts = parts if parts is not None else [self]

    def __bool__(self):
        return True

    def __add__(self, other):
        return _LiveEvents(self.pattern, self.poll_interval, self.parts + [other])

    def __radd__(self, other):
        return _LiveEvents(self.pattern, self.poll_interval, [other] + self.parts)

    def __iter__(self):
        for part in self.parts:
            yield from (self._poll() if part is self else part)

    def _poll(self):
        from apache_beam.testing.test_stream import ElementEvent, WatermarkEvent

        state, root = {}, glob_root(self.pattern)
        while True:
            draining = _DRAIN.is_set()
            _, listing = next(_list_files(None, self.pattern))
            ready = new_settled_files(listing, state, root)
            now = time.time()
            if ready:
                Metrics.counter(NAMESPACE, "files").inc(len(ready))
                yield ElementEvent([window.TimestampedValue(f, now) for f in ready])
            yield WatermarkEvent(Timestamp.of(now))
            if draining:
                unread = sorted(readable_name(path) for path, seen in state.items() if seen[:2] != seen[2:4])
                if unread:
                    LOG.warning("wirewash: not read (still changing when the stream stopped): %s", unread)
                return
            deadline = now + self.poll_interval
            while time.time() < deadline and not _DRAIN.is_set():
                time.sleep(min(0.1, self.poll_interval))


class LocalWatch(beam.PTransform):
    """PBegin -> ByteRange tuples, as WatchFiles, for the local DirectRunner (a live TestStream). The pipeline
    must be run with `run(test_runner_api=False)`, which keeps the live event source in place."""

    def __init__(self, pattern: str, poll_interval: float = 2.0):
        super().__init__()
        self.pattern = pattern
        self.poll_interval = poll_interval

    def expand(self, pbegin):
        from wirewash.pipeline.beam_internals import live_test_stream

        return pbegin | "LiveFiles" >> live_test_stream(_LiveEvents(self.pattern, self.poll_interval), PickleCoder())
