"""wait_for_event, send_event and cancel_on end to end, against a real server on both backends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKENDS, fresh_postgres_schema
from tests.harness import RunningServer
from tests.integration.test_engine_runs import Shop, key, start_shop


@pytest.fixture(scope="module", params=BACKENDS)
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    data_dir = tmp_path_factory.mktemp("waits")

    def run(db_url: str | None) -> Iterator[Shop]:
        server = start_shop(data_dir, db_url).start()
        shop = Shop(server, data_dir / "trace.log")
        try:
            yield shop
        finally:
            shop.close()
            server.stop()

    if request.param == "sqlite":
        yield from run(None)
    else:
        with fresh_postgres_schema() as url:
            yield from run(url)


def wait_for_trace(shop: Shop, line: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not shop.traced(line):
        if time.monotonic() > deadline:
            raise AssertionError(f"{line!r} never traced\n{shop.server.log()}")
        time.sleep(0.05)


def test_a_matching_event_resolves_the_wait(shop: Shop) -> None:
    account = key()
    event_id = shop.send({"name": "app/approval.requested", "data": {"accountId": account}})
    wait_for_trace(shop, f"approval:waiting:{account}")
    shop.send({"name": "app/approval.replied", "data": {"accountId": "someone-else", "ok": False}})
    shop.send({"name": "app/approval.replied", "data": {"accountId": account, "ok": True}})
    (run,) = shop.wait_for_runs(event_id)
    assert run["status"] == "Completed", run
    assert run["output"]["reply"] == {"accountId": account, "ok": True}
    (sent_id,) = run["output"]["sent"]
    sent = shop.http.get(f"/v1/events/{sent_id}").json()["data"]
    assert sent["name"] == "app/approval.done" and sent["data"] == {"accountId": account}
    done = shop.http.get("/v1/events", params={"name": "app/approval.done"}).json()["data"]
    assert [e["internal_id"] for e in done if e["data"]["accountId"] == account] == [sent_id]


def test_a_wait_times_out_with_none(shop: Shop) -> None:
    account = key()
    event_id = shop.send(
        {"name": "app/approval.requested", "data": {"accountId": account, "timeout": 0.5}}
    )
    (run,) = shop.wait_for_runs(event_id)
    assert run["status"] == "Completed" and run["output"]["reply"] is None


def test_lookback_matches_an_event_received_before_the_wait(shop: Shop) -> None:
    account = key()
    shop.send({"name": "app/approval.replied", "data": {"accountId": account, "early": True}})
    time.sleep(0.05)
    event_id = shop.send(
        {"name": "app/approval.requested", "data": {"accountId": account, "lookback": 60}}
    )
    (run,) = shop.wait_for_runs(event_id)
    assert run["output"]["reply"] == {"accountId": account, "early": True}


def test_without_lookback_an_earlier_event_does_not_count(shop: Shop) -> None:
    account = key()
    shop.send({"name": "app/approval.replied", "data": {"accountId": account, "early": True}})
    time.sleep(0.05)
    event_id = shop.send(
        {"name": "app/approval.requested", "data": {"accountId": account, "timeout": 1}}
    )
    (run,) = shop.wait_for_runs(event_id)
    assert run["output"]["reply"] is None


def test_sync_wait_with_an_if_expression(shop: Shop) -> None:
    account = key()
    event_id = shop.send({"name": "app/approval-sync.requested", "data": {"accountId": account}})
    wait_for_trace(shop, f"approval-sync:waiting:{account}")
    shop.send({"name": "app/approval.replied", "data": {"accountId": account, "approved": False}})
    time.sleep(0.3)
    assert shop.runs(event_id)[0]["status"] == "Running"
    shop.send({"name": "app/approval.replied", "data": {"accountId": account, "approved": True}})
    (run,) = shop.wait_for_runs(event_id)
    assert run["output"] == {"reply": {"accountId": account, "approved": True}}


def test_cancel_on_cancels_a_sleeping_run(shop: Shop) -> None:
    account = key()
    other = key()
    event_id = shop.send(
        {"name": "app/subscription.started", "data": {"accountId": account, "seconds": 3}}
    )
    other_id = shop.send(
        {"name": "app/subscription.started", "data": {"accountId": other, "seconds": 1}}
    )
    wait_for_trace(shop, f"cancellable:before:{account}")
    shop.send({"name": "app/subscription.ended", "data": {"accountId": account}})
    (run,) = shop.wait_for_runs(event_id)
    assert run["status"] == "Cancelled" and run["reason"].startswith("cancelled by event")
    (untouched,) = shop.wait_for_runs(other_id)
    assert untouched["status"] == "Completed"
    time.sleep(3.2)
    assert shop.traced(f"cancellable:after:{account}") == []


def test_cancel_on_catches_an_event_that_came_before_the_run_started(shop: Shop) -> None:
    account = key()
    start = int(time.time() * 1000) + 1000
    event_id = shop.send(
        {
            "name": "app/subscription.started",
            "ts": start,
            "data": {"accountId": account, "seconds": 1},
        }
    )
    shop.send({"name": "app/subscription.ended", "data": {"accountId": account}})
    (run,) = shop.wait_for_runs(event_id)
    assert run["status"] == "Cancelled"
    assert shop.traced(f"cancellable:before:{account}") == []


def test_finish_timeout_cancels_the_run_at_its_deadline(shop: Shop) -> None:
    k = key()
    started = time.monotonic()
    (run,) = shop.wait_for_runs(shop.send({"name": "app/timed", "data": {"key": k}}))
    assert run["status"] == "Cancelled" and "finish timeout" in run["reason"]
    assert time.monotonic() - started < 4  # at the 1 s deadline, not after the 5 s sleep
    assert shop.traced(f"timed:before:{k}") and not shop.traced(f"timed:after:{k}")


def test_invoke_returns_the_callee_result_and_raises_its_failure(shop: Shop) -> None:
    event_id = shop.send({"name": "app/parent", "data": {"n": 21}})
    (run,) = shop.wait_for_runs(event_id)
    assert run["status"] == "Completed", run
    assert run["output"] == {"result": {"doubled": 42}, "failure": "cannot double that"}


def test_on_failure_runs_with_the_failure_and_system_events_are_listed(shop: Shop) -> None:
    k = key()
    event_id = shop.send({"name": "app/doomed", "data": {"key": k}})
    (run,) = shop.wait_for_runs(event_id)
    assert run["status"] == "Failed"
    wait_for_trace(shop, f"doomed-failure:{k}:doomed from the start")
    finished = shop.http.get(
        "/v1/events", params={"name": "inngest/function.finished", "limit": 100}
    ).json()["data"]
    (announcement,) = [e for e in finished if e["data"]["run_id"] == run["run_id"]]
    assert announcement["data"]["function_id"] == "shop-doomed"
    assert announcement["data"]["error"]["message"] == "doomed from the start"
    assert "user" not in announcement["data"]["event"]
    failed = shop.http.get(
        "/v1/events", params={"name": "inngest/function.failed", "limit": 100}
    ).json()["data"]
    assert [e["id"] for e in failed if e["data"]["run_id"] == run["run_id"]] == [run["run_id"]]
    assert all(
        not e["name"].startswith("inngest/")
        for e in shop.http.get("/v1/events", params={"limit": 100}).json()["data"]
    )


def test_a_step_output_over_4_mib_fails_the_run_clearly(shop: Shop) -> None:
    (run,) = shop.wait_for_runs(shop.send({"name": "app/too-big", "data": {}}))
    assert run["status"] == "Failed"
    assert (
        run["error"]["name"] == "StepLimitError"
        and "the limit is 4194304" in run["error"]["message"]
    )


def test_parallel_steps_cannot_take_a_run_past_its_step_limit(shop: Shop) -> None:
    (run,) = shop.wait_for_runs(shop.send({"name": "app/too-many", "data": {}}))
    assert run["status"] == "Failed", run
    assert run["error"]["name"] == "StepLimitError"
    assert "more than 1000 steps" in run["error"]["message"]


def test_sync_functions_invoke_and_send_events(shop: Shop) -> None:
    (run,) = shop.wait_for_runs(shop.send({"name": "app/sync-chain", "data": {"n": 4}}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"doubled": {"doubled": 8}, "sent": 1}


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_event_stored_while_no_engine_ran_still_resolves_the_wait(
    backend: str, tmp_path: Path
) -> None:
    # Given a run waiting for a reply, and its server killed
    def scenario(db_url: str | None) -> None:
        account = key()
        server = start_shop(tmp_path, db_url).start()
        shop = Shop(server, tmp_path / "trace.log")
        event_id = shop.send({"name": "app/approval.requested", "data": {"accountId": account}})
        wait_for_trace(shop, f"approval:waiting:{account}")
        time.sleep(0.3)  # let the wait be stored
        server.kill()
        shop.close()
        # When the reply reaches a server that runs no functions (nothing matches it)
        bare = RunningServer(tmp_path, db_url=db_url).start()  # same database and key file
        with httpx.Client(base_url=bare.url) as http:
            assert (
                http.post(
                    "/e/k", json={"name": "app/approval.replied", "data": {"accountId": account}}
                ).status_code
                == 200
            )
        bare.stop()
        # Then the restarted app finds it and the run completes with it
        restarted = start_shop(tmp_path, db_url).start()
        shop = Shop(restarted, tmp_path / "trace.log")
        try:
            (run,) = shop.wait_for_runs(event_id, timeout=40)
            assert run["status"] == "Completed", run
            assert run["output"]["reply"] == {"accountId": account}
        finally:
            shop.close()
            restarted.stop()

    if backend == "sqlite":
        scenario(None)
    else:
        with fresh_postgres_schema() as url:
            scenario(url)
