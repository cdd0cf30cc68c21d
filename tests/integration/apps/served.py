"""The scenarios of tests/served_apps.py written with our SDK and served over HTTP by `hw.serve()`,
mounted in a Starlette app: `uvicorn tests.integration.apps.served:app` (INNGEST_DEV or
HEADWATER_BASE_URL names the server; $TRACE the file each step body appends a line to)."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from headwater import Concurrency, Headwater
from headwater.errors import NonRetriableError
from headwater.sdk.context import Context

hw = Headwater(app_id="hw-e2e-ours")


def trace(line: str) -> None:
    with Path(os.environ["TRACE"]).open("a") as out:
        out.write(line + "\n")


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


app = Starlette(routes=[Route("/api/inngest", hw.serve(), methods=["GET", "PUT", "POST"])])
