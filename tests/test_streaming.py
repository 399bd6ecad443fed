"""Streaming mode: pure parts, stateful dedup and windowed writes on TestStream, the real CLI end to end."""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import apache_beam as beam
import duckdb
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms import window

from wirewash.pipeline.cli import main
from wirewash.pipeline.ingest import READ
from wirewash.pipeline.kafka import message_parts
from wirewash.pipeline.sources import (KIND_FILES, KIND_KAFKA, KIND_PUBSUB, StreamSource, decode_message, event_time,
                                       parse_source)
from wirewash.pipeline.watch import new_settled_files
from wirewash.pipeline.windowed_lake import WriteWindowedLake, file_name, finalize_lake, staging_of
from wirewash.transforms.dedup import DedupConfig, lsh_params, minhash_signature, shingle_sketch, shingles, sketch_jaccard
from wirewash.transforms.normalize import dedup_key
from wirewash.transforms.stateful_dedup import NearIndex, StatefulDedup
from wirewash.transforms.types import Article, Duplicate, Rejection
from tests.helpers import ARTICLE_DE, ARTICLE_EN, ARTICLE_VI, lake_rows, write_jsonl

REPO = Path(__file__).resolve().parents[1]
SEEDS = sorted((REPO / "seeds").glob("*.txt"))


def seed_text(i: int) -> str:
    return SEEDS[i].read_text(encoding="utf-8")


def near_copy(text: str) -> str:
    """The same long story with a few words in its middle changed: word 5-shingle Jaccard well above 0.8."""
    words = text.split(" ")
    middle = len(words) // 2
    return " ".join(words[:middle] + ["(updated", "with", "new", "details)"] + words[middle + 2:])


# ---------------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------------

class TestParseSource:
    def test_glob_and_folder(self, tmp_path):
        assert parse_source(["incoming/*.jsonl"]) == StreamSource(KIND_FILES, "incoming/*.jsonl")
        assert parse_source([str(tmp_path)]) == StreamSource(KIND_FILES, f"{tmp_path}/**")
        assert parse_source(["gs://bucket/in/*.jsonl"]).kind == KIND_FILES

    def test_pubsub(self):
        source = parse_source(["pubsub://projects/my-proj/subscriptions/news-in"])
        assert source == StreamSource(KIND_PUBSUB, "projects/my-proj/subscriptions/news-in")

    def test_kafka(self):
        source = parse_source(["kafka://broker1:9092,broker2:9092/news"])
        assert source == StreamSource(KIND_KAFKA, "broker1:9092,broker2:9092", "news")

    @pytest.mark.parametrize("bad", ["pubsub://projects/p/topics/t", "pubsub://my-sub", "kafka://broker/news",
                                     "kafka://broker:9092", "kafka://b:9092/bad topic", "http://x/y"])
    def test_malformed_sources_say_what_is_expected(self, bad):
        with pytest.raises(ValueError, match="expected|streaming reads"):
            parse_source([bad])

    def test_exactly_one_input(self):
        with pytest.raises(ValueError, match="exactly one"):
            parse_source(["a/*.jsonl", "b/*.jsonl"])
        with pytest.raises(ValueError, match="exactly one"):
            parse_source(None)


class TestEventTime:
    ARRIVAL = 1_700_000_000.0

    def test_recent_published_is_the_event_time(self):
        assert event_time("2023-11-14T22:11:00+00:00", self.ARRIVAL, 300) == 1_699_999_860.0

    def test_published_older_than_the_lateness_takes_the_arrival(self):
        assert event_time("2023-11-14T20:00:00+00:00", self.ARRIVAL, 300) == self.ARRIVAL

    def test_future_or_missing_published_takes_the_arrival(self):
        assert event_time("2023-11-15T00:00:00+00:00", self.ARRIVAL, 300) == self.ARRIVAL
        assert event_time(None, self.ARRIVAL, 300) == self.ARRIVAL


class TestDecodeMessage:
    def test_json_message_becomes_the_batch_record(self):
        payload = json.dumps({"id": "m1", "url": "https://www.ex.com/a", "published": "2024-01-02T03:04:05Z",
                              "text": ARTICLE_EN}).encode()
        article = decode_message(payload, "pubsub:news-in", "123")
        assert isinstance(article, Article)
        assert (article.doc_id, article.source, article.published_at, article.source_location) == (
            "m1", "ex.com", "2024-01-02T03:04:05+00:00", "pubsub:news-in/123")

    def test_id_falls_back_to_the_message(self):
        one = decode_message(json.dumps({"text": ARTICLE_EN}).encode(), "kafka:news", "0:17")
        again = decode_message(json.dumps({"text": ARTICLE_EN}).encode(), "kafka:news", "0:17")
        other = decode_message(json.dumps({"text": ARTICLE_EN}).encode(), "kafka:news", "0:18")
        assert one.doc_id == again.doc_id != other.doc_id

    @pytest.mark.parametrize("payload,reason", [(b"{not json", "bad_json"), (b"[1, 2]", "not_an_object"),
                                                (b'{"id": "x"}', "missing_text"), (b"\xff\xfe", "invalid_utf8"),
                                                (None, "empty_message"), (b"", "empty_message")])
    def test_bad_messages_are_rejections(self, payload, reason):
        rejection = decode_message(payload, "pubsub:s", "9")
        assert isinstance(rejection, Rejection) and rejection.reason == reason
        assert rejection.source_location == "pubsub:s/9"

    def test_message_parts_of_each_source_shape(self):
        class PubsubLike:
            data, message_id = b"{}", "m-1"

        class KafkaRowLike:
            value, partition, offset = b"{}", 3, 42

        assert message_parts(PubsubLike()) == (b"{}", "m-1")
        assert message_parts(KafkaRowLike()) == (b"{}", "3:42")
        assert message_parts((b"key", b"{}")) == (b"{}", None)
        assert message_parts(b"{}") == (b"{}", None)


def test_file_names_are_unique_per_window_pane_and_shard():
    names = {file_name(w, w + 2, pane, shard, 2) for w in (0, 2) for pane in (0, 1) for shard in (0, 1)}
    assert len(names) == 8 and all(n.endswith(".parquet") for n in names)


def test_a_file_is_read_once_after_its_size_and_mtime_settle():
    files = {"/in/a.jsonl": b'{"text": "x"}\n' * 2, "/in/b.txt": b"hello", "/in/c.jsonl": b"\xff\xfe{\x00",
             "/in/d.jsonl": gzip.compress(b'{"text": "x"}\n')}
    peek = lambda path, offset, length: files[path][offset:offset + length]  # noqa: E731
    state = {}
    assert new_settled_files([("/in/a.jsonl", 10, 1.0)], state, "/in/", peek) == []  # first sight: maybe growing
    assert new_settled_files([("/in/a.jsonl", 28, 2.0)], state, "/in/", peek) == []  # grew
    assert new_settled_files([("/in/a.jsonl", 28, 3.0)], state, "/in/", peek) == []  # same size, rewritten
    listing = [("/in/a.jsonl", 28, 3.0), ("/in/b.txt", 5, 1.0), ("/in/c.jsonl", 4, 1.0),
               ("/in/d.jsonl", len(files["/in/d.jsonl"]), 1.0)]
    assert new_settled_files(listing, state, "/in/", peek) == [
        (("/in/a.jsonl", "a.jsonl", "jsonl", ()), 0, 28, 1)]  # exactly the bytes listed, as a range
    assert new_settled_files(listing, state, "/in/", peek) == [
        (("/in/b.txt", "b.txt", "text", ()), 0, None, 1), (("/in/c.jsonl", "c.jsonl", "jsonl", ()), 0, None, 1),
        (("/in/d.jsonl", "d.jsonl", "jsonl", ()), 0, None, 1)]
    assert new_settled_files(listing, state, "/in/", peek) == []  # UTF-16, gzip and text files are read whole


def test_a_file_that_changes_after_it_was_read_is_read_on_or_named():
    files = {"/in/a.jsonl": b'{"text": "x"}\n' * 2, "/in/b.jsonl": b'{"text": "x"}', "/in/t.txt": b"a"}
    peek = lambda path, offset, length: files[path][offset:offset + length]  # noqa: E731
    state = {}
    first = [("/in/a.jsonl", 28, 1.0), ("/in/b.jsonl", 13, 1.0), ("/in/t.txt", 1, 1.0)]
    for _ in range(2):
        new_settled_files(first, state, "/in/", peek)
    files = {"/in/a.jsonl": files["/in/a.jsonl"] + b'{"text": "y"}\n', "/in/b.jsonl": b'{"text": "x"}\n',
             "/in/t.txt": b"ab"}
    later = [("/in/a.jsonl", 42, 2.0), ("/in/b.jsonl", 14, 2.0), ("/in/t.txt", 2, 2.0)]
    assert new_settled_files(later, state, "/in/", peek) == []
    again = new_settled_files(later, state, "/in/", peek)
    assert again[0] == (("/in/a.jsonl", "a.jsonl", "jsonl", ()), 28, 42, 3)  # the new lines, as lines 3...
    for element, name in zip(again[1:], ("b.jsonl@13", "t.txt@1")):  # grown mid-line, a text file: named
        assert element[0][1] == name and element[0][3][0] == "changed_after_read" and element[2] is None
    assert new_settled_files(later, state, "/in/", peek) == []


def test_a_file_read_while_empty_is_read_from_its_start_when_it_fills(tmp_path, caplog):
    """A watched file that was empty when read (its `empty_file` rejection) and then filled: its lines are read
    as a first read would (lines from 1, exactly the bytes listed), without looking before its first byte
    (which failed: 'cannot look into f.jsonl: [Errno 22] Invalid argument')."""
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"")
    state, root = {}, f"{tmp_path}/"
    for _ in range(2):
        first = new_settled_files([(str(path), 0, 1.0)], state, root)
    assert first == [((str(path), "f.jsonl", "jsonl", ()), 0, None, 1)]
    path.write_bytes(b'{"text": "x"}\n{"text": "y"}\n')
    for _ in range(2):
        again = new_settled_files([(str(path), 28, 2.0)], state, root)
    assert again == [((str(path), "f.jsonl", "jsonl", ()), 0, 28, 1)]
    assert "cannot look into" not in caplog.text


class TestNearIndex:
    CONFIG = DedupConfig()

    def sig(self, text):
        return minhash_signature(shingles(dedup_key(text)), self.CONFIG.num_perm, self.CONFIG.seed)

    def index(self):
        return NearIndex(self.CONFIG.threshold, *lsh_params(self.CONFIG.threshold, self.CONFIG.num_perm))

    def test_first_arrival_kept_later_near_copy_points_at_it(self):
        index = self.index()
        assert index.add("a", "A", self.sig(seed_text(0)), 100) is None
        root, similarity = index.add("b", "B", self.sig(near_copy(seed_text(0))), 100)
        assert root == "A" and similarity >= 0.8
        assert index.add("c", "C", self.sig(seed_text(1)), 100) is None

    def test_chains_resolve_to_the_kept_root(self):
        index = self.index()
        first = seed_text(3)
        second = near_copy(first)
        third = near_copy(near_copy(second).replace("(updated with new details)", "(corrected)"))
        index.add("a", "A", self.sig(first), 100)
        index.add("b", "B", self.sig(second), 100)
        decision = index.add("c", "C", self.sig(third), 100)
        assert decision is not None and decision[0] == "A"

    def test_expire_forgets_and_rebuild_restores(self):
        index = self.index()
        index.add("a", "A", self.sig(seed_text(0)), 50)
        index.add("b", "B", self.sig(seed_text(1)), 150)
        restored = NearIndex.rebuild(index.threshold, index.bands, index.rows,
                                     [tuple(e) for e in index.entries.values()])
        assert restored.add("x", "X", self.sig(near_copy(seed_text(0))), 200)[0] == "A"
        assert index.expire(100) == 1 and set(index.entries) == {"b"} and index.next_expiry() == 150
        assert index.add("y", "Y", self.sig(near_copy(seed_text(0))), 200) is None  # A was forgotten


    def windowed(self):
        return NearIndex(self.CONFIG.threshold, *lsh_params(self.CONFIG.threshold, self.CONFIG.num_perm),
                         window_days=self.CONFIG.near_window_days)

    def fp(self, text):
        items = shingles(dedup_key(text))
        return minhash_signature(items, self.CONFIG.num_perm, self.CONFIG.seed), shingle_sketch(items)

    def test_near_copies_further_apart_than_the_window_do_not_merge(self):
        """As in batch: a text reused months later is a new story, unless the dates are unknown."""
        index = self.windowed()
        (signature, sketch), (copy_signature, copy_sketch) = self.fp(seed_text(0)), self.fp(near_copy(seed_text(0)))
        assert index.add("a", "A", signature, 100, sketch, "2024-01-01") is None
        assert index.add("b", "B", copy_signature, 100, copy_sketch, "2024-06-01T00:00:00") is None
        assert index.add("c", "C", copy_signature, 100, copy_sketch, "2024-01-20")[0] == "A"
        assert index.add("d", "D", copy_signature, 100, copy_sketch, None)[0] == "A"

    def test_similarity_is_batch_verification_on_the_sketches(self):
        index = self.windowed()
        signature, sketch = self.fp(seed_text(2))
        copy_signature, copy_sketch = self.fp(near_copy(seed_text(2)))
        index.add("a", "A", signature, 100, sketch)
        root, similarity = index.add("b", "B", copy_signature, 100, copy_sketch)
        assert root == "A" and similarity == round(sketch_jaccard(sketch, copy_sketch), 4)
        restored = NearIndex.rebuild(index.threshold, index.bands, index.rows,
                                     [tuple(e) for e in index.entries.values()], index.window_days)
        assert restored.entries["a"].sketch == sketch and restored.window_days == self.CONFIG.near_window_days


# ---------------------------------------------------------------------------------------------------------
# TestStream: stateful dedup across windows, retention, late data, windowed writes
# ---------------------------------------------------------------------------------------------------------

_COLLECTED: dict = defaultdict(list)


class _Collect(beam.DoFn):
    def __init__(self, key: str, table: str):
        self.key, self.table = key, table

    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        _COLLECTED[self.key].append((self.table, element, float(timestamp)))


def streaming_options() -> PipelineOptions:
    return PipelineOptions(["--streaming", "--runner=BundleBasedDirectRunner"])


def article(doc_id: str, text: str, lang: str = "en") -> Article:
    return Article(doc_id=doc_id, source_location=f"in.jsonl:{doc_id}", format="text", text=text, lang=lang)


def run_dedup(stream: TestStream, key: str, retention: float = 7 * 86400, near: bool = True) -> dict:
    """Runs StatefulDedup over a TestStream of articles; returns {doc_id: decision}."""
    _COLLECTED.pop(key, None)
    with beam.Pipeline(options=streaming_options()) as p:
        out = p | stream | StatefulDedup(DedupConfig(near=near), retention)
        for table in ("documents", "duplicates", "rejected"):
            _ = out[table] | f"Collect{table}" >> beam.ParDo(_Collect(key, table))
    decisions = {}
    for table, element, _ in _COLLECTED.pop(key):
        if table == "documents":
            decisions[element.doc_id] = "kept"
        elif table == "duplicates":
            decisions[element.doc_id] = (element.kind, element.duplicate_of)
        else:
            decisions.setdefault(element.doc_id + "#rejected", element.reason)
    return decisions


def at(element, seconds):
    return window.TimestampedValue(element, seconds)


def documents_stream(*timed: tuple) -> TestStream:
    """(article, second) pairs -> a TestStream of each article as a document with its read marker at that
    second, then the watermark to the end: what a stream's writer sees of a few clean stories."""
    events = [at(event, second) for article, second in timed for event in (("documents", article), (READ, None))]
    return TestStream(coder=beam.coders.PickleCoder()).add_elements(events).advance_watermark_to_infinity()


def test_exact_copy_an_hour_later_is_still_a_duplicate():
    stream = (TestStream(coder=beam.coders.PickleCoder())
              .add_elements([at(article("a", ARTICLE_EN), 0)])
              .advance_watermark_to(3600)
              .add_elements([at(article("b", ARTICLE_EN + "\n\n"), 3600)])
              .advance_watermark_to_infinity())
    assert run_dedup(stream, "later") == {"a": "kept", "b": ("exact", "a")}


@pytest.mark.parametrize("cache_size", [4, 0], ids=["cached-index", "index-rebuilt-from-state"])
def test_near_copy_in_a_later_window_and_its_exact_copy_point_at_the_root(monkeypatch, cache_size):
    import wirewash.transforms.stateful_dedup as stateful_dedup

    monkeypatch.setattr(stateful_dedup, "_INDEX_CACHE_SIZE", cache_size)  # 0: state is the only memory
    text = seed_text(0)
    stream = (TestStream(coder=beam.coders.PickleCoder())
              .add_elements([at(article("a", text), 10)])
              .advance_watermark_to(100)
              .add_elements([at(article("b", near_copy(text)), 100), at(article("c", ARTICLE_DE, "de"), 101)])
              .advance_watermark_to(200)
              .add_elements([at(article("d", near_copy(text)), 200)])
              .advance_watermark_to_infinity())
    decisions = run_dedup(stream, "near")
    assert decisions["a"] == "kept" and decisions["c"] == "kept"
    assert decisions["b"] == ("near", "a")
    assert decisions["d"] == ("near", "a")  # exact copy of a near duplicate: points at the kept root


def test_out_of_order_event_times_first_arrival_wins():
    stream = (TestStream(coder=beam.coders.PickleCoder())
              .add_elements([at(article("late-published", ARTICLE_EN), 50)])
              .add_elements([at(article("early-published", ARTICLE_EN), 5)])
              .advance_watermark_to_infinity())
    assert run_dedup(stream, "order") == {"late-published": "kept", "early-published": ("exact", "late-published")}


def test_watermark_past_the_retention_clears_the_state():
    stream = (TestStream(coder=beam.coders.PickleCoder())
              .add_elements([at(article("a", seed_text(1)), 0), at(article("id1", ARTICLE_VI, "vi"), 0)])
              .advance_watermark_to(50)
              .add_elements([at(article("b", seed_text(1)), 50)])  # within retention: duplicate
              .advance_watermark_to(500)  # retention (100 s) of everything above has passed
              .add_elements([at(article("c", seed_text(1)), 500), at(article("d", near_copy(seed_text(1))), 501),
                             at(article("id1", ARTICLE_DE, "de"), 502)])
              .advance_watermark_to_infinity())
    decisions = run_dedup(stream, "retention", retention=100)
    assert decisions["a"] == "kept" and decisions["b"] == ("exact", "a")
    assert decisions["c"] == "kept", "the hash and index state of 'a' should have expired"
    assert decisions["d"] == ("near", "c")
    assert "id1#rejected" not in decisions, "the doc_id state should have expired"


def test_reused_id_is_rejected_and_exact_only_mode():
    stream = (TestStream(coder=beam.coders.PickleCoder())
              .add_elements([at(article("a", ARTICLE_EN), 0), at(article("a", ARTICLE_DE, "de"), 1),
                             at(article("b", ARTICLE_EN), 2), at(article("c", near_copy(seed_text(2))), 3),
                             at(article("d", seed_text(2)), 4)])
              .advance_watermark_to_infinity())
    decisions = run_dedup(stream, "ids", near=False)
    assert decisions["a"] == "kept" and decisions["a#rejected"] == "duplicate_id"
    assert decisions["b"] == ("exact", "a")
    assert decisions["c"] == "kept" and decisions["d"] == "kept"  # no near dedup asked


def _route(element):
    kind, value = element
    if kind == READ:
        yield beam.pvalue.TaggedOutput(READ, 1)
    else:
        yield beam.pvalue.TaggedOutput(kind, value)


def write_test_stream(events, lake, staging: str, **windowed) -> None:
    """Runs a TestStream of (table or READ, value) events through WriteWindowedLake into `lake` (windows of
    10 s, 60 s of lateness; `windowed` adds or overrides its arguments: partition_by, dedup, run...)."""

    with beam.Pipeline(options=streaming_options()) as p:
        routed = p | events | beam.FlatMap(_route).with_outputs(READ, "documents", "duplicates", "rejected")
        _ = {t: routed[t] for t in ("documents", "duplicates", "rejected", READ)} | WriteWindowedLake(
            str(lake), staging, **{"window_seconds": 10, "allowed_lateness": 60, **windowed})


def test_windowed_lake_late_pane_empty_windows_and_summary(tmp_path):
    """Rows land in files per window and pane (a late record gets its own file, nothing overwritten), empty
    windows write nothing, and the running summary reconciles with the committed files."""
    lake = tmp_path / "lake"
    doc = lambda i, lang="en", day="2024-03-0": article(f"d{i}", f"text {i}", lang)._replace(  # noqa: E731
        published_at=f"{day}{i % 9 + 1}T00:00:00+00:00")
    dup = Duplicate("x1", "d1", "exact", 1.0, "in.jsonl:9")
    rej = Rejection(None, "in.jsonl:7", "read", "bad_json")
    stream = (TestStream(coder=beam.coders.PickleCoder())
              .add_elements([at(("documents", doc(1)), 1), at(("documents", doc(2, "de")), 2),
                             at(("duplicates", dup), 3), at(("rejected", rej), 3)]
                            + [at((READ, None), t) for t in (1, 2, 3, 3)])
              .advance_watermark_to(30)  # windows [0,10) fires; [10,20) and [20,30) stay empty
              .add_elements([at(("documents", doc(10)), 5), at((READ, None), 5)])  # late, same folder as d1
              .advance_watermark_to(45)
              .add_elements([at(("documents", doc(4)), 44), at((READ, None), 44)])
              .advance_watermark_to_infinity())
    staging = staging_of(str(lake), "test")
    write_test_stream(stream, lake, staging)
    summary = finalize_lake(str(lake), staging)
    names = sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet"))
    windows = {n.rsplit("/", 1)[-1].split("-p")[0] for n in names}
    assert windows == {"part-19700101T000000Z-19700101T000010Z", "part-19700101T000040Z-19700101T000050Z"}
    assert any("-p0001-" in n for n in names), f"the late record should be in a second pane: {names}"
    assert len(names) == len(set(names))
    # the manifest lists exactly the committed files (the same format as batch lakes)
    assert sorted(f for t in ("documents", "duplicates", "rejected") for f in summary["files"][t]) == names
    assert sorted(r["doc_id"] for r in lake_rows(lake, "documents")) == ["d1", "d10", "d2", "d4"]
    assert {(r["lang"], str(r["date"])) for r in lake_rows(lake, "documents", where="WHERE doc_id = 'd2'")} == {
        ("de", "2024-03-03")}
    assert summary["reconciled"] and summary["records_read"] == 6
    assert summary["files_rows"] == {"documents": 4, "duplicates": 1, "rejected": 1}
    assert summary["streaming"]["final"] and summary["streaming"]["panes"] >= 3
    assert not (lake / "_staging").exists()


def test_the_running_summary_never_counts_rows_whose_files_are_not_in_place(tmp_path, monkeypatch):
    """At the moment each running `_SUMMARY.json` is written, every row it counts is in a committed file it
    lists (on time and late panes, several windows, every table and the index). Before panes were committed
    in one step, the summary was written by a branch unordered with the file sink's renames, and this failed."""
    import pyarrow.parquet as pq

    from wirewash.pipeline import windowed_lake

    lake = tmp_path / "lake"
    seen = []
    real_write = windowed_lake.write_summary

    def checked_write(output, staging, summary):
        on_disk = {t: sorted(p.relative_to(lake).as_posix() for p in (lake / t).rglob("*.parquet"))
                   for t in ("documents", "duplicates", "rejected")}
        listed = summary["files"]
        rows = {t: sum(pq.ParquetFile(lake / rel).metadata.num_rows for rel in listed[t] if (lake / rel).exists())
                for t in on_disk}
        seen.append((summary["records_read"], {t: summary[t] for t in on_disk}, rows,
                     all((lake / rel).exists() for t in on_disk for rel in listed[t])))
        real_write(output, staging, summary)

    monkeypatch.setattr(windowed_lake, "write_summary", checked_write)
    doc = lambda i, t: at(("documents", article(f"d{i}", f"text {i}")._replace(  # noqa: E731
        published_at=f"2024-03-0{i % 9 + 1}T00:00:00+00:00")), t)
    events = TestStream(coder=beam.coders.PickleCoder())
    for w in range(4):  # four windows of 10 s: documents, a duplicate, a rejection, records read
        t = w * 10 + 1
        events = (events.add_elements([doc(w * 10 + k, t) for k in range(3)] + [
            at(("duplicates", Duplicate(f"x{w}", f"d{w * 10}", "exact", 1.0, f"in.jsonl:{w}")), t),
            at(("rejected", Rejection(None, f"in.jsonl:r{w}", "read", "bad_json")), t)]
            + [at((READ, None), t)] * 5).advance_watermark_to(w * 10 + 12))
    events = (events.add_elements([doc(99, 5), at((READ, None), 5)])  # late, in the first window
              .advance_watermark_to_infinity())
    staging = staging_of(str(lake), "test")
    write_test_stream(events, lake, staging, dedup=DedupConfig())
    assert len(seen) >= 5
    for read, counted, rows, all_listed_exist in seen:
        assert all_listed_exist and counted == rows, (read, counted, rows)
    assert seen[-1][0] == 21 and seen[-1][1] == {"documents": 13, "duplicates": 4, "rejected": 4}
    assert any("-p0001-" in p.name for p in (lake / "documents").rglob("*.parquet"))  # the late pane's file
    assert finalize_lake(str(lake), staging, dedup=DedupConfig())["reconciled"]


@pytest.mark.parametrize("record_at", ["end", "panes_and_end"])
def test_a_run_record_given_at_the_end_keeps_the_streams_panes(tmp_path, record_at):
    """Panes committed without a run record (a library user's stream) and the record given to `finalize_lake`
    only: the final summary still counts the stream's panes, and `runs` gets one record carrying the stream's
    counts, as when the panes carried it too."""
    lake = tmp_path / "lake"
    events = (TestStream(coder=beam.coders.PickleCoder())
              .add_elements([at(("documents", article("a", ARTICLE_EN)), 1), at((READ, None), 1)])
              .advance_watermark_to(12)
              .add_elements([at(("documents", article("b", ARTICLE_DE, "de")), 15), at((READ, None), 15),
                             at((READ, None), 15), at(("rejected", Rejection(None, "in.jsonl:r", "read", "bad_json")), 15)])
              .advance_watermark_to_infinity())
    run = {"run_id": "late", "mode": "streaming"}
    staging = staging_of(str(lake), "late")
    write_test_stream(events, lake, staging, **({"run": run} if record_at == "panes_and_end" else {}))
    final = finalize_lake(str(lake), staging, run=run)
    assert final["streaming"]["panes"] == 2 and final["reconciled"] and final["ok"]
    assert (final["records_read"], final["documents"], final["rejected"]) == (3, 2, 1)
    (record,) = final["runs"]
    assert record["run_id"] == "late" and record["ok"]
    assert (record["records_read"], record["documents"], record["rejected"]) == (3, 2, 1)


def test_finalize_flags_rows_missing_from_the_files(tmp_path):
    """The final check compares the running counts with the committed files: a lost file is not reconciled."""
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "_SUMMARY.json").write_text(json.dumps(
        {"records_read": 1, "documents": 1, "duplicates": 0, "rejected": 0, "reconciled": True,
         "streaming": {"panes": 1, "last_window_end": None, "final": False}}))
    summary = finalize_lake(str(lake), staging_of(str(lake), "none"))
    assert summary["reconciled"] is False and summary["files_rows"]["documents"] == 0


# ---------------------------------------------------------------------------------------------------------
# The real CLI, streaming, end to end
# ---------------------------------------------------------------------------------------------------------

def parity_records() -> list:
    """Distinct articles, exact copies (whitespace, trailing boilerplate), near copies, a reused id, bad lines."""
    records = [{"id": f"seed{i}", "url": f"https://s{i}.example/a", "published": f"2024-02-0{i + 1}T10:00:00Z",
                "text": seed_text(i)} for i in range(5)]
    records += [{"id": "en", "published": "2024-02-01T09:00:00Z", "text": ARTICLE_EN},
                {"id": "de", "published": "2024-02-02T09:00:00Z", "text": ARTICLE_DE}, {"id": "vi", "text": ARTICLE_VI}]
    records += [
        {"id": "seed0-copy", "published": "2024-01-30T10:00:00Z", "text": seed_text(0).replace("\n", "\n\n")},
        {"id": "seed1-near", "text": near_copy(seed_text(1))},
        {"id": "seed1-near-copy", "text": near_copy(seed_text(1)) + "\n"},
        {"id": "en-copy", "text": ARTICLE_EN + "\n\nRead more: Other news"},
        # published before the original, within the batch near-copy window (30 days)
        {"id": "seed4-near", "published": "2024-01-20T00:00:00Z", "text": near_copy(seed_text(4))},
        # A reused id: batch keeps the earliest published, streaming the first arrival; here they agree.
        {"id": "de", "published": "2024-02-03T09:00:00Z", "text": seed_text(3) + " Different content, same id."},
        "{broken json",
        {"id": "empty", "text": "   "},
    ]
    return records


def clusters(lake: Path) -> set:
    """Duplicate clusters as sets of source locations (which copy is kept does not matter)."""
    docs = {r["doc_id"]: r["source_location"] for r in lake_rows(lake, "documents", "doc_id, source_location")}
    groups = {doc_id: {loc} for doc_id, loc in docs.items()}
    for row in lake_rows(lake, "duplicates", "duplicate_of, source_location"):
        groups[row["duplicate_of"]].add(row["source_location"])
    return {frozenset(g) for g in groups.values()}


def start_stream(watch: Path, lake: Path, *extra) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "wirewash.pipeline.cli", "run", "--streaming", "--input", f"{watch}/*.jsonl",
           "--output", str(lake), "--window_seconds", "2", "--poll_interval", "0.3", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def drop(watch: Path, name: str, records: list) -> None:
    """Writes a file beside the watched pattern and renames it in: the watcher never sees half a file."""
    tmp = write_jsonl(watch / f".{name}.part", records)
    os.rename(tmp, watch / name)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 60.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the stream exited early ({proc.returncode}) waiting for {what}:\n{err[-3000:]}")
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"timed out waiting for {what}:\n{err[-3000:]}")


def committed_summary(lake: Path) -> dict:
    try:
        return json.loads((lake / "_SUMMARY.json").read_text())
    except (OSError, ValueError):
        return {}


def stop(proc: subprocess.Popen, sig: int) -> tuple[int, str, str]:
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the stream did not drain after {signal.Signals(sig).name}:\n{err[-3000:]}")
    return proc.returncode, out, err


def visible_temporary_files(lake: Path) -> list:
    return [p for p in lake.rglob("*") if p.is_file() and (
        p.suffix != ".parquet" and p.name not in ("_SUMMARY.json", "_WIREWASH_LAKE") or any(part.startswith((".", "_staging"))
                                                                    for part in p.relative_to(lake).parts))]


@pytest.mark.slow
def test_cli_streaming_end_to_end(tmp_path):
    watch, lake = tmp_path / "incoming", tmp_path / "lake"
    watch.mkdir()
    proc = start_stream(watch, lake)
    try:
        drop(watch, "first.jsonl", [{"id": "a", "text": ARTICLE_EN}, {"id": "b", "text": seed_text(0)},
                                    "not json"])
        wait_for(lambda: list((lake / "documents").rglob("*.parquet")), proc, what="the first Parquet files")
        wait_for(lambda: committed_summary(lake).get("records_read") == 3, proc, what="the first window")
        from wirewash.pipeline.query import run_query
        _, rows = run_query(str(lake), "SELECT doc_id FROM documents ORDER BY doc_id")
        assert rows == [("a",), ("b",)]
        # An exact and a near copy arriving windows later, a reused id, and a new article.
        drop(watch, "second.jsonl", [{"id": "a-again", "text": ARTICLE_EN + "\n"},
                                     {"id": "b-near", "text": near_copy(seed_text(0))},
                                     {"id": "a", "text": ARTICLE_DE}, {"id": "c", "text": ARTICLE_VI}])
        wait_for(lambda: committed_summary(lake).get("records_read") == 7, proc, what="the second file")
    finally:
        code, out, err = stop(proc, signal.SIGINT)
    assert code == 0, err[-3000:]
    final = committed_summary(lake)
    assert "draining" in err and "7 records read -> 3 documents, 2 duplicates, 2 rejected" in err
    lines = err.splitlines()
    assert lines[0].startswith(f"wirewash: watching {watch}/*.jsonl; windows of 2 s, the first closes in ~")
    windows = [line for line in lines if line.startswith("wirewash: window to ")]  # one per committed pane
    assert len(windows) == final["streaming"]["panes"] >= 2
    assert sum(int(line.split(": ")[2].split(" records")[0]) for line in windows) == 7
    assert final["reconciled"] and final["streaming"]["final"]
    assert [(r["mode"], r["records_read"]) for r in final["runs"]] == [("streaming", 7)]
    listed = [f for t in ("documents", "duplicates", "rejected") for f in final["files"][t]] + final["index"]["files"]
    assert sorted(listed) == sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet"))
    assert final["index"]["rows"] == 3  # the dedup index of the stream's documents: a batch append can follow
    assert final["records_read"] == final["documents"] + final["duplicates"] + final["rejected"] == 7
    assert final["files_rows"] == {"documents": 3, "duplicates": 2, "rejected": 2}
    con = duckdb.connect()
    dups = dict(con.execute(f"SELECT doc_id, duplicate_of FROM read_parquet('{lake}/duplicates/*.parquet')")
                .fetchall())
    assert dups == {"a-again": "a", "b-near": "b"}
    reasons = sorted(r[0] for r in con.execute(f"SELECT reason FROM read_parquet('{lake}/rejected/*.parquet')")
                     .fetchall())
    assert reasons == ["bad_json", "duplicate_id"]
    assert visible_temporary_files(lake) == []


@pytest.mark.slow
def test_quiet_stream_prints_no_lines(tmp_path):
    """--quiet: no first line, no window line, no "draining" notice, no summary (the lake is written all the
    same); nothing at all on stderr for a stream drained by Ctrl-C."""
    watch, lake = tmp_path / "incoming", tmp_path / "lake"
    watch.mkdir()
    proc = start_stream(watch, lake, "--quiet")
    try:
        drop(watch, "first.jsonl", [{"id": "a", "text": ARTICLE_EN}, "not json"])
        wait_for(lambda: committed_summary(lake).get("records_read") == 2, proc, what="the first window")
    finally:
        code, out, err = stop(proc, signal.SIGINT)
    assert code == 0, err[-3000:]
    assert out == "" and err == "", err
    assert committed_summary(lake)["reconciled"]


@pytest.mark.slow
def test_a_writer_pausing_longer_than_two_polls_loses_nothing(tmp_path):
    """A file written in place (no rename), whose writer stops for ten polls at a line end, then goes on: the
    first lines are read when the file settles, the rest when it settles again, each line exactly once."""
    watch, lake = tmp_path / "incoming", tmp_path / "lake"
    watch.mkdir()
    proc = start_stream(watch, lake)
    from tests.data.make_hostile import STORIES
    records = [{"id": f"p{i}", "text": STORIES[i]} for i in range(6)]
    try:
        with open(watch / "slow.jsonl", "w") as handle:
            for record in records[:3]:
                handle.write(json.dumps(record) + "\n")
            handle.flush()
            wait_for(lambda: committed_summary(lake).get("records_read") == 3, proc, what="the first half")
            time.sleep(3.0)  # ten polls of 0.3 s: long settled, and read
            for record in records[3:]:
                handle.write(json.dumps(record) + "\n")
        wait_for(lambda: committed_summary(lake).get("records_read") == 6, proc, what="the appended lines")
    finally:
        code, out, err = stop(proc, signal.SIGINT)
    assert code == 0, err[-3000:]
    final = committed_summary(lake)
    assert final["reconciled"] and final["records_read"] == 6
    found = sorted(r["source_location"] for table in ("documents", "duplicates", "rejected")
                   for r in lake_rows(lake, table, "source_location"))
    assert found == [f"slow.jsonl:{n}" for n in range(1, 7)]


@pytest.mark.slow
def test_batch_and_streaming_agree_on_documents_and_clusters(tmp_path):
    records = parity_records()
    batch_in, watch = tmp_path / "batch", tmp_path / "watch"
    batch_in.mkdir()
    watch.mkdir()
    write_jsonl(batch_in / "news.jsonl", records)
    assert main(["run", "--input", str(batch_in / "news.jsonl"), "--output", str(tmp_path / "batch_lake"),
                 "--quiet"]) == 0
    stream_lake = tmp_path / "stream_lake"
    proc = start_stream(watch, stream_lake)
    try:
        drop(watch, "news.jsonl", records)
        wait_for(lambda: committed_summary(stream_lake).get("records_read") == len(records), proc,
                 what="all records")
    finally:
        code, _, err = stop(proc, signal.SIGTERM)
    assert code == 0, err[-3000:]
    batch, stream = committed_summary(tmp_path / "batch_lake"), committed_summary(stream_lake)
    for key in ("records_read", "documents", "duplicates", "rejected"):
        assert batch[key] == stream[key], key
    assert stream["documents"] == 8 and stream["duplicates"] == 5
    # Which copy is kept may differ (earliest published in batch, first arrival in streaming) ...
    kept = lambda lake: {r["doc_id"] for r in lake_rows(lake, "documents", "doc_id")}  # noqa: E731
    assert "seed0-copy" in kept(tmp_path / "batch_lake") and "seed0" in kept(stream_lake)
    # ... the clusters may not.
    as_ids = lambda lake: {frozenset(loc.split(":")[-1] for loc in c) for c in clusters(lake)}  # noqa: E731
    assert as_ids(tmp_path / "batch_lake") == as_ids(stream_lake)


@pytest.mark.slow
@pytest.mark.shared
def test_batch_and_streaming_agree_on_a_generated_corpus(tmp_path, shared_dir):
    """The messy generated corpus (exact, near and boilerplate copies, bad records): same counts and clusters."""
    corpus = tmp_path / "c.jsonl"
    subprocess.run([sys.executable, str(shared_dir / "tools" / "make_corpus.py"), "--pool", str(shared_dir / "corpus"),
                    "--n", "150", "--seed", "11", "--out", str(corpus), "--truth", str(tmp_path / "t.jsonl"),
                    "--quiet"], check=True)
    n = sum(1 for _ in open(corpus, "rb"))
    assert main(["run", "--input", str(corpus), "--output", str(tmp_path / "batch_lake"), "--quiet"]) == 0
    watch, stream_lake = tmp_path / "watch", tmp_path / "stream_lake"
    watch.mkdir()
    proc = start_stream(watch, stream_lake)
    try:
        os.link(corpus, watch / "c.jsonl")
        wait_for(lambda: committed_summary(stream_lake).get("records_read") == n, proc, timeout=90,
                 what="the whole corpus")
    finally:
        code, _, err = stop(proc, signal.SIGINT)
    assert code == 0, err[-3000:]
    batch, stream = committed_summary(tmp_path / "batch_lake"), committed_summary(stream_lake)
    assert [batch[k] for k in ("documents", "duplicates", "rejected")] == [
        stream[k] for k in ("documents", "duplicates", "rejected")]
    assert stream["duplicates"] > 10
    assert clusters(tmp_path / "batch_lake") == clusters(stream_lake)


def test_watch_files_reads_each_settled_file_once_and_stops_on_drain(tmp_path):
    """WatchFiles (the watcher used on Dataflow/Flink) on the FnApiRunner, which runs its splittable ticks
    (not in real time): several polls see the files, each is emitted once, and a drain ends the ticks."""
    import threading

    from wirewash.pipeline.watch import WatchFiles, request_drain, reset_drain

    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / "a.jsonl", [{"text": ARTICLE_EN}])
    write_jsonl(tmp_path / "in" / "b.jsonl", [{"text": ARTICLE_DE}])
    (tmp_path / "in" / "notes.md").write_text("not input")
    key = "watch"
    _COLLECTED.pop(key, None)
    reset_drain()
    timer = threading.Timer(2.0, request_drain)
    timer.start()
    try:
        with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
            _ = (p | WatchFiles(f"{tmp_path}/in/*", poll_interval=0.2)
                 | beam.ParDo(_Collect(key, "files")))
    finally:
        timer.cancel()
        reset_drain()
    assert sorted(element[0][1] for _, element, _ in _COLLECTED.pop(key)) == ["a.jsonl", "b.jsonl"]


@pytest.mark.parametrize("args,message", [
    (["--window_seconds", "0"], "--window_seconds must be"),
    (["--allowed_lateness", "-1"], "--allowed_lateness must be"),
    (["--dedup_retention", "10", "--window_seconds", "60"], "--dedup_retention"),
    (["--poll_interval", "0"], "--poll_interval must be"),
    (["--input", "b/*.jsonl"], "exactly one --input"),
])
def test_cli_rejects_bad_streaming_options_in_one_sentence(tmp_path, capsys, args, message):
    argv = ["run", "--streaming", "--input", str(tmp_path / "in" / "*.jsonl"), "--output", str(tmp_path / "lake")]
    assert main(argv + args) == 2
    assert message in capsys.readouterr().err


def test_batch_and_streaming_runs_build_one_ingest_composite(tmp_path):
    """Batch and streaming share the stages' wiring: both pipelines apply pipeline/ingest.py's IngestArticles as
    `Ingest` (only the dedup inside differs: whole-input batch dedup, stateful streaming dedup)."""
    from apache_beam.pipeline import PipelineVisitor

    import shutil

    from wirewash.pipeline.build import build_pipeline, remove_spill
    from wirewash.pipeline.ingest import IngestArticles

    class Find(PipelineVisitor):
        def __init__(self):
            self.found = {}

        def enter_composite_transform(self, node):
            self.found[node.full_label] = node.transform

    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / "a.jsonl", [{"text": ARTICLE_EN}])
    dedups = {}
    for mode in ("batch", "streaming"):
        argv = ["--input", str(tmp_path / "in" / "*.jsonl"), "--output", str(tmp_path / f"{mode}_lake")]
        pipeline = build_pipeline(PipelineOptions(argv + (["--streaming"] if mode == "streaming" else [])))
        visitor = Find()
        pipeline.visit(visitor)
        shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)  # built, never run: Beam would remove it in run()
        remove_spill(pipeline)
        assert isinstance(visitor.found["Ingest"], IngestArticles), mode
        dedups[mode] = type(visitor.found["Ingest/Dedup"]).__name__
    assert dedups == {"batch": "DeduplicateArticles", "streaming": "StatefulDedup"}
