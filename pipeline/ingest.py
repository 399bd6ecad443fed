"""One ingest graph for batch and streaming alike: every stage but the writing.

read -> extract (HTML) -> normalize -> boilerplate -> language -> [dedup against the lake] -> dedup. Every
stage's rejections are flattened into one `rejected` output. Only the input and the dedup differ by mode: a
batch run reads its files here and deduplicates the whole input at once; a stream arrives already read (its
records stamped with their event time, `pipeline/sources.py`) and is deduplicated with state, first arrival
wins (`transforms/stateful_dedup.py`).
"""
from __future__ import annotations

from typing import Optional

import apache_beam as beam

from wirewash.pipeline.input_files import InputFile
from wirewash.pipeline.io import DEFAULT_MAX_DECOMPRESSED_BYTES, DEFAULT_MAX_RECORD_BYTES, ReadArticles
from wirewash.transforms.spill import Spill
from wirewash.transforms.boilerplate import StripBoilerplate
from wirewash.transforms.dedup import INDEX, DedupConfig, DeduplicateArticles
from wirewash.transforms.extract import ExtractText
from wirewash.transforms.lake_dedup import DedupAgainstLake
from wirewash.transforms.language import DetectLanguage
from wirewash.transforms.normalize import NormalizeArticles
from wirewash.transforms.stateful_dedup import StatefulDedup

__all__ = ["IngestArticles", "READ"]

READ = "read"  # streaming output: one marker per record read (the per-window `records_read`)
STREAM_NAMESPACE = "stream"  # the metrics of a stream's source and windowed writes


def _count_records(articles, rejected):
    """The records read: one int (0 for no input). The two counts have no default value: each would cost the
    local runner one more stage, and the sum's own default gives 0 when both are empty."""
    count = beam.combiners.CountCombineFn
    return ((articles | "CountArticles" >> beam.CombineGlobally(count()).without_defaults(),
             rejected | "CountReadRejections" >> beam.CombineGlobally(count()).without_defaults())
            | "BothCounts" >> beam.Flatten() | "RecordsRead" >> beam.CombineGlobally(sum))


def _mark_records(articles, rejected):
    return ((articles | "MarkArticles" >> beam.Map(lambda _: 1),
             rejected | "MarkReadRejections" >> beam.Map(lambda _: 1)) | "Read" >> beam.Flatten())


class IngestArticles(beam.PTransform):
    """PBegin (batch: reads `files`) or a stream source's {`articles`, `rejected`} -> {documents, duplicates,
    rejected, ...}: every stage but the writing.

    `retention_seconds` picks the dedup, and so the mode: None (batch) deduplicates the whole input at once,
    after the lake's own documents when `lake_index` is given (`--append`); seconds (streaming) keep each
    fingerprint that long in state, and the first arrival wins.
    Outputs besides the three tables: `read_articles` / `read_rejected` (records as they enter the stages,
    for live progress); batch: `records_read` (one count), `read_tallies`, `removed_lines`; streaming: `read`
    (one marker per record read, for the per-window counts).
    """

    def __init__(self, files: list[InputFile] = (), rule_files: tuple = (),
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, dedup: DedupConfig = DedupConfig(),
                 max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES, spill: Optional[Spill] = None,
                 lake_index: tuple = (), retention_seconds: Optional[float] = None):
        super().__init__()
        self.lake_index = tuple(lake_index)  # an append: dedup against these index files of the lake first
        self.files = files
        self.rule_files = rule_files
        self.max_record_bytes = max_record_bytes
        self.dedup = dedup
        self.max_decompressed_bytes = max_decompressed_bytes
        self.spill = spill or Spill()  # where articles wait at stage boundaries (transforms/spill.py)
        self.retention = retention_seconds  # None: batch; seconds: a stream's dedup state lifetime

    def expand(self, pinput):
        streaming = self.retention is not None
        if isinstance(pinput, beam.pvalue.PBegin):
            read = pinput | "Read" >> ReadArticles(self.files, self.max_record_bytes, self.max_decompressed_bytes)
        else:  # a stream source's records, already read and stamped
            read = pinput
        counted = (_mark_records if streaming else _count_records)(read["articles"], read["rejected"])
        extracted = read["articles"] | "Extract" >> ExtractText()
        normalized = extracted["articles"] | "Normalize" >> NormalizeArticles()
        cleaned = normalized["articles"] | "Boilerplate" >> StripBoilerplate(self.rule_files, spill=self.spill)
        tagged = cleaned["articles"] | "Language" >> DetectLanguage()
        of_lake = {"duplicates": [], "rejected": []}
        if self.lake_index:  # `--append`: copies of the lake's documents leave first (the lake's copy wins)
            against = tagged["articles"] | "AgainstLake" >> DedupAgainstLake(list(self.lake_index), self.dedup)
            articles, of_lake = against["articles"], {k: [against[k]] for k in of_lake}
        else:
            articles = tagged["articles"]
        if streaming:
            deduped = articles | "Dedup" >> StatefulDedup(self.dedup, self.retention)
        else:
            deduped = articles | "Dedup" >> DeduplicateArticles(self.dedup, self.spill)
        rejected = ((read["rejected"], extracted["rejected"], normalized["rejected"], cleaned["rejected"],
                     tagged["rejected"], deduped["rejected"], *of_lake["rejected"]) | "AllRejected" >> beam.Flatten())
        duplicates = (deduped["duplicates"], *of_lake["duplicates"]) | "AllDuplicates" >> beam.Flatten()
        outputs = {"documents": deduped["documents"], "duplicates": duplicates, "rejected": rejected,
                   # for live progress only (pipeline/progress.py): records as they enter the stages, and dedup
                   "read_articles": read["articles"], "read_rejected": read["rejected"], "cleaned": articles}
        if streaming:
            return {**outputs, READ: counted}
        return {**outputs, "records_read": counted, "removed_lines": cleaned.get("removed_lines"),
                "read_tallies": read["tallies"], "dedup_index": deduped.get(INDEX)}
