"""Our SDK served over HTTP: `hw.serve()` in a Starlette app under uvicorn, in its own process next
to a Headwater server, synced with `headwater apps sync URL` (PUT /v1/apps/sync), runs the same
scenarios as the official SDKs (tests/served_apps.py), on both backends, and scenarios of its own
(`OwnScenarios`)."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.harness import EVENT_KEY, SIGNING_KEY
from tests.integration.apps.served import RETRY_AFTER
from tests.served_apps import (
    FUNCTIONS,
    RETRY_BASE_MS,
    ServedApp,
    ServedAppScenarios,
    served_app,
    sync_with_cli,
    token,
)

REPO = Path(__file__).resolve().parents[2]
#: The app's functions: those of every served app, and its own (tests/integration/apps/served.py).
OUR_FUNCTIONS = (*FUNCTIONS, "later")


class OwnScenarios:
    """Scenarios of functions only our app serves."""

    def test_a_retry_after_error_reschedules_the_step_at_that_time(self, served: ServedApp) -> None:
        # Given a step that raises RetryAfterError(2 s) on its first attempt: `hw.serve()` replies
        # with Retry-After, and the engine must retry the step then, not after its own backoff
        # (RETRY_BASE_MS, a few tens of milliseconds here).
        mark = token()
        run = served.run_of(served.send("app/later", {"token": mark}))
        assert run["status"] == "Completed", run
        assert run["output"] == "done"
        lines = served.executions("later:slow:", mark)
        assert [line.split(":")[2] for line in lines] == ["0", "1"], lines
        first, second = (float(line.split(":")[3]) for line in lines)
        wanted = RETRY_AFTER.total_seconds()
        # The server's own first backoff is at most RETRY_BASE_MS: far from the 2 s asked for.
        assert wanted > 10 * RETRY_BASE_MS / 1000
        # Then the second attempt started 2 s after the first, not sooner, nor much later.
        assert wanted - 0.05 <= second - first < wanted + 2, lines


@pytest.fixture(scope="module")
def served(
    module_server_db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    command = [sys.executable, "-m", "uvicorn", "tests.integration.apps.served:app"]
    with served_app(
        data_dir=tmp_path_factory.mktemp("served-runs"),
        db_url=module_server_db_url,
        app_id="hw-e2e-ours",
        sdk_prefix="headwater-py:v",
        app_command=[*command, "--port", "{port}", "--log-level", "warning"],
        app_cwd=REPO,
        app_env={"INNGEST_DEV": "{server}"},
        sync_with_flag=False,
        functions=OUR_FUNCTIONS,
    ) as app:
        yield app


class TestHeadwaterServe(ServedAppScenarios, OwnScenarios):
    """The scenarios of tests/served_apps.py, served by `hw.serve()`."""


class TestHeadwaterServeInProduction(ServedAppScenarios, OwnScenarios):
    """The same against `headwater start`, `hw.serve()` in cloud mode (a signing key, INNGEST_DEV
    unset): calls signed and verified by the app, replies signed and verified by the server."""

    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
        command = [sys.executable, "-m", "uvicorn", "tests.integration.apps.served:app"]
        data_dir = tmp_path_factory.mktemp("served-production")
        with served_app(
            data_dir=data_dir,
            db_url=f"sqlite:///{data_dir / 'server.db'}",
            app_id="hw-e2e-ours",
            sdk_prefix="headwater-py:v",
            app_command=[*command, "--port", "{port}", "--log-level", "warning"],
            app_cwd=REPO,
            app_env={
                "INNGEST_SIGNING_KEY": SIGNING_KEY,
                "INNGEST_BASE_URL": "{server}",
                "INNGEST_EVENT_KEY": EVENT_KEY,
            },
            sync_with_flag=False,
            production=True,
            functions=OUR_FUNCTIONS,
        ) as app:
            yield app


def test_the_apps_page_shows_the_synced_app_and_when_it_last_synced(served: ServedApp) -> None:
    # Given the app synced, as the API lists it
    (app,) = served.http.get("/v1/apps").json()["data"]
    # When it is synced again (unchanged), and the apps page read
    before = time.time_ns() // 1_000_000
    sync_with_cli(served)
    after = time.time_ns() // 1_000_000
    page = served.http.get("/apps").text
    # Then the page shows the app: its SDK, its URL, and that last sync
    panel = re.search(rf'<div class="panel" data-app="{served.app_id}">(.*?)</dl>', page, re.S)
    assert panel is not None, page
    facts = dict(re.findall(r"<dt>(.*?)</dt><dd[^>]*>(.*?)</dd>", panel.group(1)))
    assert facts["SDK"] == f"{app['sdk']} ({app['framework']})"
    assert facts["SDK"].startswith(served.sdk_prefix)
    assert facts["URL"] == served.app_url
    shown = datetime.strptime(facts["Last sync"], "%Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=UTC)
    assert before <= round(shown.timestamp() * 1000) <= after, (before, facts["Last sync"], after)
    # And its functions, under the app, none of them in-process
    assert "in-process" not in page.split(f"<h2>{served.app_id}", 1)[1].split("</table>", 1)[0]
    for function in FUNCTIONS:
        assert f'href="/functions/{served.app_id}-{function}"' in page
    assert 'class="notice bad"' not in page
