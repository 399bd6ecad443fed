"""Memory: the local runner's processes tune glibc's malloc, and dedup's shuffles stay small."""
from __future__ import annotations

import array
import sys

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from wirewash.pipeline.runners import MULTIPROCESS_MIN_BYTES, tune_malloc, resolve_runner
from wirewash.transforms.spill import Spill
from wirewash.transforms.dedup import _KeyTableFn, _Key, _decide_from_table, equal_runs, shared_buckets


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_launcher_and_workers_tune_malloc():
    assert tune_malloc() is True
    runner = resolve_runner(PipelineOptions(["--direct_num_workers=2"]), 10 * MULTIPROCESS_MIN_BYTES)
    assert runner._default_environment.command_string.startswith(
        "MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=1048576 ")


def _key(i: int, bands: list[int]) -> _Key:
    loc = f"f:{i}"
    return _Key(loc, f"d{i:02d}", None, f"{i:032x}", array.array("Q", bands).tobytes())


def test_shared_buckets_finds_every_bucket_of_several_documents():
    hashes = array.array("Q", [5, 7, 9,   5, 8, 9,   6, 8, 2**64 - 1,   1, 2, 2**64 - 1])
    assert sorted(shared_buckets(hashes, 3)) == [(0, [0, 1]), (1, [1, 2]), (2, [0, 1]), (2, [2, 3])]
    assert list(shared_buckets(array.array("Q"), 3)) == []


def test_equal_runs_groups_rows_equal_in_every_column():
    import numpy as np

    first = np.array([3, 1, 3, 2, 1, 3], dtype=np.uint64)
    second = np.array([0, 5, 0, 0, 5, 9], dtype=np.uint64)
    assert sorted(equal_runs(first)) == [[0, 2, 5], [1, 4]]
    assert sorted(equal_runs(first, second)) == [[0, 2], [1, 4]]
    assert list(equal_runs(np.array([], dtype=np.uint64))) == []


def _table(keys, split=(5, 6), spill=None):
    """The key table of `keys`, built from partial accumulators, some compacted, as the runner does."""
    combine = _KeyTableFn(spill)
    parts = []
    for chunk in (keys[:split[0]], keys[split[0]:split[1]], keys[split[1]:]):
        acc = combine.create_accumulator()
        for key in chunk:
            acc = combine.add_input(acc, key)
        parts.append(combine.compact(acc) if len(chunk) > 1 else acc)
    return combine.extract_output(combine.merge_accumulators(parts))


def _outputs(table, bands, spill=None):
    out = list(_decide_from_table(table, bands, spill or Spill()))
    tagged = {}
    for o in out:
        tagged.setdefault(getattr(o, "tag", "by_child"), []).append(getattr(o, "value", o))
    return tagged


def test_key_table_keeps_rows_and_orders_aligned_through_partial_combines():
    # rows i and i + 6 have the same content; every row shares band 0 with i % 3 and band 1 with i % 2
    keys = [_key(i, [i % 3, 100 + i % 2])._replace(content_hash=f"{i % 6:032x}") for i in range(12)]
    out = _outputs(_table(keys), 2)
    assert sorted(out["exact"]) == sorted((f"f:{i + 6}", (keys[i].order, f"f:{i}")) for i in range(6))
    assert "decisions" not in out
    # only the six firsts are in the band table: 0, 3 share band 0 (and so on), even and odd share band 1
    assert sorted(loc for loc, _ in out["members"]) == [f"f:{i}" for i in range(6)]
    pairs = {(child, parent_loc) for child, parents in out["by_child"] for _, parent_loc in parents}
    assert ("f:3", "f:0") in pairs and ("f:4", "f:1") in pairs and ("f:2", "f:0") in pairs
    assert all(int(child[2:]) < 6 and int(parent[2:]) < 6 for child, parent in pairs)


def test_key_table_rejects_reused_ids_before_exact_copies_are_counted():
    keys = [
        _Key("f:1", "same", "2024-01-02", "1" * 32, b""),
        _Key("f:2", "same", "2024-01-01", "2" * 32, b""),   # same id, earlier: kept
        _Key("f:3", "other", "2024-01-03", "1" * 32, b""),  # same content as f:1, which is rejected: kept
        _Key("f:4", "third", "2024-01-04", "2" * 32, b""),  # same content as f:2: an exact copy of it
    ]
    out = _outputs(_table(keys, split=(1, 2)), 0)
    assert out["decisions"] == [("f:1", ("reject", "duplicate_id", "f:2"))]
    assert out["exact"] == [("f:4", (keys[1].order, "f:2"))]
    assert "by_child" not in out and "members" not in out


def test_empty_key_table_decides_nothing():
    combine = _KeyTableFn()
    assert list(_decide_from_table(combine.extract_output(combine.create_accumulator()), 11, Spill())) == []


def test_key_table_on_disk_crosses_the_runner_as_tokens_and_decides_the_same(tmp_path):
    from wirewash.transforms.spill import make_spill_dir, remove_spill_dir

    keys = [_key(i, [i % 3, 100 + i % 2])._replace(content_hash=f"{i % 6:032x}") for i in range(12)]
    folder = make_spill_dir(str(tmp_path))
    try:
        on_disk = Spill(folder)
        table = _table(keys, spill=on_disk)
        assert len(table) == 3 and all(isinstance(t, bytes) and len(t) <= 32 for t in table)
        assert _outputs(table, 2, on_disk) == _outputs(_table(keys), 2)
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


def test_candidates_leave_grouped_by_child_each_pair_once():
    from wirewash.transforms.dedup import bucket_candidates

    # documents 0-3 share band 0; 0 and 1 share band 1 too: the pair (1, 0) is found twice, kept once
    keys = [_key(i, [7 if i < 4 else 100 + i, 9 if i < 2 else 200 + i]) for i in range(6)]
    out = _outputs(_table(keys), 2)
    assert sorted(out["members"]) == [(f"f:{i}", "~") for i in range(4)]  # every document in a pair, with its date
    by_child = dict(out["by_child"])
    expected = bucket_candidates([(k.order, k.loc) for k in keys[:4]])
    assert sorted((child, p) for child, parents in by_child.items() for p in parents) == sorted(expected)
    assert all(len(parents) == len(set(parents)) for parents in by_child.values())


def test_key_table_parks_full_batches_while_adding(monkeypatch):
    import wirewash.transforms.dedup as dedup

    keys = [_key(i, [i % 3, 100 + i % 2])._replace(content_hash=f"{i % 6:032x}") for i in range(12)]
    expected = _outputs(_table(keys), 2)
    monkeypatch.setattr(dedup, "KEY_TABLE_BATCH", 4)
    combine = _KeyTableFn()
    acc = combine.create_accumulator()
    for key in keys[:10]:
        acc = combine.add_input(acc, key)
    assert len(acc[3]) == 2 and len(acc[2]) == 2  # two full batches parked, two rows pending
    for key in keys[10:]:
        acc = combine.add_input(acc, key)
    assert _outputs(combine.extract_output(acc), 2) == expected
