"""Fuzzing the read side over raw bytes (hypothesis): `.jsonl` (plain, UTF-8 with a BOM, UTF-16, gzip, truncated
gzip), `.txt` and `.html` files made of hostile pieces and random bytes go through the real reader, and a few
through a real pipeline run. Asserted for every input: no exception escapes; every record is accounted for,
against a count of its lines made here, apart from the reader; the file is read to its end; every text field
of every record is valid UTF-8; a real run exits 0 with every record in exactly one table, and the lake
checker (`../shared/tools/check_lake.py`, when present) passes.

The default suite runs a bounded number of examples (well under a minute). For a long run, set
`WIREWASH_FUZZ_EXAMPLES` (examples per reader fuzzer; the pipeline fuzzer runs a fiftieth of it, at least 3):

    WIREWASH_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_inputs.py
"""
from __future__ import annotations

import codecs
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirewash.pipeline.cli import main
from wirewash.pipeline.input_files import InputFile, format_of
from wirewash.pipeline.io import parse_file
from wirewash.pipeline.tally import expected_records, read_whole
from wirewash.transforms.spill import pack_article, unpack_article
from tests.conftest import SHARED
from tests.helpers import lake_rows, summary
from wirewash.transforms.types import Article, Rejection

EXAMPLES = int(os.environ.get("WIREWASH_FUZZ_EXAMPLES", "0"))
READER = settings(max_examples=EXAMPLES or 120, deadline=None, derandomize=not EXAMPLES,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PIPELINE = settings(max_examples=max(3, EXAMPLES // 50), deadline=None, derandomize=not EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_RECORD_BYTES = 1024  # the smallest the CLI allows: `too_large` is reached often
BLANK = " \t\n\r\x0b\x0c"
STORY = ("The harbour authority opened a new ferry terminal on Monday, ending three years of construction delays. "
         "Officials said the terminal can handle twice as many passengers as the old building.")

# --- strategies: hostile pieces, mixed with random bytes ------------------------------------------------

lone_surrogate = st.integers(0xD800, 0xDFFF).map(lambda c: f"\\u{c:04x}")
json_text = st.lists(st.one_of(st.text(max_size=40), lone_surrogate, st.sampled_from(
    ["\\u0000", "\\ud83d\\ude00", '\\"', "\\n", "é", "\u2028", "<p>", "&amp;"])), max_size=8).map("".join)
field = st.sampled_from(["id", "url", "source", "title", "published", "text", "html", "extra"])
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=8)


@st.composite
def record_line(draw) -> bytes:
    """One JSONL line: a record with escapes and lone surrogates, odd field types, deep nesting, or noise."""
    kind = draw(st.integers(0, 5))
    if kind == 0:  # a record built by hand, so lone-surrogate escapes reach the JSON parser
        fields = draw(st.dictionaries(field, json_text, min_size=1, max_size=5))
        body = ", ".join(f'"{k}": "{v}"' for k, v in fields.items())
        return ("{" + body + "}").encode("utf-8", "surrogatepass")
    if kind == 1:
        return json.dumps(draw(st.dictionaries(field, json_value, max_size=5))).encode()
    if kind == 2:
        depth = draw(st.integers(1, 1500))
        return draw(st.sampled_from([b"[" * depth + b"]" * depth, b'{"text": "x", "a": ' + b"[" * depth
                                     + b"]" * depth + b"}", b"[" * depth]))
    if kind == 3:
        return draw(st.binary(max_size=60))
    if kind == 4:  # long lines around the record limit, some of only whitespace
        return draw(st.sampled_from([b" ", b"x", b"\t"])) * draw(st.integers(MAX_RECORD_BYTES - 2, 3000))
    return json.dumps({"id": draw(st.text(max_size=8)), "text": STORY + draw(st.text(max_size=30))}).encode()


@st.composite
def jsonl_file(draw) -> tuple[str, bytes, bytes]:
    """(name, file bytes, the uncompressed bytes or b"" when the file is a cut gzip)."""
    lines = draw(st.lists(record_line(), max_size=12))
    data = draw(st.sampled_from([b"\n", b"\r\n"])).join(lines) + draw(st.sampled_from([b"", b"\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-bom", "utf-16-le", "utf-16-be", "raw"]))
    if encoding == "utf-8-bom":
        data = codecs.BOM_UTF8 + data
    elif encoding.startswith("utf-16"):  # the same lines as UTF-16, maybe with an odd last byte
        bom = codecs.BOM_UTF16_LE if encoding.endswith("le") else codecs.BOM_UTF16_BE
        data = bom + data.decode("utf-8", "surrogateescape").encode(encoding, "surrogatepass") \
            + draw(st.sampled_from([b"", b"\x00", b"\x00\xd8"]))
    elif encoding == "raw":
        data = draw(st.binary(max_size=400))
    if not draw(st.booleans()):
        return "f.jsonl", data, data
    packed = gzip.compress(data, mtime=0)
    cut = draw(st.integers(0, len(packed)))
    name = draw(st.sampled_from(["f.jsonl.gz", "f.jsonl"]))  # gzip is known by its content, whatever the name
    return name, (packed[:cut] if cut < len(packed) and draw(st.booleans()) else packed), data


html_piece = st.sampled_from(["<html>", "<body>", "<article>", "<p>", "</p>", "<div>" * 500, "<script>x()</script>",
                              "<!DOCTYPE html [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>", "&e;", "&#xD800;", "<h1>",
                              "<meta charset='latin-1'>", "\x00", STORY, "\n"])


@st.composite
def document_file(draw) -> tuple[str, bytes]:
    """A `.txt` or `.html` file: text pieces in some encoding, or random bytes."""
    name = draw(st.sampled_from(["f.txt", "f.html"]))
    text = "".join(draw(st.lists(st.one_of(html_piece, st.text(max_size=30)), max_size=10)))
    how = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "random"]))
    if how == "random":
        return name, draw(st.binary(max_size=500))
    data = text.encode(how, "replace") + draw(st.sampled_from([b"", b"\xff", b"\x00\xd8"]))
    return name, (gzip.compress(data, mtime=0) if draw(st.booleans()) else data)  # gzip under its plain name


# --- the oracle: records counted here, apart from the reader ----------------------------------------------

GZIP_MAGIC = b"\x1f\x8b\x08"  # RFC 1952: a gzip member's first bytes (deflate); the reader inflates such files

def count_records(data: bytes) -> int:
    """The records a whole JSONL file holds, counted from its bytes: one per non-blank line (line 1 without
    its BOM), UTF-16 in characters; one `empty_file` record for a file without any."""
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        lines = data.decode("utf-16", "replace").split("\n")
        lines[0] = lines[0].removeprefix("\ufeff")
        count = sum(1 for line in lines if line.strip(BLANK))
    else:
        lines = data.split(b"\n")
        lines[0] = lines[0].removeprefix(codecs.BOM_UTF8)
        count = sum(1 for line in lines if line.strip())
    return count or 1


def check_records(out: list, name: str) -> None:
    """Every record is one Article or read Rejection, at its own line, every text field valid UTF-8."""
    locations = [r.source_location for r in out]
    assert len(set(locations)) == len(locations), locations
    assert all(loc.rsplit(":", 1)[0] == name and loc.rsplit(":", 1)[1].isdigit() for loc in locations)
    for record in out:
        assert isinstance(record, (Article, Rejection))
        for value in record:
            if isinstance(value, str):
                value.encode("utf-8")  # strict: no lone surrogate, no unencodable character
        if isinstance(record, Article):
            assert record.doc_id.strip() and "\x00" not in record.text + (record.html or "")
            assert unpack_article(pack_article(record)) == record  # what the spill does between stages
        else:
            assert record.stage == "read" and record.reason


def read(folder: Path, name: str, data: bytes) -> list:
    (folder / name).write_bytes(data)
    tallies = []
    out = list(parse_file(InputFile(str(folder / name), name, format_of(name)), MAX_RECORD_BYTES,
                          on_tally=tallies.append))
    (tally,) = tallies
    assert read_whole(tally), tally
    assert len(out) == expected_records(tally), (out, tally)
    check_records(out, name)
    return out


@READER
@given(jsonl_file())
def test_fuzz_jsonl_bytes_every_record_accounted_for(case):
    name, data, plain = case
    with tempfile.TemporaryDirectory() as folder:
        out = read(Path(folder), name, data)
    if data == gzip.compress(plain, mtime=0) or data == plain and not plain.startswith(GZIP_MAGIC):
        assert len(out) == count_records(plain), out  # whole: the count on its lines must agree
    else:  # a cut gzip, or bytes that begin as one: the lines before the cut, then one rejection saying where
        # reading stopped (a JSONL file cannot begin with these bytes: no JSON does)
        assert len(out) <= count_records(plain) + 1


@READER
@given(document_file())
def test_fuzz_document_bytes_one_record_per_file(case):
    name, data = case
    with tempfile.TemporaryDirectory() as folder:
        out = read(Path(folder), name, data)
    assert len(out) == 1


def test_truncated_gzip_keeps_what_came_before_the_cut():
    """The oracle above leaves cut gzips loose; here one cut is pinned: every whole line before it is kept."""
    lines = [json.dumps({"id": f"r{i}", "text": f"story {i} " * 20}).encode() for i in range(3000)]
    packed = gzip.compress(b"\n".join(lines) + b"\n", mtime=0)
    with tempfile.TemporaryDirectory() as folder:
        out = read(Path(folder), "f.jsonl.gz", packed[: len(packed) // 2])
    assert out[-1].reason == "unreadable_file" and len(out) > 100
    assert [r.doc_id for r in out[:-1]] == [f"r{i}" for i in range(len(out) - 1)]


# --- a few real runs ------------------------------------------------------------------------------------

@PIPELINE
@given(jsonl_file(), document_file(), document_file())
def test_fuzz_a_real_run_puts_every_record_in_one_table(jsonl, doc_a, doc_b):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        expected = set()
        for i, (name, data) in enumerate([jsonl[:2], doc_a, (doc_b[0].replace("f.", "g."), doc_b[1]),
                                          ("good.jsonl", json.dumps({"id": "good", "text": STORY}).encode())]):
            expected |= {r.source_location for r in read(folder, name, data)}
        lake = Path(tmp) / "lake"
        assert main(["run", "--input", str(folder), "--output", str(lake), "--quiet",
                     "--max_record_bytes", str(MAX_RECORD_BYTES), "--ingested_at", "2024-01-01T00:00:00Z"]) == 0
        s = summary(lake)
        assert s["ok"] and s["records_read"] == len(expected), s
        found = [r["source_location"] for table in ("documents", "duplicates", "rejected")
                 for r in lake_rows(lake, table, "source_location")]
        assert sorted(found) == sorted(expected)  # each record in exactly one table
        checker = SHARED / "tools" / "check_lake.py"
        if checker.exists():
            result = subprocess.run([sys.executable, str(checker), str(lake)], capture_output=True, text=True)
            assert result.returncode == 0, result.stdout + result.stderr
