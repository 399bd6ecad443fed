"""Spill: where articles wait at stage boundaries, on disk instead of in the local runner's memory.

Beam's local FnApiRunner keeps every PCollection that crosses a stage boundary in the launcher's memory until
the next stage has read it (on Dataflow, Flink or Spark, a shuffle spills to disk by itself). The articles
cross two such boundaries: the wait for the learned boilerplate lines, and dedup's wait for its decisions
(with the candidates' sketches); every Flatten would be one more on that runner, which is why extraction
takes texts and pages in one step. A
`Spill` with a folder writes each parked value once (articles LZ4-compressed) to a file of the process that
parks it, and the PCollection carries a 32-byte token (file, offset, lengths) instead: the launcher holds
tokens, not texts, and its memory stops growing with the articles. A process reads a token back with one `pread` (the file is on the same machine;
the page cache usually still has it).

A `Spill()` without a folder is inline: `park` returns the value itself and `fetch` takes it back, so the
same pipeline runs unchanged where there is no shared local disk (managed runners, Dask, streaming).

Files are named by a random id, one per process and spill (opened lazily after `fork`, so a subprocess
never writes through its parent's file), appended under a lock (the SDK harness runs bundles in threads).
The folder belongs to the run: `make_spill_dir` creates it (and clears what killed runs left),
`remove_spill_dir` deletes it.
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
import threading
import uuid
from typing import Optional, Union

import apache_beam as beam
import pyarrow

from wirewash.transforms.types import Article

__all__ = ["Spill", "make_spill_dir", "remove_spill_dir", "remove_stale_spill_dirs", "pack_article",
           "unpack_article", "pack_articles", "unpack_articles", "SPILL_PREFIX"]

SPILL_PREFIX = "wirewash-spill-"
_TOKEN = struct.Struct("<QII")  # offset, stored length, unpacked length (0: stored as is); the file's id follows
_CODEC = "lz4"  # pyarrow's LZ4 frame codec: ~8 us to pack an article, ~3 us to unpack; text shrinks by a third

# Beam's own encoding of plain values (str, None, numbers, tuples, lists): types survive the round trip, and
# nothing is unpickled (an Article's fields are all primitives).
_PRIMITIVES = beam.coders.FastPrimitivesCoder()


def pack_article(article: Article) -> bytes:
    """An article as bytes (Beam's primitive encoding of its fields)."""
    return _PRIMITIVES.encode(tuple(article))


def unpack_article(packed: bytes) -> Article:
    return Article(*_PRIMITIVES.decode(packed))


def pack_articles(articles: list) -> bytes:
    """Several articles as one byte string (Beam's primitive encoding of their fields)."""
    return _PRIMITIVES.encode([tuple(article) for article in articles])


def unpack_articles(packed: bytes) -> list:
    return [Article(*fields) for fields in _PRIMITIVES.decode(packed)]


class _Writer:
    """One process's append-only file in a spill folder."""

    def __init__(self, folder: str):
        self.file_id = uuid.uuid4().hex[:16].encode("ascii")
        self.fd = os.open(os.path.join(folder, self.file_id.decode("ascii")),
                          os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self.size = 0
        self.lock = threading.Lock()

    def append(self, data: bytes, compress: bool) -> bytes:
        """Writes `data` (LZ4-compressed with `compress`) at the end of the file; returns its token."""
        unpacked = 0
        if compress:
            unpacked, data = len(data), pyarrow.compress(data, _CODEC, asbytes=True)
        with self.lock:
            offset = self.size
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            self.size += len(data)
        return _TOKEN.pack(offset, len(data), unpacked) + self.file_id


# Per process (keyed by pid: a forked child opens its own), per folder.
_writers: dict = {}
_readers: dict = {}
_open_lock = threading.Lock()


def _writer(folder: str) -> _Writer:
    key = (os.getpid(), folder)
    writer = _writers.get(key)
    if writer is None:
        with _open_lock:
            writer = _writers.get(key)
            if writer is None:
                writer = _writers[key] = _Writer(folder)
    return writer


def _reader(folder: str, file_id: bytes) -> int:
    key = (os.getpid(), folder, file_id)
    fd = _readers.get(key)
    if fd is None:
        with _open_lock:
            fd = _readers.get(key)
            if fd is None:
                fd = _readers[key] = os.open(os.path.join(folder, file_id.decode("ascii")), os.O_RDONLY)
    return fd


class Spill:
    """Parks values at a stage boundary: on disk in `folder` (tokens in the PCollection), or inline (None)."""

    def __init__(self, folder: Optional[str] = None):
        self.folder = folder

    def __repr__(self):
        return f"Spill({self.folder!r})"

    @property
    def on_disk(self) -> bool:
        return self.folder is not None

    def park_bytes(self, data: bytes) -> bytes:
        """bytes (stored as they are: sketches do not compress) -> a token (inline: the bytes themselves)."""
        if self.folder is None:
            return data
        return _writer(self.folder).append(data, compress=False)

    def fetch_bytes(self, token: bytes) -> bytes:
        """The bytes a `park_bytes` token stands for."""
        if self.folder is None:
            return token
        return self._read(token)

    def fetch_range(self, token: bytes, start: int, stop: int) -> bytes:
        """Bytes `start:stop` of what a `park_bytes` token stands for, read alone (one `pread`): a reader that
        needs a few parts of a large parked value need not hold all of it."""
        if self.folder is None:
            offset, length, unpacked = 0, len(token), 0
        else:
            offset, length, unpacked = _TOKEN.unpack_from(token)
        if unpacked or not 0 <= start <= stop <= length:
            raise ValueError(f"cannot read bytes {start}:{stop} of a parked value of {length} bytes"
                             f"{' (compressed: read it whole)' if unpacked else ''}")
        if self.folder is None:
            return bytes(token[start:stop])
        return self._pread(token, offset + start, stop - start)

    def park_article(self, article: Article) -> Union[Article, bytes]:
        """Article -> a token for it, the article stored compressed (inline: the article itself)."""
        if self.folder is None:
            return article
        return _writer(self.folder).append(pack_article(article), compress=True)

    def fetch_article(self, token: Union[Article, bytes]) -> Article:
        """The article a `park_article` token stands for."""
        if self.folder is None:
            return token
        return unpack_article(self._read(token))

    def park_articles(self, articles: list) -> Union[list, bytes]:
        """A batch of articles -> one token for all (one compressed write; inline: the list itself)."""
        if self.folder is None:
            return list(articles)
        return _writer(self.folder).append(pack_articles(articles), compress=True)

    def fetch_articles(self, token: Union[list, bytes]) -> list:
        """The articles a `park_articles` token stands for, in their order."""
        if self.folder is None:
            return token
        return unpack_articles(self._read(token))

    def _read(self, token: bytes) -> bytes:
        offset, length, unpacked = _TOKEN.unpack_from(token)
        data = self._pread(token, offset, length)
        return pyarrow.decompress(data, unpacked, _CODEC, asbytes=True) if unpacked else data

    def _pread(self, token: bytes, offset: int, length: int) -> bytes:
        """`length` bytes at `offset` of the spill file a token names (one `pread`), or an IOError that says
        the file is shorter (its folder removed during the run)."""
        data = os.pread(_reader(self.folder, bytes(token[_TOKEN.size:])), length, offset)
        if len(data) != length:
            raise IOError(f"spill file {token[_TOKEN.size:].decode('ascii', 'replace')} in {self.folder} is "
                          f"shorter than expected (wanted {length} bytes at {offset}): was the folder removed "
                          f"during the run?")
        return data


def make_spill_dir(parent: Optional[str] = None) -> str:
    """A new, private folder for one run's spill files, named after this process (under `parent`, default
    the system's temp folder). Folders that killed runs left there (their process is gone) are removed
    first, as the lake clears a killed run's staging."""
    parent = parent or tempfile.gettempdir()
    os.makedirs(parent, exist_ok=True)
    remove_stale_spill_dirs(parent)
    return tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-", dir=parent)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_spill_dirs(parent: str) -> list[str]:
    """Removes the spill folders in `parent` whose run's process no longer exists; returns their paths."""
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        pid = entry.name[len(SPILL_PREFIX):].split("-", 1)[0]
        if entry.name.startswith(SPILL_PREFIX) and pid.isdigit() and entry.is_dir(follow_symlinks=False) \
                and not _process_exists(int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def remove_spill_dir(folder: Optional[str]) -> None:
    """Deletes a run's spill folder and forgets this process's open files in it (missing folder: nothing)."""
    if not folder:
        return
    with _open_lock:
        for key in [k for k in _writers if k[1] == folder]:
            os.close(_writers.pop(key).fd)
        for key in [k for k in _readers if k[1] == folder]:
            os.close(_readers.pop(key))
    shutil.rmtree(folder, ignore_errors=True)
