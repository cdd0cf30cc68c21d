"""The HTTP driver against the recorded wire exchanges of the official SDKs
(tests/fixtures/inngest-sdk/protocol_{py,ts}.json): the request bodies it builds are the
recorded ones, the recorded replies parse into the right CallResponses, and a parallel run is
replayed call by call through a mock transport."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from headwater.engine.drivers.http import (
    MAX_PLANNED_CALLS_IN_FLIGHT,
    HttpDriver,
    UseApi,
    call_url,
    canonical_json,
    parse_reply,
    request_body,
    retry_at_from,
    signature,
)
from headwater.errors import StepLimitError
from headwater.protocol.steps import CallContext, CallRequest, Opcode, StepOp
from headwater.sdk.functions import EventTrigger, define_function

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "inngest-sdk"
SDKS = ["py", "ts"]


def exchanges(sdk: str) -> list[dict[str, Any]]:
    path = FIXTURES / f"protocol_{sdk}.json"
    if not path.exists():
        pytest.skip(f"fixture {path} not present")
    recorded: list[dict[str, Any]] = json.loads(path.read_text())["exchanges"]
    # The first two are the introspection GET and the sync PUT; the rest are calls.
    return [e for e in recorded if e["request"]["method"] == "POST"]


def call_request(body: dict[str, Any], function_id: str = "f") -> CallRequest:
    ctx = body["ctx"]
    return CallRequest(
        function_id=function_id,
        event=body["event"],
        events=body["events"],
        steps=body["steps"],
        ctx=CallContext(
            run_id=ctx["run_id"],
            attempt=ctx["attempt"],
            max_attempts=ctx["max_attempts"],
            stack=ctx["stack"]["stack"],
            disable_immediate_execution=ctx["disable_immediate_execution"],
        ),
    )


def reply_bytes(exchange: dict[str, Any]) -> bytes:
    return orjson.dumps(exchange["response"]["body"])


@pytest.mark.parametrize("sdk", SDKS)
def test_request_bodies_are_the_recorded_ones(sdk: str) -> None:
    for exchange in exchanges(sdk):
        recorded = exchange["request"]["body"]
        built = request_body(
            call_request(recorded),
            disable_immediate_execution=recorded["ctx"]["disable_immediate_execution"],
            # The SDK answered an earlier call of the run unless this is the run's first.
            sdk_answered=not exchange["label"].endswith("#0"),
        )
        # `user` is always sent (the Python SDK requires it), even where the recorder left it out.
        expected = json.loads(json.dumps(recorded))
        for event in [expected["event"], *expected["events"]]:
            event.setdefault("user", {})
        assert built == expected, exchange["label"]
        # Never the fields that switch the TS SDK v4 to checkpointing (PROTOCOL §3.9).
        assert "fn_id" not in built["ctx"] and "qi_id" not in built["ctx"]


def test_events_always_carry_user_and_string_ids() -> None:
    request = CallRequest(
        "f",
        {"name": "a/b", "data": {"x": 1}, "id": "01H", "ts": 5},
        [],
        {},
        CallContext("run", 0, 5),
    )
    body = request_body(request)
    assert body["event"] == {"name": "a/b", "data": {"x": 1}, "user": {}, "id": "01H", "ts": 5}
    assert body["events"] == [body["event"]]
    assert body["use_api"] is False and body["ctx"]["use_api"] is False
    assert body["ctx"]["stack"] == {"stack": [], "current": 0}


@pytest.mark.parametrize("sdk", SDKS)
def test_recorded_replies_parse(sdk: str) -> None:
    for exchange in exchanges(sdk):
        response = exchange["response"]
        parsed = parse_reply(response["status"], response["headers"], reply_bytes(exchange))
        body = response["body"]
        label = exchange["label"]
        if response["status"] == 200:
            assert parsed.done and parsed.output == body, label
        elif response["status"] == 206:
            assert [op.op.value for op in parsed.ops] == [op["op"] for op in body], label
            assert [op.id for op in parsed.ops] == [op["id"] for op in body], label
            for op, raw in zip(parsed.ops, body, strict=True):
                if op.op is Opcode.STEP_RUN:
                    assert op.data == raw["data"], label
                if op.op in (Opcode.STEP_ERROR, Opcode.STEP_FAILED):
                    assert op.error is not None and op.error["message"] == raw["error"]["message"]
        else:
            assert parsed.error is not None, label
            assert parsed.error.message == body["message"], label
            # Both SDKs mark their final errors with X-Inngest-No-Retry: true.
            assert parsed.no_retry, label


@pytest.mark.parametrize("sdk", SDKS)
def test_sleep_and_wait_ops_keep_their_name(sdk: str) -> None:
    ops = {
        op.op: op
        for exchange in exchanges(sdk)
        if exchange["response"]["status"] == 206
        for op in parse_reply(206, exchange["response"]["headers"], reply_bytes(exchange)).ops
    }
    # The sleep's duration (TS "1s") or date (Python) and the awaited event are in `name`.
    assert ops[Opcode.SLEEP].name
    assert ops[Opcode.WAIT_FOR_EVENT].name == "app/x"
    assert ops[Opcode.INVOKE_FUNCTION].opts is not None
    assert ops[Opcode.INVOKE_FUNCTION].opts["function_id"].endswith("-child")


def test_a_2xx_without_the_sdk_header_is_a_retryable_error() -> None:
    parsed = parse_reply(200, {"content-type": "text/html"}, b"<html>proxy</html>")
    assert parsed.error is not None and not parsed.done and not parsed.no_retry


def test_streamed_reply_is_unwrapped() -> None:
    ops = '[{"op":"StepRun","id":"abc","name":"a","data":1}]'
    inner = {"status": 206, "headers": {"X-Inngest-SDK": "js:v4"}, "body": ops}
    parsed = parse_reply(201, {"X-Inngest-SDK": "js:v4"}, b"  \n " + orjson.dumps(inner))
    assert [(op.op, op.id, op.data) for op in parsed.ops] == [(Opcode.STEP_RUN, "abc", 1)]


def test_run_complete_finishes_the_run() -> None:
    body = b'[{"op":"RunComplete","id":"x","data":{"ok":true}}]'
    parsed = parse_reply(206, {"X-Inngest-SDK": "js:v4"}, body)
    assert parsed.done and parsed.output == {"ok": True}


def test_retry_after_is_clamped_and_read_as_seconds_or_date() -> None:
    now = 1_000_000_000_000
    assert retry_at_from("30", now) == now + 30_000
    assert retry_at_from("0", now) == now + 1_000
    assert retry_at_from("9999999", now) == now + 86_400_000
    assert retry_at_from("2001-09-09T01:47:00Z", now) == 1_000_000_020_000
    headers = {"X-Inngest-SDK": "py:v0.5", "Retry-After": "5", "X-Inngest-No-Retry": "false"}
    parsed = parse_reply(500, headers, b'{"name":"RetryAfterError","message":"later"}')
    assert parsed.retry_at is not None and not parsed.no_retry


def test_signature_is_hmac_of_body_and_time_with_the_key_as_text() -> None:
    body = canonical_json({"b": 1, "a": [1.0, "x"]})
    assert body == b'{"a":[1,"x"],"b":1}'
    key = "signkey-test-" + "ab" * 32
    expected = hmac.new(("ab" * 32).encode(), body + b"1700000000", hashlib.sha256).hexdigest()
    assert signature(body, key, 1_700_000_000) == f"t=1700000000&s={expected}"


def test_call_url_sets_fn_and_step_ids() -> None:
    url = call_url("http://h:1/api/inngest?fnId=app-f&stepId=step&x=1", "app-f", "abc")
    assert parse_qs(urlsplit(url).query) == {"x": ["1"], "fnId": ["app-f"], "stepId": ["abc"]}


@pytest.mark.parametrize("sdk", SDKS)
async def test_recorded_parallel_steps_are_run_by_targeted_calls_then_discovered(sdk: str) -> None:
    """Replay the recorded `parallel` run: the first reply plans two steps; the driver runs each
    with a targeted call, checkpoints its result through the engine's callback, and asks for
    what comes next with the steps memoized: the function returns."""
    recorded = [e for e in exchanges(sdk) if e["label"].startswith("parallel")]
    replies = iter(recorded)
    sent: list[tuple[str, dict[str, Any]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        exchange = next(replies)
        step_id = parse_qs(urlsplit(str(request.url)).query)["stepId"][0]
        sent.append((step_id, orjson.loads(request.content)))
        recorded_step = parse_qs(urlsplit(exchange["request"]["url"]).query)["stepId"][0]
        assert step_id == recorded_step, exchange["label"]
        response = exchange["response"]
        return httpx.Response(
            response["status"], headers=response["headers"], content=reply_bytes(exchange)
        )

    slug = parse_qs(urlsplit(recorded[0]["request"]["url"]).query)["fnId"][0]
    app_id = slug.removesuffix("-parallel")
    function = define_function(
        app_id, lambda ctx: None, id="parallel", triggers=[EventTrigger("app/parallel")]
    )
    function = type(function)(**{**_fields(function), "url": recorded[0]["request"]["url"]})
    checkpointed: list[StepOp] = []

    async def checkpoint(op: StepOp) -> None:
        checkpointed.append(op)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    driver = HttpDriver(client=client)
    try:
        response = await driver.call(
            function, call_request(recorded[0]["request"]["body"], slug), checkpoint
        )
    finally:
        await driver.aclose()
    assert response.done and response.output == ["one", "two"]
    assert [(op.name, op.data) for op in checkpointed] == [("p1", "one"), ("p2", "two")]
    assert [step for step, _ in sent] == [
        "step",
        checkpointed[0].id,
        checkpointed[1].id,
        "step",
    ]
    # The last discovery call carries both results, in the reply's order, and ForceStepPlan.
    final = sent[-1][1]
    assert final["steps"] == {op.id: {"data": op.data} for op in checkpointed}
    assert final["ctx"]["stack"] == {"stack": [op.id for op in checkpointed], "current": 2}
    assert final["ctx"]["disable_immediate_execution"] is True


def _fields(function: Any) -> dict[str, Any]:
    return {name: getattr(function, name) for name in function.__slots__}


# -- planned steps: concurrent targeted calls ----------------------------------------------------

SDK_HEADERS = {"X-Inngest-SDK": "js:v4.0.0"}
Targeted = Callable[[str, dict[str, Any]], Awaitable[httpx.Response]]


def ops_reply(*ops: dict[str, Any], status: int = 206) -> httpx.Response:
    return httpx.Response(status, headers=SDK_HEADERS, content=orjson.dumps(list(ops)))


def planned(step_id: str) -> dict[str, Any]:
    return {"op": "StepPlanned", "id": step_id, "name": step_id, "opts": {"type": "step.run"}}


def ran(step_id: str, data: Any) -> dict[str, Any]:
    return {"op": "StepRun", "id": step_id, "name": step_id, "data": data}


async def call_planned(
    first_ops: list[dict[str, Any]],
    targeted: Targeted,
    checkpoint: Callable[[StepOp], Awaitable[None]],
    recorded: dict[str, Any] | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """A run whose discovery call plans `first_ops`: each targeted call is answered by
    `targeted(step_id, body)`, the next discovery call by the function's end. Returns what
    `HttpDriver.call` returned and the bodies of the targeted calls."""
    bodies: list[dict[str, Any]] = []
    discoveries = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal discoveries
        step_id = parse_qs(urlsplit(str(request.url)).query)["stepId"][0]
        body = orjson.loads(request.content)
        if step_id != "step":
            bodies.append(body)
            return await targeted(step_id, body)
        discoveries += 1
        if discoveries == 1:
            return ops_reply(*first_ops)
        return httpx.Response(200, headers=SDK_HEADERS, content=orjson.dumps(sorted(body["steps"])))

    steps = recorded or {}
    event = {"name": "a/b", "data": {}, "id": "01H", "ts": 5}
    request = CallRequest("app-f", event, [event], steps, CallContext("run", 0, 5, list(steps)))
    function = define_function("app", lambda ctx: None, id="f", triggers=[EventTrigger("a/b")])
    function = type(function)(**{**_fields(function), "url": "http://app/api/inngest"})
    driver = HttpDriver(client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    try:
        return await driver.call(function, request, checkpoint), bodies
    finally:
        await driver.aclose()


async def test_planned_steps_run_concurrently_and_are_checkpointed_in_the_replys_order() -> None:
    # Given a reply planning a and c, with b already run between them
    arrived: set[str] = set()
    everyone = asyncio.Event()

    async def targeted(step_id: str, body: dict[str, Any]) -> httpx.Response:
        arrived.add(step_id)
        if arrived == {"a", "c"}:
            everyone.set()
        # Each call answers only once both are in flight: one after the other would time out.
        await asyncio.wait_for(everyone.wait(), 5)
        if step_id == "a":
            await asyncio.sleep(0.05)  # a answers last
        return ops_reply(ran(step_id, step_id.upper()))

    checkpointed: list[StepOp] = []

    async def checkpoint(op: StepOp) -> None:
        checkpointed.append(op)

    # When the driver runs the planned steps
    response, bodies = await call_planned(
        [planned("a"), ran("b", "B"), planned("c")], targeted, checkpoint, {"h0": {"data": 0}}
    )
    # Then both ran at once, were recorded in the reply's order, and the function went on
    assert response.done and response.output == ["a", "b", "c", "h0"]
    assert [(op.id, op.data) for op in checkpointed] == [("a", "A"), ("b", "B"), ("c", "C")]
    # Each step is timed by the call that ran it (b by the discovery call that planned a and c):
    # a and c overlap, and c's end is its own reply's, not a's later one
    times = {op.id: (op.started_at, op.ended_at) for op in checkpointed}
    (a_start, a_end), (b_start, b_end), (c_start, c_end) = times["a"], times["b"], times["c"]
    assert None not in (a_start, a_end, b_start, b_end, c_start, c_end)
    assert b_end <= a_start and b_end <= c_start  # type: ignore[operator]
    assert a_start <= c_end and c_start <= a_end  # type: ignore[operator]  # ms resolution
    assert c_end < a_end  # type: ignore[operator]
    # Each targeted call carried the state from before the reply, and ForceStepPlan.
    for body in bodies:
        assert body["steps"] == {"h0": {"data": 0}}
        assert body["ctx"]["stack"] == {"stack": ["h0"], "current": 1}
        assert body["ctx"]["disable_immediate_execution"] is True


async def test_planned_calls_in_flight_are_bounded() -> None:
    in_flight = most = 0

    async def targeted(step_id: str, body: dict[str, Any]) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return ops_reply(ran(step_id, int(step_id)))

    checkpointed: list[StepOp] = []

    async def checkpoint(op: StepOp) -> None:
        checkpointed.append(op)

    ids = [str(n) for n in range(3 * MAX_PLANNED_CALLS_IN_FLIGHT)]
    response, bodies = await call_planned([planned(i) for i in ids], targeted, checkpoint)
    assert response.done and len(bodies) == len(ids)
    assert most == MAX_PLANNED_CALLS_IN_FLIGHT
    assert [op.id for op in checkpointed] == ids


async def test_siblings_that_ran_are_checkpointed_before_the_first_failure_is_returned() -> None:
    # Given four planned steps: a fails (StepError), b's call fails (HTTP 500), c and d run
    error = {"name": "Error", "message": "a failed", "stack": ""}

    async def targeted(step_id: str, body: dict[str, Any]) -> httpx.Response:
        if step_id == "a":
            await asyncio.sleep(0.05)  # the failure answers last: it is still the one returned
            return ops_reply({"op": "StepError", "id": "a", "name": "a", "error": error})
        if step_id == "b":
            return httpx.Response(500, headers=SDK_HEADERS, content=b'{"message": "b broke"}')
        return ops_reply(ran(step_id, step_id.upper()))

    checkpointed: list[StepOp] = []

    async def checkpoint(op: StepOp) -> None:
        checkpointed.append(op)

    response, _ = await call_planned([planned(i) for i in "abcd"], targeted, checkpoint)
    # Then c and d are recorded (never to run again), and a's StepError goes to the engine
    assert [(op.id, op.data) for op in checkpointed] == [("c", "C"), ("d", "D")]
    assert not response.done and response.error is None
    [op] = response.ops
    assert op.op is Opcode.STEP_ERROR and op.id == "a" and op.error == error


async def test_a_call_that_raises_propagates_after_its_siblings_are_checkpointed() -> None:
    async def targeted(step_id: str, body: dict[str, Any]) -> httpx.Response:
        if step_id == "a":
            raise RuntimeError("the transport broke")
        return ops_reply(ran(step_id, step_id.upper()))

    checkpointed: list[StepOp] = []

    async def checkpoint(op: StepOp) -> None:
        checkpointed.append(op)

    with pytest.raises(RuntimeError, match="the transport broke"):
        await call_planned([planned("a"), planned("b")], targeted, checkpoint)
    assert [op.id for op in checkpointed] == ["b"]


async def test_a_checkpoint_that_raises_propagates() -> None:
    async def targeted(step_id: str, body: dict[str, Any]) -> httpx.Response:
        return ops_reply(ran(step_id, step_id.upper()))

    checkpointed: list[StepOp] = []

    async def checkpoint(op: StepOp) -> None:
        if len(checkpointed) == 1:
            raise StepLimitError("the run has more than 1 steps")
        checkpointed.append(op)

    with pytest.raises(StepLimitError):
        await call_planned([planned("a"), planned("b"), planned("c")], targeted, checkpoint)
    assert [op.id for op in checkpointed] == ["a"]


# -- replies mixing steps with other ops ----------------------------------------------------------


def sleep_op(step_id: str) -> dict[str, Any]:
    return {"op": "Sleep", "id": step_id, "name": "1s", "displayName": step_id}


def wait_op(step_id: str) -> dict[str, Any]:
    return {"op": "WaitForEvent", "id": step_id, "name": "x/y", "opts": {"timeout": "1m"}}


async def call_mixed(
    discoveries: list[httpx.Response], targeted: Targeted | None = None
) -> tuple[Any, list[str], list[dict[str, Any]]]:
    """A run whose discovery calls are answered by `discoveries` in turn, its targeted calls by
    `targeted` (else the step runs and returns its id in upper case). Returns what
    `HttpDriver.call` returned, what happened in order (`call <stepId>`, `checkpoint <id>`),
    and the bodies of the discovery calls."""
    happened: list[str] = []
    bodies: list[dict[str, Any]] = []
    replies = iter(discoveries)

    async def handler(request: httpx.Request) -> httpx.Response:
        step_id = parse_qs(urlsplit(str(request.url)).query)["stepId"][0]
        happened.append(f"call {step_id}")
        body = orjson.loads(request.content)
        if step_id == "step":
            bodies.append(body)
            return next(replies)
        if targeted is not None:
            return await targeted(step_id, body)
        return ops_reply(ran(step_id, step_id.upper()))

    async def checkpoint(op: StepOp) -> None:
        happened.append(f"checkpoint {op.id}")

    event = {"name": "a/b", "data": {}, "id": "01H", "ts": 5}
    request = CallRequest("app-f", event, [event], {}, CallContext("run", 0, 5))
    function = define_function("app", lambda ctx: None, id="f", triggers=[EventTrigger("a/b")])
    function = type(function)(**{**_fields(function), "url": "http://app/api/inngest"})
    driver = HttpDriver(client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    try:
        return await driver.call(function, request, checkpoint), happened, bodies
    finally:
        await driver.aclose()


@pytest.mark.parametrize(
    ("first", "left"),
    [
        # Promise.all([step.run("a"), step.sleep("s", "1s")]), as all three SDKs report it
        ([planned("a"), sleep_op("s")], sleep_op("s")),
        # Promise.race([step.waitForEvent("w"), step.run("a")])
        ([wait_op("w"), planned("a")], wait_op("w")),
    ],
)
async def test_planned_steps_beside_a_sleep_or_wait_run_first_and_the_engine_gets_it_alone(
    first: list[dict[str, Any]], left: dict[str, Any]
) -> None:
    # Given a reply planning step a beside a sleep (or a wait), which the SDK reports again on
    # the next call once a is memoized
    response, happened, bodies = await call_mixed([ops_reply(*first), ops_reply(left)])
    # Then a is run by its targeted call and checkpointed at once, the app is asked again, and
    # the engine gets the sleep (or the wait) alone: never a StepPlanned op
    assert happened == ["call step", "call a", "checkpoint a", "call step"]
    assert response.error is None and not response.done
    [op] = response.ops
    assert (op.op.value, op.id) == (left["op"], left["id"])
    # The call asking again carries a's result, and ForceStepPlan (the reply had several ops)
    assert bodies[1]["steps"] == {"a": {"data": "A"}}
    assert bodies[1]["ctx"]["disable_immediate_execution"] is True


async def test_a_steps_error_beside_a_planned_step_goes_to_the_engine_once_the_step_ran() -> None:
    error = {"name": "Error", "message": "b failed", "stack": ""}
    failing = {"op": "StepError", "id": "b", "name": "b", "error": error}
    response, happened, _ = await call_mixed([ops_reply(planned("a"), failing, sleep_op("s"))])
    assert happened == ["call step", "call a", "checkpoint a"]
    [op] = response.ops
    assert op.op is Opcode.STEP_ERROR and op.id == "b" and op.error == error


async def test_a_reply_of_only_sleeps_and_waits_goes_to_the_engine_as_it_is() -> None:
    # The engine acts on the first; the SDKs report the others again on the next call.
    response, happened, _ = await call_mixed([ops_reply(sleep_op("s1"), wait_op("w"))])
    assert happened == ["call step"]
    assert [(op.op, op.id) for op in response.ops] == [
        (Opcode.SLEEP, "s1"),
        (Opcode.WAIT_FOR_EVENT, "w"),
    ]


def test_use_api_leaves_out_the_steps_then_the_events() -> None:
    event = {"name": "a/b", "data": {"pad": "p" * 100}, "id": "01H", "ts": 5}
    request = CallRequest(
        "f", event, [event], {"h1": {"data": 1}}, CallContext("run", 0, 5, ["h1"])
    )
    steps_only = request_body(request, use_api=UseApi.STEPS)
    assert steps_only["steps"] == {} and steps_only["events"] == [steps_only["event"]]
    assert steps_only["use_api"] is True and steps_only["ctx"]["use_api"] is True
    # The order of the steps still travels: the SDK replays them in it.
    assert steps_only["ctx"]["stack"] == {"stack": ["h1"], "current": 1}
    both = request_body(request, use_api=UseApi.STEPS_AND_EVENTS)
    assert both["steps"] == {} and both["events"] == []
    assert both["event"]["data"] == event["data"]  # the trigger event is always sent
    assert both["use_api"] is True


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (1_000_000, "inline"),  # everything fits
        (900, "steps"),  # without the 600-byte memo it fits
        (300, "steps and events"),  # only the event is left
    ],
)
async def test_the_driver_says_use_api_when_a_call_exceeds_the_limit(
    limit: int, expected: str
) -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(orjson.loads(request.content))
        return httpx.Response(200, headers={"X-Inngest-SDK": "inngest-py:v0.5.19"}, content=b"1")

    event = {"name": "a/b", "data": {"pad": "p" * 150}, "id": "01H", "ts": 5}
    request = CallRequest(
        "app-f", event, [event], {"h1": {"data": "x" * 600}}, CallContext("run", 0, 5, ["h1"])
    )
    function = define_function("app", lambda ctx: None, id="f", triggers=[EventTrigger("a/b")])
    function = type(function)(**{**_fields(function), "url": "http://app/api/inngest"})
    driver = HttpDriver(
        client=httpx.AsyncClient(transport=httpx.MockTransport(handler)), state_limit_bytes=limit
    )
    try:
        response = await driver.call(function, request, None)
    finally:
        await driver.aclose()
    assert response.done and response.output == 1
    [body] = bodies
    shape = "inline" if not body["use_api"] else ("steps" if body["events"] else "steps and events")
    assert shape == expected
    assert body["ctx"]["use_api"] is body["use_api"]


@pytest.mark.parametrize(
    ("reply_key", "age_s", "accepted"),
    [
        ("signkey-prod-" + "ab" * 32, 0, True),  # the signing key
        ("signkey-prod-" + "cd" * 32, 0, True),  # its fallback
        ("signkey-prod-" + "ef" * 32, 0, False),  # another key
        ("signkey-prod-" + "ab" * 32, 301, False),  # older than 5 minutes
        (None, 0, False),  # unsigned
    ],
)
async def test_production_replies_must_be_signed(
    reply_key: str | None, age_s: int, accepted: bool
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = b'{"ok": true}'
        headers = {"X-Inngest-SDK": "inngest-js:v4.24.0"}
        if reply_key is not None:
            headers["X-Inngest-Signature"] = signature(body, reply_key, int(time.time()) - age_s)
        return httpx.Response(200, headers=headers, content=body)

    event = {"name": "a/b", "data": {}, "id": "01H", "ts": 5}
    request = CallRequest("app-f", event, [event], {}, CallContext("run", 0, 5))
    function = define_function("app", lambda ctx: None, id="f", triggers=[EventTrigger("a/b")])
    function = type(function)(**{**_fields(function), "url": "http://app/api/inngest"})
    driver = HttpDriver(
        client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        signing_key="signkey-prod-" + "ab" * 32,
        signing_key_fallback="signkey-prod-" + "cd" * 32,
        server_kind="cloud",
    )
    try:
        response = await driver.call(function, request, None)
    finally:
        await driver.aclose()
    if accepted:
        assert response.done and response.output == {"ok": True}
    else:
        assert response.error is not None and response.error.name == "InvalidSignature"
        assert not response.no_retry


PRODUCTION_KEY = "signkey-prod-" + "ab" * 32
ERROR_BODY = b'{"name":"Error","message":"boom"}'


@pytest.mark.parametrize(
    ("status", "headers", "body", "sign_with"),
    [
        # No X-Inngest-SDK: a proxy, or anyone on the path.
        (500, {"X-Inngest-No-Retry": "true"}, ERROR_BODY, None),
        (429, {"Retry-After": "3600"}, b"slow down", None),
        (503, {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}, b"", None),
        # Claiming to be an SDK's, but unsigned or signed with another key.
        (500, {**SDK_HEADERS, "X-Inngest-No-Retry": "true"}, ERROR_BODY, None),
        (
            400,
            {**SDK_HEADERS, "X-Inngest-No-Retry": "true"},
            ERROR_BODY,
            "signkey-prod-" + "ef" * 32,
        ),
        (503, {**SDK_HEADERS, "Retry-After": "3600"}, ERROR_BODY, None),
        (
            206,
            {**SDK_HEADERS, "X-Inngest-No-Retry": "true", "Retry-After": "3600"},
            orjson.dumps([{"op": "StepError", "id": "s", "error": {"name": "E", "message": "m"}}]),
            None,
        ),
        (206, SDK_HEADERS, orjson.dumps([ran("s", "forged")]), None),
    ],
)
async def test_production_ignores_unverified_error_replies(
    status: int, headers: dict[str, str], body: bytes, sign_with: str | None
) -> None:
    """An unverified reply is a failed call, retried as usual: never final, never pushed back,
    its ops and output never used."""

    def handler(request: httpx.Request) -> httpx.Response:
        signed = dict(headers)
        if sign_with is not None:
            signed["X-Inngest-Signature"] = signature(body, sign_with)
        return httpx.Response(status, headers=signed, content=body)

    response = await _production_call(handler)
    assert not response.no_retry
    assert response.retry_at is None
    assert response.error is not None
    assert response.error.name in {"InvalidSignature", "NotAnSDKResponse"}
    assert not response.ops and not response.done and response.output is None


@pytest.mark.parametrize("signing_key", [PRODUCTION_KEY, "signkey-prod-" + "cd" * 32])
async def test_production_honours_signed_error_replies(signing_key: str) -> None:
    """The official SDKs sign every reply to a signed call, errors too (TS `prepareActionRes`,
    Python `wrap_handler`), so a verified one is acted on as in dev."""
    replies = iter(
        [
            (500, {**SDK_HEADERS, "X-Inngest-No-Retry": "true"}),
            (429, {**SDK_HEADERS, "Retry-After": "30"}),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        status, headers = next(replies)
        headers = {**headers, "X-Inngest-Signature": signature(ERROR_BODY, signing_key)}
        return httpx.Response(status, headers=headers, content=ERROR_BODY)

    final = await _production_call(handler)
    assert final.error is not None and final.error.message == "boom"
    assert final.no_retry
    later = await _production_call(handler)
    assert later.error is not None and not later.no_retry
    assert later.retry_at is not None and later.retry_at >= time.time() * 1000 + 29_000


async def _production_call(handler: Callable[[httpx.Request], httpx.Response]) -> Any:
    event = {"name": "a/b", "data": {}, "id": "01H", "ts": 5}
    request = CallRequest("app-f", event, [event], {}, CallContext("run", 0, 5))
    function = define_function("app", lambda ctx: None, id="f", triggers=[EventTrigger("a/b")])
    function = type(function)(**{**_fields(function), "url": "http://app/api/inngest"})
    driver = HttpDriver(
        client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        signing_key=PRODUCTION_KEY,
        signing_key_fallback="signkey-prod-" + "cd" * 32,
        server_kind="cloud",
    )
    try:
        return await driver.call(function, request, None)
    finally:
        await driver.aclose()
