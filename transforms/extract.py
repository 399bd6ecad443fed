"""Extraction stage: raw HTML pages -> article text and metadata, with trafilatura.

Text records pass through untouched. An HTML record gets its main text from trafilatura (precision first,
balanced mode when precision cut the article short, trafilatura's baseline when both found nothing), plus
title, date, URL and site name where the record itself lacks them; the headline line is dropped from the body
so a page and the same story given as text hash equal. `<html lang>` is kept only as a hint for language
detection. A page with no extractable text is rejected (`no_text_extracted`); a page that makes the extractor
raise, hang or crash is rejected (`extraction_error`), never stopping the run.
"""
from __future__ import annotations

import re
from typing import Callable, NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.types import FORMAT_HTML, Article, Rejection, excerpt

__all__ = ["ExtractText", "extract_html", "choose_text", "html_lang_hint"]

NAMESPACE = "extract"
STAGE = "extract"
REASON_NO_TEXT = "no_text_extracted"
REASON_ERROR = "extraction_error"
REJECTED = "rejected"
RECHECK_WORDS = 300  # a precision result shorter than a short news story gets a second look (balanced mode)
RECALL_FACTOR = 2  # ...which wins only with at least twice the words: precision cut the article
FALLBACK_NONE, FALLBACK_BALANCED, FALLBACK_BASELINE = "precision", "balanced", "baseline"
TIMEOUT_SECONDS = 60.0  # per page; a real page takes ~20 ms, the largest (1.5 MB) about a second


class Extracted(NamedTuple):
    text: str
    title: Optional[str]
    date: Optional[str]
    url: Optional[str]
    sitename: Optional[str]
    lang_hint: Optional[str]
    fallback: str = FALLBACK_NONE  # which extraction produced `text` (counted per page)


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


def _words(text: Optional[str]) -> int:
    return len(text.split()) if text else 0


def choose_text(precise: str, balanced: Callable[[], str], baseline: Callable[[], str]) -> tuple[str, str]:
    """(text, which extraction it came from): the fallback rules, with the costlier extractions run lazily.

    Precision mode keeps related-story teasers, share bars and comment counts out, but sometimes cuts a real
    article to a fragment: a short result (< `RECHECK_WORDS`) gets the balanced mode too, which wins with at
    least `RECALL_FACTOR` times the words. trafilatura's baseline (JSON-LD article body, `<article>`, all `<p>`)
    is the last resort when both found nothing.
    """
    text, source = precise or "", FALLBACK_NONE
    if _words(text) < RECHECK_WORDS:
        other = balanced() or ""
        if _words(other) >= RECALL_FACTOR * max(_words(text), 1):
            text, source = other, FALLBACK_BALANCED
    if not text.strip():
        other = baseline() or ""
        if other.strip():
            text, source = other, FALLBACK_BASELINE
    return text, source


def extract_html(html: str, url: Optional[str] = None) -> Extracted:
    """Main text (see `choose_text`) and metadata of one page. Empty text when nothing article-like is found."""
    trafilatura = _require_trafilatura()
    options = dict(url=url, include_comments=False, include_tables=True, deduplicate=False)
    doc = trafilatura.bare_extraction(html, with_metadata=True, favor_precision=True, **options)

    def balanced():
        again = trafilatura.bare_extraction(html, with_metadata=False, **options)
        return again.text if again is not None else ""

    text, fallback = choose_text(doc.text if doc is not None else "", balanced,
                                 lambda: trafilatura.baseline(html)[1])
    return Extracted(
        text=text,
        title=(doc.title if doc is not None else None) or None,
        date=(doc.date if doc is not None else None) or None,
        url=(doc.url if doc is not None else None) or None,
        sitename=(doc.sitename if doc is not None else None) or None,
        lang_hint=html_lang_hint(html),
        fallback=fallback,
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
    """HTML Article -> (Article or Rejection, how the text was found). May run in a subprocess, where Beam
    metrics are not collected: the counting happens in the main process (`_count_and_split`)."""

    def __init__(self, extract=None):
        self.extract = extract  # None: `extract_html`; tests pass a misbehaving one

    def setup(self):
        _require_trafilatura()
        from pipeline.io import parse_published, source_of
        self.parse_date = parse_published
        self.source_of = source_of

    def process(self, article: Article):
        extracted = (self.extract or extract_html)(article.html, article.url)
        if not extracted.text.strip():
            yield Rejection(article.doc_id, article.source_location, STAGE, REASON_NO_TEXT,
                            excerpt(article.html)), extracted.fallback
            return
        updated = apply_extraction(article, extracted, self.parse_date)
        yield updated._replace(source=updated.source or self.source_of(updated.url)), extracted.fallback


def _is_page(article: Article, _partitions: int = 2) -> int:
    return 1 if article.format == FORMAT_HTML and article.html is not None else 0


def _count_and_split(element):
    result, fallback = element
    Metrics.counter(NAMESPACE, "seen").inc()
    if isinstance(result, Rejection):
        Metrics.counter(NAMESPACE, f"dropped_{result.reason}").inc()
        yield beam.pvalue.TaggedOutput(REJECTED, result)
    else:
        Metrics.counter(NAMESPACE, "kept").inc()
        Metrics.counter(NAMESPACE, f"text_from_{fallback}").inc()
        yield result


# An exception of these kinds is the installation's fault, not the page's: rejecting every page for it would
# silently empty the lake, so the run fails instead.
FATAL_ERRORS = (ImportError,)


def _to_rejection(failed) -> Rejection:
    """A dead letter of `with_exception_handling` -> Rejection; its second item is (type, repr, traceback).

    A timeout (`TimeoutError`) or a crashed subprocess (`BrokenProcessPool`) is the page's failure too.
    """
    article, error = failed
    exc_type, exc_repr = (error[0], error[1]) if isinstance(error, tuple) else (type(error), error)
    if isinstance(exc_type, type) and issubclass(exc_type, FATAL_ERRORS):
        raise RuntimeError(f"extraction cannot run here ({exc_repr}); is wirewash installed with its "
                           f"dependencies (trafilatura, lxml_html_clean)?")
    Metrics.counter(NAMESPACE, f"dropped_{REASON_ERROR}").inc()
    return Rejection(article.doc_id, article.source_location, STAGE, REASON_ERROR, excerpt(article.html),
                     excerpt(f"{getattr(exc_type, '__name__', exc_type)}: {exc_repr}", 300))


# Runners whose workers are this very process: forking the extraction subprocess from here is safe.
_IN_PROCESS_RUNNERS = {None, "DirectRunner", "direct", "Direct", "FnApiRunner", "BundleBasedDirectRunner"}


def _isolation_is_safe(pipeline) -> bool:
    """Whether pages may run in Beam's subprocess here. Only on the local in-process runners: a worker that is
    itself a gRPC SDK harness (multi-processing DirectRunner, portable runners) crashed when forking under load
    (`BrokenProcessPool` in `finish_bundle`, which Beam does not route to the dead letters), and Dask workers are
    daemonic processes, which may not have children. Elsewhere the per-page timeout alone guards the run."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    options = getattr(pipeline, "_options", None)
    if options is None:
        return True
    runner = options.view_as(StandardOptions).runner
    direct = options.view_as(DirectOptions)
    # The local runner may start worker processes while the mode reads "in_memory" (pipeline/build.py starts
    # quiet workers through its own environment): more than one worker means SDK-harness processes.
    return (runner if isinstance(runner, (str, type(None))) else type(runner).__name__) in _IN_PROCESS_RUNNERS \
        and direct.direct_running_mode in (None, "in_memory") and (direct.direct_num_workers or 1) <= 1


class ExtractText(beam.PTransform):
    """Article -> {`articles`, `rejected`}: HTML articles get text from trafilatura; text articles pass.

    Only HTML pages go through the guarded extractor: each one gets `timeout` seconds and, with `isolate`, runs
    in a subprocess (Beam's `with_exception_handling(timeout=..., use_subprocess=...)`), so a page that hangs,
    raises or crashes the interpreter (deep recursion in lxml) is rejected (`extraction_error`) and the run
    goes on. The subprocess costs ~1 ms per page against ~20 ms of trafilatura; text records skip it. It is
    used on the local in-process runners only (`_isolation_is_safe`); elsewhere pages run under the timeout.
    A missing dependency fails the run at construction, never as "no text" on every page.
    """

    def __init__(self, timeout: Optional[float] = TIMEOUT_SECONDS, isolate: bool = True, extract=None):
        super().__init__()
        self.timeout = timeout
        self.isolate = isolate
        self.extract = extract

    def expand(self, articles):
        _require_trafilatura()  # fail now, loudly, if lxml_html_clean & co. are missing
        texts, pages = articles | "HtmlOrText" >> beam.Partition(_is_page, 2)
        extracted, errors = pages | "Trafilatura" >> beam.ParDo(_ExtractFn(self.extract)).with_exception_handling(
            timeout=self.timeout, use_subprocess=self.isolate and _isolation_is_safe(articles.pipeline))
        split = extracted | "CountAndSplit" >> beam.ParDo(_count_and_split).with_outputs(REJECTED, main="main")
        errors = errors | "ErrorsToRejections" >> beam.Map(_to_rejection)
        rejected = (split[REJECTED], errors) | "AllRejections" >> beam.Flatten()
        kept = (texts, split["main"]) | "AllArticles" >> beam.Flatten()
        return {"articles": kept, "rejected": rejected}
