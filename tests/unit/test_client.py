"""The event client, against an `httpx.MockTransport` that plays the server.

Every scenario a user can write in sync and in async code runs through both shells (`shell`).
The backoff is `no_backoff`, so retries cost no time.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from headwater.errors import (
    ConfigurationError,
    EventValidationError,
    SendFailedError,
    SendRejectedError,
)
from headwater.protocol.events import Event, EventLimits
from headwater.protocol.ids import SEED_HEADER, is_ulid, parse_seed
from headwater.sdk import Headwater, SendResult
from headwater.sdk.client import sdk_version
from headwater.sdk.sender import EventSender, Sleep, backoff_delay, drive_async, drive_sync

BASE = "http://hw.test"
KEY = "test-key"
TS = 1_700_000_000_000

Handler = Callable[[httpx.Request], httpx.Response]
Send = Callable[[Headwater, Any], Awaitable[SendResult]]


def no_backoff(attempt: int) -> float:
    return 0.0


# --- the fake server --------------------------------------------------------------------------


def accept(request: httpx.Request) -> httpx.Response:
    """Answer like the real server: ids derived from the seed header, so retries get the same."""
    seed = parse_seed(request.headers.get(SEED_HEADER))
    assert seed is not None
    count = len(orjson.loads(request.content))
    return httpx.Response(
        200, json={"ids": [seed.ulid(k) for k in range(1, count + 1)], "status": 200}
    )


def reply(status: int, body: Any) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    return handler


def fail_with(error: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("simulated", request=request)

    return handler


class FakeServer:
    """Answers request n with script[n], then with `accept`; records every request."""

    def __init__(self, *script: Handler) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.script.pop(0) if self.script else accept
        return handler(request)

    @property
    def bodies(self) -> list[list[dict[str, Any]]]:
        return [orjson.loads(r.content) for r in self.requests]

    @property
    def seeds(self) -> list[str]:
        return [r.headers[SEED_HEADER] for r in self.requests]


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(params=["async", "sync"])
def shell(request: pytest.FixtureRequest) -> Send:
    """`await hw.send(x)` or `hw.send_sync(x)`: the two shells over the one core."""
    if request.param == "async":

        async def send_async(hw: Headwater, events: Any) -> SendResult:
            return await hw.send(events)

        return send_async

    async def send_sync(hw: Headwater, events: Any) -> SendResult:
        return hw.send_sync(events)

    return send_sync


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Headwater]]:
    """Build clients on a FakeServer; they are closed after the test."""
    made: list[Headwater] = []

    def factory(server: FakeServer, **kwargs: Any) -> Headwater:
        kwargs.setdefault("base_url", BASE)
        kwargs.setdefault("event_key", KEY)
        kwargs.setdefault("backoff", no_backoff)
        hw = Headwater("shop", transport=httpx.MockTransport(server), **kwargs)
        made.append(hw)
        return hw

    yield factory
    for hw in made:
        await hw.aclose()


# --- what goes on the wire --------------------------------------------------------------------


async def test_one_event_is_posted_as_an_array_with_the_sdk_headers(
    make: Callable[..., Headwater], shell: Send
) -> None:
    server = FakeServer()
    hw = make(server)

    result = await shell(hw, {"name": "shop/order.placed", "data": {"order": 7}})

    assert len(result.ids) == 1
    assert is_ulid(result.ids[0])
    [request] = server.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/e/{KEY}"
    assert request.headers["content-type"] == "application/json"
    agent = f"headwater-py:v{sdk_version()}"
    assert request.headers["user-agent"] == agent
    assert request.headers["x-inngest-sdk"] == agent
    assert parse_seed(request.headers[SEED_HEADER]) is not None
    [[event]] = server.bodies
    assert event.keys() == {"name", "data", "ts"}  # an empty user is left out
    assert event["name"] == "shop/order.placed"
    assert event["data"] == {"order": 7}
    assert isinstance(event["ts"], int)
    assert event["ts"] > TS  # filled with "now"


async def test_given_fields_are_sent_as_given(make: Callable[..., Headwater], shell: Send) -> None:
    server = FakeServer()
    hw = make(server)
    given = {
        "name": "a",
        "data": {"x": [1, 2]},
        "user": {"email": "a@example.com"},
        "id": "order-7",
        "ts": TS,
        "v": "2024-01-01.1",
    }

    await shell(hw, given)

    assert server.bodies == [[given]]


async def test_events_and_dicts_mix_and_ids_keep_input_order(
    make: Callable[..., Headwater], shell: Send
) -> None:
    server = FakeServer()
    hw = make(server)

    result = await shell(hw, [Event("a", data={"n": 0}), {"name": "b"}, Event("c", ts=TS)])

    [body] = server.bodies
    assert [e["name"] for e in body] == ["a", "b", "c"]
    seed = parse_seed(server.seeds[0])
    assert seed is not None
    assert result.ids == [seed.ulid(1), seed.ulid(2), seed.ulid(3)]


async def test_an_empty_list_sends_nothing(make: Callable[..., Headwater], shell: Send) -> None:
    server = FakeServer()

    result = await shell(make(server), [])

    assert result == SendResult(ids=[])
    assert server.requests == []


async def test_a_path_prefix_of_the_base_url_is_kept_and_the_key_is_quoted(
    make: Callable[..., Headwater], shell: Send
) -> None:
    server = FakeServer()
    hw = make(server, base_url="http://hw.test/prefix/", event_key="a/b c")

    await shell(hw, {"name": "a"})

    assert server.requests[0].url.raw_path == b"/prefix/e/a%2Fb%20c"


# --- validation happens before any request ----------------------------------------------------


@pytest.mark.parametrize(
    ("events", "index", "field"),
    [
        ([{"name": "ok"}, {"data": {}}], 1, "name"),
        ({"name": "a", "data": [1]}, 0, "data"),
        ([{"name": "ok"}, {"name": "ok"}, {"name": "inngest/function.failed"}], 2, "name"),
        ({"name": "a", "ts": 12}, 0, "ts"),
        ({"name": "a", "ts": "2024-01-01"}, 0, "ts"),
        ({"name": "a", "user": "bob"}, 0, "user"),
        ({"name": "a", "id": 7}, 0, "id"),
        ([{"name": "ok"}, "not an event"], 1, ""),
        ("not an event", 0, ""),
        ({"name": "a", "data": {"when": {1, 2}}}, 0, "data"),
    ],
)
async def test_a_bad_event_raises_before_any_request(
    make: Callable[..., Headwater], shell: Send, events: Any, index: int, field: str
) -> None:
    server = FakeServer()

    with pytest.raises(EventValidationError) as caught:
        await shell(make(server), events)

    assert (caught.value.index, caught.value.field) == (index, field)
    assert server.requests == []


async def test_an_event_over_the_size_limit_is_a_validation_error(
    make: Callable[..., Headwater], shell: Send
) -> None:
    server = FakeServer()
    hw = make(server, limits=EventLimits(max_event_bytes=100))

    with pytest.raises(EventValidationError, match=r"event 1: is \d+ bytes; the limit is 100"):
        await shell(hw, [{"name": "small"}, {"name": "big", "data": {"pad": "x" * 100}}])

    assert server.requests == []


# --- retries ----------------------------------------------------------------------------------


async def test_a_5xx_is_retried_with_the_same_seed_and_gets_the_seeded_ids(
    make: Callable[..., Headwater], shell: Send
) -> None:
    server = FakeServer(reply(503, {"ids": [], "status": 503, "error": "busy"}))
    hw = make(server)

    result = await shell(hw, [{"name": "a"}, {"name": "b"}])

    assert len(server.requests) == 2
    assert server.seeds[0] == server.seeds[1]
    assert server.requests[0].content == server.requests[1].content
    seed = parse_seed(server.seeds[0])
    assert seed is not None
    assert result.ids == [seed.ulid(1), seed.ulid(2)]


@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError]
)
async def test_connection_errors_and_timeouts_are_retried(
    make: Callable[..., Headwater], shell: Send, error: type[httpx.TransportError]
) -> None:
    server = FakeServer(fail_with(error), fail_with(error))

    result = await shell(make(server), {"name": "a"})

    assert len(result.ids) == 1
    assert len(server.requests) == 3
    assert len(set(server.seeds)) == 1


async def test_retrying_until_max_attempts_then_send_failed(
    make: Callable[..., Headwater], shell: Send
) -> None:
    server = FakeServer(*[reply(500, {"ids": [], "status": 500, "error": "disk full"})] * 10)
    attempts: list[int] = []

    def backoff(attempt: int) -> float:
        attempts.append(attempt)
        return 0.0

    hw = make(server, max_attempts=4, backoff=backoff)

    with pytest.raises(SendFailedError, match="after 4 attempts: server answered 500: disk full"):
        await shell(hw, {"name": "a"})

    assert len(server.requests) == 4
    assert len(set(server.seeds)) == 1
    assert attempts == [1, 2, 3]  # no wait after the last attempt


async def test_send_failed_after_connection_errors_keeps_the_cause(
    make: Callable[..., Headwater], shell: Send
) -> None:
    server = FakeServer(*[fail_with(httpx.ConnectError)] * 5)

    with pytest.raises(SendFailedError, match="ConnectError") as caught:
        await shell(make(server), {"name": "a"})

    assert caught.value.status is None
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert len(server.requests) == 5
    assert KEY not in str(caught.value)  # the event key is a credential


async def test_a_transport_error_that_cannot_heal_is_not_retried(
    make: Callable[..., Headwater], shell: Send
) -> None:
    server = FakeServer(fail_with(httpx.UnsupportedProtocol))

    with pytest.raises(SendFailedError, match="UnsupportedProtocol"):
        await shell(make(server), {"name": "a"})

    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, {"ids": [], "status": 400, "error": "event name is empty"}, "event name is empty"),
        (401, {"status": 401, "error": "Event key not found"}, "Event key not found"),
        (413, {"ids": [], "status": 413, "error": "request too large"}, "request too large"),
        (422, "plain words", "plain words"),
    ],
)
async def test_a_4xx_is_rejected_with_the_server_message_and_never_retried(
    make: Callable[..., Headwater], shell: Send, status: int, body: Any, message: str
) -> None:
    server = FakeServer(reply(status, body))

    with pytest.raises(SendRejectedError) as caught:
        await shell(make(server), {"name": "a"})

    assert str(caught.value) == message
    assert caught.value.status == status
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"ids": ["01HZZZZZZZZZZZZZZZZZZZZZZZ"], "status": 200},  # one id for two events
        {"status": 200},
        {"ids": [1, 2], "status": 200},
        {"ids": ["a", "b"], "status": 200, "error": "half done"},
        "not json",
    ],
)
async def test_a_2xx_without_one_id_per_event_is_an_error_and_not_retried(
    make: Callable[..., Headwater], shell: Send, body: Any
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(200, text=body)
        return httpx.Response(200, json=body)

    server = FakeServer(handler)

    with pytest.raises(SendFailedError, match="without 2 event ids") as caught:
        await shell(make(server), [{"name": "a"}, {"name": "b"}])

    assert caught.value.status == 200
    assert len(server.requests) == 1


# --- splitting --------------------------------------------------------------------------------


async def test_12001_events_go_out_as_3_requests_with_ids_in_order(
    make: Callable[..., Headwater], shell: Send
) -> None:
    server = FakeServer()
    hw = make(server, limits=EventLimits(max_events=5000))
    events = [{"name": "bulk", "data": {"i": i}, "ts": TS} for i in range(12_001)]

    result = await shell(hw, events)

    assert [len(body) for body in server.bodies] == [5000, 5000, 2001]
    assert [e["data"]["i"] for body in server.bodies for e in body] == list(range(12_001))
    assert len(set(server.seeds)) == 3  # one seed per request
    expected: list[str] = []
    for header, body in zip(server.seeds, server.bodies, strict=True):
        seed = parse_seed(header)
        assert seed is not None
        expected += [seed.ulid(k) for k in range(1, len(body) + 1)]
    assert result.ids == expected


async def test_events_are_split_when_the_body_would_pass_max_request_bytes(
    make: Callable[..., Headwater], shell: Send
) -> None:
    events = [{"name": "e", "data": {"i": i, "pad": "x" * 100}, "ts": TS} for i in range(7)]
    size = len(orjson.dumps(events[0]))
    limit = 2 + 3 * size + 2  # brackets, three events, two commas: exactly three per request
    server = FakeServer()
    hw = make(server, limits=EventLimits(max_request_bytes=limit, max_event_bytes=size))

    result = await shell(hw, events)

    assert [len(body) for body in server.bodies] == [3, 3, 1]
    assert len(server.requests[0].content) == limit
    assert all(len(r.content) <= limit for r in server.requests)
    assert [e["data"]["i"] for body in server.bodies for e in body] == list(range(7))
    assert len(result.ids) == 7


async def test_a_failure_after_earlier_requests_says_what_was_accepted(
    make: Callable[..., Headwater], shell: Send
) -> None:
    server = FakeServer(accept, *[reply(502, "bad gateway")] * 5)
    hw = make(server, limits=EventLimits(max_events=2))

    with pytest.raises(
        SendFailedError, match=r"events 2\.\.3 .*\(the first 2 events were accepted"
    ):
        await shell(hw, [{"name": "a"}] * 5)

    assert len(server.requests) == 6


# --- the core and its shells ------------------------------------------------------------------


def test_the_core_is_a_dialogue_without_io() -> None:
    sender = EventSender(f"{BASE}/e/{KEY}", headers={}, backoff=lambda n: 0.25 * n)
    flow = sender.flow({"name": "a"})

    first = next(flow)
    assert isinstance(first, httpx.Request)
    assert flow.throw(httpx.ConnectError("refused")) == Sleep(0.25)
    second = flow.send(None)
    assert isinstance(second, httpx.Request)
    assert second.headers[SEED_HEADER] == first.headers[SEED_HEADER]
    with pytest.raises(StopIteration) as done:
        flow.send(httpx.Response(200, json={"ids": ["id-1"], "status": 200}))
    assert done.value.value == SendResult(ids=["id-1"])


def test_the_sync_shell_sleeps_as_the_core_says() -> None:
    sleeps: list[float] = []
    server = FakeServer(reply(503, {}), reply(503, {}))
    sender = EventSender(f"{BASE}/e/{KEY}", headers={}, backoff=lambda n: 0.5 * n)

    with httpx.Client(transport=httpx.MockTransport(server)) as client:
        result = drive_sync(sender.flow({"name": "a"}), client, sleeps.append)

    assert sleeps == [0.5, 1.0]
    assert len(result.ids) == 1


async def test_the_async_shell_sleeps_as_the_core_says() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    server = FakeServer(reply(503, {}), reply(503, {}))
    sender = EventSender(f"{BASE}/e/{KEY}", headers={}, backoff=lambda n: 0.5 * n)

    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
        result = await drive_async(sender.flow({"name": "a"}), client, sleep)

    assert sleeps == [0.5, 1.0]
    assert len(result.ids) == 1


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 0.05, 0.1), (2, 0.1, 0.2), (3, 0.2, 0.4), (6, 1.6, 3.2), (7, 2.5, 5.0), (500, 2.5, 5.0)],
)
def test_backoff_grows_exponentially_with_jitter_up_to_a_cap(
    attempt: int, low: float, high: float
) -> None:
    assert backoff_delay(attempt, rand=lambda: 0.0) == pytest.approx(low)
    assert backoff_delay(attempt, rand=lambda: 1.0) == pytest.approx(high)
    assert low <= backoff_delay(attempt) <= high


# --- the Headwater object ---------------------------------------------------------------------


async def test_simple_use_without_a_context_manager_reuses_one_client() -> None:
    server = FakeServer()
    hw = Headwater("shop", base_url=BASE, transport=httpx.MockTransport(server))

    await hw.send({"name": "a"})
    await hw.send({"name": "b"})
    hw.send_sync({"name": "c"})
    hw.send_sync({"name": "d"})

    assert len(server.requests) == 4
    assert len(hw._async_clients) == 1
    await hw.aclose()


def _pooled_async_client(hw: Headwater) -> httpx.AsyncClient:
    [entry] = hw._async_clients.values()
    return entry[0]


def test_a_client_never_closed_is_closed_when_asyncio_run_ends() -> None:
    hw = Headwater("shop", base_url=BASE, transport=httpx.MockTransport(FakeServer()))

    async def send() -> httpx.AsyncClient:
        await hw.send({"name": "a"})
        return _pooled_async_client(hw)

    client = asyncio.run(send())

    assert client.is_closed


async def test_a_client_dropped_without_close_is_closed_by_its_loop() -> None:
    # Given the one-liner `await Headwater(...).send(...)`: nothing refers to it afterwards.
    hw = Headwater("shop", base_url=BASE, transport=httpx.MockTransport(FakeServer()))
    await hw.send({"name": "a"})
    client = _pooled_async_client(hw)

    del hw
    gc.collect()
    for _ in range(5):
        await asyncio.sleep(0)

    assert client.is_closed


def test_a_blocking_client_dropped_without_close_is_closed() -> None:
    hw = Headwater("shop", base_url=BASE, transport=httpx.MockTransport(FakeServer()))
    hw.send_sync({"name": "a"})
    client = hw._sync_client
    assert client is not None

    del hw
    gc.collect()

    assert client.is_closed


async def test_a_closed_client_can_send_again() -> None:
    server = FakeServer()
    async with Headwater("shop", base_url=BASE, transport=httpx.MockTransport(server)) as hw:
        await hw.send({"name": "a"})
    await hw.send({"name": "b"})
    await hw.aclose()
    with Headwater("shop", base_url=BASE, transport=httpx.MockTransport(server)) as hw:
        hw.send_sync({"name": "c"})
    hw.send_sync({"name": "d"})
    hw.close()

    assert len(server.requests) == 4


async def test_the_environment_is_read_once_in_the_constructor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEADWATER_BASE_URL", "http://from-env.test/hw")
    monkeypatch.setenv("HEADWATER_EVENT_KEY", "env-key")
    monkeypatch.delenv("HEADWATER_EVENT_API_BASE_URL", raising=False)
    server = FakeServer()
    hw = Headwater("shop", transport=httpx.MockTransport(server))
    monkeypatch.setenv("HEADWATER_EVENT_KEY", "changed-later")

    await hw.send({"name": "a"})
    await hw.aclose()

    assert str(server.requests[0].url) == "http://from-env.test/hw/e/env-key"


class _SyncOnly(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return accept(request)


class _AsyncOnly(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return accept(request)


async def test_a_transport_is_used_by_the_shell_it_supports() -> None:
    sync_only = Headwater("shop", base_url=BASE, transport=_SyncOnly())
    async_only = Headwater("shop", base_url=BASE, transport=_AsyncOnly())

    assert len(sync_only.send_sync({"name": "a"}).ids) == 1
    assert len((await async_only.send({"name": "a"})).ids) == 1
    with pytest.raises(ConfigurationError, match="sync-only"):
        await sync_only.send({"name": "a"})
    with pytest.raises(ConfigurationError, match="async-only"):
        async_only.send_sync({"name": "a"})
    sync_only.close()
    await async_only.aclose()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"app_id": ""},
        {"app_id": "shop", "max_attempts": 0},
        {"app_id": "shop", "timeout": 0},
        {"app_id": "shop", "base_url": "ftp://hw.test"},
    ],
)
def test_bad_settings_raise_configuration_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Headwater(**kwargs)
