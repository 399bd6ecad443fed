"""Extraction stage: raw HTML pages -> article text and metadata, with trafilatura.

Text records pass through untouched. An HTML record gets its main text from trafilatura (precision first,
balanced mode when precision cut the article short, trafilatura's baseline when both found nothing), then the
page's own structure corrects it (`refine_text`): link blocks go, a lone `<article>` the extractor cut short
wins, a JSON-LD `articleBody` vouches for the lines, and the standfirst the page shows comes back. Title, date,
URL and site name fill in where the record itself lacks them; the headline line is dropped from the body
so a page and the same story given as text hash equal. `<html lang>` is kept only as a hint for language
detection. A page with no extractable text is rejected (`no_text_extracted`); a page that makes the extractor
raise, hang or crash is rejected (`extraction_error`), never stopping the run.
"""
from __future__ import annotations

import html as html_lib
import json
import re
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, NamedTuple, Optional, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
from lxml import etree

from wirewash.transforms.guard import FATAL_ERRORS
from wirewash.transforms.records import parse_published, source_from_url
from wirewash.transforms.text import fold_words
from wirewash.transforms.types import FORMAT_HTML, REJECTED, Article, Rejection, excerpt

__all__ = ["ExtractText", "extract_html", "extracted_article", "choose_text", "refine_text", "html_lang_hint"]

NAMESPACE = "extract"
STAGE = "extract"
REASON_NO_TEXT = "no_text_extracted"
REASON_ERROR = "extraction_error"
RECHECK_WORDS = 300  # a precision result shorter than a short news story gets a second look (balanced mode)
RECALL_FACTOR = 2  # ...which wins only with at least twice the words: precision cut the article
FALLBACK_NONE, FALLBACK_BALANCED, FALLBACK_BASELINE = "precision", "balanced", "baseline"
FALLBACK_ARTICLE = "article"  # the paragraphs of the page's only <article> (see `prefer_article`)
LINK_SHARE = 0.7  # a block with at least this share of its characters in links...
LINK_BLOCK_WORDS = 30  # ...and at most this many words is a teaser ("Read also: <a>...</a>"), not prose
ARTICLE_FACTOR = 1.8  # the lone <article> wins with this many times the words...
ARTICLE_COVER = 0.9  # ...when it holds this share of the extracted words (same story, the extractor cut it)
LD_COVER = 0.8  # a JSON-LD articleBody holding this share of the extracted words is the full body...
LD_LINE_KEEP = 0.5  # ...and an extracted line with less than this share of its words in it goes
STANDFIRST_MIN_WORDS = 8  # a shorter meta description is a tagline, not a lead paragraph
STANDFIRST_MAX_WORDS = 80  # ...and a longer one is not a lead paragraph either (several texts run together)
INTRO_MAX_WORDS = 120  # a page's own intro block (`page_intro`) may run longer than a meta description
INTRO_PROSE_WORDS = 25  # a <p> this long after the headline means the body has begun: no intro block above it
# Class names of a lead paragraph: "article__intro", "tb-article-intro", "teaser-text", "chapo", "ts-intro"...
_INTRO_CLASS = re.compile(r"(?:^|[\s_-])(intro\w*|lead|leadtext|standfirst|chapo|teaser|teaser-text|summary|excerpt"
                          r"|deck|dek|subtitle|abstract)(?:$|[\s_-])", re.IGNORECASE)
# ...unless they name a picture's caption or credit ("lead-image-caption")
_NOT_INTRO_CLASS = re.compile(r"caption|credit|copyright|image|img|photo|media|figure|video", re.IGNORECASE)
_NOT_IN_INTRO = ("h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "nav", "form", "button", "table")
_FURNITURE_ANCESTORS = {"a", "nav", "aside", "footer", "figure", "figcaption"}
# The text of an intro block without its pictures' captions and credits
_INTRO_TEXT = ".//text()[not(ancestor::figure) and not(ancestor::figcaption) and not(ancestor::script) " \
              "and not(ancestor::style) and not(ancestor::*[contains(@class,'caption') or " \
              "contains(@class,'credit') or contains(@class,'copyright')])]"
TIMEOUT_SECONDS = 60.0  # per page; a real page takes ~20 ms, the largest (1.5 MB) about a second


class Extracted(NamedTuple):
    text: str
    title: Optional[str]
    date: Optional[str]
    url: Optional[str]
    sitename: Optional[str]
    lang_hint: Optional[str]
    fallback: str = FALLBACK_NONE  # which extraction produced `text` (counted per page)


_LANG_ATTR = re.compile(r"\blang\s*=\s*[\"']?([a-zA-Z]{2,3})", re.IGNORECASE | re.ASCII)
_HTML_TAG = re.compile(r"<html\b", re.IGNORECASE | re.ASCII)
_SCRIPT_TAG = re.compile(r"<script", re.IGNORECASE)


def start_tags(html: str, opening: re.Pattern, unclosed: bool = False):
    """(start, end) of each start tag of the page that `opening` (`<script`, `<html\\b`) begins: the tag runs to
    the next `>` (with `unclosed`, a last tag no `>` closes runs to the end). One pass: a regex like
    `<script[^>]*...>` rescans the rest of the page from every `<script` that no `>` closes, quadratic on a
    hostile page. An opening inside an earlier tag is part of it, as the regex matched it there."""
    at = 0
    while True:
        found = opening.search(html, at)
        if found is None:
            return
        end = html.find(">", found.end())
        if end < 0:  # no `>` after it: no tag closes any more
            if unclosed:
                yield found.start(), len(html)
            return
        yield found.start(), end + 1
        at = end + 1


def html_lang_hint(html: str) -> Optional[str]:
    """The primary language subtag of `<html lang=...>`, lower-cased, or None."""
    head = html[:20000]
    for start, end in start_tags(head, _HTML_TAG, unclosed=True):
        match = _LANG_ATTR.search(head, start + 5, end)
        if match:
            return match.group(1).lower()
    return None


def _require_trafilatura():
    # Imported when a pipeline is built or a page extracted, not with this module: it takes ~0.2 s.
    # trafilatura fails at import without lxml_html_clean; a wrapper that swallowed that would silently
    # turn every page into "no text". Let it raise.
    import trafilatura  # noqa: F401
    return trafilatura


def _words(text: Optional[str]) -> int:
    return len(text.split()) if text else 0


def _lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def choose_text(precise: str, balanced: Callable[[], str], baseline: Callable[[], str]) -> tuple[str, str]:
    """(text, which extraction it came from): the fallback rules, with the costlier extractions run lazily.

    Precision mode keeps related-story teasers, share bars and comment counts out, but sometimes cuts a real
    article to a fragment: a short result (< `RECHECK_WORDS`) gets the balanced mode too, which wins with at
    least `RECALL_FACTOR` times the words, and at least as many lines: balanced text in fewer lines than the
    precise one is the page run together (a whole container as one block, share bar and labels included), not
    a fuller article. The lines of the precise text that the balanced one lacks stay (`add_missing_lines`):
    the two modes may pick different containers, and the one precision chose held article text too (a
    recipe's ingredients, a table, a photo story's captions). trafilatura's baseline (JSON-LD article body,
    `<article>`, all `<p>`) is the last resort when both found nothing.
    """
    text, source = precise or "", FALLBACK_NONE
    if _words(text) < RECHECK_WORDS:
        other = balanced() or ""
        if _words(other) >= RECALL_FACTOR * max(_words(text), 1) and _lines(other) >= _lines(text):
            text, source = add_missing_lines(other, text), FALLBACK_BALANCED
    if not text.strip():
        other = baseline() or ""
        if other.strip():
            text, source = other, FALLBACK_BASELINE
    return text, source


def _fold_words(text: Optional[str]) -> list[str]:
    """The folded words of `text` (`fold_words`: the form in which texts are compared), as a list."""
    return fold_words(text).split()


def add_missing_lines(text: str, other: str) -> str:
    """`text` with the lines of `other` it does not contain (compared as folded words, each added once), each
    placed after the line of `text` that holds the `other` line before it, or on top."""
    lines = text.split("\n")
    keys = [f" {fold_words(line)} " for line in lines]
    whole = f" {fold_words(text)} "
    anchor, added = -1, set()
    for line in other.split("\n"):
        key = f" {fold_words(line)} "
        if not key.strip():
            continue
        if key in whole:
            anchor = next((i for i, have in enumerate(keys) if key in have), anchor)
        elif key not in added:
            added.add(key)
            anchor += 1
            lines.insert(anchor, line)
            keys.insert(anchor, key)
    return "\n".join(lines)


def _share_in(words: list[str], reference: set) -> float:
    return sum(w in reference for w in words) / len(words) if words else 0.0


_BLOCKS = ("p", "head", "item", "cell", "quote")


def body_text(body) -> str:
    """Plain text of trafilatura's output tree (extracted with links) without its link blocks: a paragraph,
    heading, list item or cell of at most `LINK_BLOCK_WORDS` words whose text is mostly (`LINK_SHARE`) link
    text is a teaser or a related-story link ("VEA TAMBIÉN: <a>...</a>", "- <a>Other story</a>"), which
    precision mode keeps when it sits inside the article container. Links then become plain text."""
    if body is None:
        return ""
    from trafilatura.xml import xmltotxt  # deferred: see `_require_trafilatura`

    for block in list(body.iter(*_BLOCKS)):
        if block.getparent() is None or any(child.tag in _BLOCKS or child.tag == "list" for child in block):
            continue
        text = "".join(block.itertext())
        chars = len(text.strip())
        linked = sum(len("".join(ref.itertext())) for ref in block.iter("ref"))
        if chars and linked >= LINK_SHARE * chars and len(text.split()) <= LINK_BLOCK_WORDS:
            block.getparent().remove(block)  # the tail (text after the block) is trafilatura's whitespace
    etree.strip_tags(body, "ref")
    return xmltotxt(body, False)


def article_paragraphs(tree, html: str = "") -> str:
    """The `<p>` texts of the page's `<article>`, one a line, when the page has exactly one (several are
    teaser cards), else ''. `html`, when given, spares the tree search on pages without one."""
    if tree is None or (html and html.count("<article") != 1):
        return ""
    articles = tree.xpath("//article")
    if len(articles) != 1:
        return ""
    lines = (" ".join(p.text_content().split()) for p in articles[0].iter("p"))
    return "\n".join(line for line in lines if line)


def prefer_article(text: str, article: str) -> Optional[str]:
    """`article` when it is the same story, longer: trafilatura sometimes keeps one of several sibling body
    sections (an article split by ads or embeds). Same story: it holds `ARTICLE_COVER` of the extracted words;
    longer: `ARTICLE_FACTOR` times the words. None otherwise."""
    ours, theirs = _fold_words(text), _fold_words(article)
    if ours and len(theirs) >= ARTICLE_FACTOR * len(ours) and _share_in(ours, set(theirs)) >= ARTICLE_COVER:
        return article
    return None


_SCRIPT_END = re.compile(r"</script>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")


def json_ld_blocks(html: str) -> list[str]:
    """The contents of the page's `<script ... application/ld+json ...>` elements (to the next `</script>`),
    found in one pass (`start_tags`)."""
    blocks, at = [], 0
    for start, end in start_tags(html, _SCRIPT_TAG):
        if start < at:  # inside the block just taken
            continue
        if "application/ld+json" not in html[start:end].lower():
            continue
        close = _SCRIPT_END.search(html, end)
        if close is None:
            break
        blocks.append(html[end:close.start()])
        at = close.end()
    return blocks


def strip_tags(text: str) -> str:
    """`text` with every `<...>` replaced by a space, in linear time: the pattern runs only up to the last
    `>` (past it, each `<` would rescan the rest of the text for a `>` that is not there)."""
    last = text.rfind(">")
    return _TAG.sub(" ", text[:last + 1]) + text[last + 1:]


def json_ld_article_body(html: str) -> str:
    """The longest `articleBody` of the page's JSON-LD blocks (tags removed, entities decoded), or ''."""
    if "articleBody" not in html:
        return ""
    best = ""
    stack = []
    for block in json_ld_blocks(html):
        try:
            stack.append(json.loads(block.strip()))
        except ValueError:
            continue  # a broken block is the page's problem, not a reason to lose its text
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            body = node.get("articleBody")
            if isinstance(body, str) and len(body) > len(best):
                best = body
            stack.extend(v for k, v in node.items() if k != "articleBody")
        elif isinstance(node, list):
            stack.extend(node)
    return html_lib.unescape(strip_tags(best)) if best else ""


def keep_lines_in(text: str, reference: str) -> str:
    """`text` without the lines the page's JSON-LD `articleBody` does not vouch for, when that body is the
    full story (it holds `LD_COVER` of the extracted words): captions, teasers and credits inside the article
    container are not in the publisher's own article body. A line goes when less than `LD_LINE_KEEP` of its
    words are in it. Unchanged without a full reference or when nothing would be left."""
    vocabulary = set(_fold_words(reference))
    if not vocabulary or _share_in(_fold_words(text), vocabulary) < LD_COVER:
        return text
    kept = [line for line in text.split("\n")
            if not line.strip() or _share_in(_fold_words(line), vocabulary) >= LD_LINE_KEEP
            or not _fold_words(line)]
    return "\n".join(kept) if any(line.strip() for line in kept) else text


def shown_in_body(tree, text: str) -> bool:
    """Whether the page shows `text` in its `<body>` (not only in a `<head>` meta tag or a script's data): its
    words in a row, whatever the punctuation, quotes, case and markup between them. Removes the scripts and
    styles from `tree`."""
    body = tree.find(".//body") if tree is not None else None
    words = re.findall(r"\w+", text)
    if body is None or not words:
        return False
    etree.strip_elements(body, "script", "style", "noscript", "template", with_tail=False)
    shown = etree.tostring(body, method="text", encoding="unicode")  # lxml's C serializer: fast
    # No word boundaries: adjacent elements often serialize without a space ("Read moreThe lead...").
    probe = r"\W*".join(map(re.escape, words))
    return re.search(probe, shown, re.IGNORECASE) is not None


def add_standfirst(text: str, description: Optional[str], tree, titles=()) -> str:
    """`text` with the page's standfirst (the lead paragraph under the headline) put back, after the headline
    line if there is one. Precision mode often leaves it out because it sits in the article header. Taken from
    the meta description, and only when the page shows that very text in its body (a description that
    is only metadata, or only a teaser, is not part of the article); never a truncated one ("...")."""
    description = " ".join((description or "").split())
    words = _fold_words(description)
    if not STANDFIRST_MIN_WORDS <= len(words) <= STANDFIRST_MAX_WORDS or description.endswith(("...", "…")):
        return text
    if " ".join(words) in fold_words(text) or not shown_in_body(tree, description):
        return text
    return put_under_headline(text, description, titles)


def page_intro(tree) -> Optional[str]:
    """The page's own lead paragraph, or None: the first block after the `<h1>` whose class names an intro
    ("article__intro", "teaser-text", "chapo", "standfirst"...), before the body's first real paragraph
    (`INTRO_PROSE_WORDS`). It must be prose of `STANDFIRST_MIN_WORDS` to `INTRO_MAX_WORDS` words, mostly not
    link text, not inside a link, menu, aside, footer or figure, and hold no heading, list, table or form (a
    container of the whole header is no intro). Captions and credits inside it do not count as its text."""
    body = tree.find(".//body") if tree is not None else None
    headline = next(body.iter("h1"), None) if body is not None else None
    if headline is None:
        return None
    after = False
    for element in body.iter():
        if element is headline:
            after = True
            continue
        if not after or not isinstance(element.tag, str):
            continue
        classes = element.get("class") or ""
        if (classes and _INTRO_CLASS.search(classes) and not _NOT_INTRO_CLASS.search(classes)
                and element.tag not in _FURNITURE_ANCESTORS
                and not any(a.tag in _FURNITURE_ANCESTORS for a in element.iterancestors())
                and not any(d.tag in _NOT_IN_INTRO for d in element.iterdescendants())
                and sum(1 for _ in element.iter("p")) <= 3):
            text = " ".join(" ".join(element.xpath(_INTRO_TEXT)).split())
            linked = sum(len(" ".join(a.text_content().split())) for a in element.iter("a"))
            if STANDFIRST_MIN_WORDS <= len(text.split()) <= INTRO_MAX_WORDS and linked <= len(text) / 2:
                return text
        elif element.tag == "p" and len(element.text_content().split()) >= INTRO_PROSE_WORDS:
            return None
    return None


def put_under_headline(text: str, lead: Optional[str], titles=()) -> str:
    """`text` with `lead` after its headline line (or on top without one), unless its words are in it already."""
    folded = fold_words(lead)
    if not folded or folded in fold_words(text):
        return text
    first, sep, rest = text.partition("\n")
    if is_headline(first, titles):
        return f"{first}\n{lead}\n{rest}" if sep else f"{first}\n{lead}"
    return f"{lead}\n{text}"


def refine_text(text: str, html: str, tree, description: Optional[str], titles=()) -> tuple[str, bool]:
    """(text, whether the lone <article> replaced it): the corrections the page's own structure allows, each
    cheap next to trafilatura (no second extraction): `prefer_article`, `keep_lines_in` the JSON-LD
    articleBody, `add_standfirst`, then the `page_intro` block. Consumes `tree` (its scripts are removed)."""
    intro = page_intro(tree)  # before `add_standfirst` strips the tree's scripts: same answer, no reason to wait
    replaced = prefer_article(text, article_paragraphs(tree, html))
    text = replaced or text
    text = keep_lines_in(text, json_ld_article_body(html))
    text = add_standfirst(text, description, tree, titles)
    return put_under_headline(text, intro, titles), replaced is not None


def extract_html(html: str, url: Optional[str] = None) -> Extracted:
    """Main text (see `choose_text`, `refine_text`) and metadata of one page. Empty text when nothing
    article-like is found."""
    trafilatura = _require_trafilatura()
    # Parsed once: trafilatura works on its own copy, and `refine_text` reads the untouched page.
    tree = trafilatura.load_html(html)
    if (tree is None or tree.tag != "html") and html.lstrip().startswith("<"):
        # A fragment ("<p>...</p>", "<div><p>...</p></div>", as feeds carry): trafilatura expects a whole
        # document, refuses a fragment without "html" in its first 50 characters and a single block, and
        # finds no body in the others (their text was lost: `no_text_extracted`). Made a whole document.
        # Only markup is: bytes that are no markup at all stay no page (wrapped, they came out as text).
        html = f"<html><body>{html}</body></html>"
        tree = trafilatura.load_html(html)
    source = tree if tree is not None else html
    # With links, so that `body_text` can tell link blocks from prose.
    options = dict(url=url, include_comments=False, include_tables=True, deduplicate=False, include_links=True)
    doc = trafilatura.bare_extraction(source, with_metadata=True, favor_precision=True, **options)

    def balanced():
        again = trafilatura.bare_extraction(source, with_metadata=False, **options)
        return body_text(again.body) if again is not None else ""

    text, fallback = choose_text(body_text(doc.body) if doc is not None else "", balanced,
                                 lambda: trafilatura.baseline(html)[1])
    title = (doc.title if doc is not None else None) or None
    if text.strip():
        text, replaced = refine_text(text, html, tree, doc.description if doc is not None else None, (title,))
        fallback = FALLBACK_ARTICLE if replaced else fallback
    return Extracted(
        text=text,
        title=title,
        date=(doc.date if doc is not None else None) or None,
        url=(doc.url if doc is not None else None) or None,
        sitename=(doc.sitename if doc is not None else None) or None,
        lang_hint=html_lang_hint(html),
        fallback=fallback,
    )


def is_headline(line: str, titles) -> bool:
    """Whether `line` is the headline: equal to a title, or the start of one making at least half of it (a
    page's `<title>` often carries the site name after the headline: "Headline | Site")."""
    folded = " ".join(line.split()).casefold()
    for title in titles:
        title = " ".join((title or "").split()).casefold()
        if folded and title and (folded == title or (title.startswith(folded) and 2 * len(folded) >= len(title))):
            return True
    return False


def drop_title_line(text: str, titles) -> str:
    """The text without its first line when that line is the headline (`is_headline`; trafilatura keeps the
    `<h1>`): the title is metadata, and the body must match the same story given as plain text."""
    first, _, rest = text.lstrip().partition("\n")
    if rest.strip() and is_headline(first, titles):
        return rest.lstrip("\n")
    return text


def apply_extraction(article: Article, extracted: Extracted, parse_date=parse_published) -> Article:
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


def extracted_article(article: Article, extracted: Extracted) -> Union[Article, Rejection]:
    """A page's article once `extract_html` ran: `apply_extraction`, its `source` from the URL where it has
    none; or its `no_text_extracted` Rejection when nothing article-like was found."""
    if not extracted.text.strip():
        return Rejection(article.doc_id, article.source_location, STAGE, REASON_NO_TEXT, excerpt(article.html))
    updated = apply_extraction(article, extracted, parse_published)
    return updated._replace(source=updated.source or source_from_url(updated.url))


def _extract_in_worker(extract, html: str, url: Optional[str]) -> Extracted:
    """What the page guard's worker (a thread or a subprocess) runs for one page."""
    return (extract or extract_html)(html, url)


def worker_processes(pool: ProcessPoolExecutor) -> list:
    """The worker processes of a process pool, to kill a hung one. Private (`_processes`): before Python 3.14
    (`kill_workers`) the pool has no public handle on its workers, and `shutdown` waits for a hung page
    forever. `tests/test_internals.py` fails by name if the attribute changes."""
    return list((getattr(pool, "_processes", None) or {}).values())


class _PageGuard:
    """Runs one page's extraction under a time limit (`timeout` seconds, None: none) and, with `isolate`, in a
    subprocess, so that a page that hangs or crashes the interpreter raises here (`TimeoutError`,
    `BrokenProcessPool`) instead of stopping the run. The same protection as Beam's
    `with_exception_handling(timeout=..., use_subprocess=...)` (a one-process pool, killed and replaced after
    a timeout or a crash), but asked for page by page: text records never go through it."""

    def __init__(self, timeout: Optional[float], isolate: bool):
        self.timeout = timeout
        self.isolate = isolate
        self.pool = None

    def extract(self, extract, html: str, url: Optional[str]) -> Extracted:
        if not self.isolate and self.timeout is None:
            return _extract_in_worker(extract, html, url)
        if self.pool is None:
            self.pool = ProcessPoolExecutor(1) if self.isolate else ThreadPoolExecutor(1)
        try:
            return self.pool.submit(_extract_in_worker, extract, html, url).result(self.timeout)
        except (TimeoutError, BrokenProcessPool):
            self.close()  # a hung worker is killed (a thread cannot be: it is left to finish alone)
            raise

    def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is None:
            return
        processes = worker_processes(pool) if self.isolate else []
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join(5)


class _ExtractFn(beam.DoFn):
    """Article -> the same article (text records), or a page's extracted article, or its Rejection on the
    `rejected` output: `no_text_extracted`, or `extraction_error` when the page made the extractor raise, hang
    or crash (`_PageGuard`). A missing dependency (`FATAL_ERRORS`) fails the run instead."""

    def __init__(self, timeout: Optional[float] = TIMEOUT_SECONDS, isolate: bool = True, extract=None):
        self.timeout = timeout
        self.isolate = isolate
        self.extract = extract  # None: `extract_html`; tests pass a misbehaving one

    def setup(self):
        _require_trafilatura()
        self.guard = _PageGuard(self.timeout, self.isolate)

    def teardown(self):
        self.guard.close()

    def process(self, article: Article):
        if not _is_page(article):
            yield article
            return
        Metrics.counter(NAMESPACE, "seen").inc()
        try:
            extracted = self.guard.extract(self.extract, article.html, article.url)
        except FATAL_ERRORS as err:
            raise RuntimeError(f"extraction cannot run here ({type(err).__name__}: {err}); is wirewash installed "
                               f"with its dependencies (trafilatura, lxml_html_clean)?") from err
        except Exception as err:  # noqa: BLE001 - whatever one page does is that page's rejection
            yield beam.pvalue.TaggedOutput(REJECTED, _page_error(article, err))
            return
        result = extracted_article(article, extracted)
        if isinstance(result, Rejection):
            Metrics.counter(NAMESPACE, f"dropped_{REASON_NO_TEXT}").inc()
            yield beam.pvalue.TaggedOutput(REJECTED, result)
            return
        Metrics.counter(NAMESPACE, "kept").inc()
        Metrics.counter(NAMESPACE, f"text_from_{extracted.fallback}").inc()
        yield result


def _is_page(article: Article) -> bool:
    return article.format == FORMAT_HTML and article.html is not None


def _page_error(article: Article, err: BaseException) -> Rejection:
    """The rejection of a page that made extraction raise, time out (`TimeoutError`) or crash its subprocess
    (`BrokenProcessPool`)."""
    Metrics.counter(NAMESPACE, f"dropped_{REASON_ERROR}").inc()
    return Rejection(article.doc_id, article.source_location, STAGE, REASON_ERROR, excerpt(article.html),
                     excerpt(f"{type(err).__name__}: {err!r}", 300))


# Runners whose workers are this very process: forking the extraction subprocess from here is safe.
_IN_PROCESS_RUNNERS = {None, "DirectRunner", "direct", "Direct", "FnApiRunner", "BundleBasedDirectRunner"}


def _isolation_is_safe(pipeline) -> bool:
    """Whether pages may run in Beam's subprocess here. Only on the local in-process runners: a worker that is
    itself a gRPC SDK harness (multi-processing DirectRunner, portable runners) crashed when forking under load
    (`BrokenProcessPool` in `finish_bundle`, which Beam does not route to the dead letters), and Dask workers are
    daemonic processes, which may not have children. Elsewhere the per-page timeout alone guards the run."""
    options = getattr(pipeline, "options", None)
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

    One step for every record, fused with the stages around it (no stage boundary, nothing parked): a text
    record passes as it is, and only an HTML page goes through the page guard (`_PageGuard`): `timeout`
    seconds each and, with `isolate`, a subprocess, so a page that hangs, raises or crashes the interpreter
    (deep recursion in lxml) is rejected (`extraction_error`) and the run goes on. The subprocess costs ~1 ms
    per page against ~3-20 ms of trafilatura. It is used on the local in-process runners only
    (`_isolation_is_safe`); elsewhere pages run under the timeout. A missing dependency fails the run at
    construction, never as "no text" on every page.
    """

    def __init__(self, timeout: Optional[float] = TIMEOUT_SECONDS, isolate: bool = True, extract=None):
        super().__init__()
        self.timeout = timeout
        self.isolate = isolate
        self.extract = extract

    def expand(self, articles):
        _require_trafilatura()  # fail now, loudly, if lxml_html_clean & co. are missing
        fn = _ExtractFn(self.timeout, self.isolate and _isolation_is_safe(articles.pipeline), self.extract)
        results = articles | "Trafilatura" >> beam.ParDo(fn).with_outputs(REJECTED, main="main")
        return {"articles": results["main"], "rejected": results[REJECTED]}
