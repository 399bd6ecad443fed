"""Hostile input: every case of tests/data/hostile/ (plus what git cannot hold) ends where expected.json says,
with a specific reason and its source location; nothing is loaded whole, decompressed without bound, fetched
from the network, evaluated, or printed in full. See docs/guarantees.md."""
from __future__ import annotations

import ast
import gzip
import http.server
import json
import os
import socketserver
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirewash.pipeline.cli import main
from wirewash.pipeline.input_files import InputFile, match_inputs
from wirewash.pipeline.io import parse_file
from wirewash.pipeline.lake import LANGUAGES, valid_partition
from tests.data import make_hostile
from tests.helpers import lake_rows, summary

REPO = Path(__file__).resolve().parents[1]
HOSTILE = REPO / "tests" / "data" / "hostile"


def test_committed_corpus_is_what_the_generator_makes(tmp_path):
    expected = make_hostile.build(tmp_path / "fresh")
    committed = sorted(p.name for p in HOSTILE.iterdir())
    assert committed == sorted(p.name for p in (tmp_path / "fresh").iterdir())
    for name in committed:
        assert (HOSTILE / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes(), name
    assert json.loads((HOSTILE / "expected.json").read_text()) == expected


@pytest.fixture(scope="module")
def hostile_lake(tmp_path_factory):
    """One real run over a copy of the corpus plus a FIFO, a dangling symlink and a folder named *.jsonl."""
    root = tmp_path_factory.mktemp("hostile")
    corpus = make_hostile.copy_corpus(root / "in")
    expected = json.loads((HOSTILE / "expected.json").read_text())
    expected.update(make_hostile.add_runtime_cases(corpus))
    lake = root / "lake"
    code = main(["run", "--input", str(corpus / "*"), "--output", str(lake), "--quiet",
                 "--ingested_at", "2024-01-01T00:00:00Z"])
    return lake, expected, code


def outcomes(lake: Path) -> dict:
    found = {}
    for table in ("documents", "duplicates"):
        for row in lake_rows(lake, table, "source_location"):
            found.setdefault(row["source_location"], []).append(table)
    for row in lake_rows(lake, "rejected", "source_location, reason"):
        found.setdefault(row["source_location"], []).append(row["reason"])
    return found


def test_every_hostile_case_ends_where_expected(hostile_lake):
    lake, expected, code = hostile_lake
    assert code == 0
    found = outcomes(lake)
    assert {loc: places for loc, places in found.items() if len(places) != 1} == {}, "a record in two places"
    assert {loc: places[0] for loc, places in found.items()} == expected


def test_hostile_run_reconciles_and_keeps_its_invariants(hostile_lake):
    lake, expected, _ = hostile_lake
    s = summary(lake)
    assert s["records_read"] == len(expected) == s["documents"] + s["duplicates"] + s["rejected"]
    assert s["ok"] and s["invariants"] == {"reconciled": True, "dangling_duplicate_of": 0,
                                           "duplicate_doc_ids": 0, "invalid_partitions": 0, "unread_input": []}
    for row in lake_rows(lake, "rejected"):
        assert row["stage"] and row["reason"] and row["source_location"].rsplit(":", 1)[1].isdigit(), row
        assert len(row["excerpt"]) <= 200 and len(row["error"]) <= 300


def test_unreadable_entries_say_what_they_are(hostile_lake):
    lake, _, _ = hostile_lake
    errors = {r["source_location"]: r["error"] for r in lake_rows(lake, "rejected", "source_location, error")}
    assert "symbolic link to a missing file" in errors["dangling.jsonl:0"]
    assert "is a FIFO" in errors["fifo.jsonl:0"]
    assert "is a directory" in errors["folder.jsonl:0"]
    assert "100:1" in errors["bomb.jsonl.gz:2"]


def test_bad_dates_never_name_a_partition(hostile_lake):
    lake, _, _ = hostile_lake
    docs = {d["doc_id"]: d for d in lake_rows(lake, "documents")}
    for doc_id in ("path-date", "year-99999"):
        assert (docs[doc_id]["date"], docs[doc_id]["published_at"]) == ("unknown", None)
    folders = {p.parent.relative_to(lake / "documents").as_posix() for p in (lake / "documents").rglob("*.parquet")}
    assert folders and all(valid_partition(f) for f in folders)
    assert all(p.resolve().is_relative_to(lake.resolve()) for p in lake.rglob("*"))


def test_xxe_page_keeps_its_text_without_the_entity(hostile_lake):
    lake, _, _ = hostile_lake
    text = [d["text"] for d in lake_rows(lake, "documents") if d["doc_id"] == "xxe"][0]
    assert "textile factory" in text and "root:" not in text


# --- size limits: nothing is loaded whole ----------------------------------------------------------------

def peak_bytes(fn):
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_100_mb_record_is_rejected_without_loading_it(tmp_path):
    path = tmp_path / "huge.jsonl"
    make_hostile.write_huge_record(path)
    assert path.stat().st_size > 100 << 20
    out, peak = peak_bytes(lambda: list(parse_file(InputFile(str(path), "huge.jsonl", "jsonl"))))
    assert [(o.source_location, getattr(o, "reason", "article")) for o in out] == [
        ("huge.jsonl:1", "too_large"), ("huge.jsonl:2", "article")]
    assert peak < 8 << 20, f"peak {peak} bytes while reading a 100 MB line"


def test_oversized_document_file_is_rejected_without_loading_it(tmp_path):
    path = tmp_path / "big.txt"
    with open(path, "wb") as handle:
        handle.truncate(50 << 20)  # sparse: 50 MB of NULs, instantly
    out, peak = peak_bytes(lambda: list(parse_file(InputFile(str(path), "big.txt", "text"), max_record_bytes=4096)))
    assert [(o.source_location, o.reason) for o in out] == [("big.txt:1", "too_large")]
    assert peak < 1 << 20


def test_gzip_bomb_stops_early_with_bounded_memory():
    bomb = InputFile(str(HOSTILE / "bomb.jsonl.gz"), "bomb.jsonl.gz", "jsonl")
    out, peak = peak_bytes(lambda: list(parse_file(bomb)))
    assert [getattr(o, "reason", "article") for o in out] == ["article", "decompression_limit"]
    assert peak < 8 << 20


def test_decompressed_bytes_cap_is_configurable(tmp_path):
    path = tmp_path / "plain.jsonl.gz"
    lines = [json.dumps({"id": f"r{i}", "text": make_hostile.STORIES[i % 12] + f" ({i})"}) for i in range(400)]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    source = InputFile(str(path), "plain.jsonl.gz", "jsonl")
    assert len(list(parse_file(source))) == 400
    out = list(parse_file(source, max_decompressed_bytes=64 << 10))
    assert out[-1].reason == "decompression_limit" and "65536" in out[-1].error
    assert 0 < len(out) - 1 < 400 and all(o.doc_id.startswith("r") for o in out[:-1])
    assert main(["run", "--input", str(path), "--output", str(tmp_path / "l"), "--max_decompressed_bytes", "10"]) == 2


def test_a_broken_entry_never_hides_or_stops_the_others(tmp_path):
    (tmp_path / "ok.jsonl").write_text(json.dumps({"id": "ok", "text": make_hostile.STORIES[0]}) + "\n")
    (tmp_path / "broken.jsonl").symlink_to(tmp_path / "missing.jsonl")
    files = match_inputs([str(tmp_path)])
    assert [f.rel_path for f in files] == ["broken.jsonl", "ok.jsonl"]


def test_a_file_named_as_it_is_is_looked_up_alone_not_its_folder(tmp_path, monkeypatch):
    """A named file, or a named dangling link (rejected by name later), is the one entry its argument can match:
    its folder's tree (which may hold lakes and virtualenvs) is never walked for it."""
    (tmp_path / "ok.jsonl").write_text(json.dumps({"id": "ok", "text": make_hostile.STORIES[0]}) + "\n")
    (tmp_path / "broken.jsonl").symlink_to(tmp_path / "missing.jsonl")
    (tmp_path / "sub").mkdir()
    monkeypatch.setattr(os, "walk", lambda *a, **k: pytest.fail("walked the folder of a named file"))
    assert [f.path for f in match_inputs([str(tmp_path / "ok.jsonl")])] == [str(tmp_path / "ok.jsonl")]
    assert [f.path for f in match_inputs([str(tmp_path / "broken.jsonl")])] == [str(tmp_path / "broken.jsonl")]


# --- security ---------------------------------------------------------------------------------------------

class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"<!ENTITY leak 'LEAKED'>")

    def log_message(self, *args):
        pass


def test_html_extraction_fetches_nothing_and_resolves_no_entity():
    """A page that points an external entity, a DTD, images, scripts and frames at a live local server:
    extraction must not contact it, nor expand a local file entity."""
    from wirewash.transforms.extract import extract_html

    with socketserver.TCPServer(("127.0.0.1", 0), _Recorder) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        body = " ".join(make_hostile.STORIES[:3])
        pages = [
            f'<!DOCTYPE html [<!ENTITY leak SYSTEM "{base}/entity">]><html><body><article><p>{body} &leak;</p>'
            f'</article></body></html>',
            f'<!DOCTYPE html SYSTEM "{base}/dtd"><html><head><link rel="stylesheet" href="{base}/css">'
            f'<script src="{base}/js"></script></head><body><article><p>{body}</p><img src="{base}/img">'
            f'<iframe src="{base}/frame"></iframe></article></body></html>',
            f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "{base}/param"> %p;]><html><body>'
            f'<p>{body}</p></body></html>',
            '<!DOCTYPE html [<!ENTITY passwd SYSTEM "file:///etc/passwd">]><html><body><article><p>'
            f'{body} &passwd;</p></article></body></html>',
        ]
        texts = [extract_html(page, url=f"{base}/article").text for page in pages]
        server.shutdown()
    assert _Recorder.hits == []
    assert all("LEAKED" not in t and "root:" not in t for t in texts)
    assert "ferry terminal" in texts[0] and "ferry terminal" in texts[1]


def _calls(path: Path):
    """Names of the builtins called and of the modules imported by one source file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            yield node.func.id
        if isinstance(node, ast.Import):
            yield from ("import " + alias.name.split(".")[0] for alias in node.names)
        if isinstance(node, ast.ImportFrom) and node.module:
            yield "import " + node.module.split(".")[0]


def test_no_eval_exec_or_unpickling_in_the_pipeline():
    """Input bytes are only ever parsed (json, codecs, lxml): nothing can run them as code or unpickle them."""
    banned = {"eval", "exec", "compile", "__import__", "import pickle", "import dill", "import marshal",
              "import shelve", "import yaml", "import cloudpickle", "import jsonpickle"}
    sources = sorted((REPO / "pipeline").glob("*.py")) + sorted((REPO / "transforms").glob("*.py"))
    found = {f"{p.relative_to(REPO)}: {c}" for p in sources for c in _calls(p) if c in banned}
    assert found == set()


@pytest.fixture(scope="module")
def small_lake(hostile_lake):
    return hostile_lake[0]


@pytest.mark.parametrize("sql, message", [
    ("COPY documents TO '/tmp/wirewash-escape.csv'", "one read-only SELECT"),
    ("COPY (SELECT 1) TO '{lake}/documents/lang=en/date=unknown/evil.parquet'", "one read-only SELECT"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/wirewash-escape.csv'", "one read-only SELECT"),
    ("SELECT * FROM read_text('/etc/passwd')", "Permission Error"),
    ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error"),
    ("SELECT * FROM read_parquet('{lake}/../**/*.parquet')", "Permission Error"),
    ("ATTACH '/tmp/wirewash-escape.db' AS x", "one read-only SELECT"),
    ("INSTALL httpfs", "one read-only SELECT"),
    ("SET enable_external_access = true", "one read-only SELECT"),
    ("SELECT 1; COPY documents TO '/tmp/wirewash-escape.csv'", "one read-only SELECT"),
])
def test_query_cannot_write_or_read_outside_the_lake(small_lake, capsys, sql, message):
    before = sorted(p.relative_to(small_lake) for p in small_lake.rglob("*"))
    assert main(["query", str(small_lake), sql.format(lake=small_lake)]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.relative_to(small_lake) for p in small_lake.rglob("*")) == before
    assert not Path("/tmp/wirewash-escape.csv").exists() and not Path("/tmp/wirewash-escape.db").exists()


def test_query_still_reads_the_lake(small_lake, capsys):
    sql = "SELECT doc_id, lang, date FROM documents WHERE doc_id = 'good'"
    assert main(["query", str(small_lake), sql, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["doc_id,lang,date", "good,en,2023-05-01"]


@pytest.mark.parametrize("listed", ["../../victim/{name}", "/victim/{name}", "documents/../../victim/{name}",
                                    "file:///victim/{name}"])
def test_a_summary_listing_files_outside_the_lake_changes_nothing(small_lake, tmp_path, capsys, listed):
    """A crafted or damaged `_SUMMARY.json` naming files outside the lake: `compact` (which reads, rewrites and
    deletes what the manifest lists) and an append refuse in one line (exit 2); the files outside and the lake
    stay byte for byte as they were, and no writer lock is left."""
    import shutil

    root = tmp_path / "root"
    lake = Path(shutil.copytree(small_lake, root / "a" / "lake"))
    victim = root / "victim" if listed.startswith("..") or listed.startswith("documents") else None
    outside = victim or tmp_path / "unused"
    outside.mkdir(parents=True)
    part = next((lake / "documents").rglob("*.parquet"))
    names = []
    for i in range(2):
        shutil.copy(part, outside / f"v{i}.parquet")
        names.append(listed.format(name=f"v{i}.parquet"))
    state = json.loads((lake / "_SUMMARY.json").read_text())
    state["files"]["documents"] = names
    (lake / "_SUMMARY.json").write_text(json.dumps(state))

    def fingerprint():
        return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    before = fingerprint()
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"id": "n", "text": make_hostile.STORIES[1]}) + "\n")
    for argv in (["compact", str(lake)], ["run", "--append", "--input", str(new), "--output", str(lake), "--quiet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "the lake is damaged" in err[0], err
    assert fingerprint() == before
    assert main(["query", str(lake), "SELECT count(*) FROM documents"]) == 2
    assert "damaged" in capsys.readouterr().err


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["..", ".", "", "documents", "duplicates", "lang=en", "x.parquet", "/", "\\",
                                 "c:", "%2e%2e", "..parquet", "\x00", "~"]), min_size=1, max_size=6))
def test_a_listed_path_accepted_is_inside_its_table(pieces):
    """Whatever a summary lists, a path `listed_path` accepts resolves (lexically) inside its table's folder."""
    import posixpath

    from wirewash.pipeline.manifest import listed_path

    rel = "".join(pieces)
    for table in ("documents", "_index"):
        try:
            accepted = listed_path(table, rel)
        except ValueError:
            continue
        resolved = posixpath.normpath(posixpath.join("/lake", accepted))
        assert resolved.startswith(f"/lake/{table}/") and resolved.endswith(".parquet"), (rel, accepted)


@pytest.mark.slow
def test_cli_output_never_carries_whole_documents(tmp_path):
    """Even with --verbose, and with records that are rejected for their size or content, what the CLI
    prints holds no record text beyond a short excerpt."""
    marker = "ZQXJ"  # a token no log line would contain by chance
    long_text = " ".join(f"{marker}{i} " + make_hostile.STORIES[i % 12] for i in range(200))
    records = [{"id": "long", "text": long_text}, {"id": "huge", "text": long_text * 20},
               {"id": "nul", "text": long_text + "\u0000"}, "{" + long_text]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    proc = subprocess.run([sys.executable, "-m", "wirewash.pipeline.cli", "run", "--input", str(path), "--output",
                           str(tmp_path / "lake"), "--verbose", "--max_record_bytes", str(200_000)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = proc.stdout + proc.stderr
    assert printed.count(marker) <= 3 and max(map(len, printed.splitlines())) < 2000
    rejected = lake_rows(tmp_path / "lake", "rejected", "excerpt")
    assert len(rejected) == 3 and all(len(r["excerpt"]) <= 200 for r in rejected)


def test_language_codes_are_a_closed_set_of_short_codes():
    assert all(code.isascii() and code.islower() and 2 <= len(code) <= 3 for code in LANGUAGES)
    assert "und" not in LANGUAGES and {"en", "vi", "zh", "nb", "he"} <= LANGUAGES


def test_guarantees_doc_names_only_real_tests():
    """docs/guarantees.md cites tests by name: every cited name must exist, or the doc promises nothing."""
    import re
    cited = set(re.findall(r"`(test_[a-z0-9_]+)`", (REPO / "docs" / "guarantees.md").read_text()))
    defined = {name for path in (REPO / "tests").glob("test_*.py")
               for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    assert len(cited) > 30 and cited - defined == set()


# --- issue 17: one record never ends a file or a run; the reader's bytes account for every record -----------

def test_lone_surrogates_become_replacement_characters(hostile_lake):
    lake, _, _ = hostile_lake
    docs = {d["source_location"]: d for d in lake_rows(lake, "documents")}
    no_id, lone = docs["surrogates.jsonl:1"], docs["surrogates.jsonl:2"]
    assert no_id["url"] == "https://example.com/a\ufffdb" and no_id["doc_id"]
    assert (lone["doc_id"], lone["title"], lone["text"][-1]) == ("lone-\ufffd", "Bread \ufffd prize", "\ufffd")
    assert "attic \ufffd" in docs["utf16_unpaired.jsonl:2"]["text"]
    assert "after-surrogates" in {d["doc_id"] for d in docs.values()}  # the lines after them still read


def _raises_on(marker: str, real):
    """`real`, except that it raises a TypeError (no check foresees one) for a text holding `marker`."""
    def fn(text, *args, **kwargs):
        if marker in str(text):
            raise TypeError(f"boom on {marker}")
        return real(text, *args, **kwargs)
    return fn


def test_one_failing_record_never_ends_its_file(tmp_path, monkeypatch):
    from wirewash.pipeline import io as pipeline_io
    monkeypatch.setattr(pipeline_io, "parse_json_record", _raises_on("poison", pipeline_io.parse_json_record))
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": "poison" if i == 1 else f"story {i}"}) + "\n"
                            for i in range(4)))
    tallies = []
    out = list(parse_file(InputFile(str(path), "c.jsonl", "jsonl"), on_tally=tallies.append))
    assert [getattr(r, "doc_id", None) or r.reason for r in out] == ["r0", "read_error", "r2", "r3"]
    assert "TypeError: boom on poison" in out[1].error and out[1].source_location == "c.jsonl:2"
    assert tallies[0].at_end and tallies[0].lines == 4 and not tallies[0].failed


def test_a_stage_that_raises_rejects_only_that_record(tmp_path, monkeypatch, capsys):
    from wirewash.transforms import boilerplate
    from wirewash.transforms import language
    from wirewash.transforms import normalize
    monkeypatch.setattr(normalize, "normalize_text",
                        _raises_on("NORMPOISON", normalize.normalize_text))
    monkeypatch.setattr(boilerplate, "strip_boilerplate",
                        _raises_on("BOILERPOISON", boilerplate.strip_boilerplate))
    monkeypatch.setattr(language, "detect_languages",
                        _raises_on("LANGPOISON", language.detect_languages))
    stories = make_hostile.STORIES
    records = [{"id": f"s{i}", "text": story} for i, story in enumerate(stories[:5])]
    for i, marker in enumerate(("NORMPOISON", "BOILERPOISON", "LANGPOISON")):
        records[i]["text"] += " " + marker
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))
    lake = tmp_path / "lake"
    assert main(["run", "--input", str(corpus), "--output", str(lake), "--quiet"]) == 0
    rejected = {r["doc_id"]: (r["stage"], r["reason"]) for r in lake_rows(lake, "rejected")}
    assert rejected == {"s0": ("normalize", "normalize_error"), "s1": ("boilerplate", "boilerplate_error"),
                        "s2": ("language", "language_error")}
    assert "TypeError: boom on" in lake_rows(lake, "rejected")[0]["error"]
    assert {d["doc_id"] for d in lake_rows(lake, "documents")} == {"s3", "s4"}
    assert summary(lake)["ok"]


def test_a_reader_that_loses_records_fails_the_run_naming_the_file(tmp_path, monkeypatch, capsys):
    """The old bug, put back: a record's exception reaches the file's handler, which ends the read. The
    counts alone still add up (every record emitted is in a table); the byte tally says the file was lost."""
    from wirewash.pipeline import io as pipeline_io
    monkeypatch.setattr(pipeline_io, "parse_json_record", _raises_on("poison", pipeline_io.parse_json_record))
    monkeypatch.setattr(pipeline_io, "guarded_parse", lambda parse, location, *args: parse(*args))
    stories = make_hostile.STORIES
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"s{i}", "text": "poison" if i == 1 else story}) + "\n"
                              for i, story in enumerate(stories[:4])))
    lake = tmp_path / "lake"
    assert main(["run", "--input", str(corpus), "--output", str(lake), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "lake invariants violated: unread_input" in err and "c.jsonl: 2 records read, its bytes hold 4" in err
    s = summary(lake)
    assert s["reconciled"] and not s["ok"] and s["records_read"] == 2  # what a parser-made count would miss


# --- file names and symbolic links (issue 17, item 8) -------------------------------------------------------

def _story_file(path, i: int) -> None:
    path.write_text(json.dumps({"id": f"r{i}", "text": make_hostile.MORE_STORIES[i]}) + "\n")


def test_a_non_utf8_file_name_is_read_and_named_readably(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _story_file(Path(os.fsdecode(bytes(folder) + b"/caf\xe9.jsonl")), 0)
    _story_file(folder / "ok.jsonl", 1)
    lake = tmp_path / "lake"
    for pattern in (str(folder), str(folder / "*.jsonl")):  # a folder and a glob
        assert main(["run", "--input", pattern, "--output", str(lake), "--quiet", "--overwrite"]) == 0
        assert sorted(d["source_location"] for d in lake_rows(lake, "documents")) == ["caf\\xe9.jsonl:1",
                                                                                       "ok.jsonl:1"]


def test_symlinks_inside_the_input_are_followed_outside_rejected_by_name(tmp_path):
    folder, outside = tmp_path / "in", tmp_path / "outside"
    (folder / "sub").mkdir(parents=True)
    outside.mkdir()
    _story_file(folder / "sub" / "a.jsonl", 0)
    _story_file(outside / "b.jsonl", 1)
    real_elsewhere = folder / "sub" / "deeper"
    real_elsewhere.mkdir()
    _story_file(real_elsewhere / "c.jsonl", 2)
    (folder / "linked_out").symlink_to(outside)  # a folder outside: rejected by name, never skipped silently
    (folder / "passwd.txt").symlink_to("/etc/passwd")  # a file outside: rejected, never ingested
    (folder / "again").symlink_to(folder / "sub")  # the same folder twice: read once, under its own name
    (folder / "loop").symlink_to(folder)  # a loop: ends
    (folder / "latest.jsonl").symlink_to(folder / "sub" / "a.jsonl")  # a file read already
    (tmp_path / "only_by_link").mkdir()
    lake = tmp_path / "lake"
    assert main(["run", "--input", str(folder), "--output", str(lake), "--quiet"]) == 0
    assert sorted(d["source_location"] for d in lake_rows(lake, "documents")) == ["sub/a.jsonl:1",
                                                                                   "sub/deeper/c.jsonl:1"]
    rejected = {r["source_location"]: (r["reason"], r["error"]) for r in lake_rows(lake, "rejected")}
    assert sorted(rejected) == ["linked_out:0", "passwd.txt:0"]
    assert {reason for reason, _ in rejected.values()} == {"symlink_outside_input"}
    assert "/etc/passwd" in rejected["passwd.txt:0"][1] and "root:" not in str(lake_rows(lake, "rejected"))


def test_an_input_folder_given_through_a_link_is_read():
    with tempfile.TemporaryDirectory() as tmp:
        real = Path(tmp) / "data" / "2024"
        real.mkdir(parents=True)
        _story_file(real / "a.jsonl", 0)
        (Path(tmp) / "hidden").mkdir()
        _story_file(Path(tmp) / "hidden" / "h.jsonl", 3)
        (real / "link").symlink_to(Path(tmp) / "hidden")
        (Path(tmp) / "current").symlink_to(real)
        files = match_inputs([str(Path(tmp) / "current")])
        assert [(f.rel_path, f.problem[:1]) for f in files] == [("a.jsonl", ()), ("link", ("symlink_outside_input",))]


def _input_patterns():
    """The module-level regular expressions of pipeline/ and transforms/ that run on record or page text and
    are not timed by tests/test_linear_rules.py (which covers the rules and the cleaner's own patterns)."""
    from wirewash.pipeline import records
    from wirewash.transforms import dedup, extract, language, normalize

    return [normalize._SPACE_CHARS, normalize._BLANK_RUNS, normalize._INVISIBLE,
            normalize.HTML_ENTITY_RE, normalize._FTFY_TRIGGERS, extract._INTRO_CLASS, extract._NOT_INTRO_CLASS,
            extract._LANG_ATTR, extract._HTML_TAG, extract._SCRIPT_TAG, extract._SCRIPT_END, language._WORD,
            records._SURROGATE_ESCAPE, dedup._UNSPACED]


@pytest.mark.parametrize("pattern", _input_patterns(), ids=lambda p: p.pattern[:24])
def test_the_patterns_on_input_text_grow_linearly(pattern):
    """Each pattern run by itself (never trusting what ran before it) on adversarial lines of 2 and 40 KB:
    20 times the text takes about 20 times as long (quadratic: 400 times; ` *\\n *` was, on a line of spaces
    that nothing had collapsed before it)."""
    from tests.test_linear_rules import _adversarial, _scaling

    small, large = _adversarial(pattern.pattern, 2_000), _adversarial(pattern.pattern, 40_000)
    ratios = []
    for _ in range(3):  # a busy machine can stall one measurement; quadratic time never gets under the bound
        ratios.append(_scaling(lambda text: pattern.findall(text), small, large))
        if ratios[-1] < 120:
            break
    assert ratios[-1] < 120, ratios


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=4))
def test_files_joined_with_their_byte_order_marks_lose_no_record(tmp_path_factory, parts):
    """UTF-8 files, some with a byte-order mark, joined with `cat` (each mark then starts a later line), and
    the same records as Kafka / Pub/Sub messages with a mark: every record is read as the file alone would be
    (a mark before a record is not part of it; each was a `bad_json` rejection)."""
    import codecs

    from wirewash.pipeline.sources import decode_message
    from wirewash.transforms.types import Article

    joined, n = b"", 0
    for bom, count in parts:
        lines = [json.dumps({"id": f"r{n + i}", "text": make_hostile.STORIES[(n + i) % 12]}).encode() + b"\n"
                 for i in range(count)]
        joined += (codecs.BOM_UTF8 if bom else b"") + b"".join(lines)
        n += count
    folder = tmp_path_factory.mktemp("joined")
    (folder / "all.jsonl").write_bytes(joined)
    out = list(parse_file(InputFile(str(folder / "all.jsonl"), "all.jsonl", "jsonl"), 1 << 20))
    assert [r.doc_id for r in out if isinstance(r, Article)] == [f"r{i}" for i in range(n)]
    message = codecs.BOM_UTF8 + json.dumps({"id": "m", "text": make_hostile.STORIES[0]}).encode()
    assert isinstance(decode_message(message, "kafka:t", "0:1"), Article)


@pytest.mark.parametrize("verbose", [True, False])  # quiet last: the logging state the other tests expect
def test_pages_the_extractor_cannot_parse_print_nothing_but_with_verbose(tmp_path, caplog, verbose):
    """trafilatura logs several ERROR lines per page it cannot parse ("empty HTML tree"), which printed even
    under --quiet: the page is its record's `no_text_extracted` rejection already. After `wirewash run` set up
    logging (here a run stopped at its missing input), they show with --verbose only."""
    from wirewash.transforms.extract import extract_html

    argv = ["run", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "lake"), "--quiet"]
    assert main(argv + (["--verbose"] if verbose else [])) == 2
    caplog.clear()
    assert extract_html("   <!-- nothing -->").text == ""
    assert any(r.name.startswith("trafilatura") for r in caplog.records) is verbose


@pytest.mark.parametrize("name", ["lake[1]", "lake*", "la?e", "x]"])
def test_an_output_path_with_pattern_characters_is_refused_before_anything_is_written(tmp_path, capsys, name):
    """Beam's file systems read *, ?, [ and ] as patterns: such a lake failed halfway ("cannot write to the
    output folder ...: Delete operation failed"), leaving its write probe behind. Refused in one line (exit 2)
    before the folder is made, by the CLI and the library."""
    from wirewash.pipeline.api import WriteToLake

    good = tmp_path / "in.jsonl"
    good.write_text(json.dumps({"id": "a", "text": make_hostile.STORIES[0]}) + "\n")
    assert main(["run", "--input", str(good), "--output", str(tmp_path / "sub" / name), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot hold *, ?, [ or ]" in err[0]
    assert not (tmp_path / "sub").exists()
    with pytest.raises(ValueError, match=r"cannot hold \*"):
        WriteToLake(str(tmp_path / "sub" / name)).expand(None)


def test_an_input_named_with_pattern_characters_is_read_as_the_path_it_names(tmp_path, monkeypatch):
    """A folder `in[1]/`, a file `notes[draft].jsonl` or `a*.jsonl` that exist, and that read as patterns match
    nothing: each is the path it names (as a shell takes it), not "nothing matches"; a pattern that matches
    files still means those files."""
    story = json.dumps({"id": "a", "text": make_hostile.STORIES[0]}) + "\n"
    (tmp_path / "in[1]").mkdir()
    (tmp_path / "in[1]" / "x.jsonl").write_text(story)
    (tmp_path / "notes[draft].jsonl").write_text(story)
    (tmp_path / "a*.jsonl").write_text(story)
    assert [f.rel_path for f in match_inputs([str(tmp_path / "in[1]")])] == ["x.jsonl"]
    assert [f.rel_path for f in match_inputs([str(tmp_path / "notes[draft].jsonl")])] == ["notes[draft].jsonl"]
    assert [f.rel_path for f in match_inputs([str(tmp_path / "in[1]" / "x.jsonl")])] == ["x.jsonl"]
    monkeypatch.chdir(tmp_path)
    assert [f.rel_path for f in match_inputs(["notes[draft].jsonl"])] == ["notes[draft].jsonl"]
    assert {f.rel_path for f in match_inputs([str(tmp_path / "*.jsonl")])} == {"notes[draft].jsonl", "a*.jsonl"}
    (tmp_path / "notesd.jsonl").write_text(story)  # now the pattern matches a file: that file, as before
    assert [f.rel_path for f in match_inputs([str(tmp_path / "notes[draft].jsonl")])] == ["notesd.jsonl"]
    lake = tmp_path / "lake"
    assert main(["run", "--input", str(tmp_path / "in[1]"), "--output", str(lake), "--quiet"]) == 0
    assert summary(lake)["documents"] == 1


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.integers(1, 20_000), st.booleans())
def test_a_number_of_any_length_in_a_field_not_kept_keeps_the_record(digits, negative):
    """JSON numbers have no size limit: a record with a 5,000-digit integer in a field wirewash does not keep
    was `bad_json` (Python converts at most 4,300 digits); it is a document, and such a number as the id is
    `wrong_type:id` like any number."""
    from wirewash.pipeline.records import parse_json_record
    from wirewash.transforms.types import Article

    number = ("-" if negative else "") + "7" * digits
    line = '{"id": "a", "text": %s, "views": %s}' % (json.dumps(make_hostile.STORIES[0]), number)
    assert isinstance(parse_json_record(line.encode(), "f.jsonl:1", ("line",)), Article)
    as_id = '{"id": %s, "text": %s}' % (number, json.dumps(make_hostile.STORIES[0]))
    assert parse_json_record(as_id.encode(), "f.jsonl:1", ("line",)).reason == "wrong_type:id"


_PAGES_BY_CHARSET = {  # (label a page declares, a sentence that codec encodes)
    "windows-1251": "Городской совет утвердил новый бюджет во вторник.",
    "KOI8-R": "Члены совета заявили, что строительство начнётся весной.",
    "Shift_JIS": "市議会は火曜日、新しい予算を承認した。",
    "GB2312": "市议会周二批准了新的预算。",
    "EUC-KR": "시의회는 화요일에 새 예산을 승인했다.",
    "ISO-8859-1": "Le conseil municipal a approuvé le budget mardi, à l'unanimité.",
    "iso-8859-7": "Το δημοτικό συμβούλιο ενέκρινε τον νέο προϋπολογισμό.",
    "windows-1256": "وافق مجلس المدينة على الميزانية الجديدة يوم الثلاثاء.",
}


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(_PAGES_BY_CHARSET)), st.booleans(), st.sampled_from(['"', "'", ""]))
def test_a_page_in_the_encoding_it_declares_is_read(label, http_equiv, quote):
    """A `.html` page saved in the encoding its `<meta>` declares (windows-1251, Shift_JIS, GB2312...; common in
    news archives) is read as a browser reads it (it was `invalid_utf8`); a `.txt` file, which declares
    nothing, and a page declaring UTF-8 that is not, are still `invalid_utf8`."""
    from wirewash.pipeline.records import parse_document_file
    from wirewash.transforms.types import Article

    sentence = _PAGES_BY_CHARSET[label]
    meta = (f'<meta http-equiv="Content-Type" content="text/html; charset={label}">' if http_equiv
            else f"<meta charset={quote}{label}{quote}>")
    page = f"<html><head>{meta}<title>t</title></head><body><p>{sentence}</p></body></html>"
    data = page.encode({"ISO-8859-1": "cp1252"}.get(label, label))
    parsed = parse_document_file(data, "html", "page.html")
    assert isinstance(parsed, Article) and parsed.html == page
    if data != page.encode("utf-8"):
        assert parse_document_file(data, "text", "page.txt").reason == "invalid_utf8"
        mislabeled = data.replace(label.encode(), b"utf-8")
        assert parse_document_file(mislabeled, "html", "page.html").reason == "invalid_utf8"


def test_a_table_folder_linked_out_of_the_lake_changes_nothing(small_lake, tmp_path, capsys):
    """A lake whose `documents/` folder is a symbolic link to a folder elsewhere (its paths in the manifest
    look inside): `compact` would rewrite and delete the files there, `query` read them. Both, and an append,
    refuse in one line; the folder elsewhere is left byte for byte."""
    import shutil

    lake = Path(shutil.copytree(small_lake, tmp_path / "lake"))
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(lake / "documents"), str(elsewhere))
    (lake / "documents").symlink_to(elsewhere, target_is_directory=True)
    part = next(elsewhere.rglob("*.parquet"))
    shutil.copy(part, part.with_name("part-copy.parquet"))  # two files in a partition: something to compact
    state = json.loads((lake / "_SUMMARY.json").read_text())
    state["files"]["documents"].append(str(part.with_name("part-copy.parquet").relative_to(elsewhere.parent))
                                       .replace("elsewhere", "documents", 1))
    (lake / "_SUMMARY.json").write_text(json.dumps(state))
    before = {p: p.read_bytes() for p in sorted(elsewhere.rglob("*")) if p.is_file()}
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"id": "n", "text": make_hostile.STORIES[1]}) + "\n")
    for argv in (["compact", str(lake)], ["run", "--append", "--input", str(new), "--output", str(lake), "--quiet"],
                 ["query", str(lake), "SELECT count(*) FROM documents"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "symbolic link out of the lake" in err[0], err
    assert {p: p.read_bytes() for p in sorted(elsewhere.rglob("*")) if p.is_file()} == before


def test_an_older_lake_with_a_table_folder_linked_out_is_refused_by_query(small_lake, tmp_path, capsys):
    """The same link in a lake from before the manifest (its files found by listing the folders)."""
    import shutil

    lake = Path(shutil.copytree(small_lake, tmp_path / "lake"))
    shutil.move(str(lake / "documents"), str(tmp_path / "elsewhere"))
    (lake / "documents").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    state = json.loads((lake / "_SUMMARY.json").read_text())
    del state["files"]
    (lake / "_SUMMARY.json").write_text(json.dumps(state))
    assert main(["query", str(lake), "SELECT count(*) FROM documents"]) == 2
    assert "symbolic link out of the lake" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["notes.txt", "notes[1].txt"])
def test_a_file_named_relatively_that_links_out_of_its_folder_is_never_read(tmp_path, monkeypatch, name):
    """`--input notes.txt` run from its folder, where notes.txt is a symbolic link to a file elsewhere (here a
    secret; /proc/self/environ leaked the environment into the rejected row's excerpt): rejected by name like
    the same file named by its absolute path (its folder was taken as `/`, so nothing was ever outside it)."""
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("CANARY-SECRET " + make_hostile.STORIES[0])
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / name).symlink_to(secret)
    monkeypatch.chdir(folder)
    for as_given in (name, str(folder / name)):
        (found,) = match_inputs([as_given])
        assert found.problem and found.problem[0] == "symlink_outside_input", as_given
    lake = tmp_path / "lake"
    assert main(["run", "--input", name, "--output", str(lake), "--quiet"]) == 0
    assert [r["reason"] for r in lake_rows(lake, "rejected", "reason")] == ["symlink_outside_input"]
    assert "CANARY" not in json.dumps([lake_rows(lake, t) for t in ("documents", "rejected")], default=str)
