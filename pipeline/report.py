"""`wirewash report LAKE`: LAKE/_REPORT.html, one self-contained page about a lake (no network, no script
library, charts as inline SVG; readable without JavaScript, which only adds the cluster search and paging).

What it shows (data from pipeline/report_data.py, charts from pipeline/report_charts.py): the latest run's
details (version, mode, times, inputs, options, counts, time and CPU per stage when the run record has
`timing`), a funnel from records read to documents / duplicates / rejected, the invariants as a checklist,
the history of runs (appends, streams), languages and their confidence, documents over time (the `date=`
folders' unit, coarsened when the span is long; the chart says which), words per article, sources and input
files with their duplicate and rejection rates, duplicate clusters (kept article, each copy, a word diff of
near copies), boilerplate removed, rejected records with examples, and a data dictionary of the tables.
"""
from __future__ import annotations

import difflib
import html
import json
import os
from datetime import datetime, timezone
from typing import Optional

from wirewash.pipeline.query import INGEST, layout_of
from wirewash.pipeline.report_charts import COLORS, bar_chart, column_chart, funnel_chart, parse_date_label, timeline
from wirewash.pipeline.report_data import (COLUMN_MEANINGS, EXCERPT, INVARIANT_CHECKS, TOP_ROWS,
                                           collect)

__all__ = ["REPORT_FILE", "write_report", "render_report", "bar_chart", "column_chart", "collect", "timeline",
           "parse_date_label", "word_diff", "PAGE_SIZE"]

REPORT_FILE = "_REPORT.html"
PAGE_SIZE = 10     # clusters per page when the page's script pages them
MAX_HISTORY = 200  # runs listed in the history (the latest ones)
MAX_INPUTS = 10    # inputs named in the run details
LONG_CELL = 60     # characters from which a table cell may break anywhere
TOP_LANGUAGES = 20  # languages in the chart (the rest counted)
DIFF_WORDS = 150   # words of each text a near copy's diff compares

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d9dde3;padding-bottom:4px}
h3{font-size:15px;margin:14px 0 6px} nav{margin:10px 0} nav a{margin-right:10px}
.meta{color:#5b6472;margin-bottom:16px} .note{color:#5b6472}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:10px 16px;min-width:130px}
.card b{display:block;font-size:22px} .ok{color:#17803d} .bad{color:#b42318}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px} td,th{border:1px solid #d9dde3;padding:4px 8px;
text-align:left;vertical-align:top;overflow-wrap:break-word} td.long{overflow-wrap:anywhere;min-width:240px}
th{background:#eef0f3}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
svg.chart{background:#fff;border:1px solid #d9dde3;border-radius:6px;display:block;margin:6px 0 12px;max-width:100%;height:auto}
.cl{background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:8px 12px;margin:8px 0}
.copies{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:8px;margin-top:8px}
.copy{border:1px solid #d9dde3;border-radius:6px;padding:6px 10px;overflow-wrap:anywhere}
.copy.kept{border-color:#17803d;background:#f3faf5} .copy small{color:#5b6472;display:block} .copy p{margin:6px 0 0;font-size:13px}
del{background:#fde2e1;text-decoration:line-through} ins{background:#dcf5e3;text-decoration:none}
ul.listed{padding-left:18px} code{background:#eef0f3;padding:0 3px;border-radius:3px;overflow-wrap:anywhere}
.empty{color:#5b6472;font-style:italic} .pass{color:#17803d;font-weight:600} .fail{color:#b42318;font-weight:600}
.tools{margin:8px 0} .tools input{font:inherit;padding:3px 6px;width:320px;max-width:90%}
"""

# First script of the page: records any script error, so a headless browser (the test) can see it.
_ERROR_SCRIPT = ("window.addEventListener('error',function(e){var d=document.documentElement;"
                 "d.setAttribute('data-errors',(d.getAttribute('data-errors')||'')+String(e.message)+';')});")

# Lays out, then checks: every chart drawn with a real size (data-charts-drawn), and the cluster list paged
# (PAGE_SIZE per page) and searchable; `#clusters=WORDS` in the address fills the search box.
_SCRIPT = """
(function () {
  var items = Array.prototype.slice.call(document.querySelectorAll('.cl'));
  var input = document.getElementById('cl-filter'), info = document.getElementById('cl-info');
  var prev = document.getElementById('cl-prev'), next = document.getElementById('cl-next'), page = 0;
  var size = PAGE_SIZE;
  function matching() {
    var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
    return items.filter(function (el) {
      var text = el.getAttribute('data-q');
      return words.every(function (w) { return text.indexOf(w) >= 0; });
    });
  }
  function show() {
    var found = matching(), pages = Math.max(1, Math.ceil(found.length / size));
    page = Math.max(0, Math.min(page, pages - 1));
    items.forEach(function (el) { el.hidden = true; });
    found.slice(page * size, (page + 1) * size).forEach(function (el) { el.hidden = false; });
    var shown = Math.min(size, found.length - page * size);
    info.textContent = found.length ? 'showing ' + (page * size + 1) + '-' + (page * size + shown) + ' (' + shown +
      ') of ' + found.length + (input.value.trim() ? ' matching' : '') + ' clusters' : 'no cluster matches';
    document.body.setAttribute('data-clusters-shown', shown > 0 ? shown : 0);
    prev.disabled = page === 0; next.disabled = page >= pages - 1;
  }
  if (input) {
    var hash = /[#&]clusters=([^&]*)/.exec(location.hash);
    if (hash) { input.value = decodeURIComponent(hash[1]); }
    input.addEventListener('input', function () { page = 0; show(); });
    prev.addEventListener('click', function () { page -= 1; show(); });
    next.addEventListener('click', function () { page += 1; show(); });
    document.getElementById('cl-tools').hidden = false;
    show();
  }
  window.addEventListener('load', function () {
    var charts = document.querySelectorAll('svg.chart'), drawn = 0;
    charts.forEach(function (svg) {
      var box = svg.getBoundingClientRect(), marks = svg.querySelectorAll('rect.mark');
      var sized = Array.prototype.filter.call(marks, function (m) { return m.getBBox().width > 0 && m.getBBox().height > 0; });
      if (box.width > 0 && box.height > 0 && sized.length === marks.length) { drawn += 1; }
    });
    document.body.setAttribute('data-charts', charts.length);
    document.body.setAttribute('data-charts-drawn', drawn);
    document.body.setAttribute('data-ready', '1');
  });
})();
""".replace("PAGE_SIZE", str(PAGE_SIZE))


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _n(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else _e(value)


def _pct(part, whole) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _cell(value) -> str:
    """A text cell; a long text (an excerpt, a URL) may break anywhere, so it never widens the page."""
    text = _e(value)
    return f'<td class="long">{text}</td>' if len(text) > LONG_CELL else f"<td>{text}</td>"


def _table(headers: list, rows: list, numeric: tuple = (), raw: tuple = ()) -> str:
    """A table; `numeric` columns right-aligned, `raw` columns already HTML."""
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>" if any(headers) else ""
    body = "".join("<tr>" + "".join(f'<td class="n">{_n(v)}</td>' if i in numeric else
                                    f"<td>{v}</td>" if i in raw else _cell(v)
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _more(total: int, shown: int, what: str) -> str:
    return f'<p class="note">+{total - shown:,} more {what} not listed.</p>' if total > shown else ""


# --- sections ------------------------------------------------------------------------------------------------

def _seconds(value) -> str:
    return f"{value:,.1f} s" if isinstance(value, (int, float)) else "not recorded"


def _timing_html(run: dict, stage_counts: dict) -> str:
    timing = run.get("timing")
    if not isinstance(timing, dict):
        return '<p class="note">Time and CPU per stage: not recorded for this run.</p>'
    wall, cpu, read = timing.get("wall_seconds"), timing.get("cpu_seconds"), run.get("records_read")
    rate = f"{read / wall:,.0f} records/s" if isinstance(wall, (int, float)) and wall > 0 and read else "-"
    cores = f"{cpu / wall:.2f} cores busy" if isinstance(cpu, (int, float)) and isinstance(wall, (int, float)) and wall > 0 else ""
    out = f"<p>Wall time {_seconds(wall)}, CPU time {_seconds(cpu)}{', ' + cores if cores else ''}; {rate}.</p>"
    stages = timing.get("stages") or {}
    rows = []
    for name, seconds in stages.items():
        n_in = (stage_counts.get(name) or {}).get("in")
        per_s = f"{n_in / seconds:,.0f}" if isinstance(seconds, (int, float)) and seconds > 0 and n_in else "-"
        share = _pct(seconds, wall) if isinstance(seconds, (int, float)) and isinstance(wall, (int, float)) else "-"
        rows.append((name, _seconds(seconds), share, n_in if n_in is not None else "-", per_s))
    if rows:
        out += _table(["stage", "time", "share of wall time", "records in", "records/s"], rows, numeric=(1, 2, 3, 4))
    return out


def _run_section(summary: dict) -> str:
    runs = summary.get("runs") or []
    if not runs:
        return '<p class="empty">Run details: not recorded (this lake was written before runs were recorded).</p>'
    run = runs[-1]
    inputs = run.get("inputs") or []
    shown = ", ".join(f"<code>{_e(i)}</code>" for i in inputs[:MAX_INPUTS]) or "-"
    if len(inputs) > MAX_INPUTS:
        shown += f" +{len(inputs) - MAX_INPUTS:,} more"
    facts = [("run id", _e(run.get("run_id", "-"))), ("wirewash version", _e(run.get("wirewash_version", "-"))),
             ("mode", _e(run.get("mode", "-"))), ("runner", _e(run.get("runner", "not recorded"))),
             ("started", _e(run.get("started_at", "-"))), ("committed", _e(run.get("committed_at", "-"))),
             ("ingested_at", _e(run.get("ingested_at", "-"))),
             ("inputs", shown), ("input files read", _n(run.get("input_files", "-"))),
             ("files skipped (inside the lake)", _n(run.get("skipped_inputs", 0))),
             ("counts", " · ".join(f"{k} {_n(run[k])}" for k in ("records_read", "documents", "duplicates", "rejected")
                                   if k in run))]
    title = "Latest run" + (f" (of {len(runs):,})" if len(runs) > 1 else "")
    out = f'<div class="cards"><div><h3>{title}</h3>' + _table(["", ""], facts, raw=(1,)) + "</div>"
    options = run.get("options") or {}
    if options:
        out += "<div><h3>Options and thresholds</h3>" + _table(
            ["option", "value"], [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in options.items()]) + "</div>"
    out += "</div>"
    stage_counts = run.get("stages") or (summary.get("stages") if len(runs) == 1 else {}) or {}
    return out + "<h3>Time per stage</h3>" + _timing_html(run, stage_counts)


def _utc(stamp) -> str:
    """`2026-01-01T00:00:20+00:00` -> `2026-01-01 00:00:20` (the column says UTC); anything else as it is."""
    text = str(stamp or "-")
    return text[:19].replace("T", " ") if text.endswith("+00:00") else text


def _history_section(summary: dict) -> str:
    runs = summary.get("runs") or []
    streaming = summary.get("streaming")
    out = ""
    if isinstance(streaming, dict):
        out += (f"<p>A streaming lake: {_n(streaming.get('panes', 0))} panes committed, last window ending "
                f"{_e(streaming.get('last_window_end') or '-')}; "
                f"{'stream finished' if streaming.get('final') else 'stream still running'}.</p>")
    if len(runs) < 2 and not out:
        return '<p class="note">One run wrote this lake: no history to compare.</p>'
    rows, totals = [], {"records_read": 0, "documents": 0, "duplicates": 0, "rejected": 0}
    for i, run in enumerate(runs):
        for key in totals:
            totals[key] += run.get(key) or 0
        wall = (run.get("timing") or {}).get("wall_seconds")
        rows.append((i + 1, str(run.get("run_id", "-"))[:12], run.get("mode", "-"), _utc(run.get("started_at")),
                     _utc(run.get("committed_at")), *(f"+{run.get(k, 0) or 0:,}" for k in totals),
                     f"{totals['documents']:,} / {totals['duplicates']:,} / {totals['rejected']:,}",
                     _seconds(wall) if wall is not None else "not recorded",
                     "pass" if run.get("ok", run.get("reconciled")) else "fail"))
    shown = rows[-MAX_HISTORY:]
    return out + _more(len(rows), len(shown), "earlier runs") + _table(
        ["#", "run", "mode", "started (UTC)", "committed (UTC)", "read", "documents", "duplicates", "rejected",
         "lake after (docs / dups / rejected)", "wall time", "checks"], shown, numeric=(0, 5, 6, 7, 8))


def _funnel_section(summary: dict, totals: tuple, rejected: list) -> str:
    n_docs, n_dups, n_rej = totals
    read = summary.get("records_read", n_docs + n_dups + n_rej)
    stages = summary.get("stages") or {}
    steps = [(name, c.get("out", 0), c.get("rejected", 0), c.get("duplicates", 0)) for name, c in stages.items()]
    out = funnel_chart(read, steps, totals, "where the records went: each stage, then the outcome")
    by_stage: dict = {}
    for stage, reason, n in rejected:
        by_stage.setdefault(stage, []).append(f"{reason} {n:,}")
    if stages:
        rows = [(name, c.get("in"), c.get("rejected"), ", ".join(by_stage.get(name, [])) or "-",
                 c.get("duplicates", ""), c.get("out")) for name, c in stages.items()]
        out += _table(["stage", "in", "rejected", "rejection reasons", "duplicates", "out"], rows, numeric=(1, 2, 4, 5))
    else:
        out += '<p class="note">No counts per stage in _SUMMARY.json: the funnel shows the outcome only.</p>'
    return out


def _invariants_section(summary: dict) -> str:
    invariants = summary.get("invariants")
    if not isinstance(invariants, dict):
        reconciled = summary.get("reconciled")
        invariants = {"reconciled": reconciled} if reconciled is not None else {}
    if not invariants:
        return '<p class="empty">No invariants recorded in _SUMMARY.json.</p>'
    rows = []
    for key, value in invariants.items():
        passed = value is True or value == 0 or value == [] or value is None
        detail = ("; ".join(map(str, value[:5])) + (f" +{len(value) - 5} more" if len(value) > 5 else "")
                  if isinstance(value, list) else _n(value)) or "none"
        rows.append((f'<span class="{"pass" if passed else "fail"}">{"PASS" if passed else "FAIL"}</span>',
                     _e(key), _e(INVARIANT_CHECKS.get(key, key.replace("_", " "))), _e(detail)))
    return (_table(["", "check", "what it means", "found"], rows, raw=(0, 1, 2, 3))
            + '<p class="note">Checked by every run as it commits (docs/guarantees.md, section 1).</p>')


def _sources_section(data: dict) -> str:
    per_site, per_file = data["per_site"], data["per_file"]
    site_rows = [(s, n, c, _pct(c, n + c)) for s, n, c in per_site["rows"]]
    file_rows = [(f, n, d, u, j, _pct(u, n), _pct(j, n)) for f, n, d, u, j in per_file["rows"]]
    return (bar_chart(data["sources"], f"documents per site (top {TOP_ROWS})", COLORS[3])
            + f"<h3>Duplicate rate per site (top {TOP_ROWS})</h3>"
            + '<p class="note">A copy counts for the site of the article it copies (the lake keeps no site for '
              "a copy).</p>"
            + (_table(["site", "documents", "copies dropped", "duplicate rate"], site_rows, numeric=(1, 2, 3))
               if site_rows else '<p class="empty">No documents.</p>')
            + _more(per_site["total"], len(site_rows), "sites")
            + f"<h3>Duplicate and rejection rate per input file (top {TOP_ROWS})</h3>"
            + (_table(["input file", "records", "documents", "duplicates", "rejected", "duplicate rate",
                       "rejection rate"], file_rows, numeric=(1, 2, 3, 4, 5, 6))
               if file_rows else '<p class="empty">No records.</p>')
            + _more(per_file["total"], len(file_rows), "input files"))


def _length_section(data: dict) -> str:
    words = data["words"]
    q1, median, q3, peak = words["quartiles"]
    note = (f"<p>Median {_n(median)} words (quartiles {_n(q1)} and {_n(q3)}; longest {_n(peak)}).</p>"
            if median is not None else "")
    return bar_chart([b for b in words["bins"]], "documents per words-per-article bin", COLORS[4]) + note


def _boilerplate_section(summary: dict) -> str:
    rules = summary.get("boilerplate_lines_removed") or {}
    ranked = sorted(rules.items(), key=lambda kv: (-kv[1], kv[0]))
    out = [bar_chart(ranked, "boilerplate lines removed per rule", COLORS[2])]
    samples = summary.get("boilerplate_removed_lines") or {}
    if samples:
        rows = []
        for rule, _ in ranked:
            top = sorted((samples.get(rule) or {}).items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            rows += [(rule, line, n) for line, n in top]
        out.append("<h3>Most frequent removed lines</h3>" + _table(["rule", "line", "times"], rows, numeric=(2,)))
    elif ranked:
        out.append('<p class="empty">The lines themselves are not stored in this lake; the rules are in '
                   "<code>transforms/rules/boilerplate.toml</code> (plus any <code>--rules</code> file).</p>")
    return "".join(out)


def word_diff(kept: str, copy: str, context: int = 8, max_words: int = DIFF_WORDS) -> str:
    """HTML of a word-level diff of `copy` against `kept` (their first `max_words` words): removed words in
    <del>, added in <ins>, long unchanged stretches cut to `context` words on each side."""
    a, b = kept.split()[:max_words], copy.split()[:max_words]
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            words = a[i1:i2]
            if len(words) > 2 * context + 1:
                words = words[:context] + ["…"] + words[-context:]
            out.append(_e(" ".join(words)))
            continue
        if i2 > i1:
            out.append(f"<del>{_e(' '.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{_e(' '.join(b[j1:j2]))}</ins>")
    return " ".join(out)


def _excerpt(text: Optional[str]) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= EXCERPT else text[:EXCERPT - 1] + "…"


def _cluster_html(cluster: dict) -> str:
    kept, kept_text = cluster["kept"], ""
    words = [cluster["kept_id"], cluster["kinds"] or ""]
    if kept:
        doc_id, title, source, url, published, location, kept_text = kept
        words += [title or "", source or "", url or ""]
        card = (f'<div class="copy kept"><b>kept: {_e(title or doc_id)}</b><small>{_e(doc_id)} · {_e(source)} · '
                f'{_e(published or "no date")} · {_e(location)}</small><p>{_e(_excerpt(kept_text))}</p></div>')
    else:
        card = f'<div class="copy kept"><b>kept: {_e(cluster["kept_id"])}</b></div>'
    copies = []
    for copy in cluster["copies"]:
        words += [copy["doc_id"], copy.get("title") or ""]
        head = (f'<b>{_e(copy.get("title") or copy["doc_id"])}</b><small>{_e(copy["doc_id"])} · {_e(copy["kind"])} '
                f'copy, similarity {copy["similarity"]:.2f} · {_e(copy["location"])}</small>')
        if "text" not in copy:
            body = '<p class="note">Text not stored in the lake; its input record could not be read back here.</p>'
        elif copy["kind"] == "near" and kept_text:
            body = f"<p>{word_diff(kept_text, copy['text'])}</p>"
        else:
            body = f"<p>{_e(_excerpt(copy['text']))}</p>"
        copies.append(f'<div class="copy">{head}{body}</div>')
    more = cluster["size"] - 1 - len(cluster["copies"])
    if more > 0:
        copies.append(f'<div class="copy"><small>and {more:,} more copies: <code>wirewash query LAKE "SELECT * FROM '
                      f"duplicates WHERE duplicate_of = '{_e(cluster['kept_id'])}'\"</code></small></div>")
    search = _e(" ".join(words).lower())
    return (f'<article class="cl" data-q="{search}"><h3>{cluster["size"]:,} copies of {_e(cluster["kept_id"])} '
            f'<small class="note">({_e(cluster["kinds"])})</small></h3>'
            f'<div class="copies">{card}{"".join(copies)}</div></article>')


def _clusters_section(data: dict) -> str:
    total, embedded, listed = data["n_clusters"], data["clusters"], data["listed_clusters"]
    if not total:
        return '<p class="empty">No duplicates.</p>'
    items = [_cluster_html(c) for c in embedded]
    for kept_id, size, kinds, low, title, source in listed:
        search = _e(" ".join(str(v or "") for v in (kept_id, kinds, title, source)).lower())
        items.append(f'<li class="cl" data-q="{search}">{size:,} copies of <code>{_e(kept_id)}</code> '
                     f'{_e(title or "")} <small class="note">{_e(source or "")} · {_e(kinds)}, lowest similarity '
                     f"{low:.2f}</small></li>")
    cards, rows = "".join(items[:len(embedded)]), "".join(items[len(embedded):])
    in_page = len(embedded) + len(listed)
    note = (f"<p>{total:,} clusters in the lake, largest first. The largest {len(embedded):,} are shown with the kept "
            f"article and each copy (a near copy as a word diff of its first {DIFF_WORDS} words against the kept text: <del>removed</del>, "
            f"<ins>added</ins>); " + (f"the next {len(listed):,} by id and title" if listed else "")
            + (f"; the other {total - in_page:,} only in the lake: <code>wirewash query LAKE \"SELECT duplicate_of, "
               "count(*) + 1 AS copies FROM duplicates GROUP BY 1 ORDER BY 2 DESC\"</code>" if total > in_page else "")
            + ". A copy's title and text are not stored in the lake: they are read back from its input file when "
              "that file is still reachable, and cleaned again with the packaged rules.</p>")
    tools = ('<div class="tools" id="cl-tools" hidden><input id="cl-filter" type="search" '
             'placeholder="filter clusters by id, title, site, kind" aria-label="filter clusters"> '
             '<button id="cl-prev" type="button">previous</button> <button id="cl-next" type="button">next</button> '
             f'<span id="cl-info">showing {min(PAGE_SIZE, in_page):,} of {in_page:,} clusters</span></div>')
    return (bar_chart(data["duplicate_kinds"], "duplicates by kind", COLORS[0]) + note + tools + cards
            + (f'<ul class="listed">{rows}</ul>' if rows else ""))


def _rejected_section(data: dict) -> str:
    if not data["rejected"]:
        return '<p class="empty">No record was rejected.</p>'
    rows = [(stage, reason, n, " | ".join(f"{loc}: {text}" for loc, text in data["rejected_examples"].get((stage, reason), [])))
            for stage, reason, n in data["rejected"]]
    return (bar_chart([(f"{stage}: {reason}", n) for stage, reason, n in data["rejected"]],
                      "rejected records by stage and reason", COLORS[5])
            + _table(["stage", "reason", "records", "examples (file:line: excerpt)"], rows, numeric=(2,)))


def _dictionary_section(data: dict) -> str:
    out = []
    for table, columns in data["columns"].items():
        meanings = COLUMN_MEANINGS[table]
        rows = [(f"<code>{_e(name)}</code>", _e(kind), _e(meanings.get(name, "-"))) for name, kind in columns]
        out.append(f"<h3><code>{table}</code></h3>" + _table(["column", "type", "meaning"], rows, raw=(0, 1, 2)))
    where = ("columns of the files (ingest layout; its partition folder is <code>ingest_date</code>)"
             if _layout(data) == INGEST else "partition folders, not stored in the files")
    return (f"<p class=\"note\">Types as DuckDB reads the Parquet files; <code>lang</code> and <code>date</code> are "
            f"{where}.</p>" + "".join(out))


def _layout(data: dict) -> str:
    return layout_of(data["summary"])


def _timeline_section(data: dict, summary: dict) -> tuple[str, str]:
    unit, buckets = timeline(data["days"])
    folders = (summary.get("layout") or {}).get("partition_by")
    held = "the lake's <code>date</code> column holds days" if folders == INGEST else (
        f"the lake's <code>date=</code> folders hold {folders}s")
    folders = "day" if folders == INGEST else folders
    note = (f'<p class="note">One column per publication {unit} (UTC)'
            + (f"; {held}" if folders else "")
            + (f", grouped by {unit} to fit the span" if folders and folders != unit else "") + ".</p>")
    if data["unknown_days"]:
        note += (f"<p>{_n(data['unknown_days'])} documents have no publication date (<code>date</code> "
                 "<code>unknown</code>).</p>")
    return unit, column_chart(buckets, f"documents per publication {unit} (UTC)") + note


def render_report(data: dict, generated_at: Optional[str] = None) -> str:
    """The HTML page for `collect(lake)`'s data."""
    summary = data["summary"]
    n_docs, n_dups, n_rej = data["totals"]
    read = summary.get("records_read", n_docs + n_dups + n_rej)
    reconciled = summary.get("reconciled", read == n_docs + n_dups + n_rej)
    generated_at = generated_at or datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    cards = "".join(f'<div class="card">{label}<b>{_n(value)}</b></div>' for label, value in (
        ("records read", read), ("documents", n_docs), ("duplicates", n_dups), ("rejected", n_rej),
        ("languages", len(data["languages"])), ("sources", data["n_sources"])))
    status = ('<span class="ok">every record accounted for</span>' if reconciled else
              '<span class="bad">counts do not reconcile: see _SUMMARY.json</span>')
    unit, over_time = _timeline_section(data, summary)
    sections = [
        ("run", "Run details", _run_section(summary)),
        ("funnel", "Where the records went", _funnel_section(summary, data["totals"], data["rejected"])),
        ("checks", "Invariants", _invariants_section(summary)),
        ("history", "Run history", _history_section(summary)),
        ("languages", "Languages", bar_chart(data["languages"][:TOP_LANGUAGES], "documents per language"
                                             + (f" (top {TOP_LANGUAGES})" if len(data["languages"]) > TOP_LANGUAGES
                                                else ""), COLORS[1])
         + _more(len(data["languages"]), TOP_LANGUAGES, "languages")
         + (bar_chart(data["confidence"], "documents per language confidence (lang_prob)", COLORS[1])
            if data["confidence"] else '<p class="note">Language confidence: not stored in this lake.</p>')),
        ("time", f"Documents per {unit}", over_time),
        ("length", "Words per article", _length_section(data)),
        ("sources", "Sources", _sources_section(data)),
        ("clusters", "Duplicate clusters, largest first", _clusters_section(data)),
        ("boilerplate", "Boilerplate removed", _boilerplate_section(summary)),
        ("rejected", "Rejected records", _rejected_section(data)),
        ("dictionary", "Data dictionary", _dictionary_section(data)),
    ]
    nav = "<nav>" + "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title, _ in sections) + "</nav>"
    body = "".join(f'<section id="{key}"><h2>{_e(title)}</h2>{content}</section>' for key, title, content in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>wirewash report: {_e(os.path.basename(data['lake']))}</title><style>{_CSS}</style>"
            f"<script>{_ERROR_SCRIPT}</script></head>"
            f"<body><main><h1>wirewash run report</h1>"
            f'<div class="meta">lake <code>{_e(data["lake"])}</code> · generated {_e(generated_at)} · {status}</div>'
            f'<div class="cards">{cards}</div>{nav}{body}</main><script>{_SCRIPT}</script></body></html>\n')


def write_report(lake: str, out: Optional[str] = None) -> str:
    """Writes the report (default LAKE/_REPORT.html) and returns its path."""
    page = render_report(collect(lake))
    path = out or os.path.join(lake, REPORT_FILE)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(page)
    os.replace(tmp, path)
    return path
