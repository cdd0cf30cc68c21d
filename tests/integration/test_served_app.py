"""Our SDK served over HTTP: `hw.serve()` in a Starlette app under uvicorn, in its own process next
to a Headwater server, synced with `headwater apps sync URL` (PUT /v1/apps/sync), runs the same
scenarios as the official SDKs (tests/served_apps.py), on both backends."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import EVENT_KEY, SIGNING_KEY
from tests.served_apps import ServedApp, ServedAppScenarios, served_app

REPO = Path(__file__).resolve().parents[2]


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
    ) as app:
        yield app


class TestHeadwaterServe(ServedAppScenarios):
    """The scenarios of tests/served_apps.py, served by `hw.serve()`."""


class TestHeadwaterServeInProduction(ServedAppScenarios):
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
        ) as app:
            yield app
