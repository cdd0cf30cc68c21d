"""Replay end to end: a real server process runs tests/integration/apps/dash.py; runs are replayed
through the REST API, one at a time (a batch run with all its events, a run whose user was erased
since) and in bulk (stopped while running, by the API and by its page), on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.protocol.ids import new_ulid
from headwater.store import open_store
from headwater.store.queries import ReplayJob, ReplayJobState
from headwater.store.runs import RunStatus
from tests.harness import RunningServer

APP = "tests.integration.apps.dash:hw"
FINAL = {"Completed", "Failed", "Cancelled", "Skipped"}


class Dash:
    def __init__(self, server: RunningServer, trace: Path) -> None:
        self.server = server
        self.trace = trace
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def send(self, event: dict[str, Any]) -> str:
        response = self.http.post("/e/k", json=event)
        assert response.status_code == 200, response.text
        return str(response.json()["ids"][0])

    def run_of(self, event_id: str) -> dict[str, Any]:
        return self.wait(lambda: self.http.get(f"/v1/events/{event_id}/runs").json()["data"])[0]

    def started_run(self, event_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            runs = self.http.get(f"/v1/events/{event_id}/runs").json()["data"]
            if runs:
                return dict(runs[0])
            time.sleep(0.05)
        raise AssertionError(f"no run for {event_id}\n{self.server.log()}")

    def final_run(self, run_id: str) -> dict[str, Any]:
        def get() -> list[dict[str, Any]]:
            run = self.http.get(f"/v1/runs/{run_id}").json()["data"]
            return [run] if run["status"] in FINAL else []

        return self.wait(get)[0]

    def wait(self, read: Any, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = read()
            if value and all(r.get("status") in FINAL for r in value if "status" in r):
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out; last: {value}\n{self.server.log()}")

    def traced(self, line: str) -> int:
        if not self.trace.exists():
            return 0
        return self.trace.read_text().splitlines().count(line)


@pytest.fixture(scope="module")
def dash(module_server_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    data_dir = tmp_path_factory.mktemp("dash")
    trace = data_dir / "trace.log"
    server = RunningServer(
        data_dir, db_url=module_server_db_url, env={"DASH_TRACE": str(trace)}, extra_args=[APP]
    ).start()
    dash = Dash(server, trace)
    try:
        yield dash
    finally:
        dash.http.close()
        server.stop()


def test_replay_from_the_start_reruns_every_step_and_links_the_original(dash: Dash) -> None:
    # Given a completed run whose event carries a user object
    event_id = dash.send(
        {"name": "dash/order.placed", "data": {"order": "A1"}, "user": {"email": "a@x.test"}}
    )
    original = dash.final_run(dash.run_of(event_id)["run_id"])
    assert original["status"] == "Completed"
    # When it is replayed from the start
    response = dash.http.post(f"/v1/runs/{original['run_id']}/replay")
    assert response.status_code == 201, response.text
    replay = response.json()["data"]
    assert replay["replay_of"] == original["run_id"]
    # Then it runs again on the same event, with its user, and links to the original
    done = dash.final_run(replay["run_id"])
    assert done["status"] == "Completed"
    assert done["replay_of"] == original["run_id"]
    assert done["event_ids"] == original["event_ids"]
    assert done["output"] == original["output"]
    assert done["output"]["user"] == {"email": "a@x.test"}
    assert dash.traced("charge:A1") == 2
    assert dash.http.get(f"/v1/runs/{original['run_id']}").json()["data"]["replay_of"] is None


def test_replay_from_a_step_copies_the_steps_before_it(dash: Dash) -> None:
    event_id = dash.send({"name": "dash/order.placed", "data": {"order": "B2", "fail": True}})
    original = dash.final_run(dash.run_of(event_id)["run_id"])
    assert original["status"] == "Failed"
    steps = dash.http.get(f"/v1/runs/{original['run_id']}/steps").json()["data"]
    ship = next(step for step in steps if step["name"] == "ship")
    # When the failed run is replayed from its failed step
    response = dash.http.post(
        f"/v1/runs/{original['run_id']}/replay", json={"from_step": ship["id"]}
    )
    assert response.status_code == 201, response.text
    replay = dash.final_run(response.json()["data"]["run_id"])
    # Then "charge" was copied, not executed again; "ship" ran (and failed) again
    assert replay["status"] == "Failed"
    assert dash.traced("charge:B2") == 1
    assert dash.traced("ship:B2") == 2
    copied = dash.http.get(f"/v1/runs/{replay['run_id']}/steps").json()["data"]
    assert copied[0]["name"] == "charge" and copied[0]["output"] == {"order": "B2", "charged": True}


def test_replay_refusals_name_the_problem(dash: Dash) -> None:
    event_id = dash.send({"name": "dash/sleep", "data": {}})
    run_id = dash.started_run(event_id)["run_id"]
    refused = dash.http.post(f"/v1/runs/{run_id}/replay")
    assert refused.status_code == 409 and refused.json()["code"] == "run_active"
    assert dash.http.delete(f"/v1/runs/{run_id}").status_code == 200
    bad_step = dash.http.post(f"/v1/runs/{run_id}/replay", json={"from_step": "nope"})
    assert bad_step.status_code == 400 and "from_step" in bad_step.json()["error"]
    missing = dash.http.post("/v1/runs/01J00000000000000000000000/replay")
    assert missing.status_code == 404
    bad_body = dash.http.post(f"/v1/runs/{run_id}/replay", content=b"[1]")
    assert bad_body.status_code == 400


def test_bulk_replay_ids_that_are_not_ulids_are_refused_and_unknown_ones_not_found(
    dash: Dash,
) -> None:
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/cancel")):
        # A malformed id is a bad request, named as such
        malformed = dash.http.request(method, f"/v1/replays/not-a-ulid{suffix}")
        assert malformed.status_code == 400, (method, malformed.text)
        assert malformed.json() == {
            "error": "the replay id must be a ULID",
            "status": 400,
            "code": "invalid_id",
        }
        # A well-formed id of no replay is not found
        unknown = dash.http.request(method, f"/v1/replays/{new_ulid().lower()}{suffix}")
        assert unknown.status_code == 404, (method, unknown.text)
        assert unknown.json()["code"] == "not_found"


def test_bulk_replay_replays_the_window_and_reports_progress(dash: Dash) -> None:
    # Given three failed runs
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    originals = []
    for index in range(3):
        event_id = dash.send(
            {"name": "dash/order.placed", "data": {"order": f"C{index}", "fail": True}}
        )
        originals.append(dash.run_of(event_id)["run_id"])
    for run_id in originals:
        assert dash.final_run(run_id)["status"] == "Failed"
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    # When the function's failed runs of the window are replayed in bulk
    response = dash.http.post(
        "/v1/replays",
        json={"function_id": "dash-pipeline", "from": start, "to": end, "statuses": ["Failed"]},
    )
    assert response.status_code == 202, response.text
    job = response.json()["data"]
    assert job["total"] >= 3
    # Then the job completes, having replayed each of them once
    deadline = time.monotonic() + 20
    while job["state"] == "Running" and time.monotonic() < deadline:
        time.sleep(0.1)
        job = dash.http.get(f"/v1/replays/{job['id']}").json()["data"]
    assert job["state"] == "Completed", job
    assert job["replayed"] == job["total"]
    for index in range(3):
        deadline = time.monotonic() + 20
        while dash.traced(f"ship:C{index}") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dash.traced(f"ship:C{index}") == 2
    assert job["id"] in [j["id"] for j in dash.http.get("/v1/replays").json()["data"]]
    # And stopping an ended job is refused
    assert dash.http.post(f"/v1/replays/{job['id']}/cancel").status_code == 409


def test_bulk_replay_can_be_stopped(dash: Dash) -> None:
    response = dash.http.post(
        "/v1/replays",
        json={
            "function_id": "dash-pipeline",
            "from": "2000-01-01T00:00:00Z",
            "to": "2100-01-01T00:00:00Z",
            "statuses": ["Completed", "Failed"],
        },
    )
    assert response.status_code == 202
    job_id = response.json()["data"]["id"]
    stopped = dash.http.delete(f"/v1/replays/{job_id}")
    if stopped.status_code == 200:
        assert stopped.json()["data"]["state"] == "Cancelled"
    else:  # it had already finished: a tiny window
        assert stopped.status_code == 409
    time.sleep(0.3)
    assert dash.http.get(f"/v1/replays/{job_id}").json()["data"]["state"] in {
        "Cancelled",
        "Completed",
    }


def test_the_bulk_replay_list_pages_newest_first(dash: Dash) -> None:
    # Given three jobs (over an empty window: they end at once)
    window = {"from": "2000-01-01T00:00:00Z", "to": "2000-01-02T00:00:00Z"}
    ids = []
    for _ in range(3):
        started = dash.http.post("/v1/replays", json={"function_id": "dash-pipeline"} | window)
        assert started.status_code == 202, started.text
        ids.append(started.json()["data"]["id"])
    # When the list is read two at a time, following next_cursor
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = dash.http.get("/v1/replays", params=params).json()
        assert len(body["data"]) <= 2
        seen += [job["id"] for job in body["data"]]
        cursor = body["metadata"]["next_cursor"]
        if cursor is None:
            break
    # Then each job comes once, newest first
    assert len(seen) == len(set(seen))
    assert [job_id for job_id in seen if job_id in ids] == sorted(ids, reverse=True)


def test_bad_bulk_replay_list_parameters_name_the_parameter(dash: Dash) -> None:
    for params, message in [
        ({"limit": "0"}, "limit must be an integer from 1 to 100"),
        ({"limit": "101"}, "limit must be an integer from 1 to 100"),
        ({"cursor": "x"}, "cursor must be the next_cursor of a previous page"),
    ]:
        response = dash.http.get("/v1/replays", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"].startswith(message)
        assert response.json()["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"from": "2000-01-01T00:00:00Z", "to": "2001-01-01T00:00:00Z"}, "function_id"),
        ({"function_id": "dash-pipeline", "to": "2001-01-01T00:00:00Z"}, "from"),
        ({"function_id": "dash-pipeline", "from": "x", "to": "2001-01-01T00:00:00Z"}, "from"),
        (
            {
                "function_id": "dash-pipeline",
                "from": "2000-01-01T00:00:00Z",
                "to": "2001-01-01T00:00:00Z",
                "statuses": ["Nope"],
            },
            "statuses",
        ),
        (
            {
                "function_id": "dash-pipeline",
                "from": "2000-01-01T00:00:00Z",
                "to": "2001-01-01T00:00:00Z",
                "statuses": ["Running"],
            },
            "statuses",
        ),
        (
            {"function_id": "nope", "from": "2000-01-01T00:00:00Z", "to": "2001-01-01T00:00:00Z"},
            "function_id",
        ),
    ],
)
def test_bulk_replay_bad_requests_name_the_field(
    dash: Dash, body: dict[str, Any], field: str
) -> None:
    response = dash.http.post("/v1/replays", json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]


def test_a_bulk_replay_left_running_resumes_when_a_server_starts(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'server.db'}"
    trace = tmp_path / "trace.log"

    def start() -> Dash:
        server = RunningServer(
            tmp_path, db_url=db_url, env={"DASH_TRACE": str(trace)}, extra_args=[APP]
        )
        return Dash(server.start(), trace)

    # Given a failed run, and then a bulk replay of it stored as Running by a server that stopped
    # (and 101 newer jobs that ended)
    first = start()
    try:
        event_id = first.send({"name": "dash/order.placed", "data": {"order": "R1", "fail": True}})
        original = first.final_run(first.run_of(event_id)["run_id"])
    finally:
        first.http.close()
        first.server.stop()
    now = int(time.time() * 1000)
    job = ReplayJob(
        job_id=new_ulid(),
        function_id="dash-pipeline",
        created_after=now - 600_000,
        created_before=now,
        statuses=(RunStatus.FAILED,),
        state=ReplayJobState.RUNNING,
        total=1,
        replayed=0,
        created_at=now,
        updated_at=now,
    )

    async def store_job() -> None:
        store = open_store(db_url)
        await store.open()
        try:
            await store.create_replay_job(job)
            # More jobs than a page of the list, newer and ended: the running one is still found
            for _ in range(101):
                ended = dataclasses.replace(job, job_id=new_ulid())
                await store.create_replay_job(ended)
                await store.end_replay_job(ended.job_id, ReplayJobState.COMPLETED, now)
        finally:
            await store.close()

    asyncio.run(store_job())
    # When a server starts on that database
    second = start()
    try:
        # Then it takes the job over and completes it
        deadline = time.monotonic() + 20
        state = "Running"
        while state == "Running" and time.monotonic() < deadline:
            time.sleep(0.1)
            state = second.http.get(f"/v1/replays/{job.job_id}").json()["data"]["state"]
        assert state == "Completed"
        still = second.http.get(f"/v1/runs/{original['run_id']}").json()["data"]
        assert still["status"] == "Failed"  # the original is left as it was
        deadline = time.monotonic() + 20
        while second.traced("ship:R1") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.traced("ship:R1") == 2
    finally:
        second.http.close()
        second.server.stop()


def test_a_replay_after_the_user_was_erased_sees_no_user(dash: Dash) -> None:
    # Given a completed run whose event carried a user, and then that user erased
    external_id = f"erased-{uuid.uuid4().hex[:10]}"
    user = {"external_id": external_id, "email": f"{external_id}@x.test"}
    event_id = dash.send({"name": "dash/order.placed", "data": {"order": "U1"}, "user": user})
    original = dash.final_run(dash.run_of(event_id)["run_id"])
    assert original["status"] == "Completed" and original["output"]["user"] == user
    erased = dash.http.delete(f"/v1/users/{external_id}")
    assert erased.status_code == 200 and erased.json()["data"]["erased"] == 1
    stored = dash.http.get(f"/v1/events/{event_id}").json()["data"]
    assert stored["user_erased"] is True and stored["user"] == {}
    # When the run is replayed
    response = dash.http.post(f"/v1/runs/{original['run_id']}/replay")
    assert response.status_code == 201, response.text
    replay = dash.final_run(response.json()["data"]["run_id"])
    # Then the replay ran on the same event, and saw no user
    assert replay["status"] == "Completed" and replay["event_ids"] == original["event_ids"]
    assert replay["output"]["user"] == {}
    assert replay["output"]["shipped"] == "shipped U1"
    # And the event's page says the user was erased
    page = dash.http.get(f"/events/{event_id}").text
    assert "Erased (the user's data was deleted on request)." in page
    assert user["email"] not in page


def test_a_batch_run_replays_with_every_event_of_its_batch_in_order(dash: Dash) -> None:
    # Given a run of a batch of three events (one of them with a user), sent one after the other
    group = uuid.uuid4().hex[:10]
    user = {"external_id": f"batch-{group}"}
    event_ids = [
        dash.send({"name": "dash/batch", "data": {"group": group, "seq": seq}} | extra)
        for seq, extra in enumerate([{}, {"user": user}, {}])
    ]
    original = dash.final_run(dash.run_of(event_ids[0])["run_id"])
    assert original["status"] == "Completed" and original["event_ids"] == event_ids
    assert original["output"] == {"seqs": [0, 1, 2], "users": [{}, user, {}]}
    # When it is replayed through the API
    response = dash.http.post(f"/v1/runs/{original['run_id']}/replay")
    assert response.status_code == 201, response.text
    assert response.json()["data"]["event_ids"] == event_ids
    replay = dash.final_run(response.json()["data"]["run_id"])
    # Then the replay received every event of the batch, in order, each with its user
    assert replay["status"] == "Completed" and replay["replay_of"] == original["run_id"]
    assert replay["event_ids"] == event_ids
    assert replay["output"] == {"seqs": [0, 1, 2], "users": [{}, user, {}]}
    assert dash.traced(f"batch:{group}:[0, 1, 2]") == 2
    # And each event lists both runs
    for event_id in event_ids:
        runs = dash.http.get(f"/v1/events/{event_id}/runs").json()["data"]
        assert {run["run_id"] for run in runs} == {original["run_id"], replay["run_id"]}


# -- stopping a bulk replay that is running ------------------------------------------------------

#: Runs a stopped job replays: at 50 a page, stopped once a page is saved, it has many pages left.
MANY = 400


def rfc3339_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def echo_runs(dash: Dash) -> tuple[int, int]:
    """How many runs of dash-echo were created in the last hour, and how many of them completed,
    as the function's page counts them."""
    page = dash.http.get("/functions/dash-echo").text
    row = re.search(r"<tr><td>last 1 hour</td>(.*?)</tr>", page, re.S)
    assert row is not None, page
    total, completed = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)[:2]
    return int(total.replace(",", "")), int(completed)


def running_job(dash: Dash, window: dict[str, str]) -> dict[str, Any]:
    """A bulk replay of dash-echo's runs in `window`, once it has saved its first page."""
    started = dash.http.post(
        "/v1/replays", json={"function_id": "dash-echo", "statuses": ["Completed"]} | window
    )
    assert started.status_code == 202, started.text
    job: dict[str, Any] = started.json()["data"]
    assert job["total"] == MANY
    deadline = time.monotonic() + 20
    while job["replayed"] == 0:
        assert job["state"] == "Running" and time.monotonic() < deadline, job
        time.sleep(0.005)
        job = dash.http.get(f"/v1/replays/{job['id']}").json()["data"]
    return job


def assert_stopped_for_good(dash: Dash, job_id: str) -> None:
    """The job is Cancelled having replayed some of its runs, and replays no more."""
    time.sleep(0.3)  # a replay in flight when the job was stopped may still be stored
    ended = dash.http.get(f"/v1/replays/{job_id}").json()["data"]
    runs = echo_runs(dash)[0]
    assert ended["state"] == "Cancelled" and 0 < ended["replayed"] < ended["total"], ended
    time.sleep(0.5)
    later = dash.http.get(f"/v1/replays/{job_id}").json()["data"]
    assert later == ended
    assert echo_runs(dash)[0] == runs


def test_a_running_bulk_replay_is_stopped_by_the_api_and_by_its_page(dash: Dash) -> None:
    # Given many completed runs of a function
    start = rfc3339_now()
    for first in range(0, MANY, 100):
        events = [{"name": "dash/echo", "data": {"n": n}} for n in range(first, first + 100)]
        assert dash.http.post("/e/k", json=events).status_code == 200
    deadline = time.monotonic() + 30
    while echo_runs(dash) != (MANY, MANY):
        assert time.monotonic() < deadline, echo_runs(dash)
        time.sleep(0.1)
    window = {"from": start, "to": rfc3339_now()}
    # And a bulk replay of them that has replayed a page of them, and is still running
    job = running_job(dash, window)
    # When it is stopped through the API
    stopped = dash.http.delete(f"/v1/replays/{job['id']}")
    # Then it was stopped while running: Cancelled, with runs left to replay
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["data"]["state"] == "Cancelled"
    assert stopped.json()["data"]["replayed"] < MANY
    # And it replays no more, having replayed fewer runs than it had
    assert_stopped_for_good(dash, job["id"])
    created = echo_runs(dash)[0] - MANY
    assert 0 < created < MANY

    # Given another such job (of the same runs: the replays came after the window)
    job = running_job(dash, window)
    # When the Stop button of its page is pressed
    page = dash.http.get(f"/replays/{job['id']}").text
    assert 'id="replay-state">Running<' in page and 'hx-trigger="every 700ms"' in page
    action = re.search(r'<form method="post" action="([^"]+)">', page)
    assert action is not None and action.group(1) == f"/replays/{job['id']}/stop"
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    pressed = dash.http.post(action.group(1), data={"csrf": csrf.group(1)})
    # Then the page shows it Cancelled, no longer refreshing, with no Stop button
    assert pressed.status_code == 303 and pressed.headers["location"] == f"/replays/{job['id']}"
    shown = dash.http.get(f"/replays/{job['id']}").text
    assert 'id="replay-state">Cancelled<' in shown
    assert "hx-trigger" not in shown and 'id="stop-replay"' not in shown
    # And it replays no more, having replayed fewer runs than it had
    assert_stopped_for_good(dash, job["id"])
    assert 0 < echo_runs(dash)[0] - MANY - created < MANY
