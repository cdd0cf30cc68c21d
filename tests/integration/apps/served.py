"""The scenarios of tests/served_apps.py written with our SDK and served over HTTP by `hw.serve()`,
mounted in a Starlette app: `uvicorn tests.integration.apps.served:app` (INNGEST_DEV or
HEADWATER_BASE_URL names the server; $TRACE the file each step body appends a line to)."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from headwater import Concurrency, Headwater
from headwater.errors import NonRetriableError, RetryAfterError, StepError
from headwater.sdk.context import Context

hw = Headwater(app_id="hw-e2e-ours")


#: How long a step waits for a parallel sibling to have started (tests/served_apps.py).
SIBLING_WAIT_S = 15.0
#: How long the step of `later` asks to be left alone after its first attempt.
RETRY_AFTER = timedelta(seconds=2)


def trace(line: str) -> None:
    with Path(os.environ["TRACE"]).open("a") as out:
        out.write(line + "\n")


async def traced(prefix: str, token: str) -> bool:
    """Whether a line `<prefix>...:<token>` is in $TRACE within SIBLING_WAIT_S."""
    deadline = time.monotonic() + SIBLING_WAIT_S
    while time.monotonic() < deadline:
        lines = (await asyncio.to_thread(Path(os.environ["TRACE"]).read_text)).splitlines()
        if any(line.startswith(prefix) and line.endswith(f":{token}") for line in lines):
            return True
        await asyncio.sleep(0.05)
    return False


@hw.function(id="child", trigger=hw.on_event("app/child"))
async def child(ctx: Context) -> dict[str, Any]:
    return {"child_got": ctx.event.data["n"]}


@hw.function(id="steps", trigger=hw.on_event("app/steps"), retries=2)
async def steps(ctx: Context) -> dict[str, Any]:
    token = ctx.event.data["token"]

    def a() -> dict[str, Any]:
        trace(f"steps:a:{ctx.attempt}:{token}")
        return {"greeting": "hello " + token}

    got = await ctx.step.run("a", a)
    await ctx.step.sleep("s", timedelta(seconds=1))
    waited = await ctx.step.wait_for_event(
        "w",
        event="app/approved",
        if_="async.data.token == event.data.token",
        timeout=timedelta(minutes=1),
    )
    sent = await ctx.step.send_event("e", {"name": "app/followup", "data": {"token": token}})
    invoked = await ctx.step.invoke("i", function=child, data={"n": 7})
    return {"a": got, "w": waited.data if waited else None, "sent": sent, "invoked": invoked}


@hw.function(id="flaky", trigger=hw.on_event("app/flaky"), retries=1)
async def flaky(ctx: Context) -> dict[str, Any]:
    token = ctx.event.data["token"]

    def boom() -> str:
        trace(f"flaky:boom:{ctx.attempt}:{token}")
        if ctx.attempt == 0:
            raise ValueError("boom on attempt 0")
        return "recovered"

    return {"boom": await ctx.step.run("boom", boom)}


@hw.function(id="fatal", trigger=hw.on_event("app/fatal"))
async def fatal(ctx: Context) -> None:
    trace(f"fatal:body:{ctx.attempt}:{ctx.event.data['token']}")
    raise NonRetriableError("do not retry me")


@hw.function(id="parallel", trigger=hw.on_event("app/parallel"))
async def parallel(ctx: Context) -> list[Any]:
    token = ctx.event.data["token"]

    def one() -> str:
        trace(f"parallel:p1:{ctx.attempt}:{token}")
        return "one"

    def two() -> str:
        trace(f"parallel:p2:{ctx.attempt}:{token}")
        return "two"

    return list(await asyncio.gather(ctx.step.run("p1", one), ctx.step.run("p2", two)))


@hw.function(id="rendezvous", trigger=hw.on_event("app/rendezvous"), retries=0)
async def rendezvous(ctx: Context) -> list[Any]:
    token = ctx.event.data["token"]

    async def meet(me: str, other: str) -> str:
        trace(f"rendezvous:{me}:{ctx.attempt}:{token}")
        if not await traced(f"rendezvous:{other}:", token):
            raise RuntimeError(f"step {other} did not run alongside step {me}")
        return me

    return list(
        await asyncio.gather(
            ctx.step.run("r1", meet, "r1", "r2"), ctx.step.run("r2", meet, "r2", "r1")
        )
    )


@hw.function(id="one-fails", trigger=hw.on_event("app/one-fails"), retries=1)
async def one_fails(ctx: Context) -> list[Any]:
    token = ctx.event.data["token"]

    async def boom() -> str:
        trace(f"one-fails:boom:{ctx.attempt}:{token}")
        if ctx.attempt == 0:
            await traced("one-fails:ok:", token)
            raise ValueError("boom on attempt 0, once ok has run")
        return "recovered"

    def ok() -> str:
        trace(f"one-fails:ok:{ctx.attempt}:{token}")
        return "ok"

    return list(await asyncio.gather(ctx.step.run("boom", boom), ctx.step.run("ok", ok)))


@hw.function(id="big", trigger=hw.on_event("app/big"))
async def big(ctx: Context) -> dict[str, Any]:
    token = ctx.event.data["token"]

    def x() -> str:
        trace(f"big:x:{ctx.attempt}:{token}")
        return "x" * int(ctx.event.data["size"])

    got = await ctx.step.run("x", x)

    def y() -> int:
        trace(f"big:y:{ctx.attempt}:{token}")
        return len(got)

    return {"x": len(got), "y": await ctx.step.run("y", y), "pad": len(ctx.event.data["pad"])}


@hw.function(
    id="limited",
    trigger=hw.on_event("app/limited"),
    concurrency=Concurrency(1, key="event.data.token"),
)
async def limited(ctx: Context) -> Any:
    token = ctx.event.data["token"]

    async def work() -> Any:
        trace(f"limited:work:{ctx.attempt}:{token}")
        await asyncio.sleep(0.3)
        return ctx.event.data["n"]

    return await ctx.step.run("work", work)


@hw.function(id="later", trigger=hw.on_event("app/later"), retries=1)
async def later(ctx: Context) -> Any:
    """Only here, not in the official SDKs' apps: step "slow" raises RetryAfterError on attempt 0
    and returns "done" on attempt 1; it traces `later:slow:<attempt>:<unix time>:<token>`, so a
    test can see when each attempt started (tests/integration/test_served_app.py)."""
    token = ctx.event.data["token"]

    def slow() -> str:
        trace(f"later:slow:{ctx.attempt}:{time.time():.3f}:{token}")
        if ctx.attempt == 0:
            raise RetryAfterError("not yet", RETRY_AFTER)
        return "done"

    return await ctx.step.run("slow", slow)


@hw.function(id="step-and-sleep", trigger=hw.on_event("app/step-and-sleep"))
async def step_and_sleep(ctx: Context) -> dict[str, Any]:
    token = ctx.event.data["token"]

    def a() -> str:
        trace(f"step-and-sleep:a:{ctx.attempt}:{token}")
        return "ran"

    got, _ = await asyncio.gather(ctx.step.run("a", a), ctx.step.sleep("s", timedelta(seconds=1)))
    return {"a": got}


@hw.function(id="caught", trigger=hw.on_event("app/caught"), retries=1)
async def caught(ctx: Context) -> dict[str, Any]:
    token = ctx.event.data["token"]

    def boom() -> str:
        trace(f"caught:boom:{ctx.attempt}:{token}")
        raise ValueError("boom on every attempt")

    try:
        await ctx.step.run("boom", boom)
    except StepError as err:
        return {"caught": err.original_message}
    return {"caught": None}


app = Starlette(routes=[Route("/api/inngest", hw.serve(), methods=["GET", "PUT", "POST"])])
