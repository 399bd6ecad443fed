"""A real Kafka broker (Apache Kafka 4.x from Maven Central, KRaft mode) started by deploy/services/services.py
on 127.0.0.1. Skipped with one sentence when java or mvn is missing; the jars are fetched once per machine
into $WIREWASH_JAR_CACHE (default ~/.cache/wirewash/jars)."""
from __future__ import annotations

import pytest

from tests.jvm_services import services

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    broker = services().start_kafka(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop()


def test_broker_round_trips_records_in_order(kafka):
    """What the tests produce is what a consumer of the topic reads back, offsets from 0, nothing lost."""
    from kafka import KafkaConsumer, KafkaProducer

    payloads = [f'{{"id": "r{i}", "text": "record {i}"}}'.encode() for i in range(50)] + [b"{broken", b"x" * 300_000]
    producer = KafkaProducer(bootstrap_servers=kafka.address, max_request_size=1 << 20)
    for payload in payloads:
        producer.send("roundtrip", payload)
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer("roundtrip", bootstrap_servers=kafka.address, auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000, group_id="roundtrip-test")
    records = []
    for record in consumer:
        records.append(record)
        if len(records) == len(payloads):
            break
    consumer.close()
    assert [r.value for r in records] == payloads
    assert [r.offset for r in records] == list(range(len(payloads)))


def test_broker_keeps_its_data_across_a_restart(tmp_path):
    """The broker's log folder is formatted once and reused: a restarted broker serves the same records."""
    from kafka import KafkaConsumer, KafkaProducer

    svc = services()
    broker = svc.start_kafka(tmp_path / "k")
    try:
        producer = KafkaProducer(bootstrap_servers=broker.address)
        producer.send("kept", b"before restart").get(30)
        producer.close()
    finally:
        broker.stop()
    broker = svc.start_kafka(tmp_path / "k")
    try:
        consumer = KafkaConsumer("kept", bootstrap_servers=broker.address, auto_offset_reset="earliest",
                                 consumer_timeout_ms=20_000)
        values = [r.value for r in consumer]
        consumer.close()
    finally:
        broker.stop()
    assert values == [b"before restart"]
