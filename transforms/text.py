"""Text folding and line shapes, declared once for every stage that compares texts or judges lines.

- `fold_words`: the words of a text, NFKC, casefolded, joined by single spaces: punctuation, quotes, case and
  line breaks no longer matter. It is the dedup key (`transforms/normalize.py`), how extraction compares a
  page's texts (`transforms/extract.py`) and how the boilerplate stage knows the title line.
- `fold_line` / `raw_fold`: the form in which boilerplate rules and learned lines see a line.
- `SENTENCE_END`, `KEEP_AT_EDGE`: the shapes of a line that ends like a sentence, and of a line that belongs
  to the article although it looks like a fragment (credits, contacts, a list's introduction).
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Optional

from wirewash.transforms.linear_regex import compile_linear

__all__ = ["fold_words", "fold_line", "raw_fold", "SENTENCE_END", "KEEP_AT_EDGE"]

_WORD = re.compile(r"\w+")
# Bullets, dashes, arrows and similar marks that sites put before UI lines.
_EDGE_MARKS = "•·◦▪▫■□●○►▶▸»«›‹>|-–—*#~→⇒✓✔☆★ \t"
SENTENCE_END = re.compile(r"[.!?…。！？।॥۔؟։።][\"'”’»)\]」』]*$")
# Lines that belong to the article although they look like fragments: author and source credits, contact
# details, a line introducing a list. The edge pass never removes them, nor are they learned as shared lines
# (rules still may remove them).
KEEP_AT_EDGE = compile_linear(
    r"(?i:^(theo|nguồn|reporting|additional reporting|editing|writing|with reporting|mit material von|quelle|"
    r"according to|tổng hợp)\b|\b(reporting|editing|writing) by\b|\((tổng hợp|thực hiện|lược dịch|theo [^)]*)\)$)"
    r"|^[Bb]y [A-Z]|Theo [A-ZĐ]|\d[\d .-]{6,}\d|https?://|\bwww\.|^(\S+ ){5,}.*:$")


def fold_words(text: Optional[str]) -> str:
    """The form two copies of one text share: NFKC, casefolded, letters and digits only, single spaces
    (None and '' give '')."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text or "").casefold()))


@functools.lru_cache(maxsize=1 << 14)
def fold_line(line: str) -> str:
    """The comparison form of a line: NFKC, casefolded, edge bullets and marks stripped, spaces collapsed.
    Cached: the passes ask for the same line several times, and furniture lines recur across articles."""
    # " ".join(split()) is `re.sub(r"\s+", " ", ...)` without its space at either end, which the strip takes
    # anyway (a space is an edge mark): the same fold, 2-3x faster on a paragraph
    return " ".join(unicodedata.normalize("NFKC", line).casefold().split()).strip(_EDGE_MARKS)


def raw_fold(line: str) -> str:
    """`fold_line` keeping the line's leading marks (for rules that read them, `on = "raw"`)."""
    return " ".join(unicodedata.normalize("NFKC", line).casefold().split())
