"""The step core: memoized replay, straight-through checkpoints, interrupts, errors, sync shells."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headwater import Headwater
from headwater.errors import NonRetriableError, RetryAfterError, StepError
from headwater.protocol.steps import CallContext, CallRequest, Opcode, StepOp, hash_step_id
from headwater.sdk.context import Context, ContextSync
from headwater.sdk.execution import execute
from headwater.sdk.functions import FunctionDefinition

EVENT = {
    "name": "app/account.created",
    "data": {"accountId": "a1"},
    "user": {},
    "id": "e1",
    "ts": 1,
}


def request(
    steps: dict[str, Any] | None = None, attempt: int = 0, stack: list[str] | None = None
) -> CallRequest:
    steps = steps or {}
    return CallRequest(
        function_id="shop-fn",
        event=EVENT,
        events=[EVENT],
        steps=steps,
        ctx=CallContext(
            run_id="01RUN",
            attempt=attempt,
            max_attempts=3,
            stack=stack if stack is not None else list(steps),
        ),
    )


class Recorder:
    """A checkpoint that records each step as the engine would."""

    def __init__(self) -> None:
        self.ops: list[StepOp] = []

    async def __call__(self, op: StepOp) -> None:
        self.ops.append(op)


def define(handler: Any, retries: int = 2) -> FunctionDefinition:
    hw = Headwater(app_id="shop")
    return hw.function(id="fn", trigger=hw.on_event("app/account.created"), retries=retries)(
        handler
    )


async def test_straight_through_runs_each_step_once_and_returns() -> None:
    calls: list[str] = []

    async def handler(ctx: Context) -> dict[str, Any]:
        a = await ctx.step.run("a", lambda: calls.append("a") or 1)
        b = await ctx.step.run("b", lambda x: calls.append("b") or x + 1, a)
        return {"a": a, "b": b, "account": ctx.event.data["accountId"]}

    recorder = Recorder()
    response = await execute(define(handler), request(), checkpoint=recorder)
    assert response.done and response.output == {"a": 1, "b": 2, "account": "a1"}
    assert calls == ["a", "b"]
    assert [(op.op, op.id, op.data) for op in recorder.ops] == [
        (Opcode.STEP_RUN, hash_step_id("a"), 1),
        (Opcode.STEP_RUN, hash_step_id("b"), 2),
    ]


async def test_memoized_steps_are_not_executed_again() -> None:
    calls: list[str] = []

    async def handler(ctx: Context) -> int:
        a = await ctx.step.run("a", lambda: calls.append("a") or 100)
        b = await ctx.step.run("b", lambda: calls.append("b") or 5)
        return int(a) + int(b)

    response = await execute(
        define(handler), request({hash_step_id("a"): {"data": 7}}), checkpoint=Recorder()
    )
    assert response.output == 12
    assert calls == ["b"]


async def test_without_checkpoint_a_new_step_is_reported_not_continued() -> None:
    async def handler(ctx: Context) -> None:
        await ctx.step.run("a", lambda: {"x": (1, 2)})
        raise AssertionError("must not get here")

    response = await execute(define(handler), request())
    assert [(op.op, op.name, op.data) for op in response.ops] == [
        (Opcode.STEP_RUN, "a", {"x": [1, 2]})
    ]


async def test_repeated_step_names_get_numbered_ids() -> None:
    async def handler(ctx: Context) -> list[int]:
        return [await ctx.step.run("same", lambda i=i: i) for i in range(3)]

    recorder = Recorder()
    response = await execute(define(handler), request(), checkpoint=recorder)
    assert response.output == [0, 1, 2]
    assert [op.id for op in recorder.ops] == [
        hash_step_id("same"),
        hash_step_id("same", 1),
        hash_step_id("same", 2),
    ]
    assert hash_step_id("my-step-id") == "e7d8a2f140845095749d60246ff1110c9d01d76a"  # SPEC §5.1.2


async def test_sleep_interrupts_with_the_wake_time_and_resumes_past_it() -> None:
    async def handler(ctx: Context) -> str:
        await ctx.step.sleep("nap", timedelta(hours=1))
        return "awake"

    before = datetime.now(UTC)
    response = await execute(define(handler), request(), checkpoint=Recorder())
    (op,) = response.ops
    assert op.op is Opcode.SLEEP and op.name == "nap"
    wake = datetime.fromisoformat(str(op.opts["until"]))  # type: ignore[index]
    assert timedelta(minutes=59) < wake - before < timedelta(minutes=61)
    resumed = await execute(
        define(handler), request({hash_step_id("nap"): None}), checkpoint=Recorder()
    )
    assert resumed.output == "awake"


async def test_a_failing_step_reports_step_error_and_its_policy() -> None:
    async def handler(ctx: Context) -> None:
        await ctx.step.run("boom", lambda: 1 / 0)

    response = await execute(define(handler), request(), checkpoint=Recorder())
    (op,) = response.ops
    assert op.op is Opcode.STEP_ERROR and op.error is not None
    assert op.error["name"] == "ZeroDivisionError" and "division by zero" in str(
        op.error["message"]
    )
    assert not response.no_retry

    def never_again() -> None:
        raise NonRetriableError("no")

    async def handler2(ctx: Context) -> None:
        await ctx.step.run("x", never_again)

    assert (await execute(define(handler2), request(), checkpoint=Recorder())).no_retry


async def test_retry_after_sets_the_time() -> None:
    def later() -> None:
        raise RetryAfterError("busy", timedelta(seconds=30))

    async def handler(ctx: Context) -> None:
        await ctx.step.run("x", later)

    response = await execute(define(handler), request(), checkpoint=Recorder())
    assert response.retry_at is not None
    assert 25_000 < response.retry_at - int(datetime.now(UTC).timestamp() * 1000) <= 30_000


async def test_a_failed_step_memo_raises_step_error_that_user_code_can_catch() -> None:
    async def handler(ctx: Context) -> str:
        try:
            await ctx.step.run("boom", lambda: 1)
        except StepError as exc:
            return f"handled {exc.name}: {exc.original_message}"
        return "not raised"

    failed = {hash_step_id("boom"): {"error": {"name": "ValueError", "message": "bad"}}}
    response = await execute(define(handler), request(failed), checkpoint=Recorder())
    assert response.output == "handled ValueError: bad"


async def test_an_uncaught_step_error_fails_the_function_without_retry() -> None:
    async def handler(ctx: Context) -> None:
        await ctx.step.run("boom", lambda: 1)

    failed = {hash_step_id("boom"): {"error": {"name": "ValueError", "message": "bad"}}}
    response = await execute(define(handler), request(failed), checkpoint=Recorder())
    assert response.error is not None and response.error.name == "ValueError" and response.no_retry


async def test_function_errors_are_reported_not_raised() -> None:
    async def handler(ctx: Context) -> None:
        raise KeyError("missing")

    response = await execute(define(handler), request(), checkpoint=Recorder())
    assert (
        response.error is not None and response.error.name == "KeyError" and not response.no_retry
    )
    assert response.error.stack and "KeyError" in response.error.stack


async def test_user_except_exception_cannot_swallow_an_interrupt() -> None:
    async def handler(ctx: Context) -> str:
        try:
            await ctx.step.sleep("nap", 60)
        except Exception:
            return "swallowed"
        return "continued"

    response = await execute(define(handler), request(), checkpoint=Recorder())
    assert response.ops and response.ops[0].op is Opcode.SLEEP


async def test_non_determinism_is_detected() -> None:
    async def handler(ctx: Context) -> None:
        await ctx.step.run("new-path", lambda: 1)

    recorded = {hash_step_id("old-path"): {"data": 1}}
    response = await execute(define(handler), request(recorded), checkpoint=Recorder())
    assert (
        response.error is not None
        and response.error.name == "NonDeterminismError"
        and response.no_retry
    )


async def test_parallel_steps_run_concurrently_and_replay_in_any_order() -> None:
    async def handler(ctx: Context) -> list[str]:
        async def slow(value: str, delay: float) -> str:
            await asyncio.sleep(delay)
            return value

        return list(
            await asyncio.gather(
                ctx.step.run("one", slow, "one", 0.02), ctx.step.run("two", slow, "two", 0.0)
            )
        )

    recorder = Recorder()
    response = await execute(define(handler), request(), checkpoint=recorder)
    assert response.output == ["one", "two"]
    assert [op.name for op in recorder.ops] == ["two", "one"]
    # "two" finished first; replay with only it recorded runs "one" without a false alarm.
    partial = request({hash_step_id("two"): {"data": "two"}})
    again = await execute(define(handler), partial, checkpoint=Recorder())
    assert again.output == ["one", "two"]


async def test_outputs_must_be_json() -> None:
    async def handler(ctx: Context) -> object:
        return object()

    response = await execute(define(handler), request(), checkpoint=Recorder())
    assert response.error is not None and "not JSON-serialisable" in response.error.message


# -- sync functions: the same rules through the blocking shell ------------------------------------


async def test_sync_function_straight_through() -> None:
    calls: list[str] = []

    def handler(ctx: ContextSync) -> dict[str, Any]:
        a = ctx.step.run("a", lambda: calls.append("a") or 1)
        b = ctx.step.run("b", lambda: calls.append("b") or 2)
        return {"sum": a + b, "attempt": ctx.attempt}

    recorder = Recorder()
    response = await execute(define(handler), request(), checkpoint=recorder)
    assert response.output == {"sum": 3, "attempt": 0}
    assert calls == ["a", "b"] and len(recorder.ops) == 2


async def test_sync_function_replays_sleeps_and_fails_steps() -> None:
    def handler(ctx: ContextSync) -> str:
        ctx.step.run("a", lambda: 1)
        ctx.step.sleep("nap", 10)
        ctx.step.run("boom", lambda: 1 / 0)
        return "never"

    first = await execute(define(handler), request(), checkpoint=Recorder())
    assert first.ops[0].op is Opcode.SLEEP
    slept = {hash_step_id("a"): {"data": 1}, hash_step_id("nap"): None}
    second = await execute(define(handler), request(slept), checkpoint=Recorder())
    assert (
        second.ops[0].op is Opcode.STEP_ERROR and second.ops[0].error["name"] == "ZeroDivisionError"
    )  # type: ignore[index]


async def test_sync_function_error() -> None:
    def handler(ctx: ContextSync) -> None:
        raise NonRetriableError("stop")

    response = await execute(define(handler), request(), checkpoint=Recorder())
    assert (
        response.error is not None
        and response.error.name == "NonRetriableError"
        and response.no_retry
    )


def test_definitions_are_validated_when_defined() -> None:
    from headwater.errors import FunctionDefinitionError

    hw = Headwater(app_id="shop")

    async def handler(ctx: Context) -> None:
        return None

    with pytest.raises(FunctionDefinitionError, match="wildcard"):
        hw.function(id="a", trigger=hw.on_event("app*"))(handler)
    with pytest.raises(FunctionDefinitionError, match="retries"):
        hw.function(id="b", trigger=hw.on_event("app/a"), retries=21)(handler)
    with pytest.raises(FunctionDefinitionError, match="5 fields"):
        hw.function(id="c", trigger=hw.on_cron("* * *"))(handler)
    with pytest.raises(FunctionDefinitionError, match="not a valid expression"):
        hw.function(id="d", trigger=hw.on_event("app/a", if_="event.data.x ==="))(handler)
    hw.function(id="ok", triggers=[hw.on_event("app/*"), hw.on_cron("TZ=Europe/Paris 0 9 * * 1")])(
        handler
    )
    with pytest.raises(FunctionDefinitionError, match="already has a function"):
        hw.function(id="ok", trigger=hw.on_event("app/b"))(handler)
