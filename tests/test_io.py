"""Reading: every line or file becomes one Article or one Rejection with a reason and a location."""
from __future__ import annotations

import gzip
import json

import pytest

from wirewash.pipeline.input_files import InputError, InputFile, format_of, match_inputs
from wirewash.pipeline.io import parse_file
from wirewash.pipeline.records import (parse_document_file, parse_json_record, split_title,
                                       stable_id)
from wirewash.transforms.records import parse_published, source_from_url
from wirewash.transforms.types import Article, Rejection
from tests.helpers import ARTICLE_EN, write_jsonl

LOC = "in.jsonl:3"


def parse(obj) -> Article | Rejection:
    raw = obj if isinstance(obj, bytes) else (obj if isinstance(obj, str) else json.dumps(obj)).encode()
    return parse_json_record(raw, LOC, ("line", "in.jsonl", "3"))


def test_good_record_keeps_fields_and_id():
    art = parse({"id": "a1", "url": "https://www.example.com/x?utm=1", "title": " T ", "published": "2023-06-27T08:00:00+07:00",
                 "text": ARTICLE_EN})
    assert isinstance(art, Article)
    assert (art.doc_id, art.source, art.title, art.published_at) == ("a1", "example.com", "T", "2023-06-27T01:00:00+00:00")
    assert art.format == "text" and art.source_location == LOC


def test_html_record_is_html_format():
    art = parse({"id": "h", "html": "<html><body><p>x</p></body></html>"})
    assert art.format == "html" and art.html.startswith("<html") and art.text == ""


@pytest.mark.parametrize("obj, reason", [
    ('{"id": "x", "text": "abc"', "bad_json"),
    ("{'id': 'x'}", "bad_json"),
    ("[1, 2]", "not_an_object"),
    ('"just a string"', "not_an_object"),
    ({"id": "x", "text": None}, "missing_text"),
    ({"id": "x"}, "missing_text"),
    ({"id": "x", "text": "   \n "}, "empty_text"),
    ({"id": "x", "text": ["a", "b"]}, "wrong_type:text"),
    ({"id": 17, "text": "abc"}, "wrong_type:id"),
    ({"id": "x", "published": 17, "text": "abc"}, "wrong_type:published"),
    ({"id": "x", "title": 5, "text": "abc"}, "wrong_type:title"),
    ({"id": "x", "url": ["u"], "text": "abc"}, "wrong_type:url"),
    ({"id": "x", "text": "a\x00b"}, "binary_content"),
    (b'{"id": "x", "text": "caf\xe9"}', "invalid_utf8"),
])
def test_bad_records_are_rejected_with_reason(obj, reason):
    result = parse(obj)
    assert isinstance(result, Rejection)
    assert result.reason == reason and result.source_location == LOC and result.stage == "read"


def test_rejection_keeps_known_id_and_short_excerpt():
    result = parse({"id": "keep-me", "text": None, "title": "x" * 5000})
    assert result.doc_id == "keep-me" and len(result.excerpt) <= 200


@pytest.mark.parametrize("value, expected", [
    ("2023-06-27", "2023-06-27T00:00:00+00:00"),
    ("2023-06-27T10:00:00Z", "2023-06-27T10:00:00+00:00"),
    ("2023-06-27 10:00:00-05:00", "2023-06-27T15:00:00+00:00"),
    ("../../etc", None), ("99999-01-01", None), ("1066-10-14", None), ("27/06/2023", None),
    ("June 27, 2023", None), ("", None), (None, None), (17, None),
])
def test_parse_published(value, expected):
    assert parse_published(value) == expected


def test_bad_published_string_keeps_document_undated():
    art = parse({"id": "x", "published": "yesterday", "text": ARTICLE_EN})
    assert isinstance(art, Article) and art.published_at is None


def test_missing_id_gets_stable_hash_of_url_else_location():
    a = parse({"url": "https://example.com/a", "text": ARTICLE_EN})
    b = parse({"url": "https://example.com/a", "text": "other"})
    c = parse({"text": ARTICLE_EN})
    assert a.doc_id == b.doc_id == stable_id("url", "https://example.com/a")
    assert c.doc_id == stable_id("line", "in.jsonl", "3") and len(c.doc_id) == 16


@pytest.mark.parametrize("url, source", [("https://www.Example.com/a", "example.com"),
                                         ("http://user@news.site.vn:8080/x", "news.site.vn"),
                                         ("not a url", None), (None, None)])
def test_source_from_url(url, source):
    assert source_from_url(url) == source


def test_split_title_only_for_headlines():
    assert split_title("China offers closer military cooperation\n\nBody text.") == (
        "China offers closer military cooperation", "\nBody text.")
    assert split_title("This is a sentence that ends with a period.\nMore.")[0] is None
    assert split_title("Only one line")[0] is None
    long_line = " ".join(["word"] * 30)
    assert split_title(long_line + "\nbody")[0] is None


def test_document_files(tmp_path):
    art = parse_document_file(b"Headline here\n\n" + ARTICLE_EN.encode(), "text", "a/b.txt")
    assert art.title == "Headline here" and art.doc_id == stable_id("path", "a/b.txt")
    assert art.source_location == "a/b.txt:1"
    utf16 = ("Headline\n" + ARTICLE_EN).encode("utf-16")
    assert isinstance(parse_document_file(utf16, "text", "u.txt"), Article)
    assert parse_document_file(b"", "text", "e.txt").reason == "empty_text"
    assert parse_document_file(b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR", "text", "p.txt").reason == "binary_content"
    assert parse_document_file(b"caf\xe9 au lait " * 10, "text", "l.txt").reason == "invalid_utf8"


def test_parse_file_jsonl_counts_every_line(tmp_path):
    path = write_jsonl(tmp_path / "mix.jsonl", [
        {"id": "1", "text": ARTICLE_EN}, "not json", {"id": "3", "text": ARTICLE_EN},
        '{"id": "4", "text": "' + "x" * 5000 + '"}', "", {"id": "6", "text": ARTICLE_EN}])
    out = list(parse_file(InputFile(str(path), "mix.jsonl", "jsonl"), max_record_bytes=2048))
    locations = [o.source_location for o in out]
    assert locations == ["mix.jsonl:1", "mix.jsonl:2", "mix.jsonl:3", "mix.jsonl:4", "mix.jsonl:6"]
    assert [getattr(o, "reason", None) for o in out] == [None, "bad_json", None, "too_large", None]


def test_parse_file_gzip_and_truncated_gzip(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps({"id": "g", "text": ARTICLE_EN}) + "\n")
    out = list(parse_file(InputFile(str(path), "a.jsonl.gz", "jsonl")))
    assert [o.doc_id for o in out] == ["g"]
    broken = tmp_path / "b.jsonl.gz"
    broken.write_bytes(path.read_bytes()[:-12])
    out = list(parse_file(InputFile(str(broken), "b.jsonl.gz", "jsonl")))
    assert out[-1].reason == "unreadable_file"


@pytest.mark.parametrize("name, fmt", [("a.jsonl", "jsonl"), ("a.txt", "text"), ("a.html", "html")])
def test_gzip_by_content_is_read_whatever_the_name(tmp_path, name, fmt):
    """A file holding gzip under a plain name (`gzip -c > x.jsonl`, a crawler's cached page) is inflated, as
    a .gz is: its records are read, not rejected line by line as bytes that are not UTF-8."""
    plain = {"jsonl": (json.dumps({"id": "g", "text": ARTICLE_EN}) + "\n") * 2, "text": ARTICLE_EN,
             "html": f"<html><body><article><p>{ARTICLE_EN}</p></article></body></html>"}[fmt]
    (tmp_path / "plain").write_text(plain, encoding="utf-8")
    (tmp_path / name).write_bytes(gzip.compress(plain.encode("utf-8")))
    zipped = list(parse_file(InputFile(str(tmp_path / name), name, fmt)))
    expected = list(parse_file(InputFile(str(tmp_path / "plain"), name, fmt)))
    assert zipped == expected and all(isinstance(o, Article) for o in zipped)


def test_unsupported_and_unreadable_files(tmp_path):
    assert parse_file(InputFile("x.pdf", "x.pdf", None)).__next__().reason == "unsupported_file_type"
    assert next(parse_file(InputFile(str(tmp_path / "gone.txt"), "gone.txt", "text"))).reason == "unreadable_file"


def test_format_of():
    assert [format_of(p) for p in ("a.JSONL", "a.jsonl.gz", "a.txt", "a.htm", "a.html", "a.md")] == [
        "jsonl", "jsonl", "text", "html", "html", None]


def test_match_inputs_folder_skips_non_inputs(seeds_dir):
    files = match_inputs([str(seeds_dir)])
    assert len(files) == 5 and all(f.format == "text" for f in files)
    assert files[0].rel_path == "000_9635c48be9c98235.txt"


def test_match_inputs_errors_name_the_argument(tmp_path):
    with pytest.raises(InputError, match="nothing matches"):
        match_inputs([str(tmp_path / "*.jsonl")])
    with pytest.raises(InputError, match="no .jsonl"):
        match_inputs([str(tmp_path)])


# --- the byte tally: records counted on the bytes, apart from the parsing (issue 17) --------------------------

def _tally(path, name, **kwargs):
    from wirewash.pipeline.tally import expected_records, read_whole
    tallies = []
    out = list(parse_file(InputFile(str(path), name, format_of(name)), on_tally=tallies.append, **kwargs))
    (tally,) = tallies
    return out, tally, expected_records(tally), read_whole(tally)


ODD_LINES = ['{"text": "a"}', "", "  \t", '{"text": "b\ud800"}', "\r", "not json", " x ", '{"text": "\u0a0d\u010a"}']


@pytest.mark.parametrize("encoding,bom", [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"),
                                          ("utf-16-be", b"\xfe\xff")])
@pytest.mark.parametrize("final_newline", [True, False])
def test_tally_counts_the_records_of_every_encoding(tmp_path, encoding, bom, final_newline):
    """Blank lines (even of a BOM, or whitespace), UTF-16 code units holding byte 0x0A: the count on the bytes
    agrees with the records emitted, and the file is read to its end."""
    text = "\n".join(ODD_LINES) + ("\n" if final_newline else "")
    data = bom + text.encode(encoding, "surrogatepass")
    for name, payload in (("f.jsonl", data), ("f.jsonl.gz", gzip.compress(data))):
        (tmp_path / name).write_bytes(payload)
        out, tally, expected, whole = _tally(tmp_path / name, name)
        assert len(out) == expected == 5 and whole and tally.at_end, (name, out, tally)


def test_tally_sees_an_empty_file_a_failed_read_and_an_unopenable_file(tmp_path):
    (tmp_path / "blank.jsonl").write_bytes(b"\xef\xbb\xbf \n\n")
    out, tally, expected, whole = _tally(tmp_path / "blank.jsonl", "blank.jsonl")
    assert [r.reason for r in out] == ["empty_file"] and expected == 1 and whole
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(b"".join(b'{"text": "%d"}\n' % i for i in range(9000)))[:-200])
    out, tally, expected, whole = _tally(tmp_path / "cut.jsonl.gz", "cut.jsonl.gz")
    assert out[-1].reason == "unreadable_file" and tally.failed and len(out) == expected and whole
    out, tally, expected, whole = _tally(tmp_path / "gone.jsonl", "gone.jsonl")
    assert [r.reason for r in out] == ["unreadable_file"] and not tally.opened and expected == 1 and whole


def test_a_blank_line_longer_than_the_record_limit_is_still_blank(tmp_path):
    (tmp_path / "w.jsonl").write_bytes(b'{"text": "a"}\n' + b" " * 5000 + b"\n" + b"x" * 5000 + b"\n")
    out, tally, expected, whole = _tally(tmp_path / "w.jsonl", "w.jsonl", max_record_bytes=1024)
    assert [getattr(r, "reason", "doc") for r in out] == ["doc", "too_large"] and expected == 2 and whole


def test_unread_input_names_each_file_that_lost_records():
    from wirewash.pipeline.lake_summary import unread_input
    assert unread_input([("a.jsonl", True, 3, 3), ("b.txt", True, 1, 1)]) == []
    assert unread_input([("b.jsonl@4096", False, 5, 2), ("a.jsonl", True, 3, 4)]) == [
        "a.jsonl: 4 records read, its bytes hold 3", "b.jsonl@4096: not read to its end",
        "b.jsonl@4096: 2 records read, its bytes hold 5"]


def test_a_bare_relative_input_name_never_walks_the_filesystem_root(tmp_path, monkeypatch):
    """`--input in.jsonl` from its folder: the file is found, and no listing walks / (it took seconds per run,
    and a relative pattern matches no path below /)."""
    import os

    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    monkeypatch.chdir(tmp_path)
    walked = []
    real_walk = os.walk
    monkeypatch.setattr(os, "walk", lambda top, *a, **k: walked.append(str(top)) or real_walk(top, *a, **k))
    assert [f.rel_path for f in match_inputs(["in.jsonl"])] == ["in.jsonl"]
    assert "/" not in walked, walked


def test_a_relative_glob_matches_from_the_working_folder(tmp_path, monkeypatch):
    """`--input '*.jsonl'` and `--input 'in/*.txt'` match like the shell would, from the working folder (Beam's
    local listing alone matched nothing for a relative glob); a glob matching nothing still names the argument."""
    (tmp_path / "in").mkdir()
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "in" / "b.txt").write_text("Title\n\nBody.\n")
    monkeypatch.chdir(tmp_path)
    assert [f.rel_path for f in match_inputs(["*.jsonl"])] == ["a.jsonl"]
    assert [f.rel_path for f in match_inputs(["in/*.txt"])] == ["b.txt"]
    assert [f.path for f in match_inputs(["in/*.txt"])] == [str(tmp_path / "in" / "b.txt")]
    with pytest.raises(InputError, match=r"nothing matches '\*\.html'"):
        match_inputs(["*.html"])
