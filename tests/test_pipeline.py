"""The whole batch pipeline: composite transforms on TestPipeline, and the real CLI end to end."""
from __future__ import annotations

import subprocess
import sys
import unicodedata
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from wirewash.pipeline.build import IngestArticles
from wirewash.pipeline.cli import main
from wirewash.pipeline.input_files import match_inputs
from tests.helpers import ARTICLE_DE, ARTICLE_EN, ARTICLE_VI, lake_rows, summary, write_jsonl

REPO = Path(__file__).resolve().parents[1]


def html_page(body: str, title: str = "Budget") -> str:
    paragraphs = "".join(f"<p>{p}</p>" for p in body.split("\n\n"))
    return (f"<html lang='en'><head><title>{title}</title></head><body><nav><a href='/'>Home</a></nav>"
            f"<article><h1>{title}</h1>{paragraphs}</article><footer>Contact us</footer></body></html>")


def near_copy(text: str) -> str:
    """The same story with its last sentence changed (word 5-shingle Jaccard about 0.9)."""
    return text.replace("construction would start in March.", "construction would start in April, weather permitting.")


MIXED = [
    {"id": "orig", "url": "https://a.example/x", "published": "2023-06-27T08:00:00Z", "text": ARTICLE_EN},
    {"id": "boiler", "url": "https://b.example/x", "published": "2023-06-28T08:00:00Z",
     "text": "Sign up now: Get our newsletters delivered to your inbox\n\n" + ARTICLE_EN + "\n\nRead more: Other news"},
    {"id": "nfd", "published": "2023-06-29", "text": unicodedata.normalize("NFD", ARTICLE_EN).replace(" ", "\u00a0", 3)},
    {"id": "html", "published": "2023-06-30", "html": html_page(ARTICLE_EN)},
    {"id": "near", "published": "2023-07-01", "text": near_copy(ARTICLE_EN)},
    {"id": "vi", "published": "2023-06-27", "text": ARTICLE_VI},
    {"id": "de", "text": ARTICLE_DE},
    "{broken json",
    {"id": "empty", "text": "  "},
    {"id": "typed", "published": 17, "text": ARTICLE_EN},
    {"id": "onlyboiler", "text": "Read more: something\nAdvertisement\nPHOTO: AFP"},
    {"id": "vi", "text": ARTICLE_DE + " Extra."},
]


def test_ingest_decisions(tmp_path):
    files = match_inputs([str(write_jsonl(tmp_path / "in.jsonl", MIXED))])
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | IngestArticles(files)
        assert_that(out["documents"] | "DocIds" >> beam.Map(lambda a: (a.doc_id, a.lang)),
                    equal_to([("orig", "en"), ("vi", "vi"), ("de", "de")]), label="documents")
        assert_that(out["duplicates"] | "Dups" >> beam.Map(lambda d: (d.doc_id, d.duplicate_of, d.kind)),
                    equal_to([("boiler", "orig", "exact"), ("nfd", "orig", "exact"), ("html", "orig", "exact"),
                              ("near", "orig", "near")]), label="duplicates")
        assert_that(out["rejected"] | "Reasons" >> beam.Map(lambda r: (r.source_location.split(":")[-1], r.reason)),
                    equal_to([("8", "bad_json"), ("9", "empty_text"), ("10", "wrong_type:published"),
                              ("11", "empty_after_cleaning"), ("12", "duplicate_id")]), label="rejected")
        assert_that(out["records_read"], equal_to([12]), label="read")


def test_ingest_is_order_independent(tmp_path):
    forward = write_jsonl(tmp_path / "f.jsonl", MIXED[:7])
    backward = write_jsonl(tmp_path / "b.jsonl", list(reversed(MIXED[:7])))
    results = []
    for path in (forward, backward):
        lake = tmp_path / f"lake-{path.stem}"
        assert main(["run", "--input", str(path), "--output", str(lake), "--quiet"]) == 0
        results.append((sorted(r["doc_id"] for r in lake_rows(lake, "documents")),
                        sorted((r["doc_id"], r["duplicate_of"], r["kind"]) for r in lake_rows(lake, "duplicates"))))
    assert results[0] == results[1]


@pytest.fixture(scope="module")
def seeds_lake(tmp_path_factory, seeds_dir):
    lake = tmp_path_factory.mktemp("seeds") / "lake"
    assert main(["run", "--input", str(seeds_dir), "--output", str(lake), "--quiet",
                 "--ingested_at", "2024-01-01T00:00:00Z"]) == 0
    return lake


def test_seeds_lake_rows_and_partitions(seeds_lake):
    docs = lake_rows(seeds_lake, "documents")
    assert len(docs) == 5
    assert {(d["lang"], d["date"]) for d in docs} == {("en", "unknown")}
    assert sorted(p.relative_to(seeds_lake).parent.as_posix() for p in seeds_lake.rglob("*.parquet")) == [
        "_index", "documents/lang=en/date=unknown"]  # the dedup index: one row per document, no text
    s = summary(seeds_lake)
    assert (s["records_read"], s["documents"], s["duplicates"], s["rejected"], s["reconciled"]) == (5, 5, 0, 0, True)
    assert s["boilerplate_lines_removed"]["read_more"] == 3
    # the removed lines themselves, per rule, for the report
    assert s["boilerplate_removed_lines"]["photo_credit"] == {"PHOTO: ST FILE": 1}
    assert s["boilerplate_removed_lines"]["rating"] == {"Tổng số đánh giá: 0": 1, "Xếp hạng: 5 / 5 sao": 1}


def test_seeds_golden_text(seeds_lake):
    texts = {d["source_location"]: d for d in lake_rows(seeds_lake, "documents")}
    all_text = "\n".join(d["text"] for d in texts.values())
    for furniture in ("Sign up now", "PHOTO: ST FILE", "Follow topic", "See more on", "Read more:", "Lượt xem",
                      "lượt xem", "Thời gian", "Tổng số đánh giá", "Xếp hạng", "Same category", "Oct 30, 2023"):
        assert furniture not in all_text, furniture
    for sentence in ("China has called for the sanctions to be lifted to facilitate dialogue.",
                     "He also conveyed his confidence that the event will achieve great success.",
                     "which China considers a breakaway province awaiting reunification. REUTERS",
                     "Song said."):
        assert sentence in all_text, sentence
    st = texts["001_eeeab6a3769ab77a.txt:1"]
    assert st["title"] == "China offers closer military cooperation with Vietnam"
    assert st["boilerplate_lines_removed"] == 4 and st["text"].startswith("China Defence Minister General Li")


def test_seeds_lake_answers_sql(seeds_lake, capsys):
    assert main(["query", str(seeds_lake), "SELECT lang, count(*) AS n FROM documents GROUP BY lang"]) == 0
    out = capsys.readouterr().out
    assert "en" in out and "5" in out
    assert main(["query", str(seeds_lake), "SELECT count(*) FROM duplicates", "--format", "csv"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "0"


def test_rerun_is_deterministic(seeds_lake, seeds_dir, tmp_path):
    again = tmp_path / "again"
    assert main(["run", "--input", str(seeds_dir), "--output", str(again), "--quiet",
                 "--ingested_at", "2024-01-01T00:00:00Z"]) == 0
    columns = "doc_id, text, lang, lang_prob, content_hash, title, boilerplate_lines_removed"
    assert sorted(map(str, lake_rows(again, "documents", columns))) == sorted(
        map(str, lake_rows(seeds_lake, "documents", columns)))


def test_existing_lake_needs_overwrite(seeds_lake, seeds_dir, capsys):
    assert main(["run", "--input", str(seeds_dir), "--output", str(seeds_lake)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_mixed_file_counts_reconcile(tmp_path):
    lake = tmp_path / "lake"
    assert main(["run", "--input", str(write_jsonl(tmp_path / "in.jsonl", MIXED)), "--output", str(lake),
                 "--quiet"]) == 0
    s = summary(lake)
    assert s["records_read"] == 12 == s["documents"] + s["duplicates"] + s["rejected"]
    assert (s["documents"], s["duplicates"], s["rejected"]) == (3, 4, 5)
    rejected = lake_rows(lake, "rejected")
    assert all(r["reason"] and r["source_location"].startswith("in.jsonl:") for r in rejected)
    docs = {d["doc_id"] for d in lake_rows(lake, "documents")}
    assert all(d["duplicate_of"] in docs for d in lake_rows(lake, "duplicates"))


def test_missing_input_is_one_clear_sentence(tmp_path, capsys):
    assert main(["run", "--input", str(tmp_path / "nope" / "*.jsonl"), "--output", str(tmp_path / "l")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wirewash: error: nothing matches") and "Traceback" not in err


@pytest.mark.slow
def test_cli_subprocess_is_quiet_and_fast(tmp_path):
    """The installed command on the seeds: exit 0, its lines and summary on stderr (stdout stays empty),
    nothing scary there."""
    lake = tmp_path / "lake"
    proc = subprocess.run([sys.executable, "-m", "wirewash.pipeline.cli", "run", "--input", str(REPO / "seeds"),
                           "--output", str(lake)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "5 records read -> 5 documents" in proc.stderr and proc.stdout == ""
    for noise in ("apitools", "Prism", "prism", "Traceback", "WARNING", "ERROR"):
        assert noise not in proc.stderr, proc.stderr


def test_shared_contract_checker(seeds_lake, shared_dir):
    proc = subprocess.run([sys.executable, str(shared_dir / "tools" / "check_lake.py"), str(seeds_lake)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("ok:"), proc.stdout + proc.stderr


def test_default_input_is_the_packaged_seeds(tmp_path):
    from wirewash.pipeline.build import default_input
    assert sorted(f.rel_path for f in match_inputs([default_input()])) == sorted(
        p.name for p in (REPO / "seeds").glob("*.txt"))
