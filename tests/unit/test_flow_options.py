"""Flow-control options: validation where a function is defined, the FunctionConfig JSON both ways
(official SDK apps declare them so; `serve()` registers ours so), and what a run's flow becomes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from headwater import Batch, Concurrency, Debounce, Headwater, RateLimit, Singleton, Throttle
from headwater.engine.apps import function_from_config
from headwater.engine.flow_planning import plan_flow
from headwater.errors import FunctionDefinitionError
from headwater.flow.rules import GroupKind, SingletonMode
from headwater.sdk.flow_options import FlowOptions, Priority, flow_options_from_wire
from headwater.sdk.functions import CancelOn, Timeouts
from headwater.sdk.registration import function_config

hw = Headwater(app_id="shop")
DAY = 86_400


async def handler(ctx: Any) -> None:
    return None


def config_with(**options: Any) -> dict[str, Any]:
    return {
        "id": "shop-fn",
        "triggers": [{"event": "shop/order"}],
        "steps": {
            "step": {
                "id": "step",
                "name": "step",
                "runtime": {"type": "http", "url": "http://127.0.0.1:3000/api/inngest"},
            }
        },
        **options,
    }


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Concurrency(0), "concurrency limit must be a whole number of at least 1"),
        (lambda: Concurrency(1, scope="org"), "concurrency scope must be 'fn', 'env' or 'account'"),
        (
            lambda: Concurrency(1, key="event.data.("),
            "the concurrency key is not a valid expression",
        ),
        (lambda: Throttle(1, period=0.5), "throttle period must be from 1000ms"),
        (lambda: Throttle(1, period=1, burst=-1), "throttle burst must be 0 or more"),
        (lambda: RateLimit(1, period=2 * 86_400), "rate limit period must be from 1000ms to"),
        (lambda: Debounce(period=0.1), "debounce period must be from 1000ms"),
        # Inngest's documented bounds: debounce period 1 s to 7 d, and its timeout (max wait)
        # and a throttle period no longer
        (
            lambda: Debounce(period=7 * DAY + 1),
            "debounce period must be from 1000ms to 604800000ms, got 604801000ms",
        ),
        (
            lambda: Debounce(period=1, timeout=7 * DAY + 1),
            "debounce timeout must be from 1000ms to 604800000ms",
        ),
        (
            lambda: Throttle(1, period=timedelta(days=7, seconds=1)),
            "throttle period must be from 1000ms to 604800000ms",
        ),
        (lambda: Batch(max_size=0, timeout=1), "batch max_size must be a whole number"),
        (lambda: Singleton(mode="queue"), "singleton mode must be 'skip' or 'cancel'"),  # type: ignore[arg-type]
        (
            lambda: FlowOptions(concurrency=(Concurrency(1), Concurrency(2), Concurrency(3))),
            "at most 2 concurrency limits",
        ),
        (
            lambda: FlowOptions(batch=Batch(2, 1), debounce=Debounce(1)),
            "batching cannot be combined with debounce",
        ),
        (
            lambda: FlowOptions(batch=Batch(2, 1), priority=Priority("1"), singleton=Singleton()),
            "batching cannot be combined with singleton, priority",
        ),
    ],
)
def test_bad_options_fail_where_the_function_is_defined(build: Any, message: str) -> None:
    with pytest.raises(FunctionDefinitionError, match=message):
        build()


def test_seven_days_is_the_longest_debounce_and_throttle_period() -> None:
    assert (
        Debounce(period=timedelta(days=7), timeout=timedelta(days=7)).timeout_ms == 7 * DAY * 1000
    )
    assert Throttle(1, period=7 * DAY).period_ms == 7 * DAY * 1000
    # An official SDK app declaring more is refused at sync, naming the option
    with pytest.raises(FunctionDefinitionError, match="debounce period must be from"):
        function_from_config("shop", config_with(debounce={"period": "8d"}))
    with pytest.raises(FunctionDefinitionError, match="debounce timeout must be from"):
        function_from_config("shop", config_with(debounce={"period": "1m", "timeout": "169h"}))
    with pytest.raises(FunctionDefinitionError, match="throttle period must be from"):
        function_from_config("shop", config_with(throttle={"limit": 1, "period": "8d"}))


def test_batching_cannot_be_combined_with_cancel_on() -> None:
    with pytest.raises(FunctionDefinitionError, match="batching cannot be combined with cancel_on"):
        hw.function(
            id="batched-cancel",
            trigger=hw.on_event("shop/order"),
            batch=Batch(10, 5),
            cancel_on=[hw.cancel_event("shop/order.cancelled", match="data.id")],
        )(handler)


def test_options_round_trip_through_the_function_config() -> None:
    definition = hw.function(
        id="all-options",
        trigger=hw.on_event("shop/all"),
        concurrency=[Concurrency(5, key="event.data.customer"), Concurrency(50, scope="account")],
        throttle=Throttle(10, period=60, burst=2, key="event.data.customer"),
        rate_limit=RateLimit(1, period=3600, key="event.data.customer"),
        debounce=Debounce(period=5, key="event.data.customer", timeout=60),
        priority="event.data.plan == 'pro' ? 120 : 0",
        singleton=Singleton(mode="cancel", key="event.data.customer"),
        idempotency="event.data.orderId",
    )(handler)
    config = function_config(definition, "http://127.0.0.1:8000/api/inngest")
    assert config["concurrency"] == [
        {"limit": 5, "key": "event.data.customer"},
        {"limit": 50, "scope": "account"},
    ]
    assert config["throttle"] == {
        "limit": 10,
        "period": "60000ms",
        "burst": 2,
        "key": "event.data.customer",
    }
    assert config["rateLimit"] == {"limit": 1, "period": "3600000ms", "key": "event.data.customer"}
    assert config["debounce"] == {
        "period": "5000ms",
        "key": "event.data.customer",
        "timeout": "60000ms",
    }
    assert config["priority"] == {"run": "event.data.plan == 'pro' ? 120 : 0"}
    assert config["singleton"] == {"mode": "cancel", "key": "event.data.customer"}
    assert config["idempotency"] == "event.data.orderId"
    parsed = function_from_config("shop", config)
    assert parsed.flow == definition.flow


def test_official_sdk_spellings_are_read() -> None:
    # TS sends camelCase and durations as strings; concurrency may be a number, {limit, key} or
    # {fn, step}.
    ts = flow_options_from_wire(
        config_with(
            concurrency=3,
            batchEvents={"maxSize": 100, "timeout": "5s", "key": "event.data.user_id"},
            rateLimit={"limit": 1, "period": "24h"},
        )
    )
    assert ts.concurrency == (Concurrency(3),)
    assert ts.batch == Batch(100, 5.0, key="event.data.user_id")
    assert ts.rate_limit == RateLimit(1, 86_400.0)
    grouped = flow_options_from_wire(config_with(concurrency={"fn": [{"limit": 2}], "step": []}))
    assert grouped.concurrency == (Concurrency(2),)
    # TS passes `concurrency: {limit, key}` through as the object itself: one limit
    single = flow_options_from_wire(config_with(concurrency={"limit": 1, "key": "event.data.t"}))
    assert single.concurrency == (Concurrency(1, key="event.data.t"),)
    # snake_case spellings (inngest-py 0.5 sends camelCase, below), and a limit of 0: no limit.
    py = flow_options_from_wire(
        config_with(
            batch_events={"max_size": 10, "timeout": "1s"},
            rate_limit={"limit": 2, "period": "1m"},
            concurrency=[{"limit": 0}],
        )
    )
    assert py.batch == Batch(10, 1.0)
    assert py.rate_limit == RateLimit(2, 60.0)
    assert py.concurrency == ()
    # What npm `inngest` 4.24 and PyPI `inngest` 0.5.19 sent for functions of
    # tests/e2e/test_official_sdk_options.py (which checks the live SDKs).
    key = "event.data.customer"
    ts_sent = {
        "concurrency": {"limit": 2, "key": key, "scope": "env"},
        "throttle": {"limit": 10, "period": "1m", "burst": 3, "key": key},
        "rateLimit": {"limit": 4, "period": "1h30m", "key": key},
        "debounce": {"period": "5s", "key": key, "timeout": "2m"},
        "singleton": {"mode": "cancel"},
        "priority": {"run": "event.data.plan == 'pro' ? 120 : -30"},
        "idempotency": "event.data.orderId",
        "timeouts": {"start": "1m30s"},
        # `match: "data.orderId", timeout: 90000` becomes this `if` and timeout.
        "cancel": [
            {
                "event": "app/order.voided",
                "timeout": "1m30s",
                "if": "event.data.orderId == async.data.orderId",
            },
            {"event": "app/all.stopped"},
        ],
    }
    definition = function_from_config("shop", config_with(**ts_sent))
    assert definition.flow == FlowOptions(
        concurrency=(Concurrency(2, key=key, scope="env"),),
        throttle=Throttle(10, 60.0, burst=3, key=key),
        rate_limit=RateLimit(4, 5_400.0, key=key),
        debounce=Debounce(5.0, key=key, timeout=120.0),
        priority=Priority("event.data.plan == 'pro' ? 120 : -30"),
        singleton=Singleton("cancel"),
        idempotency="event.data.orderId",
    )
    assert definition.timeouts == Timeouts(start=90.0)
    assert definition.cancel_on == (
        CancelOn("app/order.voided", if_="event.data.orderId == async.data.orderId", timeout=90.0),
        CancelOn("app/all.stopped"),
    )
    ts_batch = {"maxSize": 50, "timeout": "10s", "key": key, "if": "event.data.batchable == true"}
    assert flow_options_from_wire(config_with(batchEvents=ts_batch)).batch == Batch(
        50, 10.0, key=key, if_="event.data.batchable == true"
    )
    # inngest-py: camelCase names, each duration in its largest whole unit ("90m", "1d"), and
    # the Throttle's default `burst: 1` sent.
    py_sent = {
        "concurrency": [
            {"key": key, "limit": 5},
            {"key": '"exports"', "limit": 10, "scope": "account"},
        ],
        "throttle": {"limit": 1, "period": "1s", "burst": 1},
        "rateLimit": {"key": key, "limit": 4, "period": "90m"},
        "debounce": {"period": "1s"},
        "singleton": {"key": key, "mode": "skip"},
        "timeouts": {"start": "30s", "finish": "2h"},
        "cancel": [{"event": "app/order.voided", "timeout": "90s"}],
    }
    definition = function_from_config("shop", config_with(**py_sent))
    assert definition.flow == FlowOptions(
        concurrency=(Concurrency(5, key=key), Concurrency(10, key='"exports"', scope="account")),
        throttle=Throttle(1, 1.0, burst=1),
        rate_limit=RateLimit(4, 5_400.0, key=key),
        debounce=Debounce(1.0),
        singleton=Singleton("skip", key=key),
    )
    assert definition.timeouts == Timeouts(start=30.0, finish=7_200.0)
    assert definition.cancel_on == (CancelOn("app/order.voided", timeout=90.0),)
    # The failure handler inngest-py registers: empty lists, no options.
    failure = function_from_config("shop", config_with(cancel=[], concurrency=[]))
    assert (failure.flow, failure.cancel_on) == (None, ())


def test_a_bad_wire_option_names_the_field() -> None:
    with pytest.raises(FunctionDefinitionError, match=r"throttle: period: .* is not a duration"):
        function_from_config("shop", config_with(throttle={"limit": 1, "period": "soon"}))
    with pytest.raises(FunctionDefinitionError, match="debounce must be an object"):
        flow_options_from_wire(config_with(debounce="5s"))


EVENT: dict[str, Any] = {
    "name": "shop/all",
    "data": {"customer": "c1", "orderId": 7, "plan": "pro", "flag": True},
    "user": {},
    "id": "",
    "ts": 0,
}


def test_a_runs_flow_holds_evaluated_keys() -> None:
    definition = hw.function(
        id="planned",
        trigger=hw.on_event("shop/all"),
        concurrency=[Concurrency(5, key="event.data.customer"), Concurrency(9, scope="account")],
        throttle=Throttle(10, period=60),
        rate_limit=RateLimit(1, period=60, key="event.data.customer"),
        debounce=Debounce(period=5, key="event.data.customer"),
        priority="event.data.plan == 'pro' ? 120 : -30",
        singleton=Singleton(key="event.data.customer"),
        idempotency="event.data.orderId",
    )(handler)
    planned = plan_flow(definition, EVENT, now=1_000)
    flow = planned.flow
    assert [(s.key, s.limit) for s in flow.concurrency] == [("f:shop-planned:c1", 5), ("a:", 9)]
    assert flow.throttle is not None and flow.throttle.key == "t:shop-planned:"
    assert flow.rate_limit is not None and flow.rate_limit.key == "r:shop-planned:c1"
    assert flow.group is not None and (flow.group.kind, flow.group.key) == (
        GroupKind.DEBOUNCE,
        "c1",
    )
    assert flow.singleton is not None and flow.singleton.mode is SingletonMode.SKIP
    assert flow.priority_ms == 120_000 and planned.delay_ms == 0
    assert planned.idempotency_key == "expr:7"
    free = plan_flow(definition, {**EVENT, "data": {**EVENT["data"], "plan": "free"}}, now=1_000)
    assert free.flow.priority_ms == 0 and free.delay_ms == 30_000  # negative: a delay


def test_the_batch_if_decides_which_events_are_batched() -> None:
    definition = hw.function(
        id="batched-if",
        trigger=hw.on_event("shop/all"),
        batch=Batch(10, 5, if_="event.data.flag == true"),
    )(handler)
    assert plan_flow(definition, EVENT, now=0).flow.group is not None
    unflagged = {**EVENT, "data": {"flag": False}}
    assert plan_flow(definition, unflagged, now=0).flow.group is None


def test_env_and_account_scoped_keys_are_shared_across_functions() -> None:
    # One environment per server: scope env spans every function, as account does, each apart.
    def slots(fn_id: str, scope: Any) -> list[tuple[str, int]]:
        definition = hw.function(
            id=fn_id,
            trigger=hw.on_event("shop/all"),
            concurrency=Concurrency(1, key="event.data.customer", scope=scope),
        )(handler)
        return [(s.key, s.limit) for s in plan_flow(definition, EVENT, now=0).flow.concurrency]

    env = slots("env-a", "env")
    account = slots("acct-a", "account")
    assert env == slots("env-b", "env") == [("e:c1", 1)]
    assert account == slots("acct-b", "account") == [("a:c1", 1)]
    assert slots("fn-a", "fn") != slots("fn-b", "fn")
    # An env limit and an account limit on the same value are two limits, not one
    assert env != account
