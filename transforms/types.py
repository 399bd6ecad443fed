"""Element types that flow between the stages.

`Article` is the one record type from parsing to writing; each stage returns a copy with its own fields
filled in (`_replace`). `Rejection` is the one dead-letter shape, whatever stage rejects a record.
`Duplicate` is one dedup decision. All three are plain NamedTuples: cheap to pickle, easy to test.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

FORMAT_TEXT = "text"
FORMAT_HTML = "html"

UNDETERMINED_LANGUAGE = "und"
UNKNOWN_DATE = "unknown"

# Where every record ends: the three outputs of ingestion (and the stages' `rejected` output), which are the
# lake's three tables.
DOCUMENTS, DUPLICATES, REJECTED = "documents", "duplicates", "rejected"
TABLES = (DOCUMENTS, DUPLICATES, REJECTED)


class Article(NamedTuple):
    """One news article on its way through the pipeline.

    `published_at` is an ISO-8601 UTC string (`YYYY-MM-DDTHH:MM:SS+00:00`) that passed validation, or None.
    `html` holds the raw page until extraction, then None. `text` is the article body: raw at first,
    cleaned and normalized by the later stages.
    """

    doc_id: str
    source_location: str
    format: str
    url: Optional[str] = None
    source: Optional[str] = None
    title: Optional[str] = None
    published_at: Optional[str] = None
    text: str = ""
    html: Optional[str] = None
    lang: str = UNDETERMINED_LANGUAGE
    lang_prob: float = 0.0
    boilerplate_lines_removed: int = 0
    removed_by_rule: tuple = ()
    content_hash: str = ""
    lang_hint: Optional[str] = None
    other_langs: tuple = ()  # other languages of a mixed-language text, sorted codes


class Rejection(NamedTuple):
    """A record that cannot become a document: where it came from, which stage refused it, and why."""

    doc_id: Optional[str]
    source_location: str
    stage: str
    reason: str
    excerpt: str = ""
    error: str = ""


class Duplicate(NamedTuple):
    """`doc_id` is a copy of the kept document `duplicate_of` (`kind` exact or near)."""

    doc_id: str
    duplicate_of: str
    kind: str
    similarity: float
    source_location: str = ""


EXCERPT_CHARS = 200


def excerpt(text, limit: int = EXCERPT_CHARS) -> str:
    """A short, single-line, printable excerpt of `text` for logs and rejected rows (never the whole record)."""
    if text is None:
        return ""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text[: limit * 4]).decode("utf-8", errors="replace")
    text = str(text)[: limit * 2]
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
