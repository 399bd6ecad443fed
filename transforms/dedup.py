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
source location; so the decisions do not depend on input order or bundling. Chains (C ~ B ~ A) resolve to
the root, so every `duplicate_of` names a document that is kept. Only keys, hashes and signatures are
shuffled; the article texts are routed once, at the end, against a side input of decisions.

Memory: on the local runner every PCollection crossing a stage boundary is held in the launcher's memory, and
a grouping holds one decoded Python object per element, so what is shuffled per document is kept small. Each
document gives a `_Key`: location, id, date, exact hash and the 11 band hashes packed as integers (no
signature, no sketch). One combine (`_KeyTableFn`) gathers every key into one packed table (hashes as
integer columns, orders encoded, in batches); numpy sorts on its columns find the shared ids, then the exact
copies, then, per band, the LSH buckets shared by several documents, and the candidate pairs leave it grouped
by child, each pair once. Only the documents in a pair are sketched (the bottom-k sketch, up to 8 KB, is the
largest fingerprint), from the articles that wait for the routing anyway. With a `Spill` on disk (local
runs), the waiting articles, the key table's batches and the sketches are parked in files and the
PCollections carry 32-byte tokens (`transforms/spill.py`); the sketch tokens are then a small side input, and
each child is verified against its candidate parents in one step. Inline (managed runners, Dask, in
process), two joins bring each pair's sketches together instead.
"""
from __future__ import annotations

import array
import functools
import re
from datetime import datetime
from typing import Iterator, NamedTuple, Optional

import apache_beam as beam
import xxhash
from apache_beam.metrics import Metrics

from wirewash.transforms.spill import Spill
from wirewash.transforms.normalize import content_hash, dedup_key
from wirewash.transforms.types import DOCUMENTS, DUPLICATES, REJECTED, Article, Duplicate, Rejection

__all__ = ["DeduplicateArticles", "DedupConfig", "shingles", "minhash_signature", "estimate_jaccard",
           "lsh_params", "band_keys", "sort_key", "shingle_sketch", "sketch_jaccard", "story_key", "days_apart"]

NAMESPACE = "dedup"
STAGE = "dedup"
KIND_EXACT = "exact"
KIND_NEAR = "near"
REASON_DUPLICATE_ID = "duplicate_id"

SHINGLE_WORDS = 5
SHINGLE_CHARS = 5
MAX_PARENTS_PER_BUCKET = 3
MAX_BUCKET_SIZE = 500
SKETCH_SIZE = 1024  # bottom-k shingle hashes kept per document for verification (8 KB at most)
KEY_TABLE_BATCH = 8192  # rows per parked batch of the key table (about 1.5 MB)
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

    @property
    def order(self) -> tuple:
        return sort_key(self.published, self.doc_id, self.loc)


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
    return [" ".join(words[i:i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)]


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
    """Bottom-k sketch: the `size` smallest distinct 64-bit hashes of the shingles, sorted, packed."""
    hashes = sorted({xxhash.xxh3_64_intdigest(item.encode("utf-8")) for item in items})[:size]
    return array.array("Q", hashes).tobytes()


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
    ordered = [column[index] for column in columns]
    change = np.zeros(len(index), dtype=bool)
    change[0] = True
    for column in ordered:
        change[1:] |= column[1:] != column[:-1]
    starts = np.flatnonzero(change)
    sizes = np.diff(np.r_[starts, len(index)])
    for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist()):
        yield index[start:start + size].tolist()


def shared_buckets(hashes, bands: int) -> Iterator[tuple[int, list[int]]]:
    """Band hashes of n documents, packed row by row (`bands` per document; an `array('Q')` or an n x bands
    uint64 array) -> per band, every bucket that more than one document shares, as (band, [document indexes
    in ascending order])."""
    import numpy as np

    table = hashes if isinstance(hashes, np.ndarray) else np.frombuffer(hashes, dtype=np.uint64).reshape(-1, bands)
    for band in range(bands):
        for rows in equal_runs(table[:, band]):
            yield band, rows


def bucket_candidates(members: list[tuple]) -> list[tuple]:
    """Candidate (child, parent) pairs in one LSH bucket: each member against the first few members that
    precede it in kept-copy order. Members are (order, loc)."""
    members = sorted(members)[:MAX_BUCKET_SIZE]
    pairs = []
    for i in range(1, len(members)):
        for j in range(min(i, MAX_PARENTS_PER_BUCKET)):
            pairs.append((members[i][1], (members[j][0], members[j][1])))
    return pairs


def resolve_root(loc: str, parents: dict) -> tuple:
    """Follows near-duplicate parent links to the kept document: returns its (order, loc)."""
    order, seen = None, 0
    while loc in parents and seen < 10_000:
        order, loc, _ = parents[loc]
        seen += 1
    return order, loc


# ---------------------------------------------------------------------------------------------------------
# Beam wrappers
# ---------------------------------------------------------------------------------------------------------

# Beam's own encoding of plain values (str, None, numbers, tuples, lists): the band table's orders, in batches.
_PRIMITIVES = beam.coders.FastPrimitivesCoder()


class _FingerprintFn(beam.DoFn):
    """Article -> (location, parked Article with content_hash), and its `_Key` (band hashes packed) on the
    `keys` output."""

    def __init__(self, config: DedupConfig, bands: int, rows: int, spill: Spill):
        self.config, self.bands, self.rows, self.spill = config, bands, rows, spill

    def process(self, article: Article):
        key = story_key(article.text, article.title)
        digest = content_hash(key)
        packed = b""
        if self.config.near:
            signature = minhash_signature(shingles(key), self.config.num_perm, self.config.seed)
            packed = array.array("Q", band_hashes(signature, self.bands, self.rows)).tobytes()
        yield beam.pvalue.TaggedOutput("keys", _Key(
            article.source_location, article.doc_id, article.published_at, digest, packed))
        yield article.source_location, self.spill.park_article(article._replace(content_hash=digest))


class _KeyTableFn(beam.CombineFn):
    """Every `_Key` -> one packed table of all documents, as a list of parked batches. A batch holds its rows'
    content hashes (two unsigned 64-bit integers each), band hashes (`bands` each; none without
    near-duplicate detection) and kept-copy orders, encoded together; on disk (`spill`) the table that
    crosses the runner is a list of 32-byte tokens, inline it is the batches themselves (about 200 bytes a
    document, instead of a grouping-table entry per document and grouping).

    Accumulator: (pending content hashes, pending band hashes, pending orders, parked batches); `compact`,
    which the runner calls on each partial accumulator it emits, parks the pending rows as one batch, and so
    does `add_input` every `KEY_TABLE_BATCH` rows."""

    def __init__(self, spill: Optional[Spill] = None):
        self.spill = spill or Spill()

    def create_accumulator(self):
        return array.array("Q"), array.array("Q"), [], []

    def add_input(self, accumulator, key: _Key):
        content = int(key.content_hash, 16)
        accumulator[0].extend((content >> 64, content & 0xFFFFFFFFFFFFFFFF))
        accumulator[1].frombytes(key.bands)
        accumulator[2].append(key.order)
        # A local worker gets half of the stage's input as one bundle: park full batches as they fill
        return self.compact(accumulator) if len(accumulator[2]) >= KEY_TABLE_BATCH else accumulator

    def compact(self, accumulator):
        contents, hashes, pending, batches = accumulator
        if not pending:
            return accumulator
        batch = _PRIMITIVES.encode((contents.tobytes(), hashes.tobytes(), pending))
        return array.array("Q"), array.array("Q"), [], batches + [self.spill.park_bytes(batch)]

    def merge_accumulators(self, accumulators):
        batches = []
        for accumulator in accumulators:
            batches += self.compact(accumulator)[3]
        return array.array("Q"), array.array("Q"), [], batches

    def extract_output(self, accumulator):
        return self.compact(accumulator)[3]


def _unpack_table(batches: list, spill: Spill) -> tuple:
    """Parked batches of the key table -> (content hashes, band hashes, orders), rows aligned."""
    contents, hashes, orders = array.array("Q"), array.array("Q"), []
    for token in batches:
        more_contents, more_hashes, more_orders = _PRIMITIVES.decode(spill.fetch_bytes(token))
        contents.frombytes(more_contents)
        hashes.frombytes(more_hashes)
        orders += more_orders
    return contents, hashes, orders


def _first_of(group: list[int], orders: list) -> tuple[int, list[int]]:
    """Row indexes of one group -> (the kept row, the other rows), by kept-copy order."""
    ranked = sorted(group, key=orders.__getitem__)
    return ranked[0], ranked[1:]


def _decide_from_table(batches: list, bands: int, spill: Spill):
    """The key table -> every decision that needs no text, in three steps over the packed columns:

    1. records sharing a `doc_id`: the first (kept-copy order) stays, the others are rejected
       (`decisions` output: (loc, ("reject", reason, kept loc)));
    2. among the rest, equal content hashes: the first stays, the others are exact duplicates
       (`exact` output: (loser loc, (kept order, kept loc)));
    3. among the rows that stay, the near-duplicate candidates of the LSH bands (`_candidates_by_child`:
       main output (child loc, parents) and `members` output (loc, date))."""
    import numpy as np

    contents, hashes, orders = _unpack_table(batches, spill)
    n = len(orders)
    stays = np.ones(n, dtype=bool)

    ids = np.fromiter((xxhash.xxh3_64_intdigest(order[1].encode("utf-8")) for order in orders), np.uint64, n)
    for group in equal_runs(ids):
        by_id: dict = {}
        for row in group:  # equal 64-bit hashes: group by the id itself
            by_id.setdefault(orders[row][1], []).append(row)
        for same_id in by_id.values():
            if len(same_id) > 1:
                kept, losers = _first_of(same_id, orders)
                for loser in losers:
                    stays[loser] = False
                    Metrics.counter(NAMESPACE, f"dropped_{REASON_DUPLICATE_ID}").inc()
                    yield beam.pvalue.TaggedOutput("decisions", (orders[loser][2], (
                        "reject", REASON_DUPLICATE_ID, orders[kept][2])))

    unique = np.flatnonzero(stays)
    content = np.frombuffer(contents, dtype=np.uint64).reshape(-1, 2)[unique]
    for group in equal_runs(content[:, 0], content[:, 1]):
        kept, losers = _first_of(unique[group].tolist(), orders)
        for loser in losers:
            stays[loser] = False
            Metrics.counter(NAMESPACE, "exact_duplicates").inc()
            yield beam.pvalue.TaggedOutput("exact", (orders[loser][2], (orders[kept], orders[kept][2])))

    if bands and len(hashes):
        firsts = np.flatnonzero(stays)
        table = np.frombuffer(hashes, dtype=np.uint64).reshape(-1, bands)[firsts]
        yield from _candidates_by_child(table, [orders[row] for row in firsts.tolist()], bands)


def _candidates_by_child(table, orders: list, bands: int):
    """Band hashes (one row per document) and the documents' kept-copy orders -> (child loc, ((parent order,
    parent loc), ...)): each child's candidate parents from every band (`bucket_candidates`), each pair once
    however many bands it shares; and, on the `members` output, (loc, date) of every document in a pair,
    once: the articles to sketch."""
    parents_of: dict = {}
    dates: dict = {}
    for _, rows in shared_buckets(table, bands):
        ordered = sorted((orders[i], orders[i][2]) for i in rows)[:MAX_BUCKET_SIZE]  # as bucket_candidates
        for order, loc in ordered:
            dates[loc] = order[0]
        for child_loc, parent in bucket_candidates(ordered):
            parents_of.setdefault(child_loc, set()).add(parent)
    for loc in sorted(dates):
        yield beam.pvalue.TaggedOutput("members", (loc, dates[loc]))
    for child_loc in sorted(parents_of):
        yield child_loc, tuple(sorted(parents_of[child_loc]))


def _sketch_if_wanted(item: tuple, wanted: dict, spill: Spill):
    """(loc, (parked bottom-k sketch, date)) of an article that is a near-duplicate candidate (a member of a
    shared bucket): the only ones whose sketches are needed."""
    loc, parked = item
    date = wanted.get(loc) if wanted else None
    if date is not None:
        article = spill.fetch_article(parked)
        sketch = shingle_sketch(shingles(story_key(article.text, article.title)))
        yield loc, (spill.park_bytes(sketch), date)


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


def _verify_against_parent(item, threshold, window_days, spill: Spill):
    """(parent loc, {sig: [(parent sketch, date)], children: [(child loc, (child sketch, date), parent order)]})
    -> (child loc, (parent order, parent loc, similarity)) for the verified pairs. Sketches travel parked."""
    parent_loc, grouped = item
    if not grouped["sig"]:
        return
    parent = grouped["sig"][0]
    sketch_of = functools.lru_cache(maxsize=2)(spill.fetch_bytes)  # the parent's sketch is read once
    for child_loc, child, parent_order in grouped["children"]:
        similarity = _similar_enough(parent, child, threshold, window_days, sketch_of)
        if similarity is not None:
            yield child_loc, (parent_order, parent_loc, similarity)


def _verify_candidates(item, sketches: dict, threshold, window_days, spill: Spill):
    """(child loc, ((parent order, parent loc), ...)) and a side input {loc: (sketch token, date)} -> (child
    loc, (parent order, parent loc, similarity)) for the verified pairs: the joins' work, for spill tokens."""
    child_loc, parents = item
    child = sketches.get(child_loc)
    if child is None:
        return
    sketch_of = functools.lru_cache(maxsize=2)(spill.fetch_bytes)  # the child's sketch is read once
    for parent_order, parent_loc in parents:
        parent = sketches.get(parent_loc)
        similarity = None if parent is None else _similar_enough(parent, child, threshold, window_days, sketch_of)
        if similarity is not None:
            yield child_loc, (parent_order, parent_loc, similarity)


def _attach_child_signature(item):
    child_loc, grouped = item
    if not grouped["sig"]:
        return
    child_sig = grouped["sig"][0]
    for parents in grouped["parents"]:  # one tuple of distinct parents per child
        for parent_order, parent_loc in parents:
            yield parent_loc, (child_loc, child_sig, parent_order)


def _decide_near(item, parents):
    child_loc, (parent_order, parent_loc, similarity) = item
    root_order, _ = resolve_root(child_loc, parents)
    Metrics.counter(NAMESPACE, "near_duplicates").inc()
    return child_loc, ("dup", root_order[1], KIND_NEAR, similarity)


def _decide_exact(item, parents):
    loser_loc, (winner_order, winner_loc) = item
    root_order, _ = resolve_root(winner_loc, parents)
    if root_order is None:
        return loser_loc, ("dup", winner_order[1], KIND_EXACT, 1.0)
    # The winner of this exact group is itself a near copy of the root: so is the loser.
    return loser_loc, ("dup", root_order[1], KIND_NEAR, parents[winner_loc][2])


class _RouteFn(beam.DoFn):
    """Each (location, parked article) to exactly one of documents / duplicates / rejected, by the decisions
    side input."""

    def __init__(self, spill: Spill):
        self.spill = spill

    def process(self, item: tuple, decisions: dict):
        loc, parked = item
        article = self.spill.fetch_article(parked)
        decision = decisions.get(loc)
        if decision is None:
            Metrics.counter(NAMESPACE, "kept").inc()
            yield article
        elif decision[0] == "reject":
            yield beam.pvalue.TaggedOutput(REJECTED, Rejection(
                article.doc_id, article.source_location, STAGE, decision[1],
                error=f"doc_id already used by the record at {decision[2]}"))
        else:
            _, duplicate_of, kind, similarity = decision
            yield beam.pvalue.TaggedOutput(DUPLICATES, Duplicate(
                article.doc_id, duplicate_of, kind, similarity, article.source_location))


class DeduplicateArticles(beam.PTransform):
    """Article -> {`documents`: kept articles (content_hash set), `duplicates`: Duplicate, `rejected`}.

    `spill` is where the articles wait for the decisions, and the candidates' sketches for verification
    (default: inline, in the PCollections)."""

    def __init__(self, config: DedupConfig = DedupConfig(), spill: Optional[Spill] = None):
        super().__init__()
        self.config = config
        self.spill = spill or Spill()
        self.bands, self.rows = lsh_params(config.threshold, config.num_perm)

    def expand(self, articles):
        fingerprinted = articles | "Fingerprint" >> beam.ParDo(
            _FingerprintFn(self.config, self.bands, self.rows, self.spill)).with_outputs("keys", main="articles")
        decided = (fingerprinted["keys"]
                   | "KeyTable" >> beam.CombineGlobally(_KeyTableFn(self.spill))
                   | "Decide" >> beam.FlatMap(_decide_from_table, self.bands if self.config.near else 0, self.spill)
                   .with_outputs("decisions", "exact", "members", main="by_child"))

        if self.config.near:
            threshold = self.config.threshold
            candidates = decided["by_child"]
            # loc -> date of every document in a candidate pair: a small side input naming the articles to sketch
            wanted = beam.pvalue.AsDict(decided["members"])
            sketches = fingerprinted["articles"] | "SketchMembers" >> beam.FlatMap(
                _sketch_if_wanted, wanted, self.spill)
            if self.spill.on_disk:
                # Local runs: the sketches wait in spill files, and their 32-byte tokens make a small side
                # input; each child meets its candidate parents in one step. (The two joins below held a
                # grouping-table entry per candidate pair in the launcher: its peak at 300,000 records.)
                verified = candidates | "Verify" >> beam.FlatMap(
                    _verify_candidates, beam.pvalue.AsDict(sketches), threshold, self.config.near_window_days,
                    self.spill)
            else:
                # Inline sketches (up to 8 KB each) are too big for a side input: two joins bring each pair's
                # sketches together. The reshuffle is a stage boundary the local runner needs: a stage waiting
                # on a side input that feeds a Flatten (the joins) next to another stage's output never gets
                # its watermark, and the run stops with "watermark-pending bundles did not execute".
                signatures = sketches | "SpreadSketches" >> beam.Reshuffle()
                to_parent = ({"sig": signatures, "parents": candidates} | "JoinChild" >> beam.CoGroupByKey()
                             | "AttachChildSignature" >> beam.FlatMap(_attach_child_signature))
                verified = ({"sig": signatures, "children": to_parent} | "JoinParent" >> beam.CoGroupByKey()
                            | "Verify" >> beam.FlatMap(_verify_against_parent, threshold,
                                                       self.config.near_window_days, self.spill))
            edges = verified | "EarliestParent" >> beam.CombinePerKey(min)
        else:
            edges = articles.pipeline | "NoEdges" >> beam.Create([])
        parents = beam.pvalue.AsDict(edges)

        decisions = (
            (decided["decisions"],
             edges | "DecideNear" >> beam.Map(_decide_near, parents),
             decided["exact"] | "DecideExact" >> beam.Map(_decide_exact, parents))
            | "AllDecisions" >> beam.Flatten()
        )
        routed = fingerprinted["articles"] | "Route" >> beam.ParDo(
            _RouteFn(self.spill), beam.pvalue.AsDict(decisions)).with_outputs(DUPLICATES, REJECTED, main=DOCUMENTS)
        return {DOCUMENTS: routed[DOCUMENTS], DUPLICATES: routed[DUPLICATES], REJECTED: routed[REJECTED]}
