"""Language detection: right codes, `und` when unsure, the same answer every time."""
from __future__ import annotations

import pytest

from transforms.language import detect_language, language_sample, load_langdetect
from tests.helpers import ARTICLE_DE, ARTICLE_EN, ARTICLE_VI

DETECT = load_langdetect()


@pytest.mark.parametrize("text, lang", [(ARTICLE_EN, "en"), (ARTICLE_VI, "vi"), (ARTICLE_DE, "de")])
def test_detects_main_language(text, lang):
    code, prob = detect_language(text, DETECT)
    assert code == lang and 0.5 <= prob <= 1.0


@pytest.mark.parametrize("text", ["", "12 34 56", "Hi!", "— • —"])
def test_too_short_is_und(text):
    assert detect_language(text, DETECT) == ("und", 0.0)


def test_deterministic_across_calls():
    mixed = "Hello and welcome. " + ARTICLE_VI[:80]
    first = detect_language(mixed, DETECT)
    assert all(detect_language(mixed, DETECT) == first for _ in range(20))


def test_codes_are_mapped_to_iso_639_1():
    assert detect_language(ARTICLE_EN, lambda s: [("zh-cn", 0.99)]) == ("zh", 0.99)
    assert detect_language(ARTICLE_EN, lambda s: [("no", 0.9)]) == ("nb", 0.9)
    assert detect_language(ARTICLE_EN, lambda s: [("en", 0.3)]) == ("und", 0.0)
    assert detect_language(ARTICLE_EN, lambda s: []) == ("und", 0.0)


def test_sample_is_bounded_and_cut_at_a_word():
    sample = language_sample("word " * 2000)
    assert len(sample) <= 2000 and sample.endswith("word")


def test_seed_languages(seeds_dir):
    for path in sorted(seeds_dir.glob("*.txt")):
        assert detect_language(path.read_text(encoding="utf-8"), DETECT)[0] == "en", path.name
