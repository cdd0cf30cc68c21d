"""Our client and CLI against a real server process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headwater import EventLimits, EventValidationError, Headwater, SendRejectedError
from tests.harness import EVENT_KEY, SIGNING_KEY, RunningServer, running_server

USER = {"external_id": "645ea000129f1c40109ca7ad", "email": "taylor@example.com"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("client")) as running:
        yield running


def read(server: RunningServer, event_id: str) -> dict[str, object]:
    data = httpx.get(f"{server.url}/v1/events/{event_id}").json()["data"]
    assert isinstance(data, dict)
    return data


async def test_async_send_of_one_event(server: RunningServer) -> None:
    name = f"app/{uuid.uuid4().hex[:8]}"
    async with Headwater(app_id="shop", base_url=server.url) as hw:
        result = await hw.send({"name": name, "data": {"billingPlan": "pro"}, "user": USER})
    assert len(result.ids) == 1
    stored = read(server, result.ids[0])
    assert (stored["name"], stored["data"], stored["user"]) == (name, {"billingPlan": "pro"}, USER)


def test_sync_send_of_a_list_keeps_order(server: RunningServer) -> None:
    names = [f"app/{uuid.uuid4().hex[:8]}" for _ in range(3)]
    with Headwater(app_id="shop", base_url=server.url) as hw:
        ids = hw.send_sync([{"name": n} for n in names]).ids
    assert [read(server, i)["name"] for i in ids] == names


def test_client_finds_the_server_through_inngest_env(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INNGEST_DEV", server.url)
    with Headwater(app_id="shop") as hw:
        (event_id,) = hw.send_sync({"name": "app/env"}).ids
    assert read(server, event_id)["name"] == "app/env"


def test_big_lists_are_split_but_ids_stay_in_order(server: RunningServer) -> None:
    name = f"app/{uuid.uuid4().hex[:8]}"
    with Headwater(app_id="shop", base_url=server.url, limits=EventLimits(max_events=7)) as hw:
        ids = hw.send_sync([{"name": name, "data": {"i": i}} for i in range(30)]).ids
    assert len(ids) == 30
    assert [read(server, i)["data"] for i in ids[::7]] == [{"i": i} for i in range(0, 30, 7)]


def test_bad_events_fail_before_any_request(server: RunningServer) -> None:
    name = f"app/{uuid.uuid4().hex[:8]}"
    with (
        Headwater(app_id="shop", base_url=server.url) as hw,
        pytest.raises(EventValidationError) as caught,
    ):
        hw.send_sync([{"name": name}, {"name": name, "ts": "now"}])
    assert str(caught.value) == "event 1: ts must be an integer (milliseconds)"
    listed = httpx.get(f"{server.url}/v1/events", params={"name": name}).json()["data"]
    assert listed == []


def test_production_rejection_carries_the_server_message(tmp_path: Path) -> None:
    with running_server(tmp_path, production=True) as prod:
        with (
            Headwater(app_id="shop", base_url=prod.url, event_key="wrong") as hw,
            pytest.raises(SendRejectedError) as caught,
        ):
            hw.send_sync({"name": "app/a"})
        assert str(caught.value) == "Event key not found" and caught.value.status == 401
        with Headwater(app_id="shop", base_url=prod.url, event_key=EVENT_KEY) as hw:
            assert len(hw.send_sync({"name": "app/a"}).ids) == 1


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def test_cli_send_and_events(server: RunningServer) -> None:
    name = f"app/{uuid.uuid4().hex[:8]}"
    sent = run_cli(
        "send",
        name,
        "--data",
        '{"plan": "pro"}',
        "--user",
        '{"external_id": "u1"}',
        "--url",
        server.url,
    )
    assert sent.returncode == 0, sent.stderr
    (event_id,) = sent.stdout.split()
    assert read(server, event_id)["data"] == {"plan": "pro"}
    table = run_cli("events", "--name", name, "--url", server.url)
    assert table.returncode == 0, table.stderr
    assert event_id in table.stdout and name in table.stdout


def test_cli_send_reports_bad_json_and_bad_events(server: RunningServer) -> None:
    bad_json = run_cli("send", "app/a", "--data", "{nope", "--url", server.url)
    assert bad_json.returncode == 2 and "--data is not valid JSON" in bad_json.stderr
    reserved = run_cli("send", "inngest/x", "--url", server.url)
    assert (
        reserved.returncode == 2
        and "event 0: name must not start with 'inngest/'" in reserved.stderr
    )


def test_cli_events_in_production_uses_the_signing_key(tmp_path: Path) -> None:
    with running_server(tmp_path, production=True) as prod:
        denied = run_cli("events", "--url", prod.url, env={"HEADWATER_SIGNING_KEY": ""})
        assert denied.returncode == 2 and "Authentication failed" in denied.stderr
        allowed = run_cli("events", "--url", prod.url, "--signing-key", SIGNING_KEY)
        assert allowed.returncode == 0, allowed.stderr


def test_dev_mode_warns_when_it_listens_beyond_this_machine(tmp_path: Path) -> None:
    # Given a dev server on every address (the last --host wins), and one on loopback
    with running_server(tmp_path / "open", extra_args=["--host", "0.0.0.0"]) as open_server:
        open_log = open_server.log()
    with running_server(tmp_path / "loopback") as loopback:
        loopback_log = loopback.log()
    # Then only the first warns that anyone who can reach it is trusted
    assert "dev mode on 0.0.0.0 is open to anyone" in " ".join(open_log.split()), open_log
    assert "headwater start" in open_log
    assert "is open to anyone" not in loopback_log
