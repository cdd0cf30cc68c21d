"""A test app whose functions run inside a real server (`headwater dev tests.integration.apps.shop:hw`).

Each step body appends a line to the file named by SHOP_TRACE, so tests count real executions.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from headwater import Headwater
from headwater.errors import NonRetriableError, StepError
from headwater.sdk.context import Context, ContextSync
from headwater.sdk.functions import Timeouts

hw = Headwater(app_id="shop")


def trace(line: str) -> None:
    with Path(os.environ["SHOP_TRACE"]).open("a") as handle:
        handle.write(line + "\n")


def attempts_of(key: str) -> int:
    path = Path(os.environ["SHOP_TRACE"])
    return sum(1 for line in path.read_text().splitlines() if line == key) if path.exists() else 0


@hw.function(
    id="welcome", trigger=hw.on_event("app/account.created", if_="event.data.billingPlan == 'pro'")
)
async def welcome(ctx: Context) -> dict[str, Any]:
    account_id = ctx.event.data["accountId"]

    def load() -> dict[str, Any]:
        trace(f"welcome:load:{account_id}")
        return {"id": account_id, "plan": "pro"}

    account = await ctx.step.run("load-account", load)
    await ctx.step.sleep("wait-a-bit", timedelta(seconds=float(ctx.event.data.get("sleep", 1))))
    greeting = await ctx.step.run(
        "greet", lambda: trace(f"welcome:greet:{account_id}") or f"hello {account['id']}"
    )
    return {"greeting": greeting, "account": account}


@hw.function(id="flaky", trigger=hw.on_event("app/flaky"), retries=1)
async def flaky(ctx: Context) -> str:
    key = f"flaky:{ctx.event.data['key']}"

    def once_then_ok() -> str:
        trace(key)
        if attempts_of(key) == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    return str(await ctx.step.run("call", once_then_ok))


@hw.function(id="fatal", trigger=hw.on_event("app/fatal"), retries=3)
async def fatal(ctx: Context) -> None:
    def never() -> None:
        trace(f"fatal:{ctx.event.data['key']}")
        raise NonRetriableError("do not retry me")

    await ctx.step.run("call", never)


@hw.function(id="exhausted", trigger=hw.on_event("app/exhausted"), retries=2)
async def exhausted(ctx: Context) -> str:
    def always() -> None:
        trace(f"exhausted:{ctx.event.data['key']}")
        raise ValueError("still broken")

    try:
        await ctx.step.run("call", always)
    except StepError as exc:
        return f"gave up after: {exc.original_message}"
    return "unreachable"


@hw.function(id="sync-report", trigger=hw.on_event("app/report.*"))
def sync_report(ctx: ContextSync) -> dict[str, Any]:
    key = ctx.event.data["key"]
    rows = ctx.step.run("query", lambda: trace(f"report:query:{key}") or [1, 2, 3])
    ctx.step.sleep("pause", 0.2)
    total = ctx.step.run("sum", lambda: trace(f"report:sum:{key}") or sum(rows))
    return {"name": ctx.event.name, "total": total}


@hw.function(id="sleeper", trigger=hw.on_event("app/sleep.long"))
async def sleeper(ctx: Context) -> str:
    await ctx.step.run("before", lambda: trace(f"sleeper:before:{ctx.event.data['key']}"))
    await ctx.step.sleep("long", timedelta(seconds=float(ctx.event.data.get("seconds", 3600))))
    await ctx.step.run("after", lambda: trace(f"sleeper:after:{ctx.event.data['key']}"))
    return "woke"


@hw.function(id="approval", trigger=hw.on_event("app/approval.requested"))
async def approval(ctx: Context) -> dict[str, Any]:
    account_id = ctx.event.data["accountId"]
    await ctx.step.run("announce", lambda: trace(f"approval:waiting:{account_id}"))
    reply = await ctx.step.wait_for_event(
        "wait-reply",
        event="app/approval.replied",
        match="data.accountId",
        timeout=float(ctx.event.data.get("timeout", 30)),
        lookback=float(ctx.event.data.get("lookback", 0)) or None,
    )
    ids = await ctx.step.send_event(
        "notify", {"name": "app/approval.done", "data": {"accountId": account_id}}
    )
    return {"reply": reply.data if reply else None, "sent": ids}


@hw.function(id="approval-sync", trigger=hw.on_event("app/approval-sync.requested"))
def approval_sync(ctx: ContextSync) -> dict[str, Any]:
    account_id = ctx.event.data["accountId"]
    ctx.step.run("announce", lambda: trace(f"approval-sync:waiting:{account_id}"))
    reply = ctx.step.wait_for_event(
        "wait-reply",
        event="app/approval.replied",
        if_="event.data.accountId == async.data.accountId && async.data.approved == true",
        timeout=30,
    )
    return {"reply": reply.data if reply else None}


@hw.function(
    id="cancellable",
    trigger=hw.on_event("app/subscription.started"),
    cancel_on=[hw.cancel_event("app/subscription.ended", match="data.accountId")],
)
async def cancellable(ctx: Context) -> str:
    account_id = ctx.event.data["accountId"]
    await ctx.step.run("before", lambda: trace(f"cancellable:before:{account_id}"))
    await ctx.step.sleep("long", timedelta(seconds=float(ctx.event.data.get("seconds", 3600))))
    await ctx.step.run("after", lambda: trace(f"cancellable:after:{account_id}"))
    return "finished"


@hw.function(
    id="timed",
    trigger=hw.on_event("app/timed"),
    timeouts=Timeouts(finish=timedelta(seconds=1)),
)
async def timed(ctx: Context) -> str:
    key = ctx.event.data["key"]
    await ctx.step.run("before", lambda: trace(f"timed:before:{key}"))
    await ctx.step.sleep("too-long", timedelta(seconds=5))
    await ctx.step.run("after", lambda: trace(f"timed:after:{key}"))
    return "finished"


@hw.function(id="double")
async def double(ctx: Context) -> dict[str, Any]:
    if ctx.event.data.get("fail"):
        raise NonRetriableError("cannot double that")
    return {"doubled": ctx.event.data["n"] * 2}


@hw.function(id="parent", trigger=hw.on_event("app/parent"))
async def parent(ctx: Context) -> dict[str, Any]:
    result = await ctx.step.invoke("double-it", function=double, data={"n": ctx.event.data["n"]})
    try:
        await ctx.step.invoke("double-fails", function="shop-double", data={"n": 1, "fail": True})
    except StepError as exc:
        failure = exc.original_message
    return {"result": result, "failure": failure}


async def _report_failure(ctx: Context) -> None:
    trace(
        f"doomed-failure:{ctx.event.data['event']['data']['key']}:{ctx.event.data['error']['message']}"
    )


@hw.function(id="doomed", trigger=hw.on_event("app/doomed"), retries=0, on_failure=_report_failure)
async def doomed(ctx: Context) -> None:
    raise RuntimeError("doomed from the start")


@hw.function(id="too-big", trigger=hw.on_event("app/too-big"), retries=0)
async def too_big(ctx: Context) -> str:
    await ctx.step.run("huge", lambda: "x" * (5 * 1024 * 1024))
    return "unreachable"


@hw.function(id="too-many", trigger=hw.on_event("app/too-many"), retries=0)
async def too_many(ctx: Context) -> str:
    # One more parallel step than a run may have (1,000): their checkpoints overlap.
    await asyncio.gather(*(ctx.step.run(f"s{i}", lambda: 1) for i in range(1_001)))
    return "unreachable"


@hw.function(id="sync-chain", trigger=hw.on_event("app/sync-chain"))
def sync_chain(ctx: ContextSync) -> dict[str, Any]:
    doubled = ctx.step.invoke("double-it", function=double, data={"n": ctx.event.data["n"]})
    ids = ctx.step.send_event(
        "announce", [{"name": "app/chain.done", "data": {"n": ctx.event.data["n"]}}]
    )
    return {"doubled": doubled, "sent": len(ids)}
