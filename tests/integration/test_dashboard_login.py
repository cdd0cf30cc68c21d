"""Dashboard login in production mode: guessing costs time (per address), the right password
still works once the wait is over, and the refusal says how long to wait."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from tests.harness import running_server

PASSWORD = "correct horse battery staple"


def csrf_of(client: httpx.Client) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def test_failed_logins_are_limited_and_the_wait_is_named(tmp_path: Path) -> None:
    env = {"HEADWATER_DASHBOARD_PASSWORD": PASSWORD}
    with (
        running_server(tmp_path, production=True, env=env) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        token = csrf_of(client)
        form = {"csrf": token, "next": "/runs", "password": "wrong"}
        codes = [client.post("/login", data=form).status_code for _ in range(5)]
        assert codes == [401] * 5
        refused = client.post("/login", data={**form, "password": PASSWORD})
        assert refused.status_code == 429
        wait = int(refused.headers["Retry-After"])
        assert 1 <= wait <= 12
        assert f"try again in {wait} s" in refused.text
        time.sleep(wait)
        accepted = client.post("/login", data={**form, "password": PASSWORD})
        assert accepted.status_code == 303 and accepted.headers["location"] == "/runs"
