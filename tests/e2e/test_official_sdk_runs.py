"""Functions served over HTTP by the official Inngest Python SDK run on a Headwater dev server.

PyPI `inngest` (latest) and FastAPI are installed once per session into a temporary folder; a
FastAPI app serving the functions below runs in a child process (uvicorn) with
`INNGEST_DEV=<server url>`, as a user's app would. The server is started with `-u <app url>`, so
it syncs the app at start (PUT → the SDK POSTs /fn/register) and every 5 s; the tests then send
events and read the runs back through `GET /v1/events/{id}/runs`, on both backends.

Without a reachable registry the tests skip locally and fail in CI (as test_official_sdks_send).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_official_sdks_send import INSTALL_TIMEOUT_S, _tail, _unavailable
from tests.harness import RunningServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

APP_ID = "hw-e2e-py"

# Every step body appends "<function>:<step>:<attempt>:<token>" to $TRACE: executions are counted.
PY_APP = """\
import datetime
import os

import fastapi
import inngest
import inngest.fast_api

client = inngest.Inngest(app_id="hw-e2e-py", is_production=False)


def trace(line):
    with open(os.environ["TRACE"], "a") as out:
        out.write(line + "\\n")


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


app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, [child, steps, flaky, fatal, parallel])
"""


@dataclass(frozen=True)
class PyApp:
    folder: Path
    version: str


@pytest.fixture(scope="session")
def inngest_py_app(tmp_path_factory: pytest.TempPathFactory) -> PyApp:
    """PyPI `inngest` (latest) and `fastapi`, installed with pip --target (not into the venv)."""
    folder = tmp_path_factory.mktemp("inngest-py-app")
    target = folder / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target)]
    try:
        done = subprocess.run(
            [*command, "inngest", "fastapi"],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        _unavailable(f"`pip install inngest fastapi` took over {INSTALL_TIMEOUT_S}s")
    if done.returncode != 0:
        _unavailable(
            "`pip install inngest fastapi` failed (is PyPI reachable?):\n"
            f"{_tail(done.stdout + done.stderr)}"
        )
    versions = [p.name for p in target.glob("inngest-*.dist-info")]
    assert len(versions) == 1, f"expected one inngest dist-info in {target}, found {versions}"
    (folder / "py_app.py").write_text(PY_APP)
    version = versions[0].removeprefix("inngest-").removesuffix(".dist-info")
    return PyApp(folder, version)


class Harness:
    def __init__(self, server: RunningServer, app_url: str, trace: Path) -> None:
        self.server = server
        self.app_url = app_url
        self.trace = trace
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def send(self, name: str, data: dict[str, Any]) -> str:
        response = self.http.post("/e/k", json={"name": name, "data": data})
        assert response.status_code == 200, response.text
        return str(response.json()["ids"][0])

    def run_of(self, event_id: str, *, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = self.http.get(f"/v1/events/{event_id}/runs").json()["data"]
            if runs and all(r["status"] in {"Completed", "Failed", "Cancelled"} for r in runs):
                assert len(runs) == 1, runs
                return runs[0]
            time.sleep(0.1)
        raise AssertionError(f"the run of {event_id} did not finish: {runs}\n{self.server.log()}")

    def executions(self, prefix: str) -> list[str]:
        if not self.trace.exists():
            return []
        return [line for line in self.trace.read_text().splitlines() if line.startswith(prefix)]


def _wait_for_sync(server: RunningServer, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    apps: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        apps = httpx.get(f"{server.url}/v1/apps", timeout=5).json()["data"]
        if apps:
            return apps
        time.sleep(0.2)
    raise AssertionError(f"the app did not sync: {apps}\n{server.log()}")


@pytest.fixture(scope="module")
def harness(
    inngest_py_app: PyApp,
    module_server_db_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Harness]:
    data_dir = tmp_path_factory.mktemp("sdk-runs")
    trace = data_dir / "trace.log"
    app_port = free_port()
    app_url = f"http://127.0.0.1:{app_port}/api/inngest"
    server = RunningServer(
        data_dir,
        db_url=module_server_db_url,
        env={"HEADWATER_RETRY_BASE_MS": "50"},
        extra_args=["-u", app_url],
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    env.update(
        INNGEST_DEV=server.url,
        PYTHONPATH=str(inngest_py_app.folder / "site"),
        TRACE=str(trace),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    app_log = (data_dir / "app.log").open("ab")
    app = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "py_app:app", "--port", str(app_port)],
        cwd=inngest_py_app.folder,
        env=env,
        stdout=app_log,
        stderr=app_log,
    )
    try:
        server.start()
        _wait_for_sync(server)
        harness = Harness(server, app_url, trace)
        yield harness
        harness.http.close()
    finally:
        server.stop()
        app.terminate()
        app.wait(10)
        app_log.close()


def token() -> str:
    return uuid.uuid4().hex[:10]


def test_the_app_is_synced_with_its_functions(harness: Harness) -> None:
    apps = harness.http.get("/v1/apps").json()["data"]
    assert [a["app_id"] for a in apps] == [APP_ID]
    assert apps[0]["url"] == harness.app_url
    assert apps[0]["sdk"].startswith("py:v")
    assert sorted(apps[0]["functions"]) == sorted(
        f"{APP_ID}-{f}" for f in ("child", "steps", "flaky", "fatal", "parallel")
    )
    # A re-sync of the unchanged app is reported unmodified.
    response = harness.http.put("/v1/apps/sync", json={"url": harness.app_url})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["reply"]["modified"] is False


def test_the_cli_syncs_the_app(harness: Harness) -> None:
    command = [sys.executable, "-m", "headwater", "apps", "sync", harness.app_url]
    done = subprocess.run(
        [*command, "--url", harness.server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"synced {harness.app_url} (modified: False)" in done.stdout


def test_step_sleep_wait_send_invoke_then_return(harness: Harness) -> None:
    mark = token()
    started = time.monotonic()
    event_id = harness.send("app/steps", {"token": mark})
    # The run sleeps 1 s, then waits for this event (sent early: the wait's lookback is 0, so
    # keep sending until the run is waiting).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        runs = harness.http.get(f"/v1/events/{event_id}/runs").json()["data"]
        if runs and runs[0]["status"] != "Running" and runs[0]["status"] != "Queued":
            break
        if time.monotonic() - started > 1.2:
            harness.send("app/approved", {"token": mark, "ok": True})
            harness.send("app/approved", {"token": "someone-else"})
            time.sleep(0.5)
        else:
            time.sleep(0.1)
    run = harness.run_of(event_id)
    assert run["status"] == "Completed", run
    assert time.monotonic() - started >= 1.0
    output = run["output"]
    assert output["a"] == {"greeting": f"hello {mark}"}
    assert output["w"] == {"token": mark, "ok": True}
    assert len(output["sent"]) == 1
    assert output["invoked"] == {"child_got": 7}
    assert harness.executions("steps:a:") == [f"steps:a:0:{mark}"]


def test_a_step_that_fails_once_then_succeeds_runs_twice(harness: Harness) -> None:
    mark = token()
    run = harness.run_of(harness.send("app/flaky", {"token": mark}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"boom": "recovered"}
    assert [line for line in harness.executions("flaky:boom:") if line.endswith(mark)] == [
        f"flaky:boom:0:{mark}",
        f"flaky:boom:1:{mark}",
    ]


def test_a_non_retriable_error_fails_the_run_after_one_execution(harness: Harness) -> None:
    mark = token()
    run = harness.run_of(harness.send("app/fatal", {"token": mark}))
    assert run["status"] == "Failed", run
    assert run["error"]["name"] == "NonRetriableError"
    assert run["error"]["message"] == "do not retry me"
    assert [line for line in harness.executions("fatal:") if line.endswith(mark)] == [
        f"fatal:body:0:{mark}"
    ]


def test_parallel_steps_each_run_once(harness: Harness) -> None:
    mark = token()
    run = harness.run_of(harness.send("app/parallel", {"token": mark}))
    assert run["status"] == "Completed", run
    assert run["output"] == ["one", "two"]
    lines = [line for line in harness.executions("parallel:") if line.endswith(mark)]
    assert sorted(lines) == [f"parallel:p1:0:{mark}", f"parallel:p2:0:{mark}"]
