"""Every validation rule of an event, with its exact message (client and server share this code)."""

from __future__ import annotations

import pytest

from headwater.errors import EventValidationError
from headwater.protocol.events import (
    MAX_TS,
    MIN_TS,
    Event,
    EventLimits,
    check_event_size,
    normalize_event,
    normalize_events,
)

NOW = 1_700_000_000_000


def error_of(raw: object, index: int = 3) -> str:
    with pytest.raises(EventValidationError) as caught:
        normalize_event(raw, index, NOW)
    assert caught.value.index == index
    return str(caught.value)


def test_minimal_event_gets_defaults() -> None:
    event = normalize_event({"name": "app/a"}, 0, NOW)
    assert (event.name, event.data, event.user, event.id, event.ts, event.v, event.meta) == (
        "app/a",
        {},
        {},
        None,
        NOW,
        None,
        None,
    )


def test_full_event_is_kept() -> None:
    raw = {
        "name": "app/a",
        "data": {"x": [1]},
        "user": {"external_id": "u"},
        "id": "order-1",
        "ts": NOW - 5,
        "v": "2024-01-01.1",
        "meta": {"sessions": []},
    }
    event = normalize_event(raw, 0, NOW)
    assert (event.data, event.user, event.id, event.ts, event.v, event.meta) == (
        {"x": [1]},
        {"external_id": "u"},
        "order-1",
        NOW - 5,
        "2024-01-01.1",
        {"sessions": []},
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("app/a", "event 3: must be a JSON object, not a string"),
        ([{"name": "a"}], "event 3: must be a JSON object, not an array"),
        (None, "event 3: must be a JSON object, not null"),
        ({}, "event 3: name is required"),
        ({"name": None}, "event 3: name is required"),
        ({"name": 5}, "event 3: name must be a string, not a number"),
        ({"name": ""}, "event 3: name must not be empty"),
        ({"name": "   "}, "event 3: name must not be empty"),
        ({"name": "a" * 257}, "event 3: name is 257 characters long; the limit is 256"),
        (
            {"name": "inngest/function.failed"},
            "event 3: name must not start with 'inngest/' (reserved for system events)",
        ),
        (
            {"name": "Inngest/x"},
            "event 3: name must not start with 'inngest/' (reserved for system events)",
        ),
        ({"name": "a", "data": [1]}, "event 3: data must be an object, not an array"),
        ({"name": "a", "data": "x"}, "event 3: data must be an object, not a string"),
        ({"name": "a", "user": 1}, "event 3: user must be an object, not a number"),
        ({"name": "a", "id": 12}, "event 3: id must be a string, not a number"),
        ({"name": "a", "ts": "1700000000000"}, "event 3: ts must be an integer (milliseconds)"),
        ({"name": "a", "ts": 1.7e12}, "event 3: ts must be an integer (milliseconds)"),
        ({"name": "a", "ts": True}, "event 3: ts must be an integer (milliseconds)"),
        (
            {"name": "a", "ts": MIN_TS - 1},
            f"event 3: ts must be between 1980 and 2100 in epoch milliseconds, got {MIN_TS - 1}",
        ),
        (
            {"name": "a", "ts": MAX_TS},
            f"event 3: ts must be between 1980 and 2100 in epoch milliseconds, got {MAX_TS}",
        ),
        ({"name": "a", "v": 2}, "event 3: v must be a string, not a number"),
        ({"name": "a", "meta": []}, "event 3: meta must be an object, not an array"),
    ],
)
def test_each_rule_names_the_event_and_field(raw: object, message: str) -> None:
    assert error_of(raw) == message


def test_name_of_exactly_the_limit_is_accepted() -> None:
    assert normalize_event({"name": "a" * 256}, 0, NOW).name == "a" * 256


def test_configured_name_limit() -> None:
    with pytest.raises(EventValidationError, match="the limit is 10"):
        normalize_event({"name": "a" * 11}, 0, NOW, EventLimits(max_name_length=10))


def test_reserved_data_key_is_removed_and_nulls_default() -> None:
    event = normalize_event(
        {"name": "a", "data": {"_inngest": {"x": 1}, "k": 2}, "user": None, "ts": 0, "id": ""},
        0,
        NOW,
    )
    assert event.data == {"k": 2}
    assert event.user == {}
    assert event.ts == NOW
    assert event.id is None


def test_ts_bounds_are_inclusive_at_1980() -> None:
    assert normalize_event({"name": "a", "ts": MIN_TS}, 0, NOW).ts == MIN_TS


def test_dataclass_events_are_accepted() -> None:
    event = normalize_event(Event(name="app/a", data={"x": 1}, id="k"), 0, NOW)
    assert (event.name, event.data, event.id) == ("app/a", {"x": 1}, "k")


def test_first_bad_event_of_a_batch_is_reported_with_its_index() -> None:
    with pytest.raises(EventValidationError) as caught:
        normalize_events([{"name": "a"}, {"name": "b"}, {"name": "c", "ts": "x"}], NOW)
    assert str(caught.value) == "event 2: ts must be an integer (milliseconds)"
    assert (caught.value.index, caught.value.field) == (2, "ts")


def test_event_size_limit() -> None:
    limits = EventLimits(max_event_bytes=100)
    check_event_size(0, 100, limits)
    with pytest.raises(EventValidationError) as caught:
        check_event_size(4, 101, limits)
    assert str(caught.value) == "event 4: is 101 bytes; the limit is 100 bytes per event"


@pytest.mark.parametrize("field", ["name", "id", "v"])
def test_nul_characters_are_refused_in_text_fields(field: str) -> None:
    raw = {"name": "app/a", field: "a\x00b"}
    assert error_of(raw) == f"event 3: {field} must not contain the NUL character (\\u0000)"


def test_nul_detection_in_json_values() -> None:
    import orjson

    from headwater.protocol.events import encoded_has_nul

    for value in [{"a": "x\x00"}, {"k\x00": 1}, {"a": [1, {"b": "\x00"}]}]:
        assert encoded_has_nul(orjson.dumps(value), value)
    # A literal backslash-u-0000 text is not a NUL character.
    literal = {"a": "\\u0000"}
    assert not encoded_has_nul(orjson.dumps(literal), literal)
    assert not encoded_has_nul(orjson.dumps({"a": "plain"}), {"a": "plain"})
