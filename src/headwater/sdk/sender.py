"""Sending events: one I/O-free core, driven by a thin sync shell and a thin async shell.

`EventSender.flow(events)` validates and encodes every event at once (so a bad event raises before
any request), then returns a generator that performs the whole send as a dialogue:

    it yields httpx.Request  -> the shell sends it and answers with the httpx.Response,
                                or throws the httpx.TransportError into the generator
    it yields Sleep(seconds) -> the shell sleeps, then answers None
    it returns SendResult    -> the ids, in input order

`drive_sync` and `drive_async` are the only code that does I/O, so the retry rules live in one
place (the same idea as httpx's `Auth.auth_flow`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias, TypeVar

import httpx
import orjson

from headwater.errors import EventValidationError, SendFailedError, SendRejectedError
from headwater.protocol.events import (
    DEFAULT_LIMITS,
    Event,
    EventLimits,
    NormalizedEvent,
    check_event_size,
    normalize_event,
)
from headwater.protocol.ids import SEED_HEADER, new_seed
from headwater.types import Millis

#: One event as an application gives it: a mapping in the wire shape, or an `Event`.
EventInput: TypeAlias = Mapping[str, Any] | Event
#: What `send` accepts: one event or a list (or tuple) of them.
SendInput: TypeAlias = EventInput | Sequence[EventInput]
#: Seconds to wait after failed attempt number n (counted from 1).
Backoff: TypeAlias = Callable[[int], float]

BACKOFF_BASE: Final = 0.1
BACKOFF_CAP: Final = 5.0
# Transport errors where the request may simply not have arrived or the server may come back.
# Others (an unsupported URL scheme, a request httpx itself finds malformed) fail the same way on
# every attempt, so retrying them only delays the error.
_RETRYABLE: Final = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of a send: one server-made event id per event, in input order."""

    ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Sleep:
    """An instruction of the send flow to its shell: wait this long before the next request."""

    seconds: float


SendStep: TypeAlias = httpx.Request | Sleep
SendFlow: TypeAlias = Generator[SendStep, httpx.Response | None, SendResult]
_T = TypeVar("_T")


def backoff_delay(
    attempt: int,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rand: Callable[[], float] = random.random,
) -> float:
    """Exponential backoff with jitter: about base·2^(attempt-1), at most `cap` seconds.

    The delay is drawn from the upper half of the exponential step ("equal jitter"), so clients
    that failed together spread out, yet none retries immediately.
    """
    # The exponent is clamped so that a large max_attempts cannot overflow the float.
    ceiling = min(cap, base * 2.0 ** min(max(0, attempt - 1), 64))
    return ceiling / 2 + rand() * ceiling / 2


@dataclass(frozen=True, slots=True)
class _Batch:
    """The encoded events of one request: `body` is a JSON array of `count` events."""

    first_index: int
    count: int
    body: bytes


class EventSender:
    """Validates, batches and delivers events to one ingest URL, with retries.

    It holds no connection: a shell (`drive_sync`/`drive_async`) runs its flow on an httpx client.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        limits: EventLimits = DEFAULT_LIMITS,
        max_attempts: int = 5,
        backoff: Backoff = backoff_delay,
        clock: Callable[[], Millis] | None = None,
    ) -> None:
        self.url = url
        # Error messages show the URL without the event key, which is a credential.
        self._shown_url = url.rsplit("/e/", 1)[0] + "/e/<event key>"
        self.limits = limits
        self.max_attempts = max_attempts
        self._headers = {"content-type": "application/json", **headers}
        self._backoff = backoff
        self._clock = clock or _now_millis

    def flow(self, events: SendInput) -> SendFlow:
        """Validate and encode `events` now, then return the generator that delivers them.

        Raises EventValidationError (naming the event's index and field) before any request.
        """
        batches = self._prepare(events)
        return self._deliver(batches)

    def _prepare(self, events: SendInput) -> list[_Batch]:
        """Validate and encode every event, then split them into requests within the limits."""
        items = _as_list(events)
        received_at = self._clock()
        encoded = [self._encode(raw, index, received_at) for index, raw in enumerate(items)]
        return _split(encoded, self.limits)

    def _encode(self, raw: object, index: int, received_at: Millis) -> bytes:
        event = normalize_event(raw, index, received_at, self.limits)
        wire = _wire(event)
        try:
            body = orjson.dumps(wire)
        except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
            culprit = next((f for f in ("data", "user", "meta") if not _encodes(wire.get(f))), "")
            raise EventValidationError(index, culprit, f"is not JSON-serializable ({exc})") from exc
        check_event_size(index, len(body), self.limits)
        if len(body) + 2 > self.limits.max_request_bytes:
            # Only reachable when max_event_bytes is set above max_request_bytes.
            raise EventValidationError(
                index,
                "",
                f"is {len(body)} bytes; it does not fit in one request of at most "
                f"{self.limits.max_request_bytes} bytes",
            )
        return body

    def _deliver(self, batches: list[_Batch]) -> SendFlow:
        ids: list[str] = []
        for batch in batches:
            ids.extend((yield from self._deliver_batch(batch, accepted=len(ids))))
        return SendResult(ids)

    def _deliver_batch(
        self, batch: _Batch, *, accepted: int
    ) -> Generator[SendStep, httpx.Response | None, list[str]]:
        # One seed per request, re-sent unchanged on every retry: the server derives the same ids
        # from it, so a retry of a request that was in fact stored creates no second copy.
        headers = {**self._headers, SEED_HEADER: new_seed().header_value()}
        problem = ""
        status: int | None = None
        cause: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            request = httpx.Request("POST", self.url, content=batch.body, headers=headers)
            try:
                response = yield request
            except _RETRYABLE as exc:
                problem, status, cause = _describe(exc), None, exc
            except httpx.TransportError as exc:
                raise SendFailedError(
                    self._failure(batch, accepted, f": {_describe(exc)}")
                ) from exc
            else:
                if response is None:
                    raise RuntimeError("the send flow was answered None for a request")
                if response.is_success:
                    return self._ids_of(response, batch, accepted)
                if response.status_code < 500:
                    raise SendRejectedError(_server_message(response), status=response.status_code)
                problem = f"server answered {response.status_code}: {_server_message(response)}"
                status, cause = response.status_code, None
            if attempt < self.max_attempts:
                delay = self._backoff(attempt)
                if delay > 0:
                    yield Sleep(delay)
        raise SendFailedError(
            self._failure(batch, accepted, f" after {self.max_attempts} attempts: {problem}"),
            status=status,
        ) from cause

    def _ids_of(self, response: httpx.Response, batch: _Batch, accepted: int) -> list[str]:
        """The ids of a 2xx reply, which must hold exactly one string id per event sent."""
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        ids = body.get("ids") if isinstance(body, dict) else None
        if (
            not isinstance(ids, list)
            or len(ids) != batch.count
            or not all(isinstance(i, str) and i for i in ids)
            or (isinstance(body, dict) and body.get("error"))
        ):
            # Not retried: the server took the request, so sending it again cannot make it answer
            # better, and the caller must hear that the outcome is unknown.
            detail = (
                f": the server answered {response.status_code} without {batch.count} event ids: "
                f"{_excerpt(response.text)}"
            )
            raise SendFailedError(
                self._failure(batch, accepted, detail), status=response.status_code
            )
        return ids

    def _failure(self, batch: _Batch, accepted: int, detail: str) -> str:
        last = batch.first_index + batch.count - 1
        which = f"event {last}" if batch.count == 1 else f"events {batch.first_index}..{last}"
        message = f"could not send {which} to {self._shown_url}{detail}"
        if accepted:
            # Earlier requests of this send were stored; the caller must not resend them blindly.
            message += f" (the first {accepted} events were accepted by earlier requests)"
        return message


def drive_sync(
    flow: Generator[SendStep, httpx.Response | None, _T],
    client: httpx.Client,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """Run a send flow with blocking I/O."""
    answer: httpx.Response | None = None
    error: httpx.TransportError | None = None
    while True:
        try:
            step = flow.send(answer) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: _T = stop.value
            return result
        answer, error = None, None
        if isinstance(step, Sleep):
            sleep(step.seconds)
            continue
        try:
            answer = client.send(step)
        except httpx.TransportError as exc:
            error = exc


async def drive_async(
    flow: Generator[SendStep, httpx.Response | None, _T],
    client: httpx.AsyncClient,
    sleep: Callable[[float], Awaitable[None]],
) -> _T:
    """Run a send flow with asyncio I/O; the same flow as `drive_sync`, step for step."""
    answer: httpx.Response | None = None
    error: httpx.TransportError | None = None
    while True:
        try:
            step = flow.send(answer) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: _T = stop.value
            return result
        answer, error = None, None
        if isinstance(step, Sleep):
            await sleep(step.seconds)
            continue
        try:
            answer = await client.send(step)
        except httpx.TransportError as exc:
            error = exc


def _now_millis() -> Millis:
    return time.time_ns() // 1_000_000


def _as_list(events: SendInput) -> list[object]:
    # A Mapping or an Event is one event; only real lists and tuples are many (a str is a
    # Sequence too, and must fail validation as one bad event rather than as characters).
    if isinstance(events, list | tuple):
        return list(events)
    return [events]


def _wire(event: NormalizedEvent) -> dict[str, Any]:
    """The validated event as it goes on the wire, with `ts` filled in."""
    wire: dict[str, Any] = {"name": event.name, "data": event.data}
    if event.user:
        wire["user"] = event.user
    if event.id is not None:
        wire["id"] = event.id
    wire["ts"] = event.ts
    if event.v is not None:
        wire["v"] = event.v
    if event.meta is not None:
        wire["meta"] = event.meta
    return wire


def _encodes(value: object) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def _split(encoded: list[bytes], limits: EventLimits) -> list[_Batch]:
    """Cut the events, in order, into as few requests as the count and body-size limits allow."""
    batches: list[_Batch] = []
    start = 0
    size = 2  # the brackets of the JSON array
    for index, body in enumerate(encoded):
        count = index - start
        added = len(body) + (1 if count else 0)  # a comma before every event but the first
        if count and (count >= limits.max_events or size + added > limits.max_request_bytes):
            batches.append(_batch(encoded, start, index))
            start, size, added = index, 2, len(body)
        size += added
    if start < len(encoded):
        batches.append(_batch(encoded, start, len(encoded)))
    return batches


def _batch(encoded: list[bytes], start: int, stop: int) -> _Batch:
    return _Batch(start, stop - start, b"[" + b",".join(encoded[start:stop]) + b"]")


def _server_message(response: httpx.Response) -> str:
    """The server's own words: `error` (or `message`) of a JSON reply, else the body text."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return _excerpt(response.text) or response.reason_phrase or f"HTTP {response.status_code}"


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _excerpt(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"
