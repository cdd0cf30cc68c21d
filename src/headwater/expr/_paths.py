"""The fields an expression reads, and the view of the variables that it is given.

Inngest lists the attributes an expression uses and marks each one that is missing from the
data as "unknown", which its evaluator then treats like null (GO:`pkg/expressions/data.go`
`Partial`, `unknown.go`). The `cel` library has no unknowns, so we get the same effect with
plain data: before each evaluation we build a view of the variables that holds exactly the
fields the expression names, with a null in place of each one that is missing. A field that
is only tested with `has()` is left out when missing, so `has()` stays false (also when the same field is read
elsewhere in the expression).

The view is also what keeps evaluation fast: the library converts every Python value it is
given into a CEL value, at a few microseconds per value, so handing it only the fields the
expression reads (as Inngest's `FilteredAttributes` does) is much cheaper than handing it
the whole event.

Paths are found with the tokenizer, not an AST: a path is one of the root variables (not
preceded by `.`) followed by `.field` selections and `['literal']` indexes, stopping before
a method call. A field reached any other way (after a numeric index, through a macro
variable, on a parenthesised expression) is not in a path; its container is then used
whole, and a missing field inside it is an evaluation error, as plain CEL has it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from headwater.expr._lexer import Token

ROOTS: Final = frozenset({"event", "async", "vars"})
MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})

_OPEN: Final = frozenset({"(", "[", "{"})
_CLOSE: Final = frozenset({")", "]", "}"})


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


MISSING: Final = _Sentinel("MISSING")
_OMIT: Final = _Sentinel("OMIT")


@dataclass(frozen=True, slots=True)
class PathRef:
    """One path in the source, e.g. `event.data.accountId`, with its token span."""

    root: str
    fields: tuple[str, ...]
    start: int  # index of the root token
    end: int  # index of the first token after the path
    tested: bool  # the path is the argument of has()


@dataclass(eq=False, slots=True)
class Node:
    """One field in the tree of paths an expression reads."""

    children: dict[str, Node] = field(default_factory=dict)
    whole: bool = False  # the value at this path is used as a value
    tested: bool = False  # the path is tested with has()


def _is(tokens: Sequence[Token], index: int, text: str) -> bool:
    return (
        0 <= index < len(tokens) and tokens[index].text == text and tokens[index].kind != "string"
    )


def find_paths(tokens: Sequence[Token]) -> list[PathRef]:
    """Every path rooted at `event`, `async` or `vars` in the token stream."""
    paths: list[PathRef] = []
    count = len(tokens)
    for index, token in enumerate(tokens):
        if token.kind != "ident" or token.text not in ROOTS or _is(tokens, index - 1, "."):
            continue
        fields: list[str] = []
        cursor = index + 1
        while True:
            if (
                _is(tokens, cursor, ".")
                and cursor + 1 < count
                and tokens[cursor + 1].kind == "ident"
                and not _is(tokens, cursor + 2, "(")
            ):
                fields.append(tokens[cursor + 1].text)
                cursor += 2
                continue
            literal = tokens[cursor + 1] if cursor + 1 < count else None
            if (
                _is(tokens, cursor, "[")
                and literal is not None
                and literal.kind == "string"
                and literal.value is not None
                and _is(tokens, cursor + 2, "]")
            ):
                fields.append(literal.value)
                cursor += 3
                continue
            break
        tested = (
            bool(fields)
            and _is(tokens, index - 1, "(")
            and _is(tokens, index - 2, "has")
            and not _is(tokens, index - 3, ".")
            and _is(tokens, cursor, ")")
        )
        paths.append(PathRef(token.text, tuple(fields), index, cursor, tested))
    return paths


def bound_names(tokens: Sequence[Token]) -> set[str]:
    """The variables bound by comprehension macros, e.g. `x` in `list.exists(x, x > 1)`."""
    names: set[str] = set()
    for index in range(1, len(tokens) - 3):
        if (
            tokens[index].kind == "ident"
            and tokens[index].text in MACROS
            and _is(tokens, index - 1, ".")
            and _is(tokens, index + 1, "(")
            and tokens[index + 2].kind == "ident"
            and _is(tokens, index + 3, ",")
        ):
            names.add(tokens[index + 2].text)
    return names


def build_tree(paths: Sequence[PathRef], opaque_roots: frozenset[str]) -> dict[str, Node]:
    """Merge paths into one tree per root; an opaque root is passed through untouched."""
    tree: dict[str, Node] = {}
    for path in paths:
        node = tree.setdefault(path.root, Node())
        if path.root in opaque_roots:
            # A macro variable shadows this root somewhere, so a path that looks rooted here
            # may not be; show the variable exactly as given.
            node.whole = True
            node.children.clear()
            continue
        for name in path.fields:
            node = node.children.setdefault(name, Node())
        if path.tested:
            node.tested = True
        else:
            node.whole = True
    return tree


def project(tree: Mapping[str, Node], variables: Mapping[str, object]) -> dict[str, object]:
    """The variables as the expression should see them (see the module docstring)."""
    view: dict[str, object] = {}
    for root, node in tree.items():
        if root in variables:
            view[root] = _present(variables[root], node)
        else:
            view[root] = _absent(node)
    return view


def _present(value: object, node: Node) -> object:
    if node.whole:
        return _complete(value, node) if node.children else value
    if value is None:
        # Inngest treats any field below a null as missing rather than an error.
        value = {}
    if not isinstance(value, Mapping):
        # Selecting a field of a string, number or list: let CEL raise its own error.
        return value
    view: dict[object, object] = {}
    for name, child in node.children.items():
        if name in value:
            view[name] = _present(value[name], child)
        else:
            missing = _absent(child)
            if missing is not _OMIT:
                view[name] = missing
    return view


def _absent(node: Node) -> object:
    # has() must stay false, even when the same field is also read: the usual shapes are
    # guards (`has(x) && x == 1`, `has(x) ? x : d`), which then never read the field.
    if node.tested:
        return _OMIT
    if node.whole:
        return None
    return _present({}, node)


def _complete(value: object, node: Node) -> object:
    """`value` (used whole) plus a null for each field below it that is read but missing."""
    if not isinstance(value, Mapping):
        return value
    copied: dict[object, object] | None = None
    for name, child in node.children.items():
        if name in value:
            original = value[name]
            updated = _complete(original, child) if child.children else original
            if updated is not original:
                copied = copied if copied is not None else dict(value)
                copied[name] = updated
        else:
            missing = _absent(child)
            if missing is not _OMIT:
                copied = copied if copied is not None else dict(value)
                copied[name] = missing
    return value if copied is None else copied


def lookup(variables: Mapping[str, object], path: PathRef) -> object:
    """The value at `path`, or MISSING when a field on the way is absent or not a map."""
    value = variables.get(path.root, MISSING)
    for name in path.fields:
        if not isinstance(value, Mapping) or name not in value:
            return MISSING
        value = value[name]
    return value


def equality_pairs(
    tokens: Sequence[Token], paths: Sequence[PathRef]
) -> list[tuple[PathRef, PathRef]]:
    """The `PATH == PATH` conjuncts of an expression that is a plain `&&` chain.

    Inngest evaluates `missing == missing` to false (two unknowns are not equal), while two
    nulls are equal in CEL. When such a conjunct has both sides missing the whole chain is
    false, so the caller can answer without evaluating. This covers the `match` shorthand
    (`event.data.id == async.data.id`), where a field missing from both events must not match.
    """
    lo, hi = _strip_parens(tokens, 0, len(tokens))
    conjuncts = _split_conjuncts(tokens, lo, hi)
    if conjuncts is None:
        return []
    by_start = {path.start: path for path in paths if not path.tested}
    pairs: list[tuple[PathRef, PathRef]] = []
    for start, end in conjuncts:
        start, end = _strip_parens(tokens, start, end)
        left = by_start.get(start)
        if left is None or not _is(tokens, left.end, "=="):
            continue
        right = by_start.get(left.end + 1)
        if right is not None and right.end == end:
            pairs.append((left, right))
    return pairs


def _split_conjuncts(tokens: Sequence[Token], lo: int, hi: int) -> list[tuple[int, int]] | None:
    """Split tokens[lo:hi] at top-level `&&`; None when `||` or `?:` is at the top level."""
    depth = 0
    parts: list[tuple[int, int]] = []
    start = lo
    for index in range(lo, hi):
        token = tokens[index]
        if token.kind != "punct":
            continue
        if token.text in _OPEN:
            depth += 1
        elif token.text in _CLOSE:
            depth -= 1
        elif depth == 0 and token.text in ("||", "?"):
            return None
        elif depth == 0 and token.text == "&&":
            parts.append((start, index))
            start = index + 1
    parts.append((start, hi))
    return parts


def _strip_parens(tokens: Sequence[Token], start: int, end: int) -> tuple[int, int]:
    """Drop parentheses that enclose all of tokens[start:end]."""
    while end - start >= 2 and _is(tokens, start, "(") and _is(tokens, end - 1, ")"):
        depth = 0
        for index in range(start, end - 1):
            token = tokens[index]
            if token.kind == "punct" and token.text in _OPEN:
                depth += 1
            elif token.kind == "punct" and token.text in _CLOSE:
                depth -= 1
            if depth == 0:
                return start, end  # the first "(" closes before the end: not enclosing
        start, end = start + 1, end - 1
    return start, end
