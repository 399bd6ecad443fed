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
from datetime import datetime, timezone
from typing import Iterable, Iterator, NamedTuple, Optional, Union

import apache_beam as beam
import xxhash
from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.types import FORMAT_HTML, FORMAT_TEXT, Article, Rejection, excerpt

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
MIN_YEAR, MAX_YEAR = 1800, 2200

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


class InputError(ValueError):
    """An input argument that matches nothing or cannot be read; the message names it."""


class DecompressionLimitError(OSError):
    """A compressed file inflates beyond the per-file limit or ratio: reading it stops (gzip bomb)."""


class InputFile(NamedTuple):
    """A matched input file: its full path, the path shown to users and hashed into ids, its format."""

    path: str
    rel_path: str
    format: Optional[str]


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


def stable_id(*parts: str) -> str:
    """A 16-hex-digit id from stable strings (xxh3-64), so reruns give the same ids."""
    return xxhash.xxh3_64_hexdigest("\x1f".join(parts).encode("utf-8"))


def parse_published(value) -> Optional[str]:
    """An ISO-8601 date or datetime string -> canonical UTC ISO string, or None when it is not a sane date.

    Naive datetimes are taken as UTC. Years outside 1800-2200 are refused: they are typos or attacks, and
    the value later names a partition folder.
    """
    if not isinstance(value, str) or not 8 <= len(value.strip()) <= 40:
        return None
    text = value.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ][0-9:.,]+(Z|[+-]\d{2}:?\d{2})?)?", text):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def source_of(url: Optional[str]) -> Optional[str]:
    """The site of a URL (host, lower-cased, without `www.`), or None."""
    if not url:
        return None
    match = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#:@]+@)?([^/?#:]+)", url.strip())
    if not match:
        return None
    host = match.group(2).lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def looks_binary(data: bytes) -> bool:
    """True for bytes that are not text: NUL bytes, or many control characters in the first 8 KiB."""
    head = data[:8192]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return bool(head) and controls / len(head) > 0.05


def decode_document(data: bytes) -> str:
    """Bytes of a whole .txt/.html file -> text: UTF-8 (BOM dropped), or UTF-16 when it starts with a BOM.

    Raises UnicodeDecodeError for anything else that is not valid UTF-8.
    """
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        return data.decode("utf-16")
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


def _reject(location: str, reason: str, payload=None, doc_id=None, error="") -> Rejection:
    return Rejection(doc_id=doc_id, source_location=location, stage=STAGE, reason=reason,
                     excerpt=excerpt(payload), error=excerpt(error, 300))


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
    except ValueError as err:
        return _reject(location, REASON_BAD_JSON, line, error=str(err))
    if not isinstance(obj, dict):
        return _reject(location, REASON_NOT_AN_OBJECT, line, error=f"got a JSON {type(obj).__name__}")

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
        source=(obj.get("source") or source_of(url) or None),
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
    skipped without ever being held in memory whole. With `limit`, stops after that many bytes (the end of a
    line-aligned range planned by `plan_ranges`). Numbering starts at `first_number`."""
    number, consumed = first_number - 1, 0
    while limit is None or consumed < limit:
        chunk = stream.readline(max_bytes + 1)
        if not chunk:
            return
        number += 1
        consumed += len(chunk)
        if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):
                chunk = stream.readline(1 << 20)
                consumed += len(chunk)
            yield number, None
            continue
        if len(chunk.rstrip(b"\r\n")) > max_bytes:  # a transcoded (UTF-16) line can grow past the limit
            yield number, None
            continue
        yield number, chunk


def parse_file(input_file: InputFile, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
               opener=None, max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
               span: Optional[ByteRange] = None) -> Iterator[Parsed]:
    """Every record of one input file (or of one line-aligned `span` of a plain UTF-8 JSONL file, as planned
    by `plan_ranges`), as `Article` or `Rejection`. Never raises for bad content.

    A file that yields no record at all (empty, or only blank lines) yields one `empty_file` rejection, and a
    file that cannot be opened one `unreadable_file` rejection (location `path:0`), so it shows in rejected/.
    """
    ranged = span is not None and span.end is not None
    path, rel_path, fmt = input_file
    if fmt is None:
        yield _reject(f"{rel_path}:0", REASON_UNSUPPORTED, error="expected .jsonl, .jsonl.gz, .txt, .html or .htm")
        return
    try:
        stream = opener(path) if opener else _open(path, max_decompressed_bytes)
    except (OSError, IOError) as err:
        yield _reject(f"{rel_path}:0", REASON_UNREADABLE, error=str(err))
        return
    number = 0
    with stream:
        try:
            if fmt == FORMAT_JSONL:
                records = 0
                if ranged:  # a middle range starts on a line boundary; the planner ruled UTF-16 out
                    stream.seek(span.start)
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
                        yield parse_json_record(raw.rstrip(b"\r\n"), location, ("line", rel_path, str(number)))
                if not records and not ranged:  # the planner splits only files that hold a record
                    yield _reject(f"{rel_path}:0", REASON_EMPTY_FILE, error="the file holds no record")
            else:
                data = stream.read(max_record_bytes + 1)
                if len(data) > max_record_bytes:
                    yield _reject(f"{rel_path}:1", REASON_TOO_LARGE, data,
                                  error=f"file larger than {max_record_bytes} bytes")
                elif not data:
                    yield _reject(f"{rel_path}:0", REASON_EMPTY_FILE, error="the file is empty")
                else:
                    yield parse_document_file(data, fmt, rel_path)
        except DecompressionLimitError as err:
            yield _reject(f"{rel_path}:{number + 1}", REASON_DECOMPRESSION_LIMIT, error=str(err))
        except (OSError, IOError, EOFError, ValueError) as err:  # truncated gzip, I/O error mid-file
            yield _reject(f"{rel_path}:{number + 1 if number else 0}", REASON_UNREADABLE,
                          error=f"{type(err).__name__}: {err}")


def plan_ranges(input_file: InputFile, split_bytes: int = SPLIT_BYTES, opener=None) -> list[ByteRange]:
    """Cuts a plain (uncompressed, not UTF-16) JSONL file larger than `split_bytes` into line-aligned ranges
    of about that size, so that several workers read one big file in parallel and no record has to cross a
    shuffle (the local runner would hold every record, HTML included, in memory there). One pass counts the
    lines before each cut, so locations keep their true line numbers. Any other file is one whole range, as
    is a file holding only blank lines (reading it whole reports `empty_file`) and one that cannot be read
    or vanished (reading it reports the error)."""
    path, _, fmt = input_file
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
    UTF-8 (JSONL saved by Windows tools); streams that cannot peek are read as they are."""
    head = stream.peek(2)[:2] if hasattr(stream, "peek") else b""
    if head not in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return stream
    text = io.TextIOWrapper(stream, encoding="utf-16", errors="strict", newline="")

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
            globs = [base + "**"]
        else:
            base = _glob_base(pattern)
            globs = [pattern]
        try:
            results = FileSystems.match(globs)
        except Exception as err:  # Beam raises BeamIOError with per-pattern causes
            raise InputError(f"cannot list input {pattern!r}: {err}") from err
        matched = [m.path for r in results for m in r.metadata_list]
        if "://" not in pattern:
            matched += _unlisted_local(base, globs[0], is_dir)
        files = []
        for path in matched:
            fmt = format_of(path)
            if is_dir and fmt is None:
                continue
            rel = path[len(base):] if path.startswith(base) else posixpath.basename(path)
            files.append(InputFile(path, rel or posixpath.basename(path), fmt))
        if not files:
            what = "no .jsonl, .jsonl.gz, .txt, .html or .htm files in folder" if is_dir else "nothing matches"
            raise InputError(f"{what} {pattern!r}")
        for f in files:
            found.setdefault(f.path, f)
    return sorted(found.values())


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

class _ParseFileFn(beam.DoFn):
    """Reads one file or one range of it; articles on the main output, rejections on `rejected`."""

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
        for parsed in parse_file(InputFile(*span.file), self.max_record_bytes,
                                 max_decompressed_bytes=self.max_decompressed_bytes, span=span):
            self.records.inc()
            if isinstance(parsed, Rejection):
                self.rejected.inc()
                Metrics.counter(NAMESPACE, f"rejected_{parsed.reason.split(':')[0]}").inc()
                yield beam.pvalue.TaggedOutput(ReadArticles.REJECTED, parsed)
            else:
                yield parsed


class ReadArticles(beam.PTransform):
    """PBegin -> {`articles`: Article, `rejected`: Rejection} for a fixed list of matched input files.

    Big plain JSONL files are cut into line-aligned byte ranges (`plan_ranges`); only the small range
    descriptions are reshuffled over the workers, which then read, parse and run the per-record stages after
    it in the same fused step, in parallel even for a single large file. Records themselves never cross a
    shuffle here: on the local runner that would hold the whole corpus, HTML included, in memory.
    """

    ARTICLES = "articles"
    REJECTED = "rejected"

    def __init__(self, files: list[InputFile], max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES, split_bytes: int = SPLIT_BYTES):
        super().__init__()
        self.files = [tuple(f) for f in files]
        self.max_record_bytes = max_record_bytes
        self.max_decompressed_bytes = max_decompressed_bytes
        self.split_bytes = split_bytes

    def expand(self, pbegin):
        split_bytes = self.split_bytes
        parsed = (
            pbegin
            | "ListFiles" >> beam.Create(self.files)
            | "PlanRanges" >> beam.FlatMap(lambda f: [tuple(r) for r in plan_ranges(InputFile(*f), split_bytes)])
            | "SpreadRanges" >> beam.Reshuffle()
            | "ParseFiles" >> beam.ParDo(_ParseFileFn(self.max_record_bytes, self.max_decompressed_bytes)).with_outputs(
                self.REJECTED, main=self.ARTICLES)
        )
        return {self.ARTICLES: parsed[self.ARTICLES], self.REJECTED: parsed[self.REJECTED]}
