"""Spill: park records in temporary files and read them back in a later step, instead of in memory.

A step that must wait for something computed over the whole corpus (dedup's routing waits for the duplicate
decisions) would make the local runner hold every record in memory until then. `Spill` writes the records
to files in a folder (pickled batches of bounded size, one file set per bundle), passes on only the file
paths, and reads the records back after the shuffle of those paths. Memory then stays flat in the corpus
size; the folder is the run's scratch space (the lake's staging folder, removed at commit).
"""
from __future__ import annotations

import pickle
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

__all__ = ["Spill", "SPILL_BATCH_BYTES"]

NAMESPACE = "spill"
SPILL_BATCH_BYTES = 32 << 20  # a spill file is written when a bundle has buffered about this much text


def _size_of(record) -> int:
    """Rough byte size of a record: its string fields (the texts dominate)."""
    return sum(len(v) for v in record if isinstance(v, str)) + 100


def write_batch(folder: str, records: list) -> str:
    """Writes one batch of records to a new file in `folder`; returns its path."""
    path = FileSystems.join(folder, f"spill-{uuid.uuid4().hex}.pkl")
    with FileSystems.create(path) as handle:
        handle.write(pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def read_batch(path: str) -> list:
    with FileSystems.open(path) as handle:
        return pickle.loads(handle.read())


class _SpillFn(beam.DoFn):
    """Buffers records, writes a file every SPILL_BATCH_BYTES and at the end of the bundle, emits its path.
    Files of a failed bundle are never emitted, so a retried bundle cannot duplicate records."""

    def __init__(self, folder: str, batch_bytes: int):
        self.folder = folder
        self.batch_bytes = batch_bytes

    def setup(self):
        if not FileSystems.exists(self.folder):
            try:
                FileSystems.mkdirs(self.folder)
            except (IOError, OSError):  # created meanwhile by another worker
                if not FileSystems.exists(self.folder):
                    raise

    def start_bundle(self):
        self.batch, self.size = [], 0

    def process(self, record):
        self.batch.append(record)
        self.size += _size_of(record)
        if self.size >= self.batch_bytes:
            yield self._flush()

    def finish_bundle(self):
        if self.batch:
            yield WindowedValue(self._flush(), MIN_TIMESTAMP, [GlobalWindow()])

    def _flush(self) -> str:
        Metrics.counter(NAMESPACE, "records").inc(len(self.batch))
        Metrics.counter(NAMESPACE, "files").inc()
        path = write_batch(self.folder, self.batch)
        self.batch, self.size = [], 0
        return path


class Spill(beam.PTransform):
    """PCollection of records -> the same records, having gone through files in `folder` (see module doc).

    The records come back in the step after a shuffle of the file paths, spread over the workers."""

    def __init__(self, folder: str, batch_bytes: int = SPILL_BATCH_BYTES):
        super().__init__()
        self.folder = folder
        self.batch_bytes = batch_bytes

    def expand(self, records):
        return (records
                | "WriteSpill" >> beam.ParDo(_SpillFn(self.folder, self.batch_bytes))
                | "SpreadSpillFiles" >> beam.Reshuffle()
                | "ReadSpill" >> beam.FlatMap(read_batch))
