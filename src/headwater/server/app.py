"""The Starlette application: routes, middleware, and the store's life cycle."""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import logging
import sys
from collections.abc import AsyncIterator, Iterable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater import __version__
from headwater.config import Mode, ServerSettings
from headwater.crypto import KeySource
from headwater.engine.runtime import Engine
from headwater.sdk.functions import FunctionDefinition
from headwater.server.auth import EventKeys, SigningKeys
from headwater.server.cancellations_api import cancellation_routes
from headwater.server.dashboard.live import EventFeed
from headwater.server.dashboard.pages import dashboard_routes
from headwater.server.dashboard.session import SessionKeys
from headwater.server.ingest import IngestASGI, IngestCore, make_ingest_endpoint
from headwater.server.middleware import SIGNED_PREFIXES, RequireSigningKey, ServerKindHeader
from headwater.server.openapi import openapi_document
from headwater.server.replay_api import replay_routes
from headwater.server.responses import json_response
from headwater.server.rest import rest_routes
from headwater.server.runs_api import runs_routes
from headwater.server.sdk_api import sdk_routes
from headwater.server.sync_api import AppSyncer, sync_routes
from headwater.store import Store, open_store

log = logging.getLogger("headwater.server")

#: Young-generation threshold of the cyclic GC while serving (CPython's default is 700).
_GC_GEN0_THRESHOLD = 7_000
_gc_prepared = False


def _prepare_gc_for_serving() -> None:
    """Keep the cyclic garbage collector off the request path.

    Under load every in-flight request holds objects (task, scope, request, records) until its
    commit, tens of milliseconds later, so they survive young collections and promote into the
    old generation; the default thresholds then run a young collection every few requests and a
    full one, which walks every object of the process (~50k after start-up), every second or so:
    bench/ingest.py measured ~13% of the event loop's time in GC and 50 ms pauses in p99.
    Freezing what exists after start-up takes those objects out of every later collection, and a
    larger young threshold makes collections rarer. Done once per process, when serving starts.
    """
    global _gc_prepared
    if _gc_prepared:
        return
    _gc_prepared = True
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, _GC_GEN0_THRESHOLD), gen1, gen2)


def _skip_missing_sniffio() -> None:
    """Make httpcore's per-request `import sniffio` fail fast when sniffio is not installed.

    httpcore asks `sniffio` which async library runs on every request, inside a try/except
    ImportError; without the package each call searches sys.path again (a failed import is not
    cached): bench/http_runs.py profiled a quarter of the server's time there, in the HTTP driver's
    calls to apps. A `None` entry in sys.modules makes that import fail at once; httpcore then
    assumes asyncio, which is what serves here. Nothing changes where sniffio is installed.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


class HeadwaterApp(IngestASGI):
    """The ASGI app that serves: `IngestASGI` (which answers `POST /e/{key}` as the Starlette
    stack would, only cheaper) in front of the Starlette app, which gets everything else."""

    def __init__(self, starlette: Starlette, core: IngestCore, server_kind: str) -> None:
        super().__init__(core, server_kind, starlette)
        self.starlette = starlette
        self.state = starlette.state


def create_app(
    settings: ServerSettings,
    keys: KeySource,
    store: Store | None = None,
    functions: Iterable[FunctionDefinition] = (),
) -> HeadwaterApp:
    """The whole server as one ASGI app. The store is opened and the engine started on start-up;
    both stop on shutdown."""
    store = store or open_store(settings.database_url)
    engine = Engine(
        store,
        keys,
        functions,
        limits=settings.limits,
        retry=settings.retry,
        retention_ms=settings.retention_ms,
    )
    event_log = engine.event_log
    syncer = AppSyncer(engine, settings)
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
        await engine.start()
        await syncer.start()
        _skip_missing_sniffio()
        _prepare_gc_for_serving()
        log.info(
            "Headwater %s (%s mode) storing in %s",
            __version__,
            settings.mode,
            store.url_for_display,
        )
        try:
            yield
        finally:
            await syncer.stop()
            await engine.stop()
            await store.close()

    feed = EventFeed()
    engine.event_listeners.append(feed.publish)
    session_keys = SessionKeys(
        login_required=production,
        signing_key=settings.signing_key,
        password=settings.dashboard_password,
    )
    core = IngestCore(event_log, EventKeys(settings.event_keys), settings.limits)
    ingest = make_ingest_endpoint(core)
    routes = [
        Route("/e/{key}", ingest, methods=["POST"]),
        Route("/e/", ingest, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/dev", dev_info, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *rest_routes(event_log),
        *runs_routes(store, engine.outcomes),
        *replay_routes(engine.replays),
        *cancellation_routes(engine.cancellations),
        *sync_routes(syncer),
        *sdk_routes(engine),
        *dashboard_routes(engine, syncer, session_keys, feed),
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
        middleware.append(
            Middleware(RequireSigningKey, keys=signing_keys, prefixes=SIGNED_PREFIXES)
        )
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.event_log = event_log
    app.state.engine = engine
    app.state.settings = settings
    return HeadwaterApp(app, core, settings.server_kind)
