"""Normalize stage: one canonical form of the stored text, and a folded key for deduplication.

Stored text: mojibake and HTML entities repaired (ftfy, quotes left as written), Unicode NFC (Vietnamese
arrives both composed and decomposed), zero-width and byte-order marks removed, every kind of space made a
plain space, line breaks unified, runs of blank lines collapsed. Punctuation and case are kept.
Dedup key: NFKC, casefolded, only letters and digits, single spaces: quotes, dashes, punctuation and line
breaks no longer matter (`content_hash` of it is computed by the dedup stage). A text with no letter or
digit left is rejected (`empty_after_normalization`).
"""
from __future__ import annotations

import re
import unicodedata
from typing import Optional, Union

import apache_beam as beam
import ftfy
import xxhash
from apache_beam.metrics import Metrics
from ftfy.badness import BADNESS_RE
from ftfy.chardata import CONTROL_CHARS, HTML_ENTITY_RE

from wirewash.transforms.guard import isolated
from wirewash.transforms.regex_tree import OPS
from wirewash.transforms.regex_tree import parse as parse_regex
from wirewash.transforms.text import fold_words
from wirewash.transforms.types import REJECTED, Article, Rejection, excerpt

__all__ = ["NormalizeArticles", "normalize_text", "normalize_article", "dedup_key", "content_hash"]

NAMESPACE = "normalize"
STAGE = "normalize"
REASON_EMPTY = "empty_after_normalization"

# Quotes stay as written: the stored text keeps its punctuation (curly vs straight is folded in the key).
FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html="auto", remove_terminal_escapes=True, fix_encoding=True, restore_byte_a0=True,
    replace_lossy_sequences=True, decode_inconsistent_utf8=True, fix_c1_controls=True, fix_latin_ligatures=False,
    fix_character_width=False, uncurl_quotes=False, fix_line_breaks=True, fix_surrogates=True,
    remove_control_chars=True, normalization="NFC", explain=False,
)

MAX_PASSES = 4
_INVISIBLE_CHARS = "\u200b\u2060\ufeff\u00ad\u180e"  # zero-width, BOM, soft hyphen
_INVISIBLE = re.compile(f"[{_INVISIBLE_CHARS}]")
_SPACE_CHARS = re.compile(r"[^\S\n]+")  # any whitespace but a newline
_BLANK_RUNS = re.compile(r"\n{3,}")
_ASCII_WORD_CHAR = re.compile(r"[A-Za-z0-9_]")
# Characters some enabled ftfy fix acts on by itself: terminal escapes, line breaks other than \n, C1
# controls, surrogates, and the control characters ftfy removes; and the entities ftfy decodes (exactly what
# its `unescape_html` replaces: a bare "&", as in "AT&T", needs nothing).
_FTFY_TRIGGERS = re.compile("[\x1b\r\u2028\u2029\x80-\x9f\ud800-\udfff" + "".join(
    re.escape(chr(code)) for code in sorted(CONTROL_CHARS)) + "]|" + HTML_ENTITY_RE.pattern)


def _anchor_chars(element) -> Optional[set]:
    """The characters a regex element (a literal or a plain class of non-ASCII characters) matches, or None."""
    op, av = element
    if op is OPS.LITERAL:
        chars = {chr(av)}
    elif op is OPS.IN and all(o in (OPS.LITERAL, OPS.RANGE) for o, _ in av):
        chars = set()
        for o, a in av:
            chars.update(chr(a) if o is OPS.LITERAL else map(chr, range(a[0], a[1] + 1)))
    else:
        return None
    return chars if all(ord(c) > 127 for c in chars) else None


# Elements a regex made of these can hold; anything else (look-arounds, back-references, `$`, `\b`) and the
# windowed search below would not be the same search.
_PLAIN_OPS = {OPS.LITERAL, OPS.IN, OPS.ANY, OPS.MAX_REPEAT,
              OPS.MIN_REPEAT, OPS.SUBPATTERN, OPS.BRANCH, OPS.CATEGORY,
              OPS.NOT_LITERAL}


def _plain(data) -> bool:
    for op, av in data:
        if op is OPS.AT and av is OPS.AT_BEGINNING_STRING or op is OPS.AT and \
                av is OPS.AT_BEGINNING:
            continue  # `^`: a window's search (pos > 0) never matches it there, as in the whole text
        if op not in _PLAIN_OPS:
            return False
        if op is OPS.BRANCH and not all(_plain(alt.data) for alt in av[1]):
            return False
        if op in (OPS.MAX_REPEAT, OPS.MIN_REPEAT) and not _plain(av[2].data):
            return False
        if op is OPS.SUBPATTERN and not _plain(av[-1].data):
            return False
    return True


def _rarity(chars: set) -> tuple:
    """How often a class of characters turns up in real text, roughly: small letters most, then capitals."""
    names = [unicodedata.name(c, "") for c in chars]
    return sum("SMALL LETTER" in n for n in names), sum("CAPITAL LETTER" in n for n in names), len(chars)


def mojibake_anchors(pattern: re.Pattern) -> Optional[tuple]:
    """(a regex of characters every match of `pattern` contains one of, the longest match's length), or None.

    Derived from the pattern itself (each alternative of its top-level `|` must have a mandatory element that
    is a literal or a class of non-ASCII characters), so that it holds for ftfy's `BADNESS_RE` as installed; None when the pattern has another shape or
    an unbounded or context-dependent element, and then the whole text is searched. Which element stands for an
    alternative only changes the speed: classes of fewer small letters, then capitals, are rarer in text."""
    parsed = parse_regex(pattern.pattern, pattern.flags)
    if pattern.flags & (re.IGNORECASE | re.MULTILINE) or not _plain(parsed.data):
        return None
    width = parsed.getwidth()[1]
    if width >= OPS.MAXREPEAT or len(parsed.data) != 1 or parsed.data[0][0] is not OPS.BRANCH:
        return None
    anchors = set()
    for alternative in parsed.data[0][1][1]:
        candidates = [chars for chars in map(_anchor_chars, alternative.data) if chars]
        if not candidates:
            return None
        anchors |= min(candidates, key=_rarity)
    return re.compile("[" + "".join(re.escape(c) for c in sorted(anchors)) + "]"), width


_BADNESS_ANCHORS = mojibake_anchors(BADNESS_RE)


def looks_like_mojibake(text: str) -> bool:
    """`BADNESS_RE.search(text) is not None` (ftfy's own mojibake detector), searched only around the
    characters every match contains (`mojibake_anchors`): a match holding the character at `i` lies within
    `i - width + 1 .. i + width`, so those windows (merged where they overlap) hold every match. Most
    articles have few such characters (accented capitals, currency and typographic signs), and the full
    search tries some thirty alternatives at every position."""
    if _BADNESS_ANCHORS is None:
        return BADNESS_RE.search(text) is not None
    anchors, width = _BADNESS_ANCHORS
    low = high = -1
    for found in anchors.finditer(text):
        at = found.start()
        if at - width + 1 > high:  # a window apart from the current one: search that one first
            if high > 0 and BADNESS_RE.search(text, low, high):
                return True
            low = max(0, at - width + 1)
        high = at + width
    return high > 0 and BADNESS_RE.search(text, low, high) is not None


def normalize_text(text: str) -> str:
    """Canonical stored form of an article body (idempotent: normalizing twice changes nothing)."""
    # One pass can expose more to repair (a C1 control becomes a cp1252 character, removed spaces make a
    # mojibake pair adjacent): repeat to a fixed point. Text that a pass leaves alone costs that one pass.
    for _ in range(MAX_PASSES):
        fixed = _normalize_once(text)
        if fixed == text:
            break
        text = fixed
    return text


def ftfy_may_change(text: str) -> bool:
    """False only when `ftfy.fix_text(text, FTFY_CONFIG)` is certainly `NFC(text)`: no HTML entity, no C1,
    control, surrogate or odd line-break character, and nothing ftfy's own mojibake detector (`BADNESS_RE`,
    which gates its re-decoding) would flag, in the text or in its NFC form (`looks_like_mojibake`). Checked
    on the whole text at C speed, where ftfy works line by line in Python (~1 ms per article)."""
    if _FTFY_TRIGGERS.search(text) or looks_like_mojibake(text):
        return True
    composed = unicodedata.normalize("NFC", text)
    return composed != text and bool(_FTFY_TRIGGERS.search(composed) or looks_like_mojibake(composed))


def _normalize_once(text: str) -> str:
    if not text.isascii() or "&" in text:  # pure ASCII without entities has nothing for ftfy to repair
        if ftfy_may_change(text):
            text = ftfy.fix_text(text, FTFY_CONFIG)
        if any(ch in text for ch in _INVISIBLE_CHARS):  # a few scans for a character, not a regex's
            text = _INVISIBLE.sub("", text)
        text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = tidy_spaces(text)
    if "\n\n\n" in text:  # what `_BLANK_RUNS` needs to match at all
        text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip("\n")


def tidy_spaces(text: str) -> str:
    """Every run of whitespace but a line break made one plain space, and each line stripped: the same as
    `"\\n".join(_SPACE_CHARS.sub(" ", line).strip() for line in text.split("\\n"))` (a line's `split()` is
    its runs of whitespace), each line split and joined in C: ~3x faster than the two regex passes over the
    text it replaces."""
    return "\n".join(map(" ".join, map(str.split, text.split("\n"))))


def dedup_key(text: str) -> str:
    """The form two copies of one article share: NFKC, casefolded, letters and digits only, single spaces
    (`fold_words`, the one text fold of every stage)."""
    return fold_words(text)


def content_hash(key: str) -> str:
    """32 hex digits of xxh3-128 over the dedup key: equal keys, equal hashes, on every worker and run."""
    return xxhash.xxh3_128_hexdigest(key.encode("utf-8"))


def normalize_title(title):
    if not title:
        return None
    title = unicodedata.normalize("NFC", ftfy.fix_text(title, FTFY_CONFIG) if ftfy_may_change(title) else title)
    title = " ".join(_INVISIBLE.sub("", title).split())
    return title or None


def normalize_article(article: Article) -> Union[Article, Rejection]:
    """The article with its text and title normalized, or its `empty_after_normalization` Rejection when no
    letter or digit is left."""
    text = normalize_text(article.text)
    # An ASCII letter or digit survives into the key (NFKC and casefolding keep ASCII): no need to build it.
    if not _ASCII_WORD_CHAR.search(text) and not dedup_key(text):
        return Rejection(article.doc_id, article.source_location, STAGE, REASON_EMPTY, excerpt(article.text))
    return article._replace(text=text, title=normalize_title(article.title))


class _NormalizeFn(beam.DoFn):
    @isolated(STAGE, REJECTED)
    def process(self, article: Article):
        Metrics.counter(NAMESPACE, "seen").inc()
        result = normalize_article(article)
        if isinstance(result, Rejection):
            Metrics.counter(NAMESPACE, f"dropped_{REASON_EMPTY}").inc()
            yield beam.pvalue.TaggedOutput(REJECTED, result)
            return
        if result.text != article.text:
            Metrics.counter(NAMESPACE, "cleaned_text").inc()
        Metrics.counter(NAMESPACE, "kept").inc()
        yield result


class NormalizeArticles(beam.PTransform):
    """Article -> {`articles`: normalized text and title, `rejected`: texts with nothing left, and records
    that made normalizing raise (`normalize_error`, transforms/guard.py)}."""

    def expand(self, articles):
        results = articles | "Normalize" >> beam.ParDo(_NormalizeFn()).with_outputs(REJECTED, main="main")
        return {"articles": results["main"], "rejected": results[REJECTED]}
