"""The Event API and REST reads against a real server process, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from headwater.protocol.ids import is_ulid, new_seed
from tests.conftest import BACKENDS, fresh_postgres_schema
from tests.harness import RunningServer, running_server

USER = {"external_id": "645ea000129f1c40109ca7ad", "email": "taylor@example.com"}


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("server")
    if request.param == "sqlite":
        with running_server(data_dir) as running:
            yield running
    else:
        with fresh_postgres_schema() as url, running_server(data_dir, db_url=url) as running:
            yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def unique(prefix: str = "test") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


def listed(client: httpx.Client, name: str, **params: object) -> list[dict[str, object]]:
    response = client.get("/v1/events", params={"name": name, "limit": 100, **params})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert isinstance(data, list)
    return data


def test_single_event_is_stored_and_read_back(client: httpx.Client) -> None:
    # Given an event with data and user
    name = unique()
    event = {"name": name, "data": {"accountId": "a1", "billingPlan": "pro"}, "user": USER}
    # When it is sent
    response = client.post("/e/any-key", json=event)
    # Then one ULID comes back, and the event reads back whole, user decrypted
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == 200 and len(body["ids"]) == 1 and is_ulid(body["ids"][0])
    assert response.headers["x-inngest-server-kind"] == "dev"
    read = client.get(f"/v1/events/{body['ids'][0]}").json()
    assert read["metadata"]["fetched_at"].endswith("Z")
    stored = read["data"]
    assert stored["internal_id"] == body["ids"][0]
    assert stored["id"] == body["ids"][0]  # no sender id: the internal id stands in
    assert (stored["name"], stored["data"], stored["user"]) == (name, event["data"], USER)
    assert isinstance(stored["ts"], int) and stored["v"] is None


def test_batch_ids_come_back_in_input_order(client: httpx.Client) -> None:
    names = [unique() for _ in range(5)]
    response = client.post(
        "/e/k", json=[{"name": n, "data": {"i": i}} for i, n in enumerate(names)]
    )
    ids = response.json()["ids"]
    assert len(ids) == 5
    for i, (event_id, name) in enumerate(zip(ids, names, strict=True)):
        stored = client.get(f"/v1/events/{event_id}").json()["data"]
        assert (stored["name"], stored["data"]) == (name, {"i": i})


def test_sender_fields_are_kept(client: httpx.Client) -> None:
    name = unique()
    event = {
        "name": name,
        "id": "order-7",
        "ts": 1684274328198,
        "v": "2024-05-15.1",
        "data": {"_inngest": {"x": 1}, "k": 1},
    }
    event_id = client.post("/e/k", json=event).json()["ids"][0]
    stored = client.get(f"/v1/events/{event_id}").json()["data"]
    assert (stored["id"], stored["ts"], stored["v"], stored["data"]) == (
        "order-7",
        1684274328198,
        "2024-05-15.1",
        {"k": 1},
    )


def test_one_bad_event_rejects_the_whole_request(client: httpx.Client) -> None:
    name = unique()
    response = client.post(
        "/e/k", json=[{"name": name}, {"name": name}, {"name": name}, {"name": name, "ts": "soon"}]
    )
    assert response.status_code == 400
    assert response.json() == {
        "ids": [],
        "status": 400,
        "error": "event 3: ts must be an integer (milliseconds)",
    }
    assert listed(client, name) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"", "request body is empty"),
        (b"42", "request body must be an event object or an array of event objects"),
        (b'"event"', "request body must be an event object or an array of event objects"),
        (b'[{"name": "inngest/function.failed"}]', "event 0: name must not start with 'inngest/'"),
        (b'[{"data": {}}]', "event 0: name is required"),
        (b'{"name": "a", "data": []}', "event 0: data must be an object, not an array"),
    ],
)
def test_bad_bodies_are_400_with_a_reason(client: httpx.Client, body: bytes, message: str) -> None:
    response = client.post("/e/k", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    reply = response.json()
    assert reply["status"] == 400 and reply["ids"] == []
    assert reply["error"].startswith(message)


def test_more_than_5000_events_is_rejected(client: httpx.Client) -> None:
    name = unique()
    response = client.post("/e/k", json=[{"name": name}] * 5001)
    assert response.status_code == 400
    assert "more than 5000 events" in response.json()["error"]
    assert listed(client, name) == []


def test_5000_events_are_accepted(client: httpx.Client) -> None:
    name = unique()
    ids = client.post("/e/k", json=[{"name": name, "data": {"i": i}} for i in range(5000)]).json()[
        "ids"
    ]
    assert len(ids) == len(set(ids)) == 5000


def test_event_over_3_mib_is_413_and_names_the_event(client: httpx.Client) -> None:
    name = unique()
    big = {"name": name, "data": {"blob": "x" * (3 * 1024 * 1024)}}
    response = client.post("/e/k", json=[{"name": name}, big])
    assert response.status_code == 413
    reply = response.json()
    assert reply["status"] == 413 and reply["ids"] == []
    assert (
        reply["error"].startswith("event 1: is ")
        and "the limit is 3145728 bytes per event" in reply["error"]
    )
    assert listed(client, name) == []


def test_body_over_10_mib_is_413(client: httpx.Client) -> None:
    events = [{"name": "a", "data": {"blob": "x" * (1024 * 1024)}}] * 11
    response = client.post("/e/k", json=events)
    assert response.status_code == 413
    assert "the limit is 10485760 bytes" in response.json()["error"]


def test_seeded_retry_gets_the_same_ids_and_stores_once(client: httpx.Client) -> None:
    name = unique()
    headers = {"x-inngest-event-id-seed": new_seed().header_value()}
    events = [{"name": name, "data": {"i": 1}}, {"name": name, "data": {"i": 2}}]
    first = client.post("/e/k", json=events, headers=headers).json()["ids"]
    second = client.post("/e/k", json=events, headers=headers).json()["ids"]
    assert first == second
    assert sorted(e["internal_id"] for e in listed(client, name)) == sorted(first)


def test_duplicate_sender_id_is_still_stored_and_listed(client: httpx.Client) -> None:
    name = unique()
    first = client.post("/e/k", json={"name": name, "id": "same"}).json()["ids"][0]
    second = client.post("/e/k", json={"name": name, "id": "same"}).json()["ids"][0]
    assert first != second
    stored = listed(client, name)
    assert [e["internal_id"] for e in stored] == [second, first]
    assert {e["id"] for e in stored} == {"same"}


def test_pagination_filters_and_cursor(client: httpx.Client) -> None:
    name = unique()
    ids = client.post("/e/k", json=[{"name": name, "data": {"i": i}} for i in range(25)]).json()[
        "ids"
    ]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, object] = {"name": name, "limit": 10}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/v1/events", params=params).json()
        seen += [e["internal_id"] for e in body["data"]]
        pages += 1
        cursor = body["metadata"]["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(ids, reverse=True)
    # received window: everything was received just now
    assert len(listed(client, name, received_after="2000-01-01T00:00:00Z")) == 25
    assert listed(client, name, received_before="2000-01-01T00:00:00Z") == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit must be an integer from 1 to 100"),
        ({"limit": "101"}, "limit must be an integer from 1 to 100"),
        ({"limit": "ten"}, "limit must be an integer from 1 to 100"),
        ({"cursor": "nope"}, "cursor must be an event's internal_id"),
        ({"received_after": "yesterday"}, "received_after must be an RFC 3339 time"),
        ({"received_before": "2024-01-01T00:00:00"}, "received_before must carry a time zone"),
    ],
)
def test_bad_list_queries_are_400(
    client: httpx.Client, params: dict[str, str], message: str
) -> None:
    response = client.get("/v1/events", params=params)
    assert response.status_code == 400
    body = response.json()
    assert (
        body["status"] == 400
        and body["code"] == "invalid_query"
        and body["error"].startswith(message)
    )


def test_get_event_errors(client: httpx.Client) -> None:
    bad = client.get("/v1/events/not-a-ulid")
    assert bad.status_code == 400 and bad.json()["error"] == "the event id must be a ULID"
    missing = client.get("/v1/events/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert missing.status_code == 404 and missing.json() == {
        "error": "Event not found",
        "status": 404,
        "code": "not_found",
    }


def test_erasing_a_user_forgets_only_their_events(client: httpx.Client) -> None:
    name = unique()
    target = {"external_id": f"user-{uuid.uuid4().hex}", "email": "erase-me@example.com"}
    other = {"external_id": f"user-{uuid.uuid4().hex}", "email": "keep-me@example.com"}
    ids = client.post(
        "/e/k",
        json=[
            {"name": name, "user": target},
            {"name": name, "user": other},
            {"name": name, "user": target},
        ],
    ).json()["ids"]
    response = client.delete(f"/v1/users/{target['external_id']}")
    assert response.status_code == 200
    assert response.json()["data"] == {"external_id": target["external_id"], "erased": 2}
    events = {e["internal_id"]: e for e in listed(client, name)}
    assert events[ids[0]]["user"] == {} and events[ids[0]]["user_erased"] is True
    assert events[ids[2]]["user"] == {} and events[ids[2]]["user_erased"] is True
    assert events[ids[1]]["user"] == other and events[ids[1]]["user_erased"] is False
    assert client.delete(f"/v1/users/{target['external_id']}").json()["data"]["erased"] == 0


def test_health_dev_and_openapi(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": 200, "message": "OK"}
    dev = client.get("/dev")
    assert dev.status_code == 200 and dev.json()["isMissingEventKeys"] is True
    spec = client.get("/openapi.json").json()
    assert (
        spec["openapi"].startswith("3.")
        and "/e/{key}" in spec["paths"]
        and "/v1/events" in spec["paths"]
    )


def test_cors_allows_any_origin(client: httpx.Client) -> None:
    response = client.options(
        "/e/k", headers={"origin": "http://example.test", "access-control-request-method": "POST"}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in {"*", "http://example.test"}


def test_event_api_responses_carry_the_server_kind_and_cors_headers(client: httpx.Client) -> None:
    # POST /e/ is served by the bare ASGI path; it adds what the Starlette middleware would.
    for body, status in [({"name": unique()}, 200), ({"data": {}}, 400)]:
        plain = client.post("/e/k", json=body)
        assert plain.status_code == status
        assert plain.headers["x-inngest-server-kind"] == "dev"
        assert plain.headers["content-type"] == "application/json"
        assert plain.headers["vary"] == "Origin"
        assert "access-control-allow-origin" not in plain.headers
        crossed = client.post("/e/k", json=body, headers={"origin": "http://example.test"})
        assert crossed.status_code == status
        assert crossed.headers["access-control-allow-origin"] == "*"
        assert crossed.headers["vary"] == "Origin"
        assert crossed.headers["x-inngest-server-kind"] == "dev"
    other = client.get("/e/k")
    assert other.status_code == 405 and other.headers["x-inngest-server-kind"] == "dev"


# -- encryption at rest: the raw bytes hold no plaintext -----------------------------------------


def secret_user() -> dict[str, str]:
    marker = uuid.uuid4().hex
    return {"external_id": f"ext-{marker}", "email": f"mail-{marker}@example.com"}


def test_sqlite_file_bytes_hold_no_plaintext_user(tmp_path: Path) -> None:
    user = secret_user()
    with running_server(tmp_path) as server:
        response = httpx.post(
            f"{server.url}/e/k",
            json=[{"name": "app/x", "user": user, "data": {"marker": "visible-data"}}] * 20,
        )
        assert response.status_code == 200
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("headwater.db*"))
        assert b"visible-data" in raw  # the scan does see the stored rows
        assert user["email"].encode() not in raw and user["external_id"].encode() not in raw
        assert (
            httpx.get(f"{server.url}/v1/events/{response.json()['ids'][0]}").json()["data"]["user"]
            == user
        )
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("headwater.db*"))
    assert b"visible-data" in raw
    assert user["email"].encode() not in raw and user["external_id"].encode() not in raw


@pytest.mark.postgres
def test_postgres_table_bytes_hold_no_plaintext_user(tmp_path: Path) -> None:
    import psycopg

    user = secret_user()
    with fresh_postgres_schema() as url, running_server(tmp_path, db_url=url) as server:
        response = httpx.post(
            f"{server.url}/e/k",
            json=[{"name": "app/x", "user": user, "data": {"marker": "visible-data"}}] * 20,
        )
        assert response.status_code == 200
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("SELECT events::text FROM events").fetchall()
            text = "".join(row[0] for row in rows)
            assert "visible-data" in text
            assert user["email"] not in text and user["external_id"] not in text
            conn.execute("CHECKPOINT")
            relation = conn.execute("SELECT pg_relation_filepath('events')").fetchone()
            data_dir = conn.execute("SHOW data_directory").fetchone()
        assert relation is not None and data_dir is not None
        path = Path(data_dir[0]) / relation[0]
        if not os.access(path, os.R_OK):
            pytest.skip(f"cannot read PostgreSQL's data file {path} as this user")
        raw = path.read_bytes()
        assert b"visible-data" in raw
        assert user["email"].encode() not in raw and user["external_id"].encode() not in raw


# -- production mode -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("prod"), production=True) as running:
        yield running


def test_production_rejects_unknown_event_keys(production: RunningServer) -> None:
    response = httpx.post(f"{production.url}/e/wrong", json={"name": "app/a"})
    assert response.status_code == 401
    assert response.json() == {"status": 401, "error": "Event key not found"}
    assert response.headers["x-inngest-server-kind"] == "cloud"
    ok = httpx.post(f"{production.url}/e/test-event-key", json={"name": "app/a"})
    assert ok.status_code == 200


def test_production_api_needs_the_signing_key(production: RunningServer) -> None:
    from headwater.server.auth import hashed_signing_key
    from tests.harness import SIGNING_KEY

    url = f"{production.url}/v1/events"
    assert httpx.get(url).status_code == 401
    assert (
        httpx.get(url, headers={"Authorization": "Bearer signkey-test-00"}).json()["error"]
        == "Authentication failed"
    )
    assert httpx.get(url, headers={"Authorization": f"Bearer {SIGNING_KEY}"}).status_code == 200
    hashed = f"signkey-test-{hashed_signing_key(SIGNING_KEY)}"
    assert httpx.get(url, headers={"Authorization": f"Bearer {hashed}"}).status_code == 200
    assert httpx.get(f"{production.url}/dev").status_code == 404


def test_production_refuses_to_start_without_keys(tmp_path: Path) -> None:
    import subprocess
    import sys

    base = [sys.executable, "-m", "headwater", "start", "--data-dir", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    no_event_key = subprocess.run(
        [*base, "--signing-key", "abcd"], env=env, capture_output=True, text=True, timeout=30
    )
    assert no_event_key.returncode == 2 and "--event-key" in no_event_key.stderr
    no_signing = subprocess.run(
        [*base, "--event-key", "k"], env=env, capture_output=True, text=True, timeout=30
    )
    assert no_signing.returncode == 2 and "--signing-key" in no_signing.stderr
    no_crypto = subprocess.run(
        [*base, "--event-key", "k", "--signing-key", "abcd"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert no_crypto.returncode == 2 and "HEADWATER_ENCRYPTION_KEYS" in no_crypto.stderr


# -- key rotation beside a live server ------------------------------------------------------------


def test_keys_rotate_reseals_old_rows_while_the_server_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    with running_server(tmp_path) as server:
        before = httpx.post(
            f"{server.url}/e/k",
            json=[{"name": "app/r", "user": {"external_id": f"u{i}"}} for i in range(30)],
        ).json()["ids"]
        old_key = orjson.loads((tmp_path / "keys.json").read_bytes())["keys"][0]["id"]
        rotate = subprocess.run(
            [sys.executable, "-m", "headwater", "keys", "rotate", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rotate.returncode == 0, rotate.stderr
        assert "re-sealed 30 events" in rotate.stdout
        keys = orjson.loads((tmp_path / "keys.json").read_bytes())["keys"]
        assert [k["id"] for k in keys][1] == old_key
        # the live server reads rotated rows and seals new ones with the new key
        after = httpx.post(
            f"{server.url}/e/k", json={"name": "app/r", "user": {"external_id": "new"}}
        ).json()["ids"]
        for i, event_id in enumerate(before):
            assert httpx.get(f"{server.url}/v1/events/{event_id}").json()["data"]["user"] == {
                "external_id": f"u{i}"
            }
        assert httpx.get(f"{server.url}/v1/events/{after[0]}").json()["data"]["user"] == {
            "external_id": "new"
        }
    import sqlite3

    with sqlite3.connect(tmp_path / "headwater.db") as conn:
        key_ids = {row[0] for row in conn.execute("SELECT user_key_id FROM events")}
    assert old_key not in key_ids and len(key_ids) == 1


def test_nul_in_data_is_refused_on_every_backend(client: httpx.Client) -> None:
    # PostgreSQL cannot store NUL; SQLite could, but both backends must accept the same events.
    name = unique()
    response = client.post("/e/k", json=[{"name": name}, {"name": name, "data": {"a": "x\u0000y"}}])
    assert response.status_code == 400
    assert response.json()["error"] == "event 1: data must not contain the NUL character (\\u0000)"
    assert listed(client, name) == []
