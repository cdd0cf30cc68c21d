"""The endpoints SDKs call besides sync and ingest, on a real app (in process), on both backends:
GET /v0/runs/{id}/batch|actions (what an SDK fetches when a call says `use_api`), POST
/invoke/{slug}, and POST /v1/signals (not implemented: a clear 501)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from headwater.config import Mode, ServerSettings
from headwater.crypto import KeyFile
from headwater.sdk.context import Context
from headwater.sdk.functions import EventTrigger, define_function
from headwater.sdk.signatures import hash_signing_key
from headwater.server.app import create_app
from tests.harness import SIGNING_KEY
from tests.integration.test_app_sync import Client, serving


async def _double(ctx: Context) -> dict[str, Any]:
    doubled = await ctx.step.run("double", lambda: ctx.event.data["n"] * 2)
    label = await ctx.step.run("label", lambda: f"n={ctx.event.data['n']}")
    return {"doubled": doubled, "label": label}


DOUBLE = define_function("shop", _double, id="double", triggers=[EventTrigger("app/double", None)])


def app_for(db_url: str, tmp_path: Path, **settings: Any) -> Any:
    config = ServerSettings(data_dir=tmp_path, db_url=db_url, **settings)
    keys = KeyFile.load_or_create(tmp_path / "keys.json")
    return serving(create_app(config, keys, functions=[DOUBLE]))


async def finished_run(client: Client, event_id: str) -> dict[str, Any]:
    for _ in range(200):
        runs = (await client.get(f"/v1/events/{event_id}/runs")).json()["data"]
        if runs and runs[0]["status"] == "Completed":
            run: dict[str, Any] = runs[0]
            return run
        await asyncio.sleep(0.02)
    raise AssertionError(f"the run of {event_id} did not complete: {runs}")


async def test_a_runs_events_and_steps_are_served_as_the_sdks_fetch_them(
    server_db_url: str, tmp_path: Path
) -> None:
    async with app_for(server_db_url, tmp_path) as client:
        sent = await client.post("/e/k", json={"name": "app/double", "data": {"n": 21}})
        run = await finished_run(client, sent.json()["ids"][0])
        assert run["output"] == {"doubled": 42, "label": "n=21"}

        batch = await client.get(f"/v0/runs/{run['run_id']}/batch")
        assert batch.status_code == 200
        events = batch.json()
        assert [(e["name"], e["data"]) for e in events] == [("app/double", {"n": 21})]
        assert events[0]["user"] == {} and isinstance(events[0]["ts"], int)

        actions = await client.get(f"/v0/runs/{run['run_id']}/actions")
        assert actions.status_code == 200
        # Hashed step id → memo, as PROTOCOL §3.4 stores them.
        assert actions.json() == {
            hashlib.sha1(b"double").hexdigest(): {"data": 42},
            hashlib.sha1(b"label").hexdigest(): {"data": "n=21"},
        }


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v0/runs/not-a-ulid/batch", 400, "invalid_id"),
        ("/v0/runs/01J00000000000000000000000/actions", 404, "not_found"),
    ],
)
async def test_run_state_errors(
    sqlite_url: str, tmp_path: Path, path: str, status: int, code: str
) -> None:
    async with app_for(sqlite_url, tmp_path) as client:
        response = await client.get(path)
        assert response.status_code == status
        assert response.json()["code"] == code


async def test_invoke_starts_a_run_of_the_function(server_db_url: str, tmp_path: Path) -> None:
    async with app_for(server_db_url, tmp_path) as client:
        response = await client.post("/invoke/shop-double", json={"data": {"n": 4}})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == 200
        event = (await client.get(f"/v1/events/{body['id']}")).json()["data"]
        assert event["name"] == "inngest/function.invoked"
        assert event["data"] == {"n": 4, "_inngest": {"fn_id": "shop-double"}}
        run = await finished_run(client, body["id"])
        assert run["function_id"] == "shop-double"
        assert run["output"] == {"doubled": 8, "label": "n=4"}


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/invoke/shop-nothing", b'{"data": {}}', 404, "no function 'shop-nothing'"),
        ("/invoke/shop-double", b"{nope", 400, "Unable to read post data request"),
        ("/invoke/shop-double", b'{"data": [1]}', 400, "data must be a JSON object"),
        ("/invoke/shop-double", b"[]", 400, "the body must be a JSON object"),
    ],
)
async def test_invoke_errors_name_the_problem(
    sqlite_url: str, tmp_path: Path, path: str, body: bytes, status: int, message: str
) -> None:
    async with app_for(sqlite_url, tmp_path) as client:
        response = await client.post(path, content=body)
        assert response.status_code == status
        assert message in response.json()["error"]


async def test_signals_are_not_implemented(sqlite_url: str, tmp_path: Path) -> None:
    async with app_for(sqlite_url, tmp_path) as client:
        response = await client.post("/v1/signals", json={"signal": "s", "data": {}})
        assert response.status_code == 501
        assert response.json()["code"] == "not_implemented"
        assert "wait-for-signal is not implemented" in response.json()["error"]


async def test_production_requires_the_signing_key_as_the_sdks_send_it(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = {"mode": Mode.PRODUCTION, "signing_key": SIGNING_KEY, "event_keys": frozenset({"k"})}
    async with app_for(sqlite_url, tmp_path, **settings) as client:
        sent = await client.post("/e/k", json={"name": "app/double", "data": {"n": 1}})
        hashed = {"Authorization": f"Bearer {hash_signing_key(SIGNING_KEY)}"}
        for _ in range(200):
            runs = await client.get(f"/v1/events/{sent.json()['ids'][0]}/runs", headers=hashed)
            if runs.json()["data"] and runs.json()["data"][0]["status"] == "Completed":
                break
            await asyncio.sleep(0.02)
        run_id = runs.json()["data"][0]["run_id"]
        for path in (f"/v0/runs/{run_id}/batch", f"/v0/runs/{run_id}/actions"):
            assert (await client.get(path)).status_code == 401
            wrong = {"Authorization": "Bearer signkey-prod-" + "cd" * 32}
            assert (await client.get(path, headers=wrong)).status_code == 401
            assert (await client.get(path, headers=hashed)).status_code == 200
        invoke = "/invoke/shop-double"
        assert (await client.post(invoke, json={"data": {"n": 1}})).status_code == 401
        allowed = await client.post(invoke, json={"data": {"n": 1}}, headers=hashed)
        assert allowed.status_code == 200
