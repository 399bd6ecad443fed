"""Private internals of other libraries that wirewash reads, each behind one small function: these tests fail
by name when a library changes them, instead of the cleaner silently getting slower or different.

- `re._parser` / `re._constants` (`transforms/regex_tree.py`): the parse tree of a pattern;
- google-re2's C++ binding (`transforms/linear_regex.py`, `_raw_search`);
- a process pool's workers (`transforms/extract.py`, `worker_processes`);
- argparse's list of actions and its append action (`pipeline/config.py`, `_actions`, `_repeatable`).

langdetect's module-global factory and Beam's `pipeline._options` are no longer read: the public equivalents
are checked to give the same answers.
"""
from __future__ import annotations

import argparse
import re
from concurrent.futures import ProcessPoolExecutor

import apache_beam as beam
import langdetect
from apache_beam.options.pipeline_options import PipelineOptions
from langdetect import DetectorFactory

from wirewash.pipeline.config import _actions, _repeatable
from wirewash.transforms.boilerplate import first_chars, required_substrings
from wirewash.transforms.extract import _isolation_is_safe, worker_processes
from wirewash.transforms.language import SEED, load_langdetect
from wirewash.transforms.linear_regex import _NO_MATCH, _UNANCHORED, _match_of, _options, to_re2
from wirewash.transforms.normalize import _BADNESS_ANCHORS
from wirewash.transforms.regex_tree import OPS, parse, sequence


def test_re_parse_tree_has_the_shapes_wirewash_reads():
    """The node shapes `linear_regex`, the rule gates and the mojibake anchors walk (Python 3.11-3.13)."""
    tree = parse(r"^(a)(?i:b)(?:cd|e)+[0-9\s]\w*?$")
    nodes = list(tree.data)
    assert nodes[0] == (OPS.AT, OPS.AT_BEGINNING)
    op, (group, add_flags, del_flags, inner) = nodes[1]  # SUBPATTERN: (group, added flags, removed flags, nodes)
    assert op is OPS.SUBPATTERN and group == 1 and (add_flags, del_flags) == (0, 0)
    assert list(inner.data) == [(OPS.LITERAL, ord("a"))]
    assert nodes[2][0] is OPS.SUBPATTERN and nodes[2][1][1] & re.IGNORECASE
    op, (low, high, body) = nodes[3]  # MAX_REPEAT: (min, max, nodes)
    assert op is OPS.MAX_REPEAT and (low, high) == (1, OPS.MAXREPEAT)
    branch_op, (_, alternatives) = list(body.data)[0]
    assert branch_op is OPS.BRANCH and [list(a.data) for a in alternatives] == [
        [(OPS.LITERAL, ord("c")), (OPS.LITERAL, ord("d"))], [(OPS.LITERAL, ord("e"))]]
    assert nodes[4] == (OPS.IN, [(OPS.RANGE, (ord("0"), ord("9"))), (OPS.CATEGORY, OPS.CATEGORY_SPACE)])
    assert nodes[5][0] is OPS.MIN_REPEAT and nodes[6] == (OPS.AT, OPS.AT_END)
    assert tree.state.flags & re.UNICODE and parse("ab").getwidth() == (2, 2)
    assert list(sequence([(OPS.LITERAL, 120)]).data) == [(OPS.LITERAL, 120)]


def test_what_the_parse_tree_gives_still_comes_out():
    """End to end: the translation, the gates and ftfy's mojibake anchors still come out of the tree."""
    assert to_re2(r"\bword\b") != r"\bword\b" and required_substrings("(newsletter|subscribe) now") == (
        "newsletter", "subscribe")
    assert first_chars("^[0-9]+ views") == frozenset("0123456789") and first_chars(r"^\d+ views") == {"\\d"}
    assert _BADNESS_ANCHORS is not None  # else every article's mojibake check scans the whole text


def test_re2_binding_answers_spans():
    """google-re2's binding: the first match's span first, `_NO_MATCH` when there is none."""
    import re2

    match = _match_of(re2.compile("b+", _options()))
    assert match(_UNANCHORED, b"abbc", 0, 4)[0] == (1, 3)
    assert match(_UNANCHORED, b"xyz", 0, 3)[0] == _NO_MATCH
    assert match(_UNANCHORED, b"abbc", 2, 4)[0] == (2, 3)


def test_process_pool_workers_are_reachable():
    with ProcessPoolExecutor(1) as pool:
        assert pool.submit(abs, -3).result(60) == 3
        workers = worker_processes(pool)
        assert len(workers) == 1 and workers[0].is_alive() and workers[0].pid


def test_argparse_actions_and_append():
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", action="append")
    parser.add_argument("--output")
    parser.add_argument("-q", "--quiet", action="store_true")
    actions = _actions(parser)
    assert {"input", "output", "quiet", "help"} <= set(actions)
    assert _repeatable(actions["input"]) and not _repeatable(actions["output"])


def test_langdetect_through_public_names_equals_the_library_own():
    """Our factory (public `DetectorFactory` + `PROFILES_DIRECTORY`) answers as `langdetect.detect_langs`."""
    text = "Le gouvernement a annoncé mardi une nouvelle réforme des retraites, contestée par les syndicats."
    ours = load_langdetect()(text)
    DetectorFactory.seed = SEED
    theirs = [(p.lang, p.prob) for p in langdetect.detect_langs(text)]
    assert ours == theirs and ours[0][0] == "fr"


def test_pipeline_options_through_the_public_property():
    """`Pipeline.options` (public) carries the runner choice that decides subprocess isolation."""
    assert _isolation_is_safe(beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])))
    assert not _isolation_is_safe(beam.Pipeline(options=PipelineOptions(
        ["--runner=FnApiRunner", "--direct_running_mode=multi_processing"])))
