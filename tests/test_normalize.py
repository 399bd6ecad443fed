"""Normalization: one stored form (punctuation kept) and one folded dedup key."""
from __future__ import annotations

import unicodedata

import pytest

from wirewash.transforms.normalize import content_hash, dedup_key, normalize_text

VI = "Tổng số đánh giá: Lượt xem"


def test_nfc_composes_vietnamese():
    decomposed = unicodedata.normalize("NFD", VI)
    assert decomposed != VI
    assert normalize_text(decomposed) == VI


def test_spaces_zero_width_and_line_breaks():
    text = "A\u00a0b\u200bc  d\t e \r\nsecond line  \r\n\r\n\r\n\r\nthird\u2009line\ufeff"
    assert normalize_text(text) == "A bc d e\nsecond line\n\nthird line"


def test_mojibake_and_entities_repaired_quotes_kept():
    assert normalize_text("The minister said â€œyesâ€\x9d") == "The minister said “yes”"
    assert normalize_text("Tom &amp; Jerry") == "Tom & Jerry"
    assert normalize_text("He said “no” and 'maybe'.") == "He said “no” and 'maybe'."


@pytest.mark.parametrize("text", ["plain", "Ünïcödé  text\n\n\n\nwith   gaps", "  lead and trail  \n", "x\u200b\u00a0y"])
def test_normalize_is_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


def test_dedup_key_folds_case_punctuation_quotes_and_breaks():
    a = "He said “No!” — twice.\n\nThen   LEFT."
    b = 'he said "no" twice. Then left'
    assert dedup_key(a) == dedup_key(b) == "he said no twice then left"
    assert content_hash(dedup_key(a)) == content_hash(dedup_key(b))
    assert dedup_key(unicodedata.normalize("NFD", VI)) == dedup_key(VI)


def test_content_hash_is_pinned():
    # A canary: changing the key or the hash silently would re-key every lake.
    assert content_hash("hello world") == "df8d09e93f874900a99b8775cc15b6c7"


def test_stage_rejects_texts_with_no_letter_or_digit_left_and_keeps_the_rest():
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from wirewash.transforms.normalize import REASON_EMPTY, NormalizeArticles
    from wirewash.transforms.types import Article

    texts = {"punct": "!!! — … ---\n\u200b\u00a0", "zw": "\u200b\ufeff", "cyrillic": "Привет, мир", "ascii": "... 42 ...",
             "cjk": "「東京」", "vi": VI}
    with TestPipeline() as p:
        out = (p | beam.Create([Article(doc_id=k, source_location=k, format="text", text=v) for k, v in texts.items()])
               | NormalizeArticles())
        assert_that(out["articles"] | "Kept" >> beam.Map(lambda a: a.doc_id), equal_to(["cyrillic", "ascii", "cjk", "vi"]),
                    label="kept")
        assert_that(out["rejected"] | "Why" >> beam.Map(lambda r: (r.doc_id, r.reason)),
                    equal_to([("punct", REASON_EMPTY), ("zw", REASON_EMPTY)]), label="rejected")
