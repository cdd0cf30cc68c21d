"""Durable runs end to end: a real server process runs the functions of tests/integration/apps/shop.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, fresh_postgres_schema
from tests.harness import RunningServer

APP = "tests.integration.apps.shop:hw"


class Shop:
    def __init__(self, server: RunningServer, trace: Path) -> None:
        self.server = server
        self.trace = trace
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def send(self, event: dict[str, Any]) -> str:
        response = self.http.post("/e/k", json=event)
        assert response.status_code == 200, response.text
        return str(response.json()["ids"][0])

    def runs(self, event_id: str) -> list[dict[str, Any]]:
        data = self.http.get(f"/v1/events/{event_id}/runs").json()["data"]
        assert isinstance(data, list)
        return data

    def wait_for_runs(
        self, event_id: str, count: int = 1, *, final: bool = True, timeout: float = 20
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = self.runs(event_id)
            if len(runs) >= count and (
                not final
                or all(r["status"] in {"Completed", "Failed", "Cancelled", "Skipped"} for r in runs)
            ):
                return runs
            time.sleep(0.05)
        raise AssertionError(f"runs of {event_id} did not finish: {runs}\n{self.server.log()}")

    def close(self) -> None:
        self.http.close()

    def traced(self, prefix: str) -> list[str]:
        if not self.trace.exists():
            return []
        return [line for line in self.trace.read_text().splitlines() if line.startswith(prefix)]


def start_shop(data_dir: Path, db_url: str | None) -> RunningServer:
    trace = data_dir / "trace.log"
    return RunningServer(
        data_dir,
        db_url=db_url,
        env={"SHOP_TRACE": str(trace), "HEADWATER_RETRY_BASE_MS": "50"},
        extra_args=[APP],
    )


@pytest.fixture(scope="module", params=BACKENDS)
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    data_dir = tmp_path_factory.mktemp("shop")
    if request.param == "sqlite":
        server = start_shop(data_dir, None).start()
        shop = Shop(server, data_dir / "trace.log")
        try:
            yield shop
        finally:
            shop.close()
            server.stop()
    else:
        with fresh_postgres_schema() as url:
            server = start_shop(data_dir, url).start()
            shop = Shop(server, data_dir / "trace.log")
            try:
                yield shop
            finally:
                shop.close()
                server.stop()


def key() -> str:
    return uuid.uuid4().hex[:10]


def test_steps_sleep_and_complete_with_each_step_run_once(shop: Shop) -> None:
    account = key()
    event_id = shop.send(
        {
            "name": "app/account.created",
            "data": {"accountId": account, "billingPlan": "pro", "sleep": 0.5},
        }
    )
    (run,) = shop.wait_for_runs(event_id)
    assert run["status"] == "Completed", run
    assert run["output"] == {
        "greeting": f"hello {account}",
        "account": {"id": account, "plan": "pro"},
    }
    assert run["function_id"] == "shop-welcome" and run["event_id"] == event_id
    assert shop.traced(f"welcome:load:{account}") == [f"welcome:load:{account}"]
    assert shop.traced(f"welcome:greet:{account}") == [f"welcome:greet:{account}"]
    same = shop.http.get(f"/v1/runs/{run['run_id']}").json()["data"]
    assert same["status"] == "Completed" and same["output"] == run["output"]


def test_the_if_filter_decides_which_events_start_runs(shop: Shop) -> None:
    event_id = shop.send(
        {"name": "app/account.created", "data": {"accountId": key(), "billingPlan": "free"}}
    )
    time.sleep(0.3)
    assert shop.runs(event_id) == []


def test_a_step_failing_once_is_retried_at_the_step(shop: Shop) -> None:
    k = key()
    (run,) = shop.wait_for_runs(shop.send({"name": "app/flaky", "data": {"key": k}}))
    assert run["status"] == "Completed" and run["output"] == "ok"
    assert len(shop.traced(f"flaky:{k}")) == 2


def test_non_retriable_error_fails_after_one_execution(shop: Shop) -> None:
    k = key()
    (run,) = shop.wait_for_runs(shop.send({"name": "app/fatal", "data": {"key": k}}))
    assert run["status"] == "Failed"
    assert (
        run["error"]["name"] == "NonRetriableError" and run["error"]["message"] == "do not retry me"
    )
    assert len(shop.traced(f"fatal:{k}")) == 1


def test_after_the_last_attempt_the_step_raises_in_the_function(shop: Shop) -> None:
    k = key()
    (run,) = shop.wait_for_runs(shop.send({"name": "app/exhausted", "data": {"key": k}}))
    assert run["status"] == "Completed" and run["output"] == "gave up after: still broken"
    assert len(shop.traced(f"exhausted:{k}")) == 3  # retries=2: three attempts


def test_sync_functions_and_wildcard_triggers(shop: Shop) -> None:
    k = key()
    (run,) = shop.wait_for_runs(shop.send({"name": "app/report.daily", "data": {"key": k}}))
    assert run["status"] == "Completed" and run["output"] == {
        "name": "app/report.daily",
        "total": 6,
    }
    assert len(shop.traced(f"report:query:{k}")) == 1 and len(shop.traced(f"report:sum:{k}")) == 1


def test_a_duplicate_event_id_is_stored_but_its_run_is_skipped(shop: Shop) -> None:
    k = key()
    first = shop.send({"name": "app/flaky", "id": f"dedupe-{k}", "data": {"key": k}})
    second = shop.send({"name": "app/flaky", "id": f"dedupe-{k}", "data": {"key": k}})
    assert shop.wait_for_runs(first)[0]["status"] == "Completed"
    (skipped,) = shop.wait_for_runs(second)
    assert skipped["status"] == "Skipped" and skipped["reason"] == "duplicate event id"


def test_an_event_ts_in_the_future_delays_the_start(shop: Shop) -> None:
    k = key()
    start = int(time.time() * 1000) + 1500
    event_id = shop.send({"name": "app/report.delayed", "ts": start, "data": {"key": k}})
    time.sleep(0.5)
    (queued,) = shop.runs(event_id)
    assert queued["status"] == "Queued" and shop.traced(f"report:query:{k}") == []
    (run,) = shop.wait_for_runs(event_id)
    assert run["status"] == "Completed"
    assert int(time.time() * 1000) >= start


def test_cancelling_a_sleeping_run(shop: Shop) -> None:
    k = key()
    event_id = shop.send({"name": "app/sleep.long", "data": {"key": k}})
    deadline = time.monotonic() + 10
    while not shop.traced(f"sleeper:before:{k}") and time.monotonic() < deadline:
        time.sleep(0.05)
    (run,) = shop.runs(event_id)
    response = shop.http.delete(f"/v1/runs/{run['run_id']}")
    assert response.status_code == 200 and response.json()["data"]["status"] == "Cancelled"
    assert shop.http.get(f"/v1/runs/{run['run_id']}").json()["data"]["status"] == "Cancelled"
    again = shop.http.delete(f"/v1/runs/{run['run_id']}")
    assert again.status_code == 409
    assert shop.http.delete("/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV").status_code == 404


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_survives_a_crash_during_its_sleep(backend: str, tmp_path: Path) -> None:
    # Given a run that finished its first step and is sleeping
    def crash_and_resume(db_url: str | None) -> None:
        server = start_shop(tmp_path, db_url).start()
        shop = Shop(server, tmp_path / "trace.log")
        k = key()
        event_id = shop.send({"name": "app/sleep.long", "data": {"key": k, "seconds": 2}})
        deadline = time.monotonic() + 10
        while not shop.traced(f"sleeper:before:{k}") and time.monotonic() < deadline:
            time.sleep(0.05)
        # When the server is killed and started again
        server.kill()
        shop.close()
        restarted = start_shop(tmp_path, db_url).start()
        shop = Shop(restarted, tmp_path / "trace.log")
        try:
            # Then the run completes, and the step before the sleep did not run again
            (run,) = shop.wait_for_runs(event_id, timeout=40)
            assert run["status"] == "Completed" and run["output"] == "woke"
            assert len(shop.traced(f"sleeper:before:{k}")) == 1
            assert len(shop.traced(f"sleeper:after:{k}")) == 1
        finally:
            shop.close()
            restarted.stop()

    if backend == "sqlite":
        crash_and_resume(None)
    else:
        with fresh_postgres_schema() as url:
            crash_and_resume(url)
