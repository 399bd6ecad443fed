"""Where a stream comes from: `--input` parsed into a StreamSource, and `ReadStream`, its records stamped with
their event time.

- a glob or folder (local, gs://, s3://): watched (pipeline/watch.py), each settled file parsed by the batch
  reader (pipeline/io.py) into the same `Article` / `Rejection` records;
- `pubsub://projects/P/subscriptions/S`: one JSON article per message (Beam's ReadFromPubSub; Dataflow);
- `kafka://BROKER1,BROKER2/TOPIC`: one JSON article per record value (pipeline/kafka.py: Beam's ReadFromKafka,
  a cross-language transform: needs Java, e.g. on Flink or Dataflow).
Messages are decoded by the batch JSONL parser. Event time is the article's `published` when it is valid and
no older than `--allowed_lateness` before arrival (and not in the future), else its arrival time
(`event_time`); so nothing is ever dropped as too late.
"""
from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import window
from apache_beam.utils.timestamp import Timestamp

from wirewash.pipeline.ingest import STREAM_NAMESPACE as NAMESPACE
from wirewash.pipeline.input_files import ByteRange, from_wire
from wirewash.pipeline.io import REASON_TOO_LARGE, parse_file
from wirewash.pipeline.kafka import kafka_read, message_parts
from wirewash.pipeline.lake import REJECTED
from wirewash.pipeline.lake_summary import unread_input
from wirewash.pipeline.records import _reject, parse_json_record, stable_id
from wirewash.pipeline.tally import tally_fact
from wirewash.pipeline.watch import LocalWatch, WatchFiles
from wirewash.transforms.types import Rejection

__all__ = ["StreamSource", "parse_source", "watch_pattern", "event_time", "decode_message", "ReadStream",
           "KIND_FILES", "KIND_PUBSUB", "KIND_KAFKA", "REASON_NOT_READ_WHOLE",
           "REASON_EMPTY_MESSAGE"]

LOG = logging.getLogger("wirewash.pipeline.streaming")  # the stream's messages keep one logger name
KIND_FILES, KIND_PUBSUB, KIND_KAFKA = "files", "pubsub", "kafka"

REASON_NOT_READ_WHOLE = "not_read_whole"
REASON_EMPTY_MESSAGE = "empty_message"


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
    from the message id, as batch does for JSONL lines. A payload over `max_record_bytes` is `too_large`;
    no payload at all (None or empty) is `empty_message`.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    location = f"{source}/{message_id}"
    if not payload:
        return _reject(location, REASON_EMPTY_MESSAGE,
                       error="the message has no value (a Kafka tombstone, or an empty Pub/Sub message)")
    if max_record_bytes is not None and len(payload or b"") > max_record_bytes:
        return _reject(location, REASON_TOO_LARGE, bytes(payload[:200]),
                       error=f"message longer than {max_record_bytes} bytes")
    return parse_json_record(bytes(payload or b"").rstrip(b"\r\n"), location, ("message", source, message_id))


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
