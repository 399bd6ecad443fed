"""The writer's buffers stay within MAX_BUFFERED_BYTES of real memory, whatever the rows (issue 21: workers
grew ~10 MB per 1,000 records because index rows counted 200 bytes and documents their text length only)."""
from __future__ import annotations

from wirewash.pipeline import lake_write
from wirewash.pipeline.lake import INDEX
from wirewash.pipeline.lake_write import _WriteStagedFn, held_bytes
from wirewash.transforms.lake_dedup import index_row_of


def test_index_rows_buffered_within_the_bound(tmp_path, monkeypatch):
    bound = 1 << 20
    monkeypatch.setattr(lake_write, "MAX_BUFFERED_BYTES", bound)
    fn = _WriteStagedFn(INDEX, str(tmp_path), "2026-01-01T00:00:00+00:00")
    fn.setup()
    fn.start_bundle()
    staged = []
    for i in range(3000):  # ~1.5 KB of signature and sketch a row: ~4.5 MB in all
        row = index_row_of((f"doc-{i}", f"{i:016x}", "2026-01-01", bytes(512) + i.to_bytes(4, "little"),
                            bytes(1024) + i.to_bytes(4, "little")))
        staged += list(fn.process(row))
        held = sum(held_bytes(r) for rows in fn.buffers.values() for r in rows)
        assert held <= bound + held_bytes(row), (i, held)
    assert len(staged) >= 3  # it flushed on the way, not once at the end of the bundle
    staged += [w.value for w in fn.finish_bundle()]
    assert sum(s.rows for s in staged) == 3000  # every row written, once


def test_held_bytes_counts_what_a_row_holds():
    small = {"doc_id": "a", "sketch": b""}
    big = {"doc_id": "a", "sketch": bytes(10_000)}
    assert held_bytes(big) - held_bytes(small) >= 10_000
    assert held_bytes({"text": "ệ" * 1000}) > held_bytes({"text": "e" * 1000})  # 2 bytes a character
