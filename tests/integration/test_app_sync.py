"""POST /fn/register and the app endpoints on a real app (in process), on both backends: replies as
the SDKs read them, apps and functions stored, re-syncs, archiving, and a restart keeping them."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.config import Mode, ServerSettings
from headwater.crypto import KeyFile
from headwater.engine.runtime import Engine
from headwater.server.app import HeadwaterApp, create_app
from tests.harness import SIGNING_KEY, free_port

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "inngest-sdk"


def register_body(sdk: str) -> dict[str, Any]:
    path = FIXTURES / f"register_{sdk}.json"
    if not path.exists():
        pytest.skip(f"fixture {path} not present")
    body: dict[str, Any] = json.loads(path.read_text())["body"]
    return body


class Client(httpx.AsyncClient):
    app: HeadwaterApp


@asynccontextmanager
async def serving(app: HeadwaterApp) -> AsyncIterator[Client]:
    """The app started (its lifespan: store open, engine started) and a client calling it."""
    async with app.starlette.router.lifespan_context(app.starlette):
        transport = httpx.ASGITransport(app=app)
        async with Client(transport=transport, base_url="http://headwater") as client:
            client.app = app
            yield client


def make_client(db_url: str, tmp_path: Path, **settings: Any) -> Any:
    config = ServerSettings(data_dir=tmp_path, db_url=db_url, **settings)
    keys = KeyFile.load_or_create(tmp_path / "keys.json")
    return serving(create_app(config, keys))


def engine_of(client: Client) -> Engine:
    engine: Engine = client.app.state.engine
    return engine


async def test_register_stores_the_app_and_reports_modified(
    server_db_url: str, tmp_path: Path
) -> None:
    body = register_body("ts")
    slugs = [f["id"] for f in body["functions"]]
    headers = {"Authorization": "Bearer undefined", "X-Inngest-Expected-Server-Kind": "dev"}
    async with make_client(server_db_url, tmp_path) as client:
        first = await client.post("/fn/register", json=body, headers=headers)
        assert first.status_code == 200, first.text
        reply = first.json()
        assert reply["ok"] is True and reply["modified"] is True
        assert reply["app_id"] and reply["sync_id"]
        engine = engine_of(client)
        assert sorted(f.slug for f in engine.registry) == sorted(slugs)
        assert engine.worker is not None  # the first functions start the worker

        again = await client.post("/fn/register", json=body, headers=headers)
        assert again.json()["modified"] is False
        assert again.json()["app_id"] == reply["app_id"]

        fewer = copy.deepcopy(body)
        fewer["functions"] = [f for f in fewer["functions"] if not f["id"].endswith("-fails")]
        third = await client.post("/fn/register", json=fewer, headers=headers)
        assert third.json()["modified"] is True
        assert engine.registry.get("acceptance-ts-app-fails") is None
        apps = (await client.get("/v1/apps")).json()["data"]
        assert [a["app_id"] for a in apps] == ["acceptance-ts-app"]
        assert "acceptance-ts-app-fails" not in apps[0]["functions"]
        assert len(apps[0]["functions"]) == 4

    # A restart loads the synced app from the store.
    async with make_client(server_db_url, tmp_path) as client:
        engine = engine_of(client)
        assert sorted(f.slug for f in engine.registry) == sorted(
            s for s in slugs if not s.endswith("-fails")
        )
        child = engine.registry.get("acceptance-ts-app-child")
        assert (
            child is not None
            and child.url == body["functions"][0]["steps"]["step"]["runtime"]["url"]
        )


async def test_both_sdks_register_side_by_side(server_db_url: str, tmp_path: Path) -> None:
    async with make_client(server_db_url, tmp_path) as client:
        for sdk in ("py", "ts"):
            response = await client.post("/fn/register", json=register_body(sdk))
            assert response.status_code == 200, response.text
        assert len(engine_of(client).registry) == 10


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b"{not json", {}, 400, "Invalid request: "),
        (b'{"url": "http://a/api/inngest", "functions": []}', {}, 400, "App ID required"),
        (
            b'{"appName": "a", "url": "http://a/api/inngest", "functions": []}',
            {"X-Inngest-Expected-Server-Kind": "cloud"},
            400,
            "Expected server kind cloud, got dev",
        ),
        (
            b'{"appName": "a", "url": "http://a/x", "functions": [{"id": "a-f", "steps": {}}]}',
            {},
            400,
            "At least one function is invalid: ",
        ),
    ],
)
async def test_errors_carry_status_for_the_ts_sdk(
    sqlite_url: str, tmp_path: Path, body: bytes, headers: dict[str, str], status: int, error: str
) -> None:
    async with make_client(sqlite_url, tmp_path) as client:
        response = await client.post("/fn/register", content=body, headers=headers)
        assert response.status_code == status
        assert response.json()["status"] == status
        assert response.json()["error"].startswith(error)


async def test_a_function_slug_taken_by_an_in_process_function_is_refused(
    sqlite_url: str, tmp_path: Path
) -> None:
    from headwater.sdk.functions import define_function

    local = define_function("acceptance-py-app", lambda ctx: 1, id="child", triggers=[])
    config = ServerSettings(data_dir=tmp_path, db_url=sqlite_url)
    app = create_app(config, KeyFile.load_or_create(tmp_path / "k.json"), functions=[local])
    async with serving(app) as client:
        response = await client.post("/fn/register", json=register_body("py"))
        assert response.status_code == 400
        assert "acceptance-py-app-child" in response.json()["error"]


async def test_production_requires_the_signing_key(sqlite_url: str, tmp_path: Path) -> None:
    settings = {
        "mode": Mode.PRODUCTION,
        "signing_key": SIGNING_KEY,
        "event_keys": frozenset({"k"}),
    }
    async with make_client(sqlite_url, tmp_path, **settings) as client:
        denied = await client.post(
            "/fn/register", json=register_body("ts"), headers={"Authorization": "Bearer undefined"}
        )
        assert denied.status_code == 401 and denied.json()["status"] == 401
        allowed = await client.post(
            "/fn/register",
            json=register_body("ts"),
            headers={"Authorization": f"Bearer {SIGNING_KEY}"},
        )
        assert allowed.status_code == 200, allowed.text


async def test_sync_of_an_unreachable_app_is_a_502(sqlite_url: str, tmp_path: Path) -> None:
    async with make_client(sqlite_url, tmp_path) as client:
        url = f"http://127.0.0.1:{free_port()}/api/inngest"
        response = await client.put("/v1/apps/sync", json={"url": url})
        assert response.status_code == 502
        assert response.json()["code"] == "app_unreachable"
        assert (await client.put("/v1/apps/sync", json={"url": "ftp://x"})).status_code == 400
