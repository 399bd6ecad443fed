"""The one-process floor: the core steps of wirewash done plainly, in one Python loop, on one core.

    python bench/floor.py CORPUS.jsonl OUT.parquet SAMPLE_CHARS

Per line: `json.loads` (lines that are not a JSON object are skipped), trafilatura on HTML records only (the
same `bare_extraction` call and options wirewash's extract stage makes), seeded langdetect on the same
bounded sample wirewash uses, an xxh3-128 hash of the text, and rows written to ONE zstd Parquet file in
batches. No normalization, no boilerplate rules, no dedup, no partitions: this is the cost of the libraries
themselves, the yardstick wirewash's two cores must beat. Prints one JSON line of counts.

    python bench/floor.py --calls CORPUS.jsonl [--limit N]

The library floor table instead (docs/performance.md): the process CPU time of each required library call,
timed call by call on one core over the corpus's records, per call and per record of the corpus. The calls:
trafilatura's `bare_extraction` exactly as `extract_html` makes it (on the page parsed once), the whole
`extract_html` (the call plus wirewash's corrections), `pycld2.detect` on the text, langdetect (seeded) on
the first 2,000 characters, `ftfy.fix_text` with normalize's configuration on every text, the cheap check
that lets normalize skip ftfy (`ftfy_may_change`), and the whole `normalize_text`. Texts are the records'
own or the extracted ones. Prints one JSON object.
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


def call_floor(corpus: str, limit: int = 0) -> dict:
    """{call: {"calls", "ms_per_call", "ms_per_record"}} over the first `limit` records of `corpus` (0: all)."""
    import pycld2

    from wirewash.transforms.extract import extract_html
    from wirewash.transforms.normalize import FTFY_CONFIG, ftfy_may_change, normalize_text
    import ftfy

    detect = load_langdetect()
    detect("Warm-up: langdetect loads its profiles on its first call, which is no record's cost.")
    extract_html("<html><body><article><p>Warm-up: trafilatura's first call loads its own data.</p>"
                 "</article></body></html>")
    cpu = {}
    calls = {}

    def timed(name, fn, *args, **kwargs):
        started = time.process_time()
        try:
            return fn(*args, **kwargs)
        except Exception:  # a library's error on hostile input still cost what it cost
            return None
        finally:
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - started
            calls[name] = calls.get(name, 0) + 1

    records = 0
    with open(corpus, "rb") as handle:
        for line in handle:
            if limit and records >= limit:
                break
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            records += 1
            text, html = obj.get("text"), obj.get("html")
            url = obj.get("url") if isinstance(obj.get("url"), str) else None
            if isinstance(html, str) and not isinstance(text, str):
                tree = trafilatura.load_html(html)
                timed("trafilatura.bare_extraction (as extract_html calls it)", trafilatura.bare_extraction,
                      tree if tree is not None else html, url=url, include_comments=False, include_tables=True,
                      deduplicate=False, include_links=True, with_metadata=True, favor_precision=True)
                extracted = timed("extract_html (the call + corrections)", extract_html, html, url)
                text = extracted.text if extracted is not None else ""
            if not isinstance(text, str) or not text.strip():
                continue
            text = text.encode("utf-8", "replace").decode("utf-8")
            timed("pycld2.detect", pycld2.detect, text)
            timed("langdetect (first 2,000 chars)", detect, text[:2000])
            timed("ftfy.fix_text (every text)", ftfy.fix_text, text, FTFY_CONFIG)
            timed("ftfy_may_change (the check)", ftfy_may_change, text)
            timed("normalize_text (check, ftfy where needed, NFC, spaces)", normalize_text, text)
    return {"records": records, "calls": {name: {"calls": calls[name],
                                                  "ms_per_call": round(1000 * cpu[name] / calls[name], 3),
                                                  "ms_per_record": round(1000 * cpu[name] / max(records, 1), 3)}
                                           for name in cpu}}


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--calls":
        limit = int(argv[argv.index("--limit") + 1]) if "--limit" in argv else 0
        print(json.dumps(call_floor(argv[1], limit), indent=1))
        return 0
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
