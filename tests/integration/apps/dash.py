"""The functions the dashboard and replay tests run inside a real server
(`headwater dev tests.integration.apps.dash:hw`). Each step body appends a line to the file named
by DASH_TRACE, so tests count real executions (a step copied by a replay is not executed)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from headwater import Batch, Concurrency, Headwater, Throttle
from headwater.sdk.context import Context

hw = Headwater(app_id="dash")


def trace(line: str) -> None:
    with Path(os.environ["DASH_TRACE"]).open("a") as handle:
        handle.write(line + "\n")


@hw.function(id="pipeline", trigger=hw.on_event("dash/order.placed"), retries=0)
async def pipeline(ctx: Context) -> dict[str, Any]:
    order = ctx.event.data["order"]

    def charge() -> dict[str, Any]:
        trace(f"charge:{order}")
        return {"order": order, "charged": True}

    charged = await ctx.step.run("charge", charge)
    await ctx.step.sleep("cool-down", timedelta(milliseconds=300))

    def ship() -> str:
        trace(f"ship:{order}")
        if ctx.event.data.get("fail"):
            raise RuntimeError(f"cannot ship order {order}")
        return f"shipped {order}"

    shipped = await ctx.step.run("ship", ship)
    return {"charged": charged, "shipped": shipped, "user": ctx.event.user}


@hw.function(id="sleeper", trigger=hw.on_event("dash/sleep"))
async def sleeper(ctx: Context) -> str:
    await ctx.step.sleep("nap", timedelta(hours=1))
    return "rested"


@hw.function(id="napper", trigger=hw.on_event("dash/nap"))
async def napper(ctx: Context) -> str:
    """Asleep between two steps for `data.seconds`: a run the timeline shows live."""
    token = ctx.event.data["token"]
    await ctx.step.run("before", lambda: trace(f"before:{token}"))
    await ctx.step.sleep("nap", timedelta(seconds=float(ctx.event.data["seconds"])))
    await ctx.step.run("after", lambda: trace(f"after:{token}"))
    return f"awake {token}"


@hw.function(
    id="batched",
    trigger=hw.on_event("dash/batch"),
    batch=Batch(max_size=3, timeout=5.0, key="event.data.group"),
)
async def batched(ctx: Context) -> dict[str, Any]:
    """Three events of a group per run; traces each event's `data.seq`, and returns them and each
    event's user, in order."""
    seqs = [event.data["seq"] for event in ctx.events]
    await ctx.step.run("tally", lambda: trace(f"batch:{ctx.event.data['group']}:{seqs}"))
    return {"seqs": seqs, "users": [event.user for event in ctx.events]}


@hw.function(
    id="limited",
    trigger=hw.on_event("dash/limited"),
    retries=0,
    concurrency=Concurrency(2, key="event.data.customer"),
    throttle=Throttle(limit=100, period=timedelta(seconds=1)),
    priority="event.data.rush",
)
async def limited(ctx: Context) -> str:
    """Flow control for the function page to show; fails when `data.fail`."""
    if ctx.event.data.get("fail"):
        raise RuntimeError("limited run failed on purpose")
    return "done"


@hw.function(id="echo", trigger=hw.on_event("dash/echo"))
async def echo(ctx: Context) -> Any:
    """No step: a run as cheap as can be, for tests that need many."""
    return ctx.event.data.get("n")
