"""Boilerplate stage: removes site furniture lines from article text.

Keeps every line that no rule matches, unchanged; drops whole lines that a rule in
`transforms/rules/boilerplate.toml` (plus any user rule file) matches: newsletter prompts, "Read more"
links, photo credits, follow/share bars, cookie notices, view counters, ratings, comment prompts, ads,
"related" headings, UI labels, copyright lines and dates standing alone. Counts every removal per rule
(`boilerplate/removed_<rule>`). It never adds characters and never rewrites a kept line.
"""
from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Iterable, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.types import Article, Rejection, excerpt

__all__ = ["StripBoilerplate", "RuleSet", "load_rules", "strip_boilerplate", "fold_line"]

NAMESPACE = "boilerplate"
STAGE = "boilerplate"
REASON_EMPTY = "empty_after_cleaning"
REJECTED = "rejected"
DEFAULT_MAX_WORDS = 30
RULES_PACKAGE_FILE = "boilerplate.toml"

# Bullets, dashes, arrows and similar marks that sites put before UI lines.
_EDGE_MARKS = "•·◦▪▫■□●○►▶▸»«›‹>|-–—*#~→⇒✓✔☆★ \t"
_SPACES = re.compile(r"\s+")


def fold_line(line: str) -> str:
    """The comparison form of a line: NFKC, casefolded, edge bullets and marks stripped, spaces collapsed."""
    folded = unicodedata.normalize("NFKC", line).casefold()
    folded = _SPACES.sub(" ", folded).strip(_EDGE_MARKS)
    return folded


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern
    max_words: int


@dataclass(frozen=True)
class RuleSet:
    """Compiled rules in file order; the first match names the removal."""

    rules: tuple

    def match(self, folded: str) -> Optional[str]:
        if not folded:
            return None
        n_words = folded.count(" ") + 1
        for rule in self.rules:
            if n_words <= rule.max_words and rule.pattern.search(folded):
                return rule.name
        return None


def _read_rule_tables(text: str, origin: str) -> dict:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{origin}: not valid TOML: {err}") from err
    tables = data.get("rules")
    if not isinstance(tables, dict):
        raise ValueError(f"{origin}: expected [rules.NAME] tables")
    return tables


def load_rules(extra_files: Iterable[str] = (), extra_texts: Iterable[str] = ()) -> RuleSet:
    """The packaged rules plus the rules of each extra TOML file (same format). Raises ValueError naming
    the file and rule for a bad table or a pattern that does not compile."""
    sources = [(resources.files("transforms.rules").joinpath(RULES_PACKAGE_FILE).read_text("utf-8"),
                "transforms/rules/boilerplate.toml")]
    for path in extra_files:
        with open(path, encoding="utf-8") as handle:
            sources.append((handle.read(), path))
    sources.extend((text, "<rules text>") for text in extra_texts)

    merged: dict[str, dict] = {}
    for text, origin in sources:
        for name, table in _read_rule_tables(text, origin).items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", name) or not isinstance(table, dict):
                raise ValueError(f"{origin}: rule name {name!r} must be lower_snake_case with a table of patterns")
            entry = merged.setdefault(name, {"max_words": DEFAULT_MAX_WORDS, "patterns": []})
            if "max_words" in table:
                entry["max_words"] = int(table["max_words"])
            for lang, patterns in table.items():
                if lang == "max_words":
                    continue
                if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                    raise ValueError(f"{origin}: rules.{name}.{lang} must be a list of strings")
                for pattern in patterns:
                    try:
                        entry["patterns"].append(re.compile(pattern))
                    except re.error as err:
                        raise ValueError(f"{origin}: rules.{name}.{lang}: bad pattern {pattern!r}: {err}") from err
    rules = tuple(Rule(name, pattern, entry["max_words"])
                  for name, entry in merged.items() for pattern in entry["patterns"])
    return RuleSet(rules)


def strip_boilerplate(text: str, rules: RuleSet,
                      counter_inc_fn: Callable[[str], None] = lambda name: None) -> tuple[str, list[str]]:
    """(text without boilerplate lines, names of the rules that removed lines, one per line removed).

    Kept lines are returned byte for byte; blank lines left around a removed line collapse to one.
    """
    kept: list[str] = []
    removed: list[str] = []
    for line in text.splitlines():
        rule = rules.match(fold_line(line))
        if rule is None:
            if line.strip() or (kept and kept[-1].strip()):
                kept.append(line)
        else:
            removed.append(rule)
            counter_inc_fn(f"removed_{rule}")
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept), removed


class _StripBoilerplateFn(beam.DoFn):
    def __init__(self, rule_files: tuple, rule_texts: tuple):
        self.rule_files = rule_files
        self.rule_texts = rule_texts
        self.rules = None

    def setup(self):
        self.rules = load_rules(self.rule_files, self.rule_texts)

    def process(self, article: Article):
        Metrics.counter(NAMESPACE, "seen").inc()
        text, removed = strip_boilerplate(article.text, self.rules,
                                          lambda name: Metrics.counter(NAMESPACE, name).inc())
        if not any(ch.isalnum() for ch in text):
            Metrics.counter(NAMESPACE, f"dropped_{REASON_EMPTY}").inc()
            yield beam.pvalue.TaggedOutput(REJECTED, Rejection(
                article.doc_id, article.source_location, STAGE, REASON_EMPTY, excerpt(article.text)))
            return
        Metrics.counter(NAMESPACE, "kept").inc()
        if removed:
            Metrics.counter(NAMESPACE, "cleaned_documents").inc()
        yield article._replace(text=text, boilerplate_lines_removed=article.boilerplate_lines_removed + len(removed),
                               removed_by_rule=article.removed_by_rule + tuple(removed))


class StripBoilerplate(beam.PTransform):
    """Article -> {`articles`: boilerplate lines removed, `boilerplate_lines_removed` / `removed_by_rule` set;
    `rejected`: articles that were nothing but boilerplate}. Rules compile once per worker (`setup`); user
    rule files travel as their text, so workers need not see the user's disk."""

    def __init__(self, rule_files: Iterable[str] = ()):
        super().__init__()
        rule_files = tuple(rule_files)
        load_rules(extra_files=rule_files)  # fails here, naming the file, rather than on a worker
        self.rule_texts = tuple(open(path, encoding="utf-8").read() for path in rule_files)

    def expand(self, articles):
        results = articles | "StripLines" >> beam.ParDo(
            _StripBoilerplateFn((), self.rule_texts)).with_outputs(REJECTED, main="main")
        return {"articles": results["main"], "rejected": results[REJECTED]}
