"""wirewash as a library: the stages applied to your own PCollection of records, and the lake written from
your own pipeline. docs/api.md shows it in use.

`CleanArticles` takes records (dicts, `beam.Row`s or NamedTuples with the fields `id, url, source, title,
published` and `text` or `html`, as in a JSONL input line) and returns `Cleaned`: the `documents`,
`duplicates` and `rejected` PCollections, and `records_read`. Every record ends in exactly one of the three:
a record is checked by the same rules as a JSONL line (a missing text, a field of the wrong type, an
oversized record are rejections at stage `read`), and a repeated `id` is rejected at stage `dedup`
(`duplicate_id`), never merged.

Records carry no file and line, so each gets a unique `source_location` made from its content,
`record:<hash of its fields>:<n>`, where `n` numbers identical copies (1, 2, ...): the same records give the
same locations on every run, and no two records share one (dedup keys its decisions by location).
`WriteToLake` commits a `Cleaned` to a lake, as `wirewash run` does.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timezone
from typing import Any, NamedTuple, Optional

import apache_beam as beam

from wirewash.pipeline.build import IngestArticles
from wirewash.pipeline.io import DEFAULT_MAX_RECORD_BYTES, REASON_TOO_LARGE, ReadArticles
from wirewash.pipeline.lake import DEFAULT_PARTITION_BY, LAYOUTS, check_output_location
from wirewash.pipeline.lake_write import WriteLake
from wirewash.pipeline.records import (JSON_FIELDS, REASON_NOT_AN_OBJECT, REASON_WRONG_TYPE, guarded_parse,
                                       parse_json_record, stable_id)
from wirewash.pipeline.version import wirewash_version
from wirewash.transforms.dedup import DedupConfig
from wirewash.transforms.types import Article, Rejection, excerpt

__all__ = ["CleanArticles", "Cleaned", "WriteToLake", "RecordsToArticles", "record_fields", "parse_record",
           "LOCATION_PREFIX"]

LOCATION_PREFIX = "record"
READ_STAGE = "read"


class Cleaned(NamedTuple):
    """What `CleanArticles` returns: `documents` (Article), `duplicates` (Duplicate), `rejected` (Rejection)
    and `records_read` (one int: the number of input records, always the sum of the three counts)."""

    documents: beam.PCollection
    duplicates: beam.PCollection
    rejected: beam.PCollection
    records_read: beam.PCollection


def record_fields(record: Any) -> Optional[dict]:
    """The known fields (JSON_FIELDS) of a dict, `beam.Row` or NamedTuple, None when absent; a datetime or date
    `published` becomes its ISO string. None for anything else (not a record)."""
    if isinstance(record, Mapping):
        fields = record
    elif hasattr(record, "as_dict"):  # beam.Row
        fields = record.as_dict()
    elif hasattr(record, "_asdict"):  # NamedTuple
        fields = record._asdict()
    else:
        return None
    known = {name: fields.get(name) for name in JSON_FIELDS}
    published = known["published"]
    if isinstance(published, datetime):
        known["published"] = (published if published.tzinfo else published.replace(tzinfo=timezone.utc)).isoformat()
    elif isinstance(published, date):
        known["published"] = published.isoformat()
    return known


def _content_key(record: Any) -> tuple:
    """(hash of a record's known fields, its fields or None): equal records, and only they, share the hash."""
    fields = record_fields(record)
    if fields is None:
        kind = type(record).__name__
        return stable_id("other", kind, repr(record)), (None, excerpt(repr(record)), kind)
    canonical = json.dumps(fields, sort_keys=True, default=repr, ensure_ascii=False)
    return stable_id(LOCATION_PREFIX, canonical), (fields, "", "")


def parse_record(fields: Optional[dict], location: str, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 shown: str = "", kind: str = "") -> Article | Rejection:
    """A record's known fields -> `Article`, or a `Rejection` (stage `read`) by the rules of a JSONL line;
    its doc_id is its `id`, else a hash of its URL, else of `location`."""
    if fields is None:
        return Rejection(None, location, READ_STAGE, REASON_NOT_AN_OBJECT, shown,
                         f"got a {kind}, expected a dict, beam.Row or NamedTuple")
    raw_id = fields.get("id")
    doc_id = raw_id if isinstance(raw_id, str) and raw_id.strip() else None
    for name, value in fields.items():
        if value is not None and not isinstance(value, str):
            return Rejection(doc_id, location, READ_STAGE, f"{REASON_WRONG_TYPE}:{name}", excerpt(repr(fields)),
                             f"{name} is a {type(value).__name__}, expected a string")
    given = {k: v for k, v in fields.items() if v is not None}
    text = json.dumps(given, ensure_ascii=False)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_record_bytes:
        return Rejection(doc_id, location, READ_STAGE, REASON_TOO_LARGE, excerpt(text),
                         f"record longer than {max_record_bytes} bytes")
    try:
        line = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escaped, as in a JSONL file, the line parser makes it U+FFFD
        line = json.dumps(given).encode("ascii")
    return guarded_parse(parse_json_record, location, line, location, (LOCATION_PREFIX, location))


class _ParseCopiesFn(beam.DoFn):
    """(content hash, equal records) -> one Article or Rejection per record, at `record:<hash>:<n>`."""

    def __init__(self, max_record_bytes: int):
        self.max_record_bytes = max_record_bytes

    def process(self, item):
        digest, copies = item
        for n, (fields, shown, kind) in enumerate(copies, start=1):
            parsed = parse_record(fields, f"{LOCATION_PREFIX}:{digest}:{n}", self.max_record_bytes, shown, kind)
            if isinstance(parsed, Rejection):
                yield beam.pvalue.TaggedOutput(ReadArticles.REJECTED, parsed)
            else:
                yield parsed


class RecordsToArticles(beam.PTransform):
    """Records -> {`articles`, `rejected`, `tallies` (empty)}, the shape `ReadArticles` gives for files: one
    output per record, each at a unique location (equal records are grouped by their hash to be numbered)."""

    def __init__(self, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
        super().__init__()
        self.max_record_bytes = max_record_bytes

    def expand(self, records):
        parsed = (records
                  | "ContentKey" >> beam.Map(_content_key)
                  | "GroupCopies" >> beam.GroupByKey()
                  | "Parse" >> beam.ParDo(_ParseCopiesFn(self.max_record_bytes)).with_outputs(
                      ReadArticles.REJECTED, ReadArticles.TALLIES, main=ReadArticles.ARTICLES))
        return {name: parsed[name] for name in (ReadArticles.ARTICLES, ReadArticles.REJECTED, ReadArticles.TALLIES)}


class CleanArticles(beam.PTransform):
    """Records (dict / beam.Row / NamedTuple) -> `Cleaned`: every stage of `wirewash run` but the writing.

    `rule_files`: your own boilerplate rules (TOML), added to the packaged ones; `dedup`: the dedup settings
    (`DedupConfig`, defaults as `wirewash run`); `max_record_bytes`: a larger record is rejected (`too_large`)."""

    def __init__(self, rule_files: tuple = (), dedup: DedupConfig = DedupConfig(),
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
        super().__init__()
        self.rule_files = tuple(rule_files)
        self.dedup = dedup
        self.max_record_bytes = max_record_bytes

    def expand(self, records) -> Cleaned:
        read = records | "Read" >> RecordsToArticles(self.max_record_bytes)
        out = read | "Ingest" >> IngestArticles([], self.rule_files, self.max_record_bytes, self.dedup)
        return Cleaned(out["documents"], out["duplicates"], out["rejected"], out["records_read"])


class WriteToLake(beam.PTransform):
    """`Cleaned` -> a committed wirewash lake at `output` (local or any Beam filesystem), as `wirewash run`
    writes it; returns the PCollection of the one summary dict. The output is checked (and `_staging/` made)
    when the transform is applied: an existing lake is an error unless `overwrite`. The commit fails the run
    when documents + duplicates + rejected != records read."""

    def __init__(self, output: str, overwrite: bool = False, partition_by: str = DEFAULT_PARTITION_BY,
                 ingested_at: Optional[str] = None, dedup: DedupConfig = DedupConfig()):
        super().__init__()
        if partition_by not in LAYOUTS:
            raise ValueError(f"partition_by {partition_by!r}: choose from {', '.join(LAYOUTS)}")
        self.output = output
        self.overwrite = overwrite
        self.partition_by = partition_by
        self.ingested_at = ingested_at or datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        self.dedup = dedup

    def expand(self, cleaned: Cleaned):
        check_output_location(self.output, self.overwrite)
        run = {"wirewash_version": wirewash_version(), "mode": "library", "ingested_at": self.ingested_at,
               "started_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
               "options": {"overwrite": self.overwrite, "partition_by": self.partition_by, **self.dedup._asdict()}}
        return dict(cleaned._asdict()) | "WriteLake" >> WriteLake(
            self.output, self.ingested_at, self.overwrite, partition_by=self.partition_by, run=run, dedup=self.dedup)
