"""One record's bytes -> one `Article` or one `Rejection`: the pure parsing under the reader (pipeline/io.py).

A JSONL line (`parse_json_record`, also a Pub/Sub or Kafka message) or a whole `.txt` / `.html` file
(`parse_document_file`), each parsed under one guard (`guarded_parse`): whatever the parsing raises becomes
that record's `read_error` rejection. Ids are stable (`stable_id`: from the URL, else the file and line),
dates are checked (`parse_published`), lone surrogates become U+FFFD, binary content is refused.
"""
from __future__ import annotations

import codecs
import json
import re
import sys
from typing import Optional, Union

import xxhash

from wirewash.pipeline.input_files import _LONE_SURROGATE
from wirewash.transforms.types import FORMAT_HTML, FORMAT_TEXT, Article, Rejection, excerpt
from wirewash.transforms.records import parse_published, source_from_url

__all__ = ["parse_json_record", "parse_document_file", "guarded_parse",
           "stable_id", "split_title", "Parsed"]

STAGE = "read"
MAX_ID_CHARS = 256

REASON_BAD_JSON = "bad_json"

REASON_NOT_AN_OBJECT = "not_an_object"

REASON_INVALID_UTF8 = "invalid_utf8"

REASON_BINARY = "binary_content"

REASON_EMPTY_TEXT = "empty_text"

REASON_MISSING_TEXT = "missing_text"

REASON_WRONG_TYPE = "wrong_type"  # suffixed with the field: wrong_type:published

REASON_ERROR = "read_error"  # parsing one record raised (transforms/guard.py): that record only is rejected

JSON_FIELDS = ("id", "url", "source", "title", "published", "text", "html")


# A lone surrogate (a JSON escape \ud800-\udfff without its pair; json.loads joins the pairs) is not a
# character and has no UTF-8 form: it becomes U+FFFD, as an unpaired UTF-16 code unit does.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


REPLACEMENT_CHARACTER = "\ufffd"

Parsed = Union[Article, Rejection]


def stable_id(*parts: str) -> str:
    """A 16-hex-digit id from stable strings (xxh3-64), so reruns give the same ids."""
    return xxhash.xxh3_64_hexdigest("\x1f".join(parts).encode("utf-8"))


def looks_binary(data: bytes) -> bool:
    """True for bytes that are not text: NUL bytes, or many control characters in the first 8 KiB."""
    head = data[:8192]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return bool(head) and controls / len(head) > 0.05


# A page's own declaration of its encoding, looked for where the HTML standard's prescan looks: the first
# 1024 bytes (`<meta charset=...>`, `<meta http-equiv="Content-Type" content="...; charset=...">`).
_META_CHARSET = re.compile(rb"<meta\b[^>]{0,512}?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]{1,40})", re.IGNORECASE)
CHARSET_PRESCAN_BYTES = 1024
# The standard's own readings of a few labels (WHATWG Encoding): what browsers decode such a page with.
_CHARSET_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "ascii": "cp1252",
                    "us-ascii": "cp1252", "iso-8859-9": "cp1254", "gb2312": "gbk", "x-gbk": "gbk",
                    "shift_jis": "cp932", "x-sjis": "cp932", "euc-kr": "cp949", "tis-620": "cp874"}


def declared_charset(data: bytes) -> Optional[str]:
    """The Python codec of the encoding an HTML page declares in its first 1024 bytes, or None (none, or a
    name Python does not know)."""
    match = _META_CHARSET.search(data[:CHARSET_PRESCAN_BYTES])
    if not match:
        return None
    label = match.group(1).decode("ascii").lower()
    try:
        return codecs.lookup(_CHARSET_ALIASES.get(label, label)).name
    except LookupError:
        return None


def decode_document(data: bytes, html: bool = False) -> str:
    """Bytes of a whole .txt/.html file -> text: UTF-8 (BOM dropped), or UTF-16 when it starts with a BOM
    (an unpaired code unit, or an odd last byte, becomes U+FFFD); a page (`html`) that is not UTF-8 in the
    encoding it declares (`declared_charset`: windows-1251, Shift_JIS...), as a browser reads it.

    Raises UnicodeDecodeError for anything else that is not valid UTF-8.
    """
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        return data.decode("utf-16", errors="replace")  # an unpaired code unit becomes U+FFFD
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        charset = declared_charset(data) if html else None
        if charset is None or charset == "utf-8":
            raise
        return data.decode(charset)


HEADLINE_MAX_CHARS = 150

HEADLINE_MAX_WORDS = 20

HEADLINE_END_PUNCTUATION = ".!?:;,…\"'”’»)"


def looks_like_headline(line: str) -> bool:
    """A first line is a headline when short (<= 20 words, <= 150 characters) and not closed by punctuation."""
    line = line.strip()
    return (0 < len(line) <= HEADLINE_MAX_CHARS and len(line.split()) <= HEADLINE_MAX_WORDS
            and not line.endswith(tuple(HEADLINE_END_PUNCTUATION)))


def split_title(text: str) -> tuple[Optional[str], str]:
    """(title, body) of a plain-text article: the first line is the title only when it reads like a headline
    and more text follows it."""
    stripped = text.lstrip("\ufeff\r\n\t ")
    first, _, rest = stripped.partition("\n")
    if rest.strip() and looks_like_headline(first):
        return first.strip(), rest
    return None, text


def replace_lone_surrogates(value: str) -> str:
    """`value` with every lone surrogate (which no UTF-8 encoder accepts) replaced by U+FFFD."""
    return _LONE_SURROGATE.sub(REPLACEMENT_CHARACTER, value)


def _reject(location: str, reason: str, payload=None, doc_id=None, error="") -> Rejection:
    return Rejection(doc_id=doc_id, source_location=location, stage=STAGE, reason=reason,
                     excerpt=excerpt(payload), error=excerpt(error, 300))


def guarded_parse(parse, location: str, *args) -> Parsed:
    """`parse(*args)`, or, when it raises anything (a bug, an input no check foresaw), the rejection of that
    one record (`read_error`, the error's type and message): one record's failure never ends a file's read."""
    try:
        return parse(*args)
    except Exception as err:  # noqa: BLE001 - whatever one record raises is that record's rejection
        return _reject(location, REASON_ERROR, error=f"{type(err).__name__}: {err}")


def _json_int(digits: str):
    """A JSON integer as Python's int, or, past the digits Python converts (`sys.get_int_max_str_digits`: a
    bound against quadratic work), as a float: JSON numbers have no size limit, and a record with a long one in
    a field we do not keep is still a record (it was `bad_json`); a field we keep is never a number."""
    limit = sys.get_int_max_str_digits()
    return int(digits) if not limit or len(digits) - digits.startswith("-") <= limit else float(digits)


def parse_json_record(raw: bytes, location: str, fallback_id_parts: tuple[str, ...]) -> Parsed:
    """One JSONL line -> `Article` (format text or html), or a `Rejection` saying exactly what is wrong."""
    try:
        # A byte-order mark before a record is not part of it, wherever it is: a file's first line, a later
        # line of files joined with `cat`, a message's payload (JSON itself never starts with U+FEFF).
        line = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        return _reject(location, REASON_INVALID_UTF8, raw, error=str(err))
    if "\x00" in line:
        return _reject(location, REASON_BINARY, line, error="NUL byte in the line")
    try:
        obj = json.loads(line, parse_int=_json_int)
    except (ValueError, RecursionError) as err:  # RecursionError: nested deeper than the parser's stack
        return _reject(location, REASON_BAD_JSON, line, error=f"{type(err).__name__}: {err}")
    if not isinstance(obj, dict):
        return _reject(location, REASON_NOT_AN_OBJECT, line, error=f"got a JSON {type(obj).__name__}")
    if _SURROGATE_ESCAPE.search(line):
        obj = {k: replace_lone_surrogates(v) if isinstance(v, str) else v for k, v in obj.items()
               if k in JSON_FIELDS}

    raw_id = obj.get("id")
    doc_id = raw_id if isinstance(raw_id, str) and raw_id.strip() else None
    for field in ("id", "url", "source", "title", "published", "text", "html"):
        value = obj.get(field)
        if value is not None and not isinstance(value, str):
            return _reject(location, f"{REASON_WRONG_TYPE}:{field}", line, doc_id=doc_id,
                           error=f"{field} is a JSON {type(value).__name__}, expected a string")
    if raw_id is not None and not 0 < len(raw_id.strip()) <= MAX_ID_CHARS:
        return _reject(location, f"{REASON_WRONG_TYPE}:id", line, error="id is empty or too long")

    text, html = obj.get("text"), obj.get("html")
    if text is None and html is None:
        return _reject(location, REASON_MISSING_TEXT, line, doc_id=doc_id, error="no text and no html field")
    body = text if text is not None else html
    if not body.strip():
        return _reject(location, REASON_EMPTY_TEXT, line, doc_id=doc_id)
    if "\x00" in body:
        return _reject(location, REASON_BINARY, line, doc_id=doc_id, error="NUL character in the text")

    url = obj.get("url") or None
    if doc_id is None:
        doc_id = stable_id("url", url) if url else stable_id(*fallback_id_parts)
    return Article(
        doc_id=doc_id.strip(),
        source_location=location,
        format=FORMAT_TEXT if text is not None else FORMAT_HTML,
        url=url,
        source=(obj.get("source") or source_from_url(url) or None),
        title=(obj.get("title") or "").strip() or None,
        published_at=parse_published(obj.get("published")),
        text=text if text is not None else "",
        html=html if text is None else None,
    )


def parse_document_file(data: bytes, fmt: str, rel_path: str) -> Parsed:
    """A whole `.txt` or `.html` file -> one `Article` (id from its path), or a `Rejection`."""
    location = f"{rel_path}:1"
    doc_id = stable_id("path", rel_path)
    if not data.strip():
        return _reject(location, REASON_EMPTY_TEXT, data, doc_id=doc_id)
    try:
        text = decode_document(data, html=fmt == FORMAT_HTML)
    except UnicodeDecodeError as err:
        reason = REASON_BINARY if looks_binary(data) else REASON_INVALID_UTF8
        return _reject(location, reason, data, doc_id=doc_id, error=str(err))
    if "\x00" in text or looks_binary(text.encode("utf-8", errors="replace")):
        return _reject(location, REASON_BINARY, data, doc_id=doc_id, error="NUL or control bytes in a text file")
    if not text.strip():
        return _reject(location, REASON_EMPTY_TEXT, data, doc_id=doc_id)
    if fmt == FORMAT_HTML:
        return Article(doc_id=doc_id, source_location=location, format=FORMAT_HTML, html=text)
    title, body = split_title(text)
    return Article(doc_id=doc_id, source_location=location, format=FORMAT_TEXT, title=title, text=body)
