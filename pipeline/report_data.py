"""What `wirewash report` shows, gathered from one snapshot of a lake (pipeline/query.py): `_SUMMARY.json`
(counts per stage, runs, invariants) and DuckDB aggregates over the Parquet files it commits. Rendering is in
pipeline/report.py.

Bounded on big lakes: every table-wide figure is one SQL aggregate; rows pulled into Python are capped
(EMBED_CLUSTERS clusters with their text, LIST_CLUSTERS more by id and title, TOP_ROWS rows per ranking),
and the page says what was left out. A copy's title and text are not stored in the lake (the duplicates
table holds ids and locations): for the embedded clusters they are re-read from the copy's input file when
it is still reachable, and cleaned again (`reread_copies`).
"""
from __future__ import annotations

import gzip
import os
import re
from typing import Optional

from wirewash.pipeline.query import lake_snapshot, open_lake
from wirewash.pipeline.report_charts import parse_date_label

__all__ = ["collect", "COLUMN_MEANINGS", "INVARIANT_CHECKS", "reread_copies", "WORD_BUCKETS"]

EMBED_CLUSTERS = 30      # clusters shown with the kept text, each copy's text and a diff
COPIES_PER_CLUSTER = 20  # copies shown per embedded cluster (the count of the rest is given)
LIST_CLUSTERS = 2000     # further clusters listed by kept id, title and size (searchable in the page)
TOP_ROWS = 15            # rows of each per-source / per-file ranking
EXAMPLES_PER_REASON = 3
EXCERPT = 280
DIFF_CHARS = 4000        # the part of each text a diff compares
REREAD_MAX_BYTES = 256 * 1024 * 1024  # input read back per report, at most (to find copies' records)
MAX_LINE_BYTES = 4 * 1024 * 1024     # an input line longer than this is not read back
CHUNK_BYTES = 1024 * 1024
WORD_BUCKETS = (0, 50, 100, 200, 500, 1000, 2000, 5000)  # lower bounds of the words-per-article bins

# One line per column of the three tables (their types come from the Parquet files). Checked against the
# lake's Arrow schemas by tests/test_report.py, so a new column cannot go undescribed.
COLUMN_MEANINGS = {
    "documents": {
        "doc_id": "the record's id, else a stable hash of its URL, else of its file and line; unique in the lake",
        "url": "canonical URL as given or found in the page",
        "source": "the site: the record's source field, else the URL's host",
        "title": "headline (JSON title, the page's title, or a .txt file's first line when it reads like one)",
        "published_at": "publication time (UTC) when the input had a valid one",
        "lang_prob": "confidence of the language decision (0 when und)",
        "text": "the cleaned article body: extracted, normalized (NFC, ftfy), boilerplate lines removed",
        "n_chars": "characters in text",
        "n_words": "words in text",
        "content_hash": "hash of the folded text: equal for exact copies",
        "boilerplate_lines_removed": "lines the boilerplate rules removed from this article",
        "format": "text or html: what the input held",
        "source_location": "file:line (JSONL) or file (one article per file) of the input record",
        "ingested_at": "when the run started (or --ingested_at)",
        "other_langs": "further languages detected in the text, when it mixes several",
        "lang": "ISO 639-1 code, or und when too short or unsure (a partition folder; in the ingest layout a "
                "column of the files)",
        "date": "publication period (UTC) at the lake's granularity, or unknown (a partition folder; in the "
                "ingest layout a column of the files, a day)",
        "ingest_date": "ingest layout only: the partition folder, the UTC day of ingested_at",
    },
    "duplicates": {
        "doc_id": "the copy that was dropped",
        "duplicate_of": "the kept document: always a doc_id of documents",
        "kind": "exact (same folded text) or near (MinHash, Jaccard of word 5-shingles >= --near_threshold)",
        "similarity": "1.0 for exact copies; for near ones the Jaccard similarity of the shingle sets",
        "source_location": "file:line or file of the copy's input record",
        "ingested_at": "when the run that saw the copy started",
    },
    "rejected": {
        "doc_id": "the record's id, when known at the stage that rejected it",
        "source_location": "file:line or file of the input record (line 0: the file as a whole)",
        "stage": "the stage that rejected it: read, extract, normalize, boilerplate, language or dedup",
        "reason": "why, e.g. bad_json, invalid_utf8, empty_text, too_large, duplicate_id",
        "excerpt": "the first printable characters of the record, to find it again",
        "error": "the exception text when a library failed on it",
        "ingested_at": "when the run that read it started",
    },
}

# The summary's `invariants` (docs/guarantees.md, section 1): key -> what passing means.
INVARIANT_CHECKS = {
    "reconciled": "records read = documents + duplicates + rejected, each equal to the rows in the files",
    "dangling_duplicate_of": "every duplicate_of is a doc_id in documents",
    "duplicate_doc_ids": "doc_ids are unique in documents",
    "invalid_partitions": "every partition folder is lang=<known code or und>/date=<valid period or unknown> "
                          "(ingest layout: ingest_date=<valid day>)",
    "unread_input": "every input file was read to its end",
}


def _rows(con, sql: str, *params) -> list:
    return con.execute(sql, list(params)).fetchall()


def _file_of(location) -> str:
    """`file:line` -> file (a location without a line number is the file itself)."""
    text = str(location or "")
    head, sep, tail = text.rpartition(":")
    return head if sep and tail.isdigit() else text


def collect(lake: str, reread: bool = True) -> dict:
    """Everything the report shows, from one snapshot of the lake (its summary, and DuckDB over the files
    that summary commits). `reread`: read copies' records back from their input files when reachable."""
    snapshot = lake_snapshot(lake)
    with open_lake(lake, snapshot) as con:
        data = _collect(con, snapshot)
    if reread:
        reread_copies(data["clusters"], snapshot.lake, snapshot.summary.get("runs") or [])
    return data


# Each table is scanned once into a temporary table of the columns the report needs (no text): every
# aggregate then runs in memory instead of opening each of the lake's files again (a 100,000-document lake
# in day folders has thousands of files).
_TEMP_TABLES = {
    "docs": "SELECT doc_id, title, source, url, published_at, source_location, n_words, lang_prob, lang, date "
            "FROM documents",
    "dups": "SELECT doc_id, duplicate_of, kind, similarity, source_location FROM duplicates",
    "rej": "SELECT stage, reason, source_location, left(excerpt, 200) AS excerpt FROM rejected",
}


def _collect(con, snapshot) -> dict:
    summary = snapshot.summary
    for name, sql in _TEMP_TABLES.items():
        con.execute(f"CREATE TEMP TABLE {name} AS {sql}")
    dates = _rows(con, "SELECT date, count(*) FROM docs GROUP BY 1 ORDER BY 1")
    n_docs, n_dups, n_rej = _rows(con, "SELECT (SELECT count(*) FROM docs), (SELECT count(*) FROM dups), "
                                       "(SELECT count(*) FROM rej)")[0]
    return {
        "lake": snapshot.lake,
        "summary": summary,
        "totals": (n_docs, n_dups, n_rej),
        "languages": _rows(con, "SELECT lang, count(*) AS n FROM docs GROUP BY 1 ORDER BY n DESC, lang"),
        "days": [(d, n) for d, n in dates if parse_date_label(d)],
        "unknown_days": sum(n for d, n in dates if not parse_date_label(d)),
        "sources": _rows(con, "SELECT coalesce(source, '(no source)'), count(*) AS n FROM docs GROUP BY 1 "
                              "ORDER BY n DESC, 1 LIMIT ?", TOP_ROWS),
        "n_sources": _rows(con, "SELECT count(DISTINCT source) FROM docs")[0][0],
        "duplicate_kinds": _rows(con, "SELECT kind, count(*) AS n FROM dups GROUP BY 1 ORDER BY n DESC, kind"),
        "rejected": _rows(con, "SELECT stage, reason, count(*) AS n FROM rej GROUP BY 1, 2 "
                               "ORDER BY n DESC, stage, reason"),
        "rejected_examples": _rejected_examples(con),
        "words": _word_histogram(con),
        "confidence": _confidence_histogram(con),
        "per_file": _per_file(con),
        "per_site": _per_site(con),
        "columns": {t: _rows(con, f"SELECT column_name, column_type FROM (DESCRIBE {t})") for t in COLUMN_MEANINGS},
        **_clusters(con),
    }


def _rejected_examples(con) -> dict:
    examples = {}
    for stage, reason, location, text in _rows(
            con, "SELECT stage, reason, source_location, excerpt FROM (SELECT *, row_number() OVER "
                 "(PARTITION BY stage, reason ORDER BY source_location) AS k FROM rej) WHERE k <= ? "
                 "ORDER BY stage, reason, source_location", EXAMPLES_PER_REASON):
        examples.setdefault((stage, reason), []).append((location, text))
    return examples


def _word_histogram(con) -> dict:
    """Documents per words-per-article bin (WORD_BUCKETS), with the quartiles."""
    bounds = list(WORD_BUCKETS)
    cases = " ".join(f"WHEN n_words >= {b} THEN {i}" for i, b in reversed(list(enumerate(bounds))))
    counts = dict(_rows(con, f"SELECT CASE {cases} ELSE 0 END AS bin, count(*) FROM docs "
                             "WHERE n_words IS NOT NULL GROUP BY 1"))
    labels = [f"{b:,}-{bounds[i + 1] - 1:,}" if i + 1 < len(bounds) else f"{b:,}+" for i, b in enumerate(bounds)]
    quartiles = _rows(con, "SELECT quantile_disc(n_words, 0.25), quantile_disc(n_words, 0.5), "
                           "quantile_disc(n_words, 0.75), max(n_words) FROM docs")[0]
    return {"bins": [(label, counts.get(i, 0)) for i, label in enumerate(labels)], "quartiles": quartiles}


def _confidence_histogram(con) -> list:
    """Documents per tenth of `lang_prob` (empty when the lake stores no confidence)."""
    rows = dict(_rows(con, "SELECT least(floor(lang_prob * 10), 9)::INTEGER, count(*) FROM docs "
                           "WHERE lang_prob IS NOT NULL AND isfinite(lang_prob) GROUP BY 1"))
    if not rows:
        return []
    return [(f"{i / 10:.1f}-{(i + 1) / 10:.1f}", rows.get(i, 0)) for i in range(10)]


_FILE_SQL = "regexp_replace(coalesce(source_location, '(unknown)'), ':[0-9]+$', '')"


def _per_file(con) -> dict:
    """Records, documents, duplicates and rejections per input file (every table holds the location)."""
    sql = (f"WITH r AS (SELECT {_FILE_SQL} AS f, 1 AS d, 0 AS u, 0 AS j FROM docs UNION ALL "
           f"SELECT {_FILE_SQL}, 0, 1, 0 FROM dups UNION ALL SELECT {_FILE_SQL}, 0, 0, 1 FROM rej) "
           "SELECT f, count(*) AS n, sum(d), sum(u), sum(j) FROM r GROUP BY f")
    rows = _rows(con, f"{sql} ORDER BY n DESC, f LIMIT ?", TOP_ROWS)
    total = _rows(con, f"SELECT count(*) FROM ({sql})")[0][0]
    return {"rows": [tuple(int(v) if i else v for i, v in enumerate(row)) for row in rows], "total": total}


def _per_site(con) -> dict:
    """Documents per site, and the copies dropped as duplicates of that site's articles (the lake keeps no
    site for a copy, so a copy counts for the site of the article it copies)."""
    sql = ("WITH d AS (SELECT coalesce(source, '(no source)') AS s, count(*) AS n FROM docs GROUP BY 1), "
           "c AS (SELECT coalesce(k.source, '(no source)') AS s, count(*) AS n FROM dups x "
           "JOIN docs k ON x.duplicate_of = k.doc_id GROUP BY 1) "
           "SELECT d.s, d.n, coalesce(c.n, 0) FROM d LEFT JOIN c ON d.s = c.s")
    rows = _rows(con, f"{sql} ORDER BY d.n + coalesce(c.n, 0) DESC, d.s LIMIT ?", TOP_ROWS)
    total = _rows(con, "SELECT count(DISTINCT coalesce(source, '(no source)')) FROM docs")[0][0]
    return {"rows": [(s, int(n), int(c)) for s, n, c in rows], "total": total}


def _clusters(con) -> dict:
    """The largest clusters: EMBED_CLUSTERS with their kept document and copies, LIST_CLUSTERS more by id."""
    n_clusters = _rows(con, "SELECT count(DISTINCT duplicate_of) FROM dups")[0][0]
    ranked = _rows(con, "WITH c AS (SELECT duplicate_of, count(*) AS n, min(similarity) AS low, "
                        "string_agg(DISTINCT kind, ', ' ORDER BY kind) AS kinds FROM dups GROUP BY 1 "
                        "ORDER BY n DESC, duplicate_of LIMIT ?) "
                        "SELECT c.duplicate_of, c.n + 1, c.kinds, c.low, d.title, d.source FROM c "
                        "LEFT JOIN docs d ON d.doc_id = c.duplicate_of ORDER BY c.n DESC, c.duplicate_of",
                    EMBED_CLUSTERS + LIST_CLUSTERS)
    embedded, listed = ranked[:EMBED_CLUSTERS], ranked[EMBED_CLUSTERS:]
    ids = [row[0] for row in embedded]
    kept, copies = {}, {}
    if ids:
        folders = _rows(con, "SELECT DISTINCT lang, date FROM docs WHERE doc_id IN (SELECT unnest(?))", ids)
        langs, dates = sorted({lang for lang, _ in folders}), sorted({date for _, date in folders})
        # the partitions first: DuckDB then opens only the files of the kept documents' folders
        for row in _rows(con, "SELECT doc_id, title, source, url, CAST(published_at AS VARCHAR), source_location, "
                              "left(text, ?) FROM documents WHERE lang IN (SELECT unnest(?)) AND date IN "
                              "(SELECT unnest(?)) AND doc_id IN (SELECT unnest(?))",
                         DIFF_CHARS, langs, dates, ids):
            kept.setdefault(row[0], row)
        for kept_id, doc_id, kind, similarity, location in _rows(
                con, "SELECT duplicate_of, doc_id, kind, similarity, source_location FROM (SELECT *, row_number() "
                     "OVER (PARTITION BY duplicate_of ORDER BY similarity DESC, doc_id) AS k FROM dups "
                     "WHERE duplicate_of IN (SELECT unnest(?))) WHERE k <= ? ORDER BY similarity DESC, doc_id",
                ids, COPIES_PER_CLUSTER):
            copies.setdefault(kept_id, []).append(
                {"doc_id": doc_id, "kind": kind, "similarity": similarity, "location": location})
    clusters = [{"kept_id": kept_id, "size": size, "kinds": kinds, "kept": kept.get(kept_id),
                 "copies": copies.get(kept_id, [])} for kept_id, size, kinds, _, _, _ in embedded]
    return {"clusters": clusters, "n_clusters": n_clusters,
            "listed_clusters": [(kept_id, size, kinds, low, title, source)
                                for kept_id, size, kinds, low, title, source in listed]}


# --- copies read back from their input files -----------------------------------------------------------------

def input_bases(inputs: list, lake: str) -> list[str]:
    """The local folders a location's file may be relative to: each run input's root (the folder given, or
    the folder part of a file or glob, as the reader cuts it), as given and from the lake's parent folder
    (a relative input was relative to where the run started), then those two folders themselves."""
    parent = os.path.dirname(os.path.abspath(lake))
    bases = []
    for given in inputs:
        if not isinstance(given, str) or "://" in given:
            continue
        for root in (given, os.path.join(parent, given)):
            if not any(ch in given for ch in "*?[") and os.path.isdir(root):
                bases.append(root)
            else:
                head = re.split(r"[*?\[]", root, maxsplit=1)[0]
                bases.append(head if head.endswith("/") else os.path.dirname(head))
    return list(dict.fromkeys(bases + ["", parent]))


def _resolve(path: str, bases: list) -> Optional[str]:
    """The first existing file `path` names under one of `bases` (an absolute path as itself)."""
    for base in bases:
        candidate = os.path.join(base, path) if base else path
        if os.path.isfile(candidate):
            return candidate
    return None


def _lines_wanted(path: str, wanted: set, budget: list, max_line: int = MAX_LINE_BYTES) -> dict:
    """{line number: raw bytes} for the wanted 1-based lines of a (gzipped) JSONL file, reading in bounded
    chunks (a line longer than `max_line`, which the run rejected as too large anyway, is skipped) and at most
    what `budget[0]` still allows."""
    found, last, number, line, whole = {}, max(wanted), 1, bytearray(), True
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            while budget[0] > 0 and number <= last:
                chunk = handle.readline(CHUNK_BYTES)
                if not chunk:
                    break
                budget[0] -= len(chunk)
                if number in wanted and whole:
                    line += chunk
                    whole = len(line) <= max_line
                if chunk.endswith(b"\n"):
                    if number in wanted and whole:
                        found[number] = bytes(line).rstrip(b"\r\n")
                    line, whole, number = bytearray(), True, number + 1
    except (OSError, EOFError, ValueError):
        pass
    return found


def _clean(article) -> tuple[Optional[str], str]:
    """(title, text) of a re-read record, cleaned as a run cleans it with the packaged rules."""
    from wirewash.transforms.boilerplate import edge_pass_applies, load_rules, strip_boilerplate
    from wirewash.transforms.normalize import normalize_text

    title, text = article.title, article.text or ""
    if article.html is not None:
        from wirewash.transforms.extract import extract_html

        extracted = extract_html(article.html, article.url)
        title, text = title or extracted.title, extracted.text or ""
    text = normalize_text(text)
    text, _ = strip_boilerplate(text, _rules(load_rules), title=title, edges=edge_pass_applies(article))
    return title, text


_RULES = []


def _rules(load_rules):
    if not _RULES:
        _RULES.append(load_rules())
    return _RULES[0]


def reread_copies(clusters: list, lake: str, runs: list = (), max_bytes: int = REREAD_MAX_BYTES) -> int:
    """Adds `title` and `text` to each copy of `clusters` whose input record can still be read (its file
    reachable from here, under a run's input root: `input_bases`; within `max_bytes` read in all); returns how many copies were found. A copy whose
    record cannot be read (file moved, changed, or past the budget) keeps only its id and location."""
    from wirewash.pipeline.input_files import FORMAT_JSONL, format_of
    from wirewash.pipeline.records import parse_document_file, parse_json_record
    from wirewash.transforms.types import Article

    wanted: dict = {}
    for cluster in clusters:
        for copy in cluster["copies"]:
            file, _, line = str(copy["location"] or "").rpartition(":")
            if file and line.isdigit():
                wanted.setdefault(file, {}).setdefault(int(line), []).append(copy)
    budget, found = [max_bytes], 0
    bases = input_bases([i for run in runs for i in (run.get("inputs") or [])], lake)
    for file in sorted(wanted):
        path = _resolve(file, bases)
        if path is None or budget[0] <= 0:
            continue
        fmt = format_of(path)
        if fmt == FORMAT_JSONL:
            records = {n: parse_json_record(raw.removeprefix(b"\xef\xbb\xbf"), f"{file}:{n}",
                                             ("line", file, str(n)))
                       for n, raw in _lines_wanted(path, set(wanted[file]), budget).items()}
        elif fmt and os.path.getsize(path) <= budget[0]:
            with open(path, "rb") as handle:
                data = handle.read()
            budget[0] -= len(data)
            records = {1: parse_document_file(data, fmt, file)}
        else:
            continue
        for number, record in records.items():
            if not isinstance(record, Article):
                continue
            for copy in wanted[file].get(number, []):
                if record.doc_id != copy["doc_id"]:
                    continue  # the file changed since the run: not the copy any more
                try:
                    copy["title"], copy["text"] = _clean(record)
                except Exception:  # noqa: BLE001 - a record the cleaners fail on is shown without its text
                    continue
                found += 1
    return found
