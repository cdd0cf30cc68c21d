"""The Starlette application: routes, middleware, and the store's life cycle."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater import __version__
from headwater.config import Mode, ServerSettings
from headwater.crypto import KeySource
from headwater.engine.event_log import EventLog
from headwater.server.auth import EventKeys, SigningKeys
from headwater.server.ingest import make_ingest_endpoint
from headwater.server.middleware import RequireSigningKey, ServerKindHeader
from headwater.server.openapi import openapi_document
from headwater.server.responses import json_response
from headwater.server.rest import rest_routes
from headwater.store import Store, open_store

log = logging.getLogger("headwater.server")


def create_app(settings: ServerSettings, keys: KeySource, store: Store | None = None) -> Starlette:
    """The whole server as one ASGI app. The store is opened on start-up and closed on shutdown."""
    store = store or open_store(settings.database_url)
    event_log = EventLog(store, keys, settings.limits)
    signing_keys = SigningKeys([settings.signing_key, settings.signing_key_fallback])
    production = settings.mode is Mode.PRODUCTION

    async def health(_: Request) -> Response:
        return json_response({"status": 200, "message": "OK"})

    async def dev_info(_: Request) -> Response:
        # Inngest TS SDK v3 probes GET /dev to detect a dev server (PROTOCOL §4.3).
        if production:
            return json_response({"error": "Not found", "status": 404, "code": "not_found"}, 404)
        return json_response(
            {
                "version": __version__,
                "authed": False,
                "startOpts": {"dev": True, "sdkURLs": []},
                "functions": [],
                "handlers": [],
                "isSingleNodeService": True,
                "isMissingSigningKey": not signing_keys,
                "isMissingEventKeys": not settings.event_keys,
                "features": {},
            }
        )

    async def openapi(_: Request) -> Response:
        return json_response(openapi_document(__version__))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await store.open()
        log.info(
            "Headwater %s (%s mode) storing in %s",
            __version__,
            settings.mode,
            store.url_for_display,
        )
        try:
            yield
        finally:
            await store.close()

    ingest = make_ingest_endpoint(event_log, EventKeys(settings.event_keys), settings.limits)
    routes = [
        Route("/e/{key}", ingest, methods=["POST"]),
        Route("/e/", ingest, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/dev", dev_info, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *rest_routes(event_log),
    ]
    middleware = [
        Middleware(ServerKindHeader, kind=settings.server_kind),
        Middleware(
            CORSMiddleware,
            allow_origins=["*"],
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["*"],
        ),
    ]
    if production:
        middleware.append(Middleware(RequireSigningKey, keys=signing_keys, prefixes=("/v1/",)))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.event_log = event_log
    app.state.settings = settings
    return app
