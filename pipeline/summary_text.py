"""The run summary as text: what `wirewash run` prints when a run ends, in under 100 columns.

    wirewash: 5 records read -> 5 documents, 0 duplicates, 0 rejected in 6.3 s
      lake: /tmp/lake
      stage                in  rejected        out duplicates
      read                  5         0          5
      ...
      languages: en 3, de 1, vi 1
      boilerplate lines removed: read_more 3, rating 2, +7 more
    next:
      wirewash query /tmp/lake "SELECT lang, count(*) FROM documents GROUP BY lang"
      wirewash report /tmp/lake

Pure functions over the `_SUMMARY.json` dict; no Beam. Every line fits in `WIDTH` columns, except the
lines that carry the lake's path when that path alone is longer.
"""
from __future__ import annotations

import shlex
from typing import Optional

__all__ = ["WIDTH", "summary_lines", "ranked_list", "next_commands", "NEXT_QUERY"]

WIDTH = 99  # columns a line may take (a 100-column terminal never wraps it)
NEXT_QUERY = "SELECT lang, count(*) FROM documents GROUP BY lang"  # no quote, $ or backslash: safe in "..."
_LISTS = (("languages", "languages"), ("boilerplate lines removed", "boilerplate_lines_removed"),
          ("duplicates by kind", "duplicate_kinds"), ("rejected by reason", "rejected_reasons"))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def ranked_list(title: str, counts: dict, width: int = WIDTH) -> Optional[str]:
    """`  title: a 9, b 4, +N more` with the most frequent first (ties by name), as many items as fit in
    `width` columns with room for the "+N more"; None when `counts` is empty."""
    if not counts:
        return None
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    head = f"  {title}: "
    items = [f"{k} {v}" for k, v in ranked]
    shown: list[str] = []
    for i, item in enumerate(items):
        rest = len(items) - i - 1
        more = f", +{rest} more" if rest else ""
        line = head + ", ".join(shown + [item])
        if len(line + more) <= width:
            shown.append(item)
            continue
        if not shown:  # not even one item fits: the first one, clipped
            shown.append(_clip(item, width - len(head) - len(f", +{len(items) - 1} more")))
        break
    hidden = len(items) - len(shown)
    return head + ", ".join(shown) + (f", +{hidden} more" if hidden else "")


def next_commands(output: str) -> list[str]:
    """The commands worth running on the new lake, ready to paste (the path quoted for a POSIX shell)."""
    lake = shlex.quote(output)
    return [f'wirewash query {lake} "{NEXT_QUERY}"', f"wirewash report {lake}"]


def summary_lines(summary: dict, output: str, seconds: float, width: int = WIDTH) -> list[str]:
    """The end-of-run printout of a run summary (see the module docstring): totals and time, the lake, the
    counts per stage, the top languages, rules, duplicate kinds and rejection reasons, the next commands."""
    outcome = f"{summary['documents']} documents, {summary['duplicates']} duplicates, {summary['rejected']} rejected"
    head = f"wirewash: {summary['records_read']} records read -> {outcome} in {seconds:.1f} s"
    if len(head) > width:  # big counts: the outcome on a line of its own
        head = f"wirewash: {summary['records_read']} records read in {seconds:.1f} s ->\n  {outcome}"
    lines = head.splitlines() + [f"  lake: {output}"]
    stages = summary.get("stages") or {}
    if stages:
        dups = any("duplicates" in c for c in stages.values())
        lines.append(f"  {'stage':<12} {'in':>10} {'rejected':>9} {'out':>10}" + (f" {'duplicates':>10}" if dups else ""))
        for stage, counts in stages.items():
            extra = f" {counts['duplicates']:>10}" if "duplicates" in counts else ""
            lines.append(_clip(f"  {_clip(str(stage), 12):<12} {counts['in']:>10} {counts['rejected']:>9} "
                               f"{counts['out']:>10}{extra}", width))
    for title, key in _LISTS:
        line = ranked_list(title, summary.get(key) or {}, width)
        if line:
            lines.append(line)
    lines.append("next:")
    lines.extend(f"  {command}" for command in next_commands(output))
    return lines
