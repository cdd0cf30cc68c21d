"""The bare ASGI Event API (`IngestASGI`) answers exactly as the Starlette stack does.

Every request below is sent, in process, both to the app that serves (`create_app`'s, which hands
`POST /e/...` to `IngestASGI`) and to the Starlette app behind it (whose routes still lead to the
same `IngestCore` through Starlette's request, middleware and response). Status, headers (names,
values and order) and body must be the same, ids aside (each send gets new ones).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from headwater.config import Mode, ServerSettings
from headwater.crypto import KEY_BYTES, KeyRing, StaticKeys, generate_key
from headwater.protocol.events import EventLimits
from headwater.protocol.ids import is_ulid, new_seed
from headwater.server.app import HeadwaterApp, create_app
from headwater.server.ingest import ingest_path_key
from headwater.store import Store, open_store

LIMITS = EventLimits(max_events=10, max_event_bytes=1_000, max_request_bytes=2_000)

Headers = list[tuple[bytes, bytes]]
App = Callable[..., Awaitable[None]]


@dataclass
class Answer:
    status: int | None
    headers: Headers
    body: bytes
    raised: BaseException | None = None

    def json(self) -> Any:
        return orjson.loads(self.body)


def scope_for(method: str, path: str, headers: Headers) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 8288),
        "client": ("127.0.0.1", 50000),
    }


async def call(
    app: App,
    path: str = "/e/key",
    body: bytes | Sequence[bytes] = b"",
    headers: Headers | None = None,
    *,
    method: str = "POST",
    disconnect: bool = False,
) -> Answer:
    """One request; `body` as a list is sent in that many chunks (without a content-length)."""
    chunks = [body] if isinstance(body, bytes) else list(body)
    all_headers = list(headers or [])
    if isinstance(body, bytes):
        all_headers.append((b"content-length", str(len(body)).encode()))
    messages: list[dict[str, Any]] = []
    if disconnect:
        messages.append({"type": "http.disconnect"})
    else:
        for index, chunk in enumerate(chunks):
            more = index < len(chunks) - 1
            messages.append({"type": "http.request", "body": chunk, "more_body": more})

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raised: BaseException | None = None
    try:
        await app(scope_for(method, path, all_headers), receive, send)
    except Exception as exc:
        raised = exc
    start = [m for m in sent if m["type"] == "http.response.start"]
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if not start:
        return Answer(None, [], body_out, raised)
    return Answer(start[0]["status"], list(start[0]["headers"]), body_out, raised)


def without_ids(answer: Answer) -> Answer:
    """The answer with its ids (valid ULIDs, as many as sent) replaced by placeholders."""
    if answer.status != 200 or (b"content-type", b"application/json") not in answer.headers:
        return answer
    doc = answer.json()
    assert all(is_ulid(value) for value in doc["ids"])
    doc["ids"] = ["X" * 26 for _ in doc["ids"]]
    return Answer(answer.status, answer.headers, orjson.dumps(doc), answer.raised)


def same_answer(lean: Answer, stack: Answer) -> None:
    assert (lean.status, lean.headers) == (stack.status, stack.headers)
    assert without_ids(lean).body == without_ids(stack).body
    assert type(lean.raised) is type(stack.raised)


@dataclass
class Apps:
    lean: HeadwaterApp
    store: Store

    @property
    def stack(self) -> App:
        return self.lean.starlette


def keys() -> StaticKeys:
    return StaticKeys(KeyRing([generate_key("k1")], os.urandom(KEY_BYTES)))


async def make_apps(tmp_path: Path, settings: ServerSettings) -> AsyncIterator[Apps]:
    store = open_store(f"sqlite:///{tmp_path / 'headwater.db'}")
    await store.open()
    try:
        yield Apps(create_app(settings, keys(), store=store), store)
    finally:
        await store.close()


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[Apps]:
    async for apps in make_apps(tmp_path, ServerSettings(data_dir=tmp_path, limits=LIMITS)):
        yield apps


@pytest.fixture
async def production(tmp_path: Path) -> AsyncIterator[Apps]:
    settings = ServerSettings(
        mode=Mode.PRODUCTION,
        data_dir=tmp_path,
        event_keys=frozenset({"good-key"}),
        signing_key="signkey-test-" + "ab" * 32,
        limits=LIMITS,
    )
    async for apps in make_apps(tmp_path, settings):
        yield apps


EVENT = orjson.dumps({"name": "app/order.created", "data": {"n": 1}, "user": {"external_id": "u"}})
JSON = [(b"content-type", b"application/json")]
ORIGIN = [*JSON, (b"origin", b"https://shop.example")]

CASES: dict[str, tuple[str, bytes | list[bytes], Headers]] = {
    "one event": ("/e/key", EVENT, JSON),
    "one event, cross-origin": ("/e/key", EVENT, ORIGIN),
    "a batch": ("/e/key", b"[" + b",".join([EVENT] * 3) + b"]", JSON),
    "a batch in chunks": ("/e/key", [b"[", EVENT, b",", EVENT, b"]"], JSON),
    "no headers at all": ("/e/key", EVENT, []),
    "no key": ("/e/", EVENT, ORIGIN),
    "empty body": ("/e/key", b"  ", ORIGIN),
    "not JSON": ("/e/key", b"{nope", JSON),
    "not events": ("/e/key", b"42", JSON),
    "an invalid event": ("/e/key", b'[{"name": "a"}, {"data": {}}]', ORIGIN),
    "a reserved name": ("/e/key", b'{"name": "inngest/x"}', JSON),
    "too many events": ("/e/key", b"[" + b",".join([b'{"name":"a"}'] * 11) + b"]", JSON),
    "an event over its limit": (
        "/e/key",
        orjson.dumps([{"name": "a", "data": {"x": "y" * 1200}}]),
        JSON,
    ),
    "a body over its declared limit": ("/e/key", b" " * 2_001, ORIGIN),
    "a streamed body over its limit": ("/e/key", [b"[" + b" " * 1_000, b" " * 1_000, b"]"], JSON),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_lean_and_starlette_answer_alike(dev: Apps, case: str) -> None:
    path, body, headers = CASES[case]
    lean = await call(dev.lean, path, body, headers)
    stack = await call(dev.stack, path, body, headers)
    assert lean.status is not None and lean.raised is None
    same_answer(lean, stack)


async def test_headers_of_a_stored_event(dev: Apps) -> None:
    plain = await call(dev.lean, "/e/key", EVENT, JSON)
    assert plain.status == 200
    assert plain.headers == [
        (b"content-length", str(len(plain.body)).encode()),
        (b"content-type", b"application/json"),
        (b"vary", b"Origin"),
        (b"x-inngest-server-kind", b"dev"),
    ]
    crossed = await call(dev.lean, "/e/key", EVENT, ORIGIN)
    assert crossed.headers == [
        (b"content-length", str(len(crossed.body)).encode()),
        (b"content-type", b"application/json"),
        (b"access-control-allow-origin", b"*"),
        (b"vary", b"Origin"),
        (b"x-inngest-server-kind", b"dev"),
    ]
    ids = plain.json()["ids"] + crossed.json()["ids"]
    assert plain.json()["status"] == 200 and len(ids) == 2
    for event_id in ids:
        stored = await dev.store.get_event(event_id)
        assert stored is not None and stored.user is not None  # sealed, not in clear
        assert b'"external_id"' not in stored.user.ciphertext


async def test_post_to_the_event_api_goes_to_the_lean_app(dev: Apps) -> None:
    to_starlette: list[tuple[str, str]] = []

    async def starlette(scope: MutableMapping[str, Any], *_: object) -> None:
        to_starlette.append((scope.get("method", ""), scope.get("path", "")))

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}  # the lean path then answers nothing (but a 401)

    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    dev.lean.app = starlette
    for method, path, lean in [
        ("POST", "/e/key", True),
        ("POST", "/e/", True),
        ("GET", "/e/key", False),
        ("OPTIONS", "/e/key", False),
        ("POST", "/e/a/b", False),
        ("POST", "/e", False),
        ("POST", "/v1/events", False),
    ]:
        await dev.lean(scope_for(method, path, []), gone, send)
        assert ((method, path) not in to_starlette) is lean, (method, path)
    mounted = scope_for("POST", "/hw/e/key", []) | {"root_path": "/hw"}
    await dev.lean(mounted, gone, send)
    assert to_starlette[-1] == ("POST", "/hw/e/key")  # Starlette routes under a root path
    lifespan = {"type": "lifespan"}
    await dev.lean(lifespan, gone, send)
    assert len(to_starlette) == 7
    assert [ingest_path_key(p) for p in ["/e/k", "/e/", "/e/k/", "/e", "/ex/k"]] == [
        "k",
        "",
        None,
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/e/key", ORIGIN),
        ("OPTIONS", "/e/key", ORIGIN),
        (
            "OPTIONS",
            "/e/key",
            [*ORIGIN, (b"access-control-request-method", b"POST")],
        ),
    ],
)
async def test_other_requests_are_left_to_starlette(
    dev: Apps, method: str, path: str, headers: Headers
) -> None:
    lean = await call(dev.lean, path, b"", headers, method=method)
    stack = await call(dev.stack, path, b"", headers, method=method)
    same_answer(lean, stack)
    if (b"access-control-request-method", b"POST") in headers:
        assert lean.status == 200  # the preflight still says yes, to any origin
        assert (b"access-control-allow-origin", b"*") in lean.headers
    else:
        assert lean.status == 405


async def test_production_keys_are_checked_alike(production: Apps) -> None:
    for path in ["/e/wrong-key", "/e/", "/e/good-key"]:
        lean = await call(production.lean, path, EVENT, ORIGIN)
        stack = await call(production.stack, path, EVENT, ORIGIN)
        same_answer(lean, stack)
        assert (b"x-inngest-server-kind", b"cloud") in lean.headers
    assert (await call(production.lean, "/e/wrong-key", EVENT)).json() == {
        "status": 401,
        "error": "Event key not found",
    }


async def test_a_seeded_send_gets_the_same_ids_on_both_paths_and_is_stored_once(
    dev: Apps,
) -> None:
    seed = [(b"x-inngest-event-id-seed", new_seed().header_value().encode()), *JSON]
    body = b"[" + b",".join([EVENT] * 2) + b"]"
    lean = await call(dev.lean, "/e/key", body, seed)
    stack = await call(dev.stack, "/e/key", body, seed)
    again = await call(dev.lean, "/e/key", body, seed)
    assert lean.json()["ids"] == stack.json()["ids"] == again.json()["ids"]
    assert await dev.store.count_events() == 2


async def test_an_unexpected_error_is_a_plain_500_raised_again(
    dev: Apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object, **__: object) -> list[str]:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(dev.lean.state.event_log, "append", broken)
    lean = await call(dev.lean, "/e/key", EVENT, ORIGIN)
    stack = await call(dev.stack, "/e/key", EVENT, ORIGIN)
    same_answer(lean, stack)
    assert lean.status == 500 and lean.body == b"Internal Server Error"
    assert isinstance(lean.raised, RuntimeError)


async def test_a_client_gone_before_its_body_is_not_answered(dev: Apps) -> None:
    gone = await call(dev.lean, "/e/key", EVENT, JSON, disconnect=True)
    assert (gone.status, gone.body, gone.raised) == (None, b"", None)
    assert await dev.store.count_events() == 0
