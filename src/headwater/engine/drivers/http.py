"""Calls a function served over HTTP by any Inngest SDK (PROTOCOL §3.3–3.8).

The engine hands over a `CallRequest` and gets a `CallResponse`, as from the in-process driver;
this module turns one into the wire request (canonical JSON, signed when the server has a signing
key) and the SDK's reply back into the other. The engine stays the one place that records steps:
results reach the store only through the engine's `checkpoint` callback or the returned ops.

Planned steps (PROTOCOL §3.8) are executed here: when a reply lists `StepPlanned` ops (parallel
steps, or a step the SDK would not run at once), each is run by its own targeted call
(`stepId=<hashed id>`), and then a discovery call (`stepId=step`) asks for what comes next. While a
reply had several ops, calls carry `disable_immediate_execution` (Inngest's ForceStepPlan).

A reply may mix steps with other ops: `Promise.all([step.run(..), step.sleep(..)])` arrives as
`[StepPlanned, Sleep]`, a race of a wait and a step as `[WaitForEvent, StepPlanned]` (the official
TypeScript and Python SDKs and `hw.serve()` alike). The steps are run and checkpointed first, and
the other ops are left for the discovery call: an SDK reports every op not yet memoized, so the
sleep (wait, invoke) comes back, alone once the steps are memoized, and goes to the engine then.
So the engine is never handed a StepPlanned op, and a step never waits for a sleep or a wait
beside it (the sleep starts once the step has run, where Inngest runs them side by side). A
step's failure (StepError, StepFailed) in such a reply goes to the engine once the steps beside
it are checkpointed. A reply of several ops without a step (two sleeps, a sleep and a wait) goes
to the engine as it is: the engine acts on the first, and the SDK reports the others again on the
next call.

The targeted calls of one reply run concurrently, as Inngest runs planned steps, so parallel steps
take as long as the slowest, not their sum (at most MAX_PLANNED_CALLS_IN_FLIGHT at once). Each
carries the state from before the reply (steps, stack, attempt), as in Inngest: a call cannot
carry a sibling's result that may not exist yet. Once all have answered, their `StepRun`
results are checkpointed through the engine one by one in the reply's order, so the stack the SDK
replays is the same whatever order the calls finished in. A step that ran is checkpointed even when
a sibling failed (a StepError, an HTTP error, a reply without its StepRun): a finished step never
runs again. Then the first failing reply, in the ops' order, goes back to the engine.

A plain `StepRun` reply (a step run at once) is checkpointed the same way and the function called
again in the same execution, so a chain of steps costs no queue round trip per step.

In production (a `cloud` server with a signing key) every reply must carry a valid
`X-Inngest-Signature` over its body (5-minute window, the signing key or its fallback,
constant-time compare): the official SDKs and `hw.serve()` sign every reply to a signed call,
error replies included. A reply that does not verify, whether it claims to be an SDK's or not, is
a failed call retried as usual: its ops, output, `X-Inngest-No-Retry` and `Retry-After` are
never acted on.

Never sent: `ctx.fn_id` and `ctx.qi_id`. Their presence switches the TS SDK v4 to checkpointing
(§3.9), which this server does not implement.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
import zlib
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson
import rfc8785

from headwater.clock import now_ms
from headwater.config import DEFAULT_CALL_STATE_LIMIT_BYTES
from headwater.protocol.steps import (
    CallRequest,
    CallResponse,
    FunctionError,
    Opcode,
    StepOp,
)
from headwater.sdk.execution import Checkpoint, EventSender
from headwater.sdk.functions import FunctionDefinition
from headwater.sdk.signatures import SignatureError, sign, verify
from headwater.types import JSON, JSONObject, Millis

log = logging.getLogger("headwater.drivers.http")

#: Inngest's longest call (`MaxFunctionTimeout`).
CALL_TIMEOUT_S: Final = 2 * 3600.0
CONNECT_TIMEOUT_S: Final = 10.0
#: Client pools of the calls to apps, and each pool's limits (see `HttpDriver.client_for`).
CLIENT_SHARDS: Final = 8
CLIENT_MAX_CONNECTIONS: Final = 64
CLIENT_KEEPALIVE_CONNECTIONS: Final = 8
#: Rounds one execution may make before handing back to the queue: a call asking the app what comes
#: next, then the targeted calls of the steps it planned (a safety bound on loops of checkpointed
#: steps; the engine's step limits apply too).
MAX_CALLS_PER_EXECUTION: Final = 200
#: Targeted calls of one reply's planned steps in flight at once, per execution. The calls run
#: concurrently so parallel steps overlap; the bound keeps a `Promise.all` over hundreds of items
#: from opening as many connections to the app at once (and the app from running them all at
#: once), while the usual handful of branches still all run together.
MAX_PLANNED_CALLS_IN_FLIGHT: Final = 8
#: `Retry-After` is clamped to [now + 1 s, now + 24 h] (PROTOCOL §3.1).
_RETRY_AFTER_MIN_MS: Final = 1_000
_RETRY_AFTER_MAX_MS: Final = 86_400_000
DISCOVERY_STEP: Final = "step"
UNKNOWN_REQUEST_VERSION: Final = -1
SDK_REQUEST_VERSION: Final = 2
#: A call body bigger than this leaves out the memoized steps, then also the events, and says
#: `use_api`: the SDK fetches them (both official SDKs do; see tests/served_apps.py).
DEFAULT_STATE_LIMIT_BYTES: Final = DEFAULT_CALL_STATE_LIMIT_BYTES


class UseApi(enum.Enum):
    """What a call leaves for the SDK to fetch from `/v0/runs/{id}/actions|batch` (§3.3)."""

    NO = "no"
    STEPS = "steps"
    STEPS_AND_EVENTS = "steps and events"


# -- the request ---------------------------------------------------------------------------------


def wire_event(event: Mapping[str, Any]) -> JSONObject:
    """An event as the SDKs require it: `user` always present (PROTOCOL §3.3), `data` an object."""
    wire: JSONObject = {
        "name": event.get("name", ""),
        "data": event.get("data") if isinstance(event.get("data"), dict) else {},
        "user": event.get("user") if isinstance(event.get("user"), dict) else {},
        "id": str(event.get("id") or ""),
        "ts": int(event.get("ts") or 0),
    }
    if event.get("v") is not None:
        wire["v"] = event["v"]
    return wire


def request_body(
    request: CallRequest,
    *,
    steps: Mapping[str, JSON] | None = None,
    stack: list[str] | None = None,
    attempt: int | None = None,
    disable_immediate_execution: bool = False,
    sdk_answered: bool = False,
    use_api: UseApi = UseApi.NO,
) -> JSONObject:
    """The call body of PROTOCOL §3.3, with every field the Python SDK requires (top-level
    `use_api`; `ctx.attempt`, `disable_immediate_execution`, `run_id`, `stack`, `max_attempts`).
    `steps`/`stack`/`attempt` override the request's own (after steps checkpointed in this
    execution); `sdk_answered` says an earlier call of this execution got a reply; `use_api`
    leaves out the steps (and the events) that the SDK then fetches from /v0/runs/{id}/..."""
    memos = dict(request.steps if steps is None else steps)
    attempt = request.ctx.attempt if attempt is None else attempt
    order: list[JSON] = list(request.ctx.stack if stack is None else stack)
    fetched = use_api is not UseApi.NO
    events: list[JSON] = [wire_event(event) for event in request.events]
    events = events or [wire_event(request.event)]
    return {
        "event": wire_event(request.event),
        "events": [] if use_api is UseApi.STEPS_AND_EVENTS else events,
        "steps": {} if fetched else memos,
        "ctx": {
            "run_id": request.ctx.run_id,
            "attempt": attempt,
            "max_attempts": request.ctx.max_attempts,
            "disable_immediate_execution": disable_immediate_execution,
            "use_api": fetched,
            "stack": {"stack": order, "current": len(order)},
        },
        # The execution version: -1 ("unknown") on a run's first call, then the SDK's
        # X-Inngest-Req-Version, 2 for both SDKs (Inngest stores it with the run; here memoized
        # steps, a retry or an earlier call of this execution show that the SDK answered).
        "version": (
            SDK_REQUEST_VERSION if memos or attempt > 0 or sdk_answered else UNKNOWN_REQUEST_VERSION
        ),
        "use_api": fetched,
    }


def canonical_json(body: JSON) -> bytes:
    """RFC 8785 (JCS) bytes: the SDKs canonicalise what they parsed before checking the HMAC, so
    the server must send, and sign, exactly these bytes (PROTOCOL §3.6)."""
    try:
        return rfc8785.dumps(body)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        # An integer beyond 2**53 (JCS's limit): sorted orjson is the closest; an SDK verifying
        # a signature may then refuse it, which is better than failing every call of the run.
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def signature(body: bytes, signing_key: str, at_seconds: int | None = None) -> str:
    """`t=<unix seconds>&s=<hex HMAC-SHA256(key, body || t)>`, the key without `signkey-<env>-`,
    used as UTF-8 bytes as the SDKs do (PROTOCOL §3.6)."""
    return sign(body, signing_key, int(time.time()) if at_seconds is None else at_seconds)


def call_url(function_url: str, slug: str, step_id: str) -> str:
    """The function's URL with `fnId` and `stepId` set (the stored one says `stepId=step`)."""
    parts = urlsplit(function_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("fnId", "stepId")]
    query += [("fnId", slug), ("stepId", step_id)]
    return urlunsplit(parts._replace(query=urlencode(query)))


# -- the reply -----------------------------------------------------------------------------------


def parse_op(raw: Any) -> StepOp:
    """One op of a 206 reply; ValueError if it is not one (or names an op not supported)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("op"), str):
        raise ValueError(f"not an op: {str(raw)[:200]}")
    opcode = Opcode.parse(raw["op"])
    opts = raw.get("opts")
    error = raw.get("error")
    name = raw.get("name")
    display = raw.get("displayName")
    return StepOp(
        op=opcode,
        id=str(raw.get("id") or ""),
        name=name if isinstance(name, str) else "",
        display_name=display if isinstance(display, str) else "",
        opts=opts if isinstance(opts, dict) else None,
        data=raw.get("data"),
        error=error if isinstance(error, dict) else None,
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def retry_at_from(value: str | None, now: int) -> int | None:
    """Epoch ms of a `Retry-After` value (seconds, or a date), clamped as Inngest does."""
    if not value:
        return None
    text = value.strip()
    moment: int | None = None
    if text.isdigit() and len(text) <= 7:
        moment = now + int(text) * 1000
    else:
        try:
            moment = int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            try:
                moment = int(parsedate_to_datetime(text).timestamp() * 1000)
            except (TypeError, ValueError):
                return None
    return min(max(moment, now + _RETRY_AFTER_MIN_MS), now + _RETRY_AFTER_MAX_MS)


def _json_or_text(body: bytes) -> JSON:
    try:
        value: JSON = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")
    return value


def parse_reply(status: int, headers: Mapping[str, str], body: bytes) -> CallResponse:
    """An SDK's HTTP reply as a CallResponse (PROTOCOL §3.5)."""
    if status == 201:
        return _parse_stream(headers, body)
    no_retry = (_header(headers, "X-Inngest-No-Retry") or "").strip().lower() == "true"
    retry_at = retry_at_from(_header(headers, "Retry-After"), now_ms())
    if 200 <= status < 300 and _header(headers, "X-Inngest-SDK") is None:
        # Inngest treats a reply without the SDK header as "not from an SDK" even when 2xx (a
        # proxy's page, a wrong URL): retry rather than complete the run with it.
        return CallResponse(
            error=FunctionError(
                "NotAnSDKResponse",
                f"HTTP {status} without X-Inngest-SDK: {body[:200].decode(errors='replace')}",
            )
        )
    if status == 206:
        value = _json_or_text(body)
        raws = value if isinstance(value, list) else [value]
        try:
            ops = [parse_op(raw) for raw in raws]
        except ValueError as exc:
            return CallResponse(
                error=FunctionError("UnsupportedOperation", str(exc)), no_retry=True
            )
        for op in ops:
            if op.op is Opcode.RUN_COMPLETE:  # TS checkpoint/forced mode: the final result
                return CallResponse(done=True, output=op.data)
        return CallResponse(ops=ops, no_retry=no_retry, retry_at=retry_at)
    if 200 <= status < 300:
        return CallResponse(done=True, output=_json_or_text(body) if body else None)
    value = _json_or_text(body)
    if isinstance(value, dict) and ("message" in value or "name" in value):
        error = FunctionError.from_json(value)
    else:
        error = FunctionError("HTTPError", f"HTTP {status}: {str(value)[:500]}")
    return CallResponse(error=error, no_retry=no_retry, retry_at=retry_at)


def _parse_stream(headers: Mapping[str, str], body: bytes) -> CallResponse:
    """A 201 streamed reply: keep-alive whitespace, then `{status, headers, body}`."""
    try:
        envelope = orjson.loads(body.strip())
    except orjson.JSONDecodeError:
        return CallResponse(error=FunctionError("StreamError", "the streamed reply is not JSON"))
    if not isinstance(envelope, dict) or not isinstance(envelope.get("status"), int):
        return CallResponse(error=FunctionError("StreamError", "the streamed reply has no status"))
    inner = envelope.get("body")
    if isinstance(inner, str):  # the SDKs may encode the body twice
        with contextlib.suppress(orjson.JSONDecodeError):
            inner = orjson.loads(inner)
    inner_headers = envelope.get("headers")
    merged = {**headers, **(inner_headers if isinstance(inner_headers, dict) else {})}
    return parse_reply(envelope["status"], merged, orjson.dumps(inner))


def _timed(response: CallResponse, sent_at: Millis) -> CallResponse:
    """The reply with its steps' times: each ran while the call was out (the SDK does not say
    when), so from when it was sent to now, when its reply came."""
    if not response.ops:
        return response
    answered_at = now_ms()
    ops = [
        dataclasses.replace(op, started_at=sent_at, ended_at=answered_at)
        if op.started_at is None
        else op
        for op in response.ops
    ]
    return dataclasses.replace(response, ops=ops)


#: The ops this driver acts on itself: steps to run (planned) or to checkpoint (run).
_STEPS: Final = frozenset({Opcode.STEP_RUN, Opcode.STEP_PLANNED})
_STEP_FAILURES: Final = frozenset({Opcode.STEP_ERROR, Opcode.STEP_FAILED})


def _for_the_engine(ops: list[StepOp]) -> bool:
    """Whether a reply goes to the engine as it is: an empty one, a single op that is not a step,
    or several without a step or a step's failure (two sleeps, a sleep and a wait): the engine
    acts on the first op, and the SDK reports the others again on the next call."""
    if len(ops) == 1:
        return ops[0].op not in _STEPS
    return not any(op.op in _STEPS or op.op in _STEP_FAILURES for op in ops)


def _step_run(reply: CallResponse, step_id: str) -> StepOp | None:
    """The `StepRun` of `step_id` in a targeted call's reply, unless the reply failed or ended."""
    if reply.error is not None or reply.done:
        return None
    return next((op for op in reply.ops if op.op is Opcode.STEP_RUN and op.id == step_id), None)


def _unverified(url: str, reply: httpx.Response, problem: SignatureError) -> FunctionError:
    """The error of a call whose reply did not verify (see `HttpDriver._post`)."""
    reason = str(problem).replace("request", "reply")
    if "x-inngest-sdk" not in reply.headers:
        # The official SDKs sign every reply to a signed call, errors too, and always say who
        # they are: this one came from something else (a proxy's page, a wrong URL).
        text = reply.content[:200].decode(errors="replace")
        return FunctionError(
            "NotAnSDKResponse",
            f"{url}: HTTP {reply.status_code} without X-Inngest-SDK ({reason}): {text}",
        )
    return FunctionError("InvalidSignature", f"{url}: HTTP {reply.status_code}: {reason}")


# -- the driver ----------------------------------------------------------------------------------


class HttpDriver:
    """The `Driver` of functions with a `url` (see the module docstring)."""

    def __init__(
        self,
        *,
        signing_key: str | None = None,
        signing_key_fallback: str | None = None,
        server_kind: str = "dev",
        client: httpx.AsyncClient | None = None,
        state_limit_bytes: int = DEFAULT_STATE_LIMIT_BYTES,
    ) -> None:
        self.signing_key = signing_key
        self.signing_key_fallback = signing_key_fallback
        self.server_kind = server_kind
        self.state_limit_bytes = state_limit_bytes
        #: Made on first use (in the serving event loop); tests pass one with a mock transport.
        self._clients: list[httpx.AsyncClient] = [client] if client is not None else []

    def configure(
        self,
        *,
        signing_key: str | None,
        server_kind: str,
        signing_key_fallback: str | None = None,
        state_limit_bytes: int = DEFAULT_STATE_LIMIT_BYTES,
    ) -> None:
        """Set what the server's settings say (the engine is built before them)."""
        self.signing_key = signing_key
        self.signing_key_fallback = signing_key_fallback
        self.server_kind = server_kind
        self.state_limit_bytes = state_limit_bytes

    @property
    def verifies_replies(self) -> bool:
        """In production (a `cloud` server with a signing key) every SDK reply must be signed."""
        return self.server_kind == "cloud" and bool(self.signing_key)

    def client_for(self, run_id: str) -> httpx.AsyncClient:
        """The client of a run's calls: one of CLIENT_SHARDS, each with its own small pool.

        httpcore's pool does work quadratic in its connections on every request (it counts the
        idle ones once per connection, and polls each for expiry): with the 64 calls in flight
        of a busy engine, one pool of 64+ connections cost more CPU than the rest of the
        server (bench/http_runs.py). Pools of a few connections each keep that small; a run's
        calls stay on one pool, so its connection is reused from step to step.
        """
        if not self._clients:
            self._clients = [
                httpx.AsyncClient(
                    timeout=httpx.Timeout(CALL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                    limits=httpx.Limits(
                        max_connections=CLIENT_MAX_CONNECTIONS,
                        max_keepalive_connections=CLIENT_KEEPALIVE_CONNECTIONS,
                    ),
                    trust_env=False,  # apps are reached directly, never through a proxy
                )
                for _ in range(CLIENT_SHARDS)
            ]
        return self._clients[zlib.crc32(run_id.encode()) % len(self._clients)]

    async def aclose(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            await client.aclose()

    async def call(
        self,
        function: FunctionDefinition,
        request: CallRequest,
        checkpoint: Checkpoint | None,
        sender: EventSender | None = None,
    ) -> CallResponse:
        if function.url is None:
            return CallResponse(
                error=FunctionError("NoURL", f"{function.slug} has no URL"), no_retry=True
            )
        steps: dict[str, JSON] = dict(request.steps)
        stack = list(request.ctx.stack)
        attempt = request.ctx.attempt
        forced = request.ctx.disable_immediate_execution
        target = request.target_step or DISCOVERY_STEP
        for call in range(MAX_CALLS_PER_EXECUTION):
            response = await self._post(
                function, request, target, steps, stack, attempt, forced=forced, answered=call > 0
            )
            target = DISCOVERY_STEP
            ops = response.ops
            if (
                checkpoint is None
                or response.error is not None
                or response.done
                or _for_the_engine(ops)
            ):
                return response  # the engine acts on it (a sleep, a wait, an error, the end...)
            # Several ops in one reply: plan the next calls explicitly (ForceStepPlan).
            forced = len(ops) > 1
            replies = await self._run_planned(
                function, request, ops, steps, stack, attempt, forced=forced
            )
            failure: CallResponse | Exception | None = None
            # In the ops' order, one at a time: the engine records each step and checks the
            # limits in `checkpoint`, and the stack keeps the order of the reply.
            for op, reply in zip(ops, replies, strict=True):
                if op.op in _STEP_FAILURES:
                    if failure is None:
                        failure = dataclasses.replace(response, ops=[op])
                    continue
                if op.op not in _STEPS:
                    # A sleep, a wait, an invoke beside the steps: the SDK reports it again on
                    # the next call (it is not memoized), alone once the steps are, and the
                    # engine acts on it then.
                    continue
                if reply is not None:
                    ran = None if isinstance(reply, Exception) else _step_run(reply, op.id)
                    if ran is None:
                        # A StepError, a sleep inside, an HTTP error...: the engine decides, once
                        # the siblings that did run are recorded (else they would run again).
                        failure = reply if failure is None else failure
                        continue
                    op = ran
                await checkpoint(op)
                steps[op.id] = {"data": op.data}
                stack.append(op.id)
                attempt = 0  # attempts count per step: the next one starts afresh
            if isinstance(failure, Exception):
                raise failure
            if failure is not None:
                return failure
        # Hand back to the queue: the engine calls again at once (an empty op list).
        return CallResponse()

    async def _run_planned(
        self,
        function: FunctionDefinition,
        request: CallRequest,
        ops: list[StepOp],
        steps: Mapping[str, JSON],
        stack: list[str],
        attempt: int,
        *,
        forced: bool,
    ) -> list[CallResponse | Exception | None]:
        """The replies of the targeted calls running the planned ones of `ops`, made concurrently
        (at most MAX_PLANNED_CALLS_IN_FLIGHT at once), in the ops' places: None for an op that is
        not planned, the exception a call raised in its reply's place (so the siblings' results
        are still checkpointed before it propagates). `steps` and `stack` are not changed until
        every call has answered, so each call carries the state from before the reply."""
        in_flight = asyncio.Semaphore(MAX_PLANNED_CALLS_IN_FLIGHT)

        async def run(step_id: str) -> CallResponse:
            async with in_flight:
                return await self._post(
                    function, request, step_id, steps, stack, attempt, forced=forced, answered=True
                )

        planned = [i for i, op in enumerate(ops) if op.op is Opcode.STEP_PLANNED]
        answers = await asyncio.gather(*(run(ops[i].id) for i in planned), return_exceptions=True)
        replies: list[CallResponse | Exception | None] = [None] * len(ops)
        for i, answer in zip(planned, answers, strict=True):
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer  # not a failure of the call: the process is stopping
            replies[i] = answer
        return replies

    async def _post(
        self,
        function: FunctionDefinition,
        request: CallRequest,
        step_id: str,
        steps: Mapping[str, JSON],
        stack: list[str],
        attempt: int,
        *,
        forced: bool,
        answered: bool,
    ) -> CallResponse:
        assert function.url is not None
        body = b""
        for use_api in UseApi:
            body = canonical_json(
                request_body(
                    request,
                    steps=steps,
                    stack=stack,
                    attempt=attempt,
                    disable_immediate_execution=forced,
                    sdk_answered=answered,
                    use_api=use_api,
                )
            )
            if len(body) <= self.state_limit_bytes:
                break
        headers = {
            "Content-Type": "application/json",
            "X-Inngest-Server-Kind": self.server_kind,
            "X-Inngest-Req-Version": "2",
            "X-Run-ID": request.ctx.run_id,
            "X-Inngest-Step-ID": step_id,
        }
        if forced:
            headers["X-Inngest-Force-Step-Plan"] = "true"
        if self.signing_key:
            headers["X-Inngest-Signature"] = signature(body, self.signing_key)
        url = call_url(function.url, function.slug, step_id)
        sent_at = now_ms()
        try:
            client = self.client_for(request.ctx.run_id)
            reply = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.info("calling %s failed: %s", url, exc)
            return CallResponse(error=FunctionError("HTTPError", f"calling {url} failed: {exc!r}"))
        if self.verifies_replies:
            try:
                verify(
                    reply.headers.get("x-inngest-signature"),
                    reply.content,
                    [self.signing_key, self.signing_key_fallback],
                )
            except SignatureError as exc:
                # Not what the app with our key answered (a proxy, a replay, another key): the
                # call failed and is retried as usual. Nothing in the reply is acted on, its
                # X-Inngest-No-Retry and Retry-After included, or anyone on the path could fail
                # a run for good or push it back.
                log.warning("the reply of %s is refused: %s", url, exc)
                return CallResponse(error=_unverified(url, reply, exc))
        return _timed(parse_reply(reply.status_code, reply.headers, reply.content), sent_at)
