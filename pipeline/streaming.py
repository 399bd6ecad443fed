"""Streaming mode: unbounded sources, event-time windows, stateful dedup, windowed Parquet commits.

    wirewash run --streaming --input 'incoming/*.jsonl' --output lake/ [--window_seconds 60] ...

Sources (`--input`):
- a glob or folder (local, gs://, s3://): watched every `--poll_interval` seconds; a file is read when its
  size and modification time have stayed the same over two polls (so a file still being copied is not read
  half-way), exactly the bytes listed; a file that grows after it was read has its new lines read then (a
  writer that paused longer than two polls), and any other change after the read is rejected by name
  (`changed_after_read`), never ignored (`new_settled_files`);
- `pubsub://projects/P/subscriptions/S`: one JSON article per message (Beam's ReadFromPubSub; Dataflow);
- `kafka://BROKER1,BROKER2/TOPIC`: one JSON article per record value (Beam's ReadFromKafka, a cross-language
  transform: needs Java, e.g. on Flink or Dataflow).
Messages are decoded by the batch JSONL parser into the same `Article` / `Rejection` records.

Event time is the article's `published` when it is valid and no older than `--allowed_lateness` before
arrival (and not in the future), else its arrival time; so nothing is ever dropped as too late. Records are
cleaned by the unchanged batch stages, deduplicated by `transforms/stateful_dedup.py` (first arrival wins,
state kept `--dedup_retention` seconds), then cut into `--window_seconds` fixed windows and written per
window into the batch lake layout. A late record (within the allowed lateness) fires a later pane of its
window, written as a new file: files are named by window, pane and shard, so none is ever overwritten.

The summary: each window pane adds its counts (records read, documents, duplicates, rejected, by stage)
to a running total kept in state, and `_SUMMARY.json` is replaced (atomically) after each pane; when the
stream stops (Ctrl-C / SIGTERM drain locally, a runner drain on Dataflow/Flink), every open window fires,
and `finalize_lake` adds the rows actually found in the committed files and the `reconciled` verdict.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any, NamedTuple, Optional, Tuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.coders import PickleCoder
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.options.value_provider import StaticValueProvider
from apache_beam.transforms import trigger, window
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import Timestamp

from wirewash.pipeline.ingest import READ, IngestArticles
from wirewash.pipeline.io import (REASON_TOO_LARGE, ByteRange, InputFile, _reject, format_of, from_wire, parse_file,
                         parse_json_record, readable_name, stable_id, tally_fact, to_wire)
from wirewash.pipeline.lake import (DEFAULT_PARTITION_BY, DOCUMENTS, DUPLICATES, REJECTED, SCHEMAS, STAGING_DIR, STAGING_MARKER,
                           SUMMARY_FILE, INDEX, TABLES, _dedup_settings, _fact_of, _lake_files, _relative,
                           _write_marker, manifest_files, partition_of, remove_lake, row_of, summarize, unread_input,
                           write_parquet)
from wirewash.pipeline.runners import use_local_streaming_runner
from wirewash.transforms.dedup import DedupConfig
from wirewash.transforms.lake_dedup import index_row
from wirewash.transforms.types import Rejection

__all__ = ["StreamSource", "parse_source", "event_time", "decode_message", "WatchFiles", "ReadStream",
           "WriteWindowedLake", "build_streaming_pipeline", "request_drain",
           "finalize_lake", "run_streaming", "KIND_FILES", "KIND_PUBSUB", "KIND_KAFKA"]

LOG = logging.getLogger(__name__)
NAMESPACE = "stream"
KIND_FILES, KIND_PUBSUB, KIND_KAFKA = "files", "pubsub", "kafka"
_FOREVER_TICKS = 1 << 62


# ---------------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------------

class StreamSource(NamedTuple):
    """Where a stream comes from: `files` (a glob), `pubsub` (a subscription path), `kafka` (brokers, topic)."""

    kind: str
    location: str
    topic: Optional[str] = None


_PUBSUB = re.compile(r"^pubsub://(projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/subscriptions/[A-Za-z][\w.~+%-]{2,254})$")
_KAFKA = re.compile(r"^kafka://([A-Za-z0-9.\-]+:\d{1,5}(,[A-Za-z0-9.\-]+:\d{1,5})*)/([A-Za-z0-9._-]{1,249})$")


def parse_source(inputs) -> StreamSource:
    """The one `--input` of a streaming run -> StreamSource; ValueError with one sentence when it is not usable."""
    inputs = list(inputs or [])
    if len(inputs) != 1:
        raise ValueError(f"--streaming takes exactly one --input (a glob or folder, pubsub://... or kafka://...), "
                         f"got {len(inputs)}")
    value = inputs[0].strip()
    if value.startswith("pubsub://"):
        match = _PUBSUB.match(value)
        if not match:
            raise ValueError(f"--input {value!r}: expected pubsub://projects/PROJECT/subscriptions/SUBSCRIPTION")
        return StreamSource(KIND_PUBSUB, match.group(1))
    if value.startswith("kafka://"):
        match = _KAFKA.match(value)
        if not match:
            raise ValueError(f"--input {value!r}: expected kafka://HOST:PORT[,HOST:PORT...]/TOPIC")
        return StreamSource(KIND_KAFKA, match.group(1), match.group(3))
    if "://" in value and not value.startswith(("gs://", "s3://", "file://")):
        raise ValueError(f"--input {value!r}: streaming reads a glob or folder (local, gs://, s3://), "
                         "pubsub://... or kafka://...")
    return StreamSource(KIND_FILES, watch_pattern(value))


def watch_pattern(value: str) -> str:
    """A folder means every file below it; a glob is taken as given."""
    if any(ch in value for ch in "*?["):
        return value
    return value.rstrip("/") + "/**"


def glob_root(pattern: str) -> str:
    """The folder before the first wildcard: relative paths (shown in source_location) start there."""
    head = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return head if head.endswith("/") else posixpath.dirname(head) + "/"


def event_time(published_at: Optional[str], arrival: float, allowed_lateness: float) -> float:
    """Seconds since the epoch: `published_at` when it lies in [arrival - allowed_lateness, arrival], else the
    arrival time. Older dates would land behind the watermark beyond the allowed lateness (and be dropped by
    the windowing); future dates would hold windows open. Both keep their date in the row either way."""
    if published_at:
        try:
            published = datetime.fromisoformat(published_at).timestamp()
        except ValueError:
            return arrival
        if arrival - allowed_lateness <= published <= arrival:
            return published
    return arrival


def decode_message(payload: bytes, source: str, message_id: str, max_record_bytes: Optional[int] = None):
    """One Pub/Sub message or Kafka record value (a JSON article, as one JSONL line) -> Article or Rejection.

    `source_location` is `source/message_id`; an article without an id gets a stable one from its URL, else
    from the message id, as batch does for JSONL lines. A payload over `max_record_bytes` is `too_large`.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    location = f"{source}/{message_id}"
    if max_record_bytes is not None and len(payload or b"") > max_record_bytes:
        return _reject(location, REASON_TOO_LARGE, bytes(payload[:200]),
                       error=f"message longer than {max_record_bytes} bytes")
    return parse_json_record(bytes(payload or b"").rstrip(b"\r\n"), location, ("message", source, message_id))


def file_name(window_start: float, window_end: float, pane: int, shard: int, shards: int) -> str:
    """`part-<start>-<end>-p<pane>-<shard>-of-<shards>.parquet`: unique per window, pane and shard."""
    fmt = "%Y%m%dT%H%M%SZ"
    start = datetime.fromtimestamp(window_start, timezone.utc).strftime(fmt)
    end = datetime.fromtimestamp(window_end, timezone.utc).strftime(fmt)
    return f"part-{start}-{end}-p{pane:04d}-{shard:03d}-of-{shards:03d}.parquet"


def destination_of(table: str, element, partition_by: str = DEFAULT_PARTITION_BY) -> str:
    """The lake folder of one output record (documents are hive-partitioned, the other tables are not)."""
    return posixpath.join(DOCUMENTS, partition_of(element, partition_by)) if table == DOCUMENTS else table


def merge_counts(total: dict, delta: dict) -> dict:
    """Adds one pane's counts (`read` plus the three tables' fact Counters) to a running total."""
    merged = {READ: total.get(READ, 0) + delta.get(READ, 0)}
    for table in TABLES:
        merged[table] = Counter(total.get(table, Counter())) + Counter(delta.get(table, Counter()))
    return merged


# ---------------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------------

_DRAIN = threading.Event()


def request_drain() -> None:
    """Stops the file watchers of this process: their ticks end, the watermark goes to the end of time, every
    open window fires and the pipeline finishes (in-process runners; on Dataflow/Flink use the runner's drain)."""
    _DRAIN.set()


def reset_drain() -> None:
    _DRAIN.clear()


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
REASON_NOT_READ_WHOLE = "not_read_whole"


def new_settled_files(listing, state: dict, root: str, peek=None) -> list:
    """One poll of the watcher: ByteRange tuples (their `file` as `pipeline.io.to_wire` made it) to read now.

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
    return input_file.format == "jsonl" and not input_file.path.lower().endswith(".gz") and peek(
        input_file.path, 0, 2) not in (b"\xff\xfe", b"\xfe\xff")


def _next_read(input_file: InputFile, read_size: Optional[int], size: int, peek) -> ByteRange:
    wired = to_wire(input_file)
    try:
        if read_size is None:
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
        from apache_beam.testing.test_stream import TestStream

        stream = TestStream(coder=PickleCoder())
        stream._events = _LiveEvents(self.pattern, self.poll_interval)
        return pbegin | "LiveFiles" >> stream


class _ReadTimestampedFn(beam.DoFn):
    """A file -> its records, each stamped with its event time; rejections on `rejected` (arrival time)."""

    def __init__(self, max_record_bytes: int, allowed_lateness: float):
        self.max_record_bytes = max_record_bytes
        self.allowed_lateness = allowed_lateness

    def process(self, element):
        arrival = time.time()
        span = ByteRange(*element)
        input_file, tallies, emitted = from_wire(span.file), [], 0
        for parsed in parse_file(input_file, self.max_record_bytes, span=span if span.end is not None else None,
                                 on_tally=tallies.append):
            emitted += 1
            yield _stamp(parsed, arrival, self.allowed_lateness)
        for problem in unread_input([tally_fact(t, emitted) for t in tallies]):
            # the bytes listed were not all read (the file shrank or vanished meanwhile): said, by name
            LOG.error("wirewash: %s", problem)
            yield _stamp(Rejection(None, f"{tallies[0].location}:0", "read", REASON_NOT_READ_WHOLE, "", problem),
                         arrival, self.allowed_lateness)


def _stamp(parsed, arrival: float, allowed_lateness: float):
    Metrics.counter(NAMESPACE, "records").inc()
    if isinstance(parsed, Rejection):
        return beam.pvalue.TaggedOutput(REJECTED, window.TimestampedValue(parsed, arrival))
    return window.TimestampedValue(parsed, event_time(parsed.published_at, arrival, allowed_lateness))


class _DecodeMessageFn(beam.DoFn):
    """Pub/Sub messages or Kafka records -> timestamped Article / Rejection (arrival = the message's own time)."""

    def __init__(self, source: str, allowed_lateness: float, max_record_bytes: Optional[int] = None):
        self.source = source
        self.allowed_lateness = allowed_lateness
        self.max_record_bytes = max_record_bytes

    def process(self, message, timestamp=beam.DoFn.TimestampParam):
        payload, message_id = message_parts(message)
        arrival = float(timestamp) if timestamp > Timestamp(0) else time.time()
        yield _stamp(decode_message(payload, self.source, message_id or stable_id("payload", repr(payload)),
                                    self.max_record_bytes), arrival, self.allowed_lateness)


def message_parts(message) -> tuple[bytes, Optional[str]]:
    """(payload, message id) of a PubsubMessage, a Kafka metadata Row, a (key, value) pair or raw bytes."""
    if hasattr(message, "data") and hasattr(message, "message_id"):  # PubsubMessage
        return message.data, message.message_id
    if hasattr(message, "value") and hasattr(message, "offset"):  # ReadFromKafka(with_metadata=True)
        return message.value, f"{getattr(message, 'partition', 0)}:{message.offset}"
    if isinstance(message, tuple) and len(message) == 2:
        return message[1], None
    return message, None


def kafka_read(brokers: str, topic: str, options) -> beam.PTransform:
    """Beam's ReadFromKafka (a Java transform, expanded by `--kafka_expansion_service` when given): records with
    their partition and offset, from the earliest offset the consumer group has not committed; offsets are
    committed when the runner finalizes a checkpoint (Flink: `--checkpointing_interval`)."""
    from apache_beam.io.kafka import ReadFromKafka  # cross-language: needs Java

    from wirewash.pipeline.options import WirewashOptions

    opts = options.view_as(WirewashOptions)
    return ReadFromKafka(
        consumer_config={"bootstrap.servers": brokers, "group.id": opts.kafka_group_id,
                         "auto.offset.reset": "earliest", "enable.auto.commit": "true",
                         "auto.commit.interval.ms": "1000"},
        topics=[topic], with_metadata=True, commit_offset_in_finalize=False,
        expansion_service=opts.kafka_expansion_service or None)


class ReadStream(beam.PTransform):
    """PBegin -> {`articles`, `rejected`}, unbounded, each record stamped with its event time."""

    def __init__(self, source: StreamSource, max_record_bytes: int, allowed_lateness: float,
                 poll_interval: float = 2.0, local: bool = False):
        super().__init__()
        self.source = source
        self.max_record_bytes = max_record_bytes
        self.allowed_lateness = allowed_lateness
        self.poll_interval = poll_interval
        self.local = local

    def expand(self, pbegin):
        kind, location, topic = self.source
        if kind == KIND_FILES:
            watch = LocalWatch if self.local else WatchFiles
            parsed = (pbegin | "Watch" >> watch(location, self.poll_interval)
                      | "ReadFiles" >> beam.ParDo(_ReadTimestampedFn(self.max_record_bytes, self.allowed_lateness))
                      .with_outputs(REJECTED, main="articles"))
        else:
            if kind == KIND_PUBSUB:
                from apache_beam.io.gcp.pubsub import ReadFromPubSub  # needs apache-beam[gcp]
                messages = pbegin | "ReadPubSub" >> ReadFromPubSub(subscription=location, with_attributes=True)
                name = "pubsub:" + location.rsplit("/", 1)[-1]
            else:
                messages = pbegin | "ReadKafka" >> kafka_read(location, topic, pbegin.pipeline.options)
                name = f"kafka:{topic}"
            parsed = messages | "Decode" >> beam.ParDo(_DecodeMessageFn(name, self.allowed_lateness,
                                                                       self.max_record_bytes)).with_outputs(
                REJECTED, main="articles")
        return {"articles": parsed["articles"], REJECTED: parsed[REJECTED]}


# ---------------------------------------------------------------------------------------------------------
# Ingest (batch stages unchanged + stateful dedup) and windowed lake writing
# ---------------------------------------------------------------------------------------------------------

def windowing(window_seconds: float, allowed_lateness: float) -> beam.WindowInto:
    """Fixed event-time windows; on time when the watermark passes, then one pane per late batch."""
    return beam.WindowInto(window.FixedWindows(window_seconds),
                           trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                           accumulation_mode=trigger.AccumulationMode.DISCARDING,
                           allowed_lateness=allowed_lateness)


class _ParquetBatchSink(fileio.FileSink):
    """A FileSink of row batches (lists of dicts) for one table: one Parquet file (zstd) per open()."""

    def __init__(self, table: str):
        self.table = table

    def open(self, fh):
        self._fh, self._rows = fh, []

    def write(self, batch):
        self._rows.extend(batch[1])

    def flush(self):
        if self._rows:
            write_parquet(self.table, pa.Table.from_pylist(self._rows, schema=SCHEMAS[self.table]), self._fh)
            self._rows = []


class _PaneBatchFn(beam.DoFn):
    """(destination, rows) grouped per window pane -> ('destination#pane', rows). WriteToFiles names files by
    destination and window only, so the pane index travels in the destination (late panes get new names).
    Creates the final folder first: without it the final rename of a nested name fails silently."""

    def __init__(self, output: str):
        self.output = output

    def setup(self):
        self._made = set()

    def process(self, element, pane=beam.DoFn.PaneInfoParam):
        destination, rows = element
        rows = list(rows)
        if destination not in self._made:
            folder = FileSystems.join(self.output, destination)
            if not FileSystems.exists(folder):
                try:
                    FileSystems.mkdirs(folder)
                except IOError:  # created meanwhile by another worker
                    pass
            self._made.add(destination)
        Metrics.counter(NAMESPACE, f"{destination.split('/')[0]}_rows").inc(len(rows))
        yield f"{destination}#{pane.index}", rows


def _final_name(win, pane, shard_index, total_shards, compression, destination):
    folder, _, pane_index = destination.rpartition("#")
    start, end = (float(win.start), float(win.end)) if hasattr(win, "start") else (0.0, 0.0)
    return posixpath.join(folder, file_name(start, end, int(pane_index), shard_index, total_shards))


def _table_of(destination: str) -> str:
    return destination.split("/", 1)[0].split("#", 1)[0]


class _WindowCountsFn(beam.CombineFn):
    """Per-record facts of one window pane -> {read: n, documents/duplicates/rejected: Counter of facts}."""

    def create_accumulator(self):
        return {READ: 0, **{t: Counter() for t in TABLES}}

    def add_input(self, acc, fact):
        if fact[0] == READ:
            acc[READ] += 1
        else:
            acc[fact[0]][fact[1]] += 1
        return acc

    def merge_accumulators(self, accs):
        merged = self.create_accumulator()
        for acc in accs:
            merged = merge_counts(merged, acc)
        return merged

    def extract_output(self, acc):
        return acc


class _RunningSummaryFn(beam.DoFn):
    """Adds each pane's counts to a running total (state) and atomically replaces `_SUMMARY.json`."""

    TOTAL = ReadModifyWriteStateSpec("total", PickleCoder())

    def __init__(self, output: str, staging: str, partition_by: str = DEFAULT_PARTITION_BY):
        self.output = output
        self.staging = staging
        self.partition_by = partition_by

    def process(self, element, total_state=beam.DoFn.StateParam(TOTAL)):
        _, (counts, window_end) = element
        total = total_state.read() or {"counts": {}, "panes": 0, "last_window_end": None}
        total = {"counts": merge_counts(total["counts"], counts), "panes": total["panes"] + 1,
                 "last_window_end": max(window_end, total["last_window_end"] or window_end)}
        total_state.write(total)
        summary = with_layout(streaming_summary(total), self.output, self.partition_by)
        write_json_atomically(self.output, self.staging, summary)
        yield summary


def streaming_summary(total: dict) -> dict:
    counts = total["counts"]
    summary = summarize(counts.get(READ, 0), counts.get(DOCUMENTS, Counter()), counts.get(DUPLICATES, Counter()),
                        counts.get(REJECTED, Counter()))
    summary["streaming"] = {
        "panes": total["panes"],
        "last_window_end": datetime.fromtimestamp(total["last_window_end"], timezone.utc).isoformat()
        if total["last_window_end"] is not None else None,
        "final": False,
    }
    return summary


def with_layout(summary: dict, output: str, partition_by: str) -> dict:
    """The lake-format fields of a streaming summary: `layout` and the `files` manifest, listed from the
    committed files (each renamed into place whole by the file sink, so every file listed is whole)."""
    summary["layout"] = {"partition_by": partition_by, "format": 2}
    summary["files"] = manifest_files(output)
    return summary


def write_json_atomically(output: str, staging: str, summary: dict) -> None:
    """Writes `_SUMMARY.json` through a temporary file in the staging folder and a rename: readers see the old
    or the new summary, never half of one."""
    if not FileSystems.exists(staging):
        FileSystems.mkdirs(staging)
    tmp = FileSystems.join(staging, f"{SUMMARY_FILE}.{uuid.uuid4().hex}")
    with FileSystems.create(tmp) as handle:
        handle.write(json.dumps(summary, indent=2).encode("utf-8"))
    FileSystems.rename([tmp], [FileSystems.join(output, SUMMARY_FILE)])


def _with_window_end(counts, win=beam.DoFn.WindowParam):
    return "summary", (counts, float(win.end))


class WriteWindowedLake(beam.PTransform):
    """{documents, duplicates, rejected, read} (timestamped) -> windowed Parquet files in the lake layout and a
    running `_SUMMARY.json`. Returns the PCollection of running summaries (one per window pane)."""

    def __init__(self, output: str, staging: str, window_seconds: float, allowed_lateness: float,
                 partition_by: str = DEFAULT_PARTITION_BY, dedup: Optional[DedupConfig] = None):
        super().__init__()
        self.dedup = dedup  # given: the documents' dedup index is written too (`_index/`, per window)
        self.output = output.rstrip("/") or output
        self.staging = staging
        self.window_seconds = window_seconds
        self.allowed_lateness = allowed_lateness
        self.partition_by = partition_by

    def expand(self, inputs):
        output, partition_by = self.output, self.partition_by
        facts = [inputs[READ] | "FactRead" >> beam.Map(lambda _: (READ, None))]
        batches = []
        for table in TABLES:
            windowed = inputs[table] | f"Window{table.title()}" >> windowing(self.window_seconds,
                                                                             self.allowed_lateness)
            facts.append(windowed | f"Facts{table.title()}" >> beam.Map(_fact_of(table)))
            batches.append(
                windowed
                | f"Rows{table.title()}" >> beam.Map(
                    lambda e, t=table: (destination_of(t, e, partition_by), row_of(t, e, datetime.now(timezone.utc))))
                .with_output_types(Tuple[str, Any])
                | f"Group{table.title()}" >> beam.GroupByKey()
                | f"Pane{table.title()}" >> beam.ParDo(_PaneBatchFn(output)))
            if table == DOCUMENTS and self.dedup is not None:  # what a later batch --append dedups against
                batches.append(
                    windowed
                    | "RowsIndex" >> beam.Map(lambda e, config=self.dedup: (INDEX, index_row(e, config)))
                    .with_output_types(Tuple[str, Any])
                    | "GroupIndex" >> beam.GroupByKey()
                    | "PaneIndex" >> beam.ParDo(_PaneBatchFn(output)))
        _ = (
            batches
            | "AllBatches" >> beam.Flatten()
            | "WriteFiles" >> fileio.WriteToFiles(
                path=output, destination=lambda batch: batch[0],
                sink=lambda destination: _ParquetBatchSink(_table_of(destination)),
                file_naming=_final_name,
                temp_directory=StaticValueProvider(str, FileSystems.join(self.staging, "files")))
        )
        facts[0] = facts[0] | "WindowRead" >> windowing(self.window_seconds, self.allowed_lateness)
        return (
            facts
            | "AllFacts" >> beam.Flatten()
            | "CountPerWindow" >> beam.CombineGlobally(_WindowCountsFn()).without_defaults()
            | "WithWindowEnd" >> beam.Map(_with_window_end).with_output_types(Tuple[str, Any])
            | "Rewindow" >> beam.WindowInto(window.GlobalWindows())
            | "RunningSummary" >> beam.ParDo(_RunningSummaryFn(output, self.staging, partition_by))
        )


# ---------------------------------------------------------------------------------------------------------
# Assembly, drain and the final summary
# ---------------------------------------------------------------------------------------------------------

def staging_of(output: str, run_id: str) -> str:
    return FileSystems.join(output.rstrip("/") or output, STAGING_DIR, run_id)


def build_streaming_pipeline(options, settings, run_id: Optional[str] = None) -> beam.Pipeline:
    """The streaming pipeline for these RunSettings (`settings.stream` set), ready to `run()`."""
    stream = settings.stream
    if settings.overwrite:
        remove_lake(settings.output)  # only what a wirewash lake holds (check_output_location refused others)
    local = use_local_streaming_runner(options)
    pipeline = beam.Pipeline(options=options)
    staging = staging_of(settings.output, run_id or uuid.uuid4().hex)
    pipeline.wirewash_staging = staging  # read back by run_streaming
    pipeline.wirewash_partition_by = settings.partition_by
    pipeline.wirewash_dedup = settings.dedup
    from wirewash.pipeline.build import run_record
    pipeline.wirewash_run = dict(run_record(settings), mode="streaming", run_id=posixpath.basename(staging))
    _write_marker(settings.output, staging)  # files land as windows close: the folder is a lake from now on
    read = pipeline | "ReadStream" >> ReadStream(stream.source, settings.max_record_bytes, stream.allowed_lateness,
                                                 stream.poll_interval, local=local)
    outputs = read | "Ingest" >> IngestArticles(rule_files=settings.rule_files, dedup=settings.dedup,
                                                retention_seconds=stream.retention_seconds)
    _ = outputs | "WriteLake" >> WriteWindowedLake(settings.output, staging, stream.window_seconds,
                                                   stream.allowed_lateness, settings.partition_by, settings.dedup)
    return pipeline


def count_file_rows(output: str) -> dict:
    """Rows in the committed Parquet files of each table (from the footers, without reading the data)."""
    rows = {}
    for table in TABLES:
        matched = FileSystems.match([FileSystems.join(output, table, "**.parquet")])[0].metadata_list
        total = 0
        for meta in matched:
            with FileSystems.open(meta.path) as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
        rows[table] = total
    return rows


def leftover_files(staging: str) -> list[str]:
    """Data files still in this run's staging folder: written but never committed (should be none)."""
    try:
        matched = FileSystems.match([FileSystems.join(staging, "**")])[0].metadata_list
    except Exception:
        return []
    return sorted(m.path for m in matched if not posixpath.basename(m.path).startswith(SUMMARY_FILE))


def finalize_lake(output: str, staging: str, partition_by: str = DEFAULT_PARTITION_BY,
                  run: Optional[dict] = None, dedup: Optional[DedupConfig] = None) -> dict:
    """After the stream stopped: checks the committed files against the running counts, writes the final
    `_SUMMARY.json` (`reconciled`, `files_rows`, `streaming.final`), removes the staging folder when empty."""
    path = FileSystems.join(output, SUMMARY_FILE)
    if FileSystems.exists(path):
        with FileSystems.open(path) as handle:
            summary = json.loads(handle.read().decode("utf-8"))
    else:  # nothing arrived: an empty, reconciled lake
        summary = summarize(0, Counter(), Counter(), Counter())
        summary["streaming"] = {"panes": 0, "last_window_end": None}
    for table in TABLES:  # the three tables exist, empty or not
        if not FileSystems.exists(FileSystems.join(output, table)):
            FileSystems.mkdirs(FileSystems.join(output, table))
    summary["files_rows"] = count_file_rows(output)
    with_layout(summary, output, partition_by)
    leftovers = leftover_files(staging)
    summary["streaming"]["final"] = True
    summary["streaming"]["uncommitted_files"] = leftovers
    summary["reconciled"] = bool(
        summary["records_read"] == summary["documents"] + summary["duplicates"] + summary["rejected"]
        and all(summary["files_rows"][t] == summary[t] for t in TABLES) and not leftovers)
    if dedup is not None:  # the dedup index, as batch lakes have it: a batch --append can follow the stream
        index_files = _lake_files(output, INDEX)
        rows = 0
        for path in index_files:
            with FileSystems.open(path) as handle:
                rows += pq.ParquetFile(handle).metadata.num_rows
        summary["index"] = {"files": sorted(_relative(output, p) for p in index_files), "rows": rows,
                            "dedup": _dedup_settings(dedup)}
    if run is not None:  # the lake's `runs`, as batch lakes have it
        summary["runs"] = [dict(run, committed_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
                                **{k: summary[k] for k in ("records_read", "documents", "duplicates", "rejected",
                                                           "reconciled", "files_rows")})]
    write_json_atomically(output, staging, summary)
    if not leftovers:
        try:
            FileSystems.delete([staging])
            parent = FileSystems.join(output, STAGING_DIR)
            left = FileSystems.match([FileSystems.join(parent, "*")])[0].metadata_list
            if all(posixpath.basename(m.path) == STAGING_MARKER for m in left):  # only wirewash's marker
                FileSystems.delete([parent])
        except Exception:  # another run is using the staging parent
            pass
    return summary


def run_streaming(pipeline: beam.Pipeline, output: str) -> dict:
    """Runs a streaming pipeline until it ends or is drained (SIGINT / SIGTERM -> `request_drain`), then
    finalizes the lake and returns the final summary. Signal handlers are restored afterwards."""
    import signal

    previous = {}

    def drain(signum, frame):
        if _DRAIN.is_set():  # a second signal: stop now, without finishing the windows
            raise KeyboardInterrupt
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
