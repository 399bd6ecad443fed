"""Record fields every stage reads the same way: publication dates and the site a URL names.

Pure functions over plain values, used by the reader (`pipeline/io.py`) and by extraction alike, so a date or
a source found in a page's metadata is held to the same rules as one given in a JSONL record.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Optional

__all__ = ["parse_published", "source_from_url", "MIN_YEAR", "MAX_YEAR"]

# Publication years outside this range are refused: typos or attacks, and the year later names a partition folder.
MIN_YEAR, MAX_YEAR = 1800, 2200


def parse_published(value) -> Optional[str]:
    """An ISO-8601 date or datetime string -> canonical UTC ISO string, or None when it is not a sane date.

    Naive datetimes are taken as UTC. Years outside 1800-2200 are refused: they are typos or attacks, and
    the value later names a partition folder.
    """
    if not isinstance(value, str) or not 8 <= len(value.strip()) <= 40:
        return None
    text = value.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ][0-9:.,]+(Z|[+-]\d{2}:?\d{2})?)?", text):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def source_from_url(url: Optional[str]) -> Optional[str]:
    """The `source` a record gets from its URL when it names none: the URL's host, lower-cased, without
    `www.` and a trailing dot; None without a `scheme://host` URL."""
    if not url:
        return None
    match = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#:@]+@)?([^/?#:]+)", url.strip())
    if not match:
        return None
    host = match.group(2).lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host
