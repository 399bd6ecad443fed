"""Dedup stage: one document per story; every other copy becomes a `Duplicate` pointing at the kept one.

1. Records sharing a `doc_id` with different content cannot both be documents: the first (by the kept-copy
   order below) stays, the others are rejected (`duplicate_id`).
2. Exact duplicates: equal `content_hash` (xxh3-128 of the folded dedup key of the body without a leading
   headline line, `story_key`), so copies that differ in boilerplate, HTML vs text, title in the text or not,
   Unicode form, spaces, line breaks or quote style still match.
3. Near duplicates: MinHash (rensa, 128 permutations, seeded) over word 5-shingles of the key (character
   5-grams for unspaced scripts); LSH bands/rows derived from the threshold give candidates, and a candidate
   merges only when its Jaccard similarity, computed on a bottom-k sketch of the shingle hashes (exact for
   texts of up to `SKETCH_SIZE` shingles, a tight estimate beyond), reaches the threshold (default 0.5).
   Jaccard, not containment: a story stitched from paragraphs of another one contains them, and is still
   another story; a truncated copy (a quarter of the text cut) keeps a Jaccard near 0.75. Near copies must
   also be published within `near_window_days` of each other when both dates are known: syndicated and
   edited copies appear within days, while a text reused months later is a new story quoting an old one.
   Exact copies have no window.

The kept copy of a cluster is chosen by `sort_key`: earliest `published_at`, then smallest `doc_id`, then
source location; so the decisions do not depend on input order, bundling or the number of workers. A near
copy's parent is its earliest verified candidate; chains (C ~ B ~ A) resolve to the root, so every
`duplicate_of` names a document that is kept; an exact copy of a near copy is a near copy of that root.

Scaling out: no step holds every document's keys. Each document gives a `_Key` (location, id, date, exact
hash, the band hashes packed as integers, 26 at the default threshold: no signature, no sketch), and three
tables are sharded by hash into `SHARDS` buckets, each shard a packed table (hash columns as numpy arrays,
orders encoded, in batches) that one worker decides: by `doc_id` (`CombinePerKey`: the reused ids), then by
content hash (the exact copies), then by LSH band hash (the buckets several documents share, and their
candidate pairs); each step hands the next its surviving rows as one batch per target shard. With a spill on
disk (local runs) each row's order carries the token of its document's parked sketch, and the band step
verifies its pairs where it finds them; inline, the candidates meet their sketches in joins keyed by
location (only the documents in a pair are sketched; the bottom-k sketch, up to 8 KB, is the largest
fingerprint, too large to copy into each of a document's band rows). Each child keeps its earliest verified
parent, and chains
resolve by pointer jumping: `RESOLVE_ROUNDS` joins, each moving every link to where its target points, then a
check that every link ends at a root; the rare links of longer chains are gathered and finished together. The
articles meet their decisions in a last join by location (with a spill on disk, where they are tokens, packed
per bundle and shard, each shard's table parked too: `transforms/packed.py`; so are the link joins). Work and memory per worker fall as workers are
added; the largest group is one shard's table (about 1/SHARDS of the rows) or the copies of one story.

Memory on the local runner: every PCollection crossing a stage boundary is held in the launcher's memory, and
a grouping holds one decoded Python object per element, so what is shuffled per document is kept small. With
a `Spill` on disk (local runs), the waiting articles, the tables' batches and the sketches are parked in files
and the PCollections carry 32-byte tokens (`transforms/spill.py`); inline (managed runners, Dask, in process),
they travel themselves.
"""
from __future__ import annotations

import array
import bisect
import functools
import re
import struct
from datetime import datetime
from typing import Iterator, NamedTuple, Optional

import apache_beam as beam
import xxhash
from apache_beam.metrics import Metrics

from wirewash.transforms.normalize import content_hash, dedup_key
from wirewash.transforms.packed import CoGroupByKeyPacked, CombinePerKeyPacked
from wirewash.transforms.spill import Spill
from wirewash.transforms.types import DOCUMENTS, DUPLICATES, REJECTED, Article, Duplicate, Rejection

__all__ = ["DeduplicateArticles", "DedupConfig", "shingles", "minhash_signature", "estimate_jaccard",
           "lsh_params", "band_keys", "sort_key", "shingle_sketch", "sketch_jaccard", "story_key", "days_apart",
           "route", "decide_all"]

NAMESPACE = "dedup"
STAGE = "dedup"
INDEX = "index"  # the kept documents' rows of the lake's dedup index, an output of `DeduplicateArticles`
KIND_EXACT = "exact"
KIND_NEAR = "near"
REASON_DUPLICATE_ID = "duplicate_id"

SHINGLE_WORDS = 5
SHINGLE_CHARS = 5
MAX_PARENTS_PER_BUCKET = 3
MAX_BUCKET_SIZE = 500
SKETCH_SIZE = 1024  # bottom-k shingle hashes kept per document for verification (8 KB at most)
SHARDS = 64  # hash buckets of each dedup table (ids, content hashes, LSH bands): the unit of work per worker
# Rows of the id tables a worker holds unparked, all its shards together (~0.53 KB each as Python objects:
# ~17 MB). A local worker gets half the input as one bundle and the runner keeps one accumulator per shard
# until the bundle ends, so a per-shard batch of 8,192 rows held 64 x 8,191 rows: every row up to ~1M records.
KEY_TABLE_PENDING = 32_768


def table_batch_rows(shards: int) -> int:
    """Rows per parked batch of one id shard's table: `KEY_TABLE_PENDING` shared by the `shards` tables a
    bundle fills at once."""
    return max(1, KEY_TABLE_PENDING // max(1, shards))

SKETCHES_PER_BUNDLE = 4096  # sketches (at most 8 KB each) the band step keeps while it verifies (`_VerifyBandsFn`)
SEEN_PER_BUNDLE = 100_000  # candidate pairs and members a band step remembers, to send each once (`_DecideBandsFn`)
RESOLVE_ROUNDS = 2  # pointer-jumping joins: chains of up to 2 links (nearly all) resolve in them, longer ones together
NO_DATE = "~"  # sorts after every ISO date: undated copies are never preferred over dated ones


class DedupConfig(NamedTuple):
    """Near-duplicate settings; the same on every worker (seeded). Its defaults are the defaults of the
    `--near_threshold`, `--num_perm`, `--minhash_seed` and `--near_window_days` flags (pipeline/options.py)."""

    threshold: float = 0.5
    num_perm: int = 128
    seed: int = 1
    near: bool = True
    near_window_days: float = 30.0  # 0: no window


class _Key(NamedTuple):
    """What dedup shuffles instead of the article: identity, date, exact hash and the LSH band hashes
    (`bands` unsigned 64-bit integers, packed; empty without near-duplicate detection). The kept-copy
    `order` is derived, not shuffled: it would repeat the id and the location."""

    loc: str
    doc_id: str
    published: Optional[str]
    content_hash: str
    bands: bytes = b""
    prints: bytes = b""  # with a spill on disk: the token of the parked `prints_of` (48 bytes); else empty

    @property
    def order(self) -> tuple:
        """The kept-copy order; with a `prints` token, the token follows it (it never decides: two records
        never share a location), so that the band step can verify its pairs itself (`_VerifyBandsFn`)."""
        order = sort_key(self.published, self.doc_id, self.loc)
        return order + (self.prints,) if self.prints else order


# ---------------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------------

def sort_key(published_at: Optional[str], doc_id: str, source_location: str) -> tuple:
    """Which copy is kept: earliest published, then smallest doc_id, then source location."""
    return (published_at or NO_DATE, doc_id, source_location)


_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f]")


def shingles(key: str) -> list[str]:
    """Word 5-shingles of a dedup key; character 5-grams for scripts written without spaces (CJK, Thai...).

    A key shorter than one shingle is its own single shingle.
    """
    if len(_UNSPACED.findall(key[:500])) > 50:
        chars = key.replace(" ", "")
        return [chars[i:i + SHINGLE_CHARS] for i in range(max(1, len(chars) - SHINGLE_CHARS + 1))]
    words = key.split()
    if len(words) <= SHINGLE_WORDS:
        return [key]
    return list(map(" ".join, zip(*(words[i:] for i in range(SHINGLE_WORDS)))))


def story_key(text: str, title: Optional[str]) -> str:
    """The dedup key of an article body without its headline line: a copy that repeats the title as its first
    line (plain text) and one that does not (HTML, where it sits in <h1>) are the same story."""
    key = dedup_key(text)
    title_key = dedup_key(title or "")
    if title_key and (key == title_key or key.startswith(title_key + " ")):
        stripped = key[len(title_key):].strip()
        if stripped:
            return stripped
    return key


def shingle_sketch(items: list[str], size: int = SKETCH_SIZE) -> bytes:
    """Bottom-k sketch: the `size` smallest distinct 64-bit hashes (xxh3-64 of the UTF-8) of the shingles,
    sorted, packed as unsigned 64-bit integers in native byte order."""
    import numpy as np

    # numpy's sort of the uint64 hashes, not a Python set and sort of ints: the same bytes, ~3x faster
    hashes = np.fromiter(map(xxhash.xxh3_64_intdigest, map(str.encode, items)), dtype=np.uint64, count=len(items))
    return np.unique(hashes)[:size].tobytes()


def sketch_jaccard(a: bytes, b: bytes, size: int = SKETCH_SIZE) -> float:
    """Jaccard similarity from two bottom-k sketches: among the k smallest hashes of the union, the share
    present in both. Exact when both sets have at most k shingles."""
    sa, sb = array.array("Q", a), array.array("Q", b)
    if not sa or not sb:
        return 0.0
    union = sorted(set(sa) | set(sb))[:size]
    if not union:
        return 0.0
    set_a, set_b = set(sa), set(sb)
    return sum(1 for h in union if h in set_a and h in set_b) / len(union)


def days_apart(a: Optional[str], b: Optional[str]) -> Optional[float]:
    """Days between two ISO-8601 timestamps, or None when either is missing or unreadable."""
    if not a or not b or a == NO_DATE or b == NO_DATE:
        return None
    try:
        first, second = datetime.fromisoformat(a), datetime.fromisoformat(b)
        if (first.tzinfo is None) != (second.tzinfo is None):
            first, second = first.replace(tzinfo=None), second.replace(tzinfo=None)
        return abs((first - second).total_seconds()) / 86400
    except ValueError:
        return None


def minhash_signature(items: list[str], num_perm: int = DedupConfig().num_perm,
                      seed: int = DedupConfig().seed) -> bytes:
    """MinHash signature (rensa) of a shingle list, packed as `num_perm` unsigned 32-bit integers."""
    import rensa

    minhash = rensa.RMinHash(num_perm=num_perm, seed=seed)
    minhash.update(items)
    return array.array("I", minhash.digest()).tobytes()


def estimate_jaccard(a: bytes, b: bytes) -> float:
    """Share of equal MinHash slots: an unbiased estimate of the Jaccard similarity of the shingle sets."""
    sa, sb = array.array("I", a), array.array("I", b)
    return sum(x == y for x, y in zip(sa, sb)) / len(sa)


@functools.lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimizing false positives + false negatives around the
    threshold (the S-curve 1 - (1 - s^r)^b, integrated numerically as datasketch does). Misses weigh three
    times more than false candidates: every candidate is verified before it merges, a miss is never found."""
    def area(fn, lo, hi, steps=200):
        width = (hi - lo) / steps
        return sum(fn(lo + (i + 0.5) * width) for i in range(steps)) * width

    best, best_err = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = area(lambda s: 1 - (1 - s ** rows) ** bands, 0.0, threshold)
            fn = area(lambda s: (1 - s ** rows) ** bands, threshold, 1.0)
            if 0.25 * fp + 0.75 * fn < best_err:
                best, best_err = (bands, rows), 0.25 * fp + 0.75 * fn
    return best


def band_keys(signature: bytes, bands: int, rows: int) -> list[str]:
    """One bucket key per band: the band index and a hash of its rows."""
    return [f"{b}:{h:016x}" for b, h in enumerate(band_hashes(signature, bands, rows))]


def band_hashes(signature: bytes, bands: int, rows: int) -> list[int]:
    """Per band, the 64-bit hash of its rows (the integer form of `band_keys`; the band is the position)."""
    width = rows * 4
    return [xxhash.xxh3_64_intdigest(signature[b * width:(b + 1) * width]) for b in range(bands)]


def equal_runs(*columns) -> Iterator[list[int]]:
    """Row indexes of equal values across equally long uint64 columns -> every group of several rows that are
    equal in all columns, each group in ascending index order."""
    import numpy as np

    if not columns or len(columns[0]) == 0:
        return
    index = np.lexsort(columns[::-1])  # stable: equal rows keep ascending index order
    same = np.ones(len(index) - 1, dtype=bool)  # sorted row i + 1 equals sorted row i
    for column in columns:  # one sorted copy at a time: a band shard's table is most of what a step holds
        ordered = column[index]
        same &= ordered[1:] == ordered[:-1]
        del ordered
    follows = np.flatnonzero(same) + 1  # sorted rows that continue a group: those of shared values only
    for run in np.split(follows, np.flatnonzero(np.diff(follows) != 1) + 1):
        if len(run):
            yield index[run[0] - 1:run[-1] + 1].tolist()


def shard_of(value: int, shards: int) -> int:
    """The shard (hash bucket) of a uniform 64-bit hash: every row with that hash meets in it."""
    return value % shards


def first_of(group: list[int], orders: list) -> tuple[int, list[int]]:
    """Row indexes of one group -> (the kept row, the other rows), by kept-copy order."""
    ranked = sorted(group, key=orders.__getitem__)
    return ranked[0], ranked[1:]


def same_id_losers(orders: list) -> list[tuple[int, int]]:
    """Kept-copy orders of rows (every row of an id among them) -> (loser row, kept row) for each row whose
    `doc_id` an earlier row holds."""
    by_id: dict = {}
    for row, order in enumerate(orders):
        by_id.setdefault(order[1], []).append(row)
    out = []
    for rows in by_id.values():
        if len(rows) > 1:
            kept, losers = first_of(rows, orders)
            out += [(loser, kept) for loser in losers]
    return out


def exact_losers(contents, orders: list) -> list[tuple[int, int]]:
    """Content hashes (n x 2 uint64) and orders of rows (every row of a hash among them) -> (loser row,
    kept row) for each row whose content an earlier row holds."""
    out = []
    for group in equal_runs(contents[:, 0], contents[:, 1]):
        kept, losers = first_of(group, orders)
        out += [(loser, kept) for loser in losers]
    return out


def shared_buckets(buckets, orders) -> Iterator[list[tuple]]:
    """Band rows (n x 2 uint64: band, band hash) and their documents' orders (every row of a bucket among
    them; a list, or an `_Orders` that decodes on demand) -> the members (order, loc) of each bucket more than
    one document shares, the first `MAX_BUCKET_SIZE` in kept-copy order. Only these rows' orders are read."""
    for rows in equal_runs(buckets[:, 0], buckets[:, 1]):
        yield sorted((order, order[2]) for order in map(orders.__getitem__, rows))[:MAX_BUCKET_SIZE]


def bucket_pairs(buckets, orders) -> tuple[set, dict]:
    """Band rows and their documents' orders (as `shared_buckets`) -> (candidate pairs {(child loc, (parent
    order, parent loc))}, {loc: date} of every document in a pair): `bucket_candidates` on every bucket more
    than one document shares."""
    pairs, dates = set(), {}
    for members in shared_buckets(buckets, orders):
        for order, loc in members:
            dates[loc] = order[0]
        pairs.update(bucket_candidates(members))
    return pairs, dates


class Link(NamedTuple):
    """A near copy's pointer toward its kept root: `to` is the kept-copy order of the document it points at
    (`to[2]` its location); `similarity` is to its own parent; `final` when `to` is the root."""

    to: tuple
    similarity: float
    final: bool = False


def follow(link: Link, target: Optional[Link]) -> Link:
    """One pointer jump. `target` is the link of the document `link` points at (None: that one is kept, so
    it is the root); the pointer moves to where the target points, so chains halve each round."""
    if link.final:
        return link
    if target is None:
        return link._replace(final=True)
    return link._replace(to=target.to, final=target.final)


def finish_links(rows: list) -> dict:
    """The links still not final after the rounds (chains longer than the rounds resolve), each as (loc,
    link, link of the document it points at, as it was then) -> {loc: final link}. Every non-final target is
    among the rows."""
    pending = {loc: (link, target) for loc, link, target in rows}
    done: dict = {}
    for start in sorted(pending):
        path, loc = [], start
        while loc not in done:
            link, target = pending[loc]
            if target is None or target.final:
                done[loc] = follow(link, target)
                break
            path.append(loc)
            loc = link.to[2]
        for step in path:
            done[step] = pending[step][0]._replace(to=done[loc].to, final=True)
    return done


class RejectDecision(NamedTuple):
    """Route a record to `rejected`: its `doc_id` is held by the kept record at `kept_loc`."""

    reason: str
    kept_loc: str


class DuplicateDecision(NamedTuple):
    """Route a record to `duplicates`: a copy of the kept document `duplicate_of`."""

    duplicate_of: str
    kind: str
    similarity: float


def bucket_candidates(members: list[tuple]) -> list[tuple]:
    """Candidate (child, parent) pairs in one LSH bucket: each member against the first few members that
    precede it in kept-copy order. Members are (order, loc)."""
    members = sorted(members)[:MAX_BUCKET_SIZE]
    pairs = []
    for i in range(1, len(members)):
        for j in range(min(i, MAX_PARENTS_PER_BUCKET)):
            pairs.append((members[i][1], (members[j][0], members[j][1])))
    return pairs



def route(article: Article, decision) -> "Article | Duplicate | Rejection":
    """Where an article ends once dedup decided: the article itself (no decision: kept), its `Duplicate`
    (a `DuplicateDecision`) or its `Rejection` (a `RejectDecision`)."""
    if decision is None:
        return article
    if isinstance(decision, RejectDecision):
        return Rejection(article.doc_id, article.source_location, STAGE, decision.reason,
                         error=f"doc_id already used by the record at {decision.kept_loc}")
    return Duplicate(article.doc_id, decision.duplicate_of, decision.kind, decision.similarity,
                     article.source_location)


def decide_all(keys: list, config: DedupConfig, sketch_of) -> dict:
    """Every decision of `DeduplicateArticles` taken in one place, for inputs that fit in memory: `keys` are
    each article's `_Key` (band hashes packed, `prints` empty), `sketch_of(loc)` its bottom-k sketch ->
    {loc: RejectDecision or DuplicateDecision} for every article not kept. The same pure steps as the sharded
    stage (`same_id_losers`, `exact_losers`, `bucket_pairs`, `_similar_enough`, the earliest verified parent,
    `finish_links`), without the shards."""
    import numpy as np

    orders = [key.order for key in keys]
    decided: dict = {}
    for loser, kept in same_id_losers(orders):
        decided[orders[loser][2]] = RejectDecision(REASON_DUPLICATE_ID, orders[kept][2])
    rest = [i for i, order in enumerate(orders) if order[2] not in decided]
    contents = np.array([divmod(int(keys[i].content_hash, 16), 1 << 64) for i in rest], dtype=np.uint64)
    exact = exact_losers(contents.reshape(-1, 2), [orders[i] for i in rest])
    losers = {rest[loser]: orders[rest[kept]] for loser, kept in exact}
    firsts = [i for i in rest if i not in losers]
    parents: dict = {}
    if config.near and firsts:
        bands, _ = lsh_params(config.threshold, config.num_perm)
        hashes = np.frombuffer(b"".join(keys[i].bands for i in firsts), dtype=np.uint64)
        rows = np.column_stack([np.tile(np.arange(bands, dtype=np.uint64), len(firsts)), hashes])
        pairs, _ = bucket_pairs(rows, [orders[i] for i in np.repeat(firsts, bands).tolist()])
        order_of = {order[2]: order for order in orders}
        for child_loc, (parent_order, parent_loc) in sorted(pairs):
            child = order_of[child_loc]
            similarity = _similar_enough((parent_loc, parent_order[0]), (child_loc, child[0]), config.threshold,
                                         config.near_window_days, sketch_of)
            if similarity is not None:
                found = (parent_order, parent_loc, similarity)
                parents[child_loc] = min(parents.get(child_loc, found), found)
    links = {child: Link(parent_order, similarity) for child, (parent_order, _, similarity) in parents.items()}
    final = finish_links([(loc, link, links.get(link.to[2])) for loc, link in links.items()])
    for loc, link in final.items():
        decided[loc] = DuplicateDecision(link.to[1], KIND_NEAR, link.similarity)
    for loser, kept_order in losers.items():
        link = final.get(kept_order[2])
        decided[orders[loser][2]] = (DuplicateDecision(kept_order[1], KIND_EXACT, 1.0) if link is None
                                     else DuplicateDecision(link.to[1], KIND_NEAR, link.similarity))
    return decided


# ---------------------------------------------------------------------------------------------------------
# Beam wrappers
# ---------------------------------------------------------------------------------------------------------

# Beam's own encoding of plain values (str, None, numbers, tuples, lists): the band table's orders, in batches.
_PRIMITIVES = beam.coders.FastPrimitivesCoder()


def prints_of(key: str, config: DedupConfig) -> bytes:
    """A story key's MinHash signature (`num_perm` x 4 bytes) followed by its bottom-k sketch: what
    verification and the lake's dedup index need (empty without near-duplicate detection)."""
    if not config.near:
        return b""
    items = shingles(key)
    return minhash_signature(items, config.num_perm, config.seed) + shingle_sketch(items)


def split_prints(prints: bytes, num_perm: int) -> tuple[bytes, bytes]:
    """`prints_of`'s bytes -> (signature, sketch)."""
    return prints[:num_perm * 4], prints[num_perm * 4:]


class _FingerprintFn(beam.DoFn):
    """Article -> (location, (parked Article with content_hash, parked `prints_of` its key)), and (id shard,
    its `_Key`) on the `keys` output (band hashes packed). The key is shingled once: verification and the
    lake's index take the signature and sketch parked here."""

    def __init__(self, config: DedupConfig, bands: int, rows: int, spill: Spill, shards: int):
        self.config, self.bands, self.rows, self.spill, self.shards = config, bands, rows, spill, shards

    def process(self, article: Article):
        key = story_key(article.text, article.title)
        digest = content_hash(key)
        packed, prints = b"", prints_of(key, self.config)
        if prints:
            signature, _ = split_prints(prints, self.config.num_perm)
            packed = array.array("Q", band_hashes(signature, self.bands, self.rows)).tobytes()
        shard = shard_of(xxhash.xxh3_64_intdigest(article.doc_id.encode("utf-8")), self.shards)
        parked = self.spill.park_bytes(prints) if prints else b""
        yield beam.pvalue.TaggedOutput("keys", (shard, _Key(
            article.source_location, article.doc_id, article.published_at, digest, packed,
            parked if self.spill.on_disk else b"")))
        yield article.source_location, (self.spill.park_article(article._replace(content_hash=digest)), parked)


_BATCH_HEAD = struct.Struct("<QQ")  # a parked batch: rows, width; then the columns, the orders' ends, the orders


def _pack_rows(columns, orders: list, spill: Spill) -> bytes:
    """Rows of a dedup table (an n x width uint64 array and n kept-copy orders) -> one parked batch: the
    columns, then each order encoded on its own (with the end of each), so that a reader can take the
    columns alone and decode only the orders it needs (`_unpack_rows(lazy=True)`)."""
    import numpy as np

    width = columns.shape[1] if len(columns) else 0
    encoded = [_PRIMITIVES.encode(order) for order in orders]
    ends = np.cumsum(np.fromiter(map(len, encoded), dtype=np.uint64, count=len(encoded)), dtype=np.uint64)
    return spill.park_bytes(b"".join([_BATCH_HEAD.pack(len(orders), width), np.ascontiguousarray(columns).tobytes(),
                                      ends.tobytes(), *encoded]))


class _Orders:
    """The kept-copy orders of a table's rows, each decoded from its parked batch when it is asked for (one
    `pread` of its bytes with a spill on disk): what a shard's table holds is its columns and 8 bytes a row,
    not a decoded tuple of strings a row (~0.4 KB). Iterating decodes every order, one batch at a time."""

    __slots__ = ("spill", "parts", "firsts")

    def __init__(self, spill: Spill, parts: list):
        self.spill, self.parts = spill, parts  # (token, where its orders start, each order's end after that)
        self.firsts = [0]
        for _, _, ends in parts:
            self.firsts.append(self.firsts[-1] + len(ends))

    def __len__(self) -> int:
        return self.firsts[-1]

    def __getitem__(self, row: int) -> tuple:
        if not 0 <= row < len(self):
            raise IndexError(row)
        part = bisect.bisect_right(self.firsts, row) - 1
        token, base, ends = self.parts[part]
        at = row - self.firsts[part]
        start = int(ends[at - 1]) if at else 0
        return _PRIMITIVES.decode(self.spill.fetch_range(token, base + start, base + int(ends[at])))

    def __iter__(self):
        for token, base, ends in self.parts:
            if len(ends):
                data = self.spill.fetch_range(token, base, base + int(ends[-1]))
                starts = [0] + ends[:-1].tolist()
                yield from (_PRIMITIVES.decode(data[a:b]) for a, b in zip(starts, ends.tolist()))


def _unpack_rows(batches, spill: Spill, step: str, lazy: bool = False) -> tuple:
    """Parked batches of one shard -> (n x width uint64 array, n orders: a list, or with `lazy` an `_Orders`
    that decodes each when asked); the shard's rows and bytes go to the distributions `<step>_rows` and
    `<step>_bytes` (the largest group a dedup step holds)."""
    import numpy as np

    heads = [(token, *_BATCH_HEAD.unpack(spill.fetch_range(token, 0, _BATCH_HEAD.size))) for token in batches]
    heads = [head for head in heads if head[1]]
    width = heads[0][2] if heads else 0
    table = np.empty((sum(rows for _, rows, _ in heads), width), dtype=np.uint64)  # read into, never concatenated
    parts, at, size = [], 0, 0
    for token, rows, _ in heads:
        start = _BATCH_HEAD.size + rows * width * 8
        table[at:at + rows] = np.frombuffer(spill.fetch_range(token, _BATCH_HEAD.size, start),
                                            dtype=np.uint64).reshape(rows, width)
        ends = np.frombuffer(spill.fetch_range(token, start, start + rows * 8), dtype=np.uint64)
        parts.append((token, start + rows * 8, ends))
        at, size = at + rows, size + start + rows * 8 + int(ends[-1])
    orders = _Orders(spill, parts)
    Metrics.distribution(NAMESPACE, f"{step}_rows").update(len(orders))
    Metrics.distribution(NAMESPACE, f"{step}_bytes").update(size)
    return table, orders if lazy else list(orders)


def _scatter(columns, orders: list, targets, spill: Spill):
    """Rows and the shard of each -> (shard, parked batch of its rows), one per shard that gets rows."""
    import numpy as np

    by_target = np.argsort(targets, kind="stable")
    cuts = np.flatnonzero(np.diff(targets[by_target])) + 1
    for chunk in np.split(by_target, cuts):
        if len(chunk):
            yield int(targets[chunk[0]]), _pack_rows(columns[chunk], [orders[i] for i in chunk.tolist()], spill)


class _TableFn(beam.CombineFn):
    """`_Key`s of one id shard -> its table as a list of parked batches: per row the content hash (two uint64)
    and the band hashes (`bands` uint64; none without near-duplicate detection), and the kept-copy orders.
    `compact`, which the runner calls on each partial accumulator it emits, parks the pending rows as one
    batch, and so does `add_input` every `batch_rows` rows (`table_batch_rows`: a worker's shards together
    hold at most `KEY_TABLE_PENDING` rows unparked, however large its bundle)."""

    def __init__(self, spill: Spill, batch_rows: int = table_batch_rows(SHARDS)):
        self.spill, self.batch_rows = spill, batch_rows

    def create_accumulator(self):
        return array.array("Q"), [], []

    def add_input(self, accumulator, key: _Key):
        content = int(key.content_hash, 16)
        accumulator[0].extend((content >> 64, content & 0xFFFFFFFFFFFFFFFF))
        accumulator[0].frombytes(key.bands)
        accumulator[1].append(key.order)
        return self.compact(accumulator) if len(accumulator[1]) >= self.batch_rows else accumulator

    def compact(self, accumulator):
        import numpy as np

        values, pending, batches = accumulator
        if not pending:
            return accumulator
        columns = np.frombuffer(values, dtype=np.uint64).reshape(len(pending), -1)
        return array.array("Q"), [], batches + [_pack_rows(columns, pending, self.spill)]

    def merge_accumulators(self, accumulators):
        batches = []
        for accumulator in accumulators:
            batches += self.compact(accumulator)[2]
        return array.array("Q"), [], batches

    def extract_output(self, accumulator):
        return self.compact(accumulator)[2]


def _decide_ids(item, shards: int, spill: Spill):
    """(id shard, its table) -> (loser loc, RejectDecision) on `rejected` for every record whose doc_id an
    earlier record holds; the other rows, by content-hash shard, as (shard, parked batch)."""
    import numpy as np

    _, batches = item
    columns, orders = _unpack_rows(batches, spill, "ids")
    stays = np.ones(len(orders), dtype=bool)
    for loser, kept in same_id_losers(orders):
        stays[loser] = False
        Metrics.counter(NAMESPACE, f"dropped_{REASON_DUPLICATE_ID}").inc()
        yield beam.pvalue.TaggedOutput(REJECTED, (orders[loser][2], RejectDecision(REASON_DUPLICATE_ID,
                                                                                   orders[kept][2])))
    rows = np.flatnonzero(stays)
    if len(rows):
        yield from _scatter(columns[rows], [orders[i] for i in rows.tolist()], columns[rows, 0] % shards, spill)


def _decide_exact(item, shards: int, bands: int, spill: Spill):
    """(content-hash shard, its batches) -> (loser loc, kept order) on `exact` for every copy whose content
    an earlier document holds; with `bands`, the kept ones' band rows (band, band hash), by band-hash
    shard, as (shard, parked batch)."""
    import numpy as np

    _, batches = item
    columns, orders = _unpack_rows(batches, spill, "exact")
    stays = np.ones(len(orders), dtype=bool)
    for loser, kept in exact_losers(columns[:, :2], orders):
        stays[loser] = False
        Metrics.counter(NAMESPACE, "exact_duplicates").inc()
        yield beam.pvalue.TaggedOutput("exact", (orders[loser][2], orders[kept]))
    firsts = np.flatnonzero(stays)
    if bands and len(firsts):
        hashes = columns[firsts, 2:2 + bands].reshape(-1)
        rows = np.column_stack([np.tile(np.arange(bands, dtype=np.uint64), len(firsts)), hashes])
        origin = np.repeat(firsts, bands).tolist()
        yield from _scatter(rows, [orders[i] for i in origin], hashes % shards, spill)


def _decide_bands(item, spill: Spill):
    """(band-hash shard, its batches) -> candidate pairs (child loc, (parent order, parent loc)), each once
    per shard, and on `members` (loc, date) of every document in a pair."""
    _, batches = item
    rows, orders = _unpack_rows(batches, spill, "bands", lazy=True)
    pairs, dates = bucket_pairs(rows, orders)
    for loc in sorted(dates):
        yield beam.pvalue.TaggedOutput("members", (loc, dates[loc]))
    yield from sorted(pairs)


def _first_sight(seen: set, key) -> bool:
    """Whether `key` is new to `seen`, which then remembers it; `seen` forgets everything once it holds
    `SEEN_PER_BUNDLE` keys (memory stays bounded; a key seen again after that is only sent twice)."""
    if key in seen:
        return False
    if len(seen) >= SEEN_PER_BUNDLE:
        seen.clear()
    seen.add(key)
    return True


class _DecideBandsFn(beam.DoFn):
    """`_decide_bands` over the band shards of a bundle, each candidate pair and each member sent on once:
    a pair whose two documents share buckets in several shards, and a document in pairs of several shards,
    are found once per shard (about four times per member on the dev corpus), and every copy would cross two
    joins. The joins after it read a pair or a member once whatever its copies (`_attach_child_signature`
    takes the distinct parents, `_sketch_member` the first date), so this only saves the copies' shuffling.
    At most `SEEN_PER_BUNDLE` are remembered (then forgotten together): memory stays bounded."""

    def __init__(self, spill: Spill):
        self.spill = spill

    def start_bundle(self):
        self.seen = set()

    def process(self, item):
        for output in _decide_bands(item, self.spill):
            seen = (output.tag, output.value) if isinstance(output, beam.pvalue.TaggedOutput) else output
            if _first_sight(self.seen, seen):
                yield output


class _VerifyBandsFn(beam.DoFn):
    """(band-hash shard, its batches), the rows' orders carrying their parked prints tokens (a spill on disk,
    `_Key.order`) -> (child loc, (parent order, parent loc, similarity)) for each candidate pair of the shard
    that verifies (`_similar_enough`, as `_verify_against_parent` decides it): the pairs are checked where
    they are found, so the joins that bring the sketches to them (`JoinMembers`, `JoinChild`, `JoinParent`)
    are not needed. A pair found in several shards of a bundle is checked once (`SEEN_PER_BUNDLE`, as
    `_DecideBandsFn`); a sketch read from the spill is kept for the bundle (`SKETCHES_PER_BUNDLE`).
    Memory: the shard's table (26 band rows a document, a 64th of them all) is held as its columns and the
    orders' offsets; only the orders of rows in shared buckets are decoded, one bucket at a time, and its
    pairs verified at once (a shard's decoded table and pairs grew with the corpus: ~0.45 KB a band row)."""

    def __init__(self, spill: Spill, threshold: float, window_days: float, num_perm: int):
        self.spill, self.threshold, self.window_days, self.num_perm = spill, threshold, window_days, num_perm

    def start_bundle(self):
        self.seen = set()
        self.sketch_of = functools.lru_cache(maxsize=SKETCHES_PER_BUNDLE)(
            lambda token: split_prints(self.spill.fetch_bytes(token), self.num_perm)[1])

    def process(self, item):
        _, batches = item
        rows, orders = _unpack_rows(batches, self.spill, "bands", lazy=True)
        for members in shared_buckets(rows, orders):
            order_of = {loc: order for order, loc in members}
            for child_loc, (parent_order, parent_loc) in bucket_candidates(members):
                if not _first_sight(self.seen, (child_loc, parent_loc)):
                    continue
                child = order_of[child_loc]
                similarity = _similar_enough((parent_order[3], parent_order[0]), (child[3], child[0]),
                                             self.threshold, self.window_days, self.sketch_of)
                if similarity is not None:
                    yield child_loc, (parent_order, parent_loc, similarity)


def _sketch_member(item):
    """(loc, {article: [(parked article, parked prints)], member: [date, ...]}) -> (loc, (parked prints, date))
    for a document in a candidate pair: the only ones whose sketches are needed."""
    loc, grouped = item
    if not grouped["member"] or not grouped["article"]:
        return
    yield loc, (grouped["article"][0][1], grouped["member"][0])


def _similar_enough(parent: tuple, child: tuple, threshold: float, window_days: float, sketch_of) -> Optional[float]:
    """A candidate pair's verdict: the Jaccard similarity of the parent's and the child's sketches when it
    reaches `threshold` and their dates (when both are known) are at most `window_days` apart; else None.
    `parent` and `child` are (sketch or its token, date); `sketch_of` turns a token into the sketch."""
    (parent_token, parent_date), (child_token, child_date) = parent, child
    apart = days_apart(parent_date, child_date)
    if window_days and apart is not None and apart > window_days:
        Metrics.counter(NAMESPACE, "near_rejected_window").inc()
        return None
    similarity = sketch_jaccard(sketch_of(parent_token), sketch_of(child_token))
    if similarity < threshold:
        Metrics.counter(NAMESPACE, "near_rejected_similarity").inc()
        return None
    return round(similarity, 4)


def _attach_child_signature(item):
    """(child loc, {sig: [(sketch, date)], parents: [(parent order, parent loc), ...]}) -> (parent loc, (child
    loc, child sketch, parent order)) for each distinct candidate parent (band shards may name one twice)."""
    child_loc, grouped = item
    if not grouped["sig"]:
        return
    child_sig = grouped["sig"][0]
    for parent_order, parent_loc in sorted(set(grouped["parents"])):
        yield parent_loc, (child_loc, child_sig, parent_order)


def _verify_against_parent(item, threshold, window_days, spill: Spill, num_perm: int):
    """(parent loc, {sig: [(parent prints, date)], children: [(child loc, (child prints, date), parent order)]})
    -> (child loc, (parent order, parent loc, similarity)) for the verified pairs."""
    parent_loc, grouped = item
    if not grouped["sig"]:
        return
    parent = grouped["sig"][0]

    @functools.lru_cache(maxsize=2)  # the parent's sketch is read once
    def sketch_of(token):
        return split_prints(spill.fetch_bytes(token), num_perm)[1]

    for child_loc, child, parent_order in grouped["children"]:
        similarity = _similar_enough(parent, child, threshold, window_days, sketch_of)
        if similarity is not None:
            yield child_loc, (parent_order, parent_loc, similarity)


def _ask_target(item):
    """(loc, link) -> (the location it points at, (loc, link)): the question for that document's link."""
    loc, link = item
    return link.to[2], (loc, link)


def _jump(item, check: bool = False):
    """(loc, {link: [its link, if any], asks: [(loc, link) pointing at it]}) -> (loc, followed link) per ask.
    With `check` (after the rounds), a link still not final goes to `late` with its target's link, unfollowed:
    the late ones then hold every link their chains need."""
    _, grouped = item
    target = grouped["link"][0] if grouped["link"] else None
    for loc, link in grouped["asks"]:
        if check and not link.final:
            yield beam.pvalue.TaggedOutput("late", (loc, link, target))
        else:
            yield loc, follow(link, target)


def _finish_late(rows: list):
    """Links of chains longer than the rounds (normally none), gathered: resolved one after the other."""
    for loc, link in sorted(finish_links(rows).items()):
        Metrics.counter(NAMESPACE, "links_resolved_late").inc()
        yield loc, link


class _ResolveLinks(beam.PTransform):
    """(loc, Link to its earliest verified parent) -> two PCollections of (loc, final Link to its kept root),
    by pointer jumping: each of `rounds` joins moves every link to where its target points (after r rounds,
    every link of a chain up to 2**(r-1) long is final), a last join checks that every link is final, and
    the few that are not (longer chains) are resolved together. Each join is keyed by location: no step holds
    every link but that last, rare remainder. The two outputs (final after the rounds, resolved late) are not
    flattened: a Flatten of them is a runner buffer holding every link, one element each, in the launcher;
    apart, each is packed where it is made."""

    def __init__(self, rounds: int, spill: Optional[Spill] = None):
        super().__init__()
        self.rounds, self.spill = rounds, spill

    def expand(self, links):
        for step in range(self.rounds + 1):
            check = step == self.rounds
            joined = ({"link": links, "asks": links | f"Ask{step}" >> beam.Map(_ask_target)}
                      | f"JoinTarget{step}" >> CoGroupByKeyPacked(spill=self.spill))
            if check:
                checked = joined | "Check" >> beam.FlatMap(_jump, True).with_outputs("late", main="final")
                # without_defaults: no default-value side input (an empty remainder gives no element)
                late = (checked["late"]
                        | "GatherLate" >> beam.CombineGlobally(beam.combiners.ToListCombineFn()).without_defaults()
                        | "FinishLate" >> beam.FlatMap(_finish_late))
                return checked["final"], late
            links = joined | f"Jump{step}" >> beam.FlatMap(_jump)


def _to_link(item):
    child_loc, (parent_order, _, similarity) = item
    return child_loc, Link(parent_order, similarity)


def _decide_near(item):
    loc, link = item
    Metrics.counter(NAMESPACE, "near_duplicates").inc()
    return loc, DuplicateDecision(link.to[1], KIND_NEAR, link.similarity)


def _by_kept_loc(item):
    loser_loc, kept_order = item
    return kept_order[2], (loser_loc, kept_order)


def _decide_exact_copies(item):
    """(kept loc, {losers: [(loser loc, kept order)], link: [the kept one's final link, if a near copy]}) ->
    (loser loc, decision): an exact copy of the kept one, or, when that one is itself a near copy, a near
    copy of its root with its similarity."""
    _, grouped = item
    link = grouped["link"][0] if grouped["link"] else None
    for loser_loc, kept_order in grouped["losers"]:
        if link is None:
            yield loser_loc, DuplicateDecision(kept_order[1], KIND_EXACT, 1.0)
        else:
            yield loser_loc, DuplicateDecision(link.to[1], KIND_NEAR, link.similarity)


def _exact_copy(item):
    loser_loc, kept_order = item
    return loser_loc, DuplicateDecision(kept_order[1], KIND_EXACT, 1.0)


class _RouteFn(beam.DoFn):
    """(location, {article: [(parked article, parked prints)], decision: [its decision, if any]}) -> the
    article, to exactly one of documents / duplicates / rejected; for a kept one also, on `index`, (doc_id,
    content hash, published_at, signature, sketch): its row of the lake's dedup index
    (`transforms/lake_dedup.py`)."""

    def __init__(self, spill: Spill, num_perm: int):
        self.spill, self.num_perm = spill, num_perm

    def process(self, item: tuple):
        loc, grouped = item
        decisions = list(grouped["decision"])
        if len(decisions) > 1:
            raise RuntimeError(f"dedup decided {loc} {len(decisions)} times: {decisions}")
        decision = decisions[0] if decisions else None
        for parked, prints in grouped["article"]:
            article = self.spill.fetch_article(parked)
            routed = route(article, decision)
            if decision is None:
                Metrics.counter(NAMESPACE, "kept").inc()
                yield article
                signature, sketch = split_prints(self.spill.fetch_bytes(prints) if prints else b"", self.num_perm)
                yield beam.pvalue.TaggedOutput(INDEX, (article.doc_id, article.content_hash, article.published_at,
                                                       signature, sketch))
            else:
                yield beam.pvalue.TaggedOutput(REJECTED if isinstance(routed, Rejection) else DUPLICATES, routed)


class DeduplicateArticles(beam.PTransform):
    """Article -> {`documents`: kept articles (content_hash set), `duplicates`: Duplicate, `rejected`, `index`:
    the kept articles' dedup-index fields (doc_id, content hash, published_at, signature, sketch), computed
    once here rather than again by the writer (`transforms/lake_dedup.index_row_of`)}.

    `spill` is where the articles, the tables' batches and the candidates' sketches wait (default: inline, in
    the PCollections); `shards` is how many hash buckets each table is split into; `rounds` how many
    pointer-jumping joins resolve near-copy chains before the remainder is resolved together. Neither
    changes a decision."""

    def __init__(self, config: DedupConfig = DedupConfig(), spill: Optional[Spill] = None, shards: int = SHARDS,
                 rounds: int = RESOLVE_ROUNDS):
        super().__init__()
        self.config = config
        self.spill = spill or Spill()
        self.shards, self.rounds = shards, rounds
        self.bands, self.rows = lsh_params(config.threshold, config.num_perm)

    def expand(self, articles):
        spill, shards = self.spill, self.shards
        fingerprinted = articles | "Fingerprint" >> beam.ParDo(
            _FingerprintFn(self.config, self.bands, self.rows, spill, shards)).with_outputs("keys", main="articles")
        by_id = (fingerprinted["keys"]
                 | "IdTables" >> beam.CombinePerKey(_TableFn(spill, table_batch_rows(shards)))
                 | "DecideIds" >> beam.FlatMap(_decide_ids, shards, spill).with_outputs(REJECTED, main="rows"))
        by_content = (by_id["rows"]
                      | "GroupByContent" >> beam.GroupByKey()
                      | "DecideExact" >> beam.FlatMap(_decide_exact, shards, self.bands if self.config.near else 0,
                                                      spill).with_outputs("exact", main="bands"))

        if self.config.near and spill.on_disk:  # the rows carry their sketches' tokens: pairs verified in place
            verified = (by_content["bands"]
                        | "GroupByBucket" >> beam.GroupByKey()
                        | "VerifyBands" >> beam.ParDo(_VerifyBandsFn(spill, self.config.threshold,
                                                                     self.config.near_window_days,
                                                                     self.config.num_perm)))
        elif self.config.near:  # inline: the sketches travel to the pairs through joins by location
            candidates = (by_content["bands"]
                          | "GroupByBucket" >> beam.GroupByKey()
                          | "DecideBands" >> beam.ParDo(_DecideBandsFn(spill)).with_outputs("members", main="pairs"))
            sketches = ({"article": fingerprinted["articles"], "member": candidates["members"]}
                        | "JoinMembers" >> beam.CoGroupByKey()
                        | "SketchMembers" >> beam.FlatMap(_sketch_member))
            to_parent = ({"sig": sketches, "parents": candidates["pairs"]} | "JoinChild" >> beam.CoGroupByKey()
                         | "AttachChildSignature" >> beam.FlatMap(_attach_child_signature))
            verified = ({"sig": sketches, "children": to_parent} | "JoinParent" >> beam.CoGroupByKey()
                        | "Verify" >> beam.FlatMap(_verify_against_parent, self.config.threshold,
                                                   self.config.near_window_days, spill, self.config.num_perm))
        if self.config.near:
            final, late = (verified
                           | "EarliestParent" >> CombinePerKeyPacked(beam.transforms.core.CallableWrapperCombineFn(min),
                                                                     spill=spill)
                           | "Link" >> beam.Map(_to_link)
                           | "Resolve" >> _ResolveLinks(self.rounds, spill))
            near = (final | "DecideNear" >> beam.Map(_decide_near), late | "DecideNearLate" >> beam.Map(_decide_near))
            exact = ({"losers": by_content["exact"] | "ByKeptLoc" >> beam.Map(_by_kept_loc), "link": (final, late)}
                     | "JoinExact" >> CoGroupByKeyPacked(spill=spill)
                     | "DecideExactCopies" >> beam.FlatMap(_decide_exact_copies))
            decided = (by_id[REJECTED], *near, exact)
        else:
            decided = (by_id[REJECTED], by_content["exact"] | "DecideExactCopies" >> beam.Map(_exact_copy))

        if spill.on_disk:  # the articles are tokens: packed per bundle and shard, each input where it is made
            joined = ({"article": fingerprinted["articles"], "decision": decided}
                      | "JoinDecisions" >> CoGroupByKeyPacked(spill=spill))
        else:  # inline the articles travel whole: one per key, never a shard's worth in one element
            joined = ({"article": fingerprinted["articles"], "decision": decided | "AllDecisions" >> beam.Flatten()}
                      | "JoinDecisions" >> beam.CoGroupByKey())
        routed = (joined
                  | "Route" >> beam.ParDo(_RouteFn(spill, self.config.num_perm)).with_outputs(
                      DUPLICATES, REJECTED, INDEX, main=DOCUMENTS))
        return {DOCUMENTS: routed[DOCUMENTS], DUPLICATES: routed[DUPLICATES], REJECTED: routed[REJECTED],
                INDEX: routed[INDEX]}
