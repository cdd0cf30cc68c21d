"""An example app: `make run APP=examples.shop:hw`, then send it events:

headwater send app/account.created --data '{"accountId": "a1", "billingPlan": "pro"}'
headwater send app/email.replied --data '{"accountId": "a1"}'
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from headwater import Headwater
from headwater.sdk.context import Context, ContextSync

hw = Headwater(app_id="shop")


def load_account(account_id: str) -> dict[str, Any]:
    return {"id": account_id, "plan": "pro"}


@hw.function(id="score-account")
async def score_account(ctx: Context) -> int:
    """Invoke-only: no trigger; `welcome` calls it with step.invoke."""
    return len(str(ctx.event.data.get("id", "")))


@hw.function(
    id="welcome",
    trigger=hw.on_event("app/account.created", if_="event.data.billingPlan == 'pro'"),
    cancel_on=[hw.cancel_event("app/account.deleted", match="data.accountId")],
)
async def welcome(ctx: Context) -> dict[str, Any]:
    account = await ctx.step.run("load-account", load_account, ctx.event.data["accountId"])
    await ctx.step.sleep("wait-a-moment", timedelta(seconds=5))
    reply = await ctx.step.wait_for_event(
        "wait-reply",
        event="app/email.replied",
        match="data.accountId",
        timeout=timedelta(minutes=5),
    )
    await ctx.step.send_event(
        "notify", {"name": "app/welcome.sent", "data": {"accountId": account["id"]}}
    )
    score = await ctx.step.invoke("score", function=score_account, data={"id": account["id"]})
    return {"replied": reply is not None, "score": score}


@hw.function(id="daily-report", trigger=hw.on_cron("0 9 * * *"))
def daily_report(ctx: ContextSync) -> dict[str, Any]:
    rows = ctx.step.run("query", lambda: [1, 2, 3])
    return {"total": sum(rows)}
