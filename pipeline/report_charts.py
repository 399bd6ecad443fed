"""The report's charts (inline SVG, no script library) and its timeline of publication periods: pure
functions over plain (label, value) lists."""
from __future__ import annotations

import html
import re
from datetime import date
from typing import Optional

__all__ = ["bar_chart", "column_chart", "funnel_chart", "timeline", "parse_date_label", "UNITS", "COLORS"]

COLORS = ("#3d6fd8", "#17803d", "#c2410c", "#7c3aed", "#0e7490", "#b42318")


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def bar_chart(items: list, title: str, color: str = COLORS[0], width: int = 720) -> str:
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


def column_chart(items: list, title: str, color: str = COLORS[4], width: int = 1000, height: int = 220) -> str:
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



def _segments(parts: list, x0: float, y: float, h: float, scale: float) -> tuple[list, float]:
    """Stacked rects for (label, value, color) parts from x0; zero values draw nothing."""
    out, x = [], x0
    for label, value, color in parts:
        if value <= 0:
            continue
        w = max(1.0, value * scale)
        out.append(f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h}" fill="{color}">'
                   f"<title>{_e(label)}: {value:,}</title></rect>")
        x += w
    return out, x


FUNNEL_COLORS = {"kept": COLORS[0], "documents": COLORS[1], "duplicates": COLORS[2], "rejected": COLORS[5]}


def funnel_chart(read: int, stages: list, outcome: tuple, title: str, width: int = 1000) -> str:
    """Records read, then per stage (name, out, rejected, duplicates) what goes on and what leaves, then the
    outcome (documents, duplicates, rejected) as one stacked bar: a funnel, every bar on one scale."""
    if not read:
        return f'<p class="empty">{_e(title)}: no record was read.</p>'
    row, label_w, text_w, top = 26, 130, 300, 46
    scale = (width - label_w - text_w) / read
    rows = [("records read", [("read", read, FUNNEL_COLORS["kept"])], f"{read:,}")]
    for name, out, rejected, duplicates in stages:
        note = f"{out:,} on" + (f", {rejected:,} rejected" if rejected else "") + (
            f", {duplicates:,} duplicates" if duplicates else "")
        rows.append((name, [("go on", out, FUNNEL_COLORS["kept"]), ("rejected", rejected, FUNNEL_COLORS["rejected"]),
                            ("duplicates", duplicates, FUNNEL_COLORS["duplicates"])], note))
    docs, dups, rej = outcome
    rows.append(("outcome", [("documents", docs, FUNNEL_COLORS["documents"]),
                             ("duplicates", dups, FUNNEL_COLORS["duplicates"]),
                             ("rejected", rej, FUNNEL_COLORS["rejected"])],
                 f"{docs:,} documents, {dups:,} duplicates, {rej:,} rejected"))
    height = top + row * len(rows) + 8
    parts = [f'<svg class="chart funnel" role="img" aria-label="{_e(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">', f'<text x="8" y="18" font-weight="600" font-size="13">{_e(title)}</text>']
    x = 8
    for name, color in (("goes on", COLORS[0]), ("document", COLORS[1]), ("duplicate", COLORS[2]),
                        ("rejected", COLORS[5])):
        parts.append(f'<rect x="{x}" y="27" width="10" height="10" fill="{color}"/>'
                     f'<text x="{x + 14}" y="36" font-size="11">{name}</text>')
        x += 24 + 7 * len(name)
    for i, (name, segments, note) in enumerate(rows):
        y = top + i * row
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">{_e(name)}</text>')
        rects, end = _segments(segments, label_w, y + 3, row - 8, scale)
        parts += rects
        parts.append(f'<text x="{end + 6:.1f}" y="{y + 15}" font-size="12">{_e(note)}</text>')
    parts.append("</svg>")
    return "".join(parts)
