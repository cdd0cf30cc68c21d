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
from headwater.sdk.execution import Interrupt, execute
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


# -- the planner hook: consulted before every new step, by both shells ----------------------------


class Planner:
    """A StepPlanner that records what it is asked, and lets every step go on (or refuses)."""

    def __init__(self, refuse: bool = False) -> None:
        self.seen: list[tuple[Opcode, str, str, bool]] = []
        self.refuse = refuse

    async def reach(self, op: StepOp, *, runnable: bool) -> None:
        self.seen.append((op.op, op.id, op.name, runnable))
        if self.refuse:
            raise Interrupt(StepOp(Opcode.STEP_PLANNED, op.id, op.name, opts={"type": "x"}))


STOPPING = {
    "sleep": (Opcode.SLEEP, "nap"),
    "wait": (Opcode.WAIT_FOR_EVENT, "app/reply"),
    "invoke": (Opcode.INVOKE_FUNCTION, "child"),
}


def stepping_handler(kind: str, calls: list[str], *, sync: bool) -> Any:
    """A handler with a memoized step "a", a new step "b", then a new step of `kind` ("nap",
    "reply" or "child")."""

    if sync:

        def sync_handler(ctx: ContextSync) -> None:
            ctx.step.run("a", lambda: calls.append("a"))
            ctx.step.run("b", lambda: calls.append("b"))
            if kind == "sleep":
                ctx.step.sleep("nap", 60)
            elif kind == "wait":
                ctx.step.wait_for_event("reply", event="app/reply", timeout=60)
            else:
                ctx.step.invoke("child", function="shop-child")

        return sync_handler

    async def async_handler(ctx: Context) -> None:
        await ctx.step.run("a", lambda: calls.append("a"))
        await ctx.step.run("b", lambda: calls.append("b"))
        if kind == "sleep":
            await ctx.step.sleep("nap", 60)
        elif kind == "wait":
            await ctx.step.wait_for_event("reply", event="app/reply", timeout=60)
        else:
            await ctx.step.invoke("child", function="shop-child")

    return async_handler


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("kind", list(STOPPING))
async def test_the_planner_is_asked_before_each_new_step(kind: str, sync: bool) -> None:
    # Given a call where step "a" is recorded
    calls: list[str] = []
    planner = Planner()
    recorded = request({hash_step_id("a"): {"data": None}})

    # When the function runs with a planner that lets every step go on
    response = await execute(
        define(stepping_handler(kind, calls, sync=sync)),
        recorded,
        checkpoint=Recorder(),
        planner=planner,
    )

    # Then the planner saw each new step (not "a") as the op the core reports for it
    opcode, name = STOPPING[kind]
    stop_id = hash_step_id({"sleep": "nap", "wait": "reply", "invoke": "child"}[kind])
    assert planner.seen == [
        (Opcode.STEP_RUN, hash_step_id("b"), "b", True),
        (opcode, stop_id, name, False),
    ]
    assert calls == ["b"]
    assert [(op.op, op.id) for op in response.ops] == [(opcode, stop_id)]


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_a_planner_can_stop_the_call_before_a_step_runs(sync: bool) -> None:
    calls: list[str] = []
    recorder = Recorder()
    response = await execute(
        define(stepping_handler("sleep", calls, sync=sync)),
        request(),
        checkpoint=recorder,
        planner=Planner(refuse=True),
    )
    assert [(op.op, op.id) for op in response.ops] == [(Opcode.STEP_PLANNED, hash_step_id("a"))]
    assert calls == [] and recorder.ops == []


async def test_without_a_planner_in_process_runs_go_straight_through() -> None:
    calls: list[str] = []
    recorder = Recorder()
    response = await execute(
        define(stepping_handler("sleep", calls, sync=False)), request(), checkpoint=recorder
    )
    assert calls == ["a", "b"] and [op.name for op in recorder.ops] == ["a", "b"]
    assert response.ops[0].op is Opcode.SLEEP


# -- step.wait_for_event memos ----------------------------------------------------------------------

REPLY = {"name": "app/reply", "data": {"ok": True}, "user": {}, "id": "r1", "ts": 2}


def waiting_handler(*, sync: bool) -> Any:
    def describe(event: Any) -> Any:
        return None if event is None else [event.name, event.data, event.id, event.ts]

    if sync:

        def sync_handler(ctx: ContextSync) -> Any:
            return describe(ctx.step.wait_for_event("reply", event="app/reply", timeout=60))

        return sync_handler

    async def async_handler(ctx: Context) -> Any:
        return describe(await ctx.step.wait_for_event("reply", event="app/reply", timeout=60))

    return async_handler


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize(
    ("memo", "expected"),
    [
        pytest.param({"data": REPLY}, ["app/reply", {"ok": True}, "r1", 2], id="inngest-shape"),
        pytest.param(REPLY, ["app/reply", {"ok": True}, "r1", 2], id="bare-event"),
        pytest.param(None, None, id="timed-out"),
    ],
)
async def test_a_resolved_wait_gives_back_its_event(memo: Any, expected: Any, sync: bool) -> None:
    recorded = request({hash_step_id("reply"): memo})
    response = await execute(define(waiting_handler(sync=sync)), recorded, checkpoint=Recorder())
    assert response.done and response.output == expected


# -- parallel steps: task groups, and siblings still running when the call stops -------------------


async def test_an_interrupt_inside_a_task_group_stops_the_call() -> None:
    # Given a function that starts a step and a sleep in an asyncio.TaskGroup
    calls: list[str] = []

    async def handler(ctx: Context) -> str:
        async with asyncio.TaskGroup() as group:
            group.create_task(ctx.step.run("a", lambda: calls.append("a") or "A"))
            group.create_task(ctx.step.sleep("nap", 60))
        return "done"

    # When it first runs, the sleep stops the call (the TaskGroup wraps the Interrupt in a group)
    recorder = Recorder()
    response = await execute(define(handler), request(), checkpoint=recorder)

    # Then the call reports the sleep, and the step that finished beside it is recorded
    assert [(op.op, op.name) for op in response.ops] == [(Opcode.SLEEP, "nap")]
    assert [(op.name, op.data) for op in recorder.ops] == [("a", "A")]
    # And the next call, past the sleep, finishes without running "a" again
    memo = {hash_step_id("a"): {"data": "A"}, hash_step_id("nap"): None}
    resumed = await execute(define(handler), request(memo), checkpoint=Recorder())
    assert resumed.done and resumed.output == "done"
    assert calls == ["a"]


async def test_a_task_group_of_plain_errors_is_still_a_function_error() -> None:
    async def handler(ctx: Context) -> None:
        async def fail() -> None:
            raise ValueError("bad")

        async with asyncio.TaskGroup() as group:
            group.create_task(fail())

    response = await execute(define(handler), request(), checkpoint=Recorder())
    assert response.error is not None and response.error.name == "ExceptionGroup"
    assert not response.no_retry


async def test_a_sibling_step_still_running_is_recorded_once_before_the_call_ends() -> None:
    # Given two parallel steps: a slow step.run and a sleep that stops the call at once
    calls: list[str] = []

    async def slow() -> str:
        await asyncio.sleep(0.05)
        calls.append("slow")
        return "S"

    async def handler(ctx: Context) -> list[Any]:
        return list(await asyncio.gather(ctx.step.run("slow", slow), ctx.step.sleep("nap", 60)))

    # When the call stops at the sleep while "slow" is still running
    recorder = Recorder()
    response = await execute(define(handler), request(), checkpoint=recorder)

    # Then the call ended only once "slow" finished and was recorded
    assert [op.op for op in response.ops] == [Opcode.SLEEP]
    assert [(op.name, op.data) for op in recorder.ops] == [("slow", "S")]
    await asyncio.sleep(0.1)
    assert len(recorder.ops) == 1
    # And the next call does not run it again
    memo = {hash_step_id("slow"): {"data": "S"}, hash_step_id("nap"): None}
    resumed = await execute(define(handler), request(memo), checkpoint=Recorder())
    assert resumed.output == ["S", None]
    assert calls == ["slow"]


async def test_no_step_starts_after_the_call_has_ended() -> None:
    # Given a branch that reaches a new step only after its sibling stopped the call
    calls: list[str] = []

    async def handler(ctx: Context) -> list[Any]:
        async def late() -> Any:
            await asyncio.sleep(0.02)
            return await ctx.step.run("late", lambda: calls.append("late"))

        return list(await asyncio.gather(ctx.step.sleep("nap", 60), late()))

    recorder = Recorder()
    response = await execute(define(handler), request(), checkpoint=recorder)
    await asyncio.sleep(0.05)

    # Then the late step neither ran nor was recorded: the next call finds it
    assert [op.op for op in response.ops] == [Opcode.SLEEP]
    assert calls == [] and recorder.ops == []
