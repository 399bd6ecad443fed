"""Reading input files into `Article` records (or `Rejection`s), through Beam's FileSystems.

Formats, by file name: `.jsonl` / `.jsonl.gz` (one JSON object per line: id, url, source, title, published,
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
import json
import os
import posixpath
import re
import stat
from typing import Iterable, Iterator, NamedTuple, Optional, Union

import apache_beam as beam
import xxhash
from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from wirewash.transforms.records import parse_published, source_from_url
from wirewash.transforms.types import FORMAT_HTML, FORMAT_TEXT, Article, Rejection, excerpt

__all__ = ["ReadArticles", "InputFile", "match_inputs", "InputError", "plan_ranges", "ByteRange"]

STAGE = "read"
NAMESPACE = "read"

FORMAT_JSONL = "jsonl"
SUFFIX_FORMATS = ((".jsonl.gz", FORMAT_JSONL), (".jsonl", FORMAT_JSONL), (".txt", FORMAT_TEXT),
                  (".html", FORMAT_HTML), (".htm", FORMAT_HTML))

DEFAULT_MAX_RECORD_BYTES = 1_800_000  # real pages reach ~1.5 MB; a 2 MB "article" is not one
SPLIT_BYTES = 4 << 20  # uncompressed JSONL files larger than this are read as line-aligned ranges, in parallel
# Bounded decompression (gzip bombs): a hard cap per file, and a ratio check once a file has inflated past
# RATIO_CHECK_AFTER bytes. Real news JSONL compresses 3-10x; 100x is only reached by padding or an attack.
DEFAULT_MAX_DECOMPRESSED_BYTES = 16 << 30
MAX_COMPRESSION_RATIO = 100
RATIO_CHECK_AFTER = 16 << 20
MAX_ID_CHARS = 256

REASON_BAD_JSON = "bad_json"
REASON_NOT_AN_OBJECT = "not_an_object"
REASON_INVALID_UTF8 = "invalid_utf8"
REASON_BINARY = "binary_content"
REASON_EMPTY_TEXT = "empty_text"
REASON_MISSING_TEXT = "missing_text"
REASON_TOO_LARGE = "too_large"
REASON_UNREADABLE = "unreadable_file"
REASON_UNSUPPORTED = "unsupported_file_type"
REASON_EMPTY_FILE = "empty_file"
REASON_DECOMPRESSION_LIMIT = "decompression_limit"
REASON_WRONG_TYPE = "wrong_type"  # suffixed with the field: wrong_type:published
REASON_SYMLINK_OUTSIDE = "symlink_outside_input"
REASON_ERROR = "read_error"  # parsing one record raised (transforms/guard.py): that record only is rejected
JSON_FIELDS = ("id", "url", "source", "title", "published", "text", "html")
JSON_WHITESPACE = b" \t\n\r\x0b\x0c"  # what `bytes.strip()` removes: a line of only these is blank
# A lone surrogate (a JSON escape \ud800-\udfff without its pair; json.loads joins the pairs) is not a
# character and has no UTF-8 form: it becomes U+FFFD, as an unpaired UTF-16 code unit does.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT_CHARACTER = "\ufffd"


class InputError(ValueError):
    """An input argument that matches nothing or cannot be read; the message names it."""


class DecompressionLimitError(OSError):
    """A compressed file inflates beyond the per-file limit or ratio: reading it stops (gzip bomb)."""


class InputFile(NamedTuple):
    """A matched input file: its full path, the path shown to users and hashed into ids (always valid UTF-8,
    `readable_name`), its format, and, for an entry refused when listed, (reason, message) for its rejection."""

    path: str
    rel_path: str
    format: Optional[str]
    problem: tuple = ()


class ByteRange(NamedTuple):
    """A line-aligned part of an input file: bytes [start, end) whose first line is line number `first_line`.
    `end` None means the whole file (compressed, UTF-16, text and HTML files, small or unreadable files)."""

    file: tuple
    start: int = 0
    end: Optional[int] = None
    first_line: int = 1


Parsed = Union[Article, Rejection]


# ---------------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------------

def format_of(path: str) -> Optional[str]:
    """The input format a file name implies (`jsonl`, `text`, `html`), or None when unsupported."""
    name = path.lower()
    for suffix, fmt in SUFFIX_FORMATS:
        if name.endswith(suffix):
            return fmt
    return None


def readable_name(path: str) -> str:
    """A file name as valid UTF-8 text: itself, or, when the file system's bytes are not UTF-8 (Python holds
    them as lone surrogates), with each such byte escaped (`caf\\xe9.jsonl`)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape" if _fs_escaped(path) else "backslashreplace").decode(
            "utf-8", "backslashreplace")


def _fs_escaped(path: str) -> bool:
    return all("\udc80" <= ch <= "\udcff" for ch in _LONE_SURROGATE.findall(path))


def to_wire(input_file) -> tuple:
    """An InputFile as a tuple Beam can encode: a path that is not valid UTF-8 travels as its bytes."""
    path = input_file[0]
    if isinstance(path, str) and readable_name(path) != path:
        path = os.fsencode(path) if _fs_escaped(path) else path.encode("utf-8", "surrogatepass")
    return (path,) + tuple(input_file[1:])


def from_wire(wired) -> InputFile:
    """The InputFile that `to_wire` made `wired` from."""
    path = wired[0]
    return InputFile(os.fsdecode(path) if isinstance(path, bytes) else path, *wired[1:])


def stable_id(*parts: str) -> str:
    """A 16-hex-digit id from stable strings (xxh3-64), so reruns give the same ids."""
    return xxhash.xxh3_64_hexdigest("\x1f".join(parts).encode("utf-8"))


def looks_binary(data: bytes) -> bool:
    """True for bytes that are not text: NUL bytes, or many control characters in the first 8 KiB."""
    head = data[:8192]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return bool(head) and controls / len(head) > 0.05


def decode_document(data: bytes) -> str:
    """Bytes of a whole .txt/.html file -> text: UTF-8 (BOM dropped), or UTF-16 when it starts with a BOM
    (an unpaired code unit, or an odd last byte, becomes U+FFFD).

    Raises UnicodeDecodeError for anything else that is not valid UTF-8.
    """
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        return data.decode("utf-16", errors="replace")  # an unpaired code unit becomes U+FFFD
    return data.decode("utf-8-sig")


HEADLINE_MAX_CHARS = 150
HEADLINE_MAX_WORDS = 20
HEADLINE_END_PUNCTUATION = ".!?:;,…\"'”’»)"


def looks_like_headline(line: str) -> bool:
    """A first line is a headline when short (<= 20 words, <= 150 characters) and not closed by punctuation."""
    line = line.strip()
    return (0 < len(line) <= HEADLINE_MAX_CHARS and len(line.split()) <= HEADLINE_MAX_WORDS
            and not line.endswith(tuple(HEADLINE_END_PUNCTUATION)))


def split_title(text: str) -> tuple[Optional[str], str]:
    """(title, body) of a plain-text article: the first line is the title only when it reads like a headline
    and more text follows it."""
    stripped = text.lstrip("\ufeff\r\n\t ")
    first, _, rest = stripped.partition("\n")
    if rest.strip() and looks_like_headline(first):
        return first.strip(), rest
    return None, text


def replace_lone_surrogates(value: str) -> str:
    """`value` with every lone surrogate (which no UTF-8 encoder accepts) replaced by U+FFFD."""
    return _LONE_SURROGATE.sub(REPLACEMENT_CHARACTER, value)


def _reject(location: str, reason: str, payload=None, doc_id=None, error="") -> Rejection:
    return Rejection(doc_id=doc_id, source_location=location, stage=STAGE, reason=reason,
                     excerpt=excerpt(payload), error=excerpt(error, 300))


def guarded_parse(parse, location: str, *args) -> Parsed:
    """`parse(*args)`, or, when it raises anything (a bug, an input no check foresaw), the rejection of that
    one record (`read_error`, the error's type and message): one record's failure never ends a file's read."""
    try:
        return parse(*args)
    except Exception as err:  # noqa: BLE001 - whatever one record raises is that record's rejection
        return _reject(location, REASON_ERROR, error=f"{type(err).__name__}: {err}")


def parse_json_record(raw: bytes, location: str, fallback_id_parts: tuple[str, ...]) -> Parsed:
    """One JSONL line -> `Article` (format text or html), or a `Rejection` saying exactly what is wrong."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return _reject(location, REASON_INVALID_UTF8, raw, error=str(err))
    if "\x00" in line:
        return _reject(location, REASON_BINARY, line, error="NUL byte in the line")
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as err:  # RecursionError: nested deeper than the parser's stack
        return _reject(location, REASON_BAD_JSON, line, error=f"{type(err).__name__}: {err}")
    if not isinstance(obj, dict):
        return _reject(location, REASON_NOT_AN_OBJECT, line, error=f"got a JSON {type(obj).__name__}")
    if _SURROGATE_ESCAPE.search(line):
        obj = {k: replace_lone_surrogates(v) if isinstance(v, str) else v for k, v in obj.items()
               if k in JSON_FIELDS}

    raw_id = obj.get("id")
    doc_id = raw_id if isinstance(raw_id, str) and raw_id.strip() else None
    for field in ("id", "url", "source", "title", "published", "text", "html"):
        value = obj.get(field)
        if value is not None and not isinstance(value, str):
            return _reject(location, f"{REASON_WRONG_TYPE}:{field}", line, doc_id=doc_id,
                           error=f"{field} is a JSON {type(value).__name__}, expected a string")
    if raw_id is not None and not 0 < len(raw_id.strip()) <= MAX_ID_CHARS:
        return _reject(location, f"{REASON_WRONG_TYPE}:id", line, error="id is empty or too long")

    text, html = obj.get("text"), obj.get("html")
    if text is None and html is None:
        return _reject(location, REASON_MISSING_TEXT, line, doc_id=doc_id, error="no text and no html field")
    body = text if text is not None else html
    if not body.strip():
        return _reject(location, REASON_EMPTY_TEXT, line, doc_id=doc_id)
    if "\x00" in body:
        return _reject(location, REASON_BINARY, line, doc_id=doc_id, error="NUL character in the text")

    url = obj.get("url") or None
    if doc_id is None:
        doc_id = stable_id("url", url) if url else stable_id(*fallback_id_parts)
    return Article(
        doc_id=doc_id.strip(),
        source_location=location,
        format=FORMAT_TEXT if text is not None else FORMAT_HTML,
        url=url,
        source=(obj.get("source") or source_from_url(url) or None),
        title=(obj.get("title") or "").strip() or None,
        published_at=parse_published(obj.get("published")),
        text=text if text is not None else "",
        html=html if text is None else None,
    )


def parse_document_file(data: bytes, fmt: str, rel_path: str) -> Parsed:
    """A whole `.txt` or `.html` file -> one `Article` (id from its path), or a `Rejection`."""
    location = f"{rel_path}:1"
    doc_id = stable_id("path", rel_path)
    if not data.strip():
        return _reject(location, REASON_EMPTY_TEXT, data, doc_id=doc_id)
    try:
        text = decode_document(data)
    except UnicodeDecodeError as err:
        reason = REASON_BINARY if looks_binary(data) else REASON_INVALID_UTF8
        return _reject(location, reason, data, doc_id=doc_id, error=str(err))
    if "\x00" in text or looks_binary(text.encode("utf-8", errors="replace")):
        return _reject(location, REASON_BINARY, data, doc_id=doc_id, error="NUL or control bytes in a text file")
    if not text.strip():
        return _reject(location, REASON_EMPTY_TEXT, data, doc_id=doc_id)
    if fmt == FORMAT_HTML:
        return Article(doc_id=doc_id, source_location=location, format=FORMAT_HTML, html=text)
    title, body = split_title(text)
    return Article(doc_id=doc_id, source_location=location, format=FORMAT_TEXT, title=title, text=body)


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


class ReadTally(NamedTuple):
    """What the byte layer saw of one input file (or range), counted apart from the parsing: the reader's
    own bookkeeping, checked against the records it emitted (`expected_records`, `pipeline.lake`)."""

    location: str  # the file as users see it, `@start` added for a range of it
    format: Optional[str]
    opened: bool
    bytes: int  # bytes read (decompressed)
    at_end: bool  # the file (range) was read to its end
    failed: bool  # a read raised: I/O error, truncated gzip, decompression limit (one rejection says so)
    lines: int  # non-blank lines (JSONL): the records the file holds
    ranged: bool = False
    too_large: bool = False  # a .txt/.html file over the record limit (rejected whole, unread)


def expected_records(tally: ReadTally) -> int:
    """How many records (articles or rejections) the reader must emit for what its bytes hold: one per
    non-blank JSONL line, plus one `unreadable_file` when a read failed, or one `empty_file` for a whole
    file without any line; one per .txt/.html file, unopenable or unsupported file."""
    if tally.format != FORMAT_JSONL or not tally.opened:
        return 1
    return tally.lines + (1 if tally.failed or not (tally.lines or tally.ranged) else 0)


def read_whole(tally: ReadTally) -> bool:
    """Whether the reader consumed the file (range) to its end, or stopped because reading it failed."""
    return not tally.opened or tally.at_end or tally.failed or tally.too_large


class _Tally(io.RawIOBase):
    """Passes a binary stream through (at most `limit` bytes) and counts on the bytes alone what the file
    holds: bytes, whether its end was reached or a read raised, and (`lines`) its non-blank lines, UTF-16
    (BOM) in code units. A blank line holds only JSON whitespace (and a byte-order mark on line 1)."""

    def __init__(self, raw, limit: Optional[int] = None, start_of_file: bool = True, lines: bool = True):
        self.raw, self.limit, self.count_lines = raw, limit, lines
        self._read = getattr(raw, "read1", raw.read)  # what is ready: read() would wait for a full buffer
        self.bytes, self.lines, self.ended, self.failed = 0, 0, False, False
        self._head = b"" if start_of_file else None  # the first bytes, until the encoding is known
        self._first_line = start_of_file
        self._decoder = None
        self._open_line = False  # the line being read has a non-blank character

    def readable(self):
        return True

    def readinto(self, buffer):
        want = len(buffer) if self.limit is None else min(len(buffer), self.limit - self.bytes)
        if want <= 0:
            self._finish()
            return 0
        try:
            data = self._read(want)
        except BaseException:
            self.failed = True
            raise
        if not data:
            self._finish()
            return 0
        buffer[:len(data)] = data
        self.bytes += len(data)
        if self.count_lines:
            self._feed(data)
        return len(data)

    @property
    def at_end(self) -> bool:
        if self.limit is not None and self.bytes >= self.limit:
            self._finish()
        return self.ended

    def _feed(self, data: bytes, final: bool = False) -> None:
        if self._head is not None:
            self._head += data
            if len(self._head) < len(codecs.BOM_UTF8) and not final:
                return
            data, self._head = self._head, None
            if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                self._decoder = codecs.getincrementaldecoder("utf-16")("replace")
        if self._decoder is not None:
            self._count(self._decoder.decode(data, final), "\n", JSON_WHITESPACE.decode("ascii"), "\ufeff")
        else:
            self._count(data, b"\n", JSON_WHITESPACE, codecs.BOM_UTF8)

    def _count(self, data, newline, blank, bom) -> None:
        if self._first_line and data:
            data, self._first_line = data.removeprefix(bom), False
        parts = data.split(newline)
        for part in parts[:-1]:
            if self._open_line or part.strip(blank):
                self.lines += 1
            self._open_line = False
        self._open_line = self._open_line or bool(parts[-1].strip(blank))

    def _finish(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.count_lines:
            self._feed(b"", final=True)
            if self._open_line:
                self.lines += 1
                self._open_line = False

    def close(self):
        self.raw.close()
        super().close()


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


def plan_ranges(input_file: InputFile, split_bytes: int = SPLIT_BYTES, opener=None) -> list[ByteRange]:
    """Cuts a plain (uncompressed, not UTF-16) JSONL file larger than `split_bytes` into line-aligned ranges
    of about that size, so that several workers read one big file in parallel and no record has to cross a
    shuffle (the local runner would hold every record, HTML included, in memory there). One pass counts the
    lines before each cut, so locations keep their true line numbers. Any other file is one whole range, as
    is a file holding only blank lines (reading it whole reports `empty_file`) and one that cannot be read
    or vanished (reading it reports the error)."""
    path, fmt = input_file[0], input_file[2]
    whole = [ByteRange(tuple(input_file))]
    if fmt != FORMAT_JSONL or path.lower().endswith(".gz"):
        return whole
    try:
        if "://" not in path:
            _check_local_file(path)  # never open a FIFO: it would block the planner
        sizes = FileSystems.match([path])[0].metadata_list
        if not sizes or (sizes[0].size_in_bytes or 0) <= split_bytes:
            return whole
        ranges, start, first_line, lines, offset, content = [], 0, 1, 0, 0, False
        with (opener or _open)(path) as stream:
            while True:
                block = stream.read(1 << 20)
                if not block:
                    break
                if offset == 0 and block[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                    return whole  # transcoded line by line when read whole
                content = content or bool(block.strip())
                while True:  # cut at the first line end at or after start + split_bytes, maybe in this block
                    cut_at = max(0, start + split_bytes - offset)
                    newline = block.find(b"\n", cut_at) if cut_at < len(block) else -1
                    if newline < 0:
                        break
                    end = offset + newline + 1
                    ranges.append(ByteRange(tuple(input_file), start, end, first_line))
                    first_line = 1 + lines + block.count(b"\n", 0, newline + 1)
                    start = end
                lines += block.count(b"\n")
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


def _open(path: str, max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES):
    """A buffered binary stream of the file's content; .gz is decompressed lazily (Python's gzip, whose
    readline(size) keeps every read bounded, unlike Beam's CompressedFile) and within bounds."""
    if "://" not in path:
        _check_local_file(path)
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if path.lower().endswith(".gz"):
        compressed = _CountingReader(raw)
        inflated = gzip.GzipFile(fileobj=compressed, mode="rb")
        return io.BufferedReader(_BoundedReader(inflated, compressed, max_decompressed_bytes), 1 << 16)
    return raw


def _glob_base(pattern: str) -> str:
    """The folder part of a pattern before its first wildcard: the root that relative paths start from."""
    head = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return head if head.endswith("/") else posixpath.dirname(head) + "/"


def match_inputs(patterns: Iterable[str]) -> list[InputFile]:
    """Expands input arguments (files, folders, globs) into sorted `InputFile`s.

    A folder means every supported file below it (other files, like a README, are not input). A glob or
    file is taken as given: a matched file of an unsupported type is rejected later, not skipped.
    Raises InputError naming the argument that matches nothing.
    """
    found: dict[str, InputFile] = {}
    for pattern in patterns:
        is_dir = not any(ch in pattern for ch in "*?[") and _is_directory(pattern)
        if is_dir:
            base = pattern.rstrip("/") + "/"
            globs = [base + "**"] if "://" in pattern else []
        else:
            base = _glob_base(pattern)
            globs = [pattern]
        try:
            results = FileSystems.match(globs) if globs else []
        except Exception as err:  # Beam raises BeamIOError with per-pattern causes
            raise InputError(f"cannot list input {pattern!r}: {err}") from err
        local = "://" not in pattern
        if local and is_dir:  # symlinks and non-UTF-8 names handled here (Beam's listing skips linked folders)
            matched = walk_local_folder(base)
        else:
            matched = [(m.path, ()) for r in results for m in r.metadata_list]
            if local:
                matched += [(path, ()) for path in _unlisted_local(base, globs[0], is_dir)]
                matched = [(path, problem or _outside(path, base)) for path, problem in matched]
        files = []
        for path, problem in matched:
            fmt = format_of(path)
            if is_dir and fmt is None and not (problem and os.path.isdir(path)):
                continue
            rel = path[len(base):] if path.startswith(base) else posixpath.basename(path)
            files.append(InputFile(path, readable_name(rel or posixpath.basename(path)), fmt, problem))
        if not files:
            what = "no .jsonl, .jsonl.gz, .txt, .html or .htm files in folder" if is_dir else "nothing matches"
            raise InputError(f"{what} {pattern!r}")
        for f in files:
            found.setdefault(f.path, f)
    return sorted(found.values())


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _outside(path: str, base: str) -> tuple:
    """(symlink_outside_input, message) when the local `path` resolves outside the folder `base`, else ()."""
    real, root = os.path.realpath(path), os.path.realpath(base or ".")
    if _inside(real, root) or not os.path.lexists(path) or not os.path.exists(path):
        return ()
    return (REASON_SYMLINK_OUTSIDE, f"{readable_name(path)} is a symbolic link to {readable_name(real)}, outside "
                                    f"the input folder {readable_name(root)}")


def walk_local_folder(root: str) -> list[tuple[str, tuple]]:
    """(path, problem) for every entry below the local folder `root`, sorted: files, FIFOs and dangling
    links as they are (the reader says what is wrong with them), and symbolic links by this policy:
    a link that resolves inside `root` is followed (a linked folder is read, a linked file is read), once
    per real file or folder (a link to what was already read, or a loop, adds nothing: the real entry is
    read under its own name); a link that resolves outside `root` is not followed, and comes back with the
    problem (symlink_outside_input, message) so that it is rejected by name. A folder that cannot be listed
    comes back with (unreadable_file, message). Nothing below `root` is skipped without a word."""
    real_root = os.path.realpath(root)
    seen_dirs, seen_files, found, links = set(), set(), [], []

    def walk(folder: str) -> None:
        real = os.path.realpath(folder)
        if real in seen_dirs:
            return
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            found.append((folder, (REASON_UNREADABLE, f"cannot list the folder {readable_name(folder)}: {err}")))
            return
        for entry in entries:
            if entry.is_symlink():
                links.append(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                walk(entry.path)
            else:
                seen_files.add(os.path.realpath(entry.path))
                found.append((entry.path, ()))

    walk(root)
    while links:  # links after the real entries, so that those keep their own names
        pending, links = sorted(links), []
        for link in pending:
            target = os.path.realpath(link)
            if not os.path.exists(link):  # dangling, or a loop of links: the reader rejects it by name
                found.append((link, ()))
            elif not _inside(target, real_root):
                found.append((link, _outside(link, root)))
            elif os.path.isdir(link):
                walk(link)
            elif target not in seen_files:
                seen_files.add(target)
                found.append((link, ()))
    return sorted(found)


def _unlisted_local(base: str, pattern: str, is_dir: bool) -> list[str]:
    """Local entries that `pattern` matches but Beam's listing silently skips: dangling or looping symlinks,
    and (for a glob, not a folder) directories. They are returned so that each becomes an `unreadable_file`
    rejection naming it, instead of an input that vanishes without a trace."""
    root = base if os.path.isdir(base) else os.path.dirname(base.rstrip("/"))
    if not root or not os.path.isdir(root):
        return []
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        entries += [os.path.join(dirpath, n) for n in filenames if not os.path.exists(os.path.join(dirpath, n))]
        if not is_dir:
            entries += [os.path.join(dirpath, d) for d in dirnames]
    filesystem = FileSystems.get_filesystem(pattern)
    return [m.path for m in filesystem.match_files([FileMetadata(e, 0) for e in entries], pattern)]


def _is_directory(path: str) -> bool:
    if "://" not in path:
        return os.path.isdir(path)
    try:
        return not FileSystems.match([path])[0].metadata_list and bool(
            FileSystems.match([path.rstrip("/") + "/*"])[0].metadata_list)
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------------------
# Beam wrapper
# ---------------------------------------------------------------------------------------------------------

def tally_fact(tally: ReadTally, emitted: int) -> tuple:
    """(file, read whole, records its bytes hold, records emitted): what `pipeline.lake` checks per file."""
    return tally.location, read_whole(tally), expected_records(tally), emitted


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

    Big plain JSONL files are cut into line-aligned byte ranges (`plan_ranges`); only the small range
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
