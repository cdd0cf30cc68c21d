"""Properties of CEL expressions over arbitrary JSON-like events."""

from __future__ import annotations

import copy
import json
import operator
from collections.abc import Callable
from typing import Any

import cel
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from headwater.errors import ExpressionError
from headwater.expr import compile_expression

# The library compares int and double as doubles; beyond 2**53 that is not Python's exact
# comparison, so numbers stay where both agree.
EXACT = 2**53

keys = st.text(max_size=6)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-EXACT, EXACT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(keys, json_values, max_size=6)
numbers = st.integers(-EXACT, EXACT) | st.floats(
    min_value=-EXACT, max_value=EXACT, allow_nan=False, allow_infinity=False
)

# A spread of shapes: comparisons, macros, has(), functions, errors and non-booleans.
SOURCES = [
    "event.data.a == 1",
    "event.data.a != 'x'",
    "event.data.a > 1",
    "event.data.a.b.c == null",
    "event.data.a.b < 3.5",
    "event.data.a == async.data.a",
    "event.data.a == async.data.a && event.data.b == 'x'",
    "has(event.data.a) && event.data.a.b == 1",
    "has(event.data.a.b) ? event.data.a.b : 0",
    "event.data.a.exists(x, x == 1)",
    "event.data.a.all(x, x.y > 1)",
    "event.data.a.map(x, x + 1) == [2]",
    "size(event.data.a) > 0",
    "'x' in event.data.a",
    "event.data.a.startsWith('a')",
    "lowercase(event.data.a) == 'a'",
    "json_parse(event.data.a).b == 1",
    "b64decode(event.data.a) == ''",
    "date(event.data.a) < now()",
    "now_plus(event.data.a) > now()",
    "event.data['a'] + event.data['b']",
    "event.data.a / event.data.b",
    "event.data",
    "event.data.a",
    "event",
    "size(event.data) == 1 && event.data.zz == null",
    "event.data.a || event.data.b",
    "!event.data.a",
]

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def cel_literal(value: object) -> str:
    """A CEL literal for a JSON-like value (JSON's syntax, with `null`, `true`, `false`)."""
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SOURCES), json_objects, json_objects)
def test_matches_and_key_never_raise(
    source: str, data: dict[str, object], other: dict[str, object]
) -> None:
    expression = compile_expression(source)
    variables = {"event": {"name": "e", "data": data}, "async": {"data": other}}
    assert isinstance(expression.matches(variables), bool)
    key = expression.key(variables)
    assert key is None or isinstance(key, str)


@settings(max_examples=150, deadline=None)
@given(json_objects, st.data())
def test_a_present_value_equals_itself(data: dict[str, object], draw: st.DataObject) -> None:
    assume(data)
    name = draw.draw(st.sampled_from(sorted(data)))
    field = f"event.data[{json.dumps(name, ensure_ascii=False)}]"
    expression = compile_expression(f"{field} == {field}")
    assert expression.matches({"event": {"data": data}})
    across = compile_expression(f"{field} == async.data[{json.dumps(name, ensure_ascii=False)}]")
    assert across.matches({"event": {"data": data}, "async": {"data": copy.deepcopy(data)}})


@settings(max_examples=150, deadline=None)
@given(json_objects, scalars, st.sampled_from(sorted(COMPARISONS)))
def test_comparing_a_missing_field_never_matches_a_value(
    data: dict[str, object], literal: object, op: str
) -> None:
    data.pop("missing", None)
    assume(literal is not None)
    variables = {"event": {"data": data}}
    for path in ("event.data.missing", "event.data.missing.deeper"):
        expression = compile_expression(f"{path} {op} {cel_literal(literal)}")
        assert expression.matches(variables) is (op == "!=")
        assert compile_expression(f"{path} == null").matches(variables)


@settings(max_examples=300, deadline=None)
@given(numbers, numbers, st.sampled_from(sorted(COMPARISONS)))
def test_int_and_float_comparisons_agree_with_python(left: float, right: float, op: str) -> None:
    expression = compile_expression(f"event.data.left {op} event.data.right")
    variables = {"event": {"data": {"left": left, "right": right}}}
    assert expression.evaluate(variables) is COMPARISONS[op](left, right)


def normalised(value: object) -> object:
    """The same JSON value with integral floats as ints and maps in reverse key order."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, list):
        return [normalised(item) for item in value]
    return value


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_key_is_deterministic_and_equal_for_equal_values(value: object) -> None:
    expression = compile_expression("event.data.k")
    key = expression.key({"event": {"data": {"k": value}}})
    assert key == expression.key({"event": {"data": {"k": copy.deepcopy(value)}}})
    assert key == expression.key({"event": {"data": {"k": normalised(value)}}})
    assert (key is None) is (value is None)


@settings(max_examples=150, deadline=None)
@given(json_objects, json_values)
def test_present_fields_give_what_plain_cel_gives_on_the_whole_event(
    data: dict[str, object], extra: object
) -> None:
    data["k"] = {"inner": extra, "sibling": 1}
    variables = {"event": {"name": "e", "data": data}}
    for source in ("event.data.k.inner", "event.data.k", "event.data", "event.name"):
        expected = cel.compile(source).execute(variables)
        assert compile_expression(source).evaluate(variables) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=["Cs"]), max_size=20))
def test_escaped_string_literals_compare_equal_to_their_text(text: str) -> None:
    literal = json.dumps(text, ensure_ascii=False)  # also a valid CEL double-quoted literal
    expression = compile_expression(f"event.data.s == {literal}")
    assert expression.matches({"event": {"data": {"s": text}}})


CEL_CHARACTERS = st.sampled_from(
    [*"abcdeventsyncvarhs.()[]{},:?!<>=&|+-*/%'\"\\ 0123456789_", "event", "has(", "//"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(CEL_CHARACTERS, max_size=25).map("".join))
def test_compiling_arbitrary_text_raises_only_expression_errors(source: str) -> None:
    try:
        expression = compile_expression(source)
    except ExpressionError:
        return
    assert isinstance(expression.matches({"event": {"data": {"a": 1}}}), bool)


@settings(max_examples=200, deadline=None)
@given(st.lists(CEL_CHARACTERS, max_size=25).map("".join))
def test_code_inside_a_raw_string_is_not_read_as_code(text: str) -> None:
    text = text.replace("'", "")
    expression = compile_expression(f"r'{text}' == event.data.s")
    assert expression.matches({"event": {"data": {"s": text}}})
    assert not expression.matches({"event": {"data": {"s": text + "-"}}})
