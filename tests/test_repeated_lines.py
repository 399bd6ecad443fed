"""Learned boilerplate: lines recurring across distinct stories of one source go; copies of one story and
lines of other sources do not count."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from wirewash.transforms.boilerplate import StripBoilerplate, fold_line, load_rules, match_line, strip_boilerplate
from wirewash.transforms.repeated_lines import (LABELS, SHARED, LearnRepeatedLines, is_name_like, label_key, line_key,
                                       line_label, shared_line_key, site_key, story_fingerprint)
from wirewash.transforms.types import Article

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
RULES = load_rules()


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
    assert site_key(Article("a", "l", "text", url="https://www.x.example/p", source=None)) == "x.example"
    assert site_key(Article("a", "l", "text", url="https://www.x.example/p", source="Y.example")) == "y.example"
    assert site_key(Article("a", "l", "text")) == ""


def test_line_in_enough_distinct_stories_of_one_source_is_learned():
    line_of_site = line_key(fold_line(SITE_LINE.format(n=3)))
    with TestPipeline(runner="FnApiRunner") as p:
        learned = p | beam.Create([article(i, s, n=i * 13) for i, s in enumerate(STORIES[:5])]) \
            | LearnRepeatedLines(5)
        assert_that(learned | beam.Map(lambda d: (sorted(d), line_of_site in d.get("site-a.example", ()))),
                    equal_to([(["site-a.example"], True)]))


def test_copies_of_one_story_and_other_sources_do_not_count():
    line_of_site = line_key(fold_line(SITE_LINE.format(n=3)))
    copies = [article(i, STORIES[0], doc=f"copy{i}") for i in range(8)]         # one story syndicated 8 times
    spread = [article(i, s, source=f"site-{i}.example") for i, s in enumerate(STORIES[:5])]  # 5 sources
    few = [article(i, s, source="site-b.example") for i, s in enumerate(STORIES[:4])]       # below support
    with TestPipeline(runner="FnApiRunner") as p:
        learned = p | beam.Create(copies + spread + few) | LearnRepeatedLines(5)
        assert_that(learned | beam.Map(lambda d: any(line_of_site in keys for keys in d.values())), equal_to([False]))


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


# --- learned across sources: shared lines and shared labels ------------------------------------------------

@pytest.mark.parametrize("line, label", [
    ("Baca juga: Harga emas naik lagi hari ini", "baca juga"),
    ("関連記事：韓国が戒厳令、尹大統領", "関連記事"),
    ("相关阅读：South Dakota doubles down on meth", "相关阅读"),
    ("Lire aussi : la réforme des retraites adoptée", "lire aussi"),
    ("Foto: Nguyễn Văn An", "foto"),
    ("Ảnh: Reuters", "ảnh"),
    # prose and other colons: no label
    ('He said: "We will appeal the decision."', None),       # ends like a sentence
    ("Frage: Wie geht es weiter?", None),
    ("The minister gave three reasons: cost, time and risk, and none of them convinced the committee members "
     "who had asked for a full review of the contract before the vote in parliament next week", None),  # a paragraph
    ("Um 10:30 Uhr beginnt die Sitzung", None),               # the colon is inside a time, after 2+ words... "um 10"
    ("Read more", None),
    (": nothing before", None),
])
def test_line_label_is_the_short_head_before_a_colon(line, label):
    found = line_label(fold_line(line))
    assert found == label or (label is None and found in (None, "um 10")), found


def test_a_time_is_no_label_worth_learning():
    # "um 10" is a candidate label, but it never opens lines in 8 stories of 3 sources
    assert line_label(fold_line("Um 10:30 Uhr beginnt die Sitzung")) in (None, "um 10")


@pytest.mark.parametrize("line, shared", [
    ("Quảng cáo", True),
    ("Đăng ký nhận bản tin của chúng tôi", True),
    ("Folgen Sie uns auf Instagram", True),
    ("Theo dõi chúng tôi trên Facebook", False),            # "Theo ..." opens a source credit (_EDGE_KEEP)
    ("Already a subscriber? Log in", True),
    ("Publicité", True),                                    # one capitalised word: a label as often as a name
    ("We use cookies to give you the best experience.", True),    # a sentence, but addressed to the reader
    ("Chúng tôi sử dụng cookie để nâng cao trải nghiệm của bạn.", True),
    ("Wir verwenden Cookies, damit Sie die Seite nutzen können.", True),
    ("Trang Phạm", False),                                  # a byline: every word capitalised
    ("H.Long", False),
    ("The company declined to comment.", False),            # prose: ends like a sentence
    ("Tổng hợp", False),                                    # a source credit (_EDGE_KEEP)
    ("The minister said the plan would go ahead.", False),  # prose about others
    ("Reporting by Anna Schmidt; Editing by Tom Lee", False),
    (" ".join(["word"] * 16), False),                       # too long to be shared furniture
])
def test_which_lines_may_be_learned_across_sources(line, shared):
    assert (shared_line_key(line, fold_line(line)) is not None) is shared
    assert is_name_like("Trang Phạm") and is_name_like("H.Long") and not is_name_like("Quảng cáo")


def _story(i: int) -> str:
    return f"{STORIES[i % len(STORIES)]} Report number {i} from the {['north', 'south', 'east', 'west'][i % 4]}."


AD = "Nhấn để xem ưu đãi hôm nay"


def shared_articles(n: int = 12) -> list:
    """n distinct stories over 4 sources, each with furniture worded alike across sites, a label teaser, a
    byline, and a stock sentence of prose."""
    out = []
    for i in range(n):
        text = (f"{_story(i)}\n\nNhấn để xem ưu đãi hôm nay\n\n{SECOND[i % len(SECOND)]}\n\nThe company declined to comment.\n\n"
                f"Tin vắn: headline {['alpha', 'beta', 'gamma'][i % 3]} {i} of the day\n\nTrang Phạm")
        out.append(Article(f"s{i}", f"in:{i}", "text", source=f"site-{i % 4}.example", text=text))
    return out


def test_lines_and_labels_shared_by_sources_are_learned_bylines_and_prose_are_not():
    assert match_line(RULES, AD) is None and match_line(RULES, "Tin vắn: headline alpha 3") is None  # unseen wording
    keys = {"ad": shared_line_key(AD, fold_line(AD)), "label": label_key("tin vắn"),
            "byline": line_key(fold_line("Trang Phạm")), "prose": line_key(fold_line("The company declined to comment."))}
    with TestPipeline(runner="FnApiRunner") as p:
        learned = p | beam.Create(shared_articles()) | LearnRepeatedLines()
        assert_that(learned | beam.Map(lambda d: (
            keys["ad"] in d.get(SHARED, ()), keys["label"] in d.get(LABELS, ()),
            keys["byline"] in d.get(SHARED, ()), keys["prose"] in d.get(SHARED, ()))),
            equal_to([(True, True, False, False)]))


def test_too_few_stories_or_sources_learn_nothing_shared():
    few_stories = shared_articles(7)                                      # 7 stories < 8
    one_source = [a._replace(source="site-0.example") for a in shared_articles(12)][:9]  # 2 sources? no: 1
    with TestPipeline(runner="FnApiRunner") as p:
        a = p | "few" >> beam.Create(few_stories) | "L1" >> LearnRepeatedLines()
        b = p | "one" >> beam.Create(one_source) | "L2" >> LearnRepeatedLines(min_support=20)
        assert_that(a | beam.Map(lambda d: (SHARED in d, LABELS in d)), equal_to([(False, False)]), label="a")
        assert_that(b | beam.Map(lambda d: (SHARED in d, LABELS in d)), equal_to([(False, False)]), label="b")


def test_strip_boilerplate_removes_shared_lines_and_labels_and_keeps_the_rest():
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(shared_articles()) | StripBoilerplate(edges=False)
        assert_that(out["articles"] | beam.Map(lambda a: (
            AD in a.text, "Tin vắn" in a.text, "Trang Phạm" in a.text,
            "The company declined to comment." in a.text, sorted(set(a.removed_by_rule)))),
            equal_to([(False, False, True, True, ["shared_label", "shared_line"])] * 12))


def test_strip_boilerplate_uses_shared_keys_only_for_lines_of_their_shape():
    text = "Nhấn Để Xem\n\nA paragraph of the article that stays where it is.\n\nTin vắn: A quote ends here."
    shared, labels = frozenset({line_key(fold_line("Nhấn để xem"))}), frozenset({label_key("tin vắn")})
    cleaned, removed = strip_boilerplate(text, RULES, shared=shared, labels=labels, edges=False)
    # "Nhấn Để Xem" is name-shaped (every word capitalised): kept; the label line ends like a sentence: kept
    assert (cleaned, removed) == (text, [])
    cleaned, removed = strip_boilerplate("Nhấn để xem\n\nBody line stays.\n\nTin vắn: other news", RULES,
                                         shared=shared, labels=labels, edges=False)
    assert (cleaned, removed) == ("Body line stays.", ["shared_line", "shared_label"])
