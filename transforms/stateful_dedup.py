"""Streaming dedup: the batch decisions of `transforms/dedup.py`, made one arrival at a time with bounded state.

The rule in streaming: **the first arrival wins**. Batch sees every copy before deciding and keeps the earliest
published one; a stream cannot wait for copies that have not arrived, so the copy that reaches the pipeline
first is the document and every later copy is a duplicate pointing at it. Which copy is kept may therefore
differ from batch; the clusters (which records belong together) and the number of documents do not.

Three stateful steps, all in the global window (state would otherwise be scoped to one event-time window and
forget everything at its end):

1. keyed by `doc_id`: a second record with an id already seen is rejected (`duplicate_id`), as in batch;
2. keyed by `content_hash`: a later exact copy becomes an exact duplicate of the first;
3. keyed by one LSH index key: the near-duplicate index (MinHash bands -> the first few arrivals per band,
   as batch compares each member with the first `MAX_PARENTS_PER_BUCKET` members of a band). A candidate
   merges only as batch's would: its Jaccard similarity on the bottom-k shingle sketches reaches the
   threshold and, when both dates are known, the two were published within `near_window_days`; chains
   resolve to the kept root, and an exact copy of a near duplicate points at that root (as batch does), so every `duplicate_of`
   names a kept document. This step is one key on purpose: the decisions of different bands about one
   article must be taken in one place, in arrival order, or two copies arriving together could each be
   judged the duplicate of the other. Only fingerprints are stored (signature, sketch of at most
   `SKETCH_SIZE` hashes, date: about 4-9 KB per remembered article); the step does a few dictionary look-ups
   per article.

Retention bounds the state: every remembered id, hash and index entry is dropped by an event-time timer once
the watermark passes its arrival time + `retention_seconds`. A copy arriving after that is a new document.
"""
from __future__ import annotations

import uuid
from typing import Any, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from wirewash.transforms.dedup import (KIND_EXACT, KIND_NEAR, MAX_PARENTS_PER_BUCKET, REASON_DUPLICATE_ID, DedupConfig,
                              band_keys, days_apart, estimate_jaccard, lsh_params, minhash_signature,
                              shingle_sketch, shingles, sketch_jaccard, story_key)
from wirewash.transforms.normalize import content_hash
from wirewash.transforms.types import DOCUMENTS, DUPLICATES, REJECTED, Article, Duplicate, Rejection

__all__ = ["StatefulDedup", "NearIndex", "IndexEntry", "DEFAULT_RETENTION_SECONDS"]

NAMESPACE = "stream_dedup"
STAGE = "dedup"
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600
INDEX_KEY = "lsh"
_INDEX_CACHE: dict = {}  # state version token -> NearIndex, per process (see _NearIndexFn)
_INDEX_CACHE_SIZE = 4
FIRST, LATER = "first", "later"


# ---------------------------------------------------------------------------------------------------------
# Pure functions: the near-duplicate index
# ---------------------------------------------------------------------------------------------------------

class IndexEntry(NamedTuple):
    """One remembered arrival: its identity, its kept root (None when it is itself kept), its fingerprint."""

    loc: str
    doc_id: str
    root_doc_id: Optional[str]
    similarity: float
    signature: bytes
    bands: tuple
    expires: float  # event time (seconds) after which it is forgotten
    seq: int  # arrival order
    sketch: bytes = b""  # bottom-k shingle hashes (`shingle_sketch`), for batch's verification
    published: Optional[str] = None  # `published_at`, for batch's date window


class NearIndex:
    """LSH index of earlier arrivals, in arrival order. `add` decides and remembers; `expire` forgets.

    A candidate is judged like batch's: similarity on the sketches (the MinHash estimate when either has
    none), and no merge across more than `window_days` (0: no window) when both dates are known."""

    def __init__(self, threshold: float, bands: int, rows: int, window_days: float = 0.0):
        self.threshold, self.bands, self.rows, self.window_days = threshold, bands, rows, window_days
        self.entries: dict[str, IndexEntry] = {}
        self.buckets: dict[str, list[str]] = {}
        self.seq = 0

    def similarity(self, entry: IndexEntry, signature: bytes, sketch: bytes, published: Optional[str]) -> float:
        """How similar a remembered entry is to a new arrival; 0.0 when they are too far apart in time."""
        apart = days_apart(entry.published, published)
        if self.window_days and apart is not None and apart > self.window_days:
            return 0.0
        if entry.sketch and sketch:
            return sketch_jaccard(entry.sketch, sketch)
        return estimate_jaccard(entry.signature, signature)

    def match(self, signature: bytes, keys: list[str], sketch: bytes = b"",
              published: Optional[str] = None) -> Optional[tuple[IndexEntry, float]]:
        """The earliest-arriving remembered entry sharing a band whose similarity reaches the threshold."""
        best = None
        for key in keys:
            for loc in self.buckets.get(key, ()):
                entry = self.entries[loc]
                if best is not None and entry.seq >= best[0].seq:
                    continue
                similarity = self.similarity(entry, signature, sketch, published)
                if similarity >= self.threshold:
                    best = (entry, similarity)
        return best

    def add(self, loc: str, doc_id: str, signature: bytes, expires: float, sketch: bytes = b"",
            published: Optional[str] = None) -> Optional[tuple[str, float]]:
        """Decides one new arrival: (root doc_id, similarity to its parent) when it is a near duplicate, else
        None (kept). Either way it is remembered, so later copies can match it (chains resolve to the root)."""
        keys = band_keys(signature, self.bands, self.rows)
        found = self.match(signature, keys, sketch, published)
        root, similarity = None, 0.0
        if found:
            parent, similarity = found
            root = parent.root_doc_id or parent.doc_id
        self._remember(IndexEntry(loc, doc_id, root, round(similarity, 4) if root else 0.0, signature,
                                  tuple(keys), expires, self.seq, sketch, published))
        return (root, round(similarity, 4)) if root else None

    def _remember(self, entry: IndexEntry) -> None:
        self.entries[entry.loc] = entry
        self.seq = max(self.seq, entry.seq + 1)
        for key in entry.bands:
            bucket = self.buckets.setdefault(key, [])
            if len(bucket) < MAX_PARENTS_PER_BUCKET:  # batch compares with the first few members of a band
                bucket.append(entry.loc)

    def expire(self, now: float) -> int:
        """Forgets every entry whose retention ended at or before `now`; returns how many."""
        gone = [loc for loc, e in self.entries.items() if e.expires <= now]
        if not gone:
            return 0
        survivors = [e for e in self.entries.values() if e.expires > now]
        self.entries, self.buckets = {}, {}
        for entry in survivors:
            self._remember(entry)
        return len(gone)

    def next_expiry(self) -> Optional[float]:
        return min((e.expires for e in self.entries.values()), default=None)

    @classmethod
    def rebuild(cls, threshold: float, bands: int, rows: int, entries, window_days: float = 0.0) -> "NearIndex":
        index = cls(threshold, bands, rows, window_days)
        for entry in sorted((IndexEntry(*e) for e in entries), key=lambda e: e.seq):
            index._remember(entry)
        return index


def fingerprint(article: Article, config: DedupConfig) -> tuple[str, bytes, bytes]:
    """(content_hash, MinHash signature, shingle sketch) of an article, with the batch stage's functions and
    settings (signature and sketch empty without near dedup)."""
    key = story_key(article.text, article.title)  # the batch stage's key: body without its headline line
    if not config.near:
        return content_hash(key), b"", b""
    items = shingles(key)
    return content_hash(key), minhash_signature(items, config.num_perm, config.seed), shingle_sketch(items)


# ---------------------------------------------------------------------------------------------------------
# Beam wrappers
# ---------------------------------------------------------------------------------------------------------

class _FirstArrivalFn(beam.DoFn):
    """(key, (article, signature)) -> (FIRST, article, signature) for the first arrival of a key, else
    (LATER, article, signature, first loc, first doc_id). The key is forgotten `retention` after its first
    arrival (event time)."""

    FIRST_STATE = ReadModifyWriteStateSpec("first", PickleCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, retention_seconds: float, what: str):
        self.retention = retention_seconds
        self.what = what

    def process(self, element, timestamp=beam.DoFn.TimestampParam,
                first=beam.DoFn.StateParam(FIRST_STATE), expiry=beam.DoFn.TimerParam(EXPIRY)):
        _, (article, signature) = element
        seen = first.read()
        if seen is None:
            first.write((article.source_location, article.doc_id))
            expiry.set(Timestamp.of(float(timestamp) + self.retention))
            yield FIRST, article, signature
        else:
            Metrics.counter(NAMESPACE, f"later_{self.what}").inc()
            yield LATER, article, signature, seen[0], seen[1]

    @on_timer(EXPIRY)
    def forget(self, first=beam.DoFn.StateParam(FIRST_STATE)):
        Metrics.counter(NAMESPACE, f"expired_{self.what}").inc()
        first.clear()


def _split_ids(item):
    """First arrivals of an id go on; later ones are rejected like batch's duplicate_id."""
    if item[0] == FIRST:
        yield item[1], item[2]
        return
    _, article, _, first_loc, _ = item
    yield beam.pvalue.TaggedOutput(REJECTED, Rejection(
        article.doc_id, article.source_location, STAGE, REASON_DUPLICATE_ID,
        error=f"doc_id already used by the record at {first_loc}"))


def _exact_only(item):
    """Without near dedup: first arrivals are documents, later ones exact duplicates of the first."""
    if item[0] == FIRST:
        yield item[1]
        return
    _, article, _, _, first_doc_id = item
    yield beam.pvalue.TaggedOutput(DUPLICATES, Duplicate(article.doc_id, first_doc_id, KIND_EXACT, 1.0,
                                                         article.source_location))


class _NearIndexFn(beam.DoFn):
    """(INDEX_KEY, item from the exact step) -> documents / duplicates, through one `NearIndex`.

    State: the index entries in a bag (append-only between expiries) plus a random token naming its version.
    The index built from the bag is cached in the process under that token, so the bag is read only when the
    cache does not hold that version (another worker, a restart); an ordinary arrival costs one append. A
    bundle takes the cached index out of the cache while it changes it, so a failed bundle (whose state
    changes are dropped) cannot leave a changed index under the old token.
    """

    LOG = BagStateSpec("log", PickleCoder())
    TOKEN = ReadModifyWriteStateSpec("token", PickleCoder())
    NEXT = ReadModifyWriteStateSpec("next_expiry", PickleCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, config: DedupConfig, retention_seconds: float):
        self.config = config
        self.retention = retention_seconds
        self.bands, self.rows = lsh_params(config.threshold, config.num_perm)

    def _load(self, log, token) -> tuple[NearIndex, Optional[str]]:
        current = token.read()
        index = _INDEX_CACHE.pop(current, None) if current is not None else None
        if index is None:
            Metrics.counter(NAMESPACE, "index_rebuilds").inc()
            index = NearIndex.rebuild(self.config.threshold, self.bands, self.rows, log.read(),
                                      self.config.near_window_days)
        return index, current

    @staticmethod
    def _bump(token, index: NearIndex):
        version = uuid.uuid4().hex
        token.write(version)
        _INDEX_CACHE[version] = index
        while len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:  # oldest first: dicts keep insertion order
            _INDEX_CACHE.pop(next(iter(_INDEX_CACHE)))

    def process(self, element, timestamp=beam.DoFn.TimestampParam, log=beam.DoFn.StateParam(LOG),
                token=beam.DoFn.StateParam(TOKEN), next_expiry=beam.DoFn.StateParam(NEXT),
                expiry=beam.DoFn.TimerParam(EXPIRY)):
        _, item = element
        index, version = self._load(log, token)
        article = item[1]
        if item[0] == LATER:  # an exact copy: of the first arrival, or of that one's near root
            if version is not None:  # unchanged: back into the cache under the same version
                _INDEX_CACHE[version] = index
            first_loc, first_doc_id = item[3], item[4]
            entry = index.entries.get(first_loc)
            if entry is not None and entry.root_doc_id:
                yield beam.pvalue.TaggedOutput(DUPLICATES, Duplicate(
                    article.doc_id, entry.root_doc_id, KIND_NEAR, entry.similarity, article.source_location))
            else:
                yield beam.pvalue.TaggedOutput(DUPLICATES, Duplicate(
                    article.doc_id, first_doc_id, KIND_EXACT, 1.0, article.source_location))
            return
        expires = float(timestamp) + self.retention
        signature, sketch = item[2]
        decision = index.add(article.source_location, article.doc_id, signature, expires, sketch,
                             article.published_at)
        log.add(tuple(index.entries[article.source_location]))
        self._bump(token, index)
        scheduled = next_expiry.read()
        if scheduled is None or expires < scheduled:
            expiry.set(Timestamp.of(expires))
            next_expiry.write(expires)
        if decision is None:
            Metrics.counter(NAMESPACE, "kept").inc()
            yield article
        else:
            Metrics.counter(NAMESPACE, "near_duplicates").inc()
            root, similarity = decision
            yield beam.pvalue.TaggedOutput(DUPLICATES, Duplicate(
                article.doc_id, root, KIND_NEAR, similarity, article.source_location))

    @on_timer(EXPIRY)
    def forget(self, fired=beam.DoFn.TimestampParam, log=beam.DoFn.StateParam(LOG),
               token=beam.DoFn.StateParam(TOKEN), next_expiry=beam.DoFn.StateParam(NEXT),
               expiry=beam.DoFn.TimerParam(EXPIRY)):
        index, _ = self._load(log, token)
        Metrics.counter(NAMESPACE, "expired_index_entries").inc(index.expire(float(fired)))
        log.clear()
        for entry in index.entries.values():
            log.add(tuple(entry))
        self._bump(token, index)
        upcoming = index.next_expiry()
        if upcoming is None:
            next_expiry.clear()
        else:
            expiry.set(Timestamp.of(upcoming))
            next_expiry.write(upcoming)


class _FingerprintFn(beam.DoFn):
    def __init__(self, config: DedupConfig):
        self.config = config

    def process(self, article: Article):
        digest, signature, sketch = fingerprint(article, self.config)
        yield digest, (article._replace(content_hash=digest), (signature, sketch))


class StatefulDedup(beam.PTransform):
    """Article (timestamped, global window) -> {`documents`, `duplicates`, `rejected`}; first arrival wins.

    Runs on streaming runners (state and timers); elements keep their timestamps.
    """

    def __init__(self, config: DedupConfig = DedupConfig(), retention_seconds: float = DEFAULT_RETENTION_SECONDS):
        super().__init__()
        self.config = config
        self.retention = retention_seconds

    def expand(self, articles):
        fingerprinted = articles | "Fingerprint" >> beam.ParDo(_FingerprintFn(self.config))
        by_id = (
            fingerprinted
            | "KeyById" >> beam.Map(lambda kv: (kv[1][0].doc_id, kv[1])).with_output_types(Tuple[str, Any])
            | "FirstById" >> beam.ParDo(_FirstArrivalFn(self.retention, "id"))
            | "SplitIds" >> beam.FlatMap(_split_ids).with_outputs(REJECTED, main="unique")
        )
        by_hash = (
            by_id["unique"]
            | "KeyByHash" >> beam.Map(lambda v: (v[0].content_hash, v)).with_output_types(Tuple[str, Any])
            | "FirstByHash" >> beam.ParDo(_FirstArrivalFn(self.retention, "hash"))
        )
        if self.config.near:
            decided = (
                by_hash
                | "KeyIndex" >> beam.Map(lambda item: (INDEX_KEY, item)).with_output_types(Tuple[str, Any])
                | "NearIndex" >> beam.ParDo(_NearIndexFn(self.config, self.retention)).with_outputs(
                    DUPLICATES, main=DOCUMENTS)
            )
        else:
            decided = by_hash | "ExactOnly" >> beam.FlatMap(_exact_only).with_outputs(DUPLICATES, main=DOCUMENTS)
        return {DOCUMENTS: decided[DOCUMENTS], DUPLICATES: decided[DUPLICATES], REJECTED: by_id[REJECTED]}
