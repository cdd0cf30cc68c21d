"""`POST /e/{key}`: the Event API, as Inngest's (PROTOCOL §1), so official SDKs work unchanged.

200 `{"ids": [...], "status": 200}` only after the whole request is committed; any invalid event
rejects the whole request with 400 (nothing stored) and a message naming the event and the field.

What a request means is decided once, by `IngestCore` (key, body, seed header -> status and JSON
bytes). Two transports feed it:

* `IngestASGI`, the one that serves: a bare ASGI callable placed in front of the Starlette app
  (see `server.app`). It reads the body from `receive`, answers with `send`, and adds itself the
  headers the Starlette middleware would add to the same response (`X-Inngest-Server-Kind`, and
  CORS for a simple request exactly as Starlette's `CORSMiddleware` with any origin allowed).
  Skipping Starlette's request, routing, middleware and response objects roughly halves the
  per-request CPU of single-event sends, the Event API's commonest shape.
* `make_ingest_endpoint`, a Starlette endpoint over the same core, kept on the Starlette routes
  so that whatever the front door leaves to Starlette (another method: 405; a mounted app with a
  `root_path`) behaves as before.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from headwater.engine.event_log import EventLog
from headwater.errors import EventValidationError
from headwater.protocol.events import EventLimits, check_event_size
from headwater.protocol.ids import SEED_HEADER, parse_seed
from headwater.server.auth import EventKeys
from headwater.server.responses import ingest_error_body, json_body

log = logging.getLogger("headwater.ingest")

_NOT_EVENTS = "request body must be an event object or an array of event objects"

#: A reply of the Event API: HTTP status and the JSON body.
Reply = tuple[int, bytes]

_NO_KEY: Final[Reply] = (401, json_body({"status": 401, "error": "Event key is required"}))
_UNKNOWN_KEY: Final[Reply] = (401, json_body({"status": 401, "error": "Event key not found"}))


class IngestCore:
    """The Event API without a transport: every rule and message of `POST /e/{key}`."""

    def __init__(self, event_log: EventLog, event_keys: EventKeys, limits: EventLimits) -> None:
        self.event_log = event_log
        self.event_keys = event_keys
        self.limits = limits
        self.max_request_bytes = limits.max_request_bytes

    def check_key(self, key: str) -> Reply | None:
        """The 401 reply for a missing or unknown event key, else None (checked before the body
        is read)."""
        if not key:
            return _NO_KEY
        if not self.event_keys.accepts(key):
            return _UNKNOWN_KEY
        return None

    def body_too_large(self, size: int) -> Reply:
        """The 413 reply once `size` bytes (declared or read so far) are over the limit."""
        return 413, ingest_error_body(
            413,
            f"request body is at least {size} bytes; the limit is {self.max_request_bytes} bytes",
        )

    async def ingest(self, body: bytes, seed_header: str | None) -> Reply:
        """Validate and store the events of a whole request body (at most `max_request_bytes`)."""
        limits = self.limits
        if not body or body.isspace():  # as `not body.strip()`, without copying the body
            return 400, ingest_error_body(400, f"request body is empty: {_NOT_EVENTS}")
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return 400, ingest_error_body(400, f"request body is not valid JSON: {exc}")
        if isinstance(decoded, dict):
            raw_events: list[object] = [decoded]
        elif isinstance(decoded, list):
            raw_events = decoded
        else:
            return 400, ingest_error_body(400, _NOT_EVENTS)
        if len(raw_events) > limits.max_events:
            return 400, ingest_error_body(
                400,
                f"Cannot have more than {limits.max_events} events in a batch (got {len(raw_events)})",
            )
        if len(body) > limits.max_event_bytes:
            # Only a body this large can hold an event over the per-event limit.
            try:
                for index, raw in enumerate(raw_events):
                    check_event_size(index, len(orjson.dumps(raw)), limits)
            except EventValidationError as exc:
                return 413, ingest_error_body(413, str(exc))
        try:
            ids = await self.event_log.append(raw_events, seed=parse_seed(seed_header))
        except EventValidationError as exc:
            return 400, ingest_error_body(400, str(exc))
        return 200, b'{"ids":' + orjson.dumps(ids) + b',"status":200}'


# -- Starlette ---------------------------------------------------------------------------------


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


def make_ingest_endpoint(core: IngestCore) -> Callable[[Request], Awaitable[Response]]:
    async def ingest(request: Request) -> Response:
        reply = core.check_key(request.path_params.get("key", ""))
        if reply is None:
            try:
                body = await _read_body(request, core.max_request_bytes)
            except _BodyTooLarge as exc:
                reply = core.body_too_large(exc.args[0])
            else:
                reply = await core.ingest(body, request.headers.get(SEED_HEADER))
        status, payload = reply
        return Response(payload, status, media_type="application/json")

    return ingest


# -- bare ASGI -----------------------------------------------------------------------------------

_CONTENT_TYPE: Final = (b"content-type", b"application/json")
_ALLOW_ANY_ORIGIN: Final = (b"access-control-allow-origin", b"*")
_VARY_ORIGIN: Final = (b"vary", b"Origin")
_SEED_HEADER_BYTES: Final = SEED_HEADER.encode()
_INTERNAL_ERROR: Final = b"Internal Server Error"
_INTERNAL_ERROR_HEADERS: Final = [
    (b"content-length", str(len(_INTERNAL_ERROR)).encode()),
    (b"content-type", b"text/plain; charset=utf-8"),
]


def ingest_path_key(path: str) -> str | None:
    """The event key of a path the Event API serves (`/e/{key}`, `/e/`), else None; a key is
    what Starlette's `{key}` matches: anything but `/`."""
    if path.startswith("/e/") and path.find("/", 3) < 0:
        return path[3:]
    return None


class IngestASGI:
    """`POST /e/{key}` as a bare ASGI app (see the module docstring), in front of `app`, which
    gets every other request (other methods and paths, CORS preflights, the lifespan).

    Its responses are those of the Starlette stack, byte for byte: the same status, body and
    headers, in the same order (`content-length`, `content-type`, then what `CORSMiddleware` adds
    to a simple response: `access-control-allow-origin: *` when the request has an `Origin`, and
    `vary: Origin` always; then `x-inngest-server-kind`). An exception becomes the plain 500 of
    Starlette's `ServerErrorMiddleware` (which sits outside the other middleware, so without
    those headers) and is raised again for the server to log.

    The request is handled in `__call__` itself, not in helper coroutines: every coroutine between
    the server and the store's commit is suspended and resumed once more per request.
    """

    def __init__(self, core: IngestCore, server_kind: str, app: ASGIApp) -> None:
        self.core = core
        self.kind_header = (b"x-inngest-server-kind", server_kind.encode())
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or ingest_path_key(scope["path"]) is None
            or scope.get("root_path")  # mounted: Starlette knows how to route under a root path
        ):
            await self.app(scope, receive, send)
            return
        core = self.core
        declared: bytes | None = None
        origin = False
        seed: str | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                if declared is None:
                    declared = value
            elif name == b"origin":
                origin = True
            elif name == _SEED_HEADER_BYTES and seed is None:
                seed = value.decode("latin-1")
        try:
            reply = core.check_key(scope["path"][3:])
            if reply is None:
                limit = core.max_request_bytes
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    reply = core.body_too_large(int(declared))
                else:
                    body = await _receive_body(receive, limit)
                    if isinstance(body, int):
                        reply = core.body_too_large(body)
                    else:
                        reply = await core.ingest(body, seed)
        except _Disconnected:
            return  # nobody to answer
        except Exception:
            await send(
                {"type": "http.response.start", "status": 500, "headers": _INTERNAL_ERROR_HEADERS}
            )
            await send({"type": "http.response.body", "body": _INTERNAL_ERROR})
            raise
        status, payload = reply
        headers = [(b"content-length", str(len(payload)).encode()), _CONTENT_TYPE]
        if origin:
            headers.append(_ALLOW_ANY_ORIGIN)
        headers.append(_VARY_ORIGIN)
        headers.append(self.kind_header)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def _receive_body(receive: Receive, limit: int) -> bytes | int:
    """The request body, or, once it is over `limit` bytes, how many bytes were read."""
    body = b""
    chunks: list[bytes] | None = None
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    return size
                if chunks is not None:
                    chunks.append(chunk)
                elif body:
                    chunks = [body, chunk]
                else:
                    body = chunk
            if not message.get("more_body", False):
                return b"".join(chunks) if chunks is not None else body
        elif kind == "http.disconnect":
            raise _Disconnected


class _Disconnected(Exception):
    """The client went away before its request body was read."""
