"""pipeline/kafka.py without a broker: where a resumed run starts, what it drops, and what a lake holds.
(The same code against a real broker and Flink: tests/test_kafka_flink.py.)"""
from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from wirewash.pipeline.kafka import (_SkipHeldFn, lake_offsets, parse_location, resume_plan, resume_point,
                                     source_location, stall_warning)
from wirewash.pipeline.kafka import message_parts
from wirewash.pipeline.sources import decode_message


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 300), min_size=1))
def test_a_resumed_partition_reads_every_offset_not_held_and_drops_every_one_held(held):
    """Whatever the lakes hold (any set of offsets, gaps anywhere), reading from the start point and dropping
    the skip set yields exactly the offsets above the lowest held one that are not held: none lost, none
    twice."""
    start, skip = resume_point(held)
    assert start not in held and all(o in held for o in range(min(held), start))
    read_again = [o for o in range(start, 400) if o not in skip]
    assert sorted(set(range(min(held), 400)) - held) == read_again
    assert skip <= held and all(o > start for o in skip)


def test_a_plan_covers_each_partition_held():
    plan = resume_plan({0: {0, 1, 2, 5}, 1: {7}, 2: set()})
    assert plan.starts == {0: 3, 1: 8}
    assert plan.skip == {0: frozenset({5})}


def test_the_location_parsed_is_the_one_decode_message_writes():
    class Record:  # the fields of ReadFromKafka(with_metadata=True)'s rows that message_parts reads
        value, partition, offset = b'{"text": "x"}', 3, 42

    payload, message_id = message_parts(Record())
    row = decode_message(payload, "kafka:news.v1", message_id)
    assert row.source_location == source_location("news.v1", 3, 42)
    assert parse_location(row.source_location, "news.v1") == (3, 42)
    assert parse_location(row.source_location, "news") is None  # another topic's prefix
    assert parse_location("kafka:news.v1/3:x", "news.v1") is None
    assert parse_location("incoming/a.jsonl:3", "news.v1") is None


def test_lake_offsets_reads_the_committed_files_of_the_three_tables_only(tmp_path):
    def write(relative, locations):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"source_location": locations}), path)

    write("documents/lang=en/date=unknown/part-1.parquet", ["kafka:t/0:0", "kafka:t/0:2", "kafka:u/0:1"])
    write("duplicates/part-1.parquet", ["kafka:t/0:1"])
    write("rejected/part-1.parquet", ["kafka:t/1:9", None, "feed.jsonl:4"])
    write("_staging/run/files/part-2.parquet", ["kafka:t/0:3"])  # not committed: read again
    with pytest.raises(ValueError, match="not a wirewash lake"):  # a mistyped path would re-read the topic
        lake_offsets([str(tmp_path)], "t")
    (tmp_path / "_WIREWASH_LAKE").write_text("")
    assert lake_offsets([str(tmp_path)], "t") == {0: {0, 1, 2}, 1: {9}}


def test_records_held_are_dropped_the_others_pass():
    rows = [beam.Row(partition=p, offset=o, value=b"") for p, o in [(0, 1), (0, 5), (1, 5), (0, 6)]]
    with beam.Pipeline("FnApiRunner") as pipeline:
        kept = (pipeline | beam.Create(rows) | beam.ParDo(_SkipHeldFn({0: frozenset({5})}))
                | beam.Map(lambda r: (r.partition, r.offset)))
        assert_that(kept, equal_to([(0, 1), (1, 5), (0, 6)]))


def test_flink_checkpoints_without_finishing_bundles_first_are_warned_about():
    assert "finish_bundle_before_checkpointing" in stall_warning({"checkpointing_interval": "2000"})
    assert stall_warning({"checkpointing_interval": "2000", "finish_bundle_before_checkpointing": True}) is None
    assert stall_warning({"checkpointing_interval": "-1"}) is None
    assert stall_warning({}) is None


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_hides_the_resume_notice_and_keeps_errors(tmp_path, caplog, quiet):
    """The "resumes from" line is a notice: after `wirewash run --quiet` set up logging (here a run that stops
    at its missing input, once logging is set), it is not shown; without --quiet it is; errors show either way."""
    from wirewash.pipeline import kafka
    from wirewash.pipeline.cli import main

    argv = ["run", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "lake")]
    assert main(argv + (["--quiet"] if quiet else [])) == 2
    caplog.clear()
    notice = kafka.resume_notice("t", ["lake1"], resume_plan({0: {0, 1, 5}}), {0: 2})
    assert notice == "wirewash: kafka topic t resumes from lake1: partition 0 at offset 2 (1 later offsets already held)"
    kafka.NOTICE.warning("%s", notice)
    kafka.LOG.error("wirewash: kafka t/0: offsets 0 to 1 are no longer kept by the broker: not read")
    shown = [r.getMessage() for r in caplog.records]
    assert ("resumes from" in " ".join(shown)) is not quiet
    assert any("no longer kept" in m for m in shown)
