"""The `match` shorthand and the restrictive policy for cancellation expressions."""

from __future__ import annotations

import re
from typing import Final

from headwater.errors import ExpressionError
from headwater.expr._expression import Expression, compile_expression
from headwater.expr._lexer import tokenize
from headwater.expr._paths import MACROS

_DOTTED_PATH: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")

# GO:`pkg/expressions/validation.go` DefaultRestrictiveValidationPolicy: type conversions
# (int, uint, double) and date/time functions are the only calls allowed. Logic, comparison
# and arithmetic operators, selection and indexing are not calls there; `in` is, and is not
# on its allow-list.
_CANCEL_ALLOWED_CALLS: Final = frozenset(
    {"int", "uint", "double", "date", "now_plus", "now_minus", "duration"}
)


def match_expression(field: str) -> str:
    """The expression for the SDKs' `match: "data.x"`: `event.data.x == async.data.x`."""
    if not _DOTTED_PATH.fullmatch(field):
        raise ExpressionError(
            f"match field {field!r} must be a dotted path of identifiers, e.g. 'data.userId'",
            source=field,
        )
    source = f"event.{field} == async.{field}"
    compile_expression(source)  # a reserved word such as `in` is a valid identifier here
    return source


def validate_cancel_expression(source: str) -> Expression:
    """Compile a `cancel[].if` expression and apply Inngest's restrictive policy.

    Disallowed: macros (`has`, `all`, `exists`, `exists_one`, `map`, `filter`), method
    calls, the `in` operator and any function other than int(), uint(), double(), date(),
    now_plus(), now_minus() and duration(). Every violation is listed in the error.
    """
    expression = compile_expression(source)
    tokens = tokenize(source)
    violations: list[str] = []
    for index, token in enumerate(tokens):
        if token.kind != "ident":
            continue
        after_dot = (
            index > 0 and tokens[index - 1].kind == "punct" and tokens[index - 1].text == "."
        )
        calls = index + 1 < len(tokens) and tokens[index + 1].text == "("
        if token.text == "in" and not after_dot:
            violations.append("the 'in' operator is not allowed")
        elif not calls:
            continue
        elif token.text == "has" or (after_dot and token.text in MACROS):
            violations.append(f"macros are not allowed (uses '{token.text}')")
        elif after_dot:
            violations.append(f"method calls are not allowed (uses '.{token.text}()')")
        elif token.text not in _CANCEL_ALLOWED_CALLS:
            violations.append(f"function calls are not allowed (uses '{token.text}()')")
    if violations:
        raise ExpressionError(
            f"cancellation expression {source!r} is not allowed: " + "; ".join(violations),
            source=source,
        )
    return expression
