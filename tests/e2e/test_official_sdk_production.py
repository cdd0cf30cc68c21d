"""Production mode end to end: `headwater start` with a signing key, and an app of the official
Python SDK in production mode (INNGEST_SIGNING_KEY set, INNGEST_DEV unset, INNGEST_BASE_URL and
INNGEST_EVENT_KEY naming our server), as it would run against Inngest Cloud.

- The app syncs (`headwater apps sync`: a signed PUT; the SDK registers with its hashed key) and
  runs every scenario of tests/served_apps.py: each call is signed, and the SDK, in production,
  refuses any call whose signature it cannot verify; a call with a wrong signature is refused.
- An app whose key is not the server's cannot register (401, reported by the SDK).
- Rotation: a server with a new key and the old one as fallback accepts an app still on the old
  key (with the new one as its own fallback): it syncs and runs a function.

SQLite only: signatures do not depend on the backend. Skips locally and fails in CI without PyPI.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headwater.engine.drivers.http import canonical_json, signature
from headwater.sdk.signatures import hash_signing_key
from tests.e2e.official_sdks import InstalledSdk
from tests.e2e.test_official_sdk_runs import PY_APP
from tests.harness import EVENT_KEY, SIGNING_KEY, RunningServer, free_port
from tests.served_apps import ServedApp, ServedAppScenarios, app_process, child_env, served_app

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

OTHER_KEY = "signkey-prod-" + "cd" * 32
WRONG_KEY = "signkey-prod-" + "ef" * 32


def production_env(
    sdk: InstalledSdk, signing_key: str, fallback: str | None = None
) -> dict[str, str]:
    env = {
        "INNGEST_SIGNING_KEY": signing_key,
        "INNGEST_BASE_URL": "{server}",
        "INNGEST_EVENT_KEY": EVENT_KEY,
        "PYTHONPATH": sdk.python_path,
    }
    if fallback:
        env["INNGEST_SIGNING_KEY_FALLBACK"] = fallback
    return env


@pytest.fixture(scope="module")
def served(
    inngest_py: InstalledSdk, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    (inngest_py.folder / "py_app.py").write_text(PY_APP)
    data_dir = tmp_path_factory.mktemp("py-sdk-production")
    with served_app(
        data_dir=data_dir,
        db_url=f"sqlite:///{data_dir / 'server.db'}",
        app_id="hw-e2e-py",
        sdk_prefix="py:v",
        app_command=[sys.executable, "-m", "uvicorn", "py_app:app", "--port", "{port}"],
        app_cwd=inngest_py.folder,
        app_env=production_env(inngest_py, SIGNING_KEY),
        sync_with_flag=False,
        production=True,
    ) as app:
        yield app


class TestOfficialPythonSdkInProduction(ServedAppScenarios):
    """The scenarios of tests/served_apps.py, every call signed and verified."""

    def test_the_app_refuses_calls_without_our_signature(self, served: ServedApp) -> None:
        body = canonical_json(
            {
                "event": {"name": "app/child", "data": {"n": 1}, "id": "x", "ts": 1, "user": {}},
                "events": [],
                "steps": {},
                "ctx": {
                    "run_id": "01J00000000000000000000000",
                    "attempt": 0,
                    "disable_immediate_execution": False,
                    "use_api": False,
                    "stack": {"stack": [], "current": 0},
                },
                "version": 2,
                "use_api": False,
            }
        )
        url = f"{served.app_url}?fnId=hw-e2e-py-child&stepId=step"
        headers = {"Content-Type": "application/json", "X-Inngest-Server-Kind": "cloud"}
        unsigned = httpx.post(url, content=body, headers=headers, timeout=10)
        assert unsigned.status_code == 401, unsigned.text
        wrong = {**headers, "X-Inngest-Signature": signature(body, WRONG_KEY)}
        refused = httpx.post(url, content=body, headers=wrong, timeout=10)
        assert refused.status_code == 401, refused.text
        right = {**headers, "X-Inngest-Signature": signature(body, SIGNING_KEY)}
        accepted = httpx.post(url, content=body, headers=right, timeout=10)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json() == {"child_got": 1}

    def test_the_server_refuses_the_api_without_the_key(self, served: ServedApp) -> None:
        url = f"{served.server.url}/v1/apps"
        assert httpx.get(url, timeout=5).status_code == 401
        wrong = {"Authorization": f"Bearer {hash_signing_key(WRONG_KEY)}"}
        assert httpx.get(url, headers=wrong, timeout=5).status_code == 401
        hashed = {"Authorization": f"Bearer {hash_signing_key(SIGNING_KEY)}"}
        assert httpx.get(url, headers=hashed, timeout=5).status_code == 200


def _sync(server: RunningServer, app_url: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "headwater", "apps", "sync", app_url, "--url", server.url]
    command += ["--signing-key", server.signing_key]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_key_rotation_and_a_wrong_key(inngest_py: InstalledSdk, tmp_path: Path) -> None:
    """The server has rotated to OTHER_KEY and keeps SIGNING_KEY as its fallback."""
    (inngest_py.folder / "py_app.py").write_text(PY_APP)
    server = RunningServer(
        tmp_path / "server",
        production=True,
        signing_key=OTHER_KEY,
        signing_key_fallback=SIGNING_KEY,
    )
    command = [sys.executable, "-m", "uvicorn", "py_app:app", "--port"]
    rotating, wrong = free_port(), free_port()
    rotating_env = production_env(inngest_py, SIGNING_KEY, fallback=OTHER_KEY)
    wrong_env = production_env(inngest_py, WRONG_KEY)
    envs = {
        rotating: child_env({**rotating_env, "APP_ID": "hw-rotating", "TRACE": "/dev/null"}),
        wrong: child_env({**wrong_env, "APP_ID": "hw-wrong", "TRACE": "/dev/null"}),
    }
    server.start()
    try:
        for env in envs.values():
            env["INNGEST_BASE_URL"] = server.url
        with (
            contextlib.ExitStack() as stack,
            app_process(
                [*command, str(rotating)],
                cwd=inngest_py.folder,
                env=envs[rotating],
                log_path=tmp_path / "rotating.log",
                port=rotating,
            ),
            app_process(
                [*command, str(wrong)],
                cwd=inngest_py.folder,
                env=envs[wrong],
                log_path=tmp_path / "wrong.log",
                port=wrong,
            ),
        ):
            # Still on the old key: it registers with it, the server accepts it as the fallback;
            # the server signs calls with the new key, which the app has as its fallback.
            done = _sync(server, f"http://127.0.0.1:{rotating}/api/inngest")
            assert done.returncode == 0, done.stdout + done.stderr + server.log()
            hashed = {"Authorization": f"Bearer {hash_signing_key(OTHER_KEY)}"}
            http = stack.enter_context(
                httpx.Client(base_url=server.url, headers=hashed, timeout=10)
            )
            invoked = http.post("/invoke/hw-rotating-child", json={"data": {"n": 5}})
            assert invoked.status_code == 200, invoked.text
            deadline = time.monotonic() + 30
            runs: list[dict[str, object]] = []
            while time.monotonic() < deadline:
                runs = http.get(f"/v1/events/{invoked.json()['id']}/runs").json()["data"]
                if runs and runs[0]["status"] in {"Completed", "Failed"}:
                    break
                time.sleep(0.1)
            assert runs and runs[0]["status"] == "Completed", (runs, server.log())
            assert runs[0]["output"] == {"child_got": 5}

            # A key the server does not know: the register call is refused, the sync fails.
            done = _sync(server, f"http://127.0.0.1:{wrong}/api/inngest")
            assert done.returncode != 0
            assert "Authentication failed" in done.stdout + done.stderr, done.stdout + done.stderr
            apps = http.get("/v1/apps").json()["data"]
            assert [a["app_id"] for a in apps] == ["hw-rotating"]
    finally:
        server.stop()
