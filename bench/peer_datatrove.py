"""The peer: HuggingFace datatrove 0.10.1 doing what wirewash does, run inside datatrove's OWN virtualenv.

    DTVENV/bin/python bench/peer_datatrove.py INPUT_DIR WORK_DIR SAMPLE_CHARS [TASKS] [WORKERS]

INPUT_DIR holds the parseable records of the benchmark corpus as JSONL shards (one per task; datatrove
crashes on a line that is not a JSON object, so benchmark.py writes only those), with `text` being the raw
HTML for HTML records and `format` saying which. The pipeline, with `LocalPipelineExecutor` (TASKS tasks,
WORKERS workers) at every step, as datatrove's own MinHash example does it:

  1. JsonlReader -> Trafilatura (HTML records only) -> langdetect (seeded, same sample as wirewash; its
     fastText filter would download a model) -> JsonlWriter (intermediate) -> MinhashDedupSignature
  2. MinhashDedupBuckets (one task per bucket)   3. MinhashDedupCluster (one task)
  4. JsonlReader (intermediate) -> MinhashDedupFilter -> ParquetWriter
Prints one JSON line with the documents written.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.extractors.base import ExtractorSandbox
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter, ParquetWriter


class HtmlOnlyTrafilatura(Trafilatura):
    """datatrove's Trafilatura step (its sandbox, timeout and stats), applied to HTML records only: text
    records pass through untouched, as in wirewash and the floor."""

    def run(self, data, rank: int = 0, world_size: int = 1):
        with ExtractorSandbox(timeout=self.timeout, warmup_text="") as extractor:
            for doc in data:
                if doc.metadata.get("format") != "html":
                    yield doc
                    continue
                self.stat_update("total")
                with self.track_time():
                    try:
                        doc.text = extractor.process_document(doc.text, self.extract)
                    except Exception:  # timeouts and extractor errors drop the page, as datatrove does
                        self.stat_update("dropped")
                        continue
                if doc.text:
                    self.stat_update("forwarded")
                    yield doc


class LangdetectTagger(BaseFilter):
    """Tags `language` / `language_score` with seeded langdetect on the first SAMPLE characters; keeps all."""

    name = "langdetect"

    def __init__(self, sample_chars: int):
        super().__init__()
        self.sample_chars = sample_chars
        self._detect = None

    def filter(self, doc) -> bool:
        if self._detect is None:
            from langdetect import DetectorFactory, detect_langs

            DetectorFactory.seed = 0
            self._detect = detect_langs
        try:
            best = self._detect(doc.text[: self.sample_chars])[0]
            doc.metadata["language"], doc.metadata["language_score"] = best.lang, best.prob
        except Exception:  # no features in the text
            doc.metadata["language"], doc.metadata["language_score"] = "und", 0.0
        return True


def main(argv: list[str]) -> int:
    input_dir, work, sample_chars = argv[0], argv[1], int(argv[2])
    tasks = int(argv[3]) if len(argv) > 3 else 2
    workers = int(argv[4]) if len(argv) > 4 else 2
    shutil.rmtree(work, ignore_errors=True)  # datatrove skips tasks it finds completed in its logs
    started = time.monotonic()
    config = MinhashConfig()  # 14 buckets x 8 hashes, 5-grams: datatrove's defaults
    inter, sigs, buckets, remove, out = (os.path.join(work, d) for d in ("inter", "sigs", "buckets", "remove", "out"))
    logs = os.path.join(work, "logs")
    common = {"workers": workers}
    stage1 = LocalPipelineExecutor(pipeline=[
        JsonlReader(input_dir, text_key="text", id_key="id"),
        HtmlOnlyTrafilatura(favour_precision=True, deduplicate=False, timeout=10),
        LangdetectTagger(sample_chars),
        JsonlWriter(inter),
        MinhashDedupSignature(output_folder=sigs, config=config),
    ], tasks=tasks, logging_dir=f"{logs}/1", **common)
    stage2 = LocalPipelineExecutor(pipeline=[
        MinhashDedupBuckets(input_folder=sigs, output_folder=buckets, config=config),
    ], tasks=config.num_buckets, logging_dir=f"{logs}/2", depends=stage1, **common)
    stage3 = LocalPipelineExecutor(pipeline=[
        MinhashDedupCluster(input_folder=buckets, output_folder=remove, config=config),
    ], tasks=1, logging_dir=f"{logs}/3", depends=stage2, **common)
    stage4 = LocalPipelineExecutor(pipeline=[
        JsonlReader(inter),
        MinhashDedupFilter(input_folder=remove),
        ParquetWriter(out, compression="zstd"),
    ], tasks=tasks, logging_dir=f"{logs}/4", depends=stage3, **common)
    stage4.run()
    import pyarrow.parquet as pq

    documents = sum(pq.ParquetFile(os.path.join(out, f)).metadata.num_rows for f in os.listdir(out))
    print(json.dumps({"documents": documents, "seconds": round(time.monotonic() - started, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
