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

import apache_beam as beam
import ftfy
import xxhash
from apache_beam.metrics import Metrics
from ftfy.badness import BADNESS_RE
from ftfy.chardata import CONTROL_CHARS

from transforms.guard import isolated
from transforms.types import Article, Rejection, excerpt

__all__ = ["NormalizeArticles", "normalize_text", "dedup_key", "content_hash"]

NAMESPACE = "normalize"
STAGE = "normalize"
REASON_EMPTY = "empty_after_normalization"
REJECTED = "rejected"

# Quotes stay as written: the stored text keeps its punctuation (curly vs straight is folded in the key).
FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html="auto", remove_terminal_escapes=True, fix_encoding=True, restore_byte_a0=True,
    replace_lossy_sequences=True, decode_inconsistent_utf8=True, fix_c1_controls=True, fix_latin_ligatures=False,
    fix_character_width=False, uncurl_quotes=False, fix_line_breaks=True, fix_surrogates=True,
    remove_control_chars=True, normalization="NFC", explain=False,
)

MAX_PASSES = 4
_INVISIBLE = re.compile("[\u200b\u2060\ufeff\u00ad\u180e]")  # zero-width, BOM, soft hyphen
_SPACE_CHARS = re.compile(r"[^\S\n]+")  # any whitespace but a newline
_BLANK_RUNS = re.compile(r"\n{3,}")
_WORD = re.compile(r"\w+")
_ASCII_WORD_CHAR = re.compile(r"[A-Za-z0-9_]")
# Characters some enabled ftfy fix acts on by itself: entities, terminal escapes, line breaks other than \n,
# C1 controls, surrogates, and the control characters ftfy removes.
_FTFY_TRIGGERS = re.compile("[&\x1b\r\u2028\u2029\x80-\x9f\ud800-\udfff" + "".join(
    re.escape(chr(code)) for code in sorted(CONTROL_CHARS)) + "]")


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
    which gates its re-decoding) would flag, in the text or in its NFC form. Checked on the whole text at C
    speed, where ftfy works line by line in Python (~1 ms per article)."""
    if _FTFY_TRIGGERS.search(text) or BADNESS_RE.search(text):
        return True
    composed = unicodedata.normalize("NFC", text)
    return composed != text and bool(_FTFY_TRIGGERS.search(composed) or BADNESS_RE.search(composed))


def _normalize_once(text: str) -> str:
    if not text.isascii() or "&" in text:  # pure ASCII without entities has nothing for ftfy to repair
        if ftfy_may_change(text):
            text = ftfy.fix_text(text, FTFY_CONFIG)
        text = unicodedata.normalize("NFC", _INVISIBLE.sub("", text))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACE_CHARS.sub(" ", line).strip() for line in text.split("\n")]
    text = _BLANK_RUNS.sub("\n\n", "\n".join(lines))
    return text.strip("\n")


def dedup_key(text: str) -> str:
    """The form two copies of one article share: NFKC, casefolded, letters and digits only, single spaces."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def content_hash(key: str) -> str:
    """32 hex digits of xxh3-128 over the dedup key: equal keys, equal hashes, on every worker and run."""
    return xxhash.xxh3_128_hexdigest(key.encode("utf-8"))


def normalize_title(title):
    if not title:
        return None
    title = unicodedata.normalize("NFC", ftfy.fix_text(title, FTFY_CONFIG))
    title = " ".join(_INVISIBLE.sub("", title).split())
    return title or None


class _NormalizeFn(beam.DoFn):
    @isolated(STAGE, REJECTED)
    def process(self, article: Article):
        Metrics.counter(NAMESPACE, "seen").inc()
        text = normalize_text(article.text)
        # An ASCII letter or digit survives into the key (NFKC and casefolding keep ASCII): no need to build it.
        if not _ASCII_WORD_CHAR.search(text) and not dedup_key(text):
            Metrics.counter(NAMESPACE, f"dropped_{REASON_EMPTY}").inc()
            yield beam.pvalue.TaggedOutput(REJECTED, Rejection(
                article.doc_id, article.source_location, STAGE, REASON_EMPTY, excerpt(article.text)))
            return
        if text != article.text:
            Metrics.counter(NAMESPACE, "cleaned_text").inc()
        Metrics.counter(NAMESPACE, "kept").inc()
        yield article._replace(text=text, title=normalize_title(article.title))


class NormalizeArticles(beam.PTransform):
    """Article -> {`articles`: normalized text and title, `rejected`: texts with nothing left, and records
    that made normalizing raise (`normalize_error`, transforms/guard.py)}."""

    def expand(self, articles):
        results = articles | "Normalize" >> beam.ParDo(_NormalizeFn()).with_outputs(REJECTED, main="main")
        return {"articles": results["main"], "rejected": results[REJECTED]}
