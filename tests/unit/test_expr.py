"""CEL expressions: each claim of the `headwater.expr` docstring, as an example."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from headwater.errors import ExpressionError, HeadwaterError
from headwater.expr import (
    Expression,
    compile_expression,
    match_expression,
    validate_cancel_expression,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)

EVENT = {
    "name": "billing/invoice.paid",
    "id": "01HZX3J6T2Q8W9K7R5M4N3B2A1",
    "ts": 1_717_171_717_171,
    "data": {
        "billingPlan": "pro",
        "amount": 100.5,
        "count": 3,
        "n": 1,
        "name": "Ada Lovelace",
        "email": "ADA@example.com",
        "tags": ["vip", "beta"],
        "lines": [{"sku": "seat", "qty": 5}, {"sku": "addon", "qty": 1}],
        "account": {"id": "acct_1", "owner": {"id": "u_1"}},
        "nothing": None,
        "dashed-key": "yes",
        "encoded": "aGVsbG8=",
        "payload": '{"kind": "refund", "items": [1, 2]}',
        "when": "2024-05-01T00:00:00Z",
    },
}
VARIABLES = {"event": EVENT}


def value(source: str, variables: Mapping[str, object] | None = None) -> object:
    return compile_expression(source).evaluate(
        VARIABLES if variables is None else variables, now=NOW
    )


def matches(source: str, variables: Mapping[str, object] | None = None) -> bool:
    return compile_expression(source).matches(
        VARIABLES if variables is None else variables, now=NOW
    )


def evaluation_error(source: str, variables: Mapping[str, object] | None = None) -> str:
    with pytest.raises(ExpressionError) as caught:
        value(source, variables)
    return str(caught.value)


# --- compiling ------------------------------------------------------------------------------


def test_compiling_twice_returns_the_cached_expression() -> None:
    first = compile_expression("event.data.n == 1")
    assert compile_expression("event.data.n == 1") is first
    assert isinstance(first, Expression)
    assert first.source == "event.data.n == 1"
    assert repr(first) == "Expression('event.data.n == 1')"


def test_malformed_expression_names_the_source_and_the_library_message() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("event.data. == 1")
    error = caught.value
    assert isinstance(error, HeadwaterError)
    assert error.code == "invalid_expression"
    assert error.source == "event.data. == 1"
    assert "'event.data. == 1'" in str(error)
    assert "Syntax error" in str(error)


@pytest.mark.parametrize("source", ["", "event.data.x ===", "'unterminated", "a ? b"])
def test_syntax_errors_are_expression_errors(source: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source)


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("user.id == 1", "user"),
        ("event.data.tags.exists(t, t == other)", "other"),
        ("math.greatest(1, 2) > 1", "math"),
    ],
)
def test_undeclared_variables_are_rejected_at_compile_time(source: str, name: str) -> None:
    with pytest.raises(ExpressionError, match=f"undeclared reference to {name}"):
        compile_expression(source)


@pytest.mark.parametrize(
    ("source", "name"),
    [("event.data.name.lowerAscii() == 'a'", "lowerAscii"), ("bool('true')", "bool")],
)
def test_undeclared_functions_are_rejected_at_compile_time(source: str, name: str) -> None:
    with pytest.raises(ExpressionError, match=f"undeclared function {name}"):
        compile_expression(source)


def test_macro_variables_and_type_names_are_declared() -> None:
    assert matches("event.data.lines.exists(line, line.qty > 4)")
    assert matches("[1, 2].map(x, [3].map(y, x + y)) == [[4], [5]]")
    assert matches("type(event.data.count) == int && type(event.data.name) == string")


# --- missing fields behave as null (Inngest's unknowns) -------------------------------------


def test_missing_field_equals_null() -> None:
    assert value("event.data.missing == null") is True
    assert value("null == event.data.missing") is True


def test_missing_field_is_not_equal_to_a_value() -> None:
    assert value("event.data.missing == 'x'") is False
    assert value("event.data.missing == 0") is False
    assert value("event.data.missing != 'x'") is True


def test_missing_field_is_not_unequal_to_null() -> None:
    assert value("event.data.missing != null") is False


def test_field_below_a_missing_field_is_null() -> None:
    assert value("event.data.a.b.c == null") is True
    assert value("event.data.account.missing.id == null") is True


def test_field_below_a_null_is_null() -> None:
    assert value("event.data.nothing.b == null") is True
    assert value("event.data.nothing == null") is True


def test_ordered_comparison_with_a_missing_intermediate_does_not_match() -> None:
    assert not matches("event.data.a.b.c > 3")
    assert "no such overload" in evaluation_error("event.data.a.b.c > 3").lower()


def test_missing_roots_are_empty() -> None:
    # A trigger expression has no `async`; reading it is reading missing fields.
    assert value("async.data.x == null") is True
    assert value("vars.limit == null") is True


def test_two_missing_fields_compared_in_a_match_are_not_equal() -> None:
    both_missing: dict[str, object] = {"event": {"data": {}}, "async": {"data": {}}}
    assert value(match_expression("data.userId"), both_missing) is False
    assert value("async.name == 'a' || event.data.x == async.data.x", both_missing) is True
    assert not matches("(event.data.x == async.data.x) && true", both_missing)
    assert not matches("event.data.x == async.data.x && async.data.y == null", both_missing)


def test_a_null_field_equals_a_missing_one() -> None:
    variables = {"event": {"data": {"x": None}}, "async": {"data": {}}}
    assert value("event.data.x == async.data.x", variables) is True


def test_match_compares_present_values() -> None:
    waiting = {"event": {"data": {"userId": "u1"}}, "async": {"data": {"userId": "u1"}}}
    other = {"event": {"data": {"userId": "u1"}}, "async": {"data": {"userId": "u2"}}}
    absent = {"event": {"data": {"userId": "u1"}}, "async": {"data": {}}}
    expression = compile_expression(match_expression("data.userId"))
    assert expression.matches(waiting)
    assert not expression.matches(other)
    assert not expression.matches(absent)


def test_has_of_present_and_missing_fields() -> None:
    assert value("has(event.data.name)") is True
    assert value("has(event.data.nothing)") is True  # present, though null
    assert value("has(event.data.missing)") is False
    assert value("has(event.data.a.b)") is False  # `a` missing: false, not an error
    assert value("!has(event.data.a.b) || event.data.a.b == 1") is True


def test_has_wins_over_null_filling_for_the_same_field() -> None:
    assert value("has(event.data.x) ? event.data.x : 'none'") == "none"
    assert value("has(event.data.name) ? event.data.name : 'none'") == "Ada Lovelace"


def test_has_guard_with_a_deeper_read() -> None:
    assert value("has(event.data.a) && event.data.a.b == 1") is False
    assert value("has(event.data.account) && event.data.account.id == 'acct_1'") is True


def test_literal_index_steps_are_paths() -> None:
    assert value("event.data['dashed-key'] == 'yes'") is True
    assert value("event.data['missing-key'] == null") is True
    assert value("event['data'][\"account\"].id == 'acct_1'") is True


def test_strings_and_comments_are_not_paths() -> None:
    assert value("'event.data.x' == 'event.data.x' // event.data.y") is True
    assert value("r'event.data.\\x' != event.data.name") is True


# --- types ----------------------------------------------------------------------------------


def test_equality_across_types_is_false_not_an_error() -> None:
    assert value("event.data.n == '1'") is False
    assert value("event.data.n != '1'") is True
    assert value("event.data.name == 1") is False


def test_int_and_double_compare_numerically() -> None:
    assert value("event.data.amount > 100") is True
    assert value("event.data.count < 3.5") is True
    assert value("event.data.n == 1.0") is True
    assert value("event.data.count in [1.0, 3.0]") is True


def test_ordering_across_types_is_an_error_that_does_not_match() -> None:
    assert "no such overload" in evaluation_error("1 < 'a'").lower()
    assert not matches("1 < 'a'")


def test_errors_are_absorbed_by_logical_operators() -> None:
    assert value("1 < 'a' || true") is True
    assert value("1 < 'a' && false") is False
    assert value("true || 1 < 'a'") is True
    assert not matches("1 < 'a' && true")


# --- standard library -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "event.data.tags.all(t, size(t) >= 3)",
        "event.data.tags.exists(t, t == 'vip')",
        "event.data.tags.exists_one(t, t.startsWith('b'))",
        "event.data.lines.map(l, l.qty) == [5, 1]",
        "event.data.lines.filter(l, l.qty > 1).size() == 1",
        "size(event.data.tags) == 2",
        "'beta' in event.data.tags",
        "'sku' in event.data.lines[0]",
        "event.data.name.contains('Love')",
        "event.data.name.startsWith('Ada')",
        "event.data.name.endsWith('lace')",
        "event.data.email.matches('^[A-Z]+@')",
        "(event.data.count > 2 ? 'many' : 'few') == 'many'",
        "event.data.account.owner.id == 'u_1'",
        "event.data.lines[1].sku == 'addon'",
        "string(event.data.count) == '3'",
        "int('42') == 42 && double(event.data.count) == 3.0",
        "timestamp('2024-01-01T00:00:00Z').getFullYear() == 2024",
        "duration('1h') == duration('60m')",
    ],
)
def test_standard_macros_and_functions(source: str) -> None:
    assert value(source) is True


def test_map_and_filter_return_lists() -> None:
    assert value("event.data.lines.map(l, l.sku)") == ["seat", "addon"]
    assert value("event.data.tags.filter(t, t != 'vip')") == ["beta"]


# --- Inngest's custom functions -------------------------------------------------------------


def test_lowercase_and_uppercase() -> None:
    assert value("lowercase(event.data.email)") == "ada@example.com"
    assert value("uppercase(event.data.name)") == "ADA LOVELACE"
    assert value("lowercase(event.data.count)") == ""  # Inngest's fallback for non-strings


def test_b64decode() -> None:
    assert value("b64decode(event.data.encoded)") == "hello"
    assert value("b64decode('not base64!')") == ""


def test_json_parse() -> None:
    assert value("json_parse(event.data.payload).kind == 'refund'") is True
    assert value("json_parse(event.data.payload).items") == [1, 2]
    assert value("json_parse('not json')") == {}
    assert value("json_parse('[1, 2]')") == {}  # only objects, as Inngest's map decoding


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("'2024-05-01T00:00:00Z'", datetime(2024, 5, 1, tzinfo=UTC)),
        ("'2024-05-01T02:00:00+02:00'", datetime(2024, 5, 1, tzinfo=UTC)),
        ("'2024-05-01T00:00:00'", datetime(2024, 5, 1, tzinfo=UTC)),
        ("'2024-05-01'", datetime(2024, 5, 1, tzinfo=UTC)),
        ("'Wed, 01 May 2024 00:00:00 GMT'", datetime(2024, 5, 1, tzinfo=UTC)),
        ("'Wed May  1 00:00:00 2024'", datetime(2024, 5, 1, tzinfo=UTC)),
        ("1714521600", datetime(2024, 5, 1, tzinfo=UTC)),
        ("1714521600000", datetime(2024, 5, 1, tzinfo=UTC)),
        ("1714521600000000000", datetime(2024, 5, 1, tzinfo=UTC)),
    ],
)
def test_date_parses_strings_and_unix_times(argument: str, expected: datetime) -> None:
    assert value(f"date({argument})") == expected


@pytest.mark.parametrize("argument", ["'garbage'", "12345", "1.5e9", "'Jan  2 15:04:05'", "true"])
def test_date_of_an_unparseable_value_is_null(argument: str) -> None:
    assert value(f"date({argument}) == null") is True
    assert not matches(f"date({argument}) < now()")


def test_date_compares_with_timestamps() -> None:
    assert matches("date(event.data.when) < now()")
    assert matches("date(event.data.when) > date('2024-04-30')")
    assert matches("date(event.ts) > now_minus('1d')")


def test_now_reads_the_given_instant() -> None:
    assert value("now()") == NOW
    later = compile_expression("now()").evaluate({}, now=NOW + timedelta(hours=1))
    assert later == NOW + timedelta(hours=1)


def test_now_defaults_to_the_clock() -> None:
    before = datetime.now(UTC)
    result = compile_expression("now()").evaluate({})
    assert isinstance(result, datetime)
    assert before <= result <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("duration", "delta"),
    [
        ("1h", timedelta(hours=1)),
        ("30m", timedelta(minutes=30)),
        ("10s", timedelta(seconds=10)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("250ms", timedelta(milliseconds=250)),
        ("0", timedelta(0)),
    ],
)
def test_now_plus_and_now_minus(duration: str, delta: timedelta) -> None:
    assert value(f"now_plus('{duration}')") == NOW + delta
    assert value(f"now_minus('{duration}')") == NOW - delta


@pytest.mark.parametrize("duration", ["", "1", "h", "1y", "1 h", "abc"])
def test_now_plus_of_a_bad_duration_is_null(duration: str) -> None:
    assert value(f"now_plus('{duration}') == null") is True


def test_naive_now_is_taken_as_utc() -> None:
    naive = datetime(2024, 6, 1, 12, 0)
    assert compile_expression("now()").evaluate({}, now=naive) == NOW


def test_custom_functions_do_not_log_on_bad_arguments(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="cel"):
        for source in ["lowercase(1)", "b64decode('!')", "json_parse('{')", "date('x')"]:
            value(source)
    assert caplog.records == []


# --- matches() ------------------------------------------------------------------------------


def test_typical_trigger_filter() -> None:
    expression = compile_expression("event.data.billingPlan == 'pro' && event.data.amount > 10")
    assert expression.matches(VARIABLES)
    assert not expression.matches({"event": {"data": {"billingPlan": "free", "amount": 99}}})
    assert not expression.matches({"event": {"data": {}}})
    assert not expression.matches({})


def test_matches_is_false_for_a_non_boolean_result() -> None:
    assert not matches("event.data.name")
    assert not matches("1")
    assert not matches("event.data.missing")


def test_matches_is_false_on_an_evaluation_error() -> None:
    assert not matches("1 / 0 == 1")
    assert not matches("event.data.lines[7].sku == 'x'")
    assert not matches("event.data.count * 1.5 > 1")  # int * double


def test_evaluate_raises_on_an_evaluation_error() -> None:
    assert "division by zero" in evaluation_error("1 / 0")
    assert "no such key" in evaluation_error("event.data.lines[0].missing == 1")


def test_unconvertible_variables_do_not_match() -> None:
    assert not matches("event.data.x == 1", {"event": {"data": {"x": object()}}})


# --- key() ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.data.account.id", "acct_1"),
        ("event.data.count", "3"),
        ("event.data.amount", "100.5"),
        ("double(event.data.count)", "3"),
        ("event.data.count > 1", "true"),
        ("event.data.tags", '["vip","beta"]'),
        ("event.data.account", '{"id":"acct_1","owner":{"id":"u_1"}}'),
        ("event.data.account.id + '-' + event.data.billingPlan", "acct_1-pro"),
        ("date(event.data.when)", "2024-05-01T00:00:00+00:00"),
        ("{2: 'b', 1: 'a'}", '{"1":"a","2":"b"}'),
        ("b'ab'", "YWI="),
        ("duration('90s')", "90s"),
        ("[b'ab', duration('1ms')]", '["YWI=","0.001s"]'),
    ],
)
def test_key_renders_values_stably(source: str, expected: str) -> None:
    assert compile_expression(source).key(VARIABLES, now=NOW) == expected


def test_key_is_none_for_null_missing_or_errors() -> None:
    assert compile_expression("event.data.nothing").key(VARIABLES) is None
    assert compile_expression("event.data.missing").key(VARIABLES) is None
    assert compile_expression("event.data.a.b").key(VARIABLES) is None
    assert compile_expression("event.data.count + 'x'").key(VARIABLES) is None


def test_key_of_equal_maps_does_not_depend_on_key_order() -> None:
    expression = compile_expression("event.data")
    first = expression.key({"event": {"data": {"a": 1, "b": [1.0, {"c": None}]}}})
    second = expression.key({"event": {"data": {"b": [1, {"c": None}], "a": 1.0}}})
    assert first == second == '{"a":1,"b":[1,{"c":null}]}'


# --- known differences from Inngest (pinned so that a change is noticed) --------------------


def test_difference_ordered_comparison_with_missing_or_null_is_an_error() -> None:
    # Inngest: `missing < 5` and `5 > missing` are true; `null < 5` is 0 < 5.
    assert not matches("event.data.missing < 5")
    assert not matches("5 > event.data.missing")
    assert not matches("null < 5")


def test_difference_plus_across_types_is_an_error() -> None:
    # Inngest concatenates: 'a' + 1 == 'a1', and `missing + 'x'` is 'x'.
    assert "string + int" in evaluation_error("'a' + 1")
    assert not matches("event.data.missing + 'x' == 'x'")


def test_difference_logical_operators_need_booleans() -> None:
    # Inngest returns the first truthy operand, JS-style.
    assert compile_expression("event.data.missing || event.data.name").key(VARIABLES) is None
    assert not matches("event.data.name && true")


def test_difference_size_of_missing_is_an_error() -> None:
    # Inngest: size(<missing>) == 0.
    assert not matches("size(event.data.missing) == 0")


def test_difference_missing_equals_missing_outside_a_top_level_conjunct() -> None:
    both_missing: dict[str, object] = {"event": {"data": {}}, "async": {"data": {}}}
    # Inngest: false (two unknowns are never equal) and true (they are never unequal).
    assert value("!(event.data.x == async.data.x)", both_missing) is False
    assert value("event.data.x != async.data.x", both_missing) is False


def test_difference_json_integers_stay_integers() -> None:
    # Go decodes every JSON number as a double, where `count + 1` fails.
    assert value("event.data.count + 1") == 4
    assert value("type(event.data.count) == int") is True


def test_difference_fields_after_a_numeric_index_are_not_null_filled() -> None:
    assert "no such key" in evaluation_error("event.data.lines[0].color == null")
    assert not matches("event.data.lines.exists(l, l.color == null)")


def test_difference_a_map_used_whole_shows_missing_fields_it_is_read_at() -> None:
    variables = {"event": {"data": {"a": 1}}}
    assert value("size(event.data)", variables) == 1
    assert value("size(event.data) == 2 && event.data.zz == null", variables) is True


def test_difference_library_gaps() -> None:
    assert value("size('é')") == 2  # UTF-8 bytes; CEL specifies code points
    with pytest.raises(ExpressionError):
        compile_expression("event.?data")


def test_difference_no_static_type_checking() -> None:
    compile_expression("lowercase(1) == ''")  # Inngest's checker rejects this
    assert matches("lowercase(1) == ''")


# --- match shorthand ------------------------------------------------------------------------


def test_match_expression_builds_the_sdk_comparison() -> None:
    assert match_expression("data.accountId") == "event.data.accountId == async.data.accountId"
    assert match_expression("user_id") == "event.user_id == async.user_id"


@pytest.mark.parametrize(
    "field",
    ["", "data.", ".data", "data..x", "data.x-y", "data[0]", "1data", "data.x == 1", "data.in"],
)
def test_match_expression_rejects_anything_but_a_dotted_path(field: str) -> None:
    with pytest.raises(ExpressionError):
        match_expression(field)


# --- cancellation policy --------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "event.data.userId == async.data.userId",
        "async.data.total > 10 && (async.name == 'a' || !async.data.test)",
        "int(async.data.n) + 1 >= double(event.data.m) * 2",
        "async.data['key'] != null ? async.data.flag : false",
        "date(async.data.when) > now_minus('1d') && duration('1h') > duration('1m')",
        "async.data.list[0] == 'x' && [1, 2] == async.data.pair && {'a': 1} == async.data.m",
    ],
)
def test_cancel_policy_allows_logic_comparisons_selection_and_conversions(source: str) -> None:
    assert validate_cancel_expression(source) is compile_expression(source)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("has(async.data.x)", "macros are not allowed (uses 'has')"),
        ("async.data.l.exists(x, x == 1)", "macros are not allowed (uses 'exists')"),
        ("async.data.l.all(x, x == 1)", "macros are not allowed (uses 'all')"),
        ("async.data.l.map(x, x) == []", "macros are not allowed (uses 'map')"),
        ("async.data.s.startsWith('a')", "method calls are not allowed (uses '.startsWith()')"),
        ("size(async.data.s) > 0", "function calls are not allowed (uses 'size()')"),
        ("lowercase(async.data.s) == 'a'", "function calls are not allowed (uses 'lowercase()')"),
        ("string(async.data.n) == '1'", "function calls are not allowed (uses 'string()')"),
        ("now() > date(async.data.when)", "function calls are not allowed (uses 'now()')"),
        ("async.data.x in [1, 2]", "the 'in' operator is not allowed"),
    ],
)
def test_cancel_policy_rejects(source: str, problem: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        validate_cancel_expression(source)
    assert problem in str(caught.value)
    assert caught.value.source == source


def test_cancel_policy_lists_every_violation() -> None:
    with pytest.raises(ExpressionError) as caught:
        validate_cancel_expression("has(async.a) && size(async.b) > 0")
    assert "uses 'has'" in str(caught.value)
    assert "uses 'size()'" in str(caught.value)


def test_cancel_policy_ignores_names_inside_strings() -> None:
    validate_cancel_expression("async.data.note == 'has(x) in size(y)'")


def test_cancel_policy_still_requires_a_valid_expression() -> None:
    with pytest.raises(ExpressionError, match="cannot compile"):
        validate_cancel_expression("async.data.x ==")
