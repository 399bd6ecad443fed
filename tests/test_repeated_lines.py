"""Learned boilerplate: lines recurring across distinct stories of one source go; copies of one story and
lines of other sources do not count."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from wirewash.transforms.boilerplate import StripBoilerplate, fold_line, load_rules, match_line, strip_boilerplate
from wirewash.transforms.repeated_lines import (LABELS, SHARED, LearnFromStream, LearnRepeatedLines, StreamCounts, is_name_like, label_key,
                                                 learning_keys, line_key, line_label, shared_line_key, site_key,
                                                 story_fingerprint)
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
    # prompts shaped like a credit or a contact (KEEP_AT_EDGE) but speaking as the site or to the reader
    ("Theo dõi chúng tôi trên Facebook", True),             # "follow us": opens like the credit "Theo <source>"
    ("Follow us at www.example.com", True),
    ("Folgen Sie uns: https://example.de/social", True),
    ("Suivez-nous sur www.example.fr", True),
    ("Liên hệ với chúng tôi: 0901 234 567", True),
    ("Contact us on 020 7946 0958", True),
    # credits and contacts stay out
    ("Theo Reuters", False),
    ("Quelle: dpa", False),
    ("Nguồn: VnExpress", False),
    ("Hotline: 0800 123 456", False),
    ("According to the ministry", False),
    ("Mit Material von AFP", False),
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


# --- streaming: the counts kept in state, learned as articles arrive ------------------------------------------

QUOTE = "„Wir werden weiterkämpfen“, sagte die Ministerin."  # a quoted sentence two stories repeat: content
FOLLOW_ES = "Tócanos la campana para no perderte nada"  # furniture worded alike by several sites (no rule)


def stream_article(i: int, source: str = "site-a.example", extra: str = "") -> Article:
    """A distinct story (its own long line), the site's counter line, and `extra` lines."""
    text = f"{_story(i)} Item {i * 7919}.\n\n{SECOND[i % len(SECOND)]}\n\n{extra}{SITE_LINE.format(n=i * 3)}"
    return Article(f"st{i}-{source}", f"in:{i}", "text", url=f"https://{source}/a/{i}", source=source, text=text)


def counted(articles, counts=None) -> StreamCounts:
    counts = counts or StreamCounts(min_support=5)
    for a in articles:
        counts.add(*learning_keys(a))
    return counts


def test_stream_counts_learn_a_site_line_after_support_and_not_a_quote_or_copies():
    site_line = ("site-a.example", line_key(fold_line(SITE_LINE.format(n=1))))
    quote = ("site-a.example", line_key(fold_line(QUOTE)))
    counts = counted([stream_article(i, extra=QUOTE + "\n\n" if i < 2 else "") for i in range(4)])
    assert counts.learned_of([site_line]) == {}                       # 4 stories < 5
    counts = counted([stream_article(4)], counts)
    assert counts.learned_of([site_line, quote]) == {"site-a.example": frozenset({site_line[1]})}
    copies = counted([stream_article(0)._replace(doc_id=f"copy{k}") for k in range(9)])  # one story, 9 copies
    assert copies.learned_of([site_line]) == {}


def test_stream_counts_learn_shared_lines_across_sources_never_prose():
    follow_vi, credit = "Theo dõi chúng tôi trên Facebook", "Theo Reuters"  # a prompt shaped like a credit; a credit
    articles = [stream_article(i, source=f"site-{i % 4}.example",
                               extra=f"{FOLLOW_ES}\n\n{QUOTE}\n\n{follow_vi}\n\n{credit}\n\n") for i in range(8)]
    follow, quote = (SHARED, line_key(fold_line(FOLLOW_ES))), (SHARED, line_key(fold_line(QUOTE)))
    prompt, source = (SHARED, line_key(fold_line(follow_vi))), (SHARED, line_key(fold_line(credit)))
    assert counted(articles[:7]).learned_of([follow]) == {}           # 7 stories < 8
    assert counted(articles).learned_of([follow, quote, prompt, source]) == {SHARED: frozenset({follow[1], prompt[1]})}


def test_stream_counts_stay_bounded_forget_the_oldest_and_replay_identically():
    def own_line(i: int) -> str:  # a short line of this story only ("Notiz bcd")
        return "Notiz " + "".join(chr(97 + (i // 26 ** k) % 26) for k in range(3)) + "\n\n"

    articles = [stream_article(i, source=f"site-{i % 3}.example", extra=own_line(i)) for i in range(60)]
    counts = counted(articles, StreamCounts(min_support=5, max_keys=40))
    assert len(counts.entries) == 40 and counts.evicted > 0
    again = counted(articles, StreamCounts(min_support=5, max_keys=40))
    assert again.snapshot() == counts.snapshot()
    restored = StreamCounts.restore(counts.snapshot())
    assert restored.snapshot() == counts.snapshot() and restored.learned == counts.learned
    # The site line keeps its place (seen again and again); the first story's own lines were forgotten.
    assert ("site-0.example", line_key(fold_line(SITE_LINE.format(n=0)))) in counts.entries
    assert ("site-0.example", line_key(fold_line(own_line(0)))) not in counts.entries
    assert ("site-2.example", line_key(fold_line(own_line(59)))) in counts.entries
    tiny = counted(articles, StreamCounts(min_support=5, max_keys=1))
    assert len(tiny.entries) == 1 and not tiny.learned.get("site-1.example")
    for bad in (lambda: StreamCounts(max_keys=0), lambda: LearnFromStream(max_keys=0),
                lambda: StripBoilerplate(max_keys=0)):
        with pytest.raises(ValueError, match="max_keys"):
            bad()


def _stream_options():
    from apache_beam.options.pipeline_options import PipelineOptions
    return PipelineOptions(["--streaming", "--runner=BundleBasedDirectRunner"])


_STREAM_OUT: list = []


@pytest.mark.parametrize("cache_size, snapshot_every", [(4, 1000), (0, 3)],
                         ids=["cached-counts", "counts-rebuilt-from-state-and-snapshots"])
def test_a_stream_removes_in_later_windows_what_earlier_windows_taught(monkeypatch, cache_size, snapshot_every):
    """Window 1: ten stories of one site with its counter line, two quoting one sentence, eight of four
    sites with a follow prompt worded alike. An hour later: the site's line and the shared prompt are
    removed from new stories (of the site, and of a site never seen); the quoted sentence stays."""
    import wirewash.transforms.repeated_lines as repeated_lines
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.transforms import window

    monkeypatch.setattr(repeated_lines, "_STREAM_CACHE_SIZE", cache_size)
    monkeypatch.setattr(repeated_lines, "STREAM_SNAPSHOT_EVERY", snapshot_every)
    first = [stream_article(i, extra=QUOTE + "\n\n" if i < 2 else "") for i in range(10)]
    first += [stream_article(20 + i, source=f"site-{i % 4}.example", extra=f"{FOLLOW_ES}\n\n") for i in range(8)]
    assert match_line(RULES, FOLLOW_ES) is None and match_line(RULES, SITE_LINE.format(n=3)) is None
    later = [stream_article(40, extra=QUOTE + "\n\n"),
             stream_article(41, source="new-site.example", extra=f"{FOLLOW_ES}\n\n{QUOTE}\n\n")]
    stream = (TestStream(coder=beam.coders.PickleCoder())
              .add_elements([window.TimestampedValue(a, i) for i, a in enumerate(first)])
              .advance_watermark_to(3600)
              .add_elements([window.TimestampedValue(a, 3600 + i) for i, a in enumerate(later)])
              .advance_watermark_to_infinity())
    _STREAM_OUT.clear()
    with beam.Pipeline(options=_stream_options()) as p:
        out = p | stream | StripBoilerplate(min_support=5, edges=False)
        _ = out["articles"] | beam.Map(lambda a: _STREAM_OUT.append((a.doc_id, a.text, a.removed_by_rule)))
    done = {doc_id: (text, rules) for doc_id, text, rules in _STREAM_OUT}
    assert len(done) == len(first) + len(later)
    text, rules = done["st40-site-a.example"]
    assert "Lượt thích" not in text and QUOTE in text and rules == ("repeated_line",)
    text, rules = done["st41-new-site.example"]
    # the counter line is worded alike on the four sites too: shared furniture, for a site never seen
    assert FOLLOW_ES not in text and "Lượt thích" not in text and QUOTE in text
    assert rules == ("shared_line", "shared_line")
