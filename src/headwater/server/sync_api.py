"""App sync over the Inngest protocol (PROTOCOL §3.2).

- `POST /fn/register`: an SDK registers its app and functions (both official SDKs' bodies); the
  reply is shaped so each SDK reports success or the exact error (error bodies carry `status`,
  which the TS SDK uses as its own reply status).
- `PUT /v1/apps/sync {url}`: ask the app at `url` to register (the server PUTs its URL, the SDK
  then POSTs /fn/register here); `GET /v1/apps`: the synced apps and their functions.
- `AppSyncer`: those PUTs, and the re-sync every 5 s of the apps given to `headwater dev -u URL`
  and of those found on this machine (server/discovery.py), probed again on every round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any, Final

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.clock import now_ms
from headwater.config import Mode, ServerSettings
from headwater.engine.apps import RegistrationError, app_uuid, parse_registration
from headwater.engine.drivers.http import canonical_json, signature
from headwater.engine.runtime import Engine
from headwater.errors import FunctionDefinitionError, StoreError
from headwater.server.auth import SigningKeys
from headwater.server.discovery import discover
from headwater.server.responses import api_data, api_error, json_response
from headwater.store.apps import AppFunctionRecord, AppRecord

log = logging.getLogger("headwater.sync")

#: Inngest's dev server re-syncs the apps it knows this often (`DefaultPollInterval`).
POLL_INTERVAL_S: Final = 5.0
#: The first sync waits this long, so the server is listening when the SDK POSTs /fn/register.
FIRST_SYNC_DELAY_S: Final = 0.3
#: Inngest's sync PUT timeout.
SYNC_TIMEOUT_S: Final = 10.0


def register_error(status: int, message: str) -> Response:
    """Inngest's error shape; `status` is required by the TS SDK (PROTOCOL §3.2)."""
    return json_response({"error": message, "data": None, "status": status}, status)


def sync_problem(status: int, reply: Any) -> str | None:
    """What went wrong with a sync, from the app's reply to the PUT; None if it registered.

    The TS SDK answers with the register call's status; the Python SDK answers 200 and passes on
    the server's reply, so a refused register shows only in the body (`{"error", "status"}`).
    """
    body = reply if isinstance(reply, dict) else {}
    inner = body.get("status")
    if status >= 300 or (isinstance(inner, int) and inner >= 300) or body.get("error"):
        message = body.get("error") or body.get("message") or reply
        shown = inner if isinstance(inner, int) and inner >= 300 else status
        return f"answered {shown}: {message}"
    return None


class AppSyncer:
    """Asks apps to sync (PROTOCOL §3.2 step 1) and keeps the `-u` apps synced."""

    def __init__(self, engine: Engine, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.urls: tuple[str, ...] = settings.app_urls
        #: Apps found by discovery; kept, like Inngest's dev server keeps them, once found.
        self.discovered: dict[str, None] = {}
        self._task: asyncio.Task[None] | None = None
        #: One client for every PUT: making one loads the CA bundle (~30 ms of CPU).
        self._client: httpx.AsyncClient | None = None
        #: The last problem of each `-u` URL whose sync is failing (the dashboard shows them).
        self.failures: dict[str, str] = {}
        # The HTTP driver signs its calls with the server's key and names its kind (the engine is
        # built before the settings reach it).
        engine.http_driver.configure(
            signing_key=settings.signing_key,
            signing_key_fallback=settings.signing_key_fallback,
            server_kind=settings.server_kind,
            state_limit_bytes=settings.call_state_limit_bytes,
        )

    async def start(self) -> None:
        if self.urls or self.settings.discovery_ports:
            self._task = asyncio.create_task(self._poll(), name="headwater-app-sync")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def sync(self, url: str) -> tuple[int, Any]:
        """PUT `url` as Inngest's dev server does; the SDK's reply status and JSON body (or
        text). Raises httpx.HTTPError when the app cannot be reached."""
        body = canonical_json({"url": url})
        headers = {
            "Content-Type": "application/json",
            "X-Inngest-Server-Kind": self.settings.server_kind,
        }
        if self.settings.signing_key:
            headers["X-Inngest-Signature"] = signature(body, self.settings.signing_key)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=SYNC_TIMEOUT_S, trust_env=False)
        reply = await self._client.put(url, content=body, headers=headers)
        try:
            return reply.status_code, orjson.loads(reply.content)
        except orjson.JSONDecodeError:
            return reply.status_code, reply.text

    async def _poll(self) -> None:
        await asyncio.sleep(FIRST_SYNC_DELAY_S)
        failing: set[str] = set()
        while True:
            if self.settings.discovery_ports:
                await self._discover()
            for url in dict.fromkeys([*self.urls, *self.discovered]):
                try:
                    status, reply = await self.sync(url)
                    problem = sync_problem(status, reply)
                    ok = problem is None
                except httpx.HTTPError as exc:
                    ok, problem = False, repr(exc)
                # Log a change of state only: the poll runs every few seconds.
                if problem is None:
                    self.failures.pop(url, None)
                else:
                    self.failures[url] = problem
                if not ok and url not in failing:
                    log.warning("syncing the app at %s failed: %s", url, problem)
                    failing.add(url)
                elif ok and url in failing:
                    log.info("the app at %s synced again", url)
                    failing.discard(url)
            await asyncio.sleep(POLL_INTERVAL_S)

    async def _discover(self) -> None:
        try:
            found = await discover(self.settings.discovery_ports)
        except OSError as exc:  # e.g. out of file descriptors: try again next round
            log.warning("probing for apps failed: %r", exc)
            return
        for url in found:
            if url not in self.discovered:
                log.info("found an app at %s", url)
                self.discovered[url] = None


def sync_routes(syncer: AppSyncer) -> list[Route]:
    engine = syncer.engine
    settings = syncer.settings
    store = engine.store
    signing_keys = SigningKeys([settings.signing_key, settings.signing_key_fallback])
    production = settings.mode is Mode.PRODUCTION

    async def register(request: Request) -> Response:
        expected = request.headers.get("x-inngest-expected-server-kind")
        if expected and expected != settings.server_kind:
            return register_error(
                400, f"Expected server kind {expected}, got {settings.server_kind}"
            )
        # Dev mode takes any Authorization (an unkeyed TS app sends `Bearer undefined`).
        if production and not signing_keys.accepts_bearer(request.headers.get("authorization")):
            return register_error(401, "Authentication failed")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return register_error(400, f"Invalid request: the body is not JSON ({exc})")
        try:
            sync = parse_registration(body)
            engine.check_app(sync.app_id, sync.functions)
        except RegistrationError as exc:
            return register_error(exc.status, exc.message)
        except FunctionDefinitionError as exc:
            return register_error(400, f"At least one function is invalid: {exc}")
        now = now_ms()
        app = AppRecord(sync.app_id, sync.url, sync.sdk, sync.framework, sync.checksum, now, now)
        functions = [
            AppFunctionRecord(slug, sync.app_id, orjson.dumps(config), now)
            for slug, config in sync.configs
        ]
        try:
            modified = await store.sync_app(app, functions)
            if engine.app_checksums.get(sync.app_id) != sync.checksum:
                await engine.register_app(sync.app_id, sync.functions, sync.checksum)
        except (StoreError, FunctionDefinitionError) as exc:
            log.exception("storing the sync of app %s failed", sync.app_id)
            return register_error(500, f"Storing the app failed: {exc}")
        if modified:
            log.info(
                "app %s synced from %s: %d functions",
                sync.app_id,
                sync.url,
                len(sync.functions),
            )
        return json_response(
            {
                "ok": True,
                "modified": modified,
                "app_id": sync.app_uuid,
                "sync_id": str(uuid.uuid4()),
            }
        )

    async def sync_app(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return api_error(400, 'the body must be JSON: {"url": "<app url>"}', "bad_request")
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return api_error(400, "`url` must be the app's http(s) URL", "bad_request")
        try:
            status, reply = await syncer.sync(url)
        except httpx.HTTPError as exc:
            return api_error(502, f"cannot reach the app at {url}: {exc!r}", "app_unreachable")
        problem = sync_problem(status, reply)
        if problem is not None:
            return api_error(502, f"the app at {url} {problem}", "sync_failed")
        return api_data({"url": url, "status": status, "reply": reply})

    async def list_apps(_: Request) -> Response:
        apps = []
        for app in await store.list_apps():
            functions = await store.app_functions(app.app_id)
            apps.append(
                {
                    "id": app_uuid(app.app_id),
                    "app_id": app.app_id,
                    "url": app.url,
                    "sdk": app.sdk,
                    "framework": app.framework,
                    "checksum": app.checksum,
                    "functions": [f.slug for f in functions],
                }
            )
        return api_data(apps)

    return [
        Route("/fn/register", register, methods=["POST"]),
        Route("/v1/apps/sync", sync_app, methods=["PUT"]),
        Route("/v1/apps", list_apps, methods=["GET"]),
    ]
