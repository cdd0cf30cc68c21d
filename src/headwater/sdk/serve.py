"""`hw.serve()`: the app's functions over HTTP, in Inngest's SDK protocol (PROTOCOL §3).

`ServeApp` is a plain ASGI application (no web framework: the SDK ships with httpx and orjson
only). Attach it at `/api/inngest`: in Starlette `Route("/api/inngest", hw.serve(),
methods=["GET", "PUT", "POST"])` (FastAPI: `app.add_route(...)` alike), or run it alone under
uvicorn. (Starlette's `Mount("/api/inngest", ...)` redirects the bare path to `/api/inngest/`; to
mount it, pass `serve_path="/api/inngest/"` so the registered URL has the slash.) A Headwater
server, the Inngest dev server or Inngest Cloud then drives the functions through it:

    GET   introspection (§3.10): counts and mode; with a valid signature, the full configuration.
    PUT   sync (§3.2): POST this app's functions to `{base_url}/fn/register` (`registration`),
          answer with the result.
    POST  a call (§3.3): `?fnId=<app>-<fn>&stepId=step|<hashed step id>`, body `{event, events,
          steps, ctx}`; run the function against the memoized steps and answer 200 (its output),
          206 (a list of step ops) or an error (§3.5).

This module only translates: HTTP into a `CallRequest`, and the `CallResponse` back into HTTP.
Each call runs the step core (`execution.execute()`) without a checkpoint, so a new step ends the
call with its op, and with a `planning.CallPlan`, which applies the §3.8 rules (targeted calls,
parallel steps, immediate execution) that the in-process engine never needs.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qs, quote

import httpx
import orjson

from headwater.protocol.ids import IdSeed
from headwater.protocol.steps import (
    CallContext,
    CallRequest,
    CallResponse,
    FunctionError,
    Opcode,
)
from headwater.sdk.config import DEFAULT_EVENT_KEY, ClientConfig
from headwater.sdk.execution import execute
from headwater.sdk.functions import FunctionDefinition
from headwater.sdk.planning import CallPlan
from headwater.sdk.registration import FRAMEWORK, REQUEST_VERSION, register, register_body
from headwater.sdk.serve_settings import ServeSettings, resolve_serve_settings
from headwater.sdk.signatures import SignatureError, hash_signing_key, sign, verify
from headwater.types import JSON

log = logging.getLogger("headwater.serve")

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Sends events for `step.send_event`; returns their ids in order.
SendEvents: TypeAlias = Callable[[list[Any]], Awaitable[list[str]]]

SCHEMA_VERSION: Final = "2024-05-24"
#: The biggest request body read; the server sends at most ~4 MiB of state plus the events.
MAX_BODY_BYTES: Final = 32 * 1024 * 1024
#: `Retry-After` is clamped to the server's own bounds (PROTOCOL §3.1).
MAX_RETRY_AFTER_SECONDS: Final = 86_400


@dataclass(slots=True)
class _Request:
    method: str
    scope: Scope
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes


@dataclass(slots=True)
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class ServeApp:
    """The ASGI application `Headwater.serve()` returns (see the module docstring)."""

    def __init__(
        self,
        *,
        app_id: str,
        functions: Callable[[], Sequence[FunctionDefinition]],
        config: ClientConfig,
        settings: ServeSettings,
        sdk: str,
        http_client: Callable[[], Awaitable[httpx.AsyncClient]],
        send_events: SendEvents | None = None,
        env: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = app_id
        self.settings = settings
        self.sdk = sdk
        self._functions = functions
        self._config = config
        self._http_client = http_client
        self._send_events = send_events
        self._env = env
        self._clock = clock
        self._keys = [k for k in (settings.signing_key, settings.signing_key_fallback) if k]

    @property
    def mode(self) -> str:
        return self.settings.mode

    def __repr__(self) -> str:
        return f"ServeApp(app_id={self.app_id!r}, mode={self.mode!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        try:
            body = await _read_body(receive)
        except _BodyTooLarge:
            body = b""
            too_large = True
        else:
            too_large = False
        if body is None:  # the client went away
            return
        request = _Request(
            method=str(scope.get("method", "GET")).upper(),
            scope=scope,
            headers={
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in scope.get("headers", [])
            },
            query={
                name: values[-1]
                for name, values in parse_qs(
                    bytes(scope.get("query_string", b"")).decode("latin-1"),
                    keep_blank_values=True,
                ).items()
            },
            body=body,
        )
        if too_large:
            reply = self._json(413, {"message": f"the body exceeds {MAX_BODY_BYTES} bytes"})
        else:
            try:
                reply = await self._handle(request)
            except Exception as exc:  # a bug of ours: still answer in the protocol's shape
                log.exception("serve: %s %s failed", request.method, scope.get("path"))
                reply = self._error_reply(
                    FunctionError(type(exc).__name__, str(exc)), no_retry=False, status=500
                )
        await _send_reply(send, self._finish(reply))

    async def _handle(self, request: _Request) -> _Reply:
        if request.method == "GET":
            return self._introspect(request)
        if request.method == "PUT":
            return await self._sync(request)
        if request.method == "POST":
            return await self._call(request)
        reply = self._json(405, {"message": f"method {request.method} is not allowed"})
        reply.headers["allow"] = "GET, PUT, POST"
        return reply

    # -- GET: introspection (§3.10) --------------------------------------------------------------

    def _introspect(self, request: _Request) -> _Reply:
        server_kind = request.headers.get("x-inngest-server-kind")
        if server_kind and server_kind != self.mode:
            # As the Python SDK does, so that a dev server does not adopt a production app.
            return self._json(403, {})
        signature = request.headers.get("x-inngest-signature")
        authenticated: bool | None = None
        if self.mode == "cloud" or (signature and self._keys):
            authenticated = self._verified(signature, request.body)
        event_key = self._config.event_key
        has_event_key = event_key != DEFAULT_EVENT_KEY
        body: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "authentication_succeeded": authenticated,
            "function_count": len(self._functions()),
            "has_event_key": has_event_key,
            "has_signing_key": self.settings.signing_key is not None,
            "has_signing_key_fallback": self.settings.signing_key_fallback is not None,
            "mode": self.mode,
        }
        if authenticated:
            key, fallback = self.settings.signing_key, self.settings.signing_key_fallback
            language, _, version = self.sdk.partition(":v")
            body |= {
                "api_origin": self._config.base_url,
                "app_id": self.app_id,
                "env": self._env,
                "event_api_origin": self._config.event_api_base_url,
                "event_key_hash": hashlib.sha256(event_key.encode()).hexdigest()
                if has_event_key
                else None,
                "framework": FRAMEWORK,
                "sdk_language": language,
                "sdk_version": version,
                "serve_origin": self.settings.serve_origin or _request_origin(request),
                "serve_path": self.settings.serve_path,
                "signing_key_hash": hash_signing_key(key) if key else None,
                "signing_key_fallback_hash": hash_signing_key(fallback) if fallback else None,
            }
        return self._json(200, {k: v for k, v in body.items() if v is not None})

    # -- PUT: sync (§3.2) ------------------------------------------------------------------------
    # -- PUT: sync (§3.2) ------------------------------------------------------------------------

    async def _sync(self, request: _Request) -> _Reply:
        server_kind = request.headers.get("x-inngest-server-kind")
        if server_kind and server_kind != self.mode:
            return self._json(
                400,
                {
                    "message": f"the server is in {server_kind} mode but this app serves in "
                    f"{self.mode} mode; set INNGEST_DEV accordingly",
                    "modified": False,
                },
                sync=True,
            )
        body = register_body(self.app_id, self._functions(), self.serve_url(request), self.sdk)
        outcome = await register(
            self._http_client,
            body,
            base_url=self._config.base_url,
            sdk=self.sdk,
            signing_key=self.settings.signing_key,
            env=self._env,
            server_kind=server_kind,
            deploy_id=request.query.get("deployId") or None,
        )
        return self._json(
            outcome.status, {"message": outcome.message, "modified": outcome.modified}, sync=True
        )

    def serve_url(self, request: _Request) -> str:
        """Where the server reaches this app: the configured origin (else the request's) + path."""
        origin = self.settings.serve_origin or _request_origin(request)
        return f"{origin}{self.settings.serve_path}"

    # -- POST: a call (§3.3-3.8) -----------------------------------------------------------------

    async def _call(self, request: _Request) -> _Reply:
        if self.mode == "cloud" and not self._verified(
            request.headers.get("x-inngest-signature"), request.body
        ):
            return self._json(401, {"message": "Unauthorized"}, no_retry=False)
        if request.query.get("probe") == "trust":
            return _Reply(200, b"")
        slug = request.query.get("fnId", "")
        definition = next((d for d in self._functions() if d.slug == slug), None)
        if definition is None:
            return self._error_reply(
                FunctionError("FunctionNotFoundError", f"this app serves no function {slug!r}"),
                no_retry=False,
                status=500,
            )
        try:
            call = await self._call_request(definition, request)
        except (ValueError, TypeError, KeyError) as exc:
            return self._error_reply(
                FunctionError("InvalidRequestError", f"unusable call request: {exc}"),
                no_retry=True,
                status=400,
            )
        except httpx.HTTPError as exc:
            return self._error_reply(
                FunctionError("StateFetchError", f"could not load the run's state: {exc!r}"),
                no_retry=False,
                status=500,
            )
        plan = CallPlan.for_call(call, parallel=definition.is_async)
        try:
            response = await execute(definition, call, sender=self._step_sender(), planner=plan)
        finally:
            plan.close()
        return self._call_reply(call, response, plan)

    async def _call_request(self, definition: FunctionDefinition, request: _Request) -> CallRequest:
        body = orjson.loads(request.body)
        if not isinstance(body, dict):
            raise ValueError("the body is not a JSON object")
        ctx = body.get("ctx")
        if not isinstance(ctx, dict):
            raise ValueError("ctx is missing")
        run_id = ctx.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise ValueError("ctx.run_id is missing")
        event = body.get("event")
        if not isinstance(event, dict):
            raise ValueError("event is missing")
        events = body.get("events")
        steps = body.get("steps")
        if bool(body.get("use_api")) or bool(ctx.get("use_api")):
            # The server trimmed a large state: fetch it (PROTOCOL §2.3).
            steps = await self._fetch_state(run_id, "actions")
            if not events:
                events = await self._fetch_state(run_id, "batch")
        if not isinstance(events, list) or not events:
            events = [event]
        if steps is None:
            steps = {}
        if not isinstance(steps, dict):
            raise ValueError("steps is not an object")
        stack_field = ctx.get("stack")
        stack = stack_field.get("stack") if isinstance(stack_field, dict) else None
        attempt = ctx.get("attempt", 0)
        max_attempts = ctx.get("max_attempts")
        if not isinstance(attempt, int) or isinstance(attempt, bool):
            raise ValueError("ctx.attempt is not an integer")
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
            max_attempts = definition.max_attempts
        step_id = request.query.get("stepId", "step")
        target = step_id if step_id and step_id != "step" else None
        if target is not None and target in steps:
            # A repeated call for a step that is already recorded (the queue delivers at least
            # once): carry on from it as a discovery call would, without running anything new.
            target = None
            ctx = {**ctx, "disable_immediate_execution": True}
        return CallRequest(
            function_id=definition.slug,
            event=event,
            events=[e for e in events if isinstance(e, dict)] or [event],
            steps=steps,
            ctx=CallContext(
                run_id=run_id,
                attempt=attempt,
                max_attempts=max_attempts,
                stack=[s for s in stack if isinstance(s, str)] if isinstance(stack, list) else [],
                disable_immediate_execution=bool(ctx.get("disable_immediate_execution")),
            ),
            target_step=target,
        )

    async def _fetch_state(self, run_id: str, what: str) -> JSON:
        headers = {"x-inngest-sdk": self.sdk, "user-agent": self.sdk}
        if self.settings.signing_key:
            headers["authorization"] = f"Bearer {hash_signing_key(self.settings.signing_key)}"
        client = await self._http_client()
        url = f"{self._config.base_url}/v0/runs/{quote(run_id, safe='')}/{what}"
        response = await client.get(url, headers=headers)
        response.raise_for_status()
        value: JSON = orjson.loads(response.content)
        return value

    def _step_sender(self) -> Callable[[list[Any], IdSeed], Awaitable[list[str]]] | None:
        send_events = self._send_events
        if send_events is None:
            return None

        async def sender(events: list[Any], seed: IdSeed) -> list[str]:
            # The client makes its own id seed per request; the step's memo keeps a replay from
            # sending again, as in the official SDKs.
            return await send_events(events)

        return sender

    def _call_reply(self, call: CallRequest, response: CallResponse, plan: CallPlan) -> _Reply:
        if plan.not_found:
            return self._error_reply(
                FunctionError(
                    "StepNotFoundError",
                    f"the function did not reach the requested step {call.target_step}",
                ),
                no_retry=False,
                status=500,
            )
        if response.done:
            return _Reply(200, orjson.dumps(response.output))
        if response.error is not None:
            return self._error_reply(
                response.error,
                no_retry=response.no_retry,
                status=400 if response.no_retry else 500,
                retry_at=response.retry_at,
            )
        ops = plan.reported if plan.reported is not None else response.ops
        wire: list[dict[str, Any]] = []
        errored = final = False
        for op in ops:
            item = op.to_wire()
            if op.op is Opcode.SLEEP:
                until = (op.opts or {}).get("until")
                if isinstance(until, str):
                    # The official SDKs put the wake time in `name`; the step id is the display name.
                    item["name"] = until
                    item["displayName"] = op.display_name or op.name
            elif op.op is Opcode.STEP_ERROR:
                errored = True
                if response.no_retry:
                    final = True
                elif call.ctx.attempt + 1 >= call.ctx.max_attempts:
                    # The last attempt failed: report it as final, as the Python SDK does.
                    item["op"] = Opcode.STEP_FAILED.value
                    final = True
            wire.append(item)
        reply = _Reply(206, orjson.dumps(wire))
        if errored:
            reply.headers["x-inngest-no-retry"] = "true" if final else "false"
            if response.retry_at is not None and not final:
                reply.headers["retry-after"] = self._retry_after(response.retry_at)
        return reply

    # -- replies ---------------------------------------------------------------------------------

    def _verified(self, signature: str | None, body: bytes) -> bool:
        try:
            verify(signature, body, self._keys, clock=self._clock)
        except SignatureError as exc:
            log.info("serve: rejected a request of %s: %s", self.app_id, exc)
            return False
        return True

    def _json(
        self,
        status: int,
        body: object,
        *,
        no_retry: bool | None = None,
        sync: bool = False,
    ) -> _Reply:
        reply = _Reply(status, orjson.dumps(body))
        if no_retry is not None:
            reply.headers["x-inngest-no-retry"] = "true" if no_retry else "false"
        if sync:
            reply.headers["x-inngest-sync-kind"] = "out_of_band"
        return reply

    def _error_reply(
        self, error: FunctionError, *, no_retry: bool, status: int, retry_at: int | None = None
    ) -> _Reply:
        body = {"name": error.name, "message": error.message, "stack": error.stack or ""}
        reply = self._json(status, body, no_retry=no_retry)
        if retry_at is not None and not no_retry:
            reply.headers["retry-after"] = self._retry_after(retry_at)
        return reply

    def _retry_after(self, retry_at_ms: int) -> str:
        seconds = math.ceil(retry_at_ms / 1000 - self._clock())
        return str(min(MAX_RETRY_AFTER_SECONDS, max(1, seconds)))

    def _finish(self, reply: _Reply) -> _Reply:
        """The headers of every reply; in cloud mode, the reply is signed as the TS SDK signs it."""
        reply.headers.setdefault("content-type", "application/json")
        reply.headers["x-inngest-sdk"] = self.sdk
        reply.headers["x-inngest-req-version"] = REQUEST_VERSION
        if self.mode == "cloud" and self.settings.signing_key:
            reply.headers["x-inngest-signature"] = sign(
                reply.body, self.settings.signing_key, int(self._clock())
            )
        return reply


class _BodyTooLarge(Exception):
    pass


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client left; raises _BodyTooLarge past
    MAX_BODY_BYTES (after reading the rest, so that the reply can still be sent)."""
    chunks: list[bytes] = []
    size = 0
    too_large = False
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            too_large = True
        elif chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            if too_large:
                raise _BodyTooLarge
            return b"".join(chunks)


async def _send_reply(send: Send, reply: _Reply) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
    headers.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Run alone under an ASGI server, the app has nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _request_origin(request: _Request) -> str:
    scheme = str(request.scope.get("scheme") or "http")
    host = request.headers.get("host")
    if not host:
        server = request.scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    return f"{scheme}://{host}"


__all__ = [
    "ASGIApp",
    "ServeApp",
    "ServeSettings",
    "resolve_serve_settings",
]
