"""`wirewash report`: the page's content comes from the lake, it is self-contained, and a real browser
(headless Chromium, Debian's `chromium` package) lays out every chart."""
from __future__ import annotations

import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.report import REPORT_FILE, bar_chart, collect, render_report, timeline
from tests.helpers import ARTICLE_DE, ARTICLE_EN, ARTICLE_VI, write_jsonl

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

RECORDS = [
    {"id": "en", "source": "a.example", "published": "2024-03-01T08:00:00Z", "text": ARTICLE_EN},
    {"id": "en-2", "source": "b.example", "published": "2024-03-04T08:00:00Z", "text": ARTICLE_EN},
    {"id": "en-3", "source": "b.example", "published": "2024-03-05T08:00:00Z",
     "text": "Sign up now: Get our newsletters delivered to your inbox\n\n" + ARTICLE_EN},
    {"id": "vi", "source": "c.example", "published": "2024-03-03", "text": ARTICLE_VI},
    {"id": "vi-2", "source": "c.example", "published": "2024-03-06", "text": ARTICLE_VI},
    {"id": "de", "source": "<script>alert(1)</script>", "text": ARTICLE_DE + "\n\nRead more: Other news"},
    "{not json",
    {"id": "blank", "text": " "},
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    lake = folder / "lake"
    assert main(["run", "--input", str(write_jsonl(folder / "in.jsonl", RECORDS)), "--output", str(lake),
                 "--quiet"]) == 0
    assert main(["report", str(lake), "--quiet"]) == 0
    return lake / REPORT_FILE


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.svgs = [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag == "svg" and ("class", "chart") in attrs:
            self.svgs += 1


def test_report_content_comes_from_the_lake(report):
    lake = report.parent
    data = collect(str(lake))
    assert data["totals"] == (3, 3, 2)
    assert data["languages"] == [("de", 1), ("en", 1), ("vi", 1)]
    assert data["days"] == [("2024-03", 2)] and data["unknown_days"] == 1  # month partitions
    # largest duplicate cluster first, its copies listed
    assert [(c["kept_id"], c["size"]) for c in data["clusters"]] == [("en", 3), ("vi", 2)]
    assert sorted(c[0] for c in data["clusters"][0]["copies"]) == ["en-2", "en-3"]
    page = report.read_text()
    for heading in ("Counts per stage", "Languages", "Documents per day", "Documents per source",
                    "Duplicate clusters, largest first", "Boilerplate removed", "Rejected records"):
        assert f"<h2>{heading}</h2>" in page
    assert "3 copies of en" in page and "bad_json" in page and "empty_text" in page
    assert re.search(r"read_more<title>read_more</title></text><rect class=\"mark\"", page)


def test_report_is_self_contained_and_escaped(report):
    page = report.read_text()
    parsed = _Elements()
    parsed.feed(page)
    assert parsed.svgs >= 6
    assert not {"img", "link", "iframe", "object", "embed"} & set(parsed.tags)
    assert not [v for k, v in parsed.attrs if k in ("src", "href")]
    assert "http://" not in page and "https://" not in page and "url(" not in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the layout check


def test_timeline_fills_gaps_and_switches_to_months():
    assert timeline([("2024-03-01", 2), ("2024-03-04", 1)]) == (
        "day", [("2024-03-01", 2), ("2024-03-02", 0), ("2024-03-03", 0), ("2024-03-04", 1)])
    unit, months = timeline([("2023-11-30", 1), ("2024-02-02", 2), ("2024-06-01", 3)])
    assert unit == "month" and months[0] == ("2023-11", 1) and months[3] == ("2024-02", 2) and len(months) == 8
    assert timeline([]) == ("day", [])


def test_bar_chart_scales_to_the_largest_value():
    svg = bar_chart([("a", 10), ("b", 5), ("c", 0)], "t")
    widths = [float(w) for w in re.findall(r'class="mark" x="\d+" y="[\d.]+" width="([\d.]+)"', svg)]
    assert widths[0] == pytest.approx(2 * widths[1]) and widths[2] < 1
    assert "nothing to show" in bar_chart([], "empty")


def test_most_frequent_removed_lines_when_the_summary_has_them(report):
    """Lakes whose _SUMMARY.json carries `boilerplate_removed_lines` (every batch run writes it) get the
    table; older lakes without it say it is absent."""
    data = collect(str(report.parent))
    assert "Most frequent removed lines" in render_report(data)
    data["summary"].pop("boilerplate_removed_lines", None)
    assert "The lines themselves are not stored" in render_report(data)
    data["summary"]["boilerplate_removed_lines"] = {"read_more": {"Read more: Other news": 4, "Read more: x": 1}}
    page = render_report(data)
    assert "Most frequent removed lines" in page
    assert "<tr><td>read_more</td><td>Read more: Other news</td><td class=\"n\">4</td></tr>" in page


def test_report_of_a_clean_lake_says_so(tmp_path, seeds_dir):
    lake = tmp_path / "lake"
    assert main(["run", "--input", str(seeds_dir), "--output", str(lake), "--quiet"]) == 0
    page = render_report(collect(str(lake)))
    assert "No duplicates." in page and "No record was rejected." in page and "every record accounted for" in page


def test_report_renders_in_headless_chromium(report, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (Debian's chromium package; .ci/run installs it with apt-get)")
    page = report.read_text()
    expected = page.count('<svg class="chart"')
    profile = tmp_path / "profile"
    profile.mkdir()
    result = subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
         "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    body = re.search(r"<body[^>]*>", result.stdout)
    assert body, result.stdout[:500]
    # The page's own script counts the charts whose every bar the browser laid out with a non-zero size.
    assert f'data-charts="{expected}"' in body.group(0) and f'data-charts-drawn="{expected}"' in body.group(0)
    assert expected >= 6
