"""The library API (pipeline/api.py): docs/api.md's example runs as written, with dicts and with beam.Row
inputs, on the DirectRunner; records map to articles by the JSONL rules; every record ends in exactly one of
documents, duplicates and rejected, whatever ids and copies the records share (Hypothesis)."""
from __future__ import annotations

import os
import random
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import ARTICLE_DE, ARTICLE_EN, ARTICLE_VI, lake_rows, summary
from wirewash.pipeline.api import CleanArticles, parse_record, record_fields
from wirewash.transforms.types import Article, Rejection

REPO = Path(__file__).resolve().parents[1]
API_DOC = REPO / "docs" / "api.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
EXAMPLES = int(os.environ.get("WIREWASH_FUZZ_EXAMPLES", "0"))


def doc_blocks() -> tuple[str, str, str, str]:
    """docs/api.md's code: the dict records, the beam.Row conversion, the pipeline, and the printed lines."""
    found = BLOCK.findall(API_DOC.read_text())
    python = [body for kind, body in found if kind == "python"]
    printed = [body for kind, body in found if kind == ""]
    assert len(python) == 3 and len(printed) == 1, "docs/api.md: expected 3 python blocks and 1 output block"
    return python[0], python[1], python[2], printed[0]


@pytest.mark.parametrize("kind", ["dict", "beam.Row"])
def test_documented_example_runs(kind, tmp_path, monkeypatch, capsys):
    records, as_rows, pipeline, printed = doc_blocks()
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(records, namespace)
    if kind == "beam.Row":
        exec(as_rows, namespace)
        assert all(isinstance(r, beam.Row) for r in namespace["records"])
    exec(pipeline, namespace)  # its own pipeline, on the default (Direct) runner
    lines = [line for line in capsys.readouterr().out.splitlines() if line.split(" ")[0] in
             ("document", "duplicate", "rejected")]
    assert sorted(lines) == sorted(printed.strip().splitlines())
    lake = tmp_path / "lake"
    assert sorted((r["doc_id"], r["lang"]) for r in lake_rows(lake, "documents", "doc_id, lang")) == [
        ("a1", "en"), ("b1", "de")]
    counts = summary(lake)
    assert counts["reconciled"] and counts["records_read"] == 4


# ---------------------------------------------------------------------------------------------------------
# Records -> Article / Rejection (pure)
# ---------------------------------------------------------------------------------------------------------

def test_record_fields_reads_dicts_rows_and_named_tuples():
    class Record(NamedTuple):
        id: str
        text: str

    given = {"id": "x", "text": "t", "extra": 1}
    assert record_fields(given) == record_fields(beam.Row(id="x", text="t")) == record_fields(Record("x", "t"))
    assert record_fields(given)["url"] is None and "extra" not in record_fields(given)
    assert record_fields(7) is None and record_fields(["id", "x"]) is None
    moment = datetime(2024, 5, 1, 9, 30)
    assert record_fields({"published": moment})["published"] == "2024-05-01T09:30:00+00:00"  # naive = UTC
    assert record_fields({"published": moment.date()})["published"] == "2024-05-01"


def test_parse_record_applies_the_jsonl_rules():
    article = parse_record(record_fields({"id": " a ", "url": "https://www.site.example/x", "published": "2024-05-01",
                                          "text": "Body"}), "record:h:1")
    assert isinstance(article, Article)
    assert (article.doc_id, article.source, article.published_at, article.source_location) == (
        "a", "site.example", "2024-05-01T00:00:00+00:00", "record:h:1")
    reasons = {
        "missing_text": {"id": "a"},
        "empty_text": {"id": "a", "text": "  "},
        "wrong_type:published": {"id": "a", "text": "x", "published": 20240501},
        "wrong_type:text": {"text": b"bytes are not text"},
        "too_large": {"text": "x" * 100},
    }
    for reason, record in reasons.items():
        rejected = parse_record(record_fields(record), "record:h:1", max_record_bytes=64)
        assert isinstance(rejected, Rejection) and (rejected.stage, rejected.reason) == ("read", reason), record
    other = parse_record(record_fields(42), "record:h:1", shown="42", kind="int")
    assert (other.reason, other.excerpt) == ("not_an_object", "42")
    no_id = parse_record(record_fields({"text": "Body"}), "record:h:2")
    assert no_id.doc_id != parse_record(record_fields({"text": "Body"}), "record:h:3").doc_id  # from the location
    surrogate = parse_record(record_fields({"text": "half \ud800 pair"}), "record:h:1")
    assert surrogate.text == "half \ufffd pair"


# ---------------------------------------------------------------------------------------------------------
# Every record ends in exactly one place (Hypothesis, against counts made without the pipeline)
# ---------------------------------------------------------------------------------------------------------

TEXTS = (ARTICLE_EN, ARTICLE_VI, ARTICLE_DE)
IDS = ("a", "b", "c")
records_strategy = st.lists(st.one_of(
    # an id shares one text (so same-id records agree on content); no id: any text, so copies of a story
    st.builds(lambda i, day: {"id": i, "text": TEXTS[IDS.index(i)], "published": f"2024-05-0{day}"},
              st.sampled_from(IDS), st.integers(1, 3)),
    st.builds(lambda t, day: {"text": t, "published": f"2024-05-0{day}"}, st.sampled_from(TEXTS), st.integers(1, 3)),
    st.builds(lambda i: {"id": i, "text": "   "}, st.sampled_from(IDS)),  # rejected at read
    st.just({"title": "no body"}),
    st.just(17),
), min_size=1, max_size=14)


def distinct_stories(n: int) -> list[str]:
    """n texts that share no 5-word run (random words of a fixed vocabulary, seeded by their number)."""
    words = [f"{a}{b}" for a in ("bar", "cel", "dor", "fen", "gal", "hum", "jor", "kel", "lum", "mar")
             for b in ("an", "et", "is", "on", "us", "ar", "en", "ol", "ut", "ik")]
    return [" ".join(random.Random(i).choices(words, k=40)) + "." for i in range(n)]


# The issue this API fixed: 40 records built by a library, without ids or locations, gave 0 documents and
# 39 duplicates (dedup keyed them all by one location)
FORTY = [{"title": "Story", "text": text} for text in distinct_stories(40)]


_GOT: dict = {}  # module level: the in-process runner's workers write here (a closure would be pickled)


def _keep(rows, name):
    _GOT[name] = rows


def expected(records: list) -> Counter:
    """What must come out, counted without the pipeline."""
    valid = [r for r in records if isinstance(r, dict) and (r.get("text") or "").strip()]
    ids = Counter(r["id"] for r in valid if "id" in r)
    repeated_ids = sum(n - 1 for n in ids.values())
    documents = len({r["text"] for r in valid})
    return Counter(documents=documents, duplicates=len(valid) - repeated_ids - documents,
                   rejected=len(records) - len(valid) + repeated_ids, duplicate_id=repeated_ids)


@settings(max_examples=EXAMPLES // 50 or 5, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=not os.environ.get("WIREWASH_FUZZ_SEED"))
@given(records=records_strategy)
@example(records=FORTY + FORTY[:2])
def test_every_record_ends_in_exactly_one_place(records):
    _GOT.clear()
    with beam.Pipeline(runner=FnApiRunner()) as p:
        cleaned = p | beam.Create(records, reshuffle=False) | CleanArticles()
        for name in ("documents", "duplicates", "rejected", "records_read"):
            _ = (getattr(cleaned, name) | f"List{name}" >> beam.combiners.ToList()
                 | f"Keep{name}" >> beam.Map(_keep, name))
    got = dict(_GOT)
    locations = [x.source_location for name in ("documents", "duplicates", "rejected") for x in got[name]]
    assert len(locations) == len(set(locations)) == len(records) == got["records_read"][0]
    want = expected(records)
    assert (len(got["documents"]), len(got["duplicates"]), len(got["rejected"])) == (
        want["documents"], want["duplicates"], want["rejected"])
    assert sum(r.reason == "duplicate_id" and r.stage == "dedup" for r in got["rejected"]) == want["duplicate_id"]
    assert len({d.doc_id for d in got["documents"]}) == len(got["documents"])
