"""Dedup against the documents already in a lake (`wirewash run --append`): the lake's copy always wins.

Every batch run writes, beside the documents it commits, a compact dedup index (`LAKE/_index/*.parquet`, one
row per document: `doc_id`, content hash, `published_at`, MinHash signature, bottom-k shingle sketch; about
0.5 KB plus the sketch, never the text). An append loads the index once per worker and decides each new
article before the run's own dedup, as streaming does (first arrival wins):

- its `doc_id` is a lake document's: an exact duplicate of it when the content hash matches, else rejected
  (`duplicate_id`), since a lake `doc_id` names one text;
- its content hash is a lake document's: an exact duplicate of that document;
- a lake document shares an LSH band and its sketch Jaccard reaches the threshold within the date window: a
  near duplicate of the earliest-indexed such document (`NearIndex`, the streaming index, with the batch
  stage's verification).

The articles left go through the run's own dedup (`transforms/dedup.py`) and its kept documents join the
index at the commit. Which copy is kept can differ from one run over all inputs (that keeps the earliest
published copy): the lake's copy stays. Memory: the index is held by each worker (the sketch is up to 8 KB).
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from wirewash.transforms.dedup import KIND_EXACT, KIND_NEAR, REASON_DUPLICATE_ID, STAGE, DedupConfig, band_keys, lsh_params
from wirewash.transforms.stateful_dedup import IndexEntry, NearIndex, fingerprint
from wirewash.transforms.types import DUPLICATES, REJECTED, Article, Duplicate, Rejection

__all__ = ["INDEX_SCHEMA", "index_row", "index_row_of", "LakeIndex", "DedupAgainstLake", "read_index_ids"]

NAMESPACE = "lake_dedup"
INDEX_SCHEMA = pa.schema([
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("content_hash", pa.string(), nullable=False),
    pa.field("published_at", pa.string()),
    pa.field("signature", pa.binary()),
    pa.field("sketch", pa.binary()),
])


def index_row(article: Article, config: DedupConfig) -> dict:
    """The index row of a kept document (the same fingerprint as the dedup stages compute)."""
    digest, signature, sketch = fingerprint(article, config)
    return index_row_of((article.doc_id, digest, article.published_at, signature, sketch))


def index_row_of(fields: tuple) -> dict:
    """(doc_id, content hash, published_at, signature, sketch), as the batch dedup stage hands them for each
    kept document (its `index` output: nothing computed twice) -> the index row."""
    doc_id, digest, published_at, signature, sketch = fields
    return {"doc_id": doc_id, "content_hash": digest, "published_at": published_at,
            "signature": signature, "sketch": sketch}


class LakeIndex:
    """The lake's documents as dedup sees them: ids, content hashes and a near-duplicate index."""

    def __init__(self, rows: Iterable[dict], config: DedupConfig):
        self.config = config
        self.bands, self.rows = lsh_params(config.threshold, config.num_perm)
        self.hash_of: dict[str, str] = {}
        self.by_hash: dict[str, str] = {}
        self.near = NearIndex(config.threshold, self.bands, self.rows, config.near_window_days)
        for seq, row in enumerate(rows):
            self.hash_of[row["doc_id"]] = row["content_hash"]
            self.by_hash.setdefault(row["content_hash"], row["doc_id"])
            if config.near and row["signature"]:
                keys = tuple(band_keys(row["signature"], self.bands, self.rows))
                self.near._remember(IndexEntry(row["doc_id"], row["doc_id"], None, 0.0, row["signature"], keys,
                                               math.inf, seq, row["sketch"] or b"", row["published_at"]))

    def __len__(self) -> int:
        return len(self.hash_of)

    def decide(self, article: Article):
        """None (new to the lake), or the Duplicate / Rejection this article becomes."""
        digest, signature, sketch = fingerprint(article, self.config)
        if article.doc_id in self.hash_of:
            if self.hash_of[article.doc_id] == digest:
                return Duplicate(article.doc_id, article.doc_id, KIND_EXACT, 1.0, article.source_location)
            return Rejection(article.doc_id, article.source_location, STAGE, REASON_DUPLICATE_ID,
                             error="doc_id already used by a document of the lake")
        if digest in self.by_hash:
            return Duplicate(article.doc_id, self.by_hash[digest], KIND_EXACT, 1.0, article.source_location)
        if self.config.near and signature:
            found = self.near.match(signature, band_keys(signature, self.bands, self.rows), sketch,
                                    article.published_at)
            if found:
                entry, similarity = found
                return Duplicate(article.doc_id, entry.doc_id, KIND_NEAR, round(similarity, 4),
                                 article.source_location)
        return None


def _read_rows(paths: list[str], columns: Optional[list[str]] = None) -> Iterable[dict]:
    for path in paths:
        with FileSystems.open(path) as handle:
            yield from pq.read_table(handle, columns=columns).to_pylist()


def read_index_ids(path: str) -> Iterable[str]:
    """The doc_ids of one index file (for the lake-wide id invariants of an append)."""
    for row in _read_rows([path], ["doc_id"]):
        yield row["doc_id"]


class _AgainstLakeFn(beam.DoFn):
    """Article -> itself when new to the lake, else a Duplicate or Rejection on the tagged outputs."""

    def __init__(self, index_paths: list[str], config: DedupConfig):
        self.index_paths, self.config = list(index_paths), config

    def setup(self):
        self.index = LakeIndex(_read_rows(self.index_paths), self.config)

    def process(self, article: Article):
        decision = self.index.decide(article)
        if decision is None:
            yield article
        elif isinstance(decision, Duplicate):
            Metrics.counter(NAMESPACE, f"{decision.kind}_duplicates_of_lake").inc()
            yield beam.pvalue.TaggedOutput(DUPLICATES, decision)
        else:
            yield beam.pvalue.TaggedOutput(REJECTED, decision)


class DedupAgainstLake(beam.PTransform):
    """Article -> {`articles`: new to the lake, `duplicates`: copies of lake documents, `rejected`}."""

    def __init__(self, index_paths: list[str], config: DedupConfig = DedupConfig()):
        super().__init__()
        self.index_paths, self.config = list(index_paths), config

    def expand(self, articles):
        out = articles | "AgainstLake" >> beam.ParDo(_AgainstLakeFn(self.index_paths, self.config)).with_outputs(
            DUPLICATES, REJECTED, main="articles")
        return {"articles": out["articles"], DUPLICATES: out[DUPLICATES], REJECTED: out[REJECTED]}
