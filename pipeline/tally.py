"""The reader's own accounting, on the bytes below the parsing: how much of each input file (or range) was
read, whether its end was reached or a read failed, and how many records its bytes hold (`ReadTally`).

The records the read step emitted for a file are checked against that count (`expected_records`; the lake's
`invariants.unread_input`), so a reader that loses records fails the run naming the file.
"""
from __future__ import annotations

import codecs
import io
from typing import NamedTuple, Optional

from wirewash.pipeline.input_files import FORMAT_JSONL

__all__ = ["ReadTally", "expected_records", "read_whole", "tally_fact"]


JSON_WHITESPACE = b" \t\n\r\x0b\x0c"  # what `bytes.strip()` removes: a line of only these is blank


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


def tally_fact(tally: ReadTally, emitted: int) -> tuple:
    """(file, read whole, records its bytes hold, records emitted): what `pipeline.lake` checks per file."""
    return tally.location, read_whole(tally), expected_records(tally), emitted
