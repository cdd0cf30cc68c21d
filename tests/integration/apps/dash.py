"""The functions the dashboard and replay tests run inside a real server
(`headwater dev tests.integration.apps.dash:hw`). Each step body appends a line to the file named
by DASH_TRACE, so tests count real executions (a step copied by a replay is not executed)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from headwater import Headwater
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
