"""Boilerplate stage: removes site furniture lines from article text.

Keeps every line that no rule matches, unchanged; drops whole lines that a rule in
`transforms/rules/boilerplate.toml` (plus any user rule file) matches: newsletter prompts, "Read more"
links, photo credits, follow/share bars, cookie notices, view counters, ratings, comment prompts, ads,
"related" headings, UI labels, copyright lines, dates standing alone, paywall and app or channel prompts,
donation appeals, affiliate and advertising disclosures; then lines written in look-alike Latin and Cyrillic
letters (`mixed_script`, `is_mixed_script`); then lines learned from the data
(`transforms/repeated_lines.py`: recurring across many stories of one source, rule `repeated_line`); then
`furniture_block`: the rest of a header or footer, i.e. the short lines between a framing furniture line (share,
comments, copyright...) and the end of the text; then `edge_fragment`: short fragments (no sentence, a few
words) at the very top or bottom of a text record (not an HTML page: `edge_pass_applies`), where sites put
their furniture, never the title line and never a line that ends like a sentence. Counts every removal per
rule (`boilerplate/removed_<rule>`). It never adds characters and never rewrites a kept line.
"""
from __future__ import annotations

import functools
import re
import tomllib
import unicodedata
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Iterable, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from wirewash.transforms.errors import UsageError
from wirewash.transforms.guard import isolated
from wirewash.transforms.linear_regex import LinearPattern, LiteralSet, PatternError, compile_linear
from wirewash.transforms.packed import CombinePerKeyPacked
from wirewash.transforms.regex_tree import OPS
from wirewash.transforms.regex_tree import parse as parse_pattern
from wirewash.transforms.repeated_lines import (DEFAULT_MIN_SUPPORT, DEFAULT_STREAM_MAX_KEYS, LABEL_RULE, LABELS,
                                                 SHARED, SHARED_RULE, LearnFromStream, LearnRepeatedLines, label_key,
                                                 line_key, line_label, may_be_shared, site_key)
from wirewash.transforms.repeated_lines import RULE_NAME as LEARNED_RULE
from wirewash.transforms.spill import Spill
from wirewash.transforms.text import KEEP_AT_EDGE, SENTENCE_END, fold_line, fold_words, raw_fold
from wirewash.transforms.types import FORMAT_HTML, REJECTED, Article, Rejection, excerpt

__all__ = ["StripBoilerplate", "RuleSet", "load_rules", "strip_boilerplate", "fold_line", "is_fragment",
           "EDGE_RULE", "match_line", "plain_match_line", "clean_article"]

NAMESPACE = "boilerplate"
STAGE = "boilerplate"
PARK_BATCH = 64  # articles parked together while they wait for the learned lines (one token, one write)
REASON_EMPTY = "empty_after_cleaning"
DEFAULT_MAX_WORDS = 30
DECISION_CACHE_LINES = 1 << 15  # rule decisions kept per rule set (lines of at most the rules' max_words words)
MAX_NEEDLES = 32  # a pattern needing one of more literal strings than this is simply tried (`required_substrings`)
RULES_PACKAGE_FILE = "boilerplate.toml"
EDGE_RULE = "edge_fragment"
EDGE_MAX_WORDS = 12      # a longer line at the edge is prose even without a full stop
EDGE_MAX_CHARS = 120
# The edge pass takes shorter fragments than that: at the top, a fragment of 8+ words is more often the
# article's kicker or standfirst than a widget, at the bottom one of 10+ words a subheading or a list item
# (measured on the 20k quality corpus: each bound traded ~1 missed furniture line for ~2 kept article lines).
TOP_EDGE_MAX_WORDS = 7
BOTTOM_EDGE_MAX_WORDS = 9
# Scripts written without spaces (Chinese, Japanese, Thai, Lao, Khmer, Burmese): a word there averages about
# two characters, so a line's word count is at least half its characters in these scripts.
_UNSPACED = re.compile("[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
                       "\uf900-\ufaff]")
CHARS_PER_UNSPACED_WORD = 2
SHORT_MAX_WORDS = 4      # next to other furniture, a line this short goes even when it ends like a sentence
SHORT_MAX_CHARS = 40
BLOCK_RULE = "furniture_block"
BLOCK_MAX_WORDS = 13     # a line between framing furniture and the edge goes whatever its shape up to this
BLOCK_MAX_SENTENCE_WORDS = 9  # size; a longer line is a paragraph, a caption or a lead, and those are content
BLOCK_MAX_CHARS = 160
# Kinds that frame an article (above or below its body, never inside it): whatever lies between such a line
# and the edge of the text is furniture too. Read-more links, photo credits and ads sit between paragraphs,
# so they frame nothing.
FRAME_RULES = frozenset({"newsletter", "follow", "share", "cookie", "views", "rating", "comments", "related",
                         "ui_meta", "copyright", "print", "dateline"})

MIXED_RULE = "mixed_script"
MIXED_MIN_JOINS = 3  # letter pairs that join Latin and Cyrillic inside a word ("Yоur соntеnt іѕ": о, е, і are Cyrillic)
# A Latin letter touching a Cyrillic one inside a word: look-alike letters swapped in to get past filters, which is
# what injected ads and spam do ("Соntасt uѕ аt ..."); real text in either script keeps its words in one script,
# and a word of each script in one line ("iPhone-Nutzer", "Apple представила iPhone") joins none.
_MIXED_SCRIPT = re.compile(r"[A-Za-z][\u0400-\u04ff]|[\u0400-\u04ff][A-Za-z]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")  # the cheap test first: most lines hold no Cyrillic letter
_INNER_END = re.compile(r"\w[.!?…。！？]\s+\S")  # a sentence ends inside the line ("... reunification. REUTERS")
_NON_ASCII_LETTER = re.compile(r"[^\W\d_\x00-\x7f]")  # a letter outside ASCII (what `_body_letters` counts)
# "Nguyễn Văn An - Trần Thị Mai": author pairs in title case.
# The dash must touch a space: "Kinoprogramm-Suche" is one hyphenated word, not two names.
_AUTHOR_PAIR = compile_linear(r"^([A-ZÀ-ỸĐ][\w.']*\s?){1,4}(\s[-–]|[-–]\s)\s*([A-ZÀ-ỸĐ][\w.']*\s?){1,4}$")


_UNDECIDED = object()  # a line `RuleSet.decisions` does not hold yet


def match_line(rules: "RuleSet", line: str) -> Optional[str]:
    """The rule that removes this line on its own (the rules pass of `strip_boilerplate`), or None.

    Speed only, the same answer as `plain_match_line`: a line of more words than any rule allows is no
    rule's (each rule skips a line over its `max_words`), so it is not offered to them nor raw-folded; the
    decision for a shorter line is kept per rule set (`RuleSet.decisions`, bounded): furniture lines recur
    across articles."""
    folded = fold_line(line)
    if not folded or folded.count(" ") >= rules.max_words:
        return None
    decisions = rules.decisions
    rule = decisions.get(line, _UNDECIDED)
    if rule is _UNDECIDED:
        rule = rules.match(folded, raw_fold(line) if rules.has_raw else None)
        if len(decisions) >= DECISION_CACHE_LINES:
            decisions.clear()
        decisions[line] = rule
    return rule


def plain_match_line(rules: "RuleSet", line: str) -> Optional[str]:
    """`match_line` without its gate and cache: every line offered to the rules (the reference its tests hold
    it to)."""
    folded = fold_line(line)
    return rules.match(folded, raw_fold(line) if rules.has_raw else None) if folded else None


def is_mixed_script(line: str) -> bool:
    """Whether a line writes its words in look-alike letters of two scripts: at least `MIXED_MIN_JOINS` places where
    a Latin letter and a Cyrillic one touch inside a word. Lines without a Cyrillic letter are never (cheap tests
    first: the check runs on every line no rule removed)."""
    return (not line.isascii() and _CYRILLIC.search(line) is not None
            and len(_MIXED_SCRIPT.findall(line)) >= MIXED_MIN_JOINS)


def is_fragment(line: str, max_words: int = EDGE_MAX_WORDS) -> bool:
    """A line that is not prose: at most `max_words` words (120 characters) that do not end like a sentence,
    and no author/source credit, contact detail or list introduction (`KEEP_AT_EDGE`). Unspaced scripts count
    by characters (`count_words`), so a CJK list line or paragraph is never one."""
    folded = fold_line(line)
    if not folded or len(folded) > EDGE_MAX_CHARS or count_words(folded) > max_words:
        return False
    stripped = line.strip()
    return not (SENTENCE_END.search(stripped) or KEEP_AT_EDGE.search(stripped) or _AUTHOR_PAIR.search(stripped))


def count_words(folded: str) -> int:
    """Words of a folded line: its spaced words, or half its characters in unspaced scripts when that is more
    (a 60-character Japanese list line is some 30 words, not one)."""
    return max(folded.count(" ") + 1, len(_UNSPACED.findall(folded)) // CHARS_PER_UNSPACED_WORD)


def _needles(items) -> Optional[frozenset]:
    """Strings one of which every match of this parsed sequence contains (the most selective set found:
    its shortest string the longest), or None."""
    c = OPS
    best: Optional[frozenset] = None

    def consider(found: Optional[frozenset]) -> None:
        nonlocal best
        if found and (best is None or (min(map(len, found)), -len(found)) > (min(map(len, best)), -len(best))):
            best = found

    run: list[str] = []
    for op, av in list(items) + [(None, None)]:
        if op is c.LITERAL:
            run.append(chr(av))
            continue
        if run:
            consider(frozenset({"".join(run)}))
            run = []
        if op is c.SUBPATTERN:  # (group, added flags, removed flags, content)
            if not av[1] & re.IGNORECASE:  # "(?i:...)": its literals match other cases too
                consider(_needles(av[-1].data))
        elif op is c.BRANCH:
            alternatives = [_needles(branch.data) for branch in av[1]]
            if all(alternatives):
                consider(frozenset().union(*alternatives))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] >= 1:
            consider(_needles(av[2].data))
    return best


def required_substrings(pattern: str, flags: int = 0) -> tuple:
    """A few literal strings one of which every match of an unanchored `pattern` contains: a line holding none
    of them cannot match, and a substring test costs a fraction of a regex call. Empty (no gate) for
    case-insensitive patterns, sets of more than
    `MAX_NEEDLES` strings or with an ASCII string shorter than 3 characters, and anything the parser cannot
    tell."""
    try:
        parsed = parse_pattern(pattern, flags)
        if parsed.state.flags & re.IGNORECASE:
            return ()
        found = _needles(parsed.data)
    except Exception:  # the private parser missing or changed: rules simply run ungated
        return ()
    if not found or len(found) > MAX_NEEDLES or any(len(needle) < 3 and needle.isascii() for needle in found):
        return ()  # a short ASCII needle ("we", "a") is in nearly every line; a rare sign ("©") is not
    return tuple(sorted(found))


_DIGIT_START, _SPACE_START = "\\d", "\\s"  # in a start set: any decimal digit, any space


def _first_chars(items) -> Optional[tuple]:
    """(characters a match of this parsed sequence can start with, whether it can match nothing), or None when
    that is not a short list: any character, a class like `\\w` or `[^x]`. `\\d` and `\\s` stand for
    themselves (`_DIGIT_START`, `_SPACE_START`)."""
    c = OPS
    found: set = set()
    for op, av in items:
        nullable = False
        if op is c.LITERAL:
            found.add(chr(av))
        elif op is c.IN:
            for item_op, item in av:
                if item_op is c.LITERAL:
                    found.add(chr(item))
                elif item_op is c.RANGE and item[1] - item[0] < 64:
                    found.update(chr(code) for code in range(item[0], item[1] + 1))
                elif item_op is c.CATEGORY and item in (c.CATEGORY_DIGIT, c.CATEGORY_SPACE):
                    found.add(_DIGIT_START if item is c.CATEGORY_DIGIT else _SPACE_START)
                else:
                    return None
        elif op is c.SUBPATTERN and not av[1] & re.IGNORECASE:
            inner = _first_chars(av[-1].data)
            if inner is None:
                return None
            found |= inner[0]
            nullable = inner[1]
        elif op is c.BRANCH:
            alternatives = [_first_chars(branch.data) for branch in av[1]]
            if any(alt is None for alt in alternatives):
                return None
            for chars, empty in alternatives:
                found |= chars
                nullable = nullable or empty
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
            inner = _first_chars(av[2].data)
            if inner is None:
                return None
            found |= inner[0]
            nullable = inner[1] or av[0] == 0
        else:
            return None
        if not nullable:
            return frozenset(found), False
    return frozenset(found), True


def first_chars(pattern: str, flags: int = 0) -> Optional[frozenset]:
    """For a pattern anchored at the start (`^...`): the characters a matching line can start with (`\\d`,
    `\\s`: any digit or space), or None (no gate). A line starting with none of them is not tried."""
    c = OPS
    try:
        parsed = parse_pattern(pattern, flags)
        if parsed.state.flags & re.IGNORECASE or not parsed.data or parsed.data[0] != (c.AT, c.AT_BEGINNING):
            return None
        found = _first_chars(parsed.data[1:])
    except Exception:
        return None
    return found[0] if found is not None and not found[1] else None


def _starts_with(first: str, starts: frozenset) -> bool:
    return first in starts or (_DIGIT_START in starts and first.isdecimal()) or (
        _SPACE_START in starts and first.isspace())


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: LinearPattern  # RE2 underneath: linear time whatever the pattern and the line
    max_words: int
    raw: bool = False
    needs: tuple = ()  # `required_substrings`: the line must hold one of them for the pattern to be tried
    starts: Optional[frozenset] = None  # `first_chars`: the line must start with one of them


@dataclass(frozen=True)
class RuleSet:
    """Compiled rules in file order; the first match names the removal.

    A line is offered only to the rules it could match: one pass of a literal automaton finds which rules'
    `needs` it holds, and its first character picks the rules whose `starts` allow it. Every pattern runs
    on RE2 (`transforms/linear_regex.py`): linear time in the line, whatever the pattern."""

    rules: tuple

    @functools.cached_property
    def has_raw(self) -> bool:
        """Whether any rule reads the raw line (`on = "raw"`): else the raw fold is never needed."""
        return any(rule.raw for rule in self.rules)

    @functools.cached_property
    def max_words(self) -> int:
        """The most words any rule allows a line (0 without rules): a longer line matches none."""
        return max((rule.max_words for rule in self.rules), default=0)

    @functools.cached_property
    def decisions(self) -> dict:
        """line -> `match_line`'s answer, for lines already decided (emptied when `DECISION_CACHE_LINES` full)."""
        return {}

    @functools.cached_property
    def _index(self) -> tuple:
        """(literal automaton over every `needs` string of the folded rules, needle -> rule numbers, rule
        numbers tried without a needle (no `needs`, or `on = "raw"`), cache of the latter by first chars)."""
        needles = sorted({n for rule in self.rules if not rule.raw for n in rule.needs})
        number = {needle: i for i, needle in enumerate(needles)}
        by_needle: list = [[] for _ in needles]
        plain = []
        for i, rule in enumerate(self.rules):
            if rule.needs and not rule.raw:
                for needle in rule.needs:
                    by_needle[number[needle]].append(i)
            else:
                plain.append(i)
        automaton = LiteralSet(needles) if needles else None
        return automaton, tuple(map(tuple, by_needle)), tuple(plain), {}

    def _allowed(self, i: int, first: str, raw_first: str) -> bool:
        rule = self.rules[i]
        return rule.starts is None or _starts_with(raw_first if rule.raw else first, rule.starts)

    def match(self, folded: str, raw: Optional[str] = None) -> Optional[str]:
        """The first rule matching the folded line (`raw`: the line folded but with its leading marks, for
        `on = "raw"` rules; defaults to `folded`)."""
        if not folded:
            return None
        automaton, by_needle, plain, cache = self._index
        raw_line = raw if raw is not None else folded
        first, raw_first = folded[0], raw_line[:1]
        tried = cache.get((first, raw_first))
        if tried is None:
            tried = tuple(i for i in plain if self._allowed(i, first, raw_first))
            if len(cache) < 4096:
                cache[(first, raw_first)] = tried
        data = folded.encode("utf-8", "surrogatepass")
        hits = automaton.found(data) if automaton is not None else ()
        if hits:
            extra = {i for hit in hits for i in by_needle[hit] if self._allowed(i, first, raw_first)}
            tried = sorted(extra.union(tried))
        n_words = folded.count(" ") + 1
        raw_data = None
        for i in tried:
            rule = self.rules[i]
            if n_words > rule.max_words:
                continue
            if rule.raw and raw is not None and raw != folded:
                if raw_data is None:
                    raw_data = raw.encode("utf-8", "surrogatepass")
                if rule.pattern.search_utf8(raw_data):
                    return rule.name
            elif rule.pattern.search_utf8(data):
                return rule.name
        return None


def _read_rule_tables(text: str, origin: str) -> dict:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{origin}: not valid TOML: {err}") from err
    tables = data.get("rules")
    if not isinstance(tables, dict):
        raise UsageError(f"{origin}: expected [rules.NAME] tables")
    unknown = sorted(set(data) - {"rules"})
    if unknown:
        raise UsageError(f"{origin}: unknown top-level key {unknown[0]!r} (a rule file holds [rules.NAME] tables)")
    return tables


MAX_RULE_WORDS = 1000  # `max_words` above this is a mistake: no furniture line is that long
_RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")
_LANGUAGE_KEY = re.compile(r"any|[a-z]{2,3}")  # ISO 639-1 (or -3) codes, or "any"


def _max_words(value, where: str) -> int:
    """A rule's `max_words`: a whole number from 1 to `MAX_RULE_WORDS` (not a float, a list or a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RULE_WORDS:
        raise UsageError(f"{where}.max_words must be a whole number from 1 to {MAX_RULE_WORDS}, got {value!r}")
    return value


def load_rules(extra_files: Iterable[str] = (), extra_texts: Iterable[str] = ()) -> RuleSet:
    """The packaged rules plus the rules of each extra TOML file (same format). Raises UsageError (a
    ValueError: one line, exit 2) naming the file and rule for a bad table, a bad `max_words` or `on`, an
    unknown key, or a pattern that does not compile or that RE2 cannot run (`transforms/linear_regex.py`)."""
    sources = [(resources.files("wirewash.transforms.rules").joinpath(RULES_PACKAGE_FILE).read_text("utf-8"),
                "transforms/rules/boilerplate.toml")]
    for path in extra_files:
        with open(path, encoding="utf-8") as handle:
            sources.append((handle.read(), path))
    sources.extend((text, "<rules text>") for text in extra_texts)
    return _compile_rules(tuple(sources))


@functools.lru_cache(maxsize=8)
def _compile_rules(sources: tuple) -> RuleSet:
    """The rule set of these (text, origin) sources, compiled once per process (RE2 compiles ~3 ms a
    pattern): validation at startup, the transform and each worker's DoFn ask for the same rules."""
    merged: dict[str, dict] = {}
    for number, (text, origin) in enumerate(sources):
        packaged = number == 0  # tests prove every packaged pattern compiles: compiled when first tried
        for name, table in _read_rule_tables(text, origin).items():
            if not _RULE_NAME.fullmatch(name) or not isinstance(table, dict):
                raise UsageError(f"{origin}: rule name {name!r} must be lower_snake_case with a table of patterns")
            where = f"{origin}: rules.{name}"
            entry = merged.setdefault(name, {"max_words": DEFAULT_MAX_WORDS, "patterns": [], "raw": False})
            if "max_words" in table:
                entry["max_words"] = _max_words(table["max_words"], where)
            if "on" in table:
                if table["on"] not in ("raw", "folded"):
                    raise UsageError(f"{where}.on must be \"raw\" or \"folded\", got {table['on']!r}")
                entry["raw"] = table["on"] == "raw"
            for lang, patterns in table.items():
                if lang in ("max_words", "on"):
                    continue
                if not _LANGUAGE_KEY.fullmatch(lang):
                    raise UsageError(f"{where}: unknown key {lang!r} (expected max_words, on, a language code "
                                     f"such as en or any)")
                if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                    raise UsageError(f"{where}.{lang} must be a list of strings")
                for pattern in patterns:
                    try:
                        entry["patterns"].append((pattern, LinearPattern(pattern, lazy=packaged)))
                    except PatternError as err:
                        raise UsageError(f"{where}.{lang}: bad pattern {pattern!r}: {err}") from err
    rules = tuple(Rule(name, compiled, entry["max_words"], entry["raw"], required_substrings(pattern),
                       first_chars(pattern))
                  for name, entry in merged.items() for pattern, compiled in entry["patterns"])
    return RuleSet(rules)


def strip_boilerplate(text: str, rules: RuleSet,
                      counter_inc_fn: Callable[[str], None] = lambda name: None,
                      title: Optional[str] = None, learned: frozenset = frozenset(),
                      edges: bool = True,
                      on_removed: Optional[Callable[[str, str], None]] = None,
                      shared: frozenset = frozenset(), labels: frozenset = frozenset()) -> tuple[str, list[str]]:
    """(text without boilerplate lines, names of the rules that removed lines, one per line removed).

    Each line goes through the rules, then the look-alike letters test (`is_mixed_script`: `mixed_script`), then the `learned` line keys of its source (`repeated_line`), the
    line keys and labels learned across sources (`shared`: `shared_line`, `labels`: `shared_label`, see
    `transforms/repeated_lines.py`); with
    `edges`, the fragments left at the top and bottom go too (`edge_fragment`), but never a line that is
    the `title`, and the top run starts after it. Kept lines are returned byte for byte; blank lines left
    around a removed line collapse to one. `on_removed(rule, line)` hears of every removed line.
    """
    lines = text.splitlines()
    verdict: list[Optional[str]] = []
    cyrillic = _CYRILLIC.search(text) is not None  # one scan of the text: most hold no line `is_mixed_script` takes
    for line in lines:
        folded = fold_line(line)
        rule = match_line(rules, line)  # folds the line again: a cache hit
        if rule is None and cyrillic and folded and is_mixed_script(line):
            rule = MIXED_RULE
        if rule is None and folded:
            key = line_key(folded) if learned or shared else None
            if key is not None and key in learned:
                rule = LEARNED_RULE
            elif key is not None and key in shared and may_be_shared(line, folded):
                rule = SHARED_RULE
            elif labels and (label := line_label(folded)) and label_key(label) in labels:
                rule = LABEL_RULE
        verdict.append(rule)
    if edges:
        _mark_edges(lines, verdict, fold_words(title))
    kept: list[str] = []
    removed: list[str] = []
    for line, rule in zip(lines, verdict):
        if rule is None:
            if line.strip() or (kept and kept[-1].strip()):
                kept.append(line)
        else:
            removed.append(rule)
            counter_inc_fn(f"removed_{rule}")
            if on_removed is not None:
                on_removed(rule, line)
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept), removed


def edge_pass_applies(article: Article) -> bool:
    """Whether the `edge_fragment` pass runs on this article: on text records only. An HTML page's text is
    what trafilatura kept of the page by its structure; the edge pass guesses from line shapes alone and, on
    real pages, took more subheadings, list items and credits of the article than furniture."""
    return article.format != FORMAT_HTML


def _continues(line: str) -> bool:
    """A line starting in lower case may continue the line before it (a paragraph split in two)."""
    head = line.lstrip()[:1]
    return head.islower()


def _split_pair(lines: list[str], verdict: list, upper: int, lower: int) -> bool:
    """Lines `upper` and `lower` are one paragraph split in two: `lower` starts in lower case, `upper` does not
    end like a sentence, nothing was removed between them, and `lower` ends a sentence (or is too long to be
    furniture). A lower-case widget ("a una sesión para") below another fragment is no half."""
    tail = lines[lower].strip()
    if not _continues(tail) or SENTENCE_END.search(lines[upper].strip()):
        return False
    if any(verdict[j] is not None for j in range(upper + 1, lower)):
        return False
    return bool(SENTENCE_END.search(tail) or _INNER_END.search(tail)) or tail.count(" ") >= EDGE_MAX_WORDS


def _is_short(line: str) -> bool:
    """A very short line, sentence or not ("Want more?", "Sie sind nicht eingeloggt.")."""
    folded = fold_line(line)
    stripped = line.strip()
    return (bool(folded) and count_words(folded) <= SHORT_MAX_WORDS and len(folded) <= SHORT_MAX_CHARS
            and not KEEP_AT_EDGE.search(stripped) and not _AUTHOR_PAIR.search(stripped))


def _body_letters(lines: list[str]) -> frozenset:
    """The non-ASCII letters that the body's words commonly use (diacritics, another script), or an empty set
    when fewer than a third of its words have any: then no line can look foreign by its letters."""
    words = " ".join(lines).split()
    if len(words) < 30:
        return frozenset()
    marked = [w for w in words if not w.isascii() and _NON_ASCII_LETTER.search(w)]
    if len(marked) * 3 < len(words):
        return frozenset()
    counts = Counter()
    for ch, n in Counter(_NON_ASCII_LETTER.findall(" ".join(marked))).items():  # each letter lowered once
        counts[ch.lower()] += n
    return frozenset(ch for ch, n in counts.items() if n >= 3)


def _is_foreign(line: str, body_letters: Callable[[], frozenset]) -> bool:
    """A short Latin-script line of 3+ words that uses none of the body's own non-ASCII letters (`body_letters()`,
    asked only for such a line): a German or English widget under a Vietnamese article. Credits and contacts
    are never foreign."""
    stripped = line.strip()
    words = stripped.split()
    if not 3 <= len(words) <= EDGE_MAX_WORDS + 3 or KEEP_AT_EDGE.search(stripped) or _AUTHOR_PAIR.search(stripped):
        return False
    letters = [ch for ch in stripped if ch.isalpha()]
    if not all(ch.isascii() or unicodedata.name(ch, "").startswith("LATIN") for ch in letters):
        return False  # another script: a quoted or mixed-language passage, not a site widget
    known = body_letters()
    return bool(known) and not any(ch.lower() in known for ch in letters)


def _is_block_sized(line: str) -> bool:
    """Short enough to be one item of a header or footer: at most 13 words (9 for a sentence: a longer one
    may be the article's lead) and 160 characters (fewer when the line has almost no spaces: Chinese or
    Japanese run many words together)."""
    stripped = line.strip()
    n_spaces = stripped.count(" ")
    max_words = BLOCK_MAX_SENTENCE_WORDS if SENTENCE_END.search(stripped) else BLOCK_MAX_WORDS
    return n_spaces < max_words and len(stripped) <= min(BLOCK_MAX_CHARS, 60 + 15 * n_spaces)


def _is_title_line(line: str, title_words: str) -> bool:
    """The title line, or a line that starts with the title's words (a title cut from the first sentence)."""
    if not title_words:
        return False
    words = fold_words(line)
    return words == title_words or words.startswith(title_words + " ")


def _mark_blocks(lines: list[str], verdict: list, title_words: str) -> None:
    """Marks `furniture_block` on the lines between an end of the text and the framing furniture line
    (`FRAME_RULES`) furthest in from it, when no paragraph lies between: the rest of a header or footer,
    whatever the shape of its lines (sentences, lower-case starts, credits). Never the title, never a
    paragraph; nothing at all in a text without a paragraph (nothing tells its body from a footer there)."""
    n = len(lines)
    candidates: list = []
    for order in (range(n), range(n - 1, -1, -1)):
        pending: list = []
        for i in order:
            if verdict[i] is not None:
                if verdict[i] in FRAME_RULES:
                    candidates += pending
                    pending = []
                continue
            line = lines[i]
            if not line.strip():
                continue
            if not _is_block_sized(line):
                break
            if _is_title_line(line, title_words):
                if order.start == 0 and not pending:
                    continue  # the title heads the text: the header block starts after it
                break
            pending.append(i)
        else:
            if order.start == 0:
                return  # the scan from the top met no paragraph: there is none
    for i in candidates:
        verdict[i] = BLOCK_RULE


def _mark_edges(lines: list[str], verdict: list, title_words: str) -> None:
    """Marks `furniture_block` (`_mark_blocks`), then `edge_fragment` on the runs of fragments at both ends
    (lines already removed and blank lines do not stop a run). Inside a run that already holds furniture (a
    removed line further out), a very short sentence goes too: furniture comes in blocks. Keeps at least one
    line: a text made only of fragments is left to the next check."""
    _mark_blocks(lines, verdict, title_words)
    live = [i for i, line in enumerate(lines) if verdict[i] is None and line.strip()]

    def is_title(i: int) -> bool:
        return bool(title_words) and fold_words(lines[live[i]]) == title_words

    top = 0
    while top < len(live) and is_title(top):
        top += 1
    letters: list = []  # the body's letters, counted for the first line that needs them: most texts never do

    def body_letters() -> frozenset:
        if not letters:
            letters.append(_body_letters([lines[i] for i in live]))
        return letters[0]

    def is_foreign(line: str) -> bool:
        return _is_foreign(line, body_letters)

    marked = set()
    for i in range(top, len(live)):
        line = lines[live[i]]
        furniture = bool(marked) or any(verdict[j] for j in range(0, live[i]))
        fragment = is_fragment(line, TOP_EDGE_MAX_WORDS)
        if not (fragment or (furniture and _is_short(line)) or is_foreign(line)) or (
                i + 1 < len(live) and _split_pair(lines, verdict, live[i], live[i + 1])):
            break
        marked.add(i)
    bottom = set()
    for i in range(len(live) - 1, top - 1, -1):
        line = lines[live[i]]
        furniture = bool(bottom) or any(verdict[j] for j in range(live[i] + 1, len(lines)))
        fragment = is_fragment(line, BOTTOM_EDGE_MAX_WORDS)
        if is_title(i) or not (fragment or (furniture and _is_short(line)) or is_foreign(line)) or (
                i > 0 and _split_pair(lines, verdict, live[i - 1], live[i])):
            break
        bottom.add(i)
    marked |= bottom
    if len(marked) >= len(live) - top:  # nothing but fragments: not a page with furniture around prose
        return
    # A list page (a calendar, a line-up) is made of fragments too, some a little longer than the edge bounds:
    # with the bound of `is_fragment` itself, every line left is one.
    if marked and all(is_fragment(lines[live[i]]) for i in range(top, len(live)) if i not in marked):
        return
    for i in marked:
        verdict[live[i]] = EDGE_RULE


REMOVED_LINES = "removed_lines"
TOP_REMOVED_LINES = 5
REMOVED_LINE_CHARS = 100


def removed_line_form(line: str) -> str:
    """How a removed line is reported in the run summary: spaces collapsed, at most 100 characters."""
    line = " ".join(line.split())
    return line if len(line) <= REMOVED_LINE_CHARS else line[: REMOVED_LINE_CHARS - 1] + "…"


def _counted(rule_line: tuple) -> tuple:
    return ((rule_line, None),)


def top_lines_by_rule(ranked: list) -> dict:
    """[(rule, [(count, line), ...])] -> {rule: {line: count}}, most frequent first (ties by line)."""
    return {rule: {line: n for n, line in sorted(top, key=lambda t: (-t[0], t[1]))} for rule, top in sorted(ranked)}


def clean_article(article: Article, rules: RuleSet, learned: dict, edges: bool = True,
                  counter_inc_fn: Callable[[str], None] = lambda name: None,
                  on_removed: Optional[Callable[[str, str], None]] = None) -> "Article | Rejection":
    """The article with its boilerplate lines removed (`strip_boilerplate` with the lines `learned` for its
    site and across sites, the edge pass where `edges` and `edge_pass_applies`), or its `empty_after_cleaning`
    Rejection when no letter or digit is left."""
    text, removed = strip_boilerplate(article.text, rules, counter_inc_fn, title=article.title,
                                      learned=learned.get(site_key(article), frozenset()),
                                      edges=edges and edge_pass_applies(article), on_removed=on_removed,
                                      shared=learned.get(SHARED, frozenset()), labels=learned.get(LABELS, frozenset()))
    if not any(ch.isalnum() for ch in text):
        return Rejection(article.doc_id, article.source_location, STAGE, REASON_EMPTY, excerpt(article.text))
    return article._replace(text=text, boilerplate_lines_removed=article.boilerplate_lines_removed + len(removed),
                            removed_by_rule=article.removed_by_rule + tuple(removed))


class _StripBoilerplateFn(beam.DoFn):
    """Parked article (`spill`) -> stripped article, or a rejection when nothing is left."""

    def __init__(self, rule_files: tuple, rule_texts: tuple, edges: bool = True, spill: Optional[Spill] = None):
        self.rule_files = rule_files
        self.rule_texts = rule_texts
        self.edges = edges
        self.spill = spill or Spill()
        self.rules = None

    def setup(self):
        self.rules = load_rules(self.rule_files, self.rule_texts)

    @isolated(STAGE, REJECTED)
    def process(self, article: Article, learned: Optional[dict] = None):
        Metrics.counter(NAMESPACE, "seen").inc()
        samples: list = []
        result = clean_article(article, self.rules, learned or {}, self.edges,
                               lambda name: Metrics.counter(NAMESPACE, name).inc(),
                               lambda rule, line: samples.append((rule, removed_line_form(line))))
        for sample in samples:
            yield beam.pvalue.TaggedOutput(REMOVED_LINES, sample)
        if isinstance(result, Rejection):
            Metrics.counter(NAMESPACE, f"dropped_{REASON_EMPTY}").inc()
            yield beam.pvalue.TaggedOutput(REJECTED, result)
            return
        Metrics.counter(NAMESPACE, "kept").inc()
        if result.boilerplate_lines_removed != article.boilerplate_lines_removed:
            Metrics.counter(NAMESPACE, "cleaned_documents").inc()
        yield result


class _StripParkedFn(_StripBoilerplateFn):
    """A parked batch of articles (`Spill.park_articles`) -> each stripped as by `_StripBoilerplateFn`, one
    record at a time: a record that makes the stage raise is rejected alone, the rest of its batch goes on."""

    def process(self, parked, learned: Optional[dict] = None):
        for article in self.spill.fetch_articles(parked):
            yield from super().process(article, learned)


class _StripLearnedFn(_StripBoilerplateFn):
    """(article, learned dict for its lines) from `LearnFromStream` -> as `_StripBoilerplateFn`."""

    def process(self, element):
        article, learned = element
        yield from super().process(article, learned)


class StripBoilerplate(beam.PTransform):
    """Article -> {`articles`: boilerplate lines removed, `boilerplate_lines_removed` / `removed_by_rule` set;
    `rejected`: articles that were nothing but boilerplate}. Rules compile once per worker (`setup`); user
    rule files travel as their text, so workers need not see the user's disk.

    With `learn` (the default), lines recurring in at least `min_support` distinct stories of one source are
    learned from these same articles first (one combine over line hashes, see `transforms/repeated_lines.py`)
    and removed as `repeated_line` (likewise the lines and labels shared across sources). On an unbounded
    input the same counts are kept in state (`LearnFromStream`, at most `max_keys` entries) and each article
    is cleaned with what the articles before it (and itself) taught. `edges` turns the
    `edge_fragment` pass on or off (it runs on text records only, `edge_pass_applies`). `spill` is where the
    articles wait for the learned lines (default: inline, in the PCollection)."""

    def __init__(self, rule_files: Iterable[str] = (), learn: bool = True, min_support: Optional[int] = None,
                 edges: bool = True, spill: Optional[Spill] = None, max_keys: int = DEFAULT_STREAM_MAX_KEYS):
        super().__init__()
        rule_files = tuple(rule_files)
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self.max_keys = max_keys
        load_rules(extra_files=rule_files)  # fails here, naming the file, rather than on a worker
        self.rule_texts = tuple(open(path, encoding="utf-8").read() for path in rule_files)
        self.learn = learn
        self.min_support = min_support or DEFAULT_MIN_SUPPORT
        self.edges = edges
        self.spill = spill or Spill()

    def expand(self, articles):
        # Batch learning needs the whole batch before the first line is stripped; an unbounded (streaming)
        # input has no such moment, so there the counts are kept in state and grow as articles arrive.
        if self.learn and getattr(articles, "is_bounded", True):
            learned = articles | "LearnRepeatedLines" >> LearnRepeatedLines(self.min_support, self.spill)
            # The articles wait for the learned lines parked, PARK_BATCH to a token (one compressed write, one
            # element to cross the boundary): the fetch is inside the stripping DoFn, which is the first step
            # after the wait (a separate fetch step would run before it).
            fn = _StripParkedFn((), self.rule_texts, self.edges, self.spill)
            parked = (articles
                      | "Batch" >> beam.BatchElements(min_batch_size=PARK_BATCH, max_batch_size=PARK_BATCH)
                      | "Park" >> beam.Map(self.spill.park_articles))
            results = parked | "StripLines" >> beam.ParDo(fn, beam.pvalue.AsSingleton(
                learned, default_value={})).with_outputs(REJECTED, REMOVED_LINES, main="main")
        elif self.learn:  # a stream: the counts live in state, each article cleaned with what came before it
            with_learned = articles | "LearnFromStream" >> LearnFromStream(self.min_support, self.max_keys)
            fn = _StripLearnedFn((), self.rule_texts, self.edges)
            results = with_learned | "StripLines" >> beam.ParDo(fn).with_outputs(REJECTED, REMOVED_LINES, main="main")
        else:
            fn = _StripBoilerplateFn((), self.rule_texts, self.edges)
            results = articles | "StripLines" >> beam.ParDo(fn).with_outputs(REJECTED, REMOVED_LINES, main="main")
        # The most frequent removed lines per rule, for the run summary and report: exact counts, so the
        # same input always reports the same lines. Batch only: an unbounded input has no final count.
        if not getattr(articles, "is_bounded", True):
            return {"articles": results["main"], "rejected": results[REJECTED]}
        top_lines = (
            results[REMOVED_LINES]
            | "CountRemovedLines" >> CombinePerKeyPacked(beam.combiners.CountCombineFn(), pairs_of=_counted,
                                                         spill=self.spill)
            | "ByRule" >> beam.MapTuple(lambda rule_line, n: (rule_line[0], (n, rule_line[1])))
            | "TopPerRule" >> beam.combiners.Top.PerKey(TOP_REMOVED_LINES, key=lambda t: (t[0], t[1]))
            | "AllRules" >> beam.combiners.ToList()
            | "TopLinesDict" >> beam.Map(top_lines_by_rule))
        return {"articles": results["main"], "rejected": results[REJECTED], REMOVED_LINES: top_lines}
