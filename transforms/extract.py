"""Extraction stage: raw HTML pages -> article text and metadata, with trafilatura.

Text records pass through untouched. An HTML record gets its main text from trafilatura (precision first,
then recall mode and trafilatura's baseline when the result is short), plus title, date, URL and site name
where the record itself lacks them; `<html lang>` is kept only as a hint for language detection. A page with
no extractable text is rejected (`no_text_extracted`); a page that makes the extractor raise is rejected
(`extraction_error`) by the exception handler, never crashing the run.
"""
from __future__ import annotations

import re
from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.types import FORMAT_HTML, Article, Rejection, excerpt

__all__ = ["ExtractText", "extract_html", "html_lang_hint"]

NAMESPACE = "extract"
STAGE = "extract"
REASON_NO_TEXT = "no_text_extracted"
REASON_ERROR = "extraction_error"
REJECTED = "rejected"
MIN_GOOD_CHARS = 250


class Extracted(NamedTuple):
    text: str
    title: Optional[str]
    date: Optional[str]
    url: Optional[str]
    sitename: Optional[str]
    lang_hint: Optional[str]


_LANG_ATTR = re.compile(rb"<html\b[^>]*?\blang\s*=\s*[\"']?([a-zA-Z]{2,3})(?:[-_][a-zA-Z0-9]+)?", re.IGNORECASE)


def html_lang_hint(html: str) -> Optional[str]:
    """The primary language subtag of `<html lang=...>`, lower-cased, or None."""
    match = _LANG_ATTR.search(html[:20000].encode("utf-8", errors="ignore"))
    return match.group(1).decode().lower() if match else None


def _require_trafilatura():
    # trafilatura fails at import without lxml_html_clean; a wrapper that swallowed that would silently
    # turn every page into "no text". Let it raise.
    import trafilatura  # noqa: F401
    return trafilatura


def extract_html(html: str, url: Optional[str] = None) -> Extracted:
    """Main text and metadata of one page. Empty text when nothing article-like is found."""
    trafilatura = _require_trafilatura()
    doc = trafilatura.bare_extraction(html, url=url, with_metadata=True, include_comments=False,
                                      include_tables=False, favor_precision=True, deduplicate=False)
    text = (doc.text if doc is not None else "") or ""
    if len(text) < MIN_GOOD_CHARS:
        recall = trafilatura.extract(html, url=url, include_comments=False, include_tables=False,
                                     favor_recall=True, deduplicate=False) or ""
        if len(recall) > len(text):
            text = recall
    if not text.strip():
        _, baseline_text, _ = trafilatura.baseline(html)
        text = baseline_text or ""
    return Extracted(
        text=text,
        title=(doc.title if doc is not None else None) or None,
        date=(doc.date if doc is not None else None) or None,
        url=(doc.url if doc is not None else None) or None,
        sitename=(doc.sitename if doc is not None else None) or None,
        lang_hint=html_lang_hint(html),
    )


def drop_title_line(text: str, titles) -> str:
    """The text without its first line when that line is the headline (trafilatura keeps the `<h1>`): the
    title is metadata, and the body must match the same story given as plain text."""
    first, _, rest = text.lstrip().partition("\n")
    folded = " ".join(first.split()).casefold()
    if folded and any(t and folded == " ".join(t.split()).casefold() for t in titles) and rest.strip():
        return rest.lstrip("\n")
    return text


def apply_extraction(article: Article, extracted: Extracted, parse_date) -> Article:
    """The article with extracted text (headline line removed), and metadata filled in only where the
    record had none."""
    return article._replace(
        text=drop_title_line(extracted.text, (article.title, extracted.title)),
        html=None,
        title=article.title or extracted.title,
        published_at=article.published_at or parse_date(extracted.date),
        url=article.url or extracted.url,
        lang_hint=extracted.lang_hint,
    )


class _ExtractFn(beam.DoFn):
    def setup(self):
        _require_trafilatura()
        from pipeline.io import parse_published, source_of
        self.parse_date = parse_published
        self.source_of = source_of

    def process(self, article: Article):
        if article.format != FORMAT_HTML or article.html is None:
            yield article
            return
        Metrics.counter(NAMESPACE, "seen").inc()
        extracted = extract_html(article.html, article.url)
        if not extracted.text.strip():
            Metrics.counter(NAMESPACE, f"dropped_{REASON_NO_TEXT}").inc()
            yield Rejection(article.doc_id, article.source_location, STAGE, REASON_NO_TEXT, excerpt(article.html))
            return
        Metrics.counter(NAMESPACE, "kept").inc()
        updated = apply_extraction(article, extracted, self.parse_date)
        yield updated._replace(source=updated.source or self.source_of(updated.url))


def _split_rejections(element):
    if isinstance(element, Rejection):
        yield beam.pvalue.TaggedOutput(REJECTED, element)
    else:
        yield element


def _to_rejection(failed) -> Rejection:
    """A dead letter of `with_exception_handling` -> Rejection; its second item is (type, repr, traceback)."""
    article, error = failed
    exc_type, exc_repr = (error[0], error[1]) if isinstance(error, tuple) else (type(error), error)
    return Rejection(article.doc_id, article.source_location, STAGE, REASON_ERROR, excerpt(article.html),
                     excerpt(f"{getattr(exc_type, '__name__', exc_type)}: {exc_repr}", 300))


class ExtractText(beam.PTransform):
    """Article -> {`articles`, `rejected`}: HTML articles get text from trafilatura; text articles pass.

    An exception inside the extractor puts that page on `rejected` (`extraction_error`), the run goes on.
    """

    def expand(self, articles):
        extracted, errors = articles | "Trafilatura" >> beam.ParDo(_ExtractFn()).with_exception_handling()
        split = extracted | "SplitRejections" >> beam.ParDo(_split_rejections).with_outputs(REJECTED, main="main")
        errors = errors | "ErrorsToRejections" >> beam.Map(_to_rejection)
        rejected = (split[REJECTED], errors) | "AllRejections" >> beam.Flatten()
        return {"articles": split["main"], "rejected": rejected}
