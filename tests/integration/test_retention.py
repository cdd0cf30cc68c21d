"""`--retention` end to end: a server started with it deletes what is older, and keeps the rest."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx

from headwater.store import open_store
from tests.harness import RunningServer
from tests.integration.test_store_contract import make_event

DAY_MS = 86_400_000


def test_a_server_with_retention_deletes_old_events_at_start(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    old, recent = make_event(received_at=now - 3 * DAY_MS), make_event(received_at=now)

    async def fill() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'headwater.db'}")
        await store.open()
        try:
            await store.append_events([old, recent])
        finally:
            await store.close()

    asyncio.run(fill())
    server = RunningServer(tmp_path, extra_args=["--retention", "2d"]).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            deadline = time.monotonic() + 15
            while client.get(f"/v1/events/{old.internal_id}").status_code != 404:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.1)
            assert client.get(f"/v1/events/{recent.internal_id}").status_code == 200
    finally:
        server.stop()


def test_a_retention_shorter_than_an_hour_is_refused(tmp_path: Path) -> None:
    command = RunningServer(tmp_path, extra_args=["--retention", "10m"]).command()
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "--retention must be at least 1h" in result.stdout + result.stderr
