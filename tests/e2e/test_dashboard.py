"""The dashboard in a real browser: Playwright for Python driving Debian's Chromium
(/usr/bin/chromium, headless; never a downloaded browser) against a real server process running
tests/integration/apps/dash.py.

Screenshots of every page are saved under test-artifacts/dashboard/ (the path is printed).
Without Chromium (or Playwright) the tests skip locally and fail in CI.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_postgres_schema
from tests.harness import SIGNING_KEY, RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CHROMIUM = "/usr/bin/chromium"
APP = "tests.integration.apps.dash:hw"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
PASSWORD = "correct horse battery staple"
WAIT_MS = 20_000


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must have it: .ci/run installs chromium)")
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {ARTIFACTS}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def _server(tmp: Path, *, production: bool = False, db_url: str | None = None) -> RunningServer:
    env = {"DASH_TRACE": str(tmp / "trace.log"), "HEADWATER_DASHBOARD_PASSWORD": PASSWORD}
    server = RunningServer(tmp, db_url=db_url, production=production, env=env, extra_args=[APP])
    return server.start()


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = _server(tmp_path_factory.mktemp("dashboard-dev"))
    try:
        yield server
    finally:
        server.stop()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_send_watch_timeline_replay_and_cancel(browser: Any, dev_server: RunningServer) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    base = dev_server.url
    try:
        # Given the events page, open on its live stream
        page.goto(f"{base}/events")
        page.locator("body[data-live='on']").wait_for(state="attached")
        # When a test event is sent from the form
        page.fill("#send-name", "dash/order.placed")
        page.fill("#send-data", '{"order": "E2E-1"}')
        page.fill("#send-user", '{"email": "e2e@example.test"}')
        page.click("#send-event button[type=submit]")
        page.wait_for_selector("#sent")
        # Then its row arrives over the live stream, with the run it started
        row = page.locator("#event-rows tr", has_text="dash/order.placed").first
        row.wait_for()
        assert "dash-pipeline" in row.inner_text()
        shot(page, "events")
        # And its page shows the run going live to Completed, and the user, marked encrypted
        row.locator("a.event-name").click()
        page.wait_for_selector("#event-runs [data-status=Completed]")
        assert "encrypted at rest" in page.content()
        assert "e2e@example.test" in page.inner_text("body")
        shot(page, "event")
        # When the run is opened: the timeline shows each step, the sleep, and the output
        page.click("#event-runs a.mono")
        page.wait_for_selector("#timeline [data-step=ship]")
        for step in ("charge", "cool-down", "ship"):
            assert page.locator(f"#timeline [data-step={step}]").count() == 1
        assert "shipped E2E-1" in page.inner_text("#run-body")
        original_url = page.url
        shot(page, "run")
        # When it is replayed from its "ship" step
        page.select_option("#replay-from", label="from step “ship”")
        page.click("#replay-run")
        page.wait_for_selector("#replay-of")
        assert page.url != original_url
        # Then the replay links to the original and completes, "charge" copied
        assert original_url.endswith(page.inner_text("#replay-of"))
        page.wait_for_selector("#run-body h1 [data-status=Completed]")
        assert "copied" in page.inner_text("#timeline")
        shot(page, "run-replayed")

        # Given a sleeping run
        sent = httpx.post(f"{base}/e/k", json={"name": "dash/sleep", "data": {}}).json()
        page.goto(f"{base}/events/{sent['ids'][0]}")
        page.click("#event-runs a.mono")
        page.wait_for_selector("#timeline .bar.sleep.open")
        shot(page, "run-sleeping")
        # When it is cancelled from its page
        page.click("#cancel-run")
        # Then it is Cancelled and can be replayed
        page.wait_for_selector("#run-body h1 [data-status=Cancelled]")
        assert page.locator("#replay-run").count() == 1

        # The other pages: runs (filtered), apps and functions, replays
        page.goto(f"{base}/runs?function=dash-pipeline&status=Completed")
        assert page.locator("#run-rows tr[data-run-id]").count() >= 2
        shot(page, "runs")
        page.goto(f"{base}/apps")
        assert "dash-pipeline" in page.inner_text("main")
        shot(page, "apps")
        page.goto(f"{base}/functions/dash-pipeline")
        assert "dash/order.placed" in page.inner_text("main")
        page.fill("#invoke-payload", '{"order": "INV-1"}')
        page.click("#invoke")
        page.wait_for_selector("#run-body h1 [data-status=Completed]")
        assert "shipped INV-1" in page.inner_text("#run-body")
        page.goto(f"{base}/functions/dash-pipeline")
        shot(page, "function")
        page.goto(f"{base}/replays")
        page.select_option("#bulk-replay select[name=function]", "dash-pipeline")
        page.check("input[name=statuses][value=Completed]")
        page.click("#bulk-replay button[type=submit]")
        page.wait_for_selector("#replay-state:text('Completed')")
        assert int(page.inner_text("#replay-progress").split("/")[0]) >= 3
        shot(page, "replay")
        page.goto(f"{base}/replays")
        shot(page, "replays")
    except Exception:
        shot(page, "failure")
        raise
    finally:
        page.close()


def test_a_bulk_cancellation_from_its_page(browser: Any, dev_server: RunningServer) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    base = dev_server.url
    try:
        # Given two sleeping runs of a group
        events = [{"name": "dash/sleep", "data": {"group": "e2e-cancel"}}] * 2
        ids = httpx.post(f"{base}/e/k", json=events).json()["ids"]
        for event_id in ids:
            page.goto(f"{base}/events/{event_id}")
            page.wait_for_selector("#event-runs [data-status=Running]")
        # When the cancellations page's form cancels the function's runs of that group
        page.goto(f"{base}/cancellations")
        page.fill("#bulk-cancellation input[name=app_id]", "dash")
        page.fill("#bulk-cancellation input[name=function_id]", "sleeper")
        page.fill("#bulk-cancellation input[name=if]", "event.data.group == 'e2e-cancel'")
        page.click("#bulk-cancellation button[type=submit]")
        # Then the job's page shows it Completed, both runs cancelled
        page.wait_for_selector("#cancellation-state [data-status=Completed]")
        assert page.inner_text("#cancellation-progress") == "2"
        shot(page, "cancellation")
        # And the list shows it
        page.click("header nav a[href='/cancellations']")
        row = page.locator("tr[data-cancellation-id]").first
        assert "dash-sleeper" in row.inner_text() and "Completed" in row.inner_text()
        shot(page, "cancellations")
    except Exception:
        shot(page, "failure")
        raise
    finally:
        page.close()


def test_a_post_without_the_csrf_token_is_refused(dev_server: RunningServer) -> None:
    with httpx.Client(base_url=dev_server.url) as client:
        client.get("/events")  # gets a session cookie
        refused = client.post("/events/send", data={"name": "dash/sleep", "data": "{}"})
        assert refused.status_code == 403
        forged = client.post(
            "/events/send", data={"name": "dash/sleep", "data": "{}", "csrf": "forged"}
        )
        assert forged.status_code == 403
        page = client.get("/events")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"


def test_production_requires_login_and_logs_out(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = _server(tmp_path_factory.mktemp("dashboard-prod"), production=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(WAIT_MS)
    try:
        # Given production mode: pages redirect to the login
        page.goto(f"{server.url}/runs")
        assert "/login" in page.url
        shot(page, "login")
        # A wrong password is refused
        page.fill("#password", "wrong")
        page.click("button[type=submit]")
        page.wait_for_selector("#login-failed")
        # The dashboard password logs in, back to the page asked for
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/runs")
        cookie = next(c for c in page.context.cookies() if c["name"] == "hw_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        # Logging out ends the session
        page.click("#logout")
        page.wait_for_url(re.compile(r"/login"))
        page.goto(f"{server.url}/events")
        assert "/login" in page.url
        # The signing key is accepted too
        page.fill("#password", SIGNING_KEY)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/events$"))
        # And the API still wants its bearer key, whatever the cookie
        assert httpx.get(f"{server.url}/v1/replays").status_code == 401
    finally:
        page.close()
        server.stop()


@pytest.mark.postgres
def test_the_live_stream_shows_events_stored_by_another_process(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Given two server processes sharing one PostgreSQL database, the page open on the first
    with fresh_postgres_schema() as db_url:
        first = _server(tmp_path_factory.mktemp("dashboard-pg-1"), db_url=db_url)
        second = _server(tmp_path_factory.mktemp("dashboard-pg-2"), db_url=db_url)
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        try:
            page.goto(f"{first.url}/events")
            page.locator("body[data-live='on']").wait_for(state="attached")
            # When an event is sent to the second
            sent = httpx.post(f"{second.url}/e/k", json={"name": "dash/sleep", "data": {}})
            event_id = sent.json()["ids"][0]
            # Then it appears live on the first's page
            page.wait_for_selector(f"#event-rows tr[data-event-id='{event_id}']")
        finally:
            page.close()
            first.stop()
            second.stop()
