"""Bulk cancellations (POST/GET/DELETE /v1/cancellations) end to end: a real server on both
backends, the shop app's sleeping functions as the runs to cancel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from headwater.protocol.ids import new_ulid
from headwater.store import open_store
from headwater.store.cancellations import CancellationJob, CancellationState
from tests.conftest import BACKENDS, fresh_postgres_schema
from tests.integration.test_engine_runs import Shop, key, start_shop

PAST = "2024-01-01T00:00:00.000Z"


@pytest.fixture(scope="module", params=BACKENDS)
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    data_dir = tmp_path_factory.mktemp("cancellations")

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


def at(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")


def created_ms(run: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(run["created_at"]).timestamp() * 1000)


def status(shop: Shop, run: dict[str, Any]) -> str:
    body = shop.http.get(f"/v1/runs/{run['run_id']}").json()["data"]
    return str(body["status"])


def sleepers(shop: Shop, group: str, count: int) -> list[dict[str, Any]]:
    """`count` runs of the `sleeper` function (their events' data.group `group`), once they
    are all Running (asleep)."""
    events = [
        {"name": "app/sleep.long", "data": {"key": f"{group}-{i}", "group": group}}
        for i in range(count)
    ]
    response = shop.http.post("/e/k", json=events)
    assert response.status_code == 200, response.text
    runs = [shop.wait_for_runs(event_id, final=False)[0] for event_id in response.json()["ids"]]
    deadline = time.monotonic() + 20
    for run in runs:
        while status(shop, run) != "Running":
            assert time.monotonic() < deadline, shop.server.log()
            time.sleep(0.02)
    return runs


def start(shop: Shop, **fields: Any) -> dict[str, Any]:
    body = {"app_id": "shop", "function_id": "sleeper"} | fields
    response = shop.http.post("/v1/cancellations", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()["data"]
    return job


def wait_until_ended(shop: Shop, job_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = shop.http.get(f"/v1/cancellations/{job_id}").json()["data"]
        if job["state"] != "Running":
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"cancellation {job_id} never ended: {job}\n{shop.server.log()}")
        time.sleep(0.05)


def cancel_all(shop: Shop, runs: list[dict[str, Any]]) -> None:
    for run in runs:
        shop.http.delete(f"/v1/runs/{run['run_id']}")


def test_a_job_cancels_the_matching_runs_in_its_window_and_no_others(shop: Shop) -> None:
    # Given sleeping runs: one before the window, three in it (of which one of another group),
    # and one after it
    group = key()
    (early,) = sleepers(shop, group, 1)
    time.sleep(0.01)
    inside = sleepers(shop, group, 2) + sleepers(shop, f"{group}-other", 1)
    time.sleep(0.01)
    (late,) = sleepers(shop, group, 1)
    after = created_ms(early) + 1
    before = max(created_ms(run) for run in inside) + 1
    assert after <= min(created_ms(run) for run in inside) and created_ms(late) >= before
    # When a cancellation is posted for the window, only for this group
    job = start(
        shop,
        started_after=at(after),
        started_before=at(before),
        **{"if": f"event.data.group == '{group}'"},
    )
    # Then it is stored at once, running
    assert job["state"] == "Running" and job["cancelled"] == 0 and job["ended_at"] is None
    assert job["if"] == f"event.data.group == '{group}'"
    assert (job["app_id"], job["function_id"]) == ("shop", "sleeper")
    # And it completes having cancelled the two matching runs in the window, and no other
    ended = wait_until_ended(shop, job["id"])
    assert (ended["state"], ended["cancelled"], ended["error"]) == ("Completed", 2, None)
    assert ended["ended_at"] is not None
    assert [status(shop, run) for run in inside] == ["Cancelled", "Cancelled", "Running"]
    assert status(shop, early) == "Running" and status(shop, late) == "Running"
    reason = shop.http.get(f"/v1/runs/{inside[0]['run_id']}").json()["data"]["reason"]
    assert job["id"] in reason
    # And each cancellation is announced as any other
    announced = shop.http.get(
        "/v1/events", params={"name": "inngest/function.cancelled", "limit": 100}
    ).json()["data"]
    cancelled_ids = {e["data"]["run_id"] for e in announced}
    assert {inside[0]["run_id"], inside[1]["run_id"]} <= cancelled_ids
    assert inside[2]["run_id"] not in cancelled_ids
    # And it is listed
    listed = shop.http.get("/v1/cancellations").json()["data"]
    assert ended in listed
    cancel_all(shop, [early, inside[2], late])


def test_without_if_every_active_run_in_the_window_is_cancelled(shop: Shop) -> None:
    runs = sleepers(shop, key(), 3)
    window = [created_ms(run) for run in runs]
    job = start(shop, started_after=at(min(window)), started_before=at(max(window) + 1))
    ended = wait_until_ended(shop, job["id"])
    assert (ended["state"], ended["cancelled"]) == ("Completed", 3)
    assert {status(shop, run) for run in runs} == {"Cancelled"}


def test_a_job_can_be_stopped_and_the_runs_it_cancelled_stay_cancelled(shop: Shop) -> None:
    # Given a cancellation of many sleeping runs (four pages of the job) that has saved a page
    runs = sleepers(shop, key(), 200)
    window = [created_ms(run) for run in runs]
    job = start(shop, started_after=at(min(window)), started_before=at(max(window) + 1))
    deadline = time.monotonic() + 20
    while shop.http.get(f"/v1/cancellations/{job['id']}").json()["data"]["cancelled"] == 0:
        assert time.monotonic() < deadline, shop.server.log()
        time.sleep(0.005)
    # When it is stopped
    response = shop.http.delete(f"/v1/cancellations/{job['id']}")
    # Then it ends Stopped, before it cancelled them all, having counted every run it cancelled
    assert response.status_code == 200, response.text
    stopped = response.json()["data"]
    assert stopped["state"] == "Stopped" and stopped["ended_at"] is not None
    time.sleep(0.3)
    statuses = [status(shop, run) for run in runs]
    cancelled = statuses.count("Cancelled")
    assert 0 < stopped["cancelled"] == cancelled < len(runs)
    # And the runs it cancelled stay cancelled, it cancels no more, and it stays stopped
    time.sleep(0.5)
    assert [status(shop, run) for run in runs] == statuses
    later = shop.http.get(f"/v1/cancellations/{job['id']}").json()["data"]
    assert later["state"] == "Stopped" and later["cancelled"] == stopped["cancelled"]
    again = shop.http.delete(f"/v1/cancellations/{job['id']}")
    assert again.status_code == 409 and again.json()["code"] == "ended"
    cancel_all(shop, [run for run, s in zip(runs, statuses, strict=True) if s == "Running"])


def test_the_list_pages_newest_first(shop: Shop) -> None:
    # Given three jobs (over a past window: they end at once)
    ids = [start(shop, started_before=PAST)["id"] for _ in range(3)]
    # When the list is read two at a time, following next_cursor
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = shop.http.get("/v1/cancellations", params=params).json()
        seen += [job["id"] for job in body["data"]]
        cursor = body["metadata"]["next_cursor"]
        if cursor is None:
            break
    # Then each job comes once, newest first
    assert len(seen) == len(set(seen))
    assert [job_id for job_id in seen if job_id in ids] == sorted(ids, reverse=True)


def test_unknown_and_malformed_ids(shop: Shop) -> None:
    assert shop.http.get(f"/v1/cancellations/{new_ulid()}").status_code == 404
    assert shop.http.delete(f"/v1/cancellations/{new_ulid()}").status_code == 404
    bad = shop.http.get("/v1/cancellations/nope")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_id"
    job = wait_until_ended(shop, start(shop, started_before=PAST)["id"])
    assert job["state"] == "Completed" and job["cancelled"] == 0
    ended = shop.http.delete(f"/v1/cancellations/{job['id']}")
    assert ended.status_code == 409 and "Completed" in ended.json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"function_id": "sleeper", "started_before": PAST}, "app_id is required"),
        ({"app_id": "shop", "started_before": PAST}, "function_id is required"),
        ({"app_id": "shop", "function_id": "sleeper"}, "started_before is required"),
        (
            {"app_id": "shop", "function_id": "sleeper", "started_before": "yesterday"},
            "started_before",
        ),
        (
            {"app_id": "shop", "function_id": "sleeper", "started_before": "2999-01-01T00:00:00Z"},
            "started_before must not be in the future",
        ),
        (
            {
                "app_id": "shop",
                "function_id": "sleeper",
                "started_after": PAST,
                "started_before": "2023-01-01T00:00:00Z",
            },
            "started_after must be earlier than started_before",
        ),
        (
            {"app_id": "shop", "function_id": "sleeper", "started_before": PAST, "if": 3},
            "if must be a CEL expression",
        ),
        (
            {
                "app_id": "shop",
                "function_id": "sleeper",
                "started_before": PAST,
                "if": "event.data.x ==",
            },
            "invalid expression in if",
        ),
        ([1, 2], "the body must be a JSON object"),
    ],
)
def test_bad_requests_name_the_field(shop: Shop, body: object, message: str) -> None:
    response = shop.http.post("/v1/cancellations", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(message), response.json()


def test_bad_list_parameters_name_the_parameter(shop: Shop) -> None:
    for params, message in [({"limit": "0"}, "limit"), ({"cursor": "x"}, "cursor")]:
        response = shop.http.get("/v1/cancellations", params=params)
        assert response.status_code == 400 and response.json()["error"].startswith(message)


def test_a_job_left_by_a_dead_process_is_taken_over_and_a_live_ones_is_not(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'server.db'}"
    # Given sleeping runs left by a server that stopped
    first = Shop(start_shop(tmp_path, db_url).start(), tmp_path / "trace.log")
    try:
        runs = sleepers(first, key(), 3)
    finally:
        first.close()
        first.server.stop()
    # And two jobs over them stored as Running: one whose owner's lease expired (the process
    # died), one whose owner's lease still lives
    now = int(time.time() * 1000)
    window = [created_ms(run) for run in runs]

    def job() -> CancellationJob:
        return CancellationJob(
            job_id=new_ulid(),
            app_id="shop",
            function_id="sleeper",
            started_after=min(window),
            started_before=max(window) + 1,
            condition=None,
            state=CancellationState.RUNNING,
            cancelled=0,
            created_at=now,
            updated_at=now,
        )

    orphan, held = job(), job()

    async def store_jobs() -> None:
        store = open_store(db_url)
        await store.open()
        try:
            for stored, lease_until in ((orphan, now - 1), (held, now + 3_600_000)):
                await store.create_cancellation(stored)
                assert await store.claim_cancellation(stored.job_id, "gone", now - 10, lease_until)
        finally:
            await store.close()

    asyncio.run(store_jobs())
    # When a server starts on that database
    second = Shop(start_shop(tmp_path, db_url).start(), tmp_path / "trace.log")
    try:
        # Then it takes the orphan over and completes it
        ended = wait_until_ended(second, orphan.job_id)
        assert (ended["state"], ended["cancelled"]) == ("Completed", 3)
        assert {status(second, run) for run in runs} == {"Cancelled"}
        # And leaves the job another process holds alone
        kept = second.http.get(f"/v1/cancellations/{held.job_id}").json()["data"]
        assert (kept["state"], kept["cancelled"]) == ("Running", 0)
    finally:
        second.close()
        second.server.stop()
