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

What crosses is opaque: each shard's table is encoded once where it is packed (`pack_table`: Beam's own
encoding of plain values, the one these values had when they crossed as they were) and decoded where it is
merged. Beam's local FnApiRunner keeps a shuffle in the launcher, and its grouping table decodes every value
it receives into Python objects until the next stage reads them: a table of dicts, tuples and strings holds
several times its encoded size there, and every key of the run is in it at once. As bytes a table is one
object; with a `Spill` on disk (local runs: `transforms/spill.py`) the bytes are parked in the packing
process's spill file and only a 32-byte token per bundle and shard crosses, so the launcher's share no
longer grows with the keys. Without one (managed runners, Dask, streaming) the bytes cross inline.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import apache_beam as beam
import xxhash
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from wirewash.transforms.spill import Spill

__all__ = ["CombinePerKeyPacked", "CoGroupByKeyPacked", "ListPacked", "unpack_list", "shard_of_key", "pack_table",
           "unpack_table", "SHARDS", "MAX_KEYS"]

NAMESPACE = "packed"  # counters per packing step: `keys` packed, `elements` sent across the shuffle

SHARDS = 64  # hash buckets a bundle's table is split into: the unit of work after the shuffle (as dedup's)
MAX_KEYS = 50_000  # keys a bundle's table holds before it is sent on early (~25 MB of small accumulators)
_MISSING = object()
_GLOBAL = GlobalWindow()
# Beam's encoding of plain values (str, bytes, numbers, tuples, lists, dicts, sets, named tuples): the one these
# tables had when they crossed as dicts, so whatever crossed then crosses now (as in transforms/spill.py)
_PRIMITIVES = beam.coders.FastPrimitivesCoder()


def pack_table(table: dict) -> bytes:
    """A shard's {key: accumulator} as bytes (`unpack_table` gives it back, equal, types kept)."""
    return _PRIMITIVES.encode(table)


def unpack_table(data: bytes) -> dict:
    return _PRIMITIVES.decode(data)


def shard_of_key(key, shards: int) -> int:
    """The shard of a key: the same in every process (a hash of its `repr`, not Python's salted `hash`)."""
    return xxhash.xxh3_64_intdigest(repr(key).encode("utf-8", "backslashreplace")) % shards


class _PackFn(beam.DoFn):
    """(key, value) in the global window -> (shard, parked {key: accumulator}) per shard and bundle (or per
    `max_keys` keys): the table encoded (`pack_table`) and parked with `spill` (on disk: a token; inline: the
    bytes). With `tag`, each value is added as (tag, value); with `pairs_of`, each element gives its (key,
    value) pairs (`pairs_of(element)`), combined here without crossing to another step one pair at a time.
    (`process` takes no other argument: one with a default, `WindowParam` included, makes Beam call it
    through its slower per-window path; `_PackWindowsFn` asks for the window.)"""

    def __init__(self, combine_fn: beam.CombineFn, shards: int, max_keys: int, tag: Any = None,
                 pairs_of: Optional[Callable] = None, *, spill: Spill):
        self.combine_fn, self.shards, self.max_keys, self.tag = combine_fn, shards, max_keys, tag
        self.pairs_of, self.spill = pairs_of, spill

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
        compact, park, out = self.combine_fn.compact, self.spill.park_bytes, []
        for window, table in tables.items():
            by_shard: dict = {}
            for key, accumulator in table.items():
                by_shard.setdefault(shard_of_key(key, self.shards), {})[key] = compact(accumulator)
            Metrics.counter(NAMESPACE, "keys").inc(len(table))
            Metrics.counter(NAMESPACE, "elements").inc(len(by_shard))
            out += [WindowedValue((shard, park(pack_table(part))), window.max_timestamp(), (window,))
                    for shard, part in by_shard.items()]
        return out

    def teardown(self):
        self.combine_fn.teardown()


class _PackWindowsFn(_PackFn):
    """`_PackFn` for any windowing: each window's keys are combined apart, and sent in their window."""

    def process(self, element, window=beam.DoFn.WindowParam):
        return self._add(element, window)


class _MergeFn(beam.DoFn):
    """(shard, [parked {key: accumulator}, ...]) -> (key, output) for every key of the shard (each table
    fetched from `spill` and decoded as it is merged)."""

    def __init__(self, combine_fn: beam.CombineFn, spill: Spill):
        self.combine_fn, self.spill = combine_fn, spill

    def setup(self):
        self.combine_fn.setup()

    def process(self, item):
        merged: dict = {}
        merge, fetch = self.combine_fn.merge_accumulators, self.spill.fetch_bytes
        for parked in item[1]:
            table = unpack_table(fetch(parked))
            if not merged:  # the first table as it is (on a local run, often the only one)
                merged = table
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
            pairs_of: Optional[Callable] = None, spill: Optional[Spill] = None):
    """{label: PCollection or tuple of them} -> the merged (key, output) PCollection (`spill` None: inline)."""
    spill = spill or Spill()
    packed = []
    for label, pcolls in inputs.items():
        for i, pcoll in enumerate(pcolls if isinstance(pcolls, (tuple, list)) else (pcolls,)):
            pack = _PackFn if isinstance(pcoll.windowing.windowfn, GlobalWindows) else _PackWindowsFn
            fn = pack(combine_fn, shards, max_keys, label if tagged else None, pairs_of, spill=spill)
            packed.append(pcoll | f"Pack{label}{i or ''}" >> beam.ParDo(fn).with_output_types(Tuple[int, bytes]))
    if len(packed) > 1:
        packed = packed | "AllPacked" >> beam.Flatten()
    else:
        packed = packed[0]
    return (packed
            | "GroupShards" >> beam.GroupByKey()
            | "Merge" >> beam.ParDo(_MergeFn(combine_fn, spill)).with_output_types(Any))  # what Beam infers, not inferred


class CombinePerKeyPacked(beam.PTransform):
    """(key, value) -> (key, combined value), as `beam.CombinePerKey(combine_fn)`, with each bundle's values
    combined per key and sent on `shards` elements at a time (see the module). `combine_fn`'s output must not
    depend on the order of its inputs. With `pairs_of`, the input is any element and `pairs_of(element)` its
    (key, value) pairs: as a FlatMap before the combine, without handing Beam each pair. `spill` is where the
    packed tables wait for the shuffle (default: inline, as bytes; see the module)."""

    def __init__(self, combine_fn: beam.CombineFn, shards: int = SHARDS, max_keys: int = MAX_KEYS,
                 pairs_of: Optional[Callable] = None, spill: Optional[Spill] = None):
        super().__init__()
        if shards < 1 or max_keys < 1:
            raise ValueError(f"shards and max_keys must be at least 1, got {shards} and {max_keys}")
        self.combine_fn, self.shards, self.max_keys, self.pairs_of = combine_fn, shards, max_keys, pairs_of
        self.spill = spill

    def expand(self, pcoll):
        return _packed({"": pcoll}, self.combine_fn, self.shards, self.max_keys, False, self.pairs_of, self.spill)


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
    keys' values: for small values (ids, tokens, decisions), not whole documents. `spill` is where the packed
    tables wait for the shuffle (default: inline, as bytes; see the module)."""

    def __init__(self, shards: int = SHARDS, max_keys: int = MAX_KEYS, spill: Optional[Spill] = None):
        super().__init__()
        if shards < 1 or max_keys < 1:
            raise ValueError(f"shards and max_keys must be at least 1, got {shards} and {max_keys}")
        self.shards, self.max_keys, self.spill = shards, max_keys, spill

    def expand(self, inputs: dict):
        if not inputs:
            raise ValueError("CoGroupByKeyPacked needs at least one input")
        return _packed(dict(inputs), _TaggedLists(tuple(inputs)), self.shards, self.max_keys, tagged=True,
                       spill=self.spill)


class _ParkedListFn(beam.CombineFn):
    """values -> the tokens of parked lists that hold them all, each value once (in no set order). The
    accumulator is (values not yet parked, tokens): the values a bundle gathered are parked as one list when the
    runner sends the accumulator across (`compact`), so only tokens cross and wait in the launcher."""

    def __init__(self, spill: Spill):
        self.spill = spill

    def create_accumulator(self):
        return [], []

    def add_input(self, accumulator, value):
        accumulator[0].append(value)
        return accumulator

    def merge_accumulators(self, accumulators):
        values, tokens = [], []
        for held, parked in accumulators:
            values += held
            tokens += parked
        return values, tokens

    def compact(self, accumulator):
        held, parked = accumulator
        if not held:
            return accumulator
        return [], [*parked, self.spill.park_bytes(_PRIMITIVES.encode(held))]

    def extract_output(self, accumulator):
        return tuple(self.compact(accumulator)[1])


def unpack_list(tokens, spill: Spill) -> list:
    """The values a `ListPacked` output stands for (fetched from `spill`, the one the transform was given)."""
    return [value for token in tokens for value in _PRIMITIVES.decode(spill.fetch_bytes(token))]


class ListPacked(beam.PTransform):
    """values -> exactly one element (an empty input included): a tuple of tokens that `unpack_list` turns back
    into the list of every value, as `beam.combiners.ToList()` gives it but in no set order. What crosses the
    shuffle, and waits in the launcher as the side input that a global combine's default value makes, is a
    token per bundle, not the values: each bundle's values are encoded and parked with `spill` where they were
    gathered (on a local run, in the spill folder; default: inline, where the bytes cross instead)."""

    def __init__(self, spill: Optional[Spill] = None):
        super().__init__()
        self.spill = spill or Spill()

    def expand(self, pcoll):
        return pcoll | "Park" >> beam.CombineGlobally(_ParkedListFn(self.spill))
