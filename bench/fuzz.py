"""Coverage-guided fuzzing (atheris, libFuzzer) of every path hostile bytes reach, each with an oracle:

    reader   a file's bytes (.jsonl, .jsonl.gz, .txt, .html, a raw .jsonl.gz) through the reader: the checks of
             tests/test_fuzz_inputs.py (no exception; records = the non-blank lines counted apart from the
             reader; read to its end; every text field valid UTF-8)
    extract  a page's bytes (as the reader decodes them) through `extract_html`: no exception, valid UTF-8 text
    query    SQL text through `run_query` on a small lake: an answer or one of the user errors, never a row
             holding the canary file's secret placed beside the lake, never a file added or changed anywhere
             under the fuzzer's folder
    message  a Kafka / Pub/Sub payload through `decode_message`: one Article or Rejection, valid UTF-8 text
    watch    a watched JSONL file written, polled, grown by more bytes, polled again (`new_settled_files`,
             then the reader on each range): every non-blank line of the final file read exactly once, or
             the growth rejected by name (`changed_after_read`)

    pip install -e ".[test,fuzz]"
    nice -n 10 python bench/fuzz.py reader -max_total_time=180     # libFuzzer flags pass through
    python bench/fuzz.py extract crash-1234                          # rerun one failing input

Without a corpus folder among the arguments, the run starts from `bench/_work/fuzz-corpus/TARGET/`, seeded
first with the hostile inputs the tests use (tests/data/hostile/, tests/test_hostile.py's and
tests/test_query.py's cases); libFuzzer grows it there. A failing input is written as `crash-<hash>`.
Not part of the test suite: the hypothesis fuzzers there run in bounded time, these until stopped.
"""
from __future__ import annotations

import atexit
import codecs
import gzip
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import atheris
import logging

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORK = REPO / "bench" / "_work" / "fuzz-corpus"
FOLDER = tempfile.mkdtemp(prefix="wirewash-fuzz-")
atexit.register(shutil.rmtree, FOLDER, True)

with atheris.instrument_imports(include=["wirewash"]):
    from wirewash.pipeline.input_files import InputFile, format_of
    from wirewash.pipeline.io import parse_file
    from wirewash.pipeline.tally import expected_records, read_whole
    from wirewash.pipeline.sources import decode_message
    from wirewash.pipeline.watch import REASON_CHANGED, new_settled_files
    from wirewash.pipeline.query import LakeChangedError, QueryNotAllowedError, QueryTimeoutError, run_query
    from wirewash.pipeline.records import parse_document_file
    from wirewash.transforms.extract import extract_html

from tests.test_fuzz_inputs import GZIP_MAGIC, MAX_RECORD_BYTES, check_records, count_records  # noqa: E402
from wirewash.transforms.types import Article, Rejection  # noqa: E402

# --- reader ----------------------------------------------------------------------------------------------

KINDS = (("f.jsonl", "plain"), ("f.jsonl.gz", "gzip"), ("f.txt", "plain"), ("f.html", "plain"), ("f.jsonl.gz", "raw"),
         ("f.jsonl", "gzip"), ("f.html", "gzip"))  # the last two: gzip known by its content, not its name


def read(name: str, data: bytes) -> list:
    path = os.path.join(FOLDER, name)
    with open(path, "wb") as handle:
        handle.write(data)
    tallies = []
    out = list(parse_file(InputFile(path, name, format_of(name)), MAX_RECORD_BYTES, on_tally=tallies.append))
    (tally,) = tallies
    assert read_whole(tally), tally
    assert len(out) == expected_records(tally), (out, tally)
    check_records(out, name)
    return out


def reader(data: bytes) -> None:
    if not data:
        return
    (name, how), body = KINDS[data[0] % len(KINDS)], data[1:]
    out = read(name, gzip.compress(body, mtime=0) if how == "gzip" else body)
    # gzip is known by its content: raw bytes, or plain JSONL bytes that begin as a gzip member, may be a gzip cut
    # anywhere (the lines before the cut, then one rejection); `read` has checked their accounting (the tally)
    cut = how == "raw" or name.startswith("f.jsonl") and how == "plain" and body.startswith(GZIP_MAGIC)
    if not cut:
        assert len(out) == (count_records(body) if name.startswith("f.jsonl") else 1), out


# --- extract ---------------------------------------------------------------------------------------------

def extract(data: bytes) -> None:
    page = parse_document_file(data, "html", "f.html")  # what the reader makes of a page's bytes
    if not isinstance(page, Article):
        return
    extracted = extract_html(page.html)
    for value in extracted:
        if isinstance(value, str):
            value.encode("utf-8")


# --- message ---------------------------------------------------------------------------------------------

def message(data: bytes) -> None:
    record = decode_message(data, "kafka:t", "0:1", MAX_RECORD_BYTES)
    assert isinstance(record, (Article, Rejection)), record
    assert record.source_location == "kafka:t/0:1"
    for value in record:
        if isinstance(value, str):
            value.encode("utf-8")
    if isinstance(record, Article):
        assert record.doc_id.strip() and "\x00" not in record.text + (record.html or "")


# --- watch -----------------------------------------------------------------------------------------------

def watch(data: bytes) -> None:
    """data = first part, 0xFF 0xFE 0xFD, the bytes appended later (no marker: nothing appended). Each poll's
    ranges are read right away, as the stream does."""
    from wirewash.pipeline.input_files import ByteRange, from_wire

    first, marker, later = data.partition(b"\xff\xfe\xfd")
    root = os.path.join(FOLDER, "watched") + "/"
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    path = root + "f.jsonl"
    state, records = {}, []

    def poll(mtime: float) -> None:
        for _ in range(2):
            for wired in new_settled_files([(path, os.path.getsize(path), mtime)], state, root):
                span = ByteRange(*wired)
                records.extend(parse_file(from_wire(span.file), MAX_RECORD_BYTES, span=span))

    with open(path, "wb") as handle:
        handle.write(first)
    poll(1.0)
    if marker:
        with open(path, "ab") as handle:
            handle.write(later)
        poll(2.0)
    located = [r.source_location for r in records if not r.source_location.endswith(":0")]
    assert len(set(located)) == len(located), located  # no line read twice
    changed = any(isinstance(r, Rejection) and r.reason == REASON_CHANGED for r in records)
    whole = first + later
    if not changed and whole[:2] not in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) and whole.strip():
        lines = [r for r in records if not (isinstance(r, Rejection) and r.reason == "empty_file")]
        assert len(lines) == count_records(whole), (records, count_records(whole))


# --- query -----------------------------------------------------------------------------------------------

CANARY = "WIREWASH-CANARY-7f3a"
_LAKE: dict = {}


def _fingerprint(root: str) -> dict:
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as handle:
                    out[path] = handle.read()
            except OSError:
                out[path] = None
    return out


def _small_lake() -> str:
    if not _LAKE:
        from wirewash.pipeline.cli import main
        root = os.path.join(FOLDER, "q")
        os.makedirs(os.path.join(root, "in"))
        with open(os.path.join(root, "secret.csv"), "w") as handle:
            handle.write(f"secret\n{CANARY}\n")
        with open(os.path.join(root, "in", "a.jsonl"), "w") as handle:
            handle.write(json.dumps({"id": "a", "published": "2024-03-01", "text": "The harbour authority opened "
                                     "a new ferry terminal on Monday, ending three years of delays."}) + "\n{bad\n")
        assert main(["run", "--input", os.path.join(root, "in"), "--output", os.path.join(root, "lake"),
                     "--quiet", "--ingested_at", "2024-04-01T00:00:00Z"]) == 0
        os.symlink(os.path.join(root, "secret.csv"), os.path.join(root, "lake", "documents", "link.csv"))
        _LAKE.update(root=root, lake=os.path.join(root, "lake"), before=_fingerprint(root))
    return _LAKE["lake"]


def query(data: bytes) -> None:
    import duckdb

    lake = _small_lake()
    sql = data.decode("utf-8", "surrogateescape").replace("{lake}", lake).replace("{root}", _LAKE["root"])
    try:
        _, rows = run_query(lake, sql, limit=1000, timeout=5)
    except (QueryNotAllowedError, QueryTimeoutError, LakeChangedError, duckdb.Error):
        rows = []
    except (OverflowError, ValueError, RecursionError, MemoryError, UnicodeError):  # DuckDB's Python conversions
        rows = []
    assert CANARY not in repr(rows), (sql, rows)
    now = _fingerprint(_LAKE["root"])
    assert now == _LAKE["before"], (sql, set(now) ^ set(_LAKE["before"]))


# --- seeds -----------------------------------------------------------------------------------------------

QUERY_SEEDS = [
    "SELECT count(*) FROM documents", "SELECT * FROM duplicates", "FROM rejected SELECT reason",
    "SELECT * FROM read_text('/etc/passwd')", "SELECT * FROM read_csv('{root}/secret.csv')",
    "SELECT * FROM read_csv('{lake}/documents/link.csv')", "SELECT * FROM read_text('{lake}/../secret.csv')",
    "SELECT * FROM read_parquet('{lake}/../**/*.parquet')", "SELECT * FROM glob('{root}/*')",
    "COPY documents TO '{root}/out.csv'", "COPY (SELECT 1) TO '{lake}/documents/evil.parquet'",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{root}/x.csv'", "ATTACH '{root}/x.db' AS x", "INSTALL httpfs",
    "SET enable_external_access = true", "SELECT 1; COPY documents TO '{root}/x.csv'", "DESCRIBE documents",
    "WITH t AS (SELECT 1) SELECT * FROM t", "VALUES (1)", "SUMMARIZE documents", "SHOW TABLES",
    "SELECT * FROM '{root}/secret.csv'", "SELECT current_setting('temp_directory')",
    "SELECT * FROM sniff_csv('{root}/secret.csv')", "PRAGMA version", "CALL pragma_version()",
    "SELECT * FROM read_blob('{root}/secret.csv')", "SELECT * FROM duckdb_settings()",
]


def seeds(target: str) -> list[bytes]:
    """The inputs the tests already use, as this target's bytes."""
    sys.path.insert(0, str(REPO))
    from tests.data import make_hostile

    hostile = Path(tempfile.mkdtemp(prefix="wirewash-seeds-"))
    try:
        make_hostile.build(hostile)
        files = {p.name: p.read_bytes() for p in sorted(hostile.iterdir()) if p.name != "expected.json"}
    finally:
        shutil.rmtree(hostile, ignore_errors=True)
    lines = [line for data in files.values() for line in data.split(b"\n") if line.strip()][:200]
    xxe = (b'<!DOCTYPE html [<!ENTITY passwd SYSTEM "file:///etc/passwd">]><html><body><article><p>'
           + make_hostile.STORIES[0].encode() + b' &passwd;</p></article></body></html>')
    pages = [data for name, data in files.items() if name.endswith((".html", ".txt"))] + [
        xxe, b"<div>" * 3000, b"<html><body><p>" + make_hostile.STORIES[1].encode(), b"<script>x()</script>"]
    if target == "reader":
        out = []
        for name, data in files.items():
            kind = next(i for i, (n, how) in enumerate(KINDS) if name.endswith(n.removeprefix("f")) and how in (
                "raw" if name.endswith(".gz") else "plain", "plain"))
            out.append(bytes([kind]) + data)
        return out + [bytes([3]) + xxe]
    if target == "extract":
        return pages
    if target == "message":
        return lines + [b"", b"{}", b"[1]", b'{"text": "x", "id": 1e999}', b'{"text": "\\ud800"}']
    if target == "watch":
        jsonl = [d for n, d in files.items() if n.endswith(".jsonl")]
        return [d + b"\xff\xfe\xfd" + d for d in jsonl] + jsonl + [b'{"text": "a b c"}\n\xff\xfe\xfd{"text": "d"}\n',
                                                                    b'{"text": "a b c"}\xff\xfe\xfd{"text": "d"}\n']
    if target == "query":
        return [s.encode() for s in QUERY_SEEDS]
    raise ValueError(target)


TARGETS = {"reader": reader, "extract": extract, "message": message, "watch": watch, "query": query}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python bench/fuzz.py {{{','.join(TARGETS)}}} [corpus folder] [libFuzzer flags]")
    target = sys.argv.pop(1)
    argv = sys.argv
    if not any(not a.startswith("-") for a in argv[1:]):  # no corpus given: the seeded one
        corpus = WORK / target
        corpus.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds(target)):
            (corpus / f"seed-{i:04d}").write_bytes(seed)
        argv = argv + [str(corpus)]
    logging.disable(logging.CRITICAL)  # trafilatura logs every unparsable page
    atheris.Setup(argv, TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
