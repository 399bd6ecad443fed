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

The story fingerprint is a one-permutation MinHash of the article's long lines (the smallest hash of its
lines of 8+ words): syndicated and edited copies of one story usually share it, so a story copied ten times
on one site counts once, and its own sentences are not mistaken for furniture. Long lines (more than
`MAX_LEARN_WORDS` words) are never learned: a recurring paragraph is a quote, not furniture.
"""
from __future__ import annotations

import re
from typing import Iterable, Optional
from urllib.parse import urlsplit

import apache_beam as beam
import xxhash
from apache_beam.metrics import Metrics

from transforms.types import Article

__all__ = ["LearnRepeatedLines", "line_key", "story_fingerprint", "source_of", "article_line_keys",
           "RULE_NAME", "DEFAULT_MIN_SUPPORT"]

NAMESPACE = "boilerplate"
RULE_NAME = "repeated_line"
DEFAULT_MIN_SUPPORT = 10
MAX_LEARN_WORDS = 15
MAX_LEARN_CHARS = 160
FINGERPRINT_MIN_WORDS = 8

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def source_of(article: Article) -> str:
    """The site an article belongs to: its `source` field, else the host of its URL without `www.`."""
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
    """Counts distinct story fingerprints, keeping at most `cap` of them (all that the threshold needs)."""

    def __init__(self, cap: int):
        self.cap = cap

    def create_accumulator(self):
        return set()

    def add_input(self, acc, fingerprint):
        if len(acc) < self.cap:
            acc.add(fingerprint)
        return acc

    def merge_accumulators(self, accs):
        merged = set()
        for acc in accs:
            for fingerprint in acc:
                if len(merged) >= self.cap:
                    return merged
                merged.add(fingerprint)
        return merged

    def extract_output(self, acc):
        return len(acc)


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


def _emit_keys(article: Article, fold):
    lines = [fold(line) for line in article.text.splitlines()]
    lines = [line for line in lines if line]
    fingerprint, keys = article_line_keys(lines)
    source = source_of(article)
    for key in keys:
        yield (source, key), fingerprint


def _count_learned(item):
    Metrics.counter(NAMESPACE, "learned_lines").inc()
    return item[0]


class LearnRepeatedLines(beam.PTransform):
    """Article -> a one-element PCollection {source: frozenset(line keys)} of lines seen in at least
    `min_support` distinct stories of that source. Use it with `beam.pvalue.AsSingleton`."""

    def __init__(self, min_support: int = DEFAULT_MIN_SUPPORT):
        super().__init__()
        if min_support < 2:
            raise ValueError(f"min_support must be at least 2, got {min_support}")
        self.min_support = min_support

    def expand(self, articles):
        from transforms.boilerplate import fold_line

        min_support = self.min_support
        return (
            articles
            | "LineKeys" >> beam.FlatMap(_emit_keys, fold_line)
            | "DistinctStories" >> beam.CombinePerKey(_DistinctStories(min_support))
            | "AboveSupport" >> beam.Filter(lambda item: item[1] >= min_support)
            | "Learned" >> beam.Map(_count_learned)
            | "BySource" >> beam.CombineGlobally(_KeysBySource())
        )
