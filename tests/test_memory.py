"""Memory: the local runner's processes tune glibc's malloc, and dedup's shuffles stay small."""
from __future__ import annotations

import array
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from apache_beam.options.pipeline_options import PipelineOptions

from wirewash.pipeline.runners import MULTIPROCESS_MIN_BYTES, tune_malloc, resolve_runner
from wirewash.transforms.spill import Spill
from wirewash.transforms.dedup import (_Key, _TableFn, _decide_bands, _decide_exact, _decide_ids, bucket_pairs,
                                       equal_runs)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_launcher_and_workers_tune_malloc():
    assert tune_malloc() is True
    runner = resolve_runner(PipelineOptions(["--direct_num_workers=2"]), 10 * MULTIPROCESS_MIN_BYTES)
    assert runner._default_environment.command_string.startswith(
        "MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=1048576 ")


def _key(i: int, bands: list[int]) -> _Key:
    loc = f"f:{i}"
    return _Key(loc, f"d{i:02d}", None, f"{i:032x}", array.array("Q", bands).tobytes())


def test_bucket_pairs_finds_every_bucket_of_several_documents():
    import numpy as np

    orders = [(f"2024-01-0{i}", f"d{i}", f"f:{i}") for i in range(1, 6)]
    rows = np.array([[0, 5], [1, 5], [0, 5], [0, 6], [1, 5]], dtype=np.uint64)  # (band, band hash)
    pairs, dates = bucket_pairs(rows, orders)
    assert pairs == {("f:3", (orders[0], "f:1")), ("f:5", (orders[1], "f:2"))}
    assert dates == {"f:1": "2024-01-01", "f:3": "2024-01-03", "f:2": "2024-01-02", "f:5": "2024-01-05"}


def test_equal_runs_groups_rows_equal_in_every_column():
    import numpy as np

    first = np.array([3, 1, 3, 2, 1, 3], dtype=np.uint64)
    second = np.array([0, 5, 0, 0, 5, 9], dtype=np.uint64)
    assert sorted(equal_runs(first)) == [[0, 2, 5], [1, 4]]
    assert sorted(equal_runs(first, second)) == [[0, 2], [1, 4]]
    assert list(equal_runs(np.array([], dtype=np.uint64))) == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2)), max_size=60), st.booleans())
def test_equal_runs_are_the_groups_of_equal_rows_in_sorted_order(rows, two):
    import numpy as np

    columns = [np.array([row[i] for row in rows], dtype=np.uint64) for i in range(2 if two else 1)]
    groups: dict = {}
    for i, row in enumerate(rows):
        groups.setdefault(row[:len(columns)], []).append(i)
    assert list(equal_runs(*columns)) == [g for _, g in sorted(groups.items()) if len(g) > 1]


def _tagged(outputs) -> dict:
    tagged = {}
    for o in outputs:
        tagged.setdefault(getattr(o, "tag", "main"), []).append(getattr(o, "value", o))
    return tagged


def _stages(keys, bands, shards=3, split=(5, 6), spill=None) -> dict:
    """Every key through the sharded tables as the runner would: per id shard, partial accumulators (some
    compacted) merged; then each step's batches grouped by the shard they name. -> {output: [values]}."""
    spill = spill or Spill()
    combine = _TableFn(spill)
    by_shard = {}
    for key in keys:
        by_shard.setdefault(int(key.doc_id[1:]) % shards if key.doc_id[1:].isdigit() else 0, []).append(key)
    out = {}
    exact_groups = {}
    for shard, chunk_keys in sorted(by_shard.items()):
        parts = []
        for chunk in (chunk_keys[:split[0]], chunk_keys[split[0]:split[1]], chunk_keys[split[1]:]):
            acc = combine.create_accumulator()
            for key in chunk:
                acc = combine.add_input(acc, key)
            parts.append(combine.compact(acc) if len(chunk) > 1 else acc)
        table = combine.extract_output(combine.merge_accumulators(parts))
        tagged = _tagged(_decide_ids((shard, table), shards, spill))
        out.setdefault("rejected", []).extend(tagged.get("rejected", []))
        for target, batch in tagged.get("main", []):
            exact_groups.setdefault(target, []).append(batch)
    band_groups = {}
    for target, batches in sorted(exact_groups.items()):
        tagged = _tagged(_decide_exact((target, batches), shards, bands, spill))
        out.setdefault("exact", []).extend(tagged.get("exact", []))
        for shard, batch in tagged.get("main", []):
            band_groups.setdefault(shard, []).append(batch)
    for target, batches in sorted(band_groups.items()):
        tagged = _tagged(_decide_bands((target, batches), spill))
        out.setdefault("members", []).extend(tagged.get("members", []))
        out.setdefault("pairs", []).extend(tagged.get("main", []))
    return {k: sorted(v) for k, v in out.items() if v}


def test_tables_keep_rows_and_orders_aligned_through_partial_combines_and_shards():
    # rows i and i + 6 have the same content; every row shares band 0 with i % 3 and band 1 with i % 2
    keys = [_key(i, [i % 3, 100 + i % 2])._replace(content_hash=f"{i % 6:032x}") for i in range(12)]
    out = _stages(keys, 2)
    assert out["exact"] == sorted((f"f:{i + 6}", keys[i].order) for i in range(6))
    assert "rejected" not in out
    # only the six firsts are in the band tables: 0, 3 share band 0 (and so on), even and odd share band 1
    assert sorted({loc for loc, _ in out["members"]}) == [f"f:{i}" for i in range(6)]
    pairs = {(child, parent_loc) for child, (_, parent_loc) in out["pairs"]}
    assert ("f:3", "f:0") in pairs and ("f:4", "f:1") in pairs and ("f:2", "f:0") in pairs
    assert all(int(child[2:]) < 6 and int(parent[2:]) < 6 for child, parent in pairs)
    for shards in (1, 2, 7):  # the shard count changes where rows meet, never what is found
        again = _stages(keys, 2, shards=shards)
        assert again["exact"] == out["exact"] and set(again["pairs"]) == set(out["pairs"])


def test_tables_reject_reused_ids_before_exact_copies_are_counted():
    from wirewash.transforms.dedup import RejectDecision

    keys = [
        _Key("f:1", "same", "2024-01-02", "1" * 32, b""),
        _Key("f:2", "same", "2024-01-01", "2" * 32, b""),   # same id, earlier: kept
        _Key("f:3", "other", "2024-01-03", "1" * 32, b""),  # same content as f:1, which is rejected: kept
        _Key("f:4", "third", "2024-01-04", "2" * 32, b""),  # same content as f:2: an exact copy of it
    ]
    out = _stages(keys, 0, split=(1, 2))
    assert out["rejected"] == [("f:1", RejectDecision("duplicate_id", "f:2"))]
    assert out["exact"] == [("f:4", keys[1].order)]
    assert "pairs" not in out and "members" not in out


def test_empty_table_decides_nothing():
    combine = _TableFn(Spill())
    assert list(_decide_ids((0, combine.extract_output(combine.create_accumulator())), 3, Spill())) == []


def test_tables_on_disk_cross_the_runner_as_tokens_and_decide_the_same(tmp_path):
    from wirewash.transforms.spill import make_spill_dir, remove_spill_dir

    keys = [_key(i, [i % 3, 100 + i % 2])._replace(content_hash=f"{i % 6:032x}") for i in range(12)]
    folder = make_spill_dir(str(tmp_path))
    try:
        on_disk = Spill(folder)
        combine = _TableFn(on_disk)
        acc = combine.create_accumulator()
        for key in keys:
            acc = combine.add_input(acc, key)
        table = combine.extract_output(acc)
        assert len(table) == 1 and all(isinstance(t, bytes) and len(t) <= 32 for t in table)
        assert _stages(keys, 2, spill=on_disk) == _stages(keys, 2)
    finally:
        remove_spill_dir(folder)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_worker_processes_start_with_the_malloc_settings(tmp_path):
    import os

    import apache_beam as beam

    out = tmp_path / "env"
    options = PipelineOptions(["--direct_num_workers=2"])
    runner = resolve_runner(options, 10 * MULTIPROCESS_MIN_BYTES)
    with beam.Pipeline(runner=runner, options=options) as p:
        _ = (p | beam.Create([1]) | beam.Map(lambda _: (os.getpid(), os.environ.get("MALLOC_ARENA_MAX"),
                                                         os.environ.get("MALLOC_MMAP_THRESHOLD_")))
             | beam.Map(lambda row, path=str(out): open(path, "w").write(repr(row))))
    pid, arenas, threshold = eval(out.read_text())
    assert pid != os.getpid() and (arenas, threshold) == ("2", "1048576")


def test_packed_articles_come_back_equal_with_their_types():
    from wirewash.transforms.spill import pack_article, unpack_article
    from wirewash.transforms.types import Article

    article = Article("d1", "in.jsonl:7", "text", url=None, title="Titel é", text="Körper " * 200, lang_prob=0.123456789,
                      boilerplate_lines_removed=3, removed_by_rule=(("footer", 2), ("share", 1)), other_langs=("de", "fr"))
    packed = pack_article(article)
    assert isinstance(packed, bytes)
    back = unpack_article(packed)
    assert back == article and type(back.other_langs) is tuple and type(back.removed_by_rule[0]) is tuple


def test_candidates_each_pair_once_per_shard():
    from wirewash.transforms.dedup import bucket_candidates

    # documents 0-3 share band 0; 0 and 1 share band 1 too: the pair (1, 0) is found twice, kept once
    keys = [_key(i, [7 if i < 4 else 100 + i, 9 if i < 2 else 200 + i]) for i in range(6)]
    out = _stages(keys, 2, shards=1)
    assert out["members"] == [(f"f:{i}", "~") for i in range(4)]  # every document in a pair, with its date
    assert out["pairs"] == sorted(bucket_candidates([(k.order, k.loc) for k in keys[:4]]))


def test_table_parks_full_batches_while_adding(monkeypatch):
    import wirewash.transforms.dedup as dedup

    keys = [_key(i, [i % 3, 100 + i % 2])._replace(content_hash=f"{i % 6:032x}") for i in range(12)]

    def table(batch_rows=None):
        combine = _TableFn(Spill(), batch_rows) if batch_rows else _TableFn(Spill())
        acc = combine.create_accumulator()
        for key in keys[:10]:
            acc = combine.add_input(acc, key)
        parked, pending = len(acc[2]), len(acc[1])
        for key in keys[10:]:
            acc = combine.add_input(acc, key)
        columns, orders = dedup._unpack_rows(combine.extract_output(acc), Spill(), "test")
        return parked, pending, columns.tolist(), orders

    _, _, columns, orders = table()
    parked, pending, batched_columns, batched_orders = table(4)
    assert (parked, pending) == (2, 2)  # two full batches parked, two rows pending
    assert (batched_columns, batched_orders) == (columns, orders) and orders == [k.order for k in keys]


def test_a_bundle_holds_at_most_key_table_pending_rows_unparked():
    """A local worker gets half the input as one bundle, and Beam's lifted combine keeps one accumulator per
    id shard until the bundle ends: all the shards' pending rows together stay under KEY_TABLE_PENDING (with
    a batch of 8,192 rows per shard they held every row of a worker's share up to ~1M records)."""
    import wirewash.transforms.dedup as dedup

    shards = dedup.SHARDS
    rows = dedup.KEY_TABLE_PENDING + 4 * shards * dedup.table_batch_rows(shards)
    combine = _TableFn(Spill(), dedup.table_batch_rows(shards))
    tables, most = {}, 0
    for i in range(rows):  # as `PGBKCVOperation.process` does: one accumulator per key (shard) all bundle long
        shard = (i * 7) % shards
        tables[shard] = combine.add_input(tables.get(shard) or combine.create_accumulator(), _key(i, [i, i + 1]))
        if i % 97 == 0:
            most = max(most, sum(len(acc[1]) for acc in tables.values()))
    assert 0 < most <= dedup.KEY_TABLE_PENDING
    assert sum(len(acc[2]) for acc in tables.values()) >= 4 * shards  # the rest parked, batch by batch
    # nothing lost: every row once, in each shard's arrival order
    out = [o for acc in tables.values() for o in dedup._unpack_rows(combine.extract_output(acc), Spill(), "t")[1]]
    assert sorted(out) == sorted(_key(i, []).order for i in range(rows))


def test_the_pipelines_id_tables_use_the_shared_bound():
    import apache_beam as beam

    import wirewash.transforms.dedup as dedup

    for shards in (dedup.SHARDS, 5):
        pipeline = beam.Pipeline()
        _ = pipeline | beam.Create([]) | "Dedup" >> dedup.DeduplicateArticles(spill=Spill(), shards=shards)
        fns = [t.transform.fn for t in pipeline.transforms_stack[0].parts[-1].parts
               if t.full_label.endswith("/IdTables")]
        assert [fn.batch_rows for fn in fns] == [dedup.table_batch_rows(shards)]
        assert fns[0].batch_rows * shards <= dedup.KEY_TABLE_PENDING


def test_worker_memory_line_counts_what_waits_in_a_data_channel():
    """`bench/memory.py --worker_heap`'s per-worker line: RSS, the data channels' backlog, the native heaps."""
    import re

    from apache_beam.portability.api import beam_fn_api_pb2
    from apache_beam.runners.worker.data_plane import _GrpcDataChannel

    from wirewash.pipeline.beam_internals import watch_data_channels
    from wirewash.pipeline.worker import _memory_line

    watch_data_channels()  # what the worker's memory log does when it starts, before the harness's channels
    channel = _GrpcDataChannel()
    channel._to_send.put(beam_fn_api_pb2.Elements.Data(instruction_id="1", transform_id="t", data=b"x" * (3 << 20)))
    line = _memory_line()
    assert re.match(r"rss=\d+ traced=\d+ channel=(\d+)/(\d+)MB", line), line
    messages, megabytes = map(int, re.search(r"channel=(\d+)/(\d+)MB", line).groups())
    assert messages >= 1 and megabytes >= 3
    if sys.platform.startswith("linux"):
        assert "malloc_used=" in line
    del channel


def test_the_band_step_reads_only_the_orders_of_shared_buckets(tmp_path):
    """A band shard holds 26 rows a document, a 64th of them all: `_VerifyBandsFn` keeps its columns and the
    orders' offsets, and reads (and decodes) only the orders of rows in buckets several documents share; it
    decoded every row's order (~0.4 KB a row as Python objects, a worker's peak growing with the corpus)."""
    import numpy as np

    import wirewash.transforms.dedup as dedup
    from wirewash.transforms.spill import make_spill_dir, remove_spill_dir

    class CountingSpill(Spill):
        read = 0

        def fetch_bytes(self, token):
            data = super().fetch_bytes(token)
            CountingSpill.read += len(data)
            return data

        def fetch_range(self, token, start, stop):
            data = super().fetch_range(token, start, stop)
            CountingSpill.read += len(data)
            return data

    folder = make_spill_dir(str(tmp_path))
    try:
        spill, batches, shared, header = CountingSpill(folder), [], [], 0
        for batch in range(4):
            ids = list(range(batch * 500, (batch + 1) * 500))
            # rows 10k and 10k + 5 share a bucket, dated 100 days apart (outside the window: no sketch is read)
            hashes = [i // 10 if i % 5 == 0 else 10**9 + i for i in ids]
            orders = [(f"2024-{1 + (i % 10 == 5) * 4:02d}-01", f"d{i}", f"f:{i}", b"t" * 48) for i in ids]
            rows = np.column_stack([np.zeros(len(ids), dtype=np.uint64), np.array(hashes, dtype=np.uint64)])
            batches.append(dedup._pack_rows(rows, orders, spill))
            shared += [order for i, order in zip(ids, orders) if i % 5 == 0]
            header += 16 + len(ids) * (2 + 1) * 8  # head (rows, width), two columns and the orders' ends
        verify = dedup._VerifyBandsFn(spill, 0.5, 30.0, 128)
        verify.start_bundle()
        CountingSpill.read = 0
        assert list(verify.process((0, batches))) == []
        orders_read = CountingSpill.read - header
        assert orders_read == sum(len(dedup._PRIMITIVES.encode(order)) for order in shared)
        assert verify.seen == {(f"f:{i + 5}", f"f:{i}") for i in range(0, 2000, 10)}  # every pair was checked
    finally:
        remove_spill_dir(folder)


def test_lazy_orders_are_the_packed_orders(tmp_path):
    import numpy as np

    import wirewash.transforms.dedup as dedup
    from wirewash.transforms.spill import make_spill_dir, remove_spill_dir

    folder = make_spill_dir(str(tmp_path))
    try:
        for spill in (Spill(), Spill(folder)):
            orders = [(None if i % 3 else "2024", f"d{i}", f"f:{i}") + ((b"x" * i,) if i % 2 else ()) for i in range(7)]
            columns = np.arange(21, dtype=np.uint64).reshape(7, 3)
            batches = [dedup._pack_rows(columns[:3], orders[:3], spill), dedup._pack_rows(columns[:0], [], spill),
                       dedup._pack_rows(columns[3:], orders[3:], spill)]
            table, lazy = dedup._unpack_rows(batches, spill, "t", lazy=True)
            assert table.tolist() == columns.tolist() and len(lazy) == 7
            assert [lazy[i] for i in range(7)] == list(lazy) == orders == dedup._unpack_rows(batches, spill, "t")[1]
            with pytest.raises(IndexError):
                lazy[7]
    finally:
        remove_spill_dir(folder)
