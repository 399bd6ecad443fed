"""Learned boilerplate: lines that recur across many distinct stories of one source are site furniture.

Rules only know the well-known kinds; every site also has its own furniture ("Lượt xem", "Sign up now",
a slogan, a byline template) in any language. This module learns it from the data:

1. Every article gives its *line keys*: a 64-bit hash of each distinct short line, folded like the rules
   fold it and with every number turned into 0, tagged with
   the article's source (the `source` field, else the URL host without `www.`) and a *story fingerprint*.
   (Every number becomes 0: "58 views" and "1,204 views" are one key.)
2. A combine counts, per (source, line key), the distinct story fingerprints, capped at the support that
   matters: memory stays bounded whatever the corpus size, and only keys that reach `min_support` survive.
3. The surviving keys, grouped per source, are a small side input; the boilerplate stage drops those lines
   (counted as `removed_repeated_line`).

A stream has no end to count to: there (`LearnFromStream`) the same keys are counted one article at a time in
a capped table kept in Beam state (`StreamCounts`), and each article is cleaned with what the articles before
it, in earlier windows or the same one, taught.

Across sources, two more kinds are learned the same way (one combine, counts capped, bounded memory):

- a *shared line*: a short line (at most `SHARED_MAX_WORDS` words, numbers made 0) that recurs in at least
  `SHARED_MIN_STORIES` distinct stories from at least `SHARED_MIN_SOURCES` sources ("Quảng cáo", "Đăng ký
  nhận bản tin của chúng tôi", "Already a subscriber? Log in"): furniture every site words its own way,
  but many sites word alike. Never a name-like line (a byline recurs too), a credit or contact line
  (`KEEP_AT_EDGE`), or a line that ends like a sentence without addressing the reader (a stock phrase of
  prose such as "The company declined to comment." stays; "We use cookies to give you..." goes). Rule
  `shared_line`.
- a *shared label*: the 1-3 words before the colon of "Label: text" lines ("Baca juga: <headline>",
  "関連記事：<headline>", "Foto: <name>") when that label opens such lines in at least `SHARED_MIN_STORIES`
  stories from `SHARED_MIN_SOURCES` sources, whatever follows it: teasers and credits are a label with a
  varying slot. Never a line that ends like a sentence ("He said: ... ."). Rule `shared_label`.

The story fingerprint is a one-permutation MinHash of the article's long lines (the smallest hash of its
lines of 8+ words): syndicated and edited copies of one story usually share it, so a story copied ten times
on one site counts once, and its own sentences are not mistaken for furniture. Long lines (more than
`MAX_LEARN_WORDS` words) are never learned: a recurring paragraph is a quote, not furniture.
"""
from __future__ import annotations

import re
import uuid
from typing import Any, Iterable, Optional, Tuple
from urllib.parse import urlsplit

import apache_beam as beam
import xxhash
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec

from wirewash.transforms.linear_regex import compile_linear
from wirewash.transforms.packed import CombinePerKeyPacked
from wirewash.transforms.spill import Spill
from wirewash.transforms.text import KEEP_AT_EDGE, SENTENCE_END, fold_line
from wirewash.transforms.types import Article

__all__ = ["LearnRepeatedLines", "line_key", "story_fingerprint", "site_key", "article_line_keys",
           "RULE_NAME", "DEFAULT_MIN_SUPPORT", "SHARED", "LABELS", "SHARED_RULE", "LABEL_RULE", "line_label",
           "label_key", "is_name_like", "shared_line_key", "learning_keys", "StreamCounts", "LearnFromStream",
           "DEFAULT_STREAM_MAX_KEYS"]

NAMESPACE = "boilerplate"
RULE_NAME = "repeated_line"
SHARED_RULE = "shared_line"
LABEL_RULE = "shared_label"
DEFAULT_MIN_SUPPORT = 10
MAX_LEARN_WORDS = 15
MAX_LEARN_CHARS = 160
FINGERPRINT_MIN_WORDS = 8
# Shared across sources: at least 8 distinct stories from 3 sources. On the held-out boilerplate half (bench/
# heldout.py, 2,000 records, 16 sources) lines and labels at this support were furniture; at 5 stories from 2
# sources, bylines and "He said:" quotations came in.
SHARED_MIN_STORIES = 8
SHARED_MIN_SOURCES = 3
SHARED_MAX_WORDS = MAX_LEARN_WORDS
LABEL_MAX_WORDS = 3
LABEL_MAX_CHARS = 32
LABEL_LINE_MAX_WORDS = 30  # "Label: headline" lines; a longer line is a paragraph that starts with a label
NAME_MAX_WORDS = 4
# Keys of the learned dict that are no source: the lines and labels shared across sources.
SHARED = "\x00shared"
LABELS = "\x00labels"
_COLONS = (":", "\uff1a")
# Second-person pronouns and possessives (folded): furniture speaks to the reader, news prose about others.
_READER = compile_linear(
    r"\b(you|your|yours|sie|ihr|ihre|ihnen|du|dein|deine|dich|dir|vous|votre|vos|tu|ton|tes|usted|ustedes|tú|"
    r"tus|você|vocês|voi|vostro|vostra|tuo|tua|jij|jouw|uw|bạn|anda|kamu|вы|ваш|ваша|ваше|ваши|вас|вам|ты|"
    r"твой|ty|twój|wy|siz|sen)\b")
# First-person plural (folded): the site speaking of itself ("follow us", "unser Newsletter", "chúng tôi").
# A credit names a source and speaks neither as the site nor to the reader.
_SITE_VOICE = compile_linear(
    r"\b(us|our|ours|uns|unser|unsere|unseren|unserem|unserer|unseres|nous|notre|nos|nosotros|nuestro|nuestra|"
    r"nuestros|nuestras|noi|nostro|nostra|nostri|nostre|nosso|nossa|nossos|nossas|ons|onze|chúng tôi|chúng ta|"
    r"kami|kita|нас|наш|наша|наше|наши|nasz|nasza|nasze|naszą|naszych|bizi|bizim)\b")

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def site_key(article: Article) -> str:
    """The site whose furniture an article's lines count for: its `source` field folded (stripped, lower-cased,
    without `www.`), else the host of its URL without `www.`, else ''. (The `source` a record gets from its URL
    at reading is `transforms/records.py`'s `source_from_url`; this key also folds a given `source`.)"""
    if article.source and article.source.strip():
        return article.source.strip().lower().removeprefix("www.")
    if article.url:
        try:
            host = urlsplit(article.url.strip()).hostname or ""
        except ValueError:
            host = ""
        return host.lower().removeprefix("www.")
    return ""


def line_key(folded: str) -> Optional[int]:
    """64-bit key of a folded line (every number made 0), or None for a line that is empty or too long to learn."""
    if not folded or not any(ch.isalnum() for ch in folded):
        return None
    if len(folded) > MAX_LEARN_CHARS or folded.count(" ") >= MAX_LEARN_WORDS:
        return None
    return xxhash.xxh3_64_intdigest(_NUMBER.sub("0", folded).encode("utf-8"))


def is_name_like(line: str) -> bool:
    """A byline: 2-4 words each starting with a capital letter ("Trang Phạm", "Mi Vân"), or one such word
    holding a dot ("H.Long"). One capitalised word alone ("Publicidad", "Anzeige") is as often a label."""
    words = line.split()
    if not 1 <= len(words) <= NAME_MAX_WORDS or not all(word[:1].isupper() for word in words):
        return False
    return len(words) >= 2 or "." in words[0]


def addresses_the_reader(line: str) -> bool:
    """Whether the line speaks to the reader: a second-person pronoun (`_READER`, several languages)."""
    return _READER.search(line)


def is_prompt(folded: str) -> bool:
    """Whether a folded line speaks to the reader (`addresses_the_reader`) or as the site ("us", "our",
    "chúng tôi": `_SITE_VOICE`, several languages): a prompt, not a credit, even when it opens like one
    ("Theo dõi chúng tôi trên Facebook", follow us, opens like the credit "Theo <source>") or holds an address
    ("Follow us at www...", "Suivez-nous sur https://...")."""
    return bool(_READER.search(folded) or _SITE_VOICE.search(folded))


def may_be_shared(line: str, folded: str) -> bool:
    """Whether a line may be learned as shared across sources: not name-like, not ending like a sentence
    unless it addresses the reader (a cookie notice, "Sign up to get..."; a stock sentence of prose such as
    "The company declined to comment." never does), no credit or contact (`KEEP_AT_EDGE`) unless it is a
    prompt (`is_prompt`: a follow or contact prompt shaped like a credit). Cheapest test first."""
    stripped = line.strip()
    if is_name_like(stripped) or (SENTENCE_END.search(stripped) and not addresses_the_reader(folded)):
        return False
    return not KEEP_AT_EDGE.search(stripped) or is_prompt(folded)


def shared_line_key(line: str, folded: str) -> Optional[int]:
    """`line_key` of a line that may be learned as shared across sources (`may_be_shared`), or None."""
    key = line_key(folded)
    return key if key is not None and folded.count(" ") < SHARED_MAX_WORDS and may_be_shared(line, folded) else None


def line_label(folded: str) -> Optional[str]:
    """The label of a folded "Label: text" line: the 1-3 words (letters, digits, `.'-`, 32 characters at most)
    before its first colon (":" or "："), when text follows and the line does not end like a sentence."""
    head = folded[:LABEL_MAX_CHARS + 2]
    if not any(colon in head for colon in _COLONS):  # most lines: no colon where a label's would be
        return None
    cut = min((i for i in (folded.find(colon, 0, LABEL_MAX_CHARS + 2) for colon in _COLONS) if i > 0), default=-1)
    if cut < 0:
        return None
    label, rest = folded[:cut].strip(), folded[cut + 1:].strip()
    if (not label or not rest or label.count(" ") >= LABEL_MAX_WORDS or len(label) > LABEL_MAX_CHARS
            or folded.count(" ") >= LABEL_LINE_MAX_WORDS or SENTENCE_END.search(folded)):
        return None
    if not all(ch.isalnum() or ch in " .'’-" for ch in label) or not any(ch.isalpha() for ch in label):
        return None
    return label


def label_key(label: str) -> int:
    return xxhash.xxh3_64_intdigest(("label:" + label).encode("utf-8"))


def story_fingerprint(folded_lines: Iterable[str]) -> int:
    """One-permutation MinHash of the long lines: equal for copies of a story that keep its smallest line."""
    hashes = [xxhash.xxh3_64_intdigest(line.encode("utf-8")) for line in folded_lines
              if line.count(" ") + 1 >= FINGERPRINT_MIN_WORDS]
    if not hashes:  # a short story: all of its lines together
        hashes = [xxhash.xxh3_64_intdigest("\n".join(folded_lines).encode("utf-8"))]
    return min(hashes)


def article_line_keys(folded_lines: list[str]) -> tuple[int, set]:
    """(story fingerprint, distinct line keys) of an article's folded lines."""
    keys = {k for k in map(line_key, folded_lines) if k is not None}
    return story_fingerprint(folded_lines), keys


class _DistinctStories(beam.CombineFn):
    """(fingerprint, source) values -> (distinct stories, distinct sources), keeping at most `cap` stories and
    `SHARED_MIN_SOURCES` sources (all that the thresholds need): bounded memory per key."""

    def __init__(self, cap: int):
        self.cap = cap

    def create_accumulator(self):
        return set(), set()

    def add_input(self, acc, value):
        stories, sources = acc
        if len(stories) < self.cap:
            stories.add(value[0])
        if len(sources) < SHARED_MIN_SOURCES:
            sources.add(value[1])
        return acc

    def merge_accumulators(self, accs):
        stories, sources = set(), set()
        for acc_stories, acc_sources in accs:
            for fingerprint in acc_stories:
                if len(stories) >= self.cap:
                    break
                stories.add(fingerprint)
            for source in acc_sources:
                if len(sources) >= SHARED_MIN_SOURCES:
                    break
                sources.add(source)
        return stories, sources

    def extract_output(self, acc):
        return len(acc[0]), len(acc[1])


def _above_support(item, min_support: int) -> bool:
    (source, _), (stories, sources) = item
    if source in (SHARED, LABELS):
        return stories >= SHARED_MIN_STORIES and sources >= SHARED_MIN_SOURCES
    return stories >= min_support


class _KeysBySource(beam.CombineFn):
    """(source, key) pairs -> {source: frozenset of keys}: the side input of the boilerplate stage."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, item):
        acc.setdefault(item[0], set()).add(item[1])
        return acc

    def merge_accumulators(self, accs):
        merged = {}
        for acc in accs:
            for source, keys in acc.items():
                merged.setdefault(source, set()).update(keys)
        return merged

    def extract_output(self, acc):
        return {source: frozenset(keys) for source, keys in acc.items()}


def learning_keys(article: Article, fold=fold_line) -> tuple[tuple, list]:
    """((story fingerprint, source), [(scope, key), ...]) of an article: what it counts for. Scope is its source
    (`site_key`) for each distinct line key, `SHARED` for the lines that may be shared across sources,
    `LABELS` for the labels of its "Label: text" lines. The batch combine and the stream's counts both use it."""
    pairs = [(line, fold(line)) for line in article.text.splitlines()]
    pairs = [(line, folded) for line, folded in pairs if folded]
    fingerprint = story_fingerprint([folded for _, folded in pairs])
    source = site_key(article)
    keyed = {}  # line key -> one line and its fold (copies of a line are one key)
    for line, folded in pairs:
        key = line_key(folded)
        if key is not None and key not in keyed:
            keyed[key] = (line, folded)
    scoped = [(source, key) for key in keyed]
    scoped += [(SHARED, key) for key, (line, folded) in keyed.items()
               if folded.count(" ") < SHARED_MAX_WORDS and may_be_shared(line, folded)]
    labels = {label_key(label) for label in map(line_label, (folded for _, folded in pairs)) if label}
    scoped += [(LABELS, key) for key in sorted(labels)]
    return (fingerprint, source), scoped


def _emit_keys(article: Article, fold=fold_line):
    value, scoped = learning_keys(article, fold)
    for scope_key in scoped:
        yield scope_key, value


def _count_learned(item):
    Metrics.counter(NAMESPACE, "learned_lines").inc()
    return item[0]


class LearnRepeatedLines(beam.PTransform):
    """Article -> a one-element PCollection {source: frozenset(line keys)} of lines seen in at least
    `min_support` distinct stories of that source, plus `SHARED` (line keys) and `LABELS` (`label_key`s)
    learned across sources. Use it with `beam.pvalue.AsSingleton`. `spill` is where the packed counts wait
    for the shuffle (`transforms/packed.py`; default: inline)."""

    def __init__(self, min_support: int = DEFAULT_MIN_SUPPORT, spill: Optional[Spill] = None):
        super().__init__()
        if min_support < 2:
            raise ValueError(f"min_support must be at least 2, got {min_support}")
        self.min_support, self.spill = min_support, spill

    def expand(self, articles):
        min_support = self.min_support
        return (
            articles
            # each article's (scope, key) pairs combined where it is, per bundle, and sent on per shard (~64
            # elements a bundle): most keys are unique, and one element per key crossed before
            | "DistinctStories" >> CombinePerKeyPacked(_DistinctStories(max(min_support, SHARED_MIN_STORIES)),
                                                       pairs_of=_emit_keys, spill=self.spill)
            | "AboveSupport" >> beam.Filter(_above_support, min_support)
            | "Learned" >> beam.Map(_count_learned)
            | "BySource" >> beam.CombineGlobally(_KeysBySource())
        )


# ---------------------------------------------------------------------------------------------------------
# Streaming: the same counts, kept in state, learned as the stream arrives
# ---------------------------------------------------------------------------------------------------------

# About 200 bytes an entry: 100,000 entries are ~20 MB. A 5,000-record generated corpus fills 14,897 of them.
DEFAULT_STREAM_MAX_KEYS = 100_000
STREAM_SNAPSHOT_EVERY = 1000  # articles between two compactions of the state's log into one snapshot
STREAM_KEY = "furniture"
_STREAM_CACHE: dict = {}  # state version token -> StreamCounts, per process (see _LearnFromStreamFn)
_STREAM_CACHE_SIZE = 4


class StreamCounts:
    """The counts of `LearnRepeatedLines` for an unbounded input, one article at a time, in bounded memory.

    A table of at most `max_keys` (scope, key) entries, each holding the distinct story fingerprints (at most
    the support that matters) and sources (at most `SHARED_MIN_SOURCES`) seen with it, in least-recently-seen
    order: when the table is full, the entry seen longest ago goes (a learned one too: furniture keeps
    appearing, so it keeps its place; a site that stopped using a line forgets it). An entry is learned
    once it reaches the batch thresholds (`_above_support`). Everything depends only on the order of
    `add` calls: replaying them rebuilds the same table."""

    def __init__(self, min_support: int = DEFAULT_MIN_SUPPORT, max_keys: int = DEFAULT_STREAM_MAX_KEYS):
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self.min_support = min_support
        self.max_keys = max_keys
        self.cap = max(min_support, SHARED_MIN_STORIES)
        self.entries: dict = {}  # (scope, key) -> (stories tuple, sources tuple); insertion order = recency
        self.learned: dict = {}  # scope -> set of keys above support
        self.evicted = 0

    def add(self, value: tuple, scoped: Iterable[tuple]) -> None:
        """Counts one article: `value` (fingerprint, source) for each of its (scope, key) (`learning_keys`)."""
        fingerprint, source = value
        entries = self.entries
        for scope_key in scoped:
            stories, sources = entries.pop(scope_key, ((), ()))
            if fingerprint not in stories and len(stories) < self.cap:
                stories += (fingerprint,)
            if source not in sources and len(sources) < SHARED_MIN_SOURCES:
                sources += (source,)
            entries[scope_key] = (stories, sources)  # to the most recent end
            if _above_support((scope_key, (len(stories), len(sources))), self.min_support):
                self.learned.setdefault(scope_key[0], set()).add(scope_key[1])
        while len(entries) > self.max_keys:
            scope_key = next(iter(entries))
            del entries[scope_key]
            self.evicted += 1
            keys = self.learned.get(scope_key[0])
            if keys is not None:
                keys.discard(scope_key[1])
                if not keys:
                    del self.learned[scope_key[0]]

    def learned_of(self, scoped: Iterable[tuple]) -> dict:
        """The learned dict (`LearnRepeatedLines`' shape) restricted to these (scope, key) pairs: what the
        boilerplate stage needs to clean the article they came from."""
        out: dict = {}
        for scope, key in scoped:
            if key in self.learned.get(scope, ()):
                out.setdefault(scope, set()).add(key)
        return {scope: frozenset(keys) for scope, keys in out.items()}

    def snapshot(self) -> tuple:
        """The whole table, in recency order (`restore` rebuilds it)."""
        return self.min_support, self.max_keys, tuple(self.entries.items())

    @classmethod
    def restore(cls, snapshot: tuple) -> "StreamCounts":
        min_support, max_keys, items = snapshot
        counts = cls(min_support, max_keys)
        for scope_key, (stories, sources) in items:
            counts.entries[scope_key] = (stories, sources)
            if _above_support((scope_key, (len(stories), len(sources))), min_support):
                counts.learned.setdefault(scope_key[0], set()).add(scope_key[1])
        return counts


_SNAPSHOT = "snapshot"


class _LearnFromStreamFn(beam.DoFn):
    """(STREAM_KEY, article) -> (article, learned dict for its lines), counting the article first: an article
    is cleaned with what every earlier arrival (and itself) taught. One key: the counts span sources.

    State: a log (bag) of the articles' (value, scoped keys) since the last snapshot, the snapshot itself as
    the log's first item every `STREAM_SNAPSHOT_EVERY` articles (so the log stays bounded), and a token naming
    the version. As in `transforms/stateful_dedup.py`, the table built from the log is cached in the process
    under that token; the log is read back only when the cache lacks that version (another worker, a restart).
    """

    LOG = BagStateSpec("log", PickleCoder())
    TOKEN = ReadModifyWriteStateSpec("token", PickleCoder())
    SINCE = ReadModifyWriteStateSpec("since_snapshot", PickleCoder())

    def __init__(self, min_support: int, max_keys: int):
        self.min_support = min_support
        self.max_keys = max_keys

    def _load(self, log, token) -> StreamCounts:
        version = token.read()
        counts = _STREAM_CACHE.pop(version, None) if version is not None else None
        if counts is None:
            Metrics.counter(NAMESPACE, "stream_counts_rebuilds").inc()
            counts = StreamCounts(self.min_support, self.max_keys)
            for item in log.read():
                if item[0] == _SNAPSHOT:
                    counts = StreamCounts.restore(item[1])
                else:
                    counts.add(*item)
        return counts

    def process(self, element, log=beam.DoFn.StateParam(LOG), token=beam.DoFn.StateParam(TOKEN),
                since=beam.DoFn.StateParam(SINCE)):
        article = element[1]
        counts = self._load(log, token)
        try:
            value, scoped = learning_keys(article)
        except Exception:  # noqa: BLE001 - a line the learner cannot read teaches nothing; the stage still runs
            value, scoped = None, []
        if scoped:
            counts.add(value, scoped)
            n = (since.read() or 0) + 1
            if n >= STREAM_SNAPSHOT_EVERY:
                log.clear()
                log.add((_SNAPSHOT, counts.snapshot()))
                n = 0
            else:
                log.add((value, scoped))
            since.write(n)
        version = uuid.uuid4().hex
        token.write(version)
        _STREAM_CACHE[version] = counts
        while len(_STREAM_CACHE) > _STREAM_CACHE_SIZE:  # oldest first: dicts keep insertion order
            _STREAM_CACHE.pop(next(iter(_STREAM_CACHE)))
        yield article, counts.learned_of(scoped)


class LearnFromStream(beam.PTransform):
    """Article (unbounded, any windowing) -> (article, learned dict restricted to its lines), the counts of
    `LearnRepeatedLines` kept in state (`StreamCounts`: at most `max_keys` entries) in the global window, so
    what earlier windows taught holds in later ones. Elements keep their timestamps and come back in the
    windowing they had."""

    def __init__(self, min_support: int = DEFAULT_MIN_SUPPORT, max_keys: int = DEFAULT_STREAM_MAX_KEYS):
        super().__init__()
        StreamCounts(min_support, max_keys)  # a bad bound fails here, not on a worker
        self.min_support = min_support
        self.max_keys = max_keys

    def expand(self, articles):
        return (articles
                | "KeyForCounts" >> beam.Map(lambda a: (STREAM_KEY, a)).with_output_types(Tuple[str, Any])
                | "CountInState" >> beam.ParDo(_LearnFromStreamFn(self.min_support, self.max_keys)))
