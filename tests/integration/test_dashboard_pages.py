"""Every dashboard page renders on both backends (a real server process with real runs), and the
bulk cancellation pages start, watch and stop jobs; the browser flow is in
tests/e2e/test_dashboard.py."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from markupsafe import escape

from headwater.protocol.ids import new_ulid
from tests.harness import RunningServer, running_server

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
