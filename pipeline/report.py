"""`wirewash report LAKE`: LAKE/_REPORT.html, one self-contained page about a run (no network, no script
library, charts as inline SVG).

Everything comes from one snapshot of the lake (pipeline/query.py): `_SUMMARY.json` for the counts per
stage and per boilerplate rule, DuckDB over the Parquet files it commits for languages, documents per source
and over time, duplicate clusters and rejected records. Documents over time follow what the `date=` folders
hold (days, months or years; the chart says which), coarsened when the span is long. If `_SUMMARY.json` holds
`boilerplate_removed_lines` ({rule: {line: count}}), the most frequent removed lines are listed per rule.
"""
from __future__ import annotations

import html
import os
import re
from datetime import date, datetime, timezone
from typing import Optional

from wirewash.pipeline.query import lake_snapshot, open_lake

__all__ = ["REPORT_FILE", "write_report", "render_report", "bar_chart", "column_chart", "collect", "timeline",
           "parse_date_label"]

REPORT_FILE = "_REPORT.html"
TOP_SOURCES = 20
TOP_CLUSTERS = 10
EXAMPLES_PER_REASON = 3
EXCERPT = 280

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d9dde3;padding-bottom:4px}
.meta{color:#5b6472;margin-bottom:16px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:10px 16px;min-width:130px}
.card b{display:block;font-size:22px} .ok{color:#17803d} .bad{color:#b42318}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px} td,th{border:1px solid #d9dde3;padding:4px 8px;
text-align:left;vertical-align:top} th{background:#eef0f3} td.n{text-align:right;font-variant-numeric:tabular-nums}
svg.chart{background:#fff;border:1px solid #d9dde3;border-radius:6px;display:block;margin:6px 0 12px}
.cluster{display:flex;gap:10px;overflow-x:auto;margin:8px 0 16px}
.copy{background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:8px 10px;min-width:220px;max-width:320px;flex:0 0 auto}
.copy.kept{border-color:#17803d} .copy small{color:#5b6472;display:block} .copy p{margin:6px 0 0;font-size:13px}
code{background:#eef0f3;padding:0 3px;border-radius:3px}
.empty{color:#5b6472;font-style:italic}
"""

# Tells whoever opens the page (and the browser test) that every chart was laid out with a real size.
_CHECK_SCRIPT = """
window.addEventListener('load', function () {
  var charts = document.querySelectorAll('svg.chart'), drawn = 0;
  charts.forEach(function (svg) {
    var box = svg.getBoundingClientRect(), marks = svg.querySelectorAll('rect.mark');
    var sized = Array.prototype.filter.call(marks, function (m) { return m.getBBox().width > 0 && m.getBBox().height > 0; });
    if (box.width > 0 && box.height > 0 && sized.length === marks.length) { drawn += 1; }
  });
  document.body.setAttribute('data-charts', charts.length);
  document.body.setAttribute('data-charts-drawn', drawn);
});
"""

_COLORS = ("#3d6fd8", "#17803d", "#c2410c", "#7c3aed", "#0e7490", "#b42318")


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _n(value) -> str:
    return f"{value:,}" if isinstance(value, int) else _e(value)


def bar_chart(items: list, title: str, color: str = _COLORS[0], width: int = 720) -> str:
    """A horizontal bar chart (inline SVG) of (label, value) pairs, in the order given."""
    if not items:
        return f'<p class="empty">{_e(title)}: nothing to show.</p>'
    row, label_w, pad = 22, 210, 8
    top = 28
    height = top + row * len(items) + pad
    peak = max(v for _, v in items) or 1
    plot_w = width - label_w - 70
    parts = [f'<svg class="chart" role="img" aria-label="{_e(title)}" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f'<text x="{pad}" y="18" font-weight="600" font-size="13">{_e(title)}</text>']
    for i, (label, value) in enumerate(items):
        y = top + i * row
        w = max(1.0, plot_w * value / peak) if value else 0.5
        text = str(label) if len(str(label)) <= 32 else str(label)[:31] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">{_e(text)}'
                     f'<title>{_e(label)}</title></text>')
        parts.append(f'<rect class="mark" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" '
                     f'fill="{color}"><title>{_e(label)}: {value:,}</title></rect>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 15}" font-size="12">{value:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def column_chart(items: list, title: str, color: str = _COLORS[4], width: int = 1000, height: int = 220) -> str:
    """A column chart (inline SVG) of (label, value) pairs in order, e.g. documents per day."""
    if not items:
        return f'<p class="empty">{_e(title)}: nothing to show.</p>'
    left, top, bottom, right = 48, 28, 40, 12
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(v for _, v in items) or 1
    step = plot_w / len(items)
    bar_w = max(1.0, step * 0.8)
    parts = [f'<svg class="chart" role="img" aria-label="{_e(title)}" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f'<text x="8" y="18" font-weight="600" font-size="13">{_e(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#8a93a1"/>',
             f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" font-size="11">{peak:,}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>']
    label_every = max(1, len(items) // 8)
    for i, (label, value) in enumerate(items):
        h = max(1.0, plot_h * value / peak) if value else 0.5
        x = left + i * step + (step - bar_w) / 2
        parts.append(f'<rect class="mark" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                     f'height="{h:.1f}" fill="{color}"><title>{_e(label)}: {value:,}</title></rect>')
        if i % label_every == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                         f'font-size="11">{_e(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


_DATE_LABEL = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")
UNITS = ("year", "month", "day")  # the granularities a `date=` folder can hold, coarsest first


def parse_date_label(label) -> Optional[tuple]:
    """`YYYY`, `YYYY-MM` or `YYYY-MM-DD` -> (year,), (year, month) or (year, month, day); None otherwise
    (`unknown`, or anything that is not a real date)."""
    match = _DATE_LABEL.fullmatch(str(label))
    if not match:
        return None
    parts = tuple(int(g) for g in match.groups() if g is not None)
    try:
        date(parts[0], *(parts[1:] + (1, 1)[len(parts) - 1:]))
    except ValueError:
        return None
    return parts


def _index(key: tuple) -> int:
    if len(key) == 1:
        return key[0]
    if len(key) == 2:
        return key[0] * 12 + key[1] - 1
    return date(*key).toordinal()


def _label(index: int, level: int) -> str:
    if level == 1:
        return f"{index:04d}"
    if level == 2:
        return f"{index // 12:04d}-{index % 12 + 1:02d}"
    return date.fromordinal(index).isoformat()


def timeline(dates: list, max_buckets: int = 120) -> tuple[str, list]:
    """(unit, [(label, count)]) with the gaps filled by zeros, for (date label, count) pairs as the `date=`
    folders hold them (days, months or years; labels that are no date are left out). The unit is the finest
    that every label has, coarsened (day -> month -> year) until the span fits in `max_buckets`."""
    parsed = [(key, n) for label, n in dates if (key := parse_date_label(label))]
    if not parsed:
        return "day", []
    level = min(len(key) for key, _ in parsed)
    while True:
        counts: dict = {}
        for key, n in parsed:
            counts[_index(key[:level])] = counts.get(_index(key[:level]), 0) + n
        first, last = min(counts), max(counts)
        if last - first < max_buckets or level == 1:
            break
        level -= 1
    return UNITS[level - 1], [(_label(i, level), counts.get(i, 0)) for i in range(first, last + 1)]


def _rows(con, sql: str, *params) -> list:
    return con.execute(sql, list(params)).fetchall()


def collect(lake: str) -> dict:
    """Everything the report shows, from one snapshot of the lake (its summary, and DuckDB over the files
    that summary commits)."""
    snapshot = lake_snapshot(lake)
    with open_lake(lake, snapshot) as con:
        return _collect(con, snapshot)


def _collect(con, snapshot) -> dict:
    summary = snapshot.summary
    clusters = []
    for kept_id, n in _rows(con, "SELECT duplicate_of, count(*) AS n FROM duplicates GROUP BY 1 "
                                 "ORDER BY n DESC, duplicate_of LIMIT ?", TOP_CLUSTERS):
        kept = _rows(con, "SELECT doc_id, title, source, url, CAST(published_at AS VARCHAR), source_location, "
                          "left(text, ?) FROM documents WHERE doc_id = ? LIMIT 1", EXCERPT, kept_id)
        copies = _rows(con, "SELECT doc_id, kind, similarity, source_location FROM duplicates "
                            "WHERE duplicate_of = ? ORDER BY similarity DESC, doc_id LIMIT 12", kept_id)
        clusters.append({"kept_id": kept_id, "size": n + 1, "kept": kept[0] if kept else None, "copies": copies})
    examples = {}
    for stage, reason, location, text in _rows(
            con, "SELECT stage, reason, source_location, excerpt FROM (SELECT *, row_number() OVER "
                 "(PARTITION BY stage, reason ORDER BY source_location) AS k FROM rejected) WHERE k <= ? "
                 "ORDER BY stage, reason, source_location", EXAMPLES_PER_REASON):
        examples.setdefault((stage, reason), []).append((location, text))
    dates = _rows(con, "SELECT date, count(*) FROM documents GROUP BY 1 ORDER BY 1")
    return {
        "lake": snapshot.lake,
        "summary": summary,
        "totals": _rows(con, "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM duplicates), "
                             "(SELECT count(*) FROM rejected)")[0],
        "languages": _rows(con, "SELECT lang, count(*) AS n FROM documents GROUP BY 1 ORDER BY n DESC, lang"),
        "days": [(d, n) for d, n in dates if parse_date_label(d)],
        "unknown_days": sum(n for d, n in dates if not parse_date_label(d)),
        "sources": _rows(con, "SELECT coalesce(source, '(no source)'), count(*) AS n FROM documents GROUP BY 1 "
                              "ORDER BY n DESC, 1 LIMIT ?", TOP_SOURCES),
        "n_sources": _rows(con, "SELECT count(DISTINCT source) FROM documents")[0][0],
        "duplicate_kinds": _rows(con, "SELECT kind, count(*) AS n FROM duplicates GROUP BY 1 ORDER BY n DESC, kind"),
        "clusters": clusters,
        "rejected": _rows(con, "SELECT stage, reason, count(*) AS n FROM rejected GROUP BY 1, 2 "
                               "ORDER BY n DESC, stage, reason"),
        "rejected_examples": examples,
    }


def _table(headers: list, rows: list, numeric: tuple = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{_n(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>"
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _stages_section(summary: dict) -> str:
    stages = summary.get("stages") or {}
    if not stages:
        return '<p class="empty">No _SUMMARY.json: counts per stage unknown.</p>'
    rows = [(name, c.get("in"), c.get("rejected"), c.get("duplicates", ""), c.get("out")) for name, c in stages.items()]
    chart = bar_chart([(name, c.get("out", 0)) for name, c in stages.items()], "records leaving each stage")
    return chart + _table(["stage", "in", "rejected", "duplicates", "out"], rows, numeric=(1, 2, 3, 4))


def _boilerplate_section(summary: dict) -> str:
    rules = summary.get("boilerplate_lines_removed") or {}
    ranked = sorted(rules.items(), key=lambda kv: (-kv[1], kv[0]))
    out = [bar_chart(ranked, "boilerplate lines removed per rule", _COLORS[2])]
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


def _cluster_html(cluster: dict) -> str:
    kept = cluster["kept"]
    if kept:
        doc_id, title, source, url, published, location, text = kept
        card = (f'<div class="copy kept"><b>kept: {_e(title or doc_id)}</b><small>{_e(doc_id)} · {_e(source)} · '
                f'{_e(published or "no date")}</small><small>{_e(location)}</small><p>{_e(text)}…</p></div>')
    else:
        card = f'<div class="copy kept"><b>kept: {_e(cluster["kept_id"])}</b></div>'
    copies = "".join(
        f'<div class="copy"><b>{_e(doc_id)}</b><small>{_e(kind)} copy, similarity {similarity:.2f}</small>'
        f"<small>{_e(location)}</small></div>"
        for doc_id, kind, similarity, location in cluster["copies"])
    more = cluster["size"] - 1 - len(cluster["copies"])
    extra = f'<div class="copy"><small>and {more} more</small></div>' if more > 0 else ""
    return (f"<h3>{cluster['size']} copies of {_e(cluster['kept_id'])}</h3>"
            f'<div class="cluster">{card}{copies}{extra}</div>')


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
    days_note = (f"<p>{_n(data['unknown_days'])} documents have no publication date (partition "
                 "<code>date=unknown</code>).</p>" if data["unknown_days"] else "")
    unit, buckets = timeline(data["days"])
    clusters = "".join(_cluster_html(c) for c in data["clusters"]) or '<p class="empty">No duplicates.</p>'
    rejected_rows = [(stage, reason, n, " | ".join(f"{loc}: {text}" for loc, text in
                                                  data["rejected_examples"].get((stage, reason), [])))
                     for stage, reason, n in data["rejected"]]
    rejected = (bar_chart([(f"{stage}: {reason}", n) for stage, reason, n in data["rejected"]],
                          "rejected records by stage and reason", _COLORS[5])
                + _table(["stage", "reason", "records", "examples (file:line: excerpt)"], rejected_rows, numeric=(2,))
                if data["rejected"] else '<p class="empty">No record was rejected.</p>')
    sections = [
        ("Counts per stage", _stages_section(summary)),
        ("Languages", bar_chart(data["languages"], "documents per language", _COLORS[1])),
        (f"Documents per {unit}", column_chart(buckets, f"documents per publication {unit} (UTC)") + days_note),
        ("Documents per source", bar_chart(data["sources"], f"documents per source (top {TOP_SOURCES})", _COLORS[3])),
        ("Duplicate clusters, largest first",
         bar_chart(data["duplicate_kinds"], "duplicates by kind", _COLORS[0]) + clusters),
        ("Boilerplate removed", _boilerplate_section(summary)),
        ("Rejected records", rejected),
    ]
    body = "".join(f"<section><h2>{_e(title)}</h2>{content}</section>" for title, content in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>wirewash report: {_e(os.path.basename(data['lake']))}</title><style>{_CSS}</style></head>"
            f"<body><main><h1>wirewash run report</h1>"
            f'<div class="meta">lake <code>{_e(data["lake"])}</code> · generated {_e(generated_at)} · {status}</div>'
            f'<div class="cards">{cards}</div>{body}</main><script>{_CHECK_SCRIPT}</script></body></html>\n')


def write_report(lake: str, out: Optional[str] = None) -> str:
    """Writes the report (default LAKE/_REPORT.html) and returns its path."""
    page = render_report(collect(lake))
    path = out or os.path.join(lake, REPORT_FILE)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(page)
    os.replace(tmp, path)
    return path
