"""Reading input files into `Article` records (or `Rejection`s), through Beam's FileSystems: `ReadArticles`.

Which files, and their names: pipeline/input_files.py; one record's parsing: pipeline/records.py; the byte
tally each read is checked against: pipeline/tally.py. Here: opening, decoding and bounding the bytes of a
file (or of a line-aligned range of a large one, `plan_ranges`), and the Beam transform. Formats, by file name: `.jsonl` / `.jsonl.gz` (gzip is recognised by its content too; one JSON object per line: id, url, source, title, published,
text or html), `.txt` (one article per file), `.html` / `.htm` (one raw page per file). Every record read
becomes exactly one `Article` or one `Rejection` naming the file and line, so nothing is lost silently.
Paths may be local or any scheme Beam's FileSystems knows (gs://, s3:// with the matching extras).

Hostile input never stops a run nor escapes a bound: a record over `max_record_bytes` is skipped in 1 MiB
reads (`too_large`); a .gz stops inflating past `max_decompressed_bytes` or a 100:1 ratio
(`decompression_limit`); UTF-16 (BOM) and UTF-8-BOM JSONL are re-encoded; a file with no record is
`empty_file`; a dangling symlink, FIFO, directory or unopenable file is `unreadable_file` (location
`path:0`), and local entries Beam's listing would skip silently are listed so they show up there.
"""
from __future__ import annotations

import codecs
import gzip
import io
import os
import stat
from typing import Iterator, Optional

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from wirewash.pipeline.input_files import (FORMAT_JSONL, REASON_UNREADABLE, ByteRange, InputFile,
                                          from_wire, to_wire)
from wirewash.pipeline.records import Parsed, _reject, guarded_parse, parse_document_file, parse_json_record
from wirewash.pipeline.tally import ReadTally, _Tally, tally_fact
from wirewash.transforms.types import Rejection

__all__ = ["ReadArticles", "parse_file", "plan_ranges", "rangeable_head"]

NAMESPACE = "read"
DEFAULT_MAX_RECORD_BYTES = 1_800_000  # real pages reach ~1.5 MB; a 2 MB "article" is not one
SPLIT_BYTES = 4 << 20  # uncompressed JSONL files are read as line-aligned ranges of at most about this size
SPLIT_LINES = 128  # ... and at most this many lines: many ranges alike in records, dealt evenly over the workers
# Bounded decompression (gzip bombs): a hard cap per file, and a ratio check once a file has inflated past
# RATIO_CHECK_AFTER bytes. Real news JSONL compresses 3-10x; 100x is only reached by padding or an attack.
DEFAULT_MAX_DECOMPRESSED_BYTES = 16 << 30
MAX_COMPRESSION_RATIO = 100
RATIO_CHECK_AFTER = 16 << 20

# gzip's ID bytes and its deflate method (RFC 1952): a file starting so is inflated whatever its name says
# (a `.jsonl` written by `gzip -c` or a crawler). No UTF-8 text starts so: 0x8b is never a lead byte.
GZIP_MAGIC = b"\x1f\x8b\x08"

REASON_TOO_LARGE = "too_large"
REASON_UNSUPPORTED = "unsupported_file_type"
REASON_EMPTY_FILE = "empty_file"
REASON_DECOMPRESSION_LIMIT = "decompression_limit"


class DecompressionLimitError(OSError):
    """A compressed file inflates beyond the per-file limit or ratio: reading it stops (gzip bomb)."""


# ---------------------------------------------------------------------------------------------------------
# Reading a file: lines, bounds, encodings, ranges
# ---------------------------------------------------------------------------------------------------------


def read_bounded_lines(stream, max_bytes: int, limit: Optional[int] = None,
                       first_number: int = 1) -> Iterator[tuple[int, Optional[bytes]]]:
    """Yields (line number, bytes) per line; a line longer than `max_bytes` yields (number, None) and is
    skipped without ever being held in memory whole (one of only whitespace yields (number, b""): it is
    blank, whatever its length). With `limit`, stops after that many bytes (the end of a line-aligned range
    planned by `plan_ranges`). Numbering starts at `first_number`."""
    number, consumed = first_number - 1, 0
    while limit is None or consumed < limit:
        chunk = stream.readline(max_bytes + 1)
        if not chunk:
            return
        number += 1
        consumed += len(chunk)
        if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
            blank = not (chunk.removeprefix(codecs.BOM_UTF8) if number == 1 else chunk).strip()
            while chunk and not chunk.endswith(b"\n"):
                chunk = stream.readline(1 << 20)
                consumed += len(chunk)
                blank = blank and not chunk.strip()
            yield number, b"" if blank else None
            continue
        if len(chunk.rstrip(b"\r\n")) > max_bytes and chunk.strip():  # a transcoded (UTF-16) line can grow
            yield number, None
            continue
        yield number, chunk


def parse_file(input_file: InputFile, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
               opener=None, max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
               span: Optional[ByteRange] = None, on_tally=None) -> Iterator[Parsed]:
    """Every record of one input file (or of one line-aligned `span` of a plain UTF-8 JSONL file, as planned
    by `plan_ranges`), as `Article` or `Rejection`. Never raises for bad content: each record is parsed
    under `guarded_parse`, so only a failing read (I/O error, truncated gzip) ends a file early, with one
    `unreadable_file` rejection at the line it reached.

    A file that yields no record at all (empty, or only blank lines) yields one `empty_file` rejection, and a
    file that cannot be opened one `unreadable_file` rejection (location `path:0`), so it shows in rejected/.
    `on_tally(ReadTally)` is called once, after the last record: what the byte layer counted.
    """
    ranged = span is not None and span.end is not None
    input_file = InputFile(*input_file)
    path, rel_path, fmt = input_file.path, input_file.rel_path, input_file.format
    name = f"{rel_path}@{span.start}" if ranged else rel_path
    tally = None

    def report():
        if on_tally is not None:
            on_tally(ReadTally(name, fmt, tally is not None, tally.bytes if tally else 0,
                               bool(tally and tally.at_end), bool(tally and tally.failed),
                               tally.lines if tally else 0, ranged and not covers_file, too_large))

    too_large = covers_file = False
    if input_file.problem:
        reason, message = input_file.problem
        yield _reject(f"{rel_path}:0", reason, error=message)
        report()
        return
    if fmt is None:
        yield _reject(f"{rel_path}:0", REASON_UNSUPPORTED, error="expected .jsonl, .jsonl.gz, .txt, .html or .htm")
        report()
        return
    try:
        opened = opener(path) if opener else _open(path, max_decompressed_bytes)
        if ranged:  # a middle range starts on a line boundary; the planner ruled UTF-16 out
            opened.seek(span.start)
    except Exception as err:  # noqa: BLE001 - whatever stops the opening is this file's rejection
        yield _reject(f"{rel_path}:0", REASON_UNREADABLE, error=f"{type(err).__name__}: {err}")
        report()
        return
    tally = _Tally(opened, span.end - span.start if ranged else None, start_of_file=not ranged or span.start == 0,
                   lines=fmt == FORMAT_JSONL)
    number = 0
    with io.BufferedReader(tally, 1 << 16) as stream:
        try:
            if fmt == FORMAT_JSONL:
                records = 0
                if ranged:
                    lines = read_bounded_lines(stream, max_record_bytes, span.end - span.start, span.first_line)
                    number = span.first_line - 1
                else:
                    lines = read_bounded_lines(_utf8_lines(stream), max_record_bytes)
                for number, raw in lines:
                    location = f"{rel_path}:{number}"
                    if raw is None:
                        records += 1
                        yield _reject(location, REASON_TOO_LARGE, error=f"line longer than {max_record_bytes} bytes")
                        continue
                    if number == 1:
                        raw = raw.removeprefix(codecs.BOM_UTF8)
                    if raw.strip():
                        records += 1
                        yield guarded_parse(parse_json_record, location, raw.rstrip(b"\r\n"), location,
                                            ("line", rel_path, str(number)))
                # a range from 0 to the file's end (a watched file, as listed) is the whole file
                covers_file = ranged and span.start == 0 and not records and not opened.read(1)
                if not records and (not ranged or covers_file):
                    yield _reject(f"{rel_path}:0", REASON_EMPTY_FILE, error="the file holds no record")
            else:
                data = stream.read(max_record_bytes + 1)
                if len(data) > max_record_bytes:
                    too_large = True
                    yield _reject(f"{rel_path}:1", REASON_TOO_LARGE, data,
                                  error=f"file larger than {max_record_bytes} bytes")
                elif not data:
                    yield _reject(f"{rel_path}:0", REASON_EMPTY_FILE, error="the file is empty")
                else:
                    yield guarded_parse(parse_document_file, f"{rel_path}:1", data, fmt, rel_path)
        except DecompressionLimitError as err:
            yield _reject(f"{rel_path}:{number + 1}", REASON_DECOMPRESSION_LIMIT, error=str(err))
        except Exception as err:  # noqa: BLE001 - a failing read (truncated gzip, I/O error): records are guarded
            yield _reject(f"{rel_path}:{number + 1 if number else 0}", REASON_UNREADABLE,
                          error=f"{type(err).__name__}: {err}")
    report()


def plan_ranges(input_file: InputFile, split_bytes: int = SPLIT_BYTES, opener=None,
                split_lines: int = SPLIT_LINES) -> list[ByteRange]:
    """Cuts a plain (uncompressed, not UTF-16) JSONL file into line-aligned ranges, so that several workers
    read one big file in parallel and no record has to cross a shuffle (the local runner would hold every
    record, HTML included, in memory there). A range ends at the line end that gives it `split_lines` lines
    (once it holds at least `split_bytes // 64` bytes, so blank or tiny lines cannot multiply the ranges),
    or at the first line end at or past `split_bytes` bytes, whichever comes first: ranges hold about the
    same number of records, so the runner's even deal of ranges gives each worker about the same work
    whatever the records' sizes. One pass finds the line ends, so locations keep their true line numbers.
    A file of at most `split_bytes // 64` bytes, any other file, a file holding only blank lines (reading
    it whole reports `empty_file`) and one that cannot be read or vanished (reading it reports the error)
    are one whole range."""
    path, fmt = input_file[0], input_file[2]
    whole = [ByteRange(tuple(input_file))]
    if fmt != FORMAT_JSONL or path.lower().endswith(".gz"):
        return whole
    min_bytes = max(1, split_bytes // 64)
    try:
        if "://" not in path:
            _check_local_file(path)  # never open a FIFO: it would block the planner
        sizes = FileSystems.match([path])[0].metadata_list
        if not sizes or (sizes[0].size_in_bytes or 0) <= min_bytes:
            return whole
        import numpy as np

        ranges, start, first_line, held, offset, content = [], 0, 1, 0, 0, False
        with (opener(path) if opener else _open(path, by_content=False)) as stream:
            while True:
                block = stream.read(1 << 20)
                if not block:
                    break
                if offset == 0 and not rangeable_head(block):
                    return whole  # transcoded or inflated when read whole
                content = content or bool(block.strip())
                ends = offset + 1 + np.flatnonzero(np.frombuffer(block, np.uint8) == ord("\n"))  # line ends
                i = 0  # ends[i:] are not in a closed range yet; the open range already holds `held` lines
                while i < len(ends):
                    by_lines = max(i + split_lines - held - 1, int(np.searchsorted(ends, start + min_bytes)))
                    by_bytes = int(np.searchsorted(ends, start + split_bytes + 1))
                    cut = min(by_lines, by_bytes)
                    if cut >= len(ends):
                        held += len(ends) - i
                        break
                    end = int(ends[cut])
                    ranges.append(ByteRange(tuple(input_file), start, end, first_line))
                    first_line += held + cut - i + 1
                    start, held, i = end, 0, cut + 1
                offset += len(block)
        if start < offset:
            ranges.append(ByteRange(tuple(input_file), start, offset, first_line))
        return ranges if content and len(ranges) > 1 else whole
    except Exception:  # unreadable, or changed while planned: the reader reports it for the whole file
        return whole


class _CountingReader(io.RawIOBase):
    """Passes reads through and counts the bytes (the compressed side of a gzip stream)."""

    def __init__(self, raw):
        self.raw, self.count = raw, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self.raw.read(len(buffer))
        buffer[:len(data)] = data
        self.count += len(data)
        return len(data)

    def close(self):
        self.raw.close()
        super().close()


class _BoundedReader(io.RawIOBase):
    """The decompressed side of a gzip stream, with gzip bombs stopped: raises DecompressionLimitError once
    more than `max_bytes` came out, or more than MAX_COMPRESSION_RATIO times what went in (checked after
    RATIO_CHECK_AFTER bytes, so small files with a high ratio still read)."""

    def __init__(self, inflated, compressed: _CountingReader, max_bytes: int):
        self.inflated, self.compressed, self.max_bytes, self.count = inflated, compressed, max_bytes, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self.inflated.read1(len(buffer))  # what is ready: read() would insist on a full buffer
        self.count += len(data)
        if self.count > self.max_bytes:
            raise DecompressionLimitError(f"decompressed size exceeds {self.max_bytes} bytes")
        if self.count > RATIO_CHECK_AFTER and self.count > MAX_COMPRESSION_RATIO * max(1, self.compressed.count):
            raise DecompressionLimitError(
                f"decompressed {self.count} bytes from {self.compressed.count} compressed bytes: more than "
                f"{MAX_COMPRESSION_RATIO}:1, a decompression bomb")
        buffer[:len(data)] = data
        return len(data)

    def close(self):
        self.inflated.close()
        super().close()


def rangeable_head(head: bytes) -> bool:
    """Whether a JSONL file starting with `head` (its first 3 bytes or more) can be read as byte ranges:
    not UTF-16 (transcoded) and not gzip by content (inflated); both are read whole."""
    return head[:2] not in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) and not head.startswith(GZIP_MAGIC)


def _utf8_lines(stream):
    """The stream itself, or, when it starts with a UTF-16 byte-order mark, the same lines re-encoded as
    UTF-8 (JSONL saved by Windows tools; an unpaired code unit becomes U+FFFD, and only "\n" ends a line, as
    in UTF-8 files); streams that cannot peek are read as they are."""
    head = stream.peek(2)[:2] if hasattr(stream, "peek") else b""
    if head not in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return stream
    text = io.TextIOWrapper(stream, encoding="utf-16", errors="replace", newline="\n")

    class _Reencoded:
        def readline(self, size=-1):
            return text.readline(size).encode("utf-8")

    return _Reencoded()


def _check_local_file(path: str) -> None:
    """Refuses, with a clear OSError, what is not a regular file: a dangling symlink, a directory, a FIFO
    (opening one would block the run forever), a socket or a device."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise FileNotFoundError(f"{path} is a symbolic link to a missing file ({os.readlink(path)})") from None
        raise
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a directory, not a file")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise OSError(f"{path} is {kind}, not a regular file")


def _open(path: str, max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES, by_content: bool = True):
    """A buffered binary stream of the file's content; .gz (by name or by content) is decompressed lazily (Python's gzip, whose
    readline(size) keeps every read bounded, unlike Beam's CompressedFile) and within bounds. `by_content`
    False: only a .gz name is inflated (the range planner looks at the stored bytes)."""
    if "://" not in path:
        _check_local_file(path)
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if not hasattr(raw, "peek"):
        raw = io.BufferedReader(raw, 1 << 16)
    if path.lower().endswith(".gz") or by_content and raw.peek(len(GZIP_MAGIC)).startswith(GZIP_MAGIC):
        compressed = _CountingReader(raw)
        inflated = gzip.GzipFile(fileobj=compressed, mode="rb")
        return io.BufferedReader(_BoundedReader(inflated, compressed, max_decompressed_bytes), 1 << 16)
    return raw


# ---------------------------------------------------------------------------------------------------------
# Beam wrapper
# ---------------------------------------------------------------------------------------------------------


class _ParseFileFn(beam.DoFn):
    """Reads one file or one range of it; articles on the main output, rejections on `rejected`, and one
    `tally_fact` per file (range) on `tallies`: the records this DoFn emitted against the byte layer's count."""

    def __init__(self, max_record_bytes: int, max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES):
        self.max_record_bytes = max_record_bytes
        self.max_decompressed_bytes = max_decompressed_bytes
        self.records = Metrics.counter(NAMESPACE, "records")
        self.rejected = Metrics.counter(NAMESPACE, "rejected")
        self.files = Metrics.counter(NAMESPACE, "files")

    def process(self, span):
        span = ByteRange(*span)
        if span.start == 0:
            self.files.inc()
        tallies, emitted = [], 0
        for parsed in parse_file(from_wire(span.file), self.max_record_bytes,
                                 max_decompressed_bytes=self.max_decompressed_bytes, span=span,
                                 on_tally=tallies.append):
            emitted += 1
            self.records.inc()
            if isinstance(parsed, Rejection):
                self.rejected.inc()
                Metrics.counter(NAMESPACE, f"rejected_{parsed.reason.split(':')[0]}").inc()
                yield beam.pvalue.TaggedOutput(ReadArticles.REJECTED, parsed)
            else:
                yield parsed
        for tally in tallies:
            yield beam.pvalue.TaggedOutput(ReadArticles.TALLIES, tally_fact(tally, emitted))


class ReadArticles(beam.PTransform):
    """PBegin -> {`articles`: Article, `rejected`: Rejection, `tallies`: one `tally_fact` per file or range}
    for a fixed list of matched input files.

    Plain JSONL files are cut into line-aligned byte ranges (`plan_ranges`); only the small range
    descriptions are reshuffled over the workers, which then read, parse and run the per-record stages after
    it in the same fused step, in parallel even for a single large file. Records themselves never cross a
    shuffle here: on the local runner that would hold the whole corpus, HTML included, in memory.
    """

    ARTICLES = "articles"
    REJECTED = "rejected"
    TALLIES = "tallies"

    def __init__(self, files: list[InputFile], max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES, split_bytes: int = SPLIT_BYTES):
        super().__init__()
        self.files = [to_wire(f) for f in files]
        self.max_record_bytes = max_record_bytes
        self.max_decompressed_bytes = max_decompressed_bytes
        self.split_bytes = split_bytes

    def expand(self, pbegin):
        split_bytes = self.split_bytes
        parsed = (
            pbegin
            | "ListFiles" >> beam.Create(self.files)
            | "PlanRanges" >> beam.FlatMap(lambda f: [tuple(r._replace(file=to_wire(r.file)))
                                                      for r in plan_ranges(from_wire(f), split_bytes)])
            | "SpreadRanges" >> beam.Reshuffle()
            | "ParseFiles" >> beam.ParDo(_ParseFileFn(self.max_record_bytes, self.max_decompressed_bytes)).with_outputs(
                self.REJECTED, self.TALLIES, main=self.ARTICLES)
        )
        return {self.ARTICLES: parsed[self.ARTICLES], self.REJECTED: parsed[self.REJECTED],
                self.TALLIES: parsed[self.TALLIES]}
