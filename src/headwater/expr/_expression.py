"""Compiled expressions: compile once at registration, evaluate per event."""

from __future__ import annotations

import base64
import functools
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

import cel

from headwater.errors import ExpressionError
from headwater.expr import _functions, _paths
from headwater.expr._lexer import tokenize

CACHE_SIZE: Final = 4096

# Functions and methods the `cel` library implements natively (found by probing 0.10).
_BUILTINS: Final = frozenset(
    {
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "timestamp",
        "duration",
        "dyn",
        "type",
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getFullYear",
        "getHours",
        "getMilliseconds",
        "getMinutes",
        "getMonth",
        "getSeconds",
    }
)
# Type names the library accepts as values, e.g. `type(event.data.n) == int`.
_TYPE_NAMES: Final = frozenset(
    {"int", "uint", "double", "string", "bytes", "bool", "list", "map", "null_type", "type"}
)
_CUSTOM: Final = frozenset(_functions.STATIC_FUNCTIONS) | _functions.CLOCK_FUNCTIONS
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Expression:
    """A compiled CEL expression with Inngest's semantics (see `headwater.expr`).

    Instances are immutable and safe to share between threads; get them from
    `compile_expression`, which caches them by source.
    """

    __slots__ = ("_functions", "_pairs", "_program", "_tree", "_uses_clock", "source")

    def __init__(self, source: str) -> None:
        try:
            program = cel.compile(source)
        except ValueError as exc:
            raise ExpressionError(
                f"cannot compile expression {source!r}: {exc}", source=source
            ) from exc
        tokens = tokenize(source)
        bound = _paths.bound_names(tokens)
        _check_references(source, program, bound)
        paths = _paths.find_paths(tokens)
        self.source = source
        self._program = program
        self._tree = _paths.build_tree(paths, opaque_roots=frozenset(bound & _paths.ROOTS))
        self._pairs = tuple(_paths.equality_pairs(tokens, paths))
        used = set(program.functions())
        self._functions = {
            name: function for name, function in _functions.STATIC_FUNCTIONS.items() if name in used
        }
        self._uses_clock = bool(used & _functions.CLOCK_FUNCTIONS)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate(self, variables: Mapping[str, object], *, now: datetime | None = None) -> object:
        """The value of the expression for `variables` (`event`, `async`, `vars`).

        `now` is the instant `now()`, `now_plus()` and `now_minus()` read (default: the
        clock). Raises ExpressionError when evaluation fails (a type mismatch, a missing
        field that could not be read as null, a division by zero, ...).
        """
        for left, right in self._pairs:
            if _paths.lookup(variables, left) is _paths.MISSING and (
                _paths.lookup(variables, right) is _paths.MISSING
            ):
                return False
        bindings: dict[str, object] = _paths.project(self._tree, variables)
        bindings.update(self._functions)
        if self._uses_clock:
            instant = now if now is not None else datetime.now(UTC)
            if instant.tzinfo is None:
                instant = instant.replace(tzinfo=UTC)
            bindings.update(_functions.clock_functions(instant))
        try:
            return self._program.execute(bindings)
        except Exception as exc:  # the library maps each CEL error onto a builtin exception
            detail = f"no such key: {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ExpressionError(
                f"cannot evaluate expression {self.source!r}: {detail}", source=self.source
            ) from exc

    def matches(self, variables: Mapping[str, object], *, now: datetime | None = None) -> bool:
        """True only when the expression evaluates to the boolean true; never raises.

        For trigger `if`, `waitForEvent`/`cancelOn` matches and batch `if`: a non-boolean
        result or an evaluation error does not match, as in Inngest.
        """
        try:
            return self.evaluate(variables, now=now) is True
        except ExpressionError:
            return False

    def key(self, variables: Mapping[str, object], *, now: datetime | None = None) -> str | None:
        """The value of a key expression as a stable string; None if null or on error.

        Strings are used as they are, and so are timestamps (ISO 8601), durations
        (`90s`) and bytes (base64); any other value is rendered as canonical JSON (sorted
        keys, no spaces, integral floats as integers), so equal values give equal keys.
        """
        try:
            value = self.evaluate(variables, now=now)
        except ExpressionError:
            return None
        return None if value is None else render_key(value)


def _check_references(source: str, program: cel.Program, bound: set[str]) -> None:
    """Reject names Inngest's environment does not declare, as its type checker does."""
    unknown_variables = set(program.variables()) - _paths.ROOTS - _TYPE_NAMES - bound
    if unknown_variables:
        names = ", ".join(sorted(unknown_variables))
        raise ExpressionError(
            f"cannot compile expression {source!r}: undeclared reference to {names} "
            "(the variables are event, async and vars)",
            source=source,
        )
    unknown_functions = {
        name
        for name in program.functions()
        if _IDENTIFIER.fullmatch(name) and name not in _BUILTINS and name not in _CUSTOM
    }
    if unknown_functions:
        names = ", ".join(sorted(unknown_functions))
        raise ExpressionError(
            f"cannot compile expression {source!r}: undeclared function {names}", source=source
        )


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compile_cached(source: str) -> Expression:
    return Expression(source)


def compile_expression(source: str) -> Expression:
    """Compile `source` (cached by source text); raise ExpressionError if it is invalid.

    Compile when a function is registered, so a bad expression is reported then rather
    than when the first event arrives.
    """
    return _compile_cached(source)


def render_key(value: object) -> str:
    """A stable string for a key value (see `Expression.key`)."""
    canonical = _canonical(value)
    if isinstance(canonical, str):
        return canonical
    return json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical(value: object) -> object:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        # JSON has one number type: 1 and 1.0 are the same value and must give one key.
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {render_key(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{_canonical(value.total_seconds())}s"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)
