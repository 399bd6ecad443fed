"""HTML extraction with the real trafilatura."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.extract import ExtractText, apply_extraction, extract_html, html_lang_hint
from transforms.types import Article
from tests.helpers import ARTICLE_EN

PAGE = f"""<!doctype html><html lang="en-GB"><head><title>Council passes budget | Example News</title>
<meta property="og:title" content="Council passes budget"><meta name="date" content="2023-06-27"></head>
<body><nav><a href="/">Home</a> <a href="/world">World</a> <a href="/sport">Sport</a></nav>
<div class="cookie">We use cookies. Accept all</div>
<article><h1>Council passes budget</h1>
{''.join(f'<p>{p}</p>' for p in ARTICLE_EN.split(chr(10) + chr(10)))}
</article><aside><h3>Most read</h3><ul><li><a href="/a">Other story one</a></li></ul></aside>
<footer>© 2023 Example News. All rights reserved.</footer></body></html>"""


def test_extracts_article_text_and_metadata():
    out = extract_html(PAGE, "https://example.com/budget")
    assert "twelve new bus lines" in out.text and "mayor thanked residents" in out.text
    assert "Most read" not in out.text and "Home" not in out.text.split()
    assert out.title == "Council passes budget"
    assert out.lang_hint == "en"


def test_record_metadata_wins_over_page_metadata():
    art = Article("x", "f:1", "html", title="Record title", html=PAGE)
    out = apply_extraction(art, extract_html(PAGE), lambda d: "2023-06-27T00:00:00+00:00" if d else None)
    assert out.title == "Record title" and out.html is None and out.published_at == "2023-06-27T00:00:00+00:00"


def test_headline_line_is_dropped_from_body():
    from transforms.extract import drop_title_line
    assert drop_title_line("Budget\nBody.", ("Budget",)) == "Body."
    assert drop_title_line("Budget  passes\nBody.", (None, "budget passes")) == "Body."
    assert drop_title_line("Budget", ("Budget",)) == "Budget"
    assert drop_title_line("Other\nBody.", ("Budget",)) == "Other\nBody."


def test_lang_hint():
    assert html_lang_hint('<html class="x" lang="vi-VN">') == "vi"
    assert html_lang_hint("<html>") is None


def test_pipeline_rejects_empty_and_hostile_pages():
    pages = [Article("ok", "f:1", "html", html=PAGE),
             Article("empty", "f:2", "html", html="<html><head><script>var a=1;</script><style>p{}</style></head></html>"),
             Article("nested", "f:3", "html", html="<div>" * 5000 + "x"),
             Article("text", "f:4", "text", text=ARTICLE_EN)]
    with TestPipeline() as p:
        out = p | beam.Create(pages) | ExtractText()
        assert_that(out["articles"] | "Ids" >> beam.Map(lambda a: a.doc_id), equal_to(["ok", "text"]), label="kept")
        assert_that(out["rejected"] | "Reasons" >> beam.Map(lambda r: (r.doc_id, r.reason)),
                    equal_to([("empty", "no_text_extracted"), ("nested", "no_text_extracted")]), label="rejected")
