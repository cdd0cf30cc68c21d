"""A test app of flow-controlled functions, run by a real server
(`headwater dev tests.integration.apps.flow:hw`).

Each function's work is one step that appends `<function> <seq> start|end <epoch ms> <pid>` to the
file named by FLOW_TRACE around a short sleep, so tests measure what really ran, when, and in which
process: how many at once, in which order, how far apart.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from headwater import (
    Batch,
    Concurrency,
    Debounce,
    Headwater,
    RateLimit,
    Singleton,
    Throttle,
)
from headwater.sdk.context import Context
from headwater.sdk.functions import Timeouts

hw = Headwater(app_id="flow")


def trace(function: str, seq: Any, what: str) -> None:
    with Path(os.environ["FLOW_TRACE"]).open("a") as handle:
        handle.write(f"{function} {seq} {what} {time.time_ns() // 1_000_000} {os.getpid()}\n")


async def work(ctx: Context, function: str, seconds: float | None = None) -> Any:
    seq = ctx.event.data.get("seq")
    duration = float(ctx.event.data.get("work", 0.2) if seconds is None else seconds)

    async def body() -> Any:
        trace(function, seq, "start")
        await asyncio.sleep(duration)
        trace(function, seq, "end")
        return seq

    return await ctx.step.run("work", body)


@hw.function(
    id="per-customer",
    trigger=hw.on_event("flow/concurrency"),
    concurrency=Concurrency(2, key="event.data.customer"),
)
async def per_customer(ctx: Context) -> Any:
    return await work(ctx, "per-customer")


# Keyed on the sealed `user`: the key is evaluated with it opened (for a replay too).
@hw.function(
    id="per-user",
    trigger=hw.on_event("flow/per-user"),
    concurrency=Concurrency(1, key="event.user.external_id"),
)
async def per_user(ctx: Context) -> Any:
    return await work(ctx, "per-user")


# Two functions sharing one account-scoped limit per tenant: together, one at a time.
@hw.function(
    id="tenant-export",
    trigger=hw.on_event("flow/tenant.export"),
    concurrency=Concurrency(1, key="event.data.tenant", scope="account"),
)
async def tenant_export(ctx: Context) -> Any:
    return await work(ctx, "tenant")


@hw.function(
    id="tenant-import",
    trigger=hw.on_event("flow/tenant.import"),
    concurrency=Concurrency(1, key="event.data.tenant", scope="account"),
)
async def tenant_import(ctx: Context) -> Any:
    return await work(ctx, "tenant")


# The same, with scope env: one environment per server, so shared across functions as well.
@hw.function(
    id="env-export",
    trigger=hw.on_event("flow/env.export"),
    concurrency=Concurrency(1, key="event.data.tenant", scope="env"),
)
async def env_export(ctx: Context) -> Any:
    return await work(ctx, "env")


@hw.function(
    id="env-import",
    trigger=hw.on_event("flow/env.import"),
    concurrency=Concurrency(1, key="event.data.tenant", scope="env"),
)
async def env_import(ctx: Context) -> Any:
    return await work(ctx, "env")


# Two limits at once: one at a time per customer, and two at a time for the whole function.
@hw.function(
    id="two-limits",
    trigger=hw.on_event("flow/two-limits"),
    concurrency=[Concurrency(1, key="event.data.customer"), Concurrency(2)],
)
async def two_limits(ctx: Context) -> Any:
    return await work(ctx, "two-limits")


@hw.function(id="one-at-a-time", trigger=hw.on_event("flow/sleepy"), concurrency=1)
async def one_at_a_time(ctx: Context) -> Any:
    """Sleeps between two steps: a sleeping run must not hold the only slot."""
    seq = ctx.event.data["seq"]
    await ctx.step.run("before", lambda: trace("sleepy", seq, "before"))
    await ctx.step.sleep("nap", 1.0)
    await ctx.step.run("after", lambda: trace("sleepy", seq, "after"))
    return seq


@hw.function(id="one-waiting", trigger=hw.on_event("flow/waiting"), concurrency=1)
async def one_waiting(ctx: Context) -> Any:
    """Waits for an event (that never comes) between two steps: a waiting run must not hold the
    only slot."""
    seq = ctx.event.data["seq"]
    await ctx.step.run("before", lambda: trace("waiting", seq, "before"))
    await ctx.step.wait_for_event("reply", event="flow/never-sent", timeout=1.0)
    await ctx.step.run("after", lambda: trace("waiting", seq, "after"))
    return seq


@hw.function(
    id="throttled",
    trigger=hw.on_event("flow/throttle"),
    throttle=Throttle(limit=2, period=1.0),
)
async def throttled(ctx: Context) -> Any:
    return await work(ctx, "throttled", 0.01)


@hw.function(
    id="throttled-by-key",
    trigger=hw.on_event("flow/throttle.keyed"),
    throttle=Throttle(limit=1, period=2.0, key="event.data.key"),
)
async def throttled_by_key(ctx: Context) -> Any:
    return await work(ctx, "throttled-by-key", 0.01)


@hw.function(
    id="rate-limited",
    trigger=hw.on_event("flow/rate"),
    rate_limit=RateLimit(limit=2, period=60, key="event.data.user"),
)
async def rate_limited(ctx: Context) -> Any:
    return await work(ctx, "rate-limited", 0.01)


@hw.function(
    id="debounced",
    trigger=hw.on_event("flow/debounce"),
    debounce=Debounce(period=1.0, key="event.data.doc"),
)
async def debounced(ctx: Context) -> Any:
    return {"seq": await work(ctx, "debounced", 0.01), "events": len(ctx.events)}


@hw.function(
    id="batched",
    trigger=hw.on_event("flow/batch"),
    batch=Batch(max_size=3, timeout=1.0, key="event.data.group"),
)
async def batched(ctx: Context) -> Any:
    seqs = [event.data["seq"] for event in ctx.events]
    await work(ctx, "batched", 0.01)
    return seqs


# Events the `if` rejects (urgent ones) are not batched: each runs alone, at once.
@hw.function(
    id="batched-unless-urgent",
    trigger=hw.on_event("flow/batch.if"),
    batch=Batch(max_size=10, timeout=3.0, if_="event.data.urgent != true"),
)
async def batched_unless_urgent(ctx: Context) -> Any:
    seqs = [event.data["seq"] for event in ctx.events]
    await work(ctx, "batched-unless-urgent", 0.01)
    return seqs


@hw.function(
    id="debounced-at-most",
    trigger=hw.on_event("flow/debounce.max"),
    debounce=Debounce(period=1.0, key="event.data.doc", timeout=2.0),
)
async def debounced_at_most(ctx: Context) -> Any:
    return {"seq": await work(ctx, "debounced-at-most", 0.01), "events": len(ctx.events)}


@hw.function(
    id="prioritised",
    trigger=hw.on_event("flow/priority"),
    concurrency=1,
    priority="event.data.priority",
)
async def prioritised(ctx: Context) -> Any:
    return await work(ctx, "prioritised")


@hw.function(
    id="singleton-skip",
    trigger=hw.on_event("flow/singleton.skip"),
    singleton=Singleton(mode="skip", key="event.data.user"),
)
async def singleton_skip(ctx: Context) -> Any:
    seq = await work(ctx, "singleton-skip", 0.01)
    await ctx.step.sleep("hold", float(ctx.event.data.get("hold", 1.0)))
    return seq


@hw.function(
    id="singleton-cancel",
    trigger=hw.on_event("flow/singleton.cancel"),
    singleton=Singleton(mode="cancel", key="event.data.user"),
)
async def singleton_cancel(ctx: Context) -> Any:
    seq = await work(ctx, "singleton-cancel", 0.01)
    await ctx.step.sleep("hold", 1.0)
    return seq


@hw.function(
    id="once-per-order",
    trigger=hw.on_event("flow/order"),
    idempotency="event.data.orderId",
)
async def once_per_order(ctx: Context) -> Any:
    return await work(ctx, "once-per-order", 0.01)


# A start timeout counts from when a run is due to start, not from when it was created: a run
# meant to start later (a negative priority, a debounce period, an event dated in the future)
# is not cancelled for waiting as it was meant to.
@hw.function(
    id="late-by-priority",
    trigger=hw.on_event("flow/late-priority"),
    priority="-2",
    timeouts=Timeouts(start=1.0),
)
async def late_by_priority(ctx: Context) -> Any:
    return await work(ctx, "late-by-priority", 0.05)


@hw.function(
    id="late-by-debounce",
    trigger=hw.on_event("flow/late-debounce"),
    debounce=Debounce(period=2.0),
    timeouts=Timeouts(start=1.0),
)
async def late_by_debounce(ctx: Context) -> Any:
    return await work(ctx, "late-by-debounce", 0.05)


@hw.function(
    id="late-by-ts",
    trigger=hw.on_event("flow/late-ts"),
    timeouts=Timeouts(start=1.0),
)
async def late_by_ts(ctx: Context) -> Any:
    return await work(ctx, "late-by-ts", 0.05)


@hw.function(
    id="must-start-soon",
    trigger=hw.on_event("flow/deadline"),
    concurrency=1,
    timeouts=Timeouts(start=1.0),
)
async def must_start_soon(ctx: Context) -> Any:
    return await work(ctx, "must-start-soon", 0.6)


# A finish timeout counts from when a run starts: runs held back by the limit of 1 have not
# started. Each run sleeps past its timeout after its first step, so it ends cancelled.
@hw.function(
    id="must-finish-soon",
    trigger=hw.on_event("flow/finish"),
    concurrency=1,
    timeouts=Timeouts(finish=1.0),
)
async def must_finish_soon(ctx: Context) -> Any:
    seq = await work(ctx, "must-finish-soon", 0.4)
    await ctx.step.sleep("past-the-deadline", 30.0)
    await ctx.step.run("after", lambda: trace("must-finish-soon", seq, "after"))
    return seq
