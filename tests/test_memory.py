"""Memory: the local runner's processes tune glibc's malloc, and dedup's shuffles stay small."""
from __future__ import annotations

import array
import sys

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.build import MULTIPROCESS_MIN_BYTES, tune_malloc, resolve_runner
from transforms.dedup import _BandTableFn, _Key, _shared_bucket_members, shared_buckets


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_launcher_and_workers_tune_malloc():
    assert tune_malloc() is True
    runner = resolve_runner(PipelineOptions(["--direct_num_workers=2"]), 10 * MULTIPROCESS_MIN_BYTES)
    assert runner._default_environment.command_string.startswith(
        "MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=1048576 ")


def _key(i: int, bands: list[int]) -> _Key:
    loc = f"f:{i}"
    return _Key(loc, f"d{i}", None, f"{i:032x}", array.array("Q", bands).tobytes())


def test_shared_buckets_finds_every_bucket_of_several_documents():
    hashes = array.array("Q", [5, 7, 9,   5, 8, 9,   6, 8, 2**64 - 1,   1, 2, 2**64 - 1])
    assert sorted(shared_buckets(hashes, 3)) == [(0, [0, 1]), (1, [1, 2]), (2, [0, 1]), (2, [2, 3])]
    assert list(shared_buckets(array.array("Q"), 3)) == []


def test_band_table_keeps_rows_and_orders_aligned_through_partial_combines():
    combine = _BandTableFn()
    keys = [_key(i, [i % 3, 100 + i % 2]) for i in range(12)]
    parts = []
    for chunk in (keys[:5], keys[5:6], keys[6:]):  # partial accumulators, some compacted, as the runner does
        acc = combine.create_accumulator()
        for key in chunk:
            acc = combine.add_input(acc, key)
        parts.append(combine.compact(acc) if len(chunk) > 1 else acc)
    table = combine.extract_output(combine.merge_accumulators(parts))
    buckets = list(_shared_bucket_members(table, 2))
    by_band = {}
    for (band, members) in buckets:
        by_band.setdefault(band, []).append(sorted(loc for _, loc in members))
        assert all(order[2] == loc for order, loc in members)  # each row's order is its own document's
    expected0 = [sorted(f"f:{i}" for i in range(12) if i % 3 == r) for r in range(3)]
    expected1 = [sorted(f"f:{i}" for i in range(12) if i % 2 == r) for r in range(2)]
    assert sorted(by_band[0]) == sorted(expected0) and sorted(by_band[1]) == sorted(expected1)


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
    from pipeline.spill import pack_article, unpack_article
    from transforms.types import Article

    article = Article("d1", "in.jsonl:7", "text", url=None, title="Titel é", text="Körper " * 200, lang_prob=0.123456789,
                      boilerplate_lines_removed=3, removed_by_rule=(("footer", 2), ("share", 1)), other_langs=("de", "fr"))
    packed = pack_article(article)
    assert isinstance(packed, bytes)
    back = unpack_article(packed)
    assert back == article and type(back.other_langs) is tuple and type(back.removed_by_rule[0]) is tuple


def test_candidates_leave_grouped_by_child_each_pair_once():
    from transforms.dedup import _candidates_by_child, bucket_candidates

    # documents 0-3 share band 0; 0 and 1 share band 1 too: the pair (1, 0) is found twice, kept once
    keys = [_key(i, [7 if i < 4 else 100 + i, 9 if i < 2 else 200 + i]) for i in range(6)]
    combine = _BandTableFn()
    acc = combine.create_accumulator()
    for key in keys:
        acc = combine.add_input(acc, key)
    out = list(_candidates_by_child(combine.extract_output(acc), 2))
    members = sorted(o.value for o in out if hasattr(o, "tag"))
    by_child = dict(o for o in out if not hasattr(o, "tag"))
    assert members == [(f"f:{i}", "~") for i in range(4)]  # every document in a pair, with its date
    expected = bucket_candidates([(k.order, k.loc) for k in keys[:4]])
    assert sorted((child, p) for child, parents in by_child.items() for p in parents) == sorted(expected)
    assert all(len(parents) == len(set(parents)) for parents in by_child.values())
