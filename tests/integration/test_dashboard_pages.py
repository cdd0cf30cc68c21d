"""Every dashboard page renders on both backends (a real server process with real runs); the
browser flow is in tests/e2e/test_dashboard.py."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import RunningServer

APP = "tests.integration.apps.dash:hw"


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
