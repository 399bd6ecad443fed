"""Big plain JSONL files are read as line-aligned byte ranges: the same records, locations and rejections as
reading the file whole, and every hostile-input case still read whole where a range cannot be cut safely."""
from __future__ import annotations

import codecs
import gzip
import json
import os

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, given, settings, strategies as st

from wirewash.pipeline.input_files import ByteRange, InputFile
from wirewash.pipeline.io import ReadArticles, parse_file, plan_ranges

SPLIT = 300  # bytes: tiny ranges, so a few dozen lines make many of them


def _lines(n: int) -> list[bytes]:
    lines = []
    for i in range(n):
        if i % 7 == 3:
            lines.append(b"")  # blank lines are not records but still count in line numbers
        elif i % 11 == 5:
            lines.append(b"{not json")
        elif i == 20:
            lines.append(json.dumps({"id": "big", "text": "x" * 5000}).encode())  # too large, crosses cuts
        else:
            lines.append(json.dumps({"id": f"d{i}", "title": f"T{i}", "text": f"Story {i} " + "word " * 30}).encode())
    return lines


def _records(input_file, spans=None, max_record_bytes=2048):
    spans = spans or [ByteRange(tuple(input_file))]
    return [p for span in spans for p in parse_file(input_file, max_record_bytes, span=span)]


def test_ranges_read_exactly_what_the_whole_file_holds(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + b"\n".join(_lines(60)) + b"\n")
    f = InputFile(str(path), "big.jsonl", "jsonl")
    spans = plan_ranges(f, SPLIT)
    assert len(spans) > 5
    assert spans[0].start == 0 and spans[-1].end == os.path.getsize(path)
    assert all(a.end == b.start for a, b in zip(spans, spans[1:]))  # no gap, no overlap
    whole = _records(f)
    assert _records(f, spans) == whole
    assert {r.source_location for r in whole} >= {"big.jsonl:1", "big.jsonl:21", "big.jsonl:59"}
    assert [r.reason for r in whole if r.source_location == "big.jsonl:21"] == ["too_large"]


def test_last_line_without_newline_is_read_once(tmp_path):
    path = tmp_path / "tail.jsonl"
    path.write_bytes(b"\n".join(_lines(40)))
    f = InputFile(str(path), "tail.jsonl", "jsonl")
    spans = plan_ranges(f, SPLIT)
    assert len(spans) > 1 and _records(f, spans) == _records(f)


@pytest.mark.parametrize("kind", ["small", "gzip", "gzip_content", "utf16", "blank", "fifo", "dangling", "text"])
def test_files_that_cannot_be_cut_are_one_whole_range(tmp_path, kind):
    path = tmp_path / ("f.txt" if kind == "text" else "f.jsonl.gz" if kind == "gzip" else "f.jsonl")
    body = b"\n".join(_lines(60)) + b"\n"
    if kind == "small":
        path.write_bytes(body[:SPLIT - 1])
    elif kind == "gzip":
        path.write_bytes(gzip.compress(body))
    elif kind == "gzip_content":  # a .jsonl holding gzip (stored blocks: larger than SPLIT, still gzip)
        path.write_bytes(gzip.compress(body, compresslevel=0))
        assert path.stat().st_size > SPLIT
    elif kind == "utf16":
        path.write_bytes(body.decode().encode("utf-16"))
    elif kind == "blank":
        path.write_bytes(b"\n \n" * 400)
    elif kind == "fifo":
        os.mkfifo(path)  # opening it would block: the planner must not
    elif kind == "dangling":
        os.symlink(tmp_path / "missing.jsonl", path)
    else:
        path.write_bytes(body)
    f = InputFile(str(path), path.name, "text" if kind == "text" else "jsonl")
    assert plan_ranges(f, SPLIT) == [ByteRange(tuple(f))]
    if kind == "blank":
        assert [r.reason for r in _records(f)] == ["empty_file"]
    if kind == "gzip_content":  # read whole, inflated: what the plain file gives, line for line
        (tmp_path / "plain").write_bytes(body)
        assert _records(f) == _records(InputFile(str(tmp_path / "plain"), path.name, "jsonl"))


def test_read_articles_with_ranges_matches_whole_file_reading(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(_lines(80)) + b"\n")
    f = InputFile(str(path), "big.jsonl", "jsonl")
    expected = sorted((r.source_location, type(r).__name__) for r in _records(f))
    assert len(plan_ranges(f, SPLIT)) > 5
    with beam.Pipeline(runner="FnApiRunner") as p:
        read = p | ReadArticles([f], max_record_bytes=2048, split_bytes=SPLIT)
        both = ((read["articles"], read["rejected"]) | beam.Flatten()
                | beam.Map(lambda r: (r.source_location, type(r).__name__)))
        assert_that(both, equal_to(expected))


def _line_counts(path, spans):
    data = open(path, "rb").read()
    return [data[s.start:s.end].count(b"\n") + (not data[s.start:s.end].endswith(b"\n")) for s in spans]


def test_ranges_hold_the_same_number_of_lines_whatever_the_record_sizes(tmp_path):
    """Cut by bytes alone, a stretch of big records made a range of few records (a worker got 10,603
    records and the other 9,397 of 20,000): ranges now close at `split_lines` lines."""
    path = tmp_path / "mixed.jsonl"
    sizes = [50 if i % 50 < 40 else 3000 for i in range(400)]  # stretches of small and of big records
    path.write_bytes(b"".join(json.dumps({"id": f"d{i}", "text": "x" * n}).encode() + b"\n"
                              for i, n in enumerate(sizes)))
    f = InputFile(str(path), "mixed.jsonl", "jsonl")
    spans = plan_ranges(f, split_bytes=64 * 1500, split_lines=25)  # 25 lines: 1.9 KB small, 76 KB big
    assert _line_counts(path, spans) == [25] * 16
    assert _records(f, spans) == _records(f)


def test_blank_lines_cannot_multiply_the_ranges(tmp_path):
    """A range closed by its line count holds at least split_bytes // 64 bytes: a flood of blank (or tiny)
    lines makes at most one range per that many bytes, not one per few lines."""
    path = tmp_path / "blanks.jsonl"
    record = json.dumps({"id": "a", "text": "Story " * 20}).encode()
    path.write_bytes((b"\n" * 5000 + record + b"\n") * 8)
    f = InputFile(str(path), "blanks.jsonl", "jsonl")
    spans = plan_ranges(f, split_bytes=64 * 4000, split_lines=10)
    assert 2 <= len(spans) <= os.path.getsize(path) // 4000 + 1
    assert all(s.end - s.start >= 4000 for s in spans[:-1])
    assert _records(f, spans) == _records(f)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths=st.lists(st.sampled_from([0, 1, 30, 200, 3000]), min_size=1, max_size=120),
       split_bytes=st.integers(64, 20_000), split_lines=st.integers(1, 40), newline_at_end=st.booleans())
def test_ranges_tile_the_file_and_read_what_it_holds(tmp_path_factory, lengths, split_bytes, split_lines,
                                                     newline_at_end):
    path = tmp_path_factory.mktemp("tile") / "f.jsonl"
    lines = [json.dumps({"id": f"d{i}", "text": "w" * n}).encode() if n else b"" for i, n in enumerate(lengths)]
    path.write_bytes(b"\n".join(lines) + (b"\n" if newline_at_end else b""))
    f = InputFile(str(path), "f.jsonl", "jsonl")
    spans = plan_ranges(f, split_bytes=split_bytes, split_lines=split_lines)
    if len(spans) > 1:
        data = path.read_bytes()
        assert spans[0].start == 0 and spans[-1].end == len(data)
        assert all(a.end == b.start for a, b in zip(spans, spans[1:]))
        assert all(s.first_line == 1 + data[:s.start].count(b"\n") for s in spans)
        def closes(piece: bytes) -> bool:  # enough lines (and a floor of bytes), or past the byte size
            return (piece.count(b"\n") >= split_lines and len(piece) >= split_bytes // 64) or len(piece) > split_bytes

        for span in spans[:-1]:  # each closed range ends at the first line end where it may close
            piece = data[span.start:span.end]
            assert closes(piece) and (piece.count(b"\n") == 1 or not closes(piece[:piece.rindex(b"\n", 0, -1) + 1]))
    assert _records(f, spans) == _records(f, max_record_bytes=2048)
