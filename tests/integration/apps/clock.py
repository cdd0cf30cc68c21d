"""A test app of schedules, run by a real server (`headwater dev tests.integration.apps.clock:hw`).

Real schedules tick once a minute at best, too slowly for a test, so the ticking functions use
`SecondsCronTrigger`, the engine's internal six-field form (seconds first). It exercises the same
scheduler, events and runs as `hw.on_cron`; only the parsing of the spec differs.

Each execution appends `<function>:<scheduledAt>:<pid>` to the file named by CLOCK_TRACE, so
tests count real executions, and which process ran them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from headwater import Headwater
from headwater.engine.cron import SecondsCronTrigger
from headwater.sdk.context import Context

hw = Headwater(app_id="clock")


def trace(line: str) -> None:
    with Path(os.environ["CLOCK_TRACE"]).open("a") as handle:
        handle.write(f"{line}:{os.getpid()}\n")


@hw.function(id="tick", trigger=SecondsCronTrigger("* * * * * *"))
async def tick(ctx: Context) -> dict[str, Any]:
    trace(f"tick:{ctx.event.data['scheduledAt']}")
    return {"name": ctx.event.name, "id": ctx.event.id, "data": ctx.event.data}


@hw.function(id="paris", trigger=SecondsCronTrigger("TZ=Europe/Paris */2 * * * * *"))
async def paris(ctx: Context) -> str:
    trace(f"paris:{ctx.event.data['scheduledAt']}")
    return str(ctx.event.data["scheduledAt"])


# A user-facing schedule: parsed and scheduled at start like any other, never due during a test.
@hw.function(id="daily", trigger=hw.on_cron("TZ=Europe/Paris 0 9 * * *"))
async def daily(ctx: Context) -> str:
    trace(f"daily:{ctx.event.data['scheduledAt']}")
    return "good morning"
