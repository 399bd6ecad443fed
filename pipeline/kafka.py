"""Kafka: Beam's ReadFromKafka for `kafka://BROKERS/TOPIC` inputs, and the parts of the messages it reads."""
from __future__ import annotations

from typing import Optional

import apache_beam as beam

__all__ = ["kafka_read", "message_parts"]


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
