"""transforms/packed.py: a combine or a join packed per bundle and shard gives what Beam's own gives, sends
one element per shard across the shuffle, keeps windows, and is what the batch pipeline's per-key shuffles use."""
from __future__ import annotations

import os
import subprocess
import sys

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window
from apache_beam.utils.windowed_value import WindowedValue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirewash.transforms.dedup import DuplicateDecision, Link
from wirewash.transforms.packed import (CoGroupByKeyPacked, CombinePerKeyPacked, ListPacked, _PackFn, pack_table,
                                        shard_of_key, unpack_list, unpack_table)
from wirewash.transforms.repeated_lines import _DistinctStories
from wirewash.transforms.spill import Spill, make_spill_dir, remove_spill_dir

EXAMPLES = int(os.environ.get("WIREWASH_PACKED_EXAMPLES", "6"))
KEYS = st.one_of(st.integers(-3, 40), st.text("ab\u00e9\U0001f600", max_size=3),
                 st.tuples(st.sampled_from(["x.example", "\x00shared"]), st.integers(0, 2**64 - 1)))
PAIRS = st.lists(st.tuples(KEYS, st.integers(0, 9)), max_size=60)


def _sorted_groups(item):
    key, grouped = item
    return key, {tag: sorted(values) for tag, values in grouped.items()}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(pairs=PAIRS, shards=st.sampled_from([1, 3, 64]), max_keys=st.sampled_from([1, 4, 1000]),
       on_disk=st.booleans())
def test_packed_combine_and_join_give_what_beams_own_give(pairs, shards, max_keys, on_disk):
    """Whatever the shards, however often a bundle's table is sent on early (`max_keys` 1: every key), and
    whether the packed tables cross inline or parked in a spill folder, the packed combine equals
    `CombinePerKey` (a sum, and the learning's capped distinct count) and the packed join equals
    `CoGroupByKey` (values compared sorted: neither promises an order)."""
    folder = make_spill_dir() if on_disk else None
    try:
        _check_against_beams_own(pairs, shards, max_keys, Spill(folder))
    finally:
        remove_spill_dir(folder)


def _check_against_beams_own(pairs, shards, max_keys, spill):
    other = [(key, value * 10) for key, value in pairs[::2]]
    with TestPipeline(runner="FnApiRunner") as p:
        a = p | "A" >> beam.Create(pairs)
        b = p | "B" >> beam.Create(other)
        stories = a | beam.MapTuple(lambda key, value: (key, (value, f"s{value % 4}")))
        assert_that(a | "Sum" >> CombinePerKeyPacked(beam.transforms.core.CallableWrapperCombineFn(sum),
                                                     shards, max_keys, spill=spill),
                    equal_to(list(_plain_sums(pairs).items())), label="sums")
        twice = a | "Twice" >> CombinePerKeyPacked(beam.transforms.core.CallableWrapperCombineFn(sum), shards,
                                                   max_keys, pairs_of=lambda pair: [pair, pair], spill=spill)
        assert_that(twice, equal_to([(k, 2 * v) for k, v in _plain_sums(pairs).items()]), label="pairs_of")
        assert_that(stories | "Distinct" >> CombinePerKeyPacked(_DistinctStories(3), shards, max_keys, spill=spill),
                    equal_to(_plain_distinct(pairs)), label="distinct")
        packed = ({"a": a, "b": (b, p | "Empty" >> beam.Create([]))}
                  | "Packed" >> CoGroupByKeyPacked(shards, max_keys, spill=spill))
        plain = {"a": a, "b": b} | "Plain" >> beam.CoGroupByKey()
        assert_that(packed | "SortP" >> beam.Map(_sorted_groups),
                    equal_to(_plain_join(pairs, other)), label="join")
        assert_that(plain | "SortQ" >> beam.Map(_sorted_groups), equal_to(_plain_join(pairs, other)), label="ref")


def _plain_sums(pairs):
    sums: dict = {}
    for key, value in pairs:
        sums[key] = sums.get(key, 0) + value
    return sums


def _plain_distinct(pairs):
    seen: dict = {}
    for key, value in pairs:
        stories, sources = seen.setdefault(key, (set(), set()))
        stories.add(value)
        sources.add(f"s{value % 4}")
    return [(key, (min(len(stories), 3), min(len(sources), 3))) for key, (stories, sources) in seen.items()]


def _plain_join(pairs, other):
    keys = {key for key, _ in pairs} | {key for key, _ in other}
    return [(key, {"a": sorted(v for k, v in pairs if k == key), "b": sorted(v for k, v in other if k == key)})
            for key in keys]


def test_a_bundle_sends_one_element_per_shard_and_holds_at_most_max_keys():
    """1,000 distinct keys in one bundle cross as at most `shards` elements (one per shard, each holding its
    keys' accumulators) instead of 1,000; with `max_keys`, the table is sent on whenever it holds that many
    keys, so a bundle never holds more."""
    fn = _PackFn(beam.combiners.CountCombineFn(), shards=8, max_keys=10**6, spill=Spill())
    fn.setup()
    fn.start_bundle()
    assert [fn.process((f"line {i}", None)) for i in range(1000)] == [None] * 1000
    sent = fn.finish_bundle()
    assert len(sent) <= 8 and all(isinstance(out, WindowedValue) for out in sent)
    tables = [(out.value[0], unpack_table(out.value[1])) for out in sent]
    assert sorted(key for _, table in tables for key in table) == sorted(f"line {i}" for i in range(1000))
    assert all(shard_of_key(key, 8) == shard for shard, table in tables for key in table)

    bounded = _PackFn(beam.combiners.CountCombineFn(), shards=8, max_keys=100, spill=Spill())
    bounded.setup()
    bounded.start_bundle()
    early = []
    for i in range(1000):
        early += bounded.process((f"line {i % 250}", None)) or []
        assert bounded.size < 100
    early += bounded.finish_bundle()
    counts: dict = {}
    for out in early:
        for key, n in unpack_table(out.value[1]).items():
            counts[key] = counts.get(key, 0) + n
    assert counts == {f"line {i}": 4 for i in range(250)}


class _AllAtFinish(beam.DoFn):
    """Holds every element and emits them all when the bundle ends (as the lake writer's staged files)."""

    def start_bundle(self):
        self.held = []

    def process(self, element):
        self.held.append(element)

    def finish_bundle(self):
        for element in self.held:
            yield WindowedValue(element, 0, [window.GlobalWindow()])


def test_values_an_upstream_step_emits_when_its_bundle_ends_are_all_counted():
    """The packing step ends its bundle after the steps before it in the same stage: what those emit from
    `finish_bundle` is packed and sent, not lost."""
    pairs = [(f"k{i % 7}", 1) for i in range(50)]
    with TestPipeline(runner="FnApiRunner") as p:
        out = (p | beam.Create(pairs) | beam.ParDo(_AllAtFinish())
               | CombinePerKeyPacked(beam.combiners.CountCombineFn(), shards=3))
        assert_that(out, equal_to([(f"k{i}", len(range(i, 50, 7))) for i in range(7)]))


def test_each_window_is_combined_apart_and_keeps_its_window():
    events = [("a", 1, 1), ("a", 2, 5), ("a", 4, 12), ("b", 8, 13), ("b", 16, 25)]

    def with_window(item, w=beam.DoFn.WindowParam):
        return item[0], item[1], int(w.start)

    with TestPipeline(runner="FnApiRunner") as p:
        sums = (p | beam.Create(events)
                | beam.Map(lambda e: window.TimestampedValue((e[0], e[1]), e[2]))
                | beam.WindowInto(window.FixedWindows(10))
                | CombinePerKeyPacked(beam.transforms.core.CallableWrapperCombineFn(sum))
                | beam.Map(with_window))
        assert_that(sums, equal_to([("a", 3, 0), ("a", 4, 10), ("b", 8, 10), ("b", 16, 20)]))


def test_a_key_has_the_same_shard_in_every_process():
    """The shard comes from a stable hash of the key, not Python's `hash`, which is salted per process (two
    workers would send one key's values to different shards, and the key would be counted twice)."""
    keys = [("x.example", 2**63 + 5), "Đăng ký", ("removed_lines", "Share this"), 17]
    here = [shard_of_key(key, 64) for key in keys]
    code = ("from wirewash.transforms.packed import shard_of_key; "
            f"print([shard_of_key(k, 64) for k in {keys!r}])")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        assert out.strip() == repr(here)


def test_the_batch_pipelines_per_key_shuffles_are_packed(tmp_path):
    """Where nearly every key is unique (learned line keys, removed lines, dedup's last join and its link
    joins, the writer's id check and staged files), the run's graph packs per bundle and shard instead of
    one element per key; inline, dedup's join with the articles (which travel whole) stays a plain join."""
    from wirewash.pipeline.ingest import IngestArticles
    from wirewash.pipeline.lake_write import WriteLake
    from wirewash.transforms.dedup import DedupConfig
    from wirewash.transforms.spill import Spill, make_spill_dir, remove_spill_dir

    def names(spill):
        pipeline = beam.Pipeline()
        outputs = pipeline | IngestArticles([], spill=spill)
        _ = outputs | "WriteLake" >> WriteLake(str(tmp_path / "lake"), "2024-01-01T00:00:00+00:00",
                                               dedup=DedupConfig(), spill=spill)
        spills.append(_pack_and_merge_spills(pipeline))
        return {t.unique_name for t in pipeline.to_runner_api().components.transforms.values()}

    folder = make_spill_dir(str(tmp_path))
    spills: list = []
    try:
        on_disk, inline = names(Spill(folder)), names(Spill())
    finally:
        remove_spill_dir(folder)
    # on a local run every packing and merging step parks in the run's spill folder (the launcher then holds
    # tokens); inline, none does
    assert spills[0] and set(spills[0].values()) == {folder}, spills[0]
    assert any("WriteLake/ListStaged" in step for step in spills[0]), spills[0]  # the staged files' list too
    assert spills[1] and set(spills[1].values()) == {None}
    packed = ("LearnRepeatedLines/DistinctStories", "CountRemovedLines", "Dedup/JoinDecisions",
              "Dedup/EarliestParent", "Dedup/JoinExact", "Resolve/JoinTarget0", "Resolve/JoinTarget2",
              "WriteLake/JoinIds", "WriteLake/GroupByPartition")
    for step in packed:
        assert any(step in n and n.endswith("/GroupShards") for n in on_disk), step
        assert not any(step in n and "CoGroupByKeyImpl" in n for n in on_disk), step
    assert any("Dedup/JoinDecisions/CoGroupByKeyImpl" in n for n in inline)
    assert any("Dedup/JoinExact/GroupShards" in n for n in inline)  # small values: packed inline too


def test_dedup_flattens_only_packed_tables_on_disk(tmp_path):
    """On a local run a Flatten whose inputs come from different stages is a runner buffer in the launcher, one
    element per input element: inside dedup every Flatten joins only packed tables (tokens, one per bundle
    and shard), never links, decisions or keys one by one (the final and late links once met in one, a
    spike of every near and exact link at the end of the link resolution)."""
    from apache_beam.portability import common_urns

    from wirewash.pipeline.ingest import IngestArticles
    from wirewash.transforms.spill import Spill, make_spill_dir, remove_spill_dir

    folder = make_spill_dir(str(tmp_path))
    try:
        pipeline = beam.Pipeline()
        _ = pipeline | IngestArticles([], spill=Spill(folder))
        transforms = pipeline.to_runner_api().components.transforms.values()
    finally:
        remove_spill_dir(folder)
    made_by = {pcoll: t.unique_name for t in transforms for pcoll in t.outputs.values()}
    flattens = {t.unique_name: sorted(made_by[pcoll] for pcoll in t.inputs.values()) for t in transforms
                if t.spec.urn == common_urns.primitives.FLATTEN.urn and "/Dedup/" in t.unique_name}
    assert any("/Dedup/JoinExact/" in name for name in flattens), flattens  # the links' join is among them
    for name, inputs in flattens.items():
        assert name.endswith("/AllPacked") and all(i.rsplit("/", 1)[1].startswith("Pack") for i in inputs), \
            (name, inputs)


def test_what_crosses_the_shuffle_is_bytes_inline_and_a_token_on_disk(tmp_path):
    """The runner's grouping table (the launcher's, on a local run) gets one opaque value per bundle and
    shard: the shard's table encoded (inline), or a 32-byte spill token (on disk), never the table's keys and
    accumulators as Python objects; fetched and decoded, it is the shard's table."""
    pairs = [(("x.example", i), (f"{i:032x}".encode(), i)) for i in range(500)]
    folder = make_spill_dir(str(tmp_path))
    try:
        for spill in (Spill(), Spill(folder)):
            fn = _PackFn(_tagged_lists(), shards=4, max_keys=10**6, tag="article", spill=spill)
            fn.setup()
            fn.start_bundle()
            for pair in pairs:
                fn.process(pair)
            sent = [out.value for out in fn.finish_bundle()]
            assert sent and all(isinstance(value, bytes) for _, value in sent)
            if spill.on_disk:
                assert all(len(value) == 32 for _, value in sent)
            tables = {shard: unpack_table(spill.fetch_bytes(value)) for shard, value in sent}
            assert {key: value for table in tables.values() for key, value in table.items()} == \
                {key: {"article": [value]} for key, value in pairs}
            assert all(shard_of_key(key, 4) == shard for shard, table in tables.items() for key in table)

        # what a GroupByKey after the packing step groups, through the FnApiRunner
        with TestPipeline(runner="FnApiRunner") as p:
            grouped = (p | beam.Create(pairs)
                       | beam.ParDo(_PackFn(_tagged_lists(), 4, 10**6, "article", spill=Spill(folder)))
                       .with_output_types(beam.typehints.Tuple[int, bytes])
                       | beam.GroupByKey()
                       | beam.MapTuple(lambda shard, values: sorted({(type(v).__name__, len(v)) for v in values})))
            assert_that(grouped | beam.FlatMap(lambda kinds: kinds), equal_to([("bytes", 32)] * len(set(
                shard_of_key(key, 4) for key, _ in pairs))))
    finally:
        remove_spill_dir(folder)


_VALUES_OF_A_LIST = st.one_of(st.integers(), st.text(max_size=6), st.tuples(st.text(max_size=6), st.integers(0, 9)))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(values=st.lists(_VALUES_OF_A_LIST, max_size=40), bundles=st.integers(1, 4), on_disk=st.booleans())
def test_a_packed_list_holds_every_value_once_and_crosses_as_tokens(values, bundles, on_disk):
    """`ListPacked` gives exactly one element, an empty input included: tokens that `unpack_list` turns into
    every value once (as `ToList`, compared sorted: neither promises an order), whatever the bundles; on disk
    each token is 32 bytes, so no value waits in the launcher."""
    folder = make_spill_dir() if on_disk else None
    spill = Spill(folder)
    try:
        with TestPipeline(runner="FnApiRunner") as p:
            parts = [p | f"Part{i}" >> beam.Create(values[i::bundles]) for i in range(bundles)]
            listed = parts | beam.Flatten() | ListPacked(spill=spill)
            assert_that(listed | "Unpack" >> beam.Map(lambda tokens: sorted(map(repr, unpack_list(tokens, spill)))),
                        equal_to([sorted(map(repr, values))]), label="values")
            if on_disk:
                assert_that(listed | "Sizes" >> beam.Map(lambda tokens: {len(token) for token in tokens}),
                            equal_to([{32} if values else set()]), label="tokens")
    finally:
        remove_spill_dir(folder)


def test_a_bundles_list_is_parked_before_its_accumulator_crosses(tmp_path):
    """What the runner sends across for a bundle (the compacted accumulator) holds a token, not the values;
    merged accumulators keep every token, and what is still unparked is parked when the output is taken."""
    from wirewash.transforms.packed import _ParkedListFn

    folder = make_spill_dir(str(tmp_path))
    try:
        spill = Spill(folder)
        fn = _ParkedListFn(spill)
        first, second = fn.create_accumulator(), fn.create_accumulator()
        for i in range(1_000):
            (first if i % 2 else second)[0].append(("documents", f"p{i}", f"f{i}.parquet", i, 0))
        sent = fn.compact(first)
        assert sent[0] == [] and [len(token) for token in sent[1]] == [32]
        tokens = fn.extract_output(fn.merge_accumulators([sent, second]))
        assert len(tokens) == 2 and all(len(token) == 32 for token in tokens)
        assert sorted(v[3] for v in unpack_list(tokens, spill)) == list(range(1_000))
        assert fn.extract_output(fn.create_accumulator()) == ()
    finally:
        remove_spill_dir(folder)


def _tagged_lists():
    from wirewash.transforms.packed import _TaggedLists
    return _TaggedLists(("article", "decision"))


_LOCS = st.tuples(st.text(max_size=12), st.integers(0, 2**40))
_TOKENS = st.binary(max_size=40)
_ORDERS = st.tuples(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8))
_VALUES = st.one_of(
    _TOKENS, st.integers(-2**63, 2**63 - 1), st.none(),
    st.tuples(_TOKENS, st.one_of(_TOKENS, st.none())),  # dedup's parked article and prints
    st.builds(DuplicateDecision, st.text(max_size=8), st.sampled_from(["exact", "near"]),
              st.floats(0, 1, allow_nan=False)),
    st.builds(Link, _ORDERS, st.floats(0, 1, allow_nan=False), st.booleans()),
    st.tuples(_ORDERS, _LOCS, st.floats(0, 1, allow_nan=False)),  # the earliest parent (order, loc, similarity)
    st.fixed_dictionaries({"path": st.text(max_size=10), "rows": st.integers(0, 10**6)}))  # a staged file's fields
_ACCUMULATORS = st.one_of(
    st.dictionaries(st.sampled_from(["article", "decision", "link", "asks", "docs"]), st.lists(_VALUES, max_size=3),
                    max_size=3),  # _TaggedLists
    st.tuples(st.sets(st.integers(0, 2**64 - 1), max_size=4), st.sets(st.text(max_size=6), max_size=3)),  # stories
    st.integers(0, 2**40),  # counts
    _VALUES)
_TABLE_KEYS = st.one_of(_LOCS, st.text(max_size=12), st.tuples(st.text(max_size=6), st.text(max_size=12)),
                        st.integers(-3, 2**64), st.binary(max_size=8))


@settings(max_examples=max(EXAMPLES, 25), deadline=None, suppress_health_check=list(HealthCheck))
@given(table=st.dictionaries(_TABLE_KEYS, _ACCUMULATORS, max_size=8))
def test_a_packed_table_decodes_to_an_equal_table_of_the_same_types(table):
    """`pack_table` / `unpack_table` round-trip every accumulator shape the pipeline packs (tagged lists of
    tokens, decisions, links, orders and staged files' fields; the learning's sets; counts), types kept
    (named tuples stay named tuples, bytes stay bytes, sets stay sets)."""
    back = unpack_table(pack_table(table))
    assert back == table
    assert _types(back) == _types(table)


def _types(value):
    if isinstance(value, dict):
        return type(value), sorted((repr(k), _types(k), _types(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value), [_types(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return type(value), sorted(repr(_types(v)) for v in value)
    return type(value)


def _pack_and_merge_spills(pipeline) -> dict:
    """{step's full label: its spill folder} for every packing and merging step of a pipeline."""
    from wirewash.transforms.packed import _MergeFn, _ParkedListFn

    found = {}

    class Visitor(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            fn = getattr(node.transform, "fn", None)
            if isinstance(fn, (_PackFn, _MergeFn, _ParkedListFn)):
                found[node.full_label] = fn.spill.folder

        enter_composite_transform = visit_transform  # a global combine's CombineFn sits on the composite

    pipeline.visit(Visitor())
    return found
