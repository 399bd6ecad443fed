"""Spill: articles wait at stage boundaries as small tokens, their bodies in the run's spill folder."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from wirewash.pipeline.build import IngestArticles
from wirewash.pipeline.cli import main
from wirewash.pipeline.input_files import match_inputs
from wirewash.transforms.spill import SPILL_PREFIX, Spill, make_spill_dir, remove_spill_dir
from tests.helpers import ARTICLE_DE, ARTICLE_EN, lake_rows, write_jsonl
from tests.test_pipeline import MIXED
from wirewash.transforms.types import Article

ARTICLE = Article("d1", "in.jsonl:7", "text", url="https://x.example/a", title="Titel é", text="Körper " * 2000,
                  lang_prob=0.123456789, boilerplate_lines_removed=3, removed_by_rule=(("footer", 2), ("share", 1)),
                  other_langs=("de", "fr"), published_at=None)


@pytest.fixture
def spill(tmp_path):
    folder = make_spill_dir(str(tmp_path))
    yield Spill(folder)
    remove_spill_dir(folder)


def test_parked_articles_are_small_tokens_and_come_back_equal(spill):
    token = spill.park_article(ARTICLE)
    assert isinstance(token, bytes) and len(token) == 32  # whatever the text's length
    back = spill.fetch_article(token)
    assert back == ARTICLE and type(back.other_langs) is tuple and type(back.removed_by_rule[0]) is tuple
    stored = sum(f.stat().st_size for f in os.scandir(spill.folder))
    assert 0 < stored < len(ARTICLE.text) // 10  # compressed (the text repeats)


def test_parked_bytes_come_back_as_they_were(spill):
    tokens = [spill.park_bytes(bytes([i]) * i) for i in range(256)]
    assert [spill.fetch_bytes(t) for t in reversed(tokens)] == [bytes([i]) * i for i in reversed(range(256))]


def test_a_range_of_parked_bytes_is_read_alone(spill):
    data = bytes(range(256)) * 3
    tokens = [spill.park_bytes(b"before"), spill.park_bytes(data)]
    for start, stop in [(0, 0), (0, 1), (5, 300), (700, 768), (0, 768)]:
        assert spill.fetch_range(tokens[1], start, stop) == data[start:stop]
    for start, stop in [(-1, 3), (3, 2), (0, 769)]:
        with pytest.raises(ValueError):
            spill.fetch_range(tokens[1], start, stop)
    if spill.on_disk:  # a compressed article is read whole
        with pytest.raises(ValueError, match="compressed"):
            spill.fetch_range(spill.park_article(ARTICLE), 0, 1)


def test_a_parked_batch_is_one_token_and_comes_back_equal_in_order(spill):
    batch = [ARTICLE._replace(doc_id=f"d{i}", text=ARTICLE.text[:i * 7]) for i in range(50)]
    token = spill.park_articles(batch)
    assert isinstance(token, bytes) and len(token) == 32
    back = spill.fetch_articles(token)
    assert back == batch and all(type(a) is Article and type(a.removed_by_rule[0]) is tuple for a in back)
    assert spill.fetch_articles(spill.park_articles([])) == []
    assert Spill().fetch_articles(Spill().park_articles(batch)) == batch  # inline: the list itself


def test_inline_spill_carries_the_value_itself():
    inline = Spill()
    assert not inline.on_disk
    assert inline.park_article(ARTICLE) is ARTICLE and inline.fetch_article(ARTICLE) is ARTICLE
    assert inline.park_bytes(b"abc") == b"abc" and inline.fetch_bytes(b"abc") == b"abc"


def _park_in_child(folder: str, queue) -> None:
    queue.put(Spill(folder).park_article(ARTICLE._replace(doc_id=f"child-{os.getpid()}")))


def test_another_process_parks_in_its_own_file_and_this_one_reads_it(spill):
    mine = spill.park_article(ARTICLE)  # opens this process's file before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_park_in_child, args=(spill.folder, queue))
    child.start()
    token = queue.get(timeout=30)
    child.join(30)
    assert spill.fetch_article(token).doc_id == f"child-{child.pid}"
    assert spill.fetch_article(mine) == ARTICLE
    assert len(os.listdir(spill.folder)) == 2  # the child did not append to the parent's file


def test_removing_the_folder_forgets_its_files(tmp_path):
    folder = make_spill_dir(str(tmp_path))
    assert os.path.basename(folder).startswith(SPILL_PREFIX)
    token = Spill(folder).park_article(ARTICLE)
    remove_spill_dir(folder)
    assert not os.path.exists(folder)
    with pytest.raises(OSError):
        Spill(folder).fetch_article(token)
    remove_spill_dir(folder)  # twice: nothing


def _rows(out, label: str):
    """Every decision of an IngestArticles output, as one sorted list."""
    return ((out["documents"] | f"Docs{label}" >> beam.Map(lambda a: ("doc", a.doc_id, a.lang, a.text, a.content_hash)),
             out["duplicates"] | f"Dups{label}" >> beam.Map(lambda d: ("dup",) + tuple(d)),
             out["rejected"] | f"Rej{label}" >> beam.Map(lambda r: ("rej", r.source_location, r.reason)))
            | f"All{label}" >> beam.Flatten() | f"List{label}" >> beam.combiners.ToList()
            | f"Sort{label}" >> beam.Map(sorted))


def test_ingest_decides_the_same_with_articles_spilled(tmp_path, spill):
    files = match_inputs([str(write_jsonl(tmp_path / "in.jsonl", MIXED))])
    with TestPipeline(runner="FnApiRunner") as p:
        inline = _rows(p | "Inline" >> IngestArticles(files, spill=Spill()), "Inline")
        disk = _rows(p | "Disk" >> IngestArticles(files, spill=spill), "Disk")
        same = disk | beam.Map(lambda rows, other: (len(rows), rows == other), beam.pvalue.AsSingleton(inline))
        assert_that(same, equal_to([(len(MIXED), True)]))
    assert sum(f.stat().st_size for f in os.scandir(spill.folder)) > len(ARTICLE_EN)  # the articles went to disk


def test_a_local_run_spills_under_spill_dir_and_removes_its_folder(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": ARTICLE_EN}, {"id": "b", "text": ARTICLE_DE},
                                                  {"id": "c", "text": ARTICLE_EN}])
    parent = tmp_path / "spill"
    lake = tmp_path / "lake"
    assert main(["run", "--input", str(source), "--output", str(lake), "--quiet", "--spill_dir", str(parent)]) == 0
    assert sorted(r["doc_id"] for r in lake_rows(lake, "documents")) == ["a", "b"]
    assert parent.is_dir() and list(parent.iterdir()) == []  # the run's private folder is gone


def test_a_new_folder_clears_those_of_runs_that_are_gone(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{SPILL_PREFIX}{int(gone.stdout)}-abc"
    live = tmp_path / f"{SPILL_PREFIX}{os.getpid()}-def"  # a run of this very process: still running
    other = tmp_path / "unrelated-999999999-x"
    for folder in (stale, live, other):
        folder.mkdir()
        (folder / "0123456789abcdef").write_bytes(b"x" * 10)
    new = make_spill_dir(str(tmp_path))
    assert not stale.exists() and live.exists() and other.exists() and os.path.isdir(new)
    remove_spill_dir(new)
