"""Regular expressions that run in time linear in their input, whatever the pattern and the text.

Python's `re` backtracks: a pattern like `^([A-Z]\\w*\\s?){1,4}$` takes hours on a 400-character line.
RE2 (`google-re2`) never backtracks: it answers in time linear in the text, but it has no lookarounds or
backreferences, and its `\\w`, `\\d`, `\\b` are ASCII-only. `to_re2` translates a pattern written in Python
syntax into RE2 syntax with Python's Unicode meaning:

- `\\w` `\\W` `\\d` `\\D` `\\s` `\\S` become the Unicode classes Python gives them (`\\w`: letters, numbers, `_`);
- `\\b` (a word boundary, which RE2 can only test for ASCII) is resolved from the pattern itself: next to a
  part that is always a word character (a literal word) or never one (a space, `:`, the edge of the line),
  the boundary either always holds (it is dropped) or constrains the character on the other side, which is
  then written into that part (`.{0,60}\\bword` becomes `(?:.{0,59}[^\\w\\n])?word` in effect). A `\\b`
  between two parts that may each be a word character or not cannot be resolved: `PatternError`.
- lookarounds, backreferences, atomic groups, possessive repeats and `\\B` raise `PatternError`.

Matches are only tested (`search` is true or not), so group numbers and spans are not preserved.
"""
from __future__ import annotations

import operator
import re

import re2

from wirewash.transforms.regex_tree import OPS as C  # the opcodes of `re`'s parse tree
from wirewash.transforms.regex_tree import parse, sequence

__all__ = ["PatternError", "to_re2", "compile_linear", "LinearPattern", "LiteralSet"]

# Python's `\s` for str: the characters `str.isspace()` accepts.
_SPACE_CLASS = r"\t\n\x{b}\f\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
_WORD_CLASS = r"\p{L}\p{N}_"
_DIGIT_CLASS = r"\p{Nd}"
_UNSUPPORTED = {C.ASSERT: "lookarounds", C.ASSERT_NOT: "lookarounds", C.GROUPREF: "backreferences",
                C.GROUPREF_EXISTS: "conditional groups", C.ATOMIC_GROUP: "atomic groups",
                C.POSSESSIVE_REPEAT: "possessive repeats"}
W, N = frozenset("w"), frozenset("n")
BOTH = W | N
OPEN = "open"  # the context beyond the pattern's own start or end: a search may consume a character there
MAX_NODES = 4000  # resolving `\b` copies parts of the pattern; a pattern that grows past this is refused


class PatternError(ValueError):
    """A pattern that RE2 cannot run with Python's meaning (said in one sentence)."""


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _class_kinds(items) -> frozenset:
    """Whether the characters of a class item list can be word characters (w), others (n), or both."""
    negate = bool(items) and items[0][0] is C.NEGATE
    kinds = set()
    for op, av in items[1:] if negate else items:
        if op is C.LITERAL:
            kinds.add("w" if _is_word(chr(av)) else "n")
        elif op is C.RANGE:
            lo, hi = av
            if hi - lo > 5000:
                kinds |= BOTH
            else:
                kinds |= {"w" if _is_word(chr(c)) else "n" for c in range(lo, hi + 1)}
        elif op is C.CATEGORY:
            kinds |= {C.CATEGORY_WORD: W, C.CATEGORY_DIGIT: W, C.CATEGORY_NOT_WORD: N,
                      C.CATEGORY_SPACE: N}.get(av, BOTH)
        else:
            kinds |= BOTH
    if not negate:
        return frozenset(kinds)
    covers = {av for op, av in items[1:] if op is C.CATEGORY}
    if C.CATEGORY_WORD in covers:
        return N
    if C.CATEGORY_NOT_WORD in covers:
        return W
    return BOTH


def _edge(node, forward: bool):
    """(kinds of the first (forward) or last character of `node`, whether it can match nothing)."""
    op, av = node
    if op is C.LITERAL:
        return (W if _is_word(chr(av)) else N), False
    if op in (C.NOT_LITERAL, C.ANY):
        return BOTH, False
    if op is C.IN:
        return _class_kinds(av), False
    if op is C.AT:
        if (av in (C.AT_END, C.AT_END_STRING)) == forward and av not in (C.AT_BOUNDARY, C.AT_NON_BOUNDARY):
            return N, False  # the edge of the text counts as a non-word character
        return frozenset(), True
    if op is C.SUBPATTERN:
        return _edge_seq(av[3].data, forward)
    if op is C.BRANCH:
        kinds, nullable = frozenset(), False
        for alternative in av[1]:
            k, z = _edge_seq(alternative.data, forward)
            kinds, nullable = kinds | k, nullable or z
        return kinds, nullable
    if op in (C.MAX_REPEAT, C.MIN_REPEAT):
        kinds, nullable = _edge_seq(av[2].data, forward)
        return kinds, nullable or av[0] == 0
    raise PatternError(f"{_UNSUPPORTED.get(op, op)} are not supported (patterns run on RE2)")


def _edge_seq(nodes, forward: bool):
    kinds = frozenset()
    for node in (nodes if forward else reversed(nodes)):
        k, nullable = _edge(node, forward)
        kinds |= k
        if not nullable:
            return kinds, False
    return kinds, True


def _side(nodes, forward: bool, context):
    """Kinds of the character next to a position, looking into `nodes` then `context` (a kind set or OPEN)."""
    kinds, nullable = _edge_seq(nodes, forward)
    if not nullable:
        return kinds
    if context == OPEN:
        return OPEN if not kinds else BOTH
    return kinds | context


def _single_char(node) -> bool:
    return node[0] in (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN)


def _restrict(node, kind: frozenset):
    """A one-character node matching only the characters of `node` of this kind (w or n)."""
    op, av = node
    word = kind == W
    if op is C.LITERAL:
        return node if (_is_word(chr(av)) == word) else (C.IN, [(C.NEGATE, None), (C.RANGE, (0, 0x10FFFF))])
    if op is C.ANY:
        return (C.IN, [(C.CATEGORY, C.CATEGORY_WORD)] if word else [(C.NEGATE, None),
                                                                    (C.CATEGORY, C.CATEGORY_WORD), (C.LITERAL, 10)])
    if op is C.IN and _class_kinds(av) <= kind:
        return node
    if not word and op is C.NOT_LITERAL:
        return (C.IN, [(C.NEGATE, None), (C.CATEGORY, C.CATEGORY_WORD), (C.LITERAL, av)])
    if op is C.IN and av and av[0][0] is C.NEGATE and not word:
        return (C.IN, av + [(C.CATEGORY, C.CATEGORY_WORD)])
    if op is C.IN and not (av and av[0][0] is C.NEGATE):
        kept = [(o, a) for o, a in av if _class_kinds([(o, a)]) <= kind]
        if all(_class_kinds([(o, a)]) in (W, N) for o, a in av):
            return (C.IN, kept or [(C.NEGATE, None), (C.RANGE, (0, 0x10FFFF))])
    raise PatternError("a \\b next to a character class mixing letters and other characters")


def _sub(nodes) -> tuple:
    """A non-capturing group node around a node list."""
    return (C.SUBPATTERN, (None, 0, 0, sequence(nodes)))


def _branch(*alternatives) -> tuple:
    """A branch node; alternatives holding a never-matching class at their top level are left out."""
    kept = [nodes for nodes in alternatives if _IMPOSSIBLE not in nodes] or alternatives[:1]
    subs = [sequence(nodes) for nodes in kept]
    return (C.BRANCH, (None, subs))


_BOUNDARY = (C.AT, C.AT_BOUNDARY)
_IMPOSSIBLE = (C.IN, [(C.NEGATE, None), (C.RANGE, (0, 0x10FFFF))])
_NOT_WORD = (C.IN, [(C.NEGATE, None), (C.CATEGORY, C.CATEGORY_WORD)])
_WORD = (C.IN, [(C.CATEGORY, C.CATEGORY_WORD)])


def _opposite(kinds: frozenset) -> frozenset:
    return N if kinds == W else W


def _resolve_at(nodes: list, i: int, before, after) -> list:
    """`nodes` with the `\\b` at index i removed or written into its neighbours (same matches)."""
    head, tail = nodes[:i], nodes[i + 1:]
    left, right = _side(head, False, before), _side(tail, True, after)
    for known, other in ((left, right), (right, left)):
        if known in (W, N) and other in (W, N):
            return head + tail if known != other else head + [_IMPOSSIBLE] + tail
    if left in (W, N):  # the next character must be of the other kind (or the end, after a word)
        need = _opposite(left)
        if not tail:
            if after == OPEN:
                return head + ([_branch([(C.AT, C.AT_END)], [_NOT_WORD])] if need == N else [_WORD])
        else:
            nxt = tail[0]
            if _single_char(nxt):
                return head + [_restrict(nxt, need)] + tail[1:]
            if nxt[0] in (C.MAX_REPEAT, C.MIN_REPEAT):
                lo, hi, item = nxt[1]
                if len(item.data) == 1 and _single_char(item.data[0]):
                    shorter = (nxt[0], (max(lo - 1, 0), hi if hi == C.MAXREPEAT else hi - 1, item))
                    taken = [_restrict(item.data[0], need), shorter] + tail[1:]
                    if lo >= 1:
                        return head + taken
                    return head + [_branch(taken, [_BOUNDARY] + tail[1:])]
                if lo == 0:  # an optional group: with it or without it
                    once = (nxt[0], (1, hi, item)) if hi != 1 else _sub(item.data)
                    return head + [_branch([_BOUNDARY, once] + tail[1:], [_BOUNDARY] + tail[1:])]
            if nxt[0] is C.SUBPATTERN and not nxt[1][1] and not nxt[1][2]:
                return head + [_BOUNDARY] + list(nxt[1][3].data) + tail[1:]
            if nxt[0] is C.BRANCH:
                return head + [_branch(*([_BOUNDARY] + list(alt.data) + tail[1:] for alt in nxt[1][1]))]
    if right in (W, N):  # the previous character must be of the other kind (or the start, before a word)
        need = _opposite(right)
        if not head:
            if before == OPEN:
                return ([_branch([(C.AT, C.AT_BEGINNING)], [_NOT_WORD])] if need == N else [_WORD]) + tail
        else:
            prev = head[-1]
            if _single_char(prev):
                return head[:-1] + [_restrict(prev, need)] + tail
            if prev[0] in (C.MAX_REPEAT, C.MIN_REPEAT):
                lo, hi, item = prev[1]
                if len(item.data) == 1 and _single_char(item.data[0]):
                    shorter = (prev[0], (max(lo - 1, 0), hi if hi == C.MAXREPEAT else hi - 1, item))
                    taken = head[:-1] + [shorter, _restrict(item.data[0], need)]
                    if lo >= 1:
                        return taken + tail
                    return [_branch(taken, head[:-1] + [_BOUNDARY])] + tail
                if lo == 0:
                    once = (prev[0], (1, hi, item)) if hi != 1 else _sub(item.data)
                    return [_branch(head[:-1] + [once, _BOUNDARY], head[:-1] + [_BOUNDARY])] + tail
            if prev[0] is C.SUBPATTERN and not prev[1][1] and not prev[1][2]:
                return head[:-1] + list(prev[1][3].data) + [_BOUNDARY] + tail
            if prev[0] is C.BRANCH:
                return [_branch(*(head[:-1] + list(alt.data) + [_BOUNDARY] for alt in prev[1][1]))] + tail
    raise PatternError("a \\b between two parts that may each be a letter or not (RE2 cannot test a "
                       "Unicode word boundary there): put a word or a space next to it")


def _has_boundary(nodes) -> bool:
    for op, av in nodes:
        if (op, av) == _BOUNDARY:
            return True
        if op is C.SUBPATTERN and _has_boundary(av[3].data):
            return True
        if op is C.BRANCH and any(_has_boundary(alt.data) for alt in av[1]):
            return True
        if op in (C.MAX_REPEAT, C.MIN_REPEAT) and _has_boundary(av[2].data):
            return True
    return False


def _size(nodes) -> int:
    total = 0
    for op, av in nodes:
        total += 1
        if op is C.SUBPATTERN:
            total += _size(av[3].data)
        elif op is C.BRANCH:
            total += sum(_size(alt.data) for alt in av[1])
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
            total += _size(av[2].data)
    return total


def _resolve(nodes: list, before, after, budget: list) -> list:
    """`nodes` without any `\\b`: resolved at this level first (outermost context known), then inside."""
    nodes = list(nodes)
    while True:
        budget[0] -= 1
        if budget[0] < 0 or _size(nodes) > MAX_NODES:
            raise PatternError("too many \\b to resolve in one pattern")
        i = next((k for k, node in enumerate(nodes) if node == _BOUNDARY), None)
        if i is not None:
            nodes = _resolve_at(nodes, i, before, after)
            continue
        k = next((k for k, node in enumerate(nodes) if node[0] in (C.SUBPATTERN, C.BRANCH, C.MAX_REPEAT,
                                                                     C.MIN_REPEAT) and _has_boundary([node])), None)
        if k is None:
            return nodes
        node = nodes[k]
        left, right = _side(nodes[:k], False, before), _side(nodes[k + 1:], True, after)
        op, av = node
        if op is C.SUBPATTERN and not av[1] and not av[2]:  # a plain group: its content joins this sequence
            nodes[k:k + 1] = list(av[3].data)
        elif op is C.SUBPATTERN:
            nodes[k] = (op, (av[0], av[1], av[2], sequence(_resolve(av[3].data, left, right, budget))))
        elif op is C.BRANCH:
            try:
                nodes[k] = _branch(*(_resolve(alt.data, left, right, budget) for alt in av[1]))
            except PatternError:
                if len(nodes) == 1:
                    raise
                # A \b at the edge of an alternative needs what follows (or precedes) the branch: each
                # alternative takes the whole sequence around it.
                nodes = [_branch(*(nodes[:k] + list(alt.data) + nodes[k + 1:] for alt in av[1]))]
        else:  # a repeat: the item sits next to itself, so its edges are part of its own context
            lo, hi, item = av
            first, _ = _edge_seq(item.data, True)
            last, _ = _edge_seq(item.data, False)
            inner_left = left if (left == OPEN or hi == 1) else (left | last)
            inner_right = right if (right == OPEN or hi == 1) else (right | first)
            if inner_left == OPEN and hi != 1:
                inner_left = BOTH
            if inner_right == OPEN and hi != 1:
                inner_right = BOTH
            nodes[k] = (op, (lo, hi, sequence(_resolve(item.data, inner_left, inner_right, budget))))


def _char(code: int) -> str:
    ch = chr(code)
    return ch if (ch.isalnum() and ch.isprintable()) or ch == " " else f"\\x{{{code:x}}}"


def _class(items) -> str:
    negate = bool(items) and items[0][0] is C.NEGATE
    parts, negated_cats = [], []
    for op, av in items[1:] if negate else items:
        if op is C.LITERAL:
            parts.append(_char(av))
        elif op is C.RANGE:
            parts.append(f"{_char(av[0])}-{_char(av[1])}")
        elif op is C.CATEGORY:
            positive = {C.CATEGORY_WORD: _WORD_CLASS, C.CATEGORY_DIGIT: _DIGIT_CLASS,
                        C.CATEGORY_SPACE: _SPACE_CLASS}.get(av)
            if positive is not None:
                parts.append(positive)
            else:
                negated_cats.append({C.CATEGORY_NOT_WORD: _WORD_CLASS, C.CATEGORY_NOT_DIGIT: _DIGIT_CLASS,
                                     C.CATEGORY_NOT_SPACE: _SPACE_CLASS}[av])
        else:
            raise PatternError(f"unsupported class item {op}")
    if not negated_cats:
        body = "".join(parts)
        if negate:
            return f"[^{body}]" if body else r"[\x{0}-\x{10ffff}]"
        return f"[{body}]" if body else r"[^\x{0}-\x{10ffff}]"
    if negate:
        if len(negated_cats) == 1 and not parts:  # [^\W] is \w
            return f"[{negated_cats[0]}]"
        raise PatternError("a negated class holding \\W, \\D or \\S")
    alternatives = ([f"[{''.join(parts)}]"] if parts else []) + [f"[^{cat}]" for cat in negated_cats]
    return "(?:" + "|".join(alternatives) + ")"


_FLAG_LETTERS = ((2, "i"), (8, "m"), (16, "s"))  # re.IGNORECASE, re.MULTILINE, re.DOTALL


def _emit(nodes) -> str:
    out = []
    for op, av in nodes:
        if op is C.LITERAL:
            out.append(_char(av))
        elif op is C.NOT_LITERAL:
            out.append(f"[^{_char(av)}]")
        elif op is C.ANY:
            out.append(".")
        elif op is C.IN:
            out.append(_class(av))
        elif op is C.AT:
            table = {C.AT_BEGINNING: "^", C.AT_END: "$", C.AT_BEGINNING_STRING: r"\A", C.AT_END_STRING: r"\z"}
            if av not in table:
                raise PatternError("\\B (not a word boundary) is not supported")
            out.append(table[av])
        elif op is C.SUBPATTERN:
            _, add, remove, pattern = av
            on = "".join(letter for bit, letter in _FLAG_LETTERS if add & bit)
            off = "".join(letter for bit, letter in _FLAG_LETTERS if remove & bit)
            flags = on + (f"-{off}" if off else "")
            out.append(f"(?{flags}:{_emit(pattern.data)})")
        elif op is C.BRANCH:
            out.append("(?:" + "|".join(_emit(alt.data) for alt in av[1]) + ")")
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, item = av
            body = _emit(item.data)
            if not (len(item.data) == 1 and item.data[0][0] in (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN)
                    and not body.startswith("(?:")):
                body = f"(?:{body})"
            if hi == C.MAXREPEAT:
                suffix = "*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}"
            else:
                suffix = "?" if (lo, hi) == (0, 1) else f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"
            out.append(body + suffix + ("?" if op is C.MIN_REPEAT else ""))
        else:
            raise PatternError(f"{_UNSUPPORTED.get(op, op)} are not supported (patterns run on RE2)")
    return "".join(out)


def to_re2(pattern: str, flags: int = 0) -> str:
    """The RE2 form of a Python pattern (same lines matched by `search`). Raises PatternError for what RE2
    cannot run: lookarounds, backreferences, an unresolvable `\\b`, a bad pattern."""
    try:
        parsed = parse(pattern, flags)
    except re.error as err:
        raise PatternError(str(err)) from err
    global_flags = parsed.state.flags
    if global_flags & re.ASCII:
        raise PatternError("the ASCII flag is not supported")
    if global_flags & re.VERBOSE:
        global_flags &= ~re.VERBOSE
    nodes = _resolve(parsed.data, OPEN, OPEN, [200])
    prefix = "".join(letter for bit, letter in _FLAG_LETTERS if global_flags & bit)
    return (f"(?{prefix})" if prefix else "") + _emit(nodes)


def _options() -> "re2.Options":
    options = re2.Options()
    options.log_errors = False
    options.never_capture = True  # only whether it matches is asked
    options.max_mem = 64 << 20
    return options


_NO_MATCH = (-1, -1)


def _re2_binding() -> tuple:
    """(the anchor value of an unanchored search, a getter of a compiled google-re2 pattern's C++ `Match`):
    `match(anchor, data, start, end)` answers the first match's span first, `_NO_MATCH` when there is none.
    Private (`_Anchor`, `_regexp.Match`): the public `search` wraps every call in Python (argument checks, a
    match object), a third of the cost of a rule check, and rules are checked on every line of every
    article. Named here only; `tests/test_internals.py` fails by name if google-re2 changes them."""
    return re2._Anchor.UNANCHORED, operator.attrgetter("_regexp.Match")


_UNANCHORED, _match_of = _re2_binding()


class LinearPattern:
    """A compiled pattern with `search(text) -> bool`: RE2 underneath, Python's syntax and meaning on top.
    `search_utf8` takes the text already encoded (a line tried by many patterns is encoded once).

    The translation runs at once (PatternError for what RE2 cannot run); the RE2 compilation too, unless
    `lazy` (patterns known to compile, such as the packaged rules: then only the patterns a run actually
    tries are compiled, ~3 ms each)."""

    __slots__ = ("pattern", "flags", "re2_pattern", "_match")

    def __init__(self, pattern: str, flags: int = 0, lazy: bool = False):
        self.pattern = pattern
        self.flags = flags
        self.re2_pattern = to_re2(pattern, flags)
        self._match = self._first_match if lazy else self._compile()

    def _compile(self):
        try:
            compiled = re2.compile(self.re2_pattern, _options())
        except re2.error as err:
            raise PatternError(f"RE2 cannot compile it: {err}") from err
        return _match_of(compiled)  # the binding itself, without the wrapper (`_re2_binding`)

    def _first_match(self, anchor, data, start, end):
        self._match = self._compile()
        return self._match(anchor, data, start, end)

    def search(self, text: str) -> bool:
        data = text.encode("utf-8", "surrogatepass")
        return self._match(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH

    def search_utf8(self, data: bytes) -> bool:
        return self._match(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH

    def __repr__(self) -> str:
        return f"LinearPattern({self.pattern!r})"

    def __reduce__(self):
        return LinearPattern, (self.pattern, self.flags, True)


class LiteralSet:
    """Which of a few literal strings occur in a text: one RE2 pass (an automaton), whatever their number."""

    def __init__(self, literals):
        self.literals = tuple(literals)
        self._set = re2.Set.SearchSet(_options())
        for literal in self.literals:
            self._set.Add(re2.escape(literal))
        self._set.Compile()

    def found(self, data: bytes) -> list:
        """Indexes (into `literals`) of the literals in this UTF-8 text."""
        return self._set.Match(data) or []

    def __reduce__(self):
        return LiteralSet, (self.literals,)


def compile_linear(pattern: str, flags: int = 0) -> LinearPattern:
    """`LinearPattern(pattern)`: raises PatternError (a ValueError) for a pattern RE2 cannot run."""
    return LinearPattern(pattern, flags)
