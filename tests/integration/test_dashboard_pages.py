"""Every dashboard page renders on both backends (a real server process with real runs); "Send
again" stores a new event; a run's page follows the run live; a function's page shows its flow
control and counts; the apps page names a failing sync; production hides events from visitors not
logged in; the bulk cancellation pages start, watch and stop jobs. The browser flow is in
tests/e2e/test_dashboard.py."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from markupsafe import escape

from headwater.protocol.ids import new_ulid
from tests.harness import EVENT_KEY, RunningServer, free_port, running_server

APP = "tests.integration.apps.dash:hw"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def client(
    module_server_db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    data_dir: Path = tmp_path_factory.mktemp("pages")
    server = RunningServer(
        data_dir,
        db_url=module_server_db_url,
        env={"DASH_TRACE": str(data_dir / "trace.log")},
        extra_args=[APP],
    ).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()


def _final_run(client: httpx.Client, event_id: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        runs = client.get(f"/v1/events/{event_id}/runs").json()["data"]
        if runs and runs[0]["status"] in {"Completed", "Failed"}:
            return str(runs[0]["run_id"])
        time.sleep(0.05)
    raise AssertionError("the run did not finish")


def test_every_page_renders_with_runs(client: httpx.Client) -> None:
    ok = client.post("/e/k", json={"name": "dash/order.placed", "data": {"order": "P1"}})
    failed = client.post(
        "/e/k", json={"name": "dash/order.placed", "data": {"order": "P2", "fail": True}}
    )
    ok_id, failed_id = ok.json()["ids"][0], failed.json()["ids"][0]
    ok_run, failed_run = _final_run(client, ok_id), _final_run(client, failed_id)
    pages = {
        "/events": ["dash/order.placed"],
        "/events?name=dash/order.placed&from=2000-01-01T00:00": [ok_id],
        f"/events/{ok_id}": ["encrypted at rest", ok_run],
        "/runs": [ok_run, failed_run],
        "/runs?function=dash-pipeline&status=Failed": [failed_run],
        f"/runs/{ok_run}": ["shipped P1", 'data-step="charge"'],
        f"/runs/{failed_run}": ["cannot ship order P2", "Traceback"],
        "/apps": ["dash-pipeline", "50.0 %"],
        "/functions/dash-pipeline": ["dash/order.placed", "Raw config"],
        "/replays": ["Replay a function"],
        "/cancellations": ["Cancel a function's active runs"],
    }
    for path, expected in pages.items():
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        for text in expected:
            assert text in response.text, (path, text)
    page = client.get("/runs?function=dash-pipeline&status=Failed").text
    assert ok_run not in page


def test_pages_paginate_with_their_cursor(client: httpx.Client) -> None:
    for index in range(3):
        client.post("/e/k", json={"name": "dash/sleep", "data": {"n": index}})
    first = client.get("/events?name=dash/sleep").text
    assert "Older" not in first  # fewer than a page
    bad = client.get("/runs?cursor=nonsense")
    assert bad.status_code == 400 and "cursor" in bad.text
    bad_time = client.get("/events?from=yesterday")
    assert bad_time.status_code == 400 and "from must be" in bad_time.text
    assert re.search(r"data-run-id=", client.get("/runs?function=dash-sleeper").text)


def test_the_replays_page_pages_older_jobs(client: httpx.Client) -> None:
    # Given more bulk replays than a page holds (30; over an empty window: they end at once)
    window = {"from": "2000-01-01T00:00:00Z", "to": "2000-01-02T00:00:00Z"}
    for _ in range(31):
        started = client.post("/v1/replays", json={"function_id": "dash-pipeline"} | window)
        assert started.status_code == 202, started.text
    listed = client.get("/v1/replays", params={"limit": 100}).json()["data"]
    newest = [job["id"] for job in listed]
    # When the page is read
    first = client.get("/replays").text
    # Then it shows the newest 30, and an "Older" link after the last of them
    shown = re.findall(r'href="/replays/([0-9A-Z]{26})"', first)
    assert shown == newest[:30]
    link = re.search(r'href="/replays\?cursor=([0-9A-Z]{26})">Older', first)
    assert link is not None and link.group(1) == newest[29]
    # And the link's page starts with the next older job
    older = client.get(f"/replays?cursor={link.group(1)}").text
    assert re.findall(r'href="/replays/([0-9A-Z]{26})"', older)[0] == newest[30]
    assert client.get("/replays?cursor=nope").status_code == 400


# -- bulk cancellations ----------------------------------------------------------------------------


def csrf_of(client: httpx.Client, path: str) -> str:
    """The CSRF token of the client's session, from a page's form."""
    page = client.get(path)
    assert page.status_code == 200, page.text[:300]
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def soon() -> str:
    """A `datetime-local` value (UTC) just after now: every run started so far is before it."""
    return (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")


def sleeping_runs(client: httpx.Client, group: str, count: int) -> list[str]:
    """The ids of `count` runs of dash-sleeper (their events' data.group `group`), once each is
    Running (asleep for an hour)."""
    events = [{"name": "dash/sleep", "data": {"group": group, "n": n}} for n in range(count)]
    sent = client.post("/e/k", json=events)
    assert sent.status_code == 200, sent.text
    runs: list[str] = []
    deadline = time.monotonic() + 30
    for event_id in sent.json()["ids"]:
        while True:
            found = client.get(f"/v1/events/{event_id}/runs").json()["data"]
            if found and found[0]["status"] == "Running":
                runs.append(found[0]["run_id"])
                break
            assert time.monotonic() < deadline, "the sleeping runs did not start"
            time.sleep(0.02)
    return runs


def start_from_form(client: httpx.Client, **fields: str) -> str:
    """Post the page's form; the id of the job it started (the page it redirects to)."""
    form = {"csrf": csrf_of(client, "/cancellations"), "app_id": "dash"} | fields
    started = client.post("/cancellations", data=form)
    assert started.status_code == 303, started.text[:300]
    match = re.fullmatch(r"/cancellations/([0-9A-Z]{26})", started.headers["location"])
    assert match is not None, started.headers["location"]
    return match.group(1)


def job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/cancellations/{job_id}").json()["data"]
    return body


def test_a_cancellation_started_from_the_form_is_watched_to_its_count_and_listed(
    client: httpx.Client,
) -> None:
    # Given three sleeping runs of a group, and one of another group
    group = uuid.uuid4().hex[:10]
    runs = sleeping_runs(client, group, 3)
    (other,) = sleeping_runs(client, f"{group}-other", 1)
    # When the form starts a cancellation of the function's runs of that group
    condition = f"event.data.group == '{group}'"
    job_id = start_from_form(
        client, function_id="sleeper", started_after="", started_before=soon(), **{"if": condition}
    )
    # Then the job's page refreshes itself while it runs, and shows its final count once ended
    detail = client.get(f"/cancellations/{job_id}")
    assert detail.status_code == 200
    assert "Cancellation of dash-sleeper" in detail.text and escape(condition) in detail.text
    deadline = time.monotonic() + 20
    while 'hx-trigger="every 700ms"' in (
        body := client.get(f"/cancellations/{job_id}", headers={"HX-Request": "true"}).text
    ):
        assert 'id="stop-cancellation"' in body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
    assert "<html" not in body  # the page's body only, as htmx swaps it
    assert 'data-status="Completed"' in body and 'id="stop-cancellation"' not in body
    assert '<strong id="cancellation-progress">3</strong> runs cancelled' in body
    # And it cancelled the group's runs and no other, as the API shows
    assert job(client, job_id)["cancelled"] == 3
    statuses = [client.get(f"/v1/runs/{run}").json()["data"]["status"] for run in runs]
    assert statuses == ["Cancelled"] * 3
    assert client.get(f"/v1/runs/{other}").json()["data"]["status"] == "Running"
    # And the list shows it: function, window, condition, state and count
    listed = client.get("/cancellations").text
    row = re.search(rf'<tr data-cancellation-id="{job_id}">.*?</tr>', listed, re.S)
    assert row is not None, listed
    assert "dash-sleeper" in row.group(0) and "any time →" in row.group(0)
    assert escape(condition) in row.group(0)
    assert 'data-status="Completed"' in row.group(0) and "<td>3</td>" in row.group(0)
    assert 'href="/cancellations"' in listed  # the nav link
    # And an id of no job, or not an id, is not found
    assert client.get(f"/cancellations/{new_ulid()}").status_code == 404
    assert client.get("/cancellations/nope").status_code == 404


def test_the_form_names_what_is_wrong(client: httpx.Client) -> None:
    csrf = csrf_of(client, "/cancellations")
    base = {"csrf": csrf, "app_id": "dash", "function_id": "sleeper", "started_before": soon()}
    for change, message in [
        ({"function_id": ""}, "app_id and function_id are required"),
        ({"started_before": ""}, "started_before is required"),
        ({"started_after": "yesterday"}, "started_after must be a date and time"),
        ({"started_before": "2100-01-01T00:00"}, "started_before must not be in the future"),
        ({"started_after": "2100-01-01T00:00"}, "started_after must be earlier than"),
        ({"if": "event.data.("}, "invalid expression in if"),
    ]:
        refused = client.post("/cancellations", data=base | change)
        assert refused.status_code == 400, change
        assert message in refused.text, (change, refused.text[:500])
    assert client.get("/cancellations?cursor=nope").status_code == 400


def test_stop_on_the_page_stops_a_running_cancellation(client: httpx.Client) -> None:
    # Given a cancellation of many sleeping runs (four pages of the job) that has saved a page
    group = uuid.uuid4().hex[:10]
    runs = sleeping_runs(client, group, 200)
    csrf = csrf_of(client, "/cancellations")
    job_id = start_from_form(
        client,
        function_id="sleeper",
        started_before=soon(),
        **{"if": f"event.data.group == '{group}'"},
    )
    deadline = time.monotonic() + 20
    while job(client, job_id)["cancelled"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    # And its page shows the count so far, refreshing itself, with a Stop button
    page = client.get(f"/cancellations/{job_id}").text
    assert 'data-status="Running"' in page and 'hx-trigger="every 700ms"' in page
    progress = re.search(r'id="cancellation-progress">(\d+)</strong> runs cancelled so far', page)
    assert progress is not None and int(progress.group(1)) > 0
    action = re.search(r'<form method="post" action="([^"]+)">', page)
    assert action is not None and action.group(1) == f"/cancellations/{job_id}/stop"
    # When the Stop button is pressed
    stopped = client.post(action.group(1), data={"csrf": csrf})
    # Then the page shows it Stopped, no longer refreshing, having cancelled some of the runs
    assert stopped.status_code == 303 and stopped.headers["location"] == f"/cancellations/{job_id}"
    shown = client.get(f"/cancellations/{job_id}").text
    assert 'data-status="Stopped"' in shown and "hx-trigger" not in shown
    ended = job(client, job_id)
    assert ended["state"] == "Stopped" and 0 < ended["cancelled"] < len(runs)
    # And it cancels no more
    time.sleep(0.5)
    assert job(client, job_id)["cancelled"] == ended["cancelled"]
    assert (
        f'id="cancellation-progress">{ended["cancelled"]}<'
        in client.get(f"/cancellations/{job_id}").text
    )


def test_cancellation_posts_without_the_csrf_token_are_refused(client: httpx.Client) -> None:
    # Given the jobs there are, and a session
    before = client.get("/v1/cancellations", params={"limit": 100}).json()["data"]
    client.get("/cancellations")
    form = {"app_id": "dash", "function_id": "sleeper", "started_before": soon()}
    # When the form is posted without its token, or with a forged one
    for token in ({}, {"csrf": "forged"}):
        refused = client.post("/cancellations", data=form | token)
        # Then it is refused, and no job is started
        assert refused.status_code == 403 and "CSRF token" in refused.text
    assert client.get("/v1/cancellations", params={"limit": 100}).json()["data"] == before
    # And so is a Stop without the token, which with it goes through
    job_id = start_from_form(client, function_id="sleeper", started_before="2024-01-01T00:00")
    assert client.post(f"/cancellations/{job_id}/stop").status_code == 403
    token = {"csrf": csrf_of(client, "/cancellations")}
    assert client.post(f"/cancellations/{job_id}/stop", data=token).status_code == 303


def test_production_requires_a_login_for_the_cancellation_pages(tmp_path: Path) -> None:
    env = {"HEADWATER_DASHBOARD_PASSWORD": PASSWORD}
    with (
        running_server(tmp_path, production=True, env=env) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        # Given no login: every cancellation page and action redirects to the login
        job_id = new_ulid()
        for method, path in [
            ("GET", "/cancellations"),
            ("GET", f"/cancellations/{job_id}"),
            ("POST", "/cancellations"),
            ("POST", f"/cancellations/{job_id}/stop"),
        ]:
            response = client.request(method, path)
            assert response.status_code == 303, (method, path)
            assert response.headers["location"] == "/login?" + urlencode({"next": path})
        # And the refreshing detail is told where to go
        refreshed = client.get(f"/cancellations/{job_id}", headers={"HX-Request": "true"})
        assert refreshed.status_code == 401 and refreshed.headers["HX-Redirect"].startswith(
            "/login?"
        )
        # When logged in with the dashboard password, the form starts a job
        login = {"csrf": csrf_of(client, "/login"), "next": "/cancellations", "password": PASSWORD}
        logged_in = client.post("/login", data=login)
        assert logged_in.status_code == 303 and logged_in.headers["location"] == "/cancellations"
        started = start_from_form(client, function_id="anything", started_before="2024-01-01T00:00")
        # Then its page shows it (the REST API would want the signing key)
        assert "Cancellation of dash-anything" in client.get(f"/cancellations/{started}").text
        assert started in client.get("/cancellations").text
        assert client.get(f"/v1/cancellations/{started}").status_code == 401


# -- events: send again --------------------------------------------------------------------------


def test_send_again_stores_a_new_event_that_starts_a_new_run(client: httpx.Client) -> None:
    # Given an event with an id of its own and a user, and the run it started
    mark = uuid.uuid4().hex[:10]
    user = {"external_id": f"again-{mark}", "email": f"again-{mark}@x.test"}
    sent = client.post(
        "/e/k",
        json={"name": "dash/order.placed", "id": f"order-{mark}", "data": {"order": mark}}
        | {"user": user},
    )
    event_id = sent.json()["ids"][0]
    first_run = _final_run(client, event_id)
    # When "Send again" is pressed on its page (a form posting with the page's CSRF token)
    page = client.get(f"/events/{event_id}").text
    assert f'action="/events/{event_id}/resend"' in page and 'id="send-again"' in page
    again = client.post(f"/events/{event_id}/resend", data={"csrf": csrf_of(client, "/events")})
    # Then it leads to a new event's page
    assert again.status_code == 303, again.text[:300]
    match = re.fullmatch(r"/events/([0-9A-Z]{26})", again.headers["location"])
    assert match is not None, again.headers["location"]
    new_id = match.group(1)
    assert new_id != event_id
    # And the new event has the same name, data and user, under a new id (the original's would
    # deduplicate its runs away)
    original = client.get(f"/v1/events/{event_id}").json()["data"]
    resent = client.get(f"/v1/events/{new_id}").json()["data"]
    assert (resent["name"], resent["data"], resent["user"]) == (
        "dash/order.placed",
        {"order": mark},
        user,
    )
    assert original["id"] == f"order-{mark}" and resent["id"] != original["id"]
    # And it started a new run, which saw the user
    new_run = _final_run(client, new_id)
    assert new_run != first_run
    done = client.get(f"/v1/runs/{new_run}").json()["data"]
    assert done["status"] == "Completed" and done["event_ids"] == [new_id]
    assert done["output"]["shipped"] == f"shipped {mark}" and done["output"]["user"] == user
    # And the original event still has its one run
    runs = client.get(f"/v1/events/{event_id}/runs").json()["data"]
    assert [run["run_id"] for run in runs] == [first_run]
    # And the new event's page shows the user and its run
    shown = client.get(f"/events/{new_id}").text
    assert escape(user["email"]) in shown and new_run in shown


def test_send_again_without_the_csrf_token_is_refused(client: httpx.Client) -> None:
    sent = client.post("/e/k", json={"name": "dash/resent", "data": {"n": uuid.uuid4().hex}})
    event_id = sent.json()["ids"][0]
    client.get("/events")  # a session
    for token in ({}, {"csrf": "forged"}):
        refused = client.post(f"/events/{event_id}/resend", data=token)
        assert refused.status_code == 403 and "CSRF token" in refused.text
    listed = client.get("/v1/events", params={"name": "dash/resent"}).json()["data"]
    assert [event["internal_id"] for event in listed] == [event_id]


# -- runs: the live timeline ---------------------------------------------------------------------


def test_a_run_page_follows_the_run_until_it_completes(client: httpx.Client) -> None:
    # Given a run asleep between its two steps
    token = uuid.uuid4().hex[:10]
    sent = client.post("/e/k", json={"name": "dash/nap", "data": {"token": token, "seconds": 1.5}})
    event_id = sent.json()["ids"][0]
    deadline = time.monotonic() + 20
    while True:
        runs = client.get(f"/v1/events/{event_id}/runs").json()["data"]
        if runs:
            run_id = runs[0]["run_id"]
            steps = client.get(f"/v1/runs/{run_id}/steps").json()["data"]
            if [step["name"] for step in steps] == ["before", "nap"]:
                break
        assert time.monotonic() < deadline, "the run did not reach its sleep"
        time.sleep(0.02)
    # When its page is opened
    page = client.get(f"/runs/{run_id}").text
    # Then it shows the run Running, asleep, and asks to be refreshed
    assert "<html" in page
    assert f'hx-get="/runs/{run_id}" hx-trigger="every 700ms"' in page
    assert 'data-status="Running"' in page and 'id="cancel-run"' in page
    # And the fragment it polls is the run's body alone, as htmx swaps it
    fragment = client.get(f"/runs/{run_id}", headers={"HX-Request": "true"}).text
    assert "<html" not in fragment and fragment.lstrip().startswith('<div id="run-body"')
    assert 'data-status="Running"' in fragment and "· live" in fragment
    nap = re.search(r'data-step="nap".*?<span class="label[^"]*"[^>]*>([^<]*)<', fragment, re.S)
    assert nap is not None and nap.group(1).startswith("sleeping · wakes at "), nap
    assert 'data-step="before"' in fragment and 'data-step="after"' not in fragment
    # When the fragment is polled (no reload of the page) until the run has ended
    polls = 0
    while 'data-status="Running"' in fragment:
        assert 'hx-trigger="every 700ms"' in fragment
        assert time.monotonic() < deadline, fragment
        time.sleep(0.1)
        fragment = client.get(f"/runs/{run_id}", headers={"HX-Request": "true"}).text
        polls += 1
    # Then it was polled while the run slept, and now shows it Completed, no longer refreshing
    assert polls >= 3
    assert 'data-status="Completed"' in fragment and "hx-trigger" not in fragment
    # With the steps after the sleep, the sleep's duration, the output and the Replay button
    assert 'data-step="after"' in fragment and f"awake {token}" in fragment
    nap = re.search(
        r'data-step="nap".*?<span class="label[^"]*"[^>]*>(\d+\.\d\d) s\b', fragment, re.S
    )
    assert nap is not None and 1.4 <= float(nap.group(1)) < 60, fragment
    assert 'id="replay-run"' in fragment and 'id="cancel-run"' not in fragment


# -- apps and functions --------------------------------------------------------------------------


def test_a_function_page_shows_its_flow_control_counts_and_failure_rate(
    client: httpx.Client,
) -> None:
    # Given three runs of a flow-controlled function that completed and one that failed
    events = [{"name": "dash/limited", "data": {"customer": f"c{n}", "rush": n}} for n in range(3)]
    events.append({"name": "dash/limited", "data": {"customer": "c9", "rush": 0, "fail": True}})
    sent = client.post("/e/k", json=events)
    runs = [_final_run(client, event_id) for event_id in sent.json()["ids"]]
    # When its page is read
    page = client.get("/functions/dash-limited")
    assert page.status_code == 200
    # Then it shows its flow-control settings, each as declared
    flow = re.search(r"<dt>Flow control</dt><dd>(.*?)</dd>", page.text, re.S)
    assert flow is not None, page.text
    shown = {
        key: json.loads(unescape(value))
        for key, value in re.findall(r"<code>(\w+)</code>: <code>(.*?)</code>", flow.group(1))
    }
    assert shown == {
        "concurrency": [{"limit": 2, "key": "event.data.customer"}],
        "throttle": {"limit": 100, "period": "1000ms"},
        "priority": {"run": "event.data.rush"},
    }
    # And its runs of each window counted: 4 runs, 3 completed, 1 failed, a 25 % failure rate
    for window in ("1 hour", "24 hours"):
        row = re.search(rf"<tr><td>last {window}</td>(.*?)</tr>", page.text, re.S)
        assert row is not None, window
        cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
        assert [cell.strip() for cell in cells] == ["4", "3", "1", "25.0 %"], (window, cells)
    # And its recent runs
    for run_id in runs:
        assert f'data-run-id="{run_id}"' in page.text
    # And the apps page counts the same for it
    apps = client.get("/apps").text
    row = re.search(r'<tr>\s*<td><a href="/functions/dash-limited">.*?</tr>', apps, re.S)
    assert row is not None, apps
    cells = re.findall(r"<td>(.*?)</td>", row.group(0), re.S)
    assert [cell.strip() for cell in cells[-2:]] == ["4", "25.0 %"], cells


def test_an_app_that_cannot_be_synced_is_named_with_its_error(
    server_db_url: str, tmp_path: Path
) -> None:
    # Given a server asked to sync an app where nothing answers
    url = f"http://127.0.0.1:{free_port()}/api/inngest"
    with (
        running_server(tmp_path, db_url=server_db_url, extra_args=["-u", url]) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        # When its apps page is read, once the first sync has been tried
        deadline = time.monotonic() + 20
        while 'class="notice bad"' not in (page := client.get("/apps").text):
            assert time.monotonic() < deadline, page
            time.sleep(0.05)
        # Then the page names the app's URL and why syncing it fails, and lists no app
        notice = re.search(r'<div class="notice bad">(.*?)</div>', page, re.S)
        assert notice is not None
        assert f'Syncing <span class="mono">{url}</span> fails: ' in notice.group(1)
        assert "ConnectError" in notice.group(1)
        assert "data-app=" not in page and "No functions yet" in page


def test_production_shows_no_part_of_an_event_to_a_visitor_not_logged_in(tmp_path: Path) -> None:
    env = {"HEADWATER_DASHBOARD_PASSWORD": PASSWORD}
    with (
        running_server(tmp_path, production=True, env=env) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        # Given an event with a user
        secrets = {"external_id": "ext-7f3a9c", "email": "hidden-7f3a9c@x.test", "ssn": "9q4k2w"}
        sent = client.post(
            f"/e/{EVENT_KEY}",
            json={"name": "secret/signup", "data": {"plan": "p-5d1e8b"}, "user": secrets},
        )
        assert sent.status_code == 200, sent.text
        event_id = sent.json()["ids"][0]
        parts = [*secrets.values(), "p-5d1e8b", "secret/signup"]
        # When a visitor who has not logged in asks for its page, its runs, or the live stream
        for path in (f"/events/{event_id}", f"/events/{event_id}/runs", "/events/live"):
            response = client.get(path)
            # Then they are sent to the login, and shown nothing of the event
            assert response.status_code == 303, (path, response.status_code)
            assert response.headers["location"] == "/login?" + urlencode({"next": path})
            assert not response.headers.get("content-type", "").startswith("text/event-stream")
            for part in parts:
                assert part not in response.text, (path, part)
            # Nor on the login page it leads to, nor as htmx asking for a fragment
            for shown in (
                client.get(response.headers["location"]),
                client.get(path, headers={"HX-Request": "true"}),
            ):
                assert shown.status_code in {200, 401}, (path, shown.status_code)
                for part in parts:
                    assert part not in shown.text, (path, part)
        # And once logged in, the same page shows the user (it was there to hide)
        login = {"csrf": csrf_of(client, "/login"), "next": "/", "password": PASSWORD}
        assert client.post("/login", data=login).status_code == 303
        page = client.get(f"/events/{event_id}").text
        assert escape(secrets["email"]) in page and "encrypted at rest" in page
