"""One set of scenarios for every app that serves functions over HTTP (issue 4, part 7).

An app written with the official TypeScript SDK, the official Python SDK or our own `hw.serve()`
defines the same functions under its own app id (the tests' apps live next to the modules that
start them):

- `child`    (app/child):    returns `{"child_got": event.data.n}`;
- `steps`    (app/steps):    step.run "a" → sleep 1 s → waitForEvent app/approved with
                             `if async.data.token == event.data.token` → sendEvent app/followup →
                             invoke child with `{n: 7}` → returns `{a, w, sent, invoked}`;
- `flaky`    (app/flaky):    retries=1, step "boom" fails on attempt 0 and returns "recovered";
- `fatal`    (app/fatal):    raises NonRetriableError("do not retry me");
- `parallel` (app/parallel): steps "p1" and "p2" in parallel → `["one", "two"]`;
- `rendezvous` (app/rendezvous): retries=0, steps "r1" and "r2" in parallel, each of which
                             waits (up to 15 s) until the other has traced its start, else fails
                             → `["r1", "r2"]`: it completes only if the server runs them at once;
- `one-fails` (app/one-fails): retries=1, steps "boom" and "ok" in parallel; on attempt 0 "boom"
                             waits (up to 15 s) until "ok" has traced, then fails; on attempt 1
                             it returns "recovered" → `["recovered", "ok"]`;
- `big`      (app/big):      step "x" returns `"x" * event.data.size`, step "y" its length →
                             `{"x": len(x), "y": y, "pad": len(event.data.pad)}`;
- `limited`  (app/limited):  `concurrency` 1 per `event.data.token` (declared the SDK's way);
                             step "work" sleeps 0.3 s and returns `event.data.n`;
- `step-and-sleep` (app/step-and-sleep): step "a" (returns "ran") in parallel with sleep "s" of
                             1 s (the SDK reports `[StepPlanned, Sleep]` in one reply) →
                             `{"a": "ran"}`;
- `caught`   (app/caught):   retries=1, step "boom" raises "boom on every attempt" on every
                             attempt; the function catches the step's error (StepError) and
                             returns `{"caught": <its message>}`.

The server runs with HEADWATER_CALL_STATE_LIMIT_BYTES=16384: once "x" is memoized, calls leave the
steps out and say `use_api`, so the SDK must fetch them from /v0/runs/{id}/actions (else it would
run "x" again, and again).

Every step body appends `<function>:<step>:<attempt>:<token>` to the file named by $TRACE, so the
tests count real executions. A test module starts a server and the app, builds a `ServedApp`
fixture named `served`, and subclasses `ServedAppScenarios`.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.harness import EVENT_KEY, SIGNING_KEY, RunningServer, free_port

FUNCTIONS = (
    "child",
    "steps",
    "flaky",
    "fatal",
    "parallel",
    "rendezvous",
    "one-fails",
    "big",
    "limited",
    "step-and-sleep",
    "caught",
)
#: Calls bigger than this leave the run's state for the SDK to fetch (`use_api`).
CALL_STATE_LIMIT_BYTES = 16_384
#: The server's retry backoff base: a first attempt that failed is retried within this long,
#: unless the SDK's reply says when (`Retry-After`).
RETRY_BASE_MS = 50
ENDED = {"Completed", "Failed", "Cancelled"}


class ServedApp:
    """A running server, the app it drives, and helpers to send events and read runs."""

    def __init__(
        self,
        server: RunningServer,
        app_id: str,
        app_url: str,
        sdk_prefix: str,
        trace: Path,
        functions: Sequence[str] = FUNCTIONS,
    ) -> None:
        self.server = server
        #: The ids of the functions the app serves: FUNCTIONS, and any of its own.
        self.functions = tuple(functions)
        self.app_id = app_id
        self.app_url = app_url
        self.sdk_prefix = sdk_prefix
        self.trace = trace
        headers = {"Authorization": f"Bearer {SIGNING_KEY}"} if server.production else {}
        self.http = httpx.Client(base_url=server.url, timeout=30, headers=headers)
        self.event_key = EVENT_KEY if server.production else "k"

    def send(self, name: str, data: dict[str, Any]) -> str:
        response = self.http.post(f"/e/{self.event_key}", json={"name": name, "data": data})
        assert response.status_code == 200, response.text
        return str(response.json()["ids"][0])

    def runs_of(self, event_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/v1/events/{event_id}/runs")
        assert response.status_code == 200, response.text
        return list(response.json()["data"])

    def run_of(self, event_id: str, *, timeout: float = 30) -> dict[str, Any]:
        """The one run of the event once it has ended, read through GET /v1/runs/{id}."""
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = self.runs_of(event_id)
            if runs and all(r["status"] in ENDED for r in runs):
                assert len(runs) == 1, runs
                response = self.http.get(f"/v1/runs/{runs[0]['run_id']}")
                assert response.status_code == 200, response.text
                run: dict[str, Any] = response.json()["data"]
                return run
            time.sleep(0.05)
        raise AssertionError(f"the run of {event_id} did not finish: {runs}\n{self.server.log()}")

    def executions(self, prefix: str, mark: str) -> list[str]:
        if not self.trace.exists():
            return []
        return [
            line
            for line in self.trace.read_text().splitlines()
            if line.startswith(prefix) and line.endswith(mark)
        ]


def wait_for_sync(
    http: httpx.Client, server: RunningServer, app_id: str, timeout: float = 30
) -> None:
    """Until the server lists `app_id` (other apps may share its database)."""
    deadline = time.monotonic() + timeout
    apps: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        apps = http.get("/v1/apps").json()["data"]
        if any(app["app_id"] == app_id for app in apps):
            return
        time.sleep(0.1)
    raise AssertionError(f"the app {app_id} did not sync: {apps}\n{server.log()}")


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The test's environment without INNGEST_*/HEADWATER_* of its own, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INNGEST_", "HEADWATER_SIGN"))}
    env.update(extra)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@contextmanager
def app_process(
    command: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path, port: int
) -> Iterator[subprocess.Popen[bytes]]:
    """The app in a child process, once it accepts connections on `port`."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(list(command), cwd=cwd, env=dict(env), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the app exited with {process.returncode}:\n{log_path.read_text()}"
                )
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"the app did not listen on {port}:\n{log_path.read_text()}")
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def served_app(
    *,
    data_dir: Path,
    db_url: str,
    app_id: str,
    sdk_prefix: str,
    app_command: Sequence[str],
    app_cwd: Path,
    app_env: Mapping[str, str],
    app_path: str = "/api/inngest",
    sync_with_flag: bool = True,
    production: bool = False,
    functions: Sequence[str] = FUNCTIONS,
) -> Iterator[ServedApp]:
    """A server and an app (`app_command`, told its port in $PORT and its server in `app_env`),
    the app synced: by `-u <url>` when `sync_with_flag`, else by `headwater apps sync`.
    `functions` are the ids the app serves (FUNCTIONS, and any scenario of its own)."""
    trace = data_dir / "trace.log"
    port = free_port()
    app_url = f"http://127.0.0.1:{port}{app_path}"
    server = RunningServer(
        data_dir,
        db_url=db_url,
        production=production,
        env={
            "HEADWATER_RETRY_BASE_MS": str(RETRY_BASE_MS),
            "HEADWATER_CALL_STATE_LIMIT_BYTES": str(CALL_STATE_LIMIT_BYTES),
        },
        extra_args=["-u", app_url] if sync_with_flag else [],
    )
    env = child_env({**app_env, "TRACE": str(trace), "PORT": str(port)})
    env = {k: v.replace("{server}", server.url) for k, v in env.items()}
    command = [part.replace("{port}", str(port)) for part in app_command]
    with app_process(command, cwd=app_cwd, env=env, log_path=data_dir / "app.log", port=port):
        server.start()
        served = ServedApp(server, app_id, app_url, sdk_prefix, trace, functions)
        try:
            if not sync_with_flag:
                sync_with_cli(served)
            wait_for_sync(served.http, server, app_id)
            yield served
        finally:
            served.http.close()
            server.stop()


def sync_with_cli(served: ServedApp) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "headwater", "apps", "sync", served.app_url]
    command += ["--url", served.server.url]
    if served.server.production:
        command += ["--signing-key", SIGNING_KEY]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def token() -> str:
    return uuid.uuid4().hex[:10]


class ServedAppScenarios:
    """The scenarios of issue 4 part 7; subclasses provide a `served: ServedApp` fixture."""

    def test_the_app_is_synced_with_its_functions(self, served: ServedApp) -> None:
        apps = served.http.get("/v1/apps").json()["data"]
        assert [a["app_id"] for a in apps] == [served.app_id]
        assert apps[0]["url"] == served.app_url
        assert apps[0]["sdk"].startswith(served.sdk_prefix), apps[0]["sdk"]
        expected = sorted(f"{served.app_id}-{f}" for f in served.functions)
        assert sorted(apps[0]["functions"]) == expected
        # A re-sync through the CLI (PUT /v1/apps/sync) of the unchanged app is unmodified.
        done = sync_with_cli(served)
        assert f"synced {served.app_url} (modified: False)" in done.stdout

    def test_step_sleep_wait_send_invoke_then_return(self, served: ServedApp) -> None:
        mark = token()
        started = time.monotonic()
        event_id = served.send("app/steps", {"token": mark})
        # The run sleeps 1 s, then waits; the wait only sees events sent after it began
        # (no lookback), so keep sending the reply until the run has ended.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            runs = served.runs_of(event_id)
            if runs and runs[0]["status"] in ENDED:
                break
            if time.monotonic() - started > 1.0:
                served.send("app/approved", {"token": "someone-else", "ok": False})
                served.send("app/approved", {"token": mark, "ok": True})
                time.sleep(0.3)
            else:
                time.sleep(0.05)
        run = served.run_of(event_id)
        assert run["status"] == "Completed", run
        assert time.monotonic() - started >= 1.0
        # Replies to "app/approved" start only after 1 s, so the check above would pass without
        # any sleep: the steps' times show it. The wait began only when the sleep had ended, at
        # least 1 s after step "a" had (both SDKs compute the wake time when the sleep starts).
        steps = served.http.get(f"/v1/runs/{run['run_id']}/steps").json()["data"]
        (a,) = [step for step in steps if step["name"] == "a"]
        (sleep,) = [step for step in steps if step["op"] == "Sleep"]
        assert sleep["name"] == "s", sleep  # its name, not the duration the SDK put in `name`
        (wait,) = [step for step in steps if step["op"] == "WaitForEvent"]
        assert _ms(a["ended_at"]) <= _ms(sleep["started_at"]), steps
        assert _ms(sleep["ended_at"]) <= _ms(wait["started_at"]), steps
        assert _ms(wait["started_at"]) - _ms(a["ended_at"]) >= 1000, steps
        output = run["output"]
        assert output["a"] == {"greeting": f"hello {mark}"}
        assert output["w"] == {"token": mark, "ok": True}
        assert len(output["sent"]) == 1
        followup = served.http.get(f"/v1/events/{output['sent'][0]}").json()["data"]
        assert followup["name"] == "app/followup"
        assert followup["data"] == {"token": mark}
        assert output["invoked"] == {"child_got": 7}
        assert served.executions("steps:a:", mark) == [f"steps:a:0:{mark}"]

    def test_a_step_that_fails_once_then_succeeds_runs_twice(self, served: ServedApp) -> None:
        mark = token()
        run = served.run_of(served.send("app/flaky", {"token": mark}))
        assert run["status"] == "Completed", run
        assert run["output"] == {"boom": "recovered"}
        assert served.executions("flaky:boom:", mark) == [
            f"flaky:boom:0:{mark}",
            f"flaky:boom:1:{mark}",
        ]

    def test_a_non_retriable_error_fails_the_run_after_one_execution(
        self, served: ServedApp
    ) -> None:
        mark = token()
        run = served.run_of(served.send("app/fatal", {"token": mark}))
        assert run["status"] == "Failed", run
        assert run["error"]["name"] == "NonRetriableError"
        assert run["error"]["message"] == "do not retry me"
        assert served.executions("fatal:", mark) == [f"fatal:body:0:{mark}"]

    def test_parallel_steps_each_run_once(self, served: ServedApp) -> None:
        mark = token()
        run = served.run_of(served.send("app/parallel", {"token": mark}))
        assert run["status"] == "Completed", run
        assert run["output"] == ["one", "two"]
        lines = served.executions("parallel:", mark)
        assert sorted(lines) == [f"parallel:p1:0:{mark}", f"parallel:p2:0:{mark}"]

    def test_parallel_steps_run_at_the_same_time(self, served: ServedApp) -> None:
        # Each step waits for the other to have started: run one after the other, the first
        # would give up after 15 s and fail the run (no retries).
        mark = token()
        run = served.run_of(served.send("app/rendezvous", {"token": mark}), timeout=60)
        assert run["status"] == "Completed", run
        assert run["output"] == ["r1", "r2"]
        lines = served.executions("rendezvous:", mark)
        assert sorted(lines) == [f"rendezvous:r1:0:{mark}", f"rendezvous:r2:0:{mark}"]

    def test_a_parallel_step_that_ran_is_kept_when_its_sibling_fails(
        self, served: ServedApp
    ) -> None:
        # "boom" fails only once "ok" has run beside it: "ok"'s result must be recorded from that
        # same attempt, so the retry runs "boom" alone.
        mark = token()
        run = served.run_of(served.send("app/one-fails", {"token": mark}), timeout=60)
        assert run["status"] == "Completed", run
        assert run["output"] == ["recovered", "ok"]
        assert served.executions("one-fails:boom:", mark) == [
            f"one-fails:boom:0:{mark}",
            f"one-fails:boom:1:{mark}",
        ]
        assert served.executions("one-fails:ok:", mark) == [f"one-fails:ok:0:{mark}"]

    def test_a_large_state_is_fetched_by_the_sdk(self, served: ServedApp) -> None:
        mark = token()
        # The trigger event fits in a call; with step x's memo the call would not (use_api).
        data = {"token": mark, "size": CALL_STATE_LIMIT_BYTES, "pad": "p" * 3000}
        run = served.run_of(served.send("app/big", data))
        assert run["status"] == "Completed", run
        assert run["output"] == {
            "x": CALL_STATE_LIMIT_BYTES,
            "y": CALL_STATE_LIMIT_BYTES,
            "pad": 3000,
        }
        assert served.executions("big:", mark) == [f"big:x:0:{mark}", f"big:y:0:{mark}"]
        # What the SDK fetched, as it fetched it.
        actions = served.http.get(f"/v0/runs/{run['run_id']}/actions")
        assert actions.status_code == 200, actions.text
        memos = list(actions.json().values())
        assert len(memos) == 2
        assert {"data": "x" * CALL_STATE_LIMIT_BYTES} in memos
        assert {"data": CALL_STATE_LIMIT_BYTES} in memos
        batch = served.http.get(f"/v0/runs/{run['run_id']}/batch")
        assert batch.status_code == 200, batch.text
        assert [event["data"] for event in batch.json()] == [data]

    def test_the_apps_concurrency_limit_is_enforced(self, served: ServedApp) -> None:
        mark = token()
        ids = [served.send("app/limited", {"token": mark, "n": n}) for n in range(3)]
        runs = [served.run_of(event_id) for event_id in ids]
        assert [run["status"] for run in runs] == ["Completed"] * 3, runs
        assert sorted(run["output"] for run in runs) == [0, 1, 2]
        # The server records each step from the call that ran it to its reply: with the limit
        # of 1 the three calls never overlap.
        spans = []
        for run in runs:
            steps = served.http.get(f"/v1/runs/{run['run_id']}/steps").json()["data"]
            (work,) = [step for step in steps if step["name"] == "work"]
            spans.append((_ms(work["started_at"]), _ms(work["ended_at"])))
        spans.sort()
        for (_, previous_end), (start, _) in itertools.pairwise(spans):
            assert start >= previous_end, spans
        assert len(served.executions("limited:work:", mark)) == 3

    def test_a_step_in_parallel_with_a_sleep_runs_once_and_the_sleep_is_honoured(
        self, served: ServedApp
    ) -> None:
        # One reply holds the planned step and the sleep: the step runs (it does not wait for the
        # sleep), then the sleep, reported again on its own, is slept.
        mark = token()
        run = served.run_of(served.send("app/step-and-sleep", {"token": mark}))
        assert run["status"] == "Completed", run
        assert run["output"] == {"a": "ran"}
        assert served.executions("step-and-sleep:a:", mark) == [f"step-and-sleep:a:0:{mark}"]
        steps = served.http.get(f"/v1/runs/{run['run_id']}/steps").json()["data"]
        by_op = {step["op"]: step for step in steps}
        assert sorted(by_op) == ["Sleep", "StepRun"], steps
        ran, slept = by_op["StepRun"], by_op["Sleep"]
        assert ran["output"] == "ran"
        assert _ms(ran["started_at"]) < _ms(slept["ended_at"])
        # The sleep was asked for once "a" had answered, so it ends 1 s or more after that; the
        # run ends after it.
        assert _ms(slept["ended_at"]) - _ms(ran["ended_at"]) >= 1000, steps
        assert _ms(run["ended_at"]) >= _ms(slept["ended_at"]), (run, steps)

    def test_a_step_that_fails_for_good_is_caught_by_the_function(self, served: ServedApp) -> None:
        # The last attempt's failure comes back as StepFailed: the engine records the error as
        # the step's result and calls again, and the function catches the step's error.
        mark = token()
        run = served.run_of(served.send("app/caught", {"token": mark}))
        assert run["status"] == "Completed", run
        assert run["output"] == {"caught": "boom on every attempt"}
        assert served.executions("caught:boom:", mark) == [
            f"caught:boom:0:{mark}",
            f"caught:boom:1:{mark}",
        ]
        steps = served.http.get(f"/v1/runs/{run['run_id']}/steps").json()["data"]
        [failed] = steps
        assert failed["op"] == "StepFailed", steps
        assert failed["error"]["message"] == "boom on every attempt"
        assert failed["attempts"] == 2


def _ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)
