"""Writes the hostile corpus in tests/data/hostile/ and, next to it, expected.json: where every record must end.

    python tests/data/make_hostile.py            # rewrite tests/data/hostile/
    python tests/data/make_hostile.py --out DIR  # write elsewhere (the tests check the committed copy is current)

Deterministic (no randomness, fixed gzip mtime), small (under 150 KB in all). Cases that cannot live in git
(a FIFO, a dangling symlink, a directory named like an input, a 100 MB record) are made at test time by
`add_runtime_cases` / `write_huge_record`, in a temporary copy.

expected.json maps each source location (`file:line`; line 0 = the file as a whole) to "documents" or to
the rejection reason.
"""
from __future__ import annotations

import argparse
import codecs
import gzip
import io
import json
import os
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "hostile"

STORIES = [
    "The harbour authority opened a new ferry terminal on Monday, ending three years of construction delays. "
    "Officials said the terminal can handle twice as many passengers as the old building and will cut waiting "
    "times during the summer season. Local shop owners welcomed the change but complained about parking.",
    "Farmers in the northern valley reported an early harvest after an unusually warm spring. Agricultural "
    "experts warned that the dry weather could still damage late crops, and the regional government promised "
    "emergency funds for irrigation if the drought continues into August.",
    "A small museum dedicated to the history of printing reopened after a two year renovation. Visitors can "
    "now operate a restored nineteenth century press and print their own posters, and the curators plan "
    "weekend workshops for schools and families throughout the autumn.",
    "The national football team lost its qualifying match by a single goal scored in the final minute. The "
    "coach defended his tactical choices at the press conference and said the players would recover in time "
    "for the decisive game against their neighbours next week.",
    "Researchers at the university published a study showing that city parks lower summer temperatures in "
    "surrounding streets by up to four degrees. The authors recommend planting more trees along bus routes "
    "and turning empty car parks into green squares.",
    "The central bank kept interest rates unchanged on Thursday, citing slowing inflation and weak demand for "
    "new loans. Analysts expect the first cut early next year, although two members of the board voted for "
    "an immediate reduction of a quarter point.",
    "Volunteers cleaned more than two tonnes of plastic from the river banks during a weekend campaign. The "
    "organisers said most of the waste came from packaging and fishing gear, and they asked the city council "
    "to install more bins near the popular picnic spots.",
    "A power cut left thousands of homes in the eastern district without electricity for six hours on Sunday. "
    "The grid operator blamed a damaged underground cable and said engineers had rerouted supply while the "
    "repair work continues through the week.",
    "The city library will extend its opening hours during the exam season, staying open until midnight on "
    "weekdays. Students had collected more than four thousand signatures asking for quiet study rooms, and "
    "the library board approved the trial for two months.",
    "A regional airline announced new direct flights to three coastal towns starting in the spring. Tourism "
    "offices hope the routes will bring more visitors outside the busy summer months, while environmental "
    "groups criticised the plan and asked for more train connections instead.",
    "The old textile factory by the canal will become a centre for young companies and artists. The developer "
    "promised to keep the brick facade and the tall chimney, and the first studios should open by the end of "
    "next year if the building permits arrive on time.",
    "Doctors at the children's hospital started a programme that lets parents stay overnight in family rooms "
    "next to the wards. Nurses say the children sleep better and recover faster, and a charity has paid for "
    "the furniture and the kitchen.",
]


# Stories for the cases of issue 17 (lone surrogates, deep nesting), unlike the ones above.
MORE_STORIES = [
    "The mountain rescue team trained new volunteers on the glacier last weekend. Instructors showed them how "
    "to build snow anchors, read avalanche bulletins and lower an injured climber on a stretcher, and the team "
    "hopes to double its members before the winter.",
    "A bakery in the old town won the national prize for the best rye bread. The owner credits a sourdough "
    "starter kept alive for forty years, and the queue outside the shop now stretches around the corner every "
    "Saturday morning.",
    "The regional orchestra will tour five villages that have never hosted a concert. Musicians will play in "
    "barns, churches and a former railway depot, and tickets are free for pupils of the local music schools.",
    "Engineers began testing a tidal turbine anchored in the strait between the two islands. If the trial "
    "succeeds, a row of twenty machines could supply the harbour town with electricity for most of the year.",
    "A long-lost letter from the town's founder turned up in an attic during renovation work. Archivists say "
    "the paper describes the first market charter and will be shown in the town hall after conservation.",
]


def page(body: str, title: str, extra_head: str = "") -> str:
    return (f"<html lang='en'><head><title>{title}</title>{extra_head}</head><body><nav><a href='/'>Home</a></nav>"
            f"<article><h1>{title}</h1><p>{body}</p></article><footer>Contact us</footer></body></html>")


def jsonl_line(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def build(out: Path) -> dict:
    """Writes every committed hostile file into `out`; returns {location: expected outcome}."""
    out.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}
    s = STORIES

    # One JSONL file, one hostile line each (line number = position + 1).
    lines = [
        (jsonl_line({"id": "good", "url": "https://example.com/good", "published": "2023-05-01", "text": s[0]}),
         "documents"),
        (b'{"id": "broken", "text": "no closing brace"', "bad_json"),
        (b'[{"id": "in-array", "text": "an array is not a record"}]', "not_an_object"),
        (jsonl_line({"id": "pub-int", "published": 17, "text": s[1]}), "wrong_type:published"),
        (jsonl_line({"id": "text-null", "text": None}), "missing_text"),
        (jsonl_line({"id": "text-list", "text": [s[1]]}), "wrong_type:text"),
        (jsonl_line({"id": "id-int", "text": s[1]}).replace(b'"id-int"', b"42"), "wrong_type:id"),
        (b'{"id": "latin1", "text": "caf\xe9 cr\xe8me"}', "invalid_utf8"),
        (b'{"id": "raw-nul", "text": "a\x00b"}', "binary_content"),
        (jsonl_line({"id": "escaped-nul", "text": "before\u0000after " + s[1]}), "binary_content"),
        (jsonl_line({"id": "empty", "text": ""}), "empty_text"),
        (jsonl_line({"id": "spaces", "text": " \t\n \u00a0 "}), "empty_text"),
        (jsonl_line({"id": "path-date", "published": "../../etc", "text": s[2]}), "documents"),
        (jsonl_line({"id": "year-99999", "published": "99999-01-01T00:00:00Z", "text": s[3]}), "documents"),
        (jsonl_line({"id": "dup-id", "published": "2023-01-01", "text": s[4]}), "documents"),
        (jsonl_line({"id": "dup-id", "published": "2023-01-02", "text": s[5]}), "duplicate_id"),
        (jsonl_line({"id": "script-only", "html": "<html><head><style>body{color:red}</style></head><body>"
                     "<script>var story = 'The harbour authority opened a new ferry terminal';</script>"
                     "</body></html>"}), "no_text_extracted"),
        (jsonl_line({"id": "unclosed", "html": "<html><body><article><h1>Library hours<p>" + s[8] +
                     "<p><b><i>trailing tags never closed"}), "documents"),
        (jsonl_line({"id": "deep", "html": "<html><body>" + "<div>" * 3000 + "<p>" + s[9] + "</p>"}),
         "no_text_extracted"),
        (jsonl_line({"id": "xxe", "html": '<!DOCTYPE html [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' +
                     page(s[10] + " &xxe;", "Factory by the canal")}), "documents"),
        (jsonl_line({"id": "exact-copy", "published": "2023-06-01", "text": s[0] + "\n\nRead more: other news"}),
         "duplicates"),
        (b"", None),  # a blank line is not a record
        (b"   ", None),
    ]
    with open(out / "records.jsonl", "wb") as handle:
        for number, (line, outcome) in enumerate(lines, start=1):
            handle.write(line + b"\n")
            if outcome:
                expected[f"records.jsonl:{number}"] = outcome

    # Encodings: UTF-16 with a BOM (JSONL and text) and UTF-8 with a BOM are fine after repair.
    utf16 = "\n".join(json.dumps({"id": f"utf16-{i}", "text": t}, ensure_ascii=False)
                      for i, t in enumerate([s[6] + " Ünïcödé ✓.", s[7]])) + "\n"
    (out / "utf16.jsonl").write_bytes(codecs.BOM_UTF16_LE + utf16.encode("utf-16-le"))
    expected.update({"utf16.jsonl:1": "documents", "utf16.jsonl:2": "documents"})
    (out / "utf8bom.jsonl").write_bytes(codecs.BOM_UTF8 + jsonl_line({"id": "bom", "text": s[11]}) + b"\n")
    expected["utf8bom.jsonl:1"] = "duplicates"  # a near copy of utf16.txt, which sorts first (its doc_id)
    (out / "utf16.txt").write_bytes(("Children's hospital opens family rooms\n\n" + s[11].replace(
        "Doctors", "Physicians")).encode("utf-16"))
    expected["utf16.txt:1"] = "documents"
    (out / "latin1.txt").write_bytes(("Caf\u00e9 cr\u00e8me prices rise\n\n" + s[2]).encode("latin-1"))
    expected["latin1.txt:1"] = "invalid_utf8"
    (out / "nul.txt").write_bytes(s[3].encode() + b"\x00\x00\x00" + s[4].encode())
    expected["nul.txt:1"] = "binary_content"
    (out / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    expected["image.txt:1"] = "binary_content"
    (out / "empty.txt").write_bytes(b"")
    expected["empty.txt:0"] = "empty_file"
    (out / "whitespace.txt").write_bytes(b" \n\t\r\n  \n")
    expected["whitespace.txt:1"] = "empty_text"
    (out / "empty.jsonl").write_bytes(b"")
    expected["empty.jsonl:0"] = "empty_file"
    (out / "blank_lines.jsonl").write_bytes(b"\n \n\r\n")
    expected["blank_lines.jsonl:0"] = "empty_file"
    (out / "script_only.html").write_text("<html><head><style>p{margin:0}</style><script>document.write('x')"
                                          "</script></head><body><script>track();</script></body></html>")
    expected["script_only.html:1"] = "no_text_extracted"

    # Issue 17: a lone-surrogate escape in the url of a record without id (its id hash used to raise and end
    # the file's read, silently), in id/title/source/text (the spill's UTF-8 encoding failed the run), JSON
    # nested 1,000 deep (RecursionError), and a UTF-16 file with an unpaired code unit. Lone surrogates become
    # U+FFFD; every line after them still reads.
    m = MORE_STORIES
    surrogate_lines = [
        (b'{"url": "https://example.com/a\\ud800b", "text": ' + json.dumps(m[0]).encode() + b"}", "documents"),
        (b'{"id": "lone-\\udc00", "title": "Bread \\ud800 prize", "source": "bakery\\udbff", "text": '
         + json.dumps(m[1]).encode()[:-1] + b' \\ud83d"}', "documents"),  # a pair cut in half
        (b"[" * 1000 + b"]" * 1000, "bad_json"),
        (b'{"id": "deep-field", "text": "x", "extra": ' + b"[" * 1000 + b"]" * 1000 + b"}", "bad_json"),
        (jsonl_line({"id": "after-surrogates", "text": m[2]}), "documents"),
    ]
    with open(out / "surrogates.jsonl", "wb") as handle:
        for number, (line, outcome) in enumerate(surrogate_lines, start=1):
            handle.write(line + b"\n")
            expected[f"surrogates.jsonl:{number}"] = outcome
    unpaired = "".join(json.dumps({"id": f"unpaired-{i}", "text": t}, ensure_ascii=False) + "\n"
                       for i, t in enumerate([m[3], m[4].replace("attic", "attic \ud800")]))
    (out / "utf16_unpaired.jsonl").write_bytes(codecs.BOM_UTF16_LE + unpaired.encode("utf-16-le", "surrogatepass"))
    expected.update({"utf16_unpaired.jsonl:1": "documents", "utf16_unpaired.jsonl:2": "documents"})

    # Compressed: a gzip bomb (one good record, then a line inflating to 24 MiB of spaces), a truncated
    # gzip (its first record still reads) and a file that only claims to be gzip.
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(jsonl_line({"id": "before-bomb", "text": s[9]}) + b"\n")
        gz.write(b'{"id": "bomb", "text": "')
        chunk = b" " * (1 << 20)
        for _ in range(24):
            gz.write(chunk)
        gz.write(b'"}\n')
    (out / "bomb.jsonl.gz").write_bytes(bomb.getvalue())
    expected.update({"bomb.jsonl.gz:1": "documents", "bomb.jsonl.gz:2": "decompression_limit"})
    truncated = io.BytesIO()
    with gzip.GzipFile(fileobj=truncated, mode="wb", mtime=0) as gz:
        gz.write(jsonl_line({"id": "before-cut", "text": s[1]}) + b"\n")
        gz.write(jsonl_line({"id": "cut", "text": " ".join(s) * 20}) + b"\n")  # > one 64 KiB read buffer
    (out / "truncated.jsonl.gz").write_bytes(truncated.getvalue()[:-100])
    expected.update({"truncated.jsonl.gz:1": "documents", "truncated.jsonl.gz:2": "unreadable_file"})
    (out / "notgzip.jsonl.gz").write_bytes(jsonl_line({"id": "plain", "text": s[0]}) + b"\n")
    expected["notgzip.jsonl.gz:0"] = "unreadable_file"

    (out / "expected.json").write_text(json.dumps(dict(sorted(expected.items())), indent=1) + "\n")
    return expected


def add_runtime_cases(folder: Path) -> dict:
    """Cases git cannot hold, added to a temporary copy: what a root user still cannot read.

    A dangling symlink, a FIFO (opening it would block forever) and a directory named like an input file.
    """
    (folder / "dangling.jsonl").symlink_to(folder / "gone" / "nowhere.jsonl")
    os.mkfifo(folder / "fifo.jsonl")
    (folder / "folder.jsonl").mkdir()
    return {"dangling.jsonl:0": "unreadable_file", "fifo.jsonl:0": "unreadable_file",
            "folder.jsonl:0": "unreadable_file"}


def write_huge_record(path: Path, size: int = 100 << 20) -> None:
    """One JSONL record of `size` bytes (100 MB by default), written in chunks, never held in memory."""
    chunk = ("word " * 200_000).encode()
    with open(path, "wb") as handle:
        handle.write(b'{"id": "huge", "text": "')
        written = 0
        while written < size:
            handle.write(chunk)
            written += len(chunk)
        handle.write(b'"}\n')
        handle.write(jsonl_line({"id": "after-huge", "text": STORIES[5]}) + b"\n")


def copy_corpus(target: Path) -> Path:
    shutil.copytree(OUT, target)
    (target / "expected.json").unlink()
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    print(f"{len(build(args.out))} expected outcomes written to {args.out}")
