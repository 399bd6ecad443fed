"""Kafka: Beam's ReadFromKafka (a cross-language Java transform), the parts of the records it yields, and
restarts that neither lose nor repeat a record.

The lake is the ledger. Every Kafka record lands in exactly one row of `documents`, `duplicates` or
`rejected`, whose `source_location` is `kafka:TOPIC/PARTITION:OFFSET`. A run started with
`--kafka_resume_from LAKE[,LAKE...]` (the lakes earlier runs of this topic wrote) first reads which offsets
those lakes hold, then
- sets its consumer group's committed offsets (with kafka-python), per partition, to the first offset after
  the lowest one held that the lakes miss (a partition they hold nothing of: its earliest offset), so the
  job reads again whatever an earlier run had fetched but not yet committed to a file when it stopped or
  crashed (the consumer's own auto-commit runs ahead of the files);
- drops every record read again that the lakes already hold, by (partition, offset): the few committed
  after the first gap, counted under the Beam counter `kafka/already_in_lake`.
So across the lakes each offset is counted exactly once. What is not carried over is the dedup memory:
a record re-read after a crash is deduplicated against the new run's arrivals only.
"""
from __future__ import annotations

import logging
from typing import Iterable, NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from wirewash.pipeline.config import NOTICES

LOG = logging.getLogger(__name__)
NOTICE = logging.getLogger(NOTICES)  # silenced by --quiet
NAMESPACE = "kafka"
ALREADY_IN_LAKE = "already_in_lake"
SOURCE_PREFIX = "kafka:"


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
    their partition and offset, from the offsets the consumer group committed (its consumer auto-commits
    what it fetched, every second). With `--kafka_resume_from`, the group's offsets are first set from those
    lakes and records they already hold are dropped (module docstring)."""
    from apache_beam.io.kafka import ReadFromKafka  # cross-language: needs Java

    from wirewash.pipeline.options import WirewashOptions

    opts = options.view_as(WirewashOptions)
    warning = stall_warning(options.get_all_options(retain_unknown_options=True))
    if warning:
        LOG.warning("wirewash: %s", warning)
    read = ReadFromKafka(
        consumer_config={"bootstrap.servers": brokers, "group.id": opts.kafka_group_id,
                         "auto.offset.reset": "earliest", "enable.auto.commit": "true",
                         "auto.commit.interval.ms": "1000"},
        topics=[topic], with_metadata=True, commit_offset_in_finalize=False,
        expansion_service=opts.kafka_expansion_service or None)
    lakes = [lake for lake in (opts.kafka_resume_from or "").split(",") if lake]
    if not lakes:
        return read
    plan = resume_plan(lake_offsets(lakes, topic))
    starts = set_group_offsets(brokers, opts.kafka_group_id, topic, plan.starts)
    NOTICE.warning("%s", resume_notice(topic, lakes, plan, starts))
    return _SkipHeld(read, plan.skip)


def resume_notice(topic: str, lakes: list, plan: "ResumePlan", starts: dict) -> str:
    """The notice of a resumed read (a notice: `--quiet` hides it): where each partition starts."""
    return f"wirewash: kafka topic {topic} resumes from {', '.join(lakes)}: " + (", ".join(
        f"partition {p} at offset {o} ({len(plan.skip.get(p, ()))} later offsets already held)"
        for p, o in sorted(starts.items())) or "no partition found")


def stall_warning(flags: dict) -> Optional[str]:
    """A warning when Flink checkpoints are on without `--finish_bundle_before_checkpointing`, with which
    the Kafka read can stall for good (docs/streaming.md, "The stall"); else None."""
    interval = str(flags.get("checkpointing_interval") or "-1")
    if interval.lstrip("-").isdigit() and int(interval) > 0 and not flags.get("finish_bundle_before_checkpointing"):
        return ("--checkpointing_interval without --finish_bundle_before_checkpointing: on Flink the Kafka "
                "read can then never start (docs/streaming.md, 'The stall')")
    return None


def source_location(topic: str, partition: int, offset: int) -> str:
    """The `source_location` of a Kafka record's row (built by `decode_message` from `message_parts`)."""
    return f"{SOURCE_PREFIX}{topic}/{partition}:{offset}"


def parse_location(location: Optional[str], topic: str) -> Optional[tuple[int, int]]:
    """(partition, offset) of a row's `source_location` when it is a record of `topic`, else None."""
    prefix = f"{SOURCE_PREFIX}{topic}/"
    if not location or not location.startswith(prefix):
        return None
    partition, _, offset = location[len(prefix):].partition(":")
    if not (partition.isdigit() and offset.isdigit()):
        return None
    return int(partition), int(offset)


class ResumePlan(NamedTuple):
    """Per partition: the first offset to read, and the offsets from there on that are already held."""
    starts: dict
    skip: dict


def resume_point(held: Iterable[int]) -> tuple[int, frozenset]:
    """(first offset not held after the lowest held one, the held offsets above it) for a non-empty set."""
    offsets = sorted(set(held))
    start = offsets[0]
    for offset in offsets:
        if offset != start:
            break
        start += 1
    return start, frozenset(o for o in offsets if o > start)


def resume_plan(held: dict) -> ResumePlan:
    """{partition: offsets held} -> where each partition resumes, and what to drop when read again."""
    points = {p: resume_point(offsets) for p, offsets in held.items() if offsets}
    return ResumePlan({p: start for p, (start, _) in points.items()},
                      {p: skip for p, (_, skip) in points.items() if skip})


def lake_offsets(lakes: Iterable[str], topic: str) -> dict:
    """{partition: set of offsets} of `topic`'s records in the committed Parquet files of the lakes' three
    tables (files still in `_staging/` are not committed: their records are read again)."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    from wirewash.pipeline.lake import MARKER_FILE, SUMMARY_FILE, TABLES, _lake_files

    held: dict = {}
    for lake in lakes:
        if not any(FileSystems.exists(FileSystems.join(lake, name)) for name in (MARKER_FILE, SUMMARY_FILE)):
            raise ValueError(f"--kafka_resume_from {lake}: not a wirewash lake (no {MARKER_FILE} nor {SUMMARY_FILE})")
        for table in TABLES:
            for path in _lake_files(lake, table):
                with FileSystems.open(path) as handle:
                    column = pq.read_table(handle, columns=["source_location"]).column(0).to_pylist()
                for location in column:
                    parsed = parse_location(location, topic)
                    if parsed is not None:
                        held.setdefault(parsed[0], set()).add(parsed[1])
    return held


def set_group_offsets(brokers: str, group: str, topic: str, starts: dict) -> dict:
    """Commits `group`'s offsets for every partition of `topic`: `starts[p]`, or the earliest offset for a
    partition without one (nor below the earliest still kept). Returns {partition: offset committed}."""
    try:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata
    except ImportError as error:  # pragma: no cover - an install without the extra
        raise ValueError("--kafka_resume_from needs kafka-python: pip install 'wirewash[kafka]'") from error
    consumer = None
    try:
        consumer = KafkaConsumer(bootstrap_servers=brokers.split(","), group_id=group, enable_auto_commit=False)
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        earliest = consumer.beginning_offsets(partitions)
        chosen = {tp.partition: max(starts.get(tp.partition, earliest[tp]), earliest[tp]) for tp in partitions}
        for tp in partitions:
            if starts.get(tp.partition, earliest[tp]) < earliest[tp]:
                LOG.error("wirewash: kafka %s/%d: offsets %d to %d are no longer kept by the broker: not read",
                          topic, tp.partition, starts[tp.partition], earliest[tp] - 1)
        if partitions:
            consumer.commit({tp: OffsetAndMetadata(chosen[tp.partition], "", -1) for tp in partitions})
        return chosen
    except KafkaError as error:
        raise ValueError(f"--kafka_resume_from: cannot set the offsets of consumer group {group} on {brokers}: "
                         f"{error}") from error
    finally:
        if consumer is not None:
            consumer.close()


class _SkipHeldFn(beam.DoFn):
    """Drops a Kafka record whose (partition, offset) is in `skip` (already in a lake), and counts it."""

    def __init__(self, skip: dict):
        self.skip = skip

    def process(self, record):
        if record.offset in self.skip.get(record.partition, ()):
            Metrics.counter(NAMESPACE, ALREADY_IN_LAKE).inc()
            return
        yield record


class _SkipHeld(beam.PTransform):
    """ReadFromKafka, then the records the earlier lakes hold dropped."""

    def __init__(self, read: beam.PTransform, skip: dict):
        super().__init__()
        self.read = read
        self.skip = skip

    def expand(self, pbegin):
        return pbegin | "Read" >> self.read | "SkipHeld" >> beam.ParDo(_SkipHeldFn(self.skip))
