"""Learned boilerplate: lines recurring across distinct stories of one source go; copies of one story and
lines of other sources do not count."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.boilerplate import StripBoilerplate, fold_line
from transforms.repeated_lines import LearnRepeatedLines, line_key, source_of, story_fingerprint
from transforms.types import Article

STORIES = [
    "The harbour authority opened a second container terminal on the northern pier this week, officials said.",
    "Farmers in the valley reported the earliest cherry harvest in forty years after an unusually warm spring.",
    "The regional court postponed the corruption trial of the former mayor until the autumn session.",
    "A new night train will link the two capitals from December, the national railway company announced.",
    "Researchers at the university found microplastics in every sample taken from the mountain lake.",
    "The football club confirmed that its long-serving captain will retire at the end of the season.",
]
SECOND = ["Witnesses said the work went on late into the night.", "Prices are expected to fall next month.",
          "The decision can still be appealed.", "Tickets go on sale on Friday morning.",
          "The samples will be analysed again in spring.", "Fans gathered outside the stadium to say goodbye."]
SITE_LINE = "Lượt thích {n} · Bấm để theo dõi kênh"


def article(i: int, story: str, source: str = "site-a.example", n: int = 7, doc: str = "") -> Article:
    text = f"{story}\n\n{SECOND[i % len(SECOND)]}\n\n" \
           + SITE_LINE.format(n=n)
    return Article(doc or f"d{i}", f"in:{i}", "text", url=f"https://www.{source}/a/{i}", source=source, text=text)


def test_line_key_ignores_numbers_and_skips_long_lines():
    assert line_key(fold_line("58 lượt xem")) == line_key(fold_line("1,204 lượt xem"))
    assert line_key(fold_line("Share")) != line_key(fold_line("Print"))
    assert line_key(fold_line(" ".join(["word"] * 25))) is None
    assert line_key("") is None and line_key("—") is None


def test_story_fingerprint_is_shared_by_copies():
    lines = [fold_line(s) for s in STORIES[:3]]
    assert story_fingerprint(lines) == story_fingerprint(lines + [fold_line("Read more: something else")])
    assert story_fingerprint(lines[:1]) != story_fingerprint(lines[1:2])


def test_source_is_the_field_else_the_host_without_www():
    assert source_of(Article("a", "l", "text", url="https://www.x.example/p", source=None)) == "x.example"
    assert source_of(Article("a", "l", "text", url="https://www.x.example/p", source="Y.example")) == "y.example"
    assert source_of(Article("a", "l", "text")) == ""


def test_line_in_enough_distinct_stories_of_one_source_is_learned():
    site_key = line_key(fold_line(SITE_LINE.format(n=3)))
    with TestPipeline(runner="FnApiRunner") as p:
        learned = p | beam.Create([article(i, s, n=i * 13) for i, s in enumerate(STORIES[:5])]) \
            | LearnRepeatedLines(5)
        assert_that(learned | beam.Map(lambda d: (sorted(d), site_key in d.get("site-a.example", ()))),
                    equal_to([(["site-a.example"], True)]))


def test_copies_of_one_story_and_other_sources_do_not_count():
    site_key = line_key(fold_line(SITE_LINE.format(n=3)))
    copies = [article(i, STORIES[0], doc=f"copy{i}") for i in range(8)]         # one story syndicated 8 times
    spread = [article(i, s, source=f"site-{i}.example") for i, s in enumerate(STORIES[:5])]  # 5 sources
    few = [article(i, s, source="site-b.example") for i, s in enumerate(STORIES[:4])]       # below support
    with TestPipeline(runner="FnApiRunner") as p:
        learned = p | beam.Create(copies + spread + few) | LearnRepeatedLines(5)
        assert_that(learned | beam.Map(lambda d: any(site_key in keys for keys in d.values())), equal_to([False]))


def test_strip_boilerplate_removes_learned_lines_under_their_own_rule():
    articles = [article(i, s, n=i) for i, s in enumerate(STORIES)]
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(articles) | StripBoilerplate(min_support=5)
        assert_that(out["articles"] | beam.Map(lambda a: ("Lượt thích" in a.text, a.removed_by_rule)),
                    equal_to([(False, ("repeated_line",))] * len(STORIES)))


def test_learning_can_be_turned_off():
    articles = [article(i, s, n=i) for i, s in enumerate(STORIES)]
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(articles) | StripBoilerplate(learn=False, edges=False)
        assert_that(out["articles"] | beam.Map(lambda a: "Lượt thích" in a.text), equal_to([True] * len(STORIES)))
