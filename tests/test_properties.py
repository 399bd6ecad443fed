"""Property-based tests (hypothesis): normalize is idempotent; boilerplate cleaning never adds characters and
never drops a line that no rule matches; dedup decisions do not depend on input order; language detection
is deterministic. Example counts stay small: the suite must stay fast. See docs/guarantees.md."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wirewash.transforms.boilerplate import load_rules, match_line, strip_boilerplate
from wirewash.transforms.dedup import DedupConfig, DeduplicateArticles, bucket_candidates, first_of, _Key
from wirewash.transforms.language import detect_language, load_langdetect
from wirewash.transforms.normalize import FTFY_CONFIG, _BADNESS_ANCHORS, dedup_key, ftfy_may_change, looks_like_mojibake, normalize_text
from wirewash.transforms.types import Article
from tests.data.make_hostile import STORIES

REPO = Path(__file__).resolve().parents[1]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that normalization and cleaning treat specially, mixed into arbitrary text.
TRICKY = ["&amp\u037e", "AT&T", "&#x27;", "&\u212aopf;",  # an entity NFC completes; a bare "&"
          "\u00a0", "\u200b", "\ufeff", "\u00ad", "\u2028", "\u2029", "\u0085", "\r", "\r\n", "\n", "\t", "\x0b",
          "\x0c", "\u0301", "e\u0301", "\u00e9", "Ã©", "â€™", "&amp;", "&lt;", "&#39;", "&nbsp;", "’", "“", "ﬁ",
          "\uff21", "ǅ", "İ", "ß", "\U0001f600", "\x00", "\x1b[31m", " ", "  ", "Read more: ", "Advertisement",
          "PHOTO: AFP", "Sign up now", "•", "»"]
texts = st.lists(st.one_of(st.text(max_size=12), st.sampled_from(TRICKY)), max_size=30).map("".join)

BOILERPLATE = ["Read more: Other news", "Advertisement", "PHOTO: AFP", "Sign up now: Get our newsletters",
               "Follow us on Facebook", "Share this article", "© 2023 Example News. All rights reserved."]
lines = st.lists(st.one_of(st.sampled_from(BOILERPLATE), st.sampled_from(STORIES), st.text(max_size=40),
                           st.just(""), st.just("   ")), max_size=15)


@FAST
@given(texts)
@example("\xa0À\x86")  # found by hypothesis: ftfy turned \x86 into †, then read "À†" as mojibake on a 2nd pass
@example("Ã©&amp;amp;\u200b\x85â€™")
def test_normalize_is_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert dedup_key(once) == dedup_key(normalize_text(once))


latin_mojibake = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF), max_size=40)


@FAST
@given(st.one_of(texts, latin_mojibake))
@example("voilÃ le travail")  # mojibake with a lost no-break space: BADNESS_RE must catch it
@example("e\u0301\u20ac")     # only the NFC form could look like mojibake
def test_skipping_ftfy_is_only_done_when_it_would_change_nothing_but_nfc(text):
    import unicodedata

    import ftfy

    if not ftfy_may_change(text):
        assert ftfy.fix_text(text, FTFY_CONFIG) == unicodedata.normalize("NFC", text)


# Real mojibake: text encoded as UTF-8 and read back in an encoding ftfy knows, mixed with clean text and with
# the characters the windowed search is anchored on, so that matches fall at window edges and across them.
MOJIBAKE_CODECS = ["cp1252", "latin-1", "cp1251", "cp1253", "cp1257", "mac_roman"]
mojibake = st.tuples(st.text(max_size=15), st.sampled_from(MOJIBAKE_CODECS)).map(
    lambda pair: pair[0].encode("utf-8").decode(pair[1], errors="replace"))
anchor_chars = st.sampled_from(sorted(set(_BADNESS_ANCHORS[0].pattern[1:-1]) - {"\\"}))
mixed_mojibake = st.lists(st.one_of(st.text(max_size=10), mojibake, anchor_chars, st.sampled_from(TRICKY),
                                    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF),
                                            max_size=8)), max_size=25).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed_mojibake)
@example("voilÃ le travail")
@example("x" * 20 + "Ã\xa0")  # a match ending at the text's end
@example("Ã\xa0" + "x" * 20)  # ...starting at its beginning (`^[ÃÂ][ ]` is anchored there)
@example("a Ã€ " + "b" * 30 + " ГўВЂВ”a")  # two windows apart
@example("xx Ã yy")  # the match starts before its anchor (found against a narrower window)
@example("xx ²,œ yy")
def test_windowed_mojibake_check_is_ftfys_own(text):
    from ftfy.badness import BADNESS_RE

    assert looks_like_mojibake(text) == (BADNESS_RE.search(text) is not None)


def test_the_windowed_check_is_derived_from_the_installed_ftfy():
    # Without the derivation the check falls back to the whole-text search: right, but the speed-up is gone.
    assert _BADNESS_ANCHORS is not None


@FAST
@given(mixed_mojibake)
def test_gated_normalization_is_ungated_normalization(text):
    """normalize_text skips ftfy where `ftfy_may_change` says it would only NFC the text: same result as
    running ftfy on every text."""
    import unicodedata

    import ftfy

    if not ftfy_may_change(text):
        assert ftfy.fix_text(text, FTFY_CONFIG) == unicodedata.normalize("NFC", text)


@FAST
@given(mixed_mojibake)
def test_gated_title_normalization_is_ungated(title):
    import unicodedata

    import ftfy

    from wirewash.transforms.normalize import _INVISIBLE, normalize_title

    ungated = " ".join(_INVISIBLE.sub("", unicodedata.normalize("NFC", ftfy.fix_text(title, FTFY_CONFIG))).split())
    assert normalize_title(title) == (ungated or None)


WHITESPACE = [chr(code) for code in range(0x3000 + 1) if chr(code).isspace()] + ["\r\n"]


@FAST
@given(st.lists(st.one_of(st.text(max_size=6), st.sampled_from(WHITESPACE)), max_size=30).map("".join))
@example(" a \x1c\n\x85b\u2028 \n\n  ")
def test_spaces_tidied_in_one_pass_as_line_by_line(text):
    from wirewash.transforms.normalize import _SPACE_CHARS, tidy_spaces

    assert tidy_spaces(text) == "\n".join(_SPACE_CHARS.sub(" ", line).strip() for line in text.split("\n"))


@FAST
@given(st.lists(st.one_of(st.text(max_size=6), st.sampled_from(WHITESPACE + ["\u200b", "\u00ad", "\ufeff", "&amp;",
                                                                     "\n\n\n", "e\u0301"])), max_size=30).map("".join))
@example("a\u00ad\u200b b\n\n\n\n c \r\n")
def test_one_normalizing_pass_equals_its_regex_reference(text):
    """One pass of `normalize_text` (invisible characters and blank runs replaced only where present, spaces
    tidied line by line) gives what the regex passes over the whole text gave."""
    import re
    import unicodedata

    import ftfy

    from wirewash.transforms.normalize import _BLANK_RUNS, _INVISIBLE, _SPACE_CHARS, _normalize_once

    expected = text
    if not expected.isascii() or "&" in expected:
        if ftfy_may_change(expected):
            expected = ftfy.fix_text(expected, FTFY_CONFIG)
        expected = unicodedata.normalize("NFC", _INVISIBLE.sub("", expected))
    expected = expected.replace("\r\n", "\n").replace("\r", "\n")
    expected = re.sub(r" ?\n ?", "\n", _SPACE_CHARS.sub(" ", expected)).strip(" ")
    assert _normalize_once(text) == _BLANK_RUNS.sub("\n\n", expected).strip("\n")


RULES = load_rules()


def _check_cleaning(text: str):
    cleaned, removed = strip_boilerplate(text, RULES, edges=False)  # the rules pass alone
    assert not Counter(cleaned) - Counter(text), "cleaning added characters"
    kept_lines = cleaned.split("\n") if cleaned else []
    unmatched = [line for line in text.splitlines() if line.strip() and match_line(RULES, line) is None]
    assert [line for line in kept_lines if line.strip()] == unmatched, "a line no rule matches was dropped"
    assert len(removed) == sum(1 for line in text.splitlines() if match_line(RULES, line) is not None)
    # with the edge pass: still nothing added, kept lines in order and verbatim, every removal named
    cleaned, removed = strip_boilerplate(text, RULES)
    kept = [line for line in cleaned.split("\n") if line.strip()] if cleaned else []
    source = iter([line for line in text.splitlines() if line.strip()])
    assert all(any(line == other for other in source) for line in kept), "a kept line was changed or moved"
    assert len(kept) + len(removed) == sum(1 for line in text.splitlines() if line.strip())


@FAST
@given(lines)
def test_cleaning_keeps_every_unmatched_line_and_adds_nothing(parts):
    _check_cleaning(normalize_text("\n".join(parts)))  # what the pipeline gives the cleaner: normalized text


@FAST
@given(texts)
def test_cleaning_normalized_arbitrary_text(text):
    _check_cleaning(normalize_text(text))


# --- dedup: order-independent -------------------------------------------------------------------------------

def _article(doc_id, loc, text, published=None):
    return Article(doc_id, loc, "text", text=normalize_text(text), published_at=published, lang="en")


DEDUP_INPUT = [
    _article("a", "f:1", STORIES[0], "2023-01-02T00:00:00+00:00"),
    _article("b", "f:2", STORIES[0] + "\nRead more", "2023-01-01T00:00:00+00:00"),  # near copy of a, earlier
    _article("c", "f:3", STORIES[0].upper()),                                        # exact copy (folded) of a
    _article("d", "f:4", STORIES[0].replace("parking", "parking fees")),             # near copy of a
    _article("e", "f:5", STORIES[1]),
    _article("e", "f:6", STORIES[2]),                                                # duplicate id
    _article("f", "f:7", STORIES[2]),                                                # the rejected e's text
    _article("g", "f:8", STORIES[3]),
    _article("h", "f:9", STORIES[3] + " " + STORIES[4]),                             # distinct
    _article("i", "f:10", STORIES[1].replace("August", "September")),                # near copy of e (f:5)
]

def _decisions(articles) -> list:
    """Every record's fate as plain lists, from one real Beam run of the dedup stage."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "decisions.json"
        _run_dedup(articles, str(target))
        return json.loads(target.read_text())


def _run_dedup(articles, target: str):
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(articles) | DeduplicateArticles(DedupConfig())
        facts = ((out["documents"] | "D" >> beam.Map(lambda a: ("doc", a.source_location, a.doc_id, "")),
                  out["duplicates"] | "U" >> beam.Map(lambda d: ("dup", d.source_location, d.doc_id, d.duplicate_of)),
                  out["rejected"] | "R" >> beam.Map(lambda r: ("rej", r.source_location, r.doc_id, r.reason)))
                 | beam.Flatten() | beam.combiners.ToList() | beam.Map(sorted))
        _ = facts | beam.Map(lambda decided: Path(target).write_text(json.dumps(decided)))


@pytest.fixture(scope="module")
def baseline_decisions():
    decided = _decisions(DEDUP_INPUT)
    assert {kind for kind, *_ in decided} == {"doc", "dup", "rej"}, decided  # every path is exercised
    return decided


@pytest.mark.slow
@SLOW
@given(order=st.permutations(DEDUP_INPUT))
def test_dedup_decisions_do_not_depend_on_input_order(baseline_decisions, order):
    assert _decisions(order) == baseline_decisions


keys = st.lists(st.builds(lambda day, doc, loc: _Key(f"f:{loc}", f"d{doc}",
                                                    f"2023-01-{day:02d}T00:00:00+00:00" if day else None, "h", b""),
    st.integers(0, 5), st.integers(0, 5), st.integers(0, 50)), min_size=1, max_size=12, unique_by=lambda k: k.loc)


@FAST
@given(keys, st.randoms(use_true_random=False))
def test_kept_copy_and_candidates_do_not_depend_on_order(members, rng):
    orders = [k.order for k in members]
    rows = list(range(len(members)))
    shuffled = list(rows)
    rng.shuffle(shuffled)
    assert first_of(shuffled, orders) == first_of(rows, orders)
    pairs = [(k.order, k.loc) for k in members]
    assert sorted(bucket_candidates(list(reversed(pairs)))) == sorted(bucket_candidates(pairs))


# --- language: deterministic -------------------------------------------------------------------------------

words = st.lists(st.sampled_from(" ".join(STORIES).split() + ["và", "của", "không", "und", "der", "die", "le",
                                                              "la", "el", "это", "的", "是"]), min_size=0,
                 max_size=80).map(" ".join)


@SOME
@given(words)
def test_language_detection_is_deterministic_in_a_process(text):
    detect = load_langdetect()
    first = detect_language(text, detect)
    assert all(detect_language(text, detect) == first for _ in range(3))


@pytest.mark.slow
def test_language_detection_agrees_across_processes():
    """A fresh interpreter (fresh langdetect profiles and random state) gives the same answers."""
    import random
    rng = random.Random(3)
    vocab = " ".join(STORIES).split() + ["và", "của", "không", "der", "die", "und", "le", "la", "el"]
    samples = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 40))) for _ in range(40)]
    detect = load_langdetect()
    here = [list(detect_language(t, detect)) for t in samples]
    code = ("import json, sys; from wirewash.transforms.language import detect_language, load_langdetect; "
            "d = load_langdetect(); "
            "print(json.dumps([detect_language(t, d) for t in json.load(sys.stdin)]))")
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(samples), capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == here
