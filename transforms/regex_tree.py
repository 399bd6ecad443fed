"""Python's own parse tree of a regular expression: the one place wirewash reads `re`'s private parser.

No public API gives the structure of a pattern, and parsing Python's regex syntax again by hand would be a
second implementation that drifts from the one that runs the patterns. Three uses read the tree: the
translation of rules to RE2 (`transforms/linear_regex.py`), the literal and first-character gates of the
boilerplate rules (`transforms/boilerplate.py`), and the anchors of ftfy's mojibake pattern
(`transforms/normalize.py`). `tests/test_internals.py` checks the shapes they read, so a Python release that
changes them fails there, by name, rather than as a slower or different cleaner.
"""
from __future__ import annotations

import functools

__all__ = ["OPS", "parse", "sequence"]


def _private_sre():
    """(`re._parser`, `re._constants`): the parser `re.compile` itself uses, and its opcodes. Private modules
    (Python 3.11+; 3.10 called them `sre_parse` and `sre_constants`), named here only."""
    from re import _constants, _parser
    return _parser, _constants


_PARSER, OPS = _private_sre()


@functools.lru_cache(maxsize=4096)
def parse(pattern: str, flags: int = 0):
    """Python's parse tree of a pattern (cached: the rules are parsed for translation and for their gates).
    Callers must not change it. Raises `re.error`."""
    return _PARSER.parse(pattern, flags)


def sequence(nodes) -> object:
    """A node list of the parse tree holding `nodes` (the `.data` of a group, branch or repeat), to build a
    changed copy of a tree."""
    built = _PARSER.SubPattern(_PARSER.State())
    built.data = list(nodes)
    return built
