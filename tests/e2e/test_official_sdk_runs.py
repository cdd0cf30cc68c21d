"""Functions served over HTTP by the official Inngest Python SDK run on a Headwater dev server.

PyPI `inngest` (latest) and FastAPI are installed once per session into a temporary folder; a
FastAPI app serving the functions below runs in a child process (uvicorn) with
`INNGEST_DEV=<server url>`, as a user's app would. The server is started with `-u <app url>`, so
it syncs the app at start (PUT → the SDK POSTs /fn/register) and every 5 s; the scenarios of
tests/served_apps.py then send events and read the runs back through `GET /v1/runs/{id}`, on both
backends.

Without a reachable registry the tests skip locally and fail in CI (as test_official_sdks_send).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.e2e.official_sdks import InstalledSdk
from tests.served_apps import ServedApp, ServedAppScenarios, served_app

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

APP_ID = "hw-e2e-py"

# Every step body appends "<function>:<step>:<attempt>:<token>" to $TRACE: executions are counted.
PY_APP = """\
import asyncio
import datetime
import os
import time

import fastapi
import inngest
import inngest.fast_api

# Dev mode when INNGEST_DEV is set, else production (signing key from INNGEST_SIGNING_KEY).
client = inngest.Inngest(app_id=os.environ.get("APP_ID", "hw-e2e-py"))


def trace(line):
    with open(os.environ["TRACE"], "a") as out:
        out.write(line + "\\n")


async def traced(prefix, token):
    # Whether a line "<prefix>...:<token>" is in $TRACE within 15 s (a parallel sibling started).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with open(os.environ["TRACE"]) as lines:
            if any(line.rstrip().endswith(f":{token}") for line in lines if line.startswith(prefix)):
                return True
        await asyncio.sleep(0.05)
    return False


@client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="app/child"))
async def child(ctx):
    return {"child_got": ctx.event.data["n"]}


@client.create_function(
    fn_id="steps", retries=2, trigger=inngest.TriggerEvent(event="app/steps")
)
async def steps(ctx):
    token = ctx.event.data["token"]

    async def a():
        trace(f"steps:a:{ctx.attempt}:{token}")
        return {"greeting": "hello " + token}

    got = await ctx.step.run("a", a)
    await ctx.step.sleep("s", datetime.timedelta(seconds=1))
    waited = await ctx.step.wait_for_event(
        "w",
        event="app/approved",
        if_exp="async.data.token == event.data.token",
        timeout=datetime.timedelta(minutes=1),
    )
    sent = await ctx.step.send_event(
        "e", inngest.Event(name="app/followup", data={"token": token})
    )
    invoked = await ctx.step.invoke("i", function=child, data={"n": 7})
    return {"a": got, "w": waited.data if waited else None, "sent": sent, "invoked": invoked}


@client.create_function(
    fn_id="flaky", retries=1, trigger=inngest.TriggerEvent(event="app/flaky")
)
async def flaky(ctx):
    token = ctx.event.data["token"]

    async def boom():
        trace(f"flaky:boom:{ctx.attempt}:{token}")
        if ctx.attempt == 0:
            raise ValueError("boom on attempt 0")
        return "recovered"

    return {"boom": await ctx.step.run("boom", boom)}


@client.create_function(fn_id="fatal", trigger=inngest.TriggerEvent(event="app/fatal"))
async def fatal(ctx):
    trace(f"fatal:body:{ctx.attempt}:{ctx.event.data['token']}")
    raise inngest.NonRetriableError("do not retry me")


@client.create_function(fn_id="parallel", trigger=inngest.TriggerEvent(event="app/parallel"))
async def parallel(ctx):
    token = ctx.event.data["token"]

    async def one():
        trace(f"parallel:p1:{ctx.attempt}:{token}")
        return "one"

    async def two():
        trace(f"parallel:p2:{ctx.attempt}:{token}")
        return "two"

    return list(
        await ctx.group.parallel(
            (lambda: ctx.step.run("p1", one), lambda: ctx.step.run("p2", two))
        )
    )


@client.create_function(
    fn_id="rendezvous", retries=0, trigger=inngest.TriggerEvent(event="app/rendezvous")
)
async def rendezvous(ctx):
    token = ctx.event.data["token"]

    def meet(me, other):
        async def body():
            trace(f"rendezvous:{me}:{ctx.attempt}:{token}")
            if not await traced(f"rendezvous:{other}:", token):
                raise RuntimeError(f"step {other} did not run alongside step {me}")
            return me

        return body

    return list(
        await ctx.group.parallel(
            (
                lambda: ctx.step.run("r1", meet("r1", "r2")),
                lambda: ctx.step.run("r2", meet("r2", "r1")),
            )
        )
    )


@client.create_function(
    fn_id="one-fails", retries=1, trigger=inngest.TriggerEvent(event="app/one-fails")
)
async def one_fails(ctx):
    token = ctx.event.data["token"]

    async def boom():
        trace(f"one-fails:boom:{ctx.attempt}:{token}")
        if ctx.attempt == 0:
            await traced("one-fails:ok:", token)
            raise ValueError("boom on attempt 0, once ok has run")
        return "recovered"

    async def ok():
        trace(f"one-fails:ok:{ctx.attempt}:{token}")
        return "ok"

    return list(
        await ctx.group.parallel(
            (lambda: ctx.step.run("boom", boom), lambda: ctx.step.run("ok", ok))
        )
    )


@client.create_function(fn_id="big", trigger=inngest.TriggerEvent(event="app/big"))
async def big(ctx):
    token = ctx.event.data["token"]

    async def x():
        trace(f"big:x:{ctx.attempt}:{token}")
        return "x" * ctx.event.data["size"]

    got = await ctx.step.run("x", x)

    async def y():
        trace(f"big:y:{ctx.attempt}:{token}")
        return len(got)

    return {"x": len(got), "y": await ctx.step.run("y", y), "pad": len(ctx.event.data["pad"])}


app = fastapi.FastAPI()
@client.create_function(
    fn_id="limited",
    trigger=inngest.TriggerEvent(event="app/limited"),
    concurrency=[inngest.Concurrency(limit=1, key="event.data.token")],
)
async def limited(ctx):
    token = ctx.event.data["token"]

    async def work():
        trace(f"limited:work:{ctx.attempt}:{token}")
        await asyncio.sleep(0.3)
        return ctx.event.data["n"]

    return await ctx.step.run("work", work)


@client.create_function(
    fn_id="step-and-sleep", trigger=inngest.TriggerEvent(event="app/step-and-sleep")
)
async def step_and_sleep(ctx):
    token = ctx.event.data["token"]

    async def a():
        trace(f"step-and-sleep:a:{ctx.attempt}:{token}")
        return "ran"

    got, _ = await ctx.group.parallel(
        (lambda: ctx.step.run("a", a), lambda: ctx.step.sleep("s", datetime.timedelta(seconds=1)))
    )
    return {"a": got}


@client.create_function(
    fn_id="caught", retries=1, trigger=inngest.TriggerEvent(event="app/caught")
)
async def caught(ctx):
    token = ctx.event.data["token"]

    async def boom():
        trace(f"caught:boom:{ctx.attempt}:{token}")
        raise ValueError("boom on every attempt")

    try:
        await ctx.step.run("boom", boom)
    except inngest.StepError as err:
        return {"caught": err.message}
    return {"caught": None}


inngest.fast_api.serve(
    app,
    client,
    [child, steps, flaky, fatal, parallel, rendezvous, one_fails, big, limited, step_and_sleep, caught],
)
"""


@pytest.fixture(scope="module")
def served(
    inngest_py: InstalledSdk,
    module_server_db_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedApp]:
    (inngest_py.folder / "py_app.py").write_text(PY_APP)
    with served_app(
        data_dir=tmp_path_factory.mktemp("py-sdk-runs"),
        db_url=module_server_db_url,
        app_id=APP_ID,
        sdk_prefix="py:v",
        app_command=[sys.executable, "-m", "uvicorn", "py_app:app", "--port", "{port}"],
        app_cwd=inngest_py.folder,
        app_env={"INNGEST_DEV": "{server}", "PYTHONPATH": inngest_py.python_path},
    ) as app:
        yield app


class TestOfficialPythonSdk(ServedAppScenarios):
    """The scenarios of tests/served_apps.py, served by PyPI `inngest` under FastAPI."""
