"""The one-process floor: the core steps of wirewash done plainly, in one Python loop, on one core.

    python bench/floor.py CORPUS.jsonl OUT.parquet SAMPLE_CHARS

Per line: `json.loads` (lines that are not a JSON object are skipped), trafilatura on HTML records only (the
same `bare_extraction` call and options wirewash's extract stage makes), seeded langdetect on the same
bounded sample wirewash uses, an xxh3-128 hash of the text, and rows written to ONE zstd Parquet file in
batches. No normalization, no boilerplate rules, no dedup, no partitions: this is the cost of the libraries
themselves, the yardstick wirewash's two cores must beat. Prints one JSON line of counts.
"""
from __future__ import annotations

import json
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import trafilatura
import xxhash

BATCH_ROWS = 5000
SCHEMA = pa.schema([("doc_id", pa.string()), ("lang", pa.string()), ("lang_prob", pa.float32()),
                    ("content_hash", pa.string()), ("text", pa.string())])


def load_langdetect():
    """langdetect seeded (reruns and processes agree), its profiles loaded once."""
    from langdetect import DetectorFactory, detect_langs

    DetectorFactory.seed = 0

    def detect(text):
        try:
            return [(p.lang, p.prob) for p in detect_langs(text)]
        except Exception:  # LangDetectException: no features in the text
            return []
    return detect


def process_line(line: bytes, detect_langs, sample_chars: int):
    """One JSONL line -> a row dict, or None when the line is not a usable record."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    text, html = obj.get("text"), obj.get("html")
    if isinstance(html, str) and not isinstance(text, str):
        doc = trafilatura.bare_extraction(html, url=obj.get("url") if isinstance(obj.get("url"), str) else None,
                                          with_metadata=True, include_comments=False, include_tables=False,
                                          favor_precision=True, deduplicate=False)
        text = (doc.text if doc is not None else "") or ""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates in hostile input: Parquet needs valid UTF-8
        encoded = text.encode("utf-8", "replace")
        text = encoded.decode("utf-8")
    ranked = detect_langs(text[:sample_chars])
    lang, prob = ranked[0] if ranked else ("und", 0.0)
    return {"doc_id": str(obj.get("id")), "lang": lang, "lang_prob": prob,
            "content_hash": xxhash.xxh3_128_hexdigest(encoded), "text": text}


def main(argv: list[str]) -> int:
    corpus, out, sample_chars = argv[0], argv[1], int(argv[2])
    started = time.monotonic()
    detect_langs = load_langdetect()  # seeded, profiles loaded once
    rows, written, read = [], 0, 0
    with open(corpus, "rb") as handle, pq.ParquetWriter(out, SCHEMA, compression="zstd") as writer:
        for line in handle:
            read += 1
            row = process_line(line, detect_langs, sample_chars)
            if row is not None:
                rows.append(row)
            if len(rows) >= BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
                written += len(rows)
                rows = []
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
            written += len(rows)
    print(json.dumps({"records_read": read, "rows_written": written, "seconds": round(time.monotonic() - started, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
