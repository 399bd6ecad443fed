"""Every regular expression that runs on input text runs in linear time.

- Rules (packaged and `--rules`) and the cleaner's own line patterns run on RE2 (`transforms/linear_regex.py`):
  the translation keeps Python's meaning (checked against `re` by a fuzzer over each packaged pattern) and
  the time grows linearly with the line (checked on adversarial lines of 10 and 100 KB, as a ratio).
- The few patterns left on Python's `re` (single character classes, no nested repeats) are timed the same way.
- A bad `--rules` file is one line naming the file and the rule, exit 2, before any work.

`WIREWASH_FUZZ_EXAMPLES=N` runs N Hypothesis examples per property instead of the default few (bench mode).
"""
from __future__ import annotations

import os
import re
import time
from re import _constants as C
from re import _parser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirewash.transforms.errors import UsageError
from wirewash.transforms import boilerplate, repeated_lines
from wirewash.transforms import text as textfold
from wirewash.transforms.boilerplate import load_rules, strip_boilerplate
from wirewash.transforms.linear_regex import LinearPattern, PatternError, to_re2

RULES = load_rules()
EXAMPLES = int(os.environ.get("WIREWASH_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
# The cleaner's own patterns that RE2 runs (nested repeats, word boundaries).
MODULE_LINEAR = [textfold.KEEP_AT_EDGE, boilerplate._AUTHOR_PAIR]
# Patterns left on Python's `re`: one class repeated, or a fixed sequence; no nested repeat, no backtracking
# that grows with the line.
MODULE_RE = [textfold.SENTENCE_END, textfold._WORD, boilerplate._INNER_END,
             boilerplate._NON_ASCII_LETTER, boilerplate._UNSPACED, repeated_lines._NUMBER]


def _literals(pattern: str) -> list[str]:
    """The literal runs of a pattern (what a line must hold to come near a match)."""
    out, run = [], []

    def walk(nodes):
        for op, av in nodes:
            if op is C.LITERAL:
                run.append(chr(av))
                continue
            if run:
                out.append("".join(run))
                run.clear()
            if op is C.SUBPATTERN:
                walk(av[3].data)
            elif op is C.BRANCH:
                for alternative in av[1]:
                    walk(alternative.data)
                    if run:
                        out.append("".join(run))
                        run.clear()
            elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
                walk(av[2].data)
        if run:
            out.append("".join(run))
            run.clear()

    walk(_parser.parse(pattern).data)
    return [lit for lit in out if lit] or ["a"]


# Characters on both sides of every boundary question: ASCII and non-ASCII letters, digits (Arabic-Indic
# too), underscore, spaces (a no-break one too), punctuation the rules use.
TRICKY = [" ", ":", ".", "-", "/", "!", "_", "a", "Z", "ä", "é", "đ", "я", "ß", "中", "1", "٣", "\u00a0", "»", "©",
          "(", ")", "|", "2024", "x"]


def _line_for(pattern: str):
    return st.lists(st.sampled_from(_literals(pattern)) | st.sampled_from(TRICKY), max_size=10).map("".join)


ALL_PATTERNS = sorted({rule.pattern.pattern for rule in RULES.rules} | {p.pattern for p in MODULE_LINEAR})


# --- the translation keeps Python's meaning ---------------------------------------------------------------

@pytest.mark.parametrize("pattern", ALL_PATTERNS)
def test_re2_form_matches_the_same_lines_as_python(pattern):
    python, linear = re.compile(pattern), LinearPattern(pattern)

    @FUZZ
    @given(_line_for(pattern))
    def same(line):
        assert bool(python.search(line)) == linear.search(line), (line, linear.re2_pattern)

    same()


@pytest.mark.parametrize("pattern, line, expected", [
    (r"\bобсудить\b", "давайте обсудить это", True),  # RE2's own \b is ASCII: it never sees a Cyrillic word
    (r"\bобсудить\b", "переобсудить", False),
    (r"^(bình luận)\b.{0,20}$", "bình luận (5)", True),
    (r"^(bình luận)\b.{0,20}$", "bình luậnx", False),
    (r"\bcookies?\b.{0,60}\b(consent|agree)", "cookies consent", True),  # one space between two \b
    (r"\bcookies?\b.{0,60}\b(consent|agree)", "cookiesconsent", False),
    (r"\bcookies?\b.{0,60}\b(consent|agree)", "cookies ä-preconsent", False),
    (r"^(read more)\b( on| here)?\s*[:>»|-]", "read more: x", True),
    (r"^\d+ min$", "٣ min", True),  # \d: any decimal digit, as in Python
    (r"^\w+$", "Äßé_中", True),
    (r"^\W+$", "Äß", False),
    (r"^\s*»", "\u00a0» x", True),
])
def test_unicode_meaning_of_classes_and_boundaries(pattern, line, expected):
    assert bool(re.search(pattern, line)) is expected  # what Python says...
    assert LinearPattern(pattern).search(line) is expected  # ...RE2 says too


@pytest.mark.parametrize("pattern, message", [
    (r"foo(?=bar)", "lookarounds"),
    (r"(?<!x)foo", "lookarounds"),
    (r"(a)\1", "backreferences"),
    (r"(?>a+)b", "atomic"),
    (r"a++", "possessive"),
    (r".\b.", "\\b between two parts"),
    (r"x\By", "\\B"),
    (r"(unclosed", "missing )"),
])
def test_what_re2_cannot_run_is_a_pattern_error(pattern, message):
    with pytest.raises(PatternError, match=re.escape(message)):
        LinearPattern(pattern)


def test_the_translation_has_no_word_boundary_left():
    for pattern in ALL_PATTERNS:
        assert "\\b" not in to_re2(pattern), pattern


# --- linear time ------------------------------------------------------------------------------------------

def _seconds(fn, text: str) -> float:
    """The best of three runs, in this thread's CPU seconds: time spent waiting for a core on a busy machine
    does not count, so the ratios below measure the work, not the load."""
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()
        fn(text)
        best = min(best, time.thread_time() - started)
    return best


def _adversarial(pattern: str, size: int) -> list[str]:
    """Lines of about `size` characters built to make a backtracking engine try hard: one character repeated,
    the pattern's own literals repeated (with and without spaces), a capitalised word run, and each of these
    with a character that makes the match fail at the very end."""
    lits = _literals(pattern)
    seeds = ["a", "A", " ", "1", "1-", "A a", "Aa ", ". ", "» ", "©"] + lits[:6] + [lit + " " for lit in lits[:6]]
    lines = []
    for seed in seeds:
        body = (seed * (size // max(len(seed), 1) + 1))[:size]
        lines += [body, body + "!", "x" + body + "\u00ad"]
    return lines


def _scaling(search, lines_small, lines_large) -> float:
    small = sum(_seconds(search, line) for line in lines_small)
    large = sum(_seconds(search, line) for line in lines_large)
    return large / max(small, 1e-6)


# Ten times the text: linear time is about 10x (less with fixed costs, up to ~25x once the longer text no
# longer fits the processor's caches); quadratic is 100x.
MAX_RATIO = 35
MAX_RECORD_RATIO = 60  # a whole record goes through several copies of itself (fold, NFKC, casefold)


@pytest.mark.parametrize("pattern", ALL_PATTERNS[:: max(1, len(ALL_PATTERNS) // 60)] + [
    boilerplate._AUTHOR_PAIR.pattern, textfold.KEEP_AT_EDGE.pattern])
def test_rule_time_grows_linearly_on_adversarial_lines(pattern):
    linear = LinearPattern(pattern)
    ratio = _scaling(linear.search, _adversarial(pattern, 10_000), _adversarial(pattern, 100_000))
    assert ratio < MAX_RATIO, ratio


def test_every_rule_finishes_100kb_adversarial_lines_quickly():
    """Every packaged rule on every adversarial 100 KB line: the whole lot within a budget proportional to
    a plain scan of the same text (RE2 at its slowest is still a scan)."""
    reference = LinearPattern(r"[^\w\s]{3}q$")  # a scan that has to read every character
    budget = 0.0
    spent = 0.0
    for rule in RULES.rules:
        for line in _adversarial(rule.pattern.pattern, 100_000)[::4]:
            budget += _seconds(reference.search, line)
            spent += _seconds(rule.pattern.search, line)
    assert spent < 40 * budget + 1.0, (spent, budget)


@pytest.mark.parametrize("pattern", MODULE_RE, ids=lambda p: p.pattern[:30])
def test_patterns_left_on_python_re_grow_linearly(pattern):
    ratio = _scaling(lambda text: pattern.findall(text), _adversarial(pattern.pattern, 10_000),
                     _adversarial(pattern.pattern, 100_000))
    assert ratio < MAX_RATIO, ratio


@settings(max_examples=max(3, EXAMPLES // 5), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["A", "A ", "Ab ", "a ", "1-", "share\n", "Ab\n", "» x\n", ". ", "Nguyễn "]),
       st.sampled_from(["", "!", ".", ":", "\n"]))
def test_the_whole_cleaner_grows_linearly_with_the_record(seed, tail):
    """One record made of a repeated seed (10 KB, then 100 KB): the cleaner's time grows about linearly (the
    one-line capital run `'A' * n + '!'` took 69 s at 400 characters before)."""
    def clean(text):
        textfold.fold_line.cache_clear()
        strip_boilerplate(text, RULES, title="Title")

    small, large = (seed * (10_000 // len(seed)) + tail), (seed * (100_000 // len(seed)) + tail)
    assert _scaling(clean, [small], [large]) < MAX_RECORD_RATIO


def test_the_capital_run_that_hung_is_instant():
    started = time.perf_counter()
    strip_boilerplate("A" * 100_000 + "!", RULES)
    assert boilerplate.is_fragment("A" * 400 + "!") is False
    assert time.perf_counter() - started < 5  # was hours (69 s at 400 characters)


# --- `--rules` files: one clear line, before any work -------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    ("[rules.x]\nmax_words = [1]\nen = ['^x$']\n", "rules.x.max_words must be a whole number"),
    ("[rules.x]\nmax_words = 1e400\nen = ['^x$']\n", "rules.x.max_words must be a whole number"),
    ("[rules.x]\nmax_words = 2.5\nen = ['^x$']\n", "rules.x.max_words must be a whole number"),
    ("[rules.x]\nmax_words = true\nen = ['^x$']\n", "rules.x.max_words must be a whole number"),
    ("[rules.x]\nmax_words = 0\nen = ['^x$']\n", "rules.x.max_words must be a whole number"),
    ("[rules.x]\nmax_words = 99999999999999999\nen = ['^x$']\n", "rules.x.max_words must be a whole number"),
    ("[rules.x]\nen = '^x$'\n", "rules.x.en must be a list of strings"),
    ("[rules.x]\nen = [1]\n", "rules.x.en must be a list of strings"),
    ("[rules.x]\nmax_word = 3\nen = ['^x$']\n", "rules.x: unknown key 'max_word'"),
    ("[rules.x]\non = 1\nen = ['^x$']\n", "rules.x.on must be"),
    ("[rules.x]\nen = ['^x(?=y)']\n", "rules.x.en: bad pattern '^x(?=y)': lookarounds"),
    ("[rules.x]\nen = ['(a)\\1']\n", "backreferences"),
    ("[rules.x]\nen = ['x{2000}']\n", "rules.x.en: bad pattern"),  # RE2 refuses repeats over 1000
    ("[rules.x]\nen = ['^x$']\n[other]\ny = 1\n", "unknown top-level key 'other'"),
])
def test_bad_rule_files_are_usage_errors_naming_file_and_rule(tmp_path, content, message):
    path = tmp_path / "mine.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError) as err:
        load_rules([str(path)])
    assert str(path) in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_bad_rule_file_exits_2_with_one_line_before_any_work(tmp_path, capsys):
    from wirewash.pipeline.cli import main

    rules = tmp_path / "mine.toml"
    rules.write_text("[rules.x]\nmax_words = [1]\nen = ['^x$']\n", encoding="utf-8")
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "text": "Some text of an article here."}\n', encoding="utf-8")
    assert main(["run", "--input", str(source), "--output", str(tmp_path / "lake"), "--rules", str(rules),
                 "--quiet"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "mine.toml: rules.x.max_words" in lines[0], captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "lake").exists()  # refused before any work


def test_a_user_rule_runs_on_re2_with_pythons_meaning(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[rules.house]\n" r"ru = ['^\bнаш канал\b']" "\n" r"any = ['^([a-z]\w*\s?){1,4}!$']" "\n",
                    encoding="utf-8")
    rules = load_rules([str(path)])
    assert rules.match("наш канал в telegram") == "house"
    started = time.perf_counter()
    assert rules.match("a" * 100_000 + "?") is None  # the nested repeat that backtracks in `re`
    assert time.perf_counter() - started < 5
