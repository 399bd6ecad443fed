"""`wirewash report`: the page's content comes from the lake, it is self-contained, and a real browser
(headless Chromium, Debian's `chromium` package) lays out every chart."""
from __future__ import annotations

import html
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
from wirewash.pipeline.lake import SCHEMAS
from wirewash.pipeline.report import (PAGE_SIZE, REPORT_FILE, bar_chart, collect, parse_date_label, render_report,
                                      timeline, word_diff)
from wirewash.pipeline.report_charts import funnel_chart
from wirewash.pipeline.report_data import COLUMN_MEANINGS, INVARIANT_CHECKS, _lines_wanted, reread_copies
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
        self.tags, self.attrs, self.svgs, self.ids = [], [], 0, []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)
        self.ids += [v for k, v in attrs if k == "id"]
        if tag == "svg" and ("class", "chart") in attrs:
            self.svgs += 1


SECTIONS = {"run": "Run details", "funnel": "Where the records went", "checks": "Invariants",
            "history": "Run history", "languages": "Languages", "length": "Words per article", "sources": "Sources",
            "clusters": "Duplicate clusters, largest first", "boilerplate": "Boilerplate removed",
            "rejected": "Rejected records", "dictionary": "Data dictionary"}


def test_report_content_comes_from_the_lake(report):
    lake = report.parent
    data = collect(str(lake))
    assert data["totals"] == (3, 3, 2)
    assert data["languages"] == [("de", 1), ("en", 1), ("vi", 1)]
    assert data["days"] == [("2024-03-01", 1), ("2024-03-03", 1)] and data["unknown_days"] == 1
    # largest duplicate cluster first, each copy with its title and text read back from its input line
    assert [(c["kept_id"], c["size"]) for c in data["clusters"]] == [("en", 3), ("vi", 2)]
    copies = {c["doc_id"]: c for c in data["clusters"][0]["copies"]}
    assert sorted(copies) == ["en-2", "en-3"] and data["n_clusters"] == 2 and data["listed_clusters"] == []
    assert copies["en-3"]["text"].split() == ARTICLE_EN.split()  # its newsletter line cleaned away, as in the run
    assert data["words"]["quartiles"][1] > 0 and sum(n for _, n in data["words"]["bins"]) == 3
    assert sum(n for _, n in data["confidence"]) == 3
    assert data["per_file"]["rows"] == [("in.jsonl", 8, 3, 3, 2)]
    assert dict((s, (n, c)) for s, n, c in data["per_site"]["rows"])["a.example"] == (1, 2)
    page = report.read_text()
    for key, heading in SECTIONS.items():
        assert f'<section id="{key}"><h2>{heading}</h2>' in page
    assert "<h2>Documents per day</h2>" in page and "One column per publication day (UTC)" in page
    assert "3 copies of en" in page and "bad_json" in page and "empty_text" in page
    assert re.search(r"read_more<title>read_more</title></text><rect class=\"mark\"", page)
    assert "showing 2 of 2 clusters" in page  # before the script pages them (and without script)
    # the funnel: read -> each stage -> documents / duplicates / rejected, with the reasons per stage
    assert "3 documents, 3 duplicates, 2 rejected" in page and "bad_json 1, empty_text 1" in page


def _run_record(**extra) -> dict:
    return {"run_id": "r1", "wirewash_version": "9.9", "mode": "batch", "started_at": "2026-01-01T00:00:00+00:00",
            "committed_at": "2026-01-01T00:00:20+00:00", "inputs": ["a.jsonl"], "input_files": 1,
            "options": {"threshold": 0.5, "rules": []}, "records_read": 8, "documents": 3, "duplicates": 3,
            "rejected": 2, "ok": True, **extra}


def test_run_details_with_and_without_timing(report):
    """Version, mode, times, inputs, options and counts from the summary's latest `runs` record; time, CPU
    and records/s per stage when the record has `timing`, and 'not recorded' when it has none."""
    data = collect(str(report.parent), reread=False)
    run = data["summary"]["runs"][-1]
    page = render_report(data)
    assert f"<td>{run['run_id']}</td>" in page and f"<td>{run['wirewash_version']}</td>" in page
    assert "<tr><td>threshold</td><td>0.5</td></tr>" in page and "<tr><td>near</td><td>true</td></tr>" in page
    assert ("timing" in run) != ("not recorded for this run" in page)  # the CLI records it (pipeline/timing.py)
    data["summary"]["runs"] = [{k: v for k, v in run.items() if k != "timing"}]
    assert "not recorded for this run" in render_report(data)
    data["summary"]["runs"] = [_run_record(timing={"wall_seconds": 4.0, "cpu_seconds": 6.0,
                                                   "stages": {"read": 0.5, "dedup": 2.0}})]
    page = render_report(data)
    assert "Wall time 4.0 s, CPU time 6.0 s, 1.50 cores busy; 2 records/s." in page
    # records/s per stage: the stage's records in over its seconds (8 in at read, 6 at dedup)
    assert re.search(r"<td>read</td><td class=\"n\">0.5 s</td><td class=\"n\">12.5%</td><td class=\"n\">8</td>"
                     r"<td class=\"n\">16</td>", page)
    assert re.search(r"<td>dedup</td><td class=\"n\">2.0 s</td><td class=\"n\">50.0%</td><td class=\"n\">6</td>"
                     r"<td class=\"n\">3</td>", page)
    data["summary"].pop("runs")
    assert "Run details: not recorded" in render_report(data)


def test_history_lists_each_run_and_what_it_added(report):
    data = collect(str(report.parent), reread=False)
    data["summary"]["runs"] = [_run_record(), _run_record(run_id="r2", mode="append", records_read=5, documents=1,
                                                          duplicates=4, rejected=0, ok=False)]
    page = render_report(data)
    history = page[page.index('<section id="history">'):page.index('<section id="languages">')]
    assert history.count("<tr>") == 3 and "+4" in history and "4 / 7 / 2" in history  # the lake after run 2
    assert "<td>pass</td>" in history and "<td>fail</td>" in history
    data["summary"]["streaming"] = {"panes": 3, "last_window_end": "2026-01-01T00:01:00+00:00", "final": True}
    assert "A streaming lake: 3 panes committed" in render_report(data)


def test_invariants_are_a_pass_fail_checklist(report):
    data = collect(str(report.parent), reread=False)
    page = render_report(data)
    checks = page[page.index('<section id="checks">'):page.index('<section id="history">')]
    assert checks.count(">PASS<") == len(INVARIANT_CHECKS) and ">FAIL<" not in checks
    data["summary"]["invariants"].update(dangling_duplicate_of=2, unread_input=["a.jsonl: read 3 of 5 records"])
    checks = render_report(data)
    assert checks.count(">FAIL<") == 2 and "a.jsonl: read 3 of 5 records" in checks


def test_data_dictionary_describes_every_column_with_its_type(report):
    """Every column of the lake's schemas has one meaning (COLUMN_MEANINGS), and the page gives each
    column's type as the Parquet files hold it."""
    for table, schema in SCHEMAS.items():
        if table in COLUMN_MEANINGS:
            extra = {"lang", "date", "ingest_date"} if table == "documents" else set()
            assert set(COLUMN_MEANINGS[table]) == set(schema.names) | extra, table
    data = collect(str(report.parent), reread=False)
    page = render_report(data)
    assert "<tr><td><code>published_at</code></td><td>TIMESTAMP WITH TIME ZONE</td>" in page
    assert "<tr><td><code>other_langs</code></td><td>VARCHAR[]</td>" in page
    assert "<tr><td><code>duplicate_of</code></td><td>VARCHAR</td>" in page


def test_copies_are_read_back_only_when_their_record_is_still_there(tmp_path):
    """A copy's text is not in the lake: it is re-read from its input line; a moved input, or a line that
    now holds another record, leaves the copy with its id only, and the page says so."""
    lake = _run(tmp_path, RECORDS)
    assert all("text" in c for c in collect(str(lake))["clusters"][0]["copies"])
    source = tmp_path / "in.jsonl"
    lines = source.read_text().splitlines()
    lines[1] = json.dumps({"id": "other", "text": ARTICLE_EN})  # en-2's line now holds another record
    source.write_text("\n".join(lines) + "\n")
    copies = {c["doc_id"]: c for c in collect(str(lake))["clusters"][0]["copies"]}
    assert "text" not in copies["en-2"] and "text" in copies["en-3"]
    clusters = collect(str(lake), reread=False)["clusters"]
    assert reread_copies(clusters, str(lake), max_bytes=10) == 0  # past the reading budget: not read back
    assert reread_copies(clusters, str(lake)) == 2  # en-3 and vi-2; en-2's line holds another record
    source.rename(tmp_path / "moved.jsonl")
    data = collect(str(lake))
    assert not any("text" in c for cluster in data["clusters"] for c in cluster["copies"])
    assert "could not be read back here" in render_report(data)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_lines_are_read_back_in_bounded_chunks(tmp_path, suffix):
    """Only the wanted lines come back; one longer than the cap is skipped (never held whole); the budget
    stops the reading."""
    import gzip

    path = tmp_path / f"in{suffix}"
    data = b"x" * 5000 + b"\nsecond\r\n" + b"y" * 3000 + b"\nfourth\nfifth\n"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    assert _lines_wanted(str(path), {1, 2, 4}, [10 ** 9], max_line=1000) == {2: b"second", 4: b"fourth"}
    assert _lines_wanted(str(path), {2, 5}, [5001], max_line=1000) == {}
    budget = [10 ** 9]
    assert _lines_wanted(str(path), {3}, budget, max_line=4000) == {3: b"y" * 3000} and budget[0] < 10 ** 9


def test_word_diff_marks_what_changed():
    diff = word_diff("the cat sat on the mat", "the dog sat on the mat today")
    assert diff == "the <del>cat</del> <ins>dog</ins> sat on the mat <ins>today</ins>"
    assert word_diff("a < b", "a < c") == "a &lt; <del>b</del> <ins>c</ins>"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("ab<c&d e"), max_size=30), st.lists(st.sampled_from("ab<c&d e"), max_size=30))
def test_word_diff_keeps_both_texts(a, b):
    """Unchanged and deleted words give the kept text back; unchanged and inserted ones the copy."""
    kept, copy = " ".join(a), " ".join(b)
    diff = word_diff(kept, copy, context=10 ** 6)
    strip = lambda text, tag: html.unescape(re.sub(rf"<{tag}>.*?</{tag}>|</?\w+>", "", text))  # noqa: E731
    assert strip(diff, "ins").split() == kept.split() and strip(diff, "del").split() == copy.split()


def test_funnel_bars_share_one_scale():
    svg = funnel_chart(10, [("read", 8, 2, 0), ("dedup", 5, 0, 3)], (5, 3, 2), "t", width=1000)
    widths = [float(w) for w in re.findall(r'class="mark" x="[\d.]+" y="[\d.]+" width="([\d.]+)"', svg)]
    # read 10 | read: 8 on + 2 rejected | dedup: 5 on + 3 duplicates | outcome: 5 + 3 + 2
    assert len(widths) == 8 and widths[1] + widths[2] == pytest.approx(widths[0])
    assert widths[3] + widths[4] == pytest.approx(widths[1]) and sum(widths[5:]) == pytest.approx(widths[0])
    assert "no record was read" in funnel_chart(0, [], (0, 0, 0), "t")


def test_report_is_self_contained_and_escaped(report):
    page = report.read_text()
    parsed = _Elements()
    parsed.feed(page)
    assert parsed.svgs >= 8
    assert not {"img", "link", "iframe", "object", "embed"} & set(parsed.tags)
    assert not [v for k, v in parsed.attrs if k == "src"]
    links = [v for k, v in parsed.attrs if k == "href"]
    assert links and all(v[1:] in parsed.ids for v in links)  # only links to the page's own sections
    assert "http://" not in page and "https://" not in page and "url(" not in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 2  # the error recorder and the page's own (layout check, cluster search)


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


def open_in_chromium(page: Path, tmp_path: Path, fragment: str = "") -> tuple[str, list]:
    """(the <body> tag after the page's scripts ran, the console lines) of `page` in headless Chromium."""
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (Debian's chromium package; .ci/run installs it with apt-get)")
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    result = subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
         "--enable-logging=stderr", "--log-level=0", "--dump-dom", page.as_uri() + fragment],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    html_tag = re.search(r"<html[^>]*>", result.stdout)
    body = re.search(r"<body[^>]*>", result.stdout)
    assert html_tag and body, result.stdout[:500]
    assert "data-errors" not in html_tag.group(0), html_tag.group(0)  # the page's error recorder saw none
    return body.group(0), [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


def check_in_browser(report_path: Path, tmp_path: Path) -> str:
    """Opens a report in Chromium: no console message, the script ran to its end, every chart laid out
    with a real size, every section there. Returns the body tag."""
    page = report_path.read_text()
    expected = page.count('<svg class="chart')
    body, console = open_in_chromium(report_path, tmp_path)
    assert console == []
    assert 'data-ready="1"' in body
    assert f'data-charts="{expected}"' in body and f'data-charts-drawn="{expected}"' in body, body
    for key in SECTIONS:
        assert f'<section id="{key}">' in page
    return body


def test_report_renders_in_headless_chromium(report, tmp_path):
    body = check_in_browser(report, tmp_path)
    assert 'data-clusters-shown="2"' in body
    assert report.read_text().count('<svg class="chart') >= 8


def test_all_clusters_are_reachable_paged_and_searchable(report, tmp_path):
    """Many clusters: the page holds them all (the largest with their text, the rest by id and title), the
    script shows PAGE_SIZE at a time with 'showing 1-10 of N', and its search (here from the address,
    `#clusters=...`) finds any of them; without the script every cluster is in the page."""
    data = collect(str(report.parent), reread=False)
    extra = [(f"kept-{i:03d}", 2, "near", 0.8, f"Story number {i}", "x.example") for i in range(40)]
    data["listed_clusters"], data["n_clusters"] = extra, 42
    path = tmp_path / "many.html"
    path.write_text(render_report(data))
    page = path.read_text()
    assert all(f"<code>kept-{i:03d}</code>" in page for i in range(40)) and "showing 10 of 42 clusters" in page
    body, _ = open_in_chromium(path, tmp_path)
    assert f'data-clusters-shown="{PAGE_SIZE}"' in body
    body, _ = open_in_chromium(path, tmp_path, "#clusters=story%20number%2017")
    assert 'data-clusters-shown="1"' in body
    data["n_clusters"] = 5000  # more than the page holds: it says how to list the rest
    assert "the other 4,958 only in the lake" in render_report(data)


def test_screenshot_in_docs_is_a_small_png():
    """docs/report.png (how it is made: docs/tutorial.md) is linked from the README and the tutorial."""
    shot = Path(__file__).resolve().parents[1] / "docs" / "report.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size < 400_000
    assert "(docs/report.png)" in (shot.parent.parent / "README.md").read_text()
    assert "(report.png)" in (shot.parent / "tutorial.md").read_text()


# --- every command on every lake shape (issue 19) ----------------------------------------------------------

DATED = [
    {"id": "en", "source": "a.example", "published": "2023-12-30T08:00:00Z", "text": ARTICLE_EN},
    {"id": "en-2", "source": "b.example", "published": "2024-01-04T08:00:00Z", "text": ARTICLE_EN},
    {"id": "vi", "source": "c.example", "published": "2024-02-03", "text": ARTICLE_VI},
    {"id": "de", "source": "d.example", "published": "2024-03-01", "text": ARTICLE_DE},
    "{not json",
]


def _run(folder: Path, records: list, *flags: str) -> Path:
    lake = folder / "lake"
    assert main(["run", "--input", str(write_jsonl(folder / "in.jsonl", records)), "--output", str(lake),
                 "--quiet", *flags]) == 0
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
    if name == "appended":  # a second run added with --append: two runs in the history
        lake = _run(folder, DATED)
        later = [{"id": "vi-3", "source": "e.example", "published": "2024-02-10", "text": ARTICLE_VI}, {"id": "z", "text": " "}]
        assert main(["run", "--input", str(write_jsonl(folder / "later.jsonl", later)), "--output", str(lake),
                     "--append", "--quiet"]) == 0
        return lake
    if name == "no-documents":
        return _run(folder, ["{not json", {"id": "x", "text": " "}])
    if name == "ingest-undated":  # --partition_by ingest: lang and date in the files, ingest_date folders
        return _run(folder, RECORDS, "--partition_by", "ingest")
    if name == "ingest-appended":
        lake = _run(folder, DATED, "--partition_by", "ingest")
        later = [{"id": "vi-3", "source": "e.example", "published": "2024-02-10", "text": ARTICLE_VI}, {"id": "z", "text": " "}]
        assert main(["run", "--input", str(write_jsonl(folder / "later.jsonl", later)), "--output", str(lake),
                     "--append", "--quiet"]) == 0
        return lake
    if name == "ingest-no-documents":
        return _run(folder, ["{not json", {"id": "x", "text": " "}], "--partition_by", "ingest")
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
    "appended": (3, 2, 2, 0, "day"),
    "no-documents": (0, 0, 2, 0, "day"),
    "absent-folders": (5, 0, 0, 5, "day"),
    "empty-folders": (5, 0, 0, 5, "day"),
    "ingest-undated": (3, 3, 2, 1, "day"),
    "ingest-appended": (3, 2, 2, 0, "day"),
    "ingest-no-documents": (0, 0, 2, 0, "day"),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_command_works_on_every_lake_shape(shape, tmp_path, seeds_dir, capsys):
    """report, query and ddl on lakes with and without undated articles, with day, month or year folders,
    without documents, with empty duplicates/rejected tables (folder absent or empty), and grown by an
    append: `date` is text everywhere (a lake whose articles all have a date crashed the report: `invalid
    date field format`); the report opens in Chromium without a console message, every chart drawn."""
    n_docs, n_dups, n_rej, undated, unit = SHAPES[shape]
    lake = _shape(shape, tmp_path, seeds_dir)
    capsys.readouterr()
    data = collect(str(lake))
    assert data["totals"] == (n_docs, n_dups, n_rej) and data["unknown_days"] == undated
    assert timeline(data["days"])[0] == unit
    assert main(["report", str(lake), "--quiet"]) == 0
    page = (lake / REPORT_FILE).read_text()
    assert f"<h2>Documents per {unit}</h2>" in page and f"documents per publication {unit} (UTC)" in page
    check_in_browser(lake / REPORT_FILE, tmp_path)
    history = page[page.index('<section id="history">'):page.index('<section id="languages">')]
    assert history.count("<tr>") == (3 if shape.endswith("appended") else 0)
    assert ("partition folder is <code>ingest_date</code>" in page) == shape.startswith("ingest")
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
    declared = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_name = 'documents'").fetchall())
    assert declared["other_langs"] == "VARCHAR[]" and declared["lang"] == declared["date"] == "VARCHAR"
    assert ("ingest_date" in declared) == shape.startswith("ingest")


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
        # no wait for the files: a running summary is written only once the rows it counts are in place
        assert main(["query", str(lake), "SELECT count(*) FROM documents", "--format", "csv"]) == 0  # while it runs
        assert capsys.readouterr().out.splitlines() == ["count_star()", "3"]
    finally:
        code, _, err = stop(proc, signal.SIGINT)
    assert code == 0, err[-3000:]
    assert main(["report", str(lake), "--quiet"]) == 0
    assert "A streaming lake:" in (lake / REPORT_FILE).read_text()
    check_in_browser(lake / REPORT_FILE, tmp_path)
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
