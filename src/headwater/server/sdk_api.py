"""Endpoints the SDKs call besides sync and ingest (PROTOCOL §1.1, §2.2, §2.3).

- `GET /v0/runs/{id}/batch`: the run's events, a bare JSON array; `GET /v0/runs/{id}/actions`:
  its memoized steps, a bare JSON object. An SDK fetches them when a call says `use_api` (the
  state was too large to send). Authenticated with the signing key in production (as /v1/).
- `POST /invoke/{slug}`: start a run of a function with the body's `data` as its event's data;
  replies `{"id": <event id>, "status": 200}` as Inngest's dev server does.
- `POST /v1/signals`: wait-for-signal is not implemented; a clear 501.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.clock import now_ms
from headwater.engine.run_state import load_run_state
from headwater.engine.runtime import Engine
from headwater.errors import StoreError
from headwater.protocol.ids import is_ulid
from headwater.server.responses import api_error, json_response


def sdk_routes(engine: Engine) -> list[Route]:
    store, event_log = engine.store, engine.event_log

    async def run_state(request: Request, part: str) -> Response:
        run_id = request.path_params["run_id"]
        if not is_ulid(run_id):
            return api_error(400, "The run ID specified is invalid", "invalid_id")
        run = await store.get_run(run_id.upper())
        if run is None:
            return api_error(404, f"no run {run_id}", "not_found")
        state = await load_run_state(store, event_log, run, now_ms())
        return json_response(state.events if part == "batch" else state.steps)

    async def run_batch(request: Request) -> Response:
        return await run_state(request, "batch")

    async def run_actions(request: Request) -> Response:
        return await run_state(request, "actions")

    async def invoke(request: Request) -> Response:
        slug = request.path_params["slug"]  # Starlette has already percent-decoded the path
        if not slug:
            return api_error(400, "Function slug is required", "invalid_request")
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as exc:
            return api_error(400, f"Unable to read post data request: {exc}", "invalid_request")
        if not isinstance(body, dict):
            return api_error(400, "the body must be a JSON object (an event)", "invalid_request")
        data = body.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            return api_error(400, "data must be a JSON object", "invalid_request")
        try:
            event_id = await engine.invoke(slug, data)
        except LookupError as exc:
            return api_error(404, str(exc), "function_not_found")
        except StoreError as exc:
            return api_error(500, f"Unable to create invocation event: {exc}", "store_error")
        return json_response({"id": event_id, "status": 200})

    async def signals(_: Request) -> Response:
        return api_error(
            501,
            "wait-for-signal is not implemented by this server: no run waits for signals, so "
            "POST /v1/signals cannot resume one",
            "not_implemented",
        )

    return [
        Route("/v0/runs/{run_id}/batch", run_batch, methods=["GET"]),
        Route("/v0/runs/{run_id}/actions", run_actions, methods=["GET"]),
        Route("/invoke/{slug:path}", invoke, methods=["POST"]),
        Route("/v1/signals", signals, methods=["POST"]),
    ]
