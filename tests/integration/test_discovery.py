"""`headwater dev` finds apps on this machine's usual ports and paths (PROTOCOL §4.1) and syncs
them; `--no-discovery` turns that off. The port list is narrowed to one free port with
HEADWATER_DISCOVERY_PORTS, where a real app (`hw.serve()` under uvicorn) is started."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.errors import ConfigurationError
from headwater.server.discovery import DEFAULT_PORTS, discovery_ports
from tests.harness import RunningServer, free_port
from tests.served_apps import app_process, child_env

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def served_app(port: int, server_url: str, tmp_path: Path) -> Iterator[None]:
    command = [sys.executable, "-m", "uvicorn", "tests.integration.apps.served:app"]
    command += ["--port", str(port), "--log-level", "warning"]
    env = child_env({"INNGEST_DEV": server_url, "TRACE": str(tmp_path / "trace.log")})
    with app_process(command, cwd=REPO, env=env, log_path=tmp_path / "app.log", port=port):
        yield


def apps_of(server: RunningServer) -> list[dict[str, Any]]:
    return list(httpx.get(f"{server.url}/v1/apps", timeout=5).json()["data"])


def test_an_app_started_after_the_server_is_found_and_synced(tmp_path: Path) -> None:
    port = free_port()
    server = RunningServer(
        tmp_path / "server", env={"HEADWATER_DISCOVERY_PORTS": str(port)}, discovery=True
    )
    server.start()
    try:
        time.sleep(0.5)  # the first probe finds nothing
        assert apps_of(server) == []
        with served_app(port, server.url, tmp_path):
            # The next round (every 5 s) probes again, finds the app and syncs it.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not apps_of(server):
                time.sleep(0.2)
            apps = apps_of(server)
            assert [a["url"] for a in apps] == [f"http://127.0.0.1:{port}/api/inngest"], (
                server.log()
            )
            assert apps[0]["app_id"] == "hw-e2e-ours"
    finally:
        server.stop()


def test_no_discovery_leaves_the_app_alone(tmp_path: Path) -> None:
    port = free_port()
    server = RunningServer(tmp_path / "server", env={"HEADWATER_DISCOVERY_PORTS": str(port)})
    with served_app(port, server.url, tmp_path):
        server.start()
        try:
            time.sleep(1.0)  # past the first round of a server that would discover
            assert apps_of(server) == []
        finally:
            server.stop()


def test_the_port_list() -> None:
    assert discovery_ports({}) == DEFAULT_PORTS
    assert {3000, 3030, 3300, 4000, 5000, 8000, 8080, 8081} <= set(DEFAULT_PORTS)
    assert discovery_ports({"PORT": "4567"})[-1] == 4567
    assert discovery_ports({"HEADWATER_DISCOVERY_PORTS": "9001, 9002,9001"}) == (9001, 9002)
    assert 3000 not in discovery_ports({}, exclude=[3000])
    with pytest.raises(ConfigurationError, match="HEADWATER_DISCOVERY_PORTS: 'http' is not"):
        discovery_ports({"HEADWATER_DISCOVERY_PORTS": "3000,http"})
