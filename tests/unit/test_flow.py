"""The pure flow-control decisions (flow/): each promise checked without a clock or a database."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from headwater.flow.admission import Candidate, admit, in_flight_counts
from headwater.flow.grouping import OpenGroup, on_event
from headwater.flow.priority import MAX_PRIORITY_S, priority_shift
from headwater.flow.rate_limit import rate_limit
from headwater.flow.rules import (
    ConcurrencySlot,
    GroupKind,
    GroupRule,
    SingletonMode,
    ThrottleRule,
)
from headwater.flow.singleton import SingletonDecision, singleton
from headwater.flow.throttle import throttle


def test_throttle_admits_limit_plus_burst_at_once_then_one_per_interval() -> None:
    tat = None
    allowed = []
    for _ in range(6):
        decision = throttle(tat, 0, limit=2, period_ms=6_000, burst=1)
        allowed.append(decision.allowed)
        if decision.allowed:
            tat = decision.tat
    assert allowed == [True, True, True, False, False, False]
    refused = throttle(tat, 0, 2, 6_000, 1)
    assert refused.retry_at == 3_000  # one start every period / limit
    assert throttle(tat, 3_000, 2, 6_000, 1).allowed


@given(
    limit=st.integers(1, 5),
    burst=st.integers(0, 3),
    period=st.integers(100, 10_000),
    arrivals=st.lists(st.integers(0, 50_000), min_size=1, max_size=60),
)
def test_throttle_never_starts_faster_than_gcra_allows(
    limit: int, burst: int, period: int, arrivals: list[int]
) -> None:
    # Each arrival retries at its retry time until admitted (FIFO queue semantics).
    tat = None
    starts: list[int] = []
    now = 0
    for arrival in sorted(arrivals):
        now = max(now, arrival)
        while True:
            decision = throttle(tat, now, limit, period, burst)
            if decision.allowed:
                tat = decision.tat
                starts.append(now)
                break
            assert decision.retry_at > now
            now = decision.retry_at
    interval = period / limit
    # The promise: in any window of length W, at most limit + burst + W / interval starts.
    for i, first in enumerate(starts):
        for j in range(i, len(starts)):
            window = starts[j] - first
            assert j - i + 1 <= limit + burst + window / interval + 1e-9


@given(
    limit=st.integers(1, 6),
    period=st.integers(10, 5_000),
    times=st.lists(st.integers(0, 20_000), max_size=80),
)
def test_rate_limit_never_admits_more_than_limit_in_any_window(
    limit: int, period: int, times: list[int]
) -> None:
    state: tuple[int, ...] = ()
    admitted: list[int] = []
    for now in sorted(times):
        decision = rate_limit(state, now, limit, period)
        state = decision.window
        if decision.allowed:
            admitted.append(now)
        assert len(state) <= limit
    for i, first in enumerate(admitted):
        in_window = [t for t in admitted[i:] if t < first + period]
        assert len(in_window) <= limit


def test_rate_limit_admits_again_once_the_window_moves_on() -> None:
    first = rate_limit((), 0, 1, 1_000)
    assert first.allowed
    assert not rate_limit(first.window, 999, 1, 1_000).allowed
    assert rate_limit(first.window, 1_000, 1, 1_000).allowed


def test_debounce_moves_the_start_to_period_after_the_last_event_up_to_the_timeout() -> None:
    rule = GroupRule(GroupKind.DEBOUNCE, "k", period_ms=1_000, timeout_ms=2_500)
    first = on_event(rule, None, 0)
    assert (first.join, first.due_at) == (False, 1_000)
    group = OpenGroup("run", first_at=0, size=1)
    assert on_event(rule, group, 800).due_at == 1_800
    assert on_event(rule, group, 2_000).due_at == 2_500  # capped by the timeout
    assert on_event(rule, group, 800).join


def test_batch_closes_when_full_and_is_due_at_the_timeout_otherwise() -> None:
    rule = GroupRule(GroupKind.BATCH, "k", timeout_ms=5_000, max_size=3)
    first = on_event(rule, None, 100)
    assert (first.join, first.due_at, first.close) == (False, 5_100, False)
    second = on_event(rule, OpenGroup("run", 100, 1), 200)
    assert (second.join, second.due_at, second.close) == (True, 5_100, False)
    third = on_event(rule, OpenGroup("run", 100, 2), 300)
    assert (third.join, third.due_at, third.close) == (True, 300, True)
    single = on_event(GroupRule(GroupKind.BATCH, "k", timeout_ms=5_000, max_size=1), None, 7)
    assert (single.due_at, single.close) == (7, True)


def test_singleton_decisions() -> None:
    assert singleton(False, SingletonMode.SKIP) is SingletonDecision.TAKE
    assert singleton(True, SingletonMode.SKIP) is SingletonDecision.SKIP
    assert singleton(True, SingletonMode.CANCEL) is SingletonDecision.REPLACE


def test_priority_is_clamped_and_negative_factors_delay() -> None:
    assert priority_shift(120).ahead_ms == 120_000
    assert priority_shift(10**9).ahead_ms == MAX_PRIORITY_S * 1000
    assert priority_shift(-30).delay_ms == 30_000
    assert priority_shift(-(10**9)).delay_ms == MAX_PRIORITY_S * 1000
    assert priority_shift("high") == priority_shift(None) == priority_shift(0)
    assert priority_shift(True).ahead_ms == 0


def _c(item: str, *keys: str, limit: int = 2, rule: ThrottleRule | None = None) -> Candidate:
    return Candidate(item, f"run-{item}", tuple(ConcurrencySlot(k, limit) for k in keys), rule)


def test_admission_respects_limits_and_passes_over_saturated_keys() -> None:
    in_flight = in_flight_counts([("a", None), ("a", None)])
    assert in_flight == Counter({"a": 2})
    candidates = [_c("1", "a"), _c("2", "a"), _c("3", "b"), _c("4", "b"), _c("5", "b")]
    admission = admit(candidates, in_flight, {}, now=0, want=10)
    assert [c.item_id for c in admission.taken] == ["3", "4"]
    # Held back by the key at its limit, to be set aside until it has a free slot
    assert admission.blocked == {
        "1": ConcurrencySlot("a", 2),
        "2": ConcurrencySlot("a", 2),
        "5": ConcurrencySlot("b", 2),
    }
    assert in_flight == Counter({"a": 2, "b": 2})


def test_admission_checks_every_slot_and_stops_at_want() -> None:
    candidates = [_c("1", "a", "acct"), _c("2", "b", "acct"), _c("3", "c", "acct")]
    admission = admit(candidates, Counter(), {}, now=0, want=10)
    assert [c.item_id for c in admission.taken] == ["1", "2"]  # acct allows 2
    assert [c.item_id for c in admit(candidates, Counter(), {}, 0, want=1).taken] == ["1"]


def test_admission_throttles_starts_and_overdue_items_bypass_limits() -> None:
    rule = ThrottleRule("t", limit=1, period_ms=1_000)
    admission = admit([_c("1", rule=rule), _c("2", rule=rule)], Counter(), {}, now=0, want=10)
    assert [c.item_id for c in admission.taken] == ["1"]
    assert admission.delayed == {"2": 1_000}
    assert admission.throttle_tats == {"t": 1_000}
    overdue = Candidate("9", "run-9", (ConcurrencySlot("a", 1),), None, overdue=True)
    taken = admit([overdue], Counter({"a": 1}), {}, now=0, want=1).taken
    assert taken == [overdue]
