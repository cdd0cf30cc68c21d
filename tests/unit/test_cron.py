"""Cron schedules as pure functions: parsing, the next/latest tick (UTC, time zones, DST), the event."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from headwater import Headwater
from headwater.engine.cron import (
    CRON_EVENT,
    CronSpec,
    SecondsCronTrigger,
    latest_tick,
    next_tick,
    parse_cron,
    rfc3339,
    tick_event_id,
    timer_event,
)
from headwater.errors import FunctionDefinitionError
from headwater.protocol.ids import ulid_millis
from headwater.types import Millis

MINUTE = 60_000


def ms(text: str) -> Millis:
    """Epoch ms of an ISO time with an offset, e.g. "2024-03-31T01:00:00Z"."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def ticks(spec: str | CronSpec, start: str, count: int) -> list[str]:
    """The `count` ticks after `start`, as RFC 3339 UTC strings."""
    parsed = parse_cron(spec) if isinstance(spec, str) else spec
    at, out = ms(start), []
    for _ in range(count):
        found = next_tick(parsed, at)
        assert found is not None
        out.append(rfc3339(found))
        at = found
    return out


# -- parsing -----------------------------------------------------------------------------------


def test_a_spec_without_prefix_is_read_in_utc() -> None:
    spec = parse_cron("0 9 * * 1")
    assert spec.zone is UTC and spec.expression == "0 9 * * 1" and spec.source == "0 9 * * 1"
    assert ticks(spec, "2024-05-01T00:00:00Z", 2) == [
        "2024-05-06T09:00:00Z",
        "2024-05-13T09:00:00Z",
    ]


def test_the_tz_prefix_names_the_zone_and_the_source_is_kept_as_written() -> None:
    spec = parse_cron("TZ=Europe/Paris 0 9 * * *")
    assert spec.zone == ZoneInfo("Europe/Paris") and spec.expression == "0 9 * * *"
    assert spec.source == "TZ=Europe/Paris 0 9 * * *"
    # 09:00 in Paris is 08:00Z in winter (CET) and 07:00Z in summer (CEST).
    assert ticks(spec, "2024-01-15T00:00:00Z", 1) == ["2024-01-15T08:00:00Z"]
    assert ticks(spec, "2024-07-15T00:00:00Z", 1) == ["2024-07-15T07:00:00Z"]
    assert ticks("TZ=America/New_York 0 9 * * *", "2024-07-15T00:00:00Z", 1) == [
        "2024-07-15T13:00:00Z"
    ]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("TZ=Mars/Olympus 0 9 * * *", "unknown time zone"),
        ("0 9 * *", "must have 5 fields"),
        ("0 9 * * * *", "must have 5 fields"),
        ("61 9 * * *", "not a valid cron expression"),
        ("R 9 * * *", "random"),
        ("0,R 9 * * *", "random"),
    ],
)
def test_bad_specs_are_refused_when_parsed(spec: str, problem: str) -> None:
    with pytest.raises(FunctionDefinitionError, match=problem):
        parse_cron(spec)


def test_month_and_weekday_names_are_not_mistaken_for_random_fields() -> None:
    assert ticks("0 9 * MAR FRI", "2024-01-01T00:00:00Z", 1) == ["2024-03-01T09:00:00Z"]


@pytest.mark.parametrize(
    "spec", ["* * *", "* * * * * *", "TZ=Nowhere/Else 0 9 * * *", "0 25 * * *", "@daily"]
)
def test_the_sdk_refuses_bad_specs_at_definition_time(spec: str) -> None:
    hw = Headwater(app_id="clock")
    with pytest.raises(FunctionDefinitionError):
        hw.on_cron(spec)


def test_seconds_schedules_are_internal_six_field_triggers() -> None:
    trigger = SecondsCronTrigger("TZ=Europe/Paris */20 * * * * *")
    spec = parse_cron(trigger.cron, seconds=True)
    assert spec.seconds and spec.zone == ZoneInfo("Europe/Paris")
    assert ticks(spec, "2024-05-01T10:00:05Z", 3) == [
        "2024-05-01T10:00:20Z",
        "2024-05-01T10:00:40Z",
        "2024-05-01T10:01:00Z",
    ]
    with pytest.raises(FunctionDefinitionError, match="must have 6 fields"):
        SecondsCronTrigger("* * * * *")
    with pytest.raises(FunctionDefinitionError, match="must have 5 fields"):
        parse_cron("*/20 * * * * *")  # the user-facing form stays at five


# -- next and latest ---------------------------------------------------------------------------


def test_next_is_strictly_after_and_latest_is_at_or_before() -> None:
    spec = parse_cron("*/15 * * * *")
    assert next_tick(spec, ms("2024-05-01T10:07:00Z")) == ms("2024-05-01T10:15:00Z")
    assert next_tick(spec, ms("2024-05-01T10:15:00Z")) == ms("2024-05-01T10:30:00Z")
    assert latest_tick(spec, ms("2024-05-01T10:15:00Z")) == ms("2024-05-01T10:15:00Z")
    assert latest_tick(spec, ms("2024-05-01T10:14:59.999+00:00")) == ms("2024-05-01T10:00:00Z")


def test_a_schedule_that_never_matches_has_no_tick() -> None:
    spec = parse_cron("0 0 31 2 *")  # February 31st
    assert next_tick(spec, ms("2024-01-01T00:00:00Z")) is None
    assert latest_tick(spec, ms("2024-01-01T00:00:00Z")) is None


def test_the_local_time_zone_of_the_host_plays_no_part(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    expected = ticks("TZ=Europe/Paris */30 * * * *", "2024-10-26T23:45:00Z", 6)
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        assert ticks("TZ=Europe/Paris */30 * * * *", "2024-10-26T23:45:00Z", 6) == expected
        assert ticks("*/30 * * * *", "2024-03-10T09:45:00Z", 2) == [
            "2024-03-10T10:00:00Z",
            "2024-03-10T10:30:00Z",
        ]
    finally:
        monkeypatch.undo()
        time.tzset()


# -- DST: Paris moves 02:00 CET -> 03:00 CEST on 2024-03-31 (01:00Z), 03:00 CEST -> 02:00 CET on
# 2024-10-27 (01:00Z).


def test_spring_forward_a_skipped_daily_time_fires_when_the_gap_ends() -> None:
    assert ticks("TZ=Europe/Paris 30 2 * * *", "2024-03-29T12:00:00Z", 3) == [
        "2024-03-30T01:30:00Z",  # 02:30 CET
        "2024-03-31T01:00:00Z",  # 02:30 does not exist: 03:00 CEST, the end of the gap
        "2024-04-01T00:30:00Z",  # 02:30 CEST
    ]


def test_spring_forward_skipped_frequent_times_collapse_into_one_tick() -> None:
    assert ticks("TZ=Europe/Paris */15 * * * *", "2024-03-31T00:30:00Z", 4) == [
        "2024-03-31T00:45:00Z",  # 01:45 CET
        "2024-03-31T01:00:00Z",  # 02:00..02:45 do not exist; 03:00 CEST once, no burst
        "2024-03-31T01:15:00Z",
        "2024-03-31T01:30:00Z",
    ]


def test_fall_back_a_repeated_daily_time_fires_once() -> None:
    assert ticks("TZ=Europe/Paris 30 2 * * *", "2024-10-26T12:00:00Z", 2) == [
        "2024-10-27T00:30:00Z",  # 02:30 CEST; not again at 02:30 CET (01:30Z)
        "2024-10-28T01:30:00Z",  # 02:30 CET
    ]


def test_fall_back_frequent_jobs_keep_their_cadence_through_the_repeated_hour() -> None:
    assert ticks("TZ=Europe/Paris */30 * * * *", "2024-10-26T23:45:00Z", 6) == [
        "2024-10-27T00:00:00Z",  # 02:00 CEST
        "2024-10-27T00:30:00Z",  # 02:30 CEST
        "2024-10-27T01:00:00Z",  # 02:00 CET
        "2024-10-27T01:30:00Z",  # 02:30 CET
        "2024-10-27T02:00:00Z",  # 03:00 CET
        "2024-10-27T02:30:00Z",
    ]


def test_fall_back_fixed_hours_fire_at_the_first_occurrence_only() -> None:
    assert ticks("TZ=Europe/Paris 0 */2 * * *", "2024-10-26T21:45:00Z", 3) == [
        "2024-10-26T22:00:00Z",  # 00:00 CEST
        "2024-10-27T00:00:00Z",  # 02:00 CEST (02:00 CET is not a second run)
        "2024-10-27T03:00:00Z",  # 04:00 CET
    ]


def test_a_whole_skipped_day_fires_once_when_it_ends() -> None:
    # Samoa skipped 2011-12-30: 23:59:59 on the 29th (-10) was followed by 00:00 on the 31st (+14).
    assert ticks("TZ=Pacific/Apia 0 12 * * *", "2011-12-28T12:00:00Z", 3) == [
        "2011-12-28T22:00:00Z",  # 12:00 on the 28th, -10
        "2011-12-29T22:00:00Z",  # 12:00 on the 29th, -10
        "2011-12-30T10:00:00Z",  # the 30th never happened: 00:00 on the 31st, +14
    ]
    assert ticks("TZ=Pacific/Apia 0 12 * * *", "2011-12-30T10:00:00Z", 1) == [
        "2011-12-30T22:00:00Z"  # 12:00 on the 31st, +14
    ]


@pytest.mark.parametrize(
    ("spec", "start"),
    [
        ("TZ=Europe/Paris */15 * * * *", "2024-03-30T23:00:00Z"),
        ("TZ=Europe/Paris */15 * * * *", "2024-10-26T23:00:00Z"),
        ("TZ=Europe/Paris 30 2 * * *", "2024-03-25T00:00:00Z"),
        ("TZ=Europe/Paris 30 2 * * *", "2024-10-20T00:00:00Z"),
        ("TZ=Europe/Paris 0 */2 * * *", "2024-10-26T12:00:00Z"),
        ("TZ=America/New_York 0 1-3 * * *", "2024-11-02T12:00:00Z"),
        ("TZ=Australia/Lord_Howe */10 * * * *", "2024-04-06T14:00:00Z"),  # a 30-minute shift
        ("7 * * * *", "2024-05-01T00:00:00Z"),
    ],
)
def test_next_and_latest_agree_across_transitions(spec: str, start: str) -> None:
    # The ticks walked forward from `start`; then at probes across the window (and around each
    # tick), `latest` is the last of them at or before the probe and `next` the first after it:
    # both directions see one schedule.
    parsed = parse_cron(spec)
    begin = ms(start)
    walked: list[Millis] = []
    at = begin
    while at < begin + 30 * 60 * MINUTE:
        found = next_tick(parsed, at)
        assert found is not None and found > at
        walked.append(found)
        at = found
    probes = set(range(begin, walked[-1], 7 * MINUTE))  # a prime step: every minute offset
    probes |= {tick + delta for tick in walked for delta in (-1, 0, 1)}  # each tick's edges
    for probe in sorted(probes):
        before = [t for t in walked if t <= probe]
        after = [t for t in walked if t > probe]
        if before:
            assert latest_tick(parsed, probe) == before[-1], rfc3339(probe)
        if after and probe >= begin:
            assert next_tick(parsed, probe) == after[0], rfc3339(probe)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/Sao_Paulo", "Asia/Kolkata"])
def test_away_from_transitions_a_tick_is_a_matching_wall_time(zone: str) -> None:
    # An independent oracle: every minute whose local wall time croniter says matches is a tick.
    spec = parse_cron(f"TZ={zone} */7 9-11 * * 1-5")
    begin = ms("2024-06-03T00:00:00Z")
    expected = []
    for minute in range(begin, begin + 1440 * MINUTE, MINUTE):
        wall = datetime.fromtimestamp(minute / 1000, ZoneInfo(zone)).replace(tzinfo=None)
        if croniter.match(spec.expression, wall):
            expected.append(rfc3339(minute))
    assert ticks(spec, "2024-06-02T23:59:00Z", len(expected)) == expected


# -- the event ---------------------------------------------------------------------------------


def test_the_timer_event_carries_the_spec_and_rfc3339_times() -> None:
    spec = parse_cron("TZ=Europe/Paris 0 9 * * *")
    tick = ms("2024-05-01T07:00:00Z")
    event = timer_event(spec, tick, tick + 1234)
    assert event.name == CRON_EVENT == "inngest/scheduled.timer"
    assert event.data == {
        "cron": "TZ=Europe/Paris 0 9 * * *",
        "scheduledAt": "2024-05-01T07:00:00Z",
        "fireAt": "2024-05-01T07:00:00Z",
    }
    assert event.id == "2024-05-01T07:00:00Z"  # Inngest's cron event id: the tick in RFC 3339
    assert event.ts == tick + 1234 and event.user == {}
    assert rfc3339(tick + 5) == "2024-05-01T07:00:00.005Z"


def test_a_ticks_event_id_is_the_same_everywhere_and_unique_per_function_and_tick() -> None:
    tick = ms("2024-05-01T07:00:00Z")
    first = tick_event_id("clock-tick", tick)
    assert tick_event_id("clock-tick", tick) == first  # every process derives the same id
    assert ulid_millis(first) == tick  # it sorts with the tick
    assert tick_event_id("clock-other", tick) != first
    assert tick_event_id("clock-tick", tick + 60_000) != first
    assert ulid_millis(tick_event_id("clock-tick", tick + 60_000)) == tick + 60_000


def test_utc_ticks_do_not_depend_on_the_offset_search_window() -> None:
    # A yearly schedule: the next tick is months away, far outside the one-day offset window.
    spec = parse_cron("TZ=Europe/Paris 0 0 1 1 *")
    assert next_tick(spec, ms("2024-07-01T00:00:00Z")) == ms("2024-12-31T23:00:00Z")
    assert latest_tick(spec, ms("2024-07-01T00:00:00Z")) == ms("2023-12-31T23:00:00Z")
