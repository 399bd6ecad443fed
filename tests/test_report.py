"""`wirewash report`: the page's content comes from the lake, it is self-contained, and a real browser
(headless Chromium, Debian's `chromium` package) lays out every chart."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirewash.pipeline.cli import main
from wirewash.pipeline.report import REPORT_FILE, bar_chart, collect, parse_date_label, render_report, timeline
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
    assert data["days"] == [("2024-03-01", 1), ("2024-03-03", 1)] and data["unknown_days"] == 1
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


# --- every command on every lake shape (issue 19) ----------------------------------------------------------

DATED = [
    {"id": "en", "source": "a.example", "published": "2023-12-30T08:00:00Z", "text": ARTICLE_EN},
    {"id": "en-2", "source": "b.example", "published": "2024-01-04T08:00:00Z", "text": ARTICLE_EN},
    {"id": "vi", "source": "c.example", "published": "2024-02-03", "text": ARTICLE_VI},
    {"id": "de", "source": "d.example", "published": "2024-03-01", "text": ARTICLE_DE},
    "{not json",
]


def _run(folder: Path, records: list) -> Path:
    lake = folder / "lake"
    assert main(["run", "--input", str(write_jsonl(folder / "in.jsonl", records)), "--output", str(lake),
                 "--quiet"]) == 0
    return lake


def _coarsen(lake: Path, width: int) -> Path:
    """Turns `date=YYYY-MM-DD` folders into `date=<first width characters>` (months or years), as a lake
    partitioned by month or year holds them; the summary's `files` list follows when it has one."""
    for day in sorted((lake / "documents").glob("lang=*/date=*")):
        value = day.name.split("=", 1)[1]
        if value != "unknown" and value[:width] != value:
            target = day.parent / f"date={value[:width]}"
            target.mkdir(exist_ok=True)
            for part in day.iterdir():
                part.rename(target / part.name)
            day.rmdir()
    summary_path = lake / "_SUMMARY.json"
    summary = json.loads(summary_path.read_text())
    if "files" in summary:
        summary["files"]["documents"] = sorted(p.relative_to(lake).as_posix()
                                               for p in (lake / "documents").rglob("*.parquet"))
        summary_path.write_text(json.dumps(summary))
    return lake


def _shape(name: str, folder: Path, seeds: Path) -> Path:
    if name == "undated":
        return _run(folder, RECORDS)
    if name in ("dated", "months", "years"):
        lake = _run(folder, DATED)
        return _coarsen(lake, {"dated": 10, "months": 7, "years": 4}[name])
    if name == "no-documents":
        return _run(folder, ["{not json", {"id": "x", "text": " "}])
    lake = folder / "lake"
    assert main(["run", "--input", str(seeds), "--output", str(lake), "--quiet"]) == 0
    # the commit makes every table's folder, empty or not
    assert not any(any((lake / t).iterdir()) for t in ("duplicates", "rejected"))
    if name == "absent-folders":  # lakes written before empty tables had a folder
        (lake / "duplicates").rmdir()
        (lake / "rejected").rmdir()
    return lake


SHAPES = {  # name: (documents, duplicates, rejected, undated documents, unit of the chart)
    "undated": (3, 3, 2, 1, "day"),
    "dated": (3, 1, 1, 0, "day"),
    "months": (3, 1, 1, 0, "month"),
    "years": (3, 1, 1, 0, "year"),
    "no-documents": (0, 0, 2, 0, "day"),
    "absent-folders": (5, 0, 0, 5, "day"),
    "empty-folders": (5, 0, 0, 5, "day"),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_command_works_on_every_lake_shape(shape, tmp_path, seeds_dir, capsys):
    """report, query and ddl on lakes with and without undated articles, with day, month or year folders,
    without documents, and with empty duplicates/rejected tables (folder absent or empty): `date` is text
    everywhere (a lake whose articles all have a date crashed the report: `invalid date field format`)."""
    n_docs, n_dups, n_rej, undated, unit = SHAPES[shape]
    lake = _shape(shape, tmp_path, seeds_dir)
    capsys.readouterr()
    data = collect(str(lake))
    assert data["totals"] == (n_docs, n_dups, n_rej) and data["unknown_days"] == undated
    assert timeline(data["days"])[0] == unit
    assert main(["report", str(lake), "--quiet"]) == 0
    page = (lake / REPORT_FILE).read_text()
    assert f"<h2>Documents per {unit}</h2>" in page and f"documents per publication {unit} (UTC)" in page
    if data["days"]:
        assert {label for label, _ in timeline(data["days"])[1]} >= {d for d, _ in data["days"]}
    sql = "SELECT typeof(lang), typeof(date), count(*) FROM documents WHERE date = 'unknown' GROUP BY ALL"
    assert main(["query", str(lake), sql, "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == ([f"VARCHAR,VARCHAR,{undated}"] if undated else [])
    for table in ("documents", "duplicates", "rejected"):
        assert main(["query", str(lake), f"SELECT * FROM {table}", "--format", "json"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == {"documents": n_docs, "duplicates": n_dups,
                                                             "rejected": n_rej}[table]
    assert main(["ddl", str(lake), "--dialect", "duckdb"]) == 0
    con = duckdb.connect()
    con.execute(capsys.readouterr().out)
    assert [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("documents", "duplicates", "rejected")
            ] == [n_docs, n_dups, n_rej]
    assert con.execute("SELECT count(*) FROM documents WHERE date = 'unknown'").fetchone()[0] == undated
    assert dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_name = 'documents'").fetchall())["other_langs"] == "VARCHAR[]"


def test_timeline_follows_the_folders_granularity():
    """Days, months or years as the `date=` folders hold them; the finest unit every label has; a label that
    is not a date (a hand-made folder) is left out, never a crash."""
    assert timeline([("2024-01", 2), ("2024-03", 1)]) == ("month", [("2024-01", 2), ("2024-02", 0), ("2024-03", 1)])
    assert timeline([("2022", 1), ("2024", 4)]) == ("year", [("2022", 1), ("2023", 0), ("2024", 4)])
    assert timeline([("2024-01-31", 1), ("2024-02", 2)]) == ("month", [("2024-01", 1), ("2024-02", 2)])
    assert timeline([("1900", 1), ("2100", 1)], max_buckets=120)[0] == "year"
    assert timeline([("2024-02-30", 1), ("soon", 1), ("2024-13", 1)]) == ("day", [])
    assert parse_date_label("2024-02-29") == (2024, 2, 29) and parse_date_label("2023-02-29") is None


@pytest.mark.slow
def test_every_command_works_on_a_streaming_lake(tmp_path, capsys):
    """A lake written by `wirewash run --streaming` (files per window, summary rewritten per window)."""
    from tests.test_streaming import committed_summary, drop, start_stream, stop, wait_for

    watch, lake = tmp_path / "incoming", tmp_path / "lake"
    watch.mkdir()
    proc = start_stream(watch, lake)
    try:
        drop(watch, "first.jsonl", DATED)
        wait_for(lambda: committed_summary(lake).get("records_read") == len(DATED), proc, what="the first file")
        assert main(["query", str(lake), "SELECT count(*) FROM documents", "--format", "csv"]) == 0  # while it runs
        assert capsys.readouterr().out.splitlines() == ["count_star()", "3"]
    finally:
        code, _, err = stop(proc, signal.SIGINT)
    assert code == 0, err[-3000:]
    assert main(["report", str(lake), "--quiet"]) == 0
    data = collect(str(lake))
    assert data["totals"] == (3, 1, 1) and data["unknown_days"] == 0
    assert main(["query", str(lake), "SELECT count(*) FROM documents WHERE date = 'unknown'", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["count_star()", "0"]
    assert main(["ddl", str(lake)]) == 0
    con = duckdb.connect()
    con.execute(capsys.readouterr().out)
    assert con.execute("SELECT count(*) FROM documents").fetchone() == (3,)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.from_regex(r"\d{4}(-\d{2}(-\d{2})?)?", fullmatch=True), st.text(max_size=12)),
                          st.integers(0, 1000)), max_size=12))
def test_timeline_never_fails_and_keeps_every_dated_count(dates):
    """Any folder values: the timeline counts every document whose label is a real date, exactly once, in
    consecutive buckets of one unit."""
    unit, buckets = timeline(dates)
    assert unit in ("day", "month", "year")
    assert sum(n for _, n in buckets) == sum(n for label, n in dates if parse_date_label(label))
    labels = [label for label, _ in buckets]
    assert labels == sorted(set(labels)) and len({len(label) for label in labels}) <= 1
    assert unit == "year" or len(buckets) <= 120
    assert parse_date_label("\u0662\u0660\u0662\u0664") is None  # Arabic-Indic digits are no folder date
