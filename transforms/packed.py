"""Keyed values combined per bundle and packed by shard before a shuffle: fewer, larger elements cross.

Every element that crosses a stage boundary costs Beam 5-16 µs of CPU whatever its size (encoded, buffered
and decoded by the runner; with worker processes it also crosses gRPC twice: docs/performance.md, round 3).
`beam.CombinePerKey` combines within a bundle already, but where nearly every key is unique (a line's hash, a
document's id or location) that saves nothing: each key crosses alone. Here a bundle's values are combined
per key in one table; when the bundle ends, or when the table holds `max_keys` keys, the table is split into
`shards` hash buckets and one element per shard crosses, holding that shard's accumulators. After the
shuffle each shard's tables are merged and every key's output emitted.

`CombinePerKeyPacked` gives what `beam.CombinePerKey` gives, for a CombineFn whose output does not depend on
the order of its inputs; `CoGroupByKeyPacked` what `beam.CoGroupByKey` gives (each tag's values as a list),
each input packed where it is produced, so no value crosses the Flatten that a CoGroupByKey makes.
Memory: a bundle's table holds at most `max_keys` keys; a shard's merge holds that shard's keys, about
1/`shards` of them all: the largest group, as with dedup's tables (`transforms/dedup.py`). Windows are kept:
each window's keys are combined apart, and a packed element is in the window its values were in.
Keys must have a deterministic `repr` (str, int, bytes, tuples of these): it picks the shard, the same in
every process.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import apache_beam as beam
import xxhash
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

__all__ = ["CombinePerKeyPacked", "CoGroupByKeyPacked", "shard_of_key", "SHARDS", "MAX_KEYS"]

NAMESPACE = "packed"  # counters per packing step: `keys` packed, `elements` sent across the shuffle

SHARDS = 64  # hash buckets a bundle's table is split into: the unit of work after the shuffle (as dedup's)
MAX_KEYS = 50_000  # keys a bundle's table holds before it is sent on early (~25 MB of small accumulators)
_MISSING = object()
_GLOBAL = GlobalWindow()


def shard_of_key(key, shards: int) -> int:
    """The shard of a key: the same in every process (a hash of its `repr`, not Python's salted `hash`)."""
    return xxhash.xxh3_64_intdigest(repr(key).encode("utf-8", "backslashreplace")) % shards


class _PackFn(beam.DoFn):
    """(key, value) in the global window -> (shard, {key: accumulator}) per shard and bundle (or per `max_keys`
    keys). With `tag`, each value is added as (tag, value); with `pairs_of`, each element gives its (key,
    value) pairs (`pairs_of(element)`), combined here without crossing to another step one pair at a time.
    (`process` takes no other argument: one with a default, `WindowParam` included, makes Beam call it
    through its slower per-window path; `_PackWindowsFn` asks for the window.)"""

    def __init__(self, combine_fn: beam.CombineFn, shards: int, max_keys: int, tag: Any = None,
                 pairs_of: Optional[Callable] = None):
        self.combine_fn, self.shards, self.max_keys, self.tag = combine_fn, shards, max_keys, tag
        self.pairs_of = pairs_of

    def setup(self):
        self.combine_fn.setup()

    def start_bundle(self):
        self.tables, self.size = {}, 0  # window -> {key: accumulator}; keys held in all

    def process(self, element):
        return self._add(element, _GLOBAL)

    def _add(self, element, window):
        table = self.tables.get(window)
        if table is None:
            table = self.tables[window] = {}
        create, add, tag = self.combine_fn.create_accumulator, self.combine_fn.add_input, self.tag
        for key, value in (self.pairs_of(element) if self.pairs_of is not None else (element,)):
            accumulator = table.get(key, _MISSING)
            if accumulator is _MISSING:
                accumulator = create()
                self.size += 1
            table[key] = add(accumulator, value if tag is None else (tag, value))
        return self._flush() if self.size >= self.max_keys else None

    def finish_bundle(self):
        return self._flush()

    def _flush(self) -> list:
        tables, self.tables, self.size = self.tables, {}, 0
        compact, out = self.combine_fn.compact, []
        for window, table in tables.items():
            by_shard: dict = {}
            for key, accumulator in table.items():
                by_shard.setdefault(shard_of_key(key, self.shards), {})[key] = compact(accumulator)
            Metrics.counter(NAMESPACE, "keys").inc(len(table))
            Metrics.counter(NAMESPACE, "elements").inc(len(by_shard))
            out += [WindowedValue((shard, part), window.max_timestamp(), (window,)) for shard, part in by_shard.items()]
        return out

    def teardown(self):
        self.combine_fn.teardown()


class _PackWindowsFn(_PackFn):
    """`_PackFn` for any windowing: each window's keys are combined apart, and sent in their window."""

    def process(self, element, window=beam.DoFn.WindowParam):
        return self._add(element, window)


class _MergeFn(beam.DoFn):
    """(shard, [{key: accumulator}, ...]) -> (key, output) for every key of the shard."""

    def __init__(self, combine_fn: beam.CombineFn):
        self.combine_fn = combine_fn

    def setup(self):
        self.combine_fn.setup()

    def process(self, item):
        merged: dict = {}
        merge = self.combine_fn.merge_accumulators
        for table in item[1]:
            if not merged:  # the first table as it is (on a local run, often the only one)
                merged = dict(table)
                continue
            for key, accumulator in table.items():
                held = merged.get(key, _MISSING)
                merged[key] = accumulator if held is _MISSING else merge([held, accumulator])
        extract = self.combine_fn.extract_output
        while merged:  # emptied as it goes: the shard's table is released key by key
            key, accumulator = merged.popitem()
            yield key, extract(accumulator)

    def teardown(self):
        self.combine_fn.teardown()


def _packed(inputs: dict, combine_fn: beam.CombineFn, shards: int, max_keys: int, tagged: bool,
            pairs_of: Optional[Callable] = None):
    """{label: PCollection or tuple of them} -> the merged (key, output) PCollection."""
    packed = []
    for label, pcolls in inputs.items():
        for i, pcoll in enumerate(pcolls if isinstance(pcolls, (tuple, list)) else (pcolls,)):
            pack = _PackFn if isinstance(pcoll.windowing.windowfn, GlobalWindows) else _PackWindowsFn
            fn = pack(combine_fn, shards, max_keys, label if tagged else None, pairs_of)
            packed.append(pcoll | f"Pack{label}{i or ''}" >> beam.ParDo(fn).with_output_types(Tuple[int, Any]))
    if len(packed) > 1:
        packed = packed | "AllPacked" >> beam.Flatten()
    else:
        packed = packed[0]
    return (packed
            | "GroupShards" >> beam.GroupByKey()
            | "Merge" >> beam.ParDo(_MergeFn(combine_fn)).with_output_types(Any))  # what Beam infers, not inferred


class CombinePerKeyPacked(beam.PTransform):
    """(key, value) -> (key, combined value), as `beam.CombinePerKey(combine_fn)`, with each bundle's values
    combined per key and sent on `shards` elements at a time (see the module). `combine_fn`'s output must not
    depend on the order of its inputs. With `pairs_of`, the input is any element and `pairs_of(element)` its
    (key, value) pairs: as a FlatMap before the combine, without handing Beam each pair."""

    def __init__(self, combine_fn: beam.CombineFn, shards: int = SHARDS, max_keys: int = MAX_KEYS,
                 pairs_of: Optional[Callable] = None):
        super().__init__()
        if shards < 1 or max_keys < 1:
            raise ValueError(f"shards and max_keys must be at least 1, got {shards} and {max_keys}")
        self.combine_fn, self.shards, self.max_keys, self.pairs_of = combine_fn, shards, max_keys, pairs_of

    def expand(self, pcoll):
        return _packed({"": pcoll}, self.combine_fn, self.shards, self.max_keys, False, self.pairs_of)


class _TaggedLists(beam.CombineFn):
    """(tag, value) -> {tag: [values]} for every tag (empty lists included), as `beam.CoGroupByKey` groups."""

    def __init__(self, tags: tuple):
        self.tags = tags

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, tagged):
        accumulator.setdefault(tagged[0], []).append(tagged[1])
        return accumulator

    def merge_accumulators(self, accumulators):
        merged: dict = {}
        for accumulator in accumulators:
            for tag, values in accumulator.items():
                merged.setdefault(tag, []).extend(values)
        return merged

    def extract_output(self, accumulator):
        return {tag: accumulator.get(tag, []) for tag in self.tags}


class CoGroupByKeyPacked(beam.PTransform):
    """{tag: PCollection of (key, value), or a tuple of such PCollections} -> (key, {tag: [values]}), as
    `beam.CoGroupByKey` (whose output it can replace), each input packed per bundle and shard where it is
    produced (see the module). The values of one key are held together, and a bundle holds up to `max_keys`
    keys' values: for small values (ids, tokens, decisions), not whole documents."""

    def __init__(self, shards: int = SHARDS, max_keys: int = MAX_KEYS):
        super().__init__()
        if shards < 1 or max_keys < 1:
            raise ValueError(f"shards and max_keys must be at least 1, got {shards} and {max_keys}")
        self.shards, self.max_keys = shards, max_keys

    def expand(self, inputs: dict):
        if not inputs:
            raise ValueError("CoGroupByKeyPacked needs at least one input")
        return _packed(dict(inputs), _TaggedLists(tuple(inputs)), self.shards, self.max_keys, tagged=True)
