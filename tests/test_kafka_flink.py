"""A real Kafka broker (Apache Kafka 4.x from Maven Central, KRaft mode) started by deploy/services/services.py
on 127.0.0.1. Skipped with one sentence when java or mvn is missing; the jars are fetched once per machine
into $WIREWASH_JAR_CACHE (default ~/.cache/wirewash/jars)."""
from __future__ import annotations

import pytest

from tests.jvm_services import restart_in_place, services

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


def test_broker_keeps_its_data_across_a_restart(kafka):
    """The broker's log folder is formatted once and reused: a restarted broker serves the same records.
    (The module's broker itself is restarted: the tests after this one use it restarted.)"""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(bootstrap_servers=kafka.address)
    producer.send("kept", b"before restart").get(30)
    producer.close()
    restart_in_place(kafka, services().start_kafka)
    consumer = KafkaConsumer(bootstrap_servers=kafka.address, auto_offset_reset="earliest", consumer_timeout_ms=20_000)
    partition = TopicPartition("kept", 0)
    assert consumer.partitions_for_topic("kept") == {0}
    consumer.assign([partition])
    end = consumer.end_offsets([partition])[partition]  # read up to the end the restarted broker reports, no wait
    values = []
    for record in consumer:
        values.append(record.value)
        if consumer.position(partition) >= end:
            break
    consumer.close()
    assert values == [b"before restart"]


# ---------------------------------------------------------------------------------------------------------
# Streaming from Kafka on Flink: Beam's ReadFromKafka (Java, EMBEDDED in Flink, expanded by Beam's expansion
# service), Beam's Flink job server (embedded Flink), wirewash's Python steps LOOPBACK in the CLI's process.
# ---------------------------------------------------------------------------------------------------------

import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from tests.helpers import lake_rows  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MAX_RECORD_BYTES = 50_000
CATCH_UP_SECONDS = 240


@pytest.fixture(scope="module")
def kafka_expansion(tmp_path_factory, kafka):
    """(broker, expansion service), real JVMs on 127.0.0.1, shared by the streaming tests."""
    expansion = services().start_expansion_service(tmp_path_factory.mktemp("expansion"))
    try:
        yield kafka, expansion
    finally:
        expansion.stop()


@pytest.fixture
def job_server(tmp_path):
    """A Flink job server of the test's own: stopping the job server is how a job is stopped here (Beam's
    Job API `Cancel` left the job of the embedded Flink running, failing over without its workers)."""
    server = services().start_job_server(tmp_path / "flink")
    try:
        yield server
    finally:
        server.stop()


def stream_records(start: int, n: int) -> list[bytes]:
    """Originals, exact copies (same text, another id), near copies (one sentence changed), malformed JSON and
    an oversized message, in a fixed mix; ids are unique per position."""
    out = []
    for i in range(start, start + n):
        story = i - i % 5  # every 5 positions share one story
        text = " ".join(f"Story {story} reports that the council of town {story * 7919 % 10007} voted on measure "
                        f"{w} after a long debate about budgets, schools and roads." for w in range(6))
        kind = i % 10
        if kind == 7:
            out.append(b'{"id": "broken' + str(i).encode() + b'", "text": ')  # malformed JSON
        elif kind == 9 and i % 20 == 9:
            out.append(json.dumps({"id": f"big{i}", "text": "x " * MAX_RECORD_BYTES}).encode())  # oversized
        elif kind in (1, 6):
            out.append(json.dumps({"id": f"copy{i}", "text": text}).encode())  # exact copy of the story
        elif kind in (2, 8):
            out.append(json.dumps({"id": f"near{i}", "text": text.replace(
                "measure 5 after", "measure 5 late at night after")}).encode())  # near copy
        else:
            out.append(json.dumps({"id": f"r{i}", "text": text if kind in (0, 5) else f"Unrelated {i}. " + text[::-1]
                                   }).encode())
    return out


def produce(broker, topic: str, records: list[bytes], pause: float = 0.0, batch: int = 25,
            hurry: threading.Event | None = None) -> None:
    """Sends `records`, flushing and pausing `pause` s after every `batch`; once `hurry` is set, the rest
    without pauses."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=broker.address, max_request_size=4 << 20, linger_ms=5)
    for i, record in enumerate(records):
        producer.send(topic, record)
        if pause and i % batch == batch - 1 and not (hurry and hurry.is_set()):
            producer.flush(30)
            time.sleep(pause)
    producer.flush(30)
    producer.close()


def start_stream(job_server, expansion, broker, topic: str, lake: Path, log: Path,
                 extra: tuple = ()) -> subprocess.Popen:
    """`wirewash run --streaming` on Flink, exactly as docs/streaming.md shows it."""
    command = [sys.executable, "-m", "wirewash.pipeline.cli", "run", "--streaming", "--input", f"kafka://{broker.address}/{topic}",
               "--output", str(lake), "--quiet", "--window_seconds", "2", "--max_record_bytes", str(MAX_RECORD_BYTES),
               "--runner=PortableRunner", f"--job_endpoint={job_server.address}", "--environment_type=LOOPBACK",
               "--checkpointing_interval=2000", "--finish_bundle_before_checkpointing",
               f"--kafka_expansion_service={expansion.address}",
               f"--kafka_group_id=wirewash-{topic}", *extra]
    return subprocess.Popen(command, cwd=REPO, stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def stop_stream(cli: subprocess.Popen) -> None:
    """SIGTERM twice: the CLI asks for a drain, then stops (its LOOPBACK workers with it)."""
    for _ in range(2):
        if cli.poll() is None:
            cli.send_signal(signal.SIGTERM)
            time.sleep(1)
    try:
        cli.wait(30)
    except subprocess.TimeoutExpired:
        cli.kill()
        cli.wait()


def committed_locations(lake: Path) -> list[str]:
    """`source_location` of every committed row of the three tables (Parquet files in their final place)."""
    locations = []
    for table in ("documents", "duplicates", "rejected"):
        locations += [r["source_location"] for r in lake_rows(lake, table, "source_location")]
    return locations


def wait_for_rows(lake: Path, n: int, cli: subprocess.Popen, log: Path) -> list[str]:
    deadline = time.monotonic() + CATCH_UP_SECONDS
    locations: list[str] = []
    while time.monotonic() < deadline:
        assert cli.poll() is None, f"the streaming run ended ({cli.returncode}): {log.read_text()[-3000:]}"
        locations = committed_locations(lake) if lake.exists() else []
        if len(locations) >= n:
            waited = CATCH_UP_SECONDS - (deadline - time.monotonic())
            print(f"{n} records in the lake {waited:.0f} s after the wait began")
            return locations
        time.sleep(0.5)
    raise AssertionError(f"{len(locations)} of {n} records in the lake after {CATCH_UP_SECONDS} s; "
                         f"log: {log.read_text()[-3000:]}")


def visible_files(lake: Path) -> list[Path]:
    return [p for p in lake.rglob("*") if p.is_file() and "_staging" not in p.parts]


def assert_clean(lake: Path) -> None:
    """Nothing half-written is visible: every file outside _staging is a finished Parquet file (or the
    summary, the empty lake marker or the writer lock), named as committed files are."""
    import pyarrow.parquet as pq

    from wirewash.pipeline.lake import MARKER_FILE
    from wirewash.pipeline.writer_lock import LOCK_FILE

    for path in visible_files(lake):
        if path.name == "_SUMMARY.json":
            json.loads(path.read_text())
            continue
        if path.name == MARKER_FILE:
            continue
        if path.name == LOCK_FILE:  # the stream's writer lock (one writer per lake), while it runs
            json.loads(path.read_text())
            continue
        assert path.name.startswith("part-") and path.suffix == ".parquet", path
        pq.ParquetFile(path).metadata  # a truncated file has no footer and raises


def offsets_of(locations: list[str], topic: str) -> list[int]:
    prefix = f"kafka:{topic}/0:"
    assert all(loc.startswith(prefix) for loc in locations), locations[:3]
    return sorted(int(loc[len(prefix):]) for loc in locations)


def test_kafka_stream_on_flink_puts_every_record_in_exactly_one_table(kafka_expansion, job_server, tmp_path):
    """200 records, 20 in the topic before the job starts and the rest while it runs: each offset lands in
    exactly one table, and no window is left open (needs --finish_bundle_before_checkpointing: see
    docs/streaming.md, "The stall")."""
    broker, expansion = kafka_expansion
    topic = "articles-once"
    records = stream_records(0, 200)
    produce(broker, topic, records[:20])  # the topic exists before the job starts
    lake, log = tmp_path / "lake", tmp_path / "stream.log"
    cli = start_stream(job_server, expansion, broker, topic, lake, log)
    try:
        produce(broker, topic, records[20:], pause=0.5)  # the rest while the job runs
        locations = wait_for_rows(lake, len(records), cli, log)
        assert_clean(lake)
    finally:
        stop_stream(cli)
    assert offsets_of(locations, topic) == list(range(len(records)))  # each offset exactly once
    kinds = {r["kind"] for r in lake_rows(lake, "duplicates", "kind")}
    reasons = {r["reason"] for r in lake_rows(lake, "rejected", "reason")}
    assert kinds == {"exact", "near"}, kinds
    assert {"bad_json", "too_large"} <= reasons, reasons
    assert_clean(lake)


def committed_offset(broker, group: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.address, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, 0)) or 0
    finally:
        consumer.close()


def test_kafka_stream_restarted_after_a_crash_loses_and_repeats_no_record(kafka_expansion, job_server, tmp_path):
    """Crash the whole job (SIGKILL of the job server with its embedded Flink, and of the submitting CLI) while
    records arrive, at a moment when the consumer group's auto-committed offset is ahead of the records in the
    lake's files; more records arrive while it is down; a new job server and the same command into a new lake,
    with `--kafka_resume_from` the first: the two lakes together hold every offset exactly once."""
    broker, expansion = kafka_expansion
    topic = "articles-restart"
    first, second = stream_records(0, 60), stream_records(60, 60)
    lake1, lake2 = tmp_path / "lake1", tmp_path / "lake2"
    group = f"wirewash-{topic}"
    produce(broker, topic, first[:10])
    cli = start_stream(job_server, expansion, broker, topic, lake1, tmp_path / "run1.log")
    producer, crashed = None, threading.Event()
    try:
        wait_for_rows(lake1, 1, cli, tmp_path / "run1.log")  # the job runs
        producer = threading.Thread(target=produce, args=(broker, topic, first[10:]),
                                    kwargs={"pause": 0.4, "batch": 1, "hurry": crashed})  # up to 20 s
        producer.start()
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while committed_offset(broker, group, topic) < len(committed_locations(lake1)) + 5:
            assert cli.poll() is None and time.monotonic() < deadline, "the consumer never ran ahead of the lake"
            time.sleep(0.5)
    finally:  # the job crashes while the consumer's auto-commit is ahead of the files
        job_server.kill()
        cli.kill()
        cli.wait()
        crashed.set()  # the rest of `first` arrives while no job runs, at once (it paced 0.4 s a record)
        if producer is not None:
            producer.join()
    before = offsets_of(committed_locations(lake1), topic)
    ahead = committed_offset(broker, group, topic)
    print(f"at the crash: {len(before)} of {len(first)} records in the first lake; the consumer group had "
          f"committed offset {ahead}")
    assert ahead > len(before)  # without --kafka_resume_from, the records in between would be lost
    produce(broker, topic, second)  # arrives while no job runs
    restarted = services().start_job_server(tmp_path / "flink-again")
    cli = start_stream(restarted, expansion, broker, topic, lake2, tmp_path / "run2.log",
                       extra=(f"--kafka_resume_from={lake1}",))
    try:
        wait_for_rows(lake2, len(first) + len(second) - len(before), cli, tmp_path / "run2.log")
        time.sleep(4)  # nothing more arrives
        assert_clean(lake2)
    finally:
        stop_stream(cli)
        restarted.stop()
    after = offsets_of(committed_locations(lake2), topic)
    assert sorted(before + after) == list(range(len(first) + len(second)))  # each offset in exactly one lake
