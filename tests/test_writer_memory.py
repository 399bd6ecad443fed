"""The writer's buffers stay within MAX_BUFFERED_BYTES of real memory, whatever the rows, and writing a file
costs a row group, not copies of the whole buffer (issue 21: workers grew ~10 MB per 1,000 records because
index rows counted 200 bytes and documents their text length only; then each flush held the rows as Python
objects, an Arrow table of them, a sorted copy and the whole Parquet file in memory at once)."""
from __future__ import annotations

import io
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirewash.pipeline import lake, lake_write
from wirewash.pipeline.lake import INDEX, REJECTED, sort_order, sort_rows, write_parquet, write_sorted_runs
from wirewash.pipeline.lake_write import BATCH_ROWS, _WriteStagedFn, held_bytes
from wirewash.transforms.lake_dedup import INDEX_SCHEMA, index_row_of


def _index_rows(n: int, seed: int = 7):
    """Index rows of real proportions: a 512-byte signature, a sketch of 0.8-7 KB, ids in no order."""
    rng = random.Random(seed)
    for _ in range(n):
        yield index_row_of((f"{rng.getrandbits(64):016x}", f"{rng.getrandbits(128):032x}", "2026-01-01",
                            rng.randbytes(512), rng.randbytes(8 * rng.randint(100, 900))))


_POOLS = []  # kept alive to the end: a buffer the pool allocated may outlive the test


@pytest.fixture
def arrow_pool():
    """A fresh default Arrow pool for the test: its `max_memory()` is the peak of what the test allocated."""
    previous = pa.default_memory_pool()
    pool = pa.proxy_memory_pool(previous)
    _POOLS.append(pool)
    pa.set_memory_pool(pool)
    yield pool
    pa.set_memory_pool(previous)


def test_index_rows_buffered_within_the_bound(tmp_path, monkeypatch, arrow_pool):
    bound = 1 << 20
    monkeypatch.setattr(lake_write, "MAX_BUFFERED_BYTES", bound)
    fn = _WriteStagedFn(INDEX, str(tmp_path), "2026-01-01T00:00:00+00:00")
    fn.setup()
    fn.start_bundle()
    staged = []
    for i, row in enumerate(_index_rows(1500)):  # ~4 KB of signature and sketch a row: ~6 MB in all
        staged += list(fn.process(row))
        assert fn.held <= bound + held_bytes(row), (i, fn.held)
        # the count is real memory: what the packed batches hold in Arrow, plus the rows not packed yet
        assert pa.total_allocated_bytes() <= fn.held + (64 << 10), (i, pa.total_allocated_bytes(), fn.held)
        assert all(len(rows.pending) < BATCH_ROWS for rows in fn.buffers.values())  # few Python rows wait
    assert len(staged) >= 3  # it flushed on the way, not once at the end of the bundle
    staged += [w.value for w in fn.finish_bundle()]
    assert sum(s.rows for s in staged) == 1500  # every row written, once
    assert sum(pq.read_metadata(s.path).num_rows for s in staged) == 1500
    assert all(s.size == (tmp_path / INDEX / s.path.rsplit("/", 1)[1]).stat().st_size for s in staged)


def test_a_flush_holds_the_buffer_and_a_row_group_not_copies_of_it(tmp_path, monkeypatch, arrow_pool):
    """Flushing B bytes of rows allocates about a row group and a merge round more: the sorted batches are
    merged, never concatenated, copied in order and written to memory whole (3.2 B before; 1.0 B when the
    batches were taken together for each row group)."""
    monkeypatch.setattr(lake, "ROW_GROUP_ROWS", 64)  # ~0.25 MB a row group, against a ~10 MB buffer
    monkeypatch.setattr(lake, "MERGE_ROUND_BYTES", 256 << 10)
    fn = _WriteStagedFn(INDEX, str(tmp_path), "2026-01-01T00:00:00+00:00")
    fn.setup()
    fn.start_bundle()
    rows = list(_index_rows(2500))
    for row in rows:
        assert not list(fn.process(row))  # under every bound: one file, written at the bundle's end
    buffered = fn.held
    before = pa.total_allocated_bytes()
    arrow_pool.release_unused()
    peak_before = arrow_pool.max_memory()
    assert peak_before <= buffered + (1 << 20)  # while buffering: no more than the rows themselves
    staged = [w.value for w in fn.finish_bundle()]
    extra = arrow_pool.max_memory() - before
    assert extra <= 0.3 * buffered, (extra, buffered)
    written = pq.read_table(staged[0].path)
    assert written.equals(sort_rows(INDEX, pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)))
    assert pq.read_metadata(staged[0].path).num_row_groups == -(-2500 // 64)


def test_write_parquet_streams_sorted_row_groups(arrow_pool, monkeypatch):
    """One contiguous table of B bytes is written with about one row group more, into the handle as it goes."""
    monkeypatch.setattr(lake, "ROW_GROUP_ROWS", 100)
    data = pa.Table.from_pylist(list(_index_rows(2000, seed=3)), schema=INDEX_SCHEMA)
    before = pa.total_allocated_bytes()
    out = io.BytesIO()
    size = write_parquet(INDEX, data, out)
    assert arrow_pool.max_memory() - before <= 0.25 * data.nbytes, (arrow_pool.max_memory() - before, data.nbytes)
    assert size == len(out.getvalue())
    back = pq.read_table(io.BytesIO(out.getvalue()))
    assert back.equals(sort_rows(INDEX, data))
    assert back.column("doc_id").to_pylist() == sorted(data.column("doc_id").to_pylist())


def test_held_bytes_counts_what_a_row_holds():
    small = {"doc_id": "a", "sketch": b""}
    big = {"doc_id": "a", "sketch": bytes(10_000)}
    assert held_bytes(big) - held_bytes(small) >= 10_000
    assert held_bytes({"text": "ệ" * 1000}) > held_bytes({"text": "e" * 1000})  # 2 bytes a character


_REJECTED_ROWS = st.lists(st.fixed_dictionaries({
    "doc_id": st.one_of(st.none(), st.sampled_from("abc")), "source_location": st.one_of(st.none(), st.sampled_from("xyz")),
    "stage": st.sampled_from(["read", "dedup", None]), "reason": st.sampled_from(["a", "b", "é"]),
    "error": st.text(max_size=3)}), max_size=40)


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(_REJECTED_ROWS, min_size=1, max_size=6), round_bytes=st.integers(1, 4000),
       group_rows=st.integers(1, 9))
def test_merged_runs_equal_one_sort_of_the_rows(parts, round_bytes, group_rows):
    """Runs sorted one by one (ties and nulls in every sort key), merged as they stream, give the same rows,
    order and row groups as one stable sort of all the rows (what `write_parquet` writes)."""
    schema = lake.SCHEMAS[REJECTED]
    tables = [pa.Table.from_pylist([dict(row, ingested_at=None) for row in rows], schema=schema) for rows in parts]
    runs = [t.take(sort_order(REJECTED, t)) for t in tables if t.num_rows]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lake, "ROW_GROUP_ROWS", group_rows)
        patch.setattr(lake, "MERGE_ROUND_BYTES", round_bytes)
        merged, expected = io.BytesIO(), io.BytesIO()
        size = write_sorted_runs(REJECTED, runs, schema, merged)
        write_parquet(REJECTED, pa.concat_tables(tables), expected)
    assert size == len(merged.getvalue())
    got, want = (pq.ParquetFile(io.BytesIO(b.getvalue())) for b in (merged, expected))
    assert got.read().equals(want.read())
    assert [got.metadata.row_group(i).num_rows for i in range(got.num_row_groups)] == \
        [want.metadata.row_group(i).num_rows for i in range(want.num_row_groups)]


def _writers(staging: str, budget, n: int) -> list:
    """`n` writers of one process sharing `budget` (index writers: the rule does not look at the table)."""
    writers = []
    for _ in range(n):
        fn = _WriteStagedFn(INDEX, staging, "2026-01-01T00:00:00+00:00")
        fn.setup()
        fn.budget = budget
        fn.start_bundle()
        writers.append(fn)
    return writers


def _staged_rows(staged) -> int:
    return sum(pq.read_metadata(s.path).num_rows for s in staged)


def test_the_writers_of_a_process_share_one_budget():
    first, second = (_WriteStagedFn(table, "/nowhere", "2026-01-01T00:00:00+00:00") for table in (INDEX, REJECTED))
    first.setup()
    second.setup()
    assert first.budget is second.budget is lake_write.BUDGET


@settings(max_examples=30, deadline=None)
@given(feed=st.lists(st.tuples(st.integers(0, 3), st.integers(10, 600)), min_size=1, max_size=150),
       limit_kb=st.integers(8, 96), batch_rows=st.integers(1, 8))
def test_four_writers_of_a_process_hold_at_most_the_budget_plus_one_row(feed, limit_kb, batch_rows):
    """Rows to four writers of one process, in any interleaving and size: after each row the writers hold less
    than the budget together, and at most the budget plus that row while it is added (each writer had its own
    budget before: four times it in all); every row is written once."""
    import tempfile

    limit = limit_kb << 10
    budget = lake_write.WriterBudget(limit)
    rng = random.Random(len(feed))
    with tempfile.TemporaryDirectory() as staging, pytest.MonkeyPatch.context() as patch:
        patch.setattr(lake_write, "BATCH_ROWS", batch_rows)
        writers, staged = _writers(staging, budget, 4), []
        for i, (which, words) in enumerate(feed):
            row = index_row_of((f"{i:08d}", f"{rng.getrandbits(128):032x}", "2026-01-01", rng.randbytes(512),
                                rng.randbytes(8 * words)))
            budget.take_peak()
            staged += list(writers[which].process(row))
            assert budget.take_peak() <= limit + held_bytes(row), i
            assert budget.held < limit, (i, budget.held)
            assert budget.held == sum(w.held for w in writers)
        for fn in writers:
            staged += [w.value for w in fn.finish_bundle()]
        assert budget.held == 0
        assert _staged_rows(staged) == len(feed)


def _run_in_threads(work, threads: int) -> None:
    """`work` in `threads` threads at once, switching between them as often as possible (inside the budget's
    updates too); returns when all are done."""
    import sys
    import threading

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        running = [threading.Thread(target=work) for _ in range(threads)]
        for t in running:
            t.start()
        for t in running:
            t.join()
    finally:
        sys.setswitchinterval(interval)


def test_writers_in_several_threads_keep_the_budget_and_every_row(tmp_path):
    """The SDK harness can run bundles in several threads: writers adding and flushing at once, new ones
    joining each bundle, keep the count exact (nothing held once all are done), the total within the budget
    plus a row per thread, and every row written once."""

    limit, threads, bundles, rows_each = 256 << 10, 4, 4, 60
    budget = lake_write.WriterBudget(limit)
    rows = list(_index_rows(rows_each))
    largest = max(held_bytes(row) for row in rows)
    staged, errors = [], []

    def work():
        try:
            for _ in range(bundles):
                writers = _writers(str(tmp_path), budget, 3)
                for i, row in enumerate(rows):
                    staged.extend(writers[i % 3].process(row))
                for fn in writers:
                    staged.extend(w.value for w in fn.finish_bundle())
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    _run_in_threads(work, threads)
    assert not errors, errors
    assert budget.held == 0
    assert budget.take_peak() <= limit + threads * largest
    assert _staged_rows(staged) == threads * bundles * rows_each


def test_the_budget_counts_exactly_with_writers_coming_and_going_in_threads():
    """Many threads adding, releasing and forgetting writers at once (each bundle a new writer): no update lost,
    no error, nothing left counted."""

    budget, errors = lake_write.WriterBudget(1 << 20), []

    class Writer:  # what the budget keys on: any object (weakly referenced)
        pass

    def work():
        try:
            kept = Writer()
            for i in range(3000):
                writer = Writer()
                budget.add(writer, 100)
                budget.add(kept, 1)
                budget.over()
                if i % 2:
                    budget.add(writer, -100)
                else:
                    budget.forget(writer)
            budget.forget(kept)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    _run_in_threads(work, 8)
    assert not errors, errors[:1]
    assert budget.held == 0


def test_the_worker_memory_line_shows_what_the_writers_hold():
    """`bench/memory.py --worker_heap`: each worker's line says what its writers buffer now / at most since."""
    import re

    from wirewash.pipeline.worker import _memory_line

    class Writer:
        pass

    writer = Writer()
    lake_write.BUDGET.add(writer, 3 << 20)
    try:
        now, peak = map(int, re.search(r"writers=(\d+)/(\d+)MB", _memory_line()).groups())
        assert now >= 3 and peak >= 3
    finally:
        lake_write.BUDGET.forget(writer)


def test_the_index_files_are_kept_as_staged_and_the_others_merged(tmp_path):
    """The merge step joins a partition's small staged files into one, but leaves the dedup index's as they
    are: merging them held a group of incompressible sketches and a sorted copy at once (the workers' peak)."""
    from wirewash.pipeline.lake_write import _MergeStagedFn, _write_staged_table

    rows = {INDEX: list(_index_rows(40)),
            REJECTED: [{"doc_id": f"d{i}", "source_location": f"f:{i}", "stage": "read", "reason": "bad",
                        "excerpt": "", "error": "", "ingested_at": None} for i in range(40)]}
    for table, table_rows in rows.items():
        (tmp_path / table).mkdir()
        schema = INDEX_SCHEMA if table == INDEX else lake.SCHEMAS[REJECTED]
        staged = [_write_staged_table(table, "", str(tmp_path), pa.Table.from_pylist(part, schema=schema))
                  for part in (table_rows[:25], table_rows[25:])]
        out = list(_MergeStagedFn(str(tmp_path)).process((f"{table}/", {"files": [tuple(s) for s in staged]})))
        assert sum(s.rows for s in out) == 40
        assert sorted(out) == sorted(staged) if table == INDEX else len(out) == 1
