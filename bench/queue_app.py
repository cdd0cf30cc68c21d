"""The app of bench/queue_idle.py: `bench/quick` runs one step at once; `bench/delayed` is what
the million waiting queue items belong to (they are due tomorrow, so it never runs in the bench)."""

from __future__ import annotations

from headwater import Headwater
from headwater.sdk.context import Context

hw = Headwater(app_id="bench")


@hw.function(id="quick", trigger=hw.on_event("bench/quick"))
async def quick(ctx: Context) -> int:
    return int(await ctx.step.run("one", lambda: 1))


@hw.function(id="delayed", trigger=hw.on_event("bench/delayed"))
async def delayed(ctx: Context) -> None:
    return None
