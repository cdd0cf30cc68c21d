"""`POST /e/{key}`: the Event API, as Inngest's (PROTOCOL §1), so official SDKs work unchanged.

200 `{"ids": [...], "status": 200}` only after the whole request is committed; any invalid event
rejects the whole request with 400 (nothing stored) and a message naming the event and the field.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from headwater.engine.event_log import EventLog
from headwater.errors import EventValidationError
from headwater.protocol.events import EventLimits, check_event_size
from headwater.protocol.ids import SEED_HEADER, parse_seed
from headwater.server.auth import EventKeys
from headwater.server.responses import ingest_error, json_response

log = logging.getLogger("headwater.ingest")

_NOT_EVENTS = "request body must be an event object or an array of event objects"


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge(int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge(size)
        chunks.append(chunk)
    return b"".join(chunks)


def make_ingest_endpoint(
    event_log: EventLog, event_keys: EventKeys, limits: EventLimits
) -> Callable[[Request], Awaitable[Response]]:
    async def ingest(request: Request) -> Response:
        key = request.path_params.get("key", "")
        if not key:
            return json_response({"status": 401, "error": "Event key is required"}, 401)
        if not event_keys.accepts(key):
            return json_response({"status": 401, "error": "Event key not found"}, 401)
        try:
            body = await _read_body(request, limits.max_request_bytes)
        except _BodyTooLarge as exc:
            return ingest_error(
                413,
                f"request body is at least {exc.args[0]} bytes;"
                f" the limit is {limits.max_request_bytes} bytes",
            )
        if not body.strip():
            return ingest_error(400, f"request body is empty: {_NOT_EVENTS}")
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return ingest_error(400, f"request body is not valid JSON: {exc}")
        if isinstance(decoded, dict):
            raw_events: list[object] = [decoded]
        elif isinstance(decoded, list):
            raw_events = decoded
        else:
            return ingest_error(400, _NOT_EVENTS)
        if len(raw_events) > limits.max_events:
            return ingest_error(
                400,
                f"Cannot have more than {limits.max_events} events in a batch (got {len(raw_events)})",
            )
        if len(body) > limits.max_event_bytes:
            # Only a body this large can hold an event over the per-event limit.
            try:
                for index, raw in enumerate(raw_events):
                    check_event_size(index, len(orjson.dumps(raw)), limits)
            except EventValidationError as exc:
                return ingest_error(413, str(exc))
        try:
            ids = await event_log.append(
                raw_events, seed=parse_seed(request.headers.get(SEED_HEADER))
            )
        except EventValidationError as exc:
            return ingest_error(400, str(exc))
        return Response(
            b'{"ids":' + orjson.dumps(ids) + b',"status":200}', media_type="application/json"
        )

    return ingest
