"""Crash durability: every event the server acknowledged survives a `kill -9` of the server.

Concurrent clients send single events and 10-event batches while the server is killed with SIGKILL
(no shutdown code runs). A server restarted on the same data dir and database must return every
acknowledged event, and must hold each unacknowledged request either whole or not at all.

For SQLite this exercises WAL + synchronous=FULL + the group commit: an id is only acknowledged
after the commit that holds it. (A SIGKILL keeps the OS page cache, so this does not simulate a
power cut; it does catch any acknowledgement sent before the commit.)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.harness import running_server

SENDERS = 8
BATCH_SIZE = 10
SEND_BEFORE_KILL_S = 1.5
MIN_ACKNOWLEDGED = 100
READ_THREADS = 4


@dataclass
class Request:
    sender: int
    number: int
    events: list[dict[str, Any]]


@dataclass
class Outcome:
    """What the clients saw. Only `acknowledged` requests got 200 with one id per event."""

    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)  # internal id → event
    acknowledged_requests: list[Request] = field(default_factory=list)
    unacknowledged: list[Request] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # exception class → count
    bad_replies: list[str] = field(default_factory=list)  # replies a live server must not give
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_request(sender: int, number: int, tag: str) -> Request:
    """Odd requests are single events carrying a `user`; even ones are batches of 10."""
    name = f"app/crash.{tag}.s{sender}"
    if number % 2:
        event = {
            "name": name,
            "data": {"sender": sender, "request": number, "index": 0, "nonce": uuid.uuid4().hex},
            "user": {"external_id": f"{tag}-{sender}-{number}", "plan": "pro"},
        }
        return Request(sender, number, [event])
    events = [
        {
            "name": name,
            "data": {"sender": sender, "request": number, "index": index, "items": [index] * 3},
        }
        for index in range(BATCH_SIZE)
    ]
    return Request(sender, number, events)


def sender_loop(url: str, sender: int, tag: str, stop: threading.Event, outcome: Outcome) -> None:
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        number = 0
        while not stop.is_set():
            number += 1
            request = make_request(sender, number, tag)
            try:
                response = client.post("/e/NO_EVENT_KEY_SET", json=request.events)
            except httpx.HTTPError as exc:
                # The server died before answering: the request was not acknowledged.
                with outcome.lock:
                    outcome.errors[type(exc).__name__] += 1
                    outcome.unacknowledged.append(request)
                time.sleep(0.01)
                continue
            body = response.json() if response.status_code == 200 else None
            ids = body.get("ids") if isinstance(body, dict) else None
            with outcome.lock:
                if (
                    body is None
                    or body.get("status") != 200
                    or not isinstance(ids, list)
                    or len(ids) != len(request.events)
                ):
                    outcome.bad_replies.append(f"{response.status_code} {response.text[:200]}")
                    outcome.unacknowledged.append(request)
                    continue
                outcome.acknowledged_requests.append(request)
                for internal_id, event in zip(ids, request.events, strict=True):
                    outcome.acknowledged[internal_id] = event


def check_acknowledged(url: str, acknowledged: dict[str, dict[str, Any]]) -> list[str]:
    """Read every acknowledged id back; returns a line per event missing or not as sent."""
    local = threading.local()
    clients: list[httpx.Client] = []

    def check(item: tuple[str, dict[str, Any]]) -> str | None:
        internal_id, sent = item
        client: httpx.Client | None = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=30, trust_env=False)
            clients.append(client)
        response = client.get(f"/v1/events/{internal_id}")
        if response.status_code != 200:
            return f"{internal_id}: {response.status_code} {response.text[:200]}"
        stored = response.json()["data"]
        got = {k: stored[k] for k in ("name", "data", "user")}
        want = {"name": sent["name"], "data": sent["data"], "user": sent.get("user", {})}
        return None if got == want else f"{internal_id}: stored {got}, sent {want}"

    try:
        with ThreadPoolExecutor(READ_THREADS) as pool:
            return [p for p in pool.map(check, acknowledged.items()) if p is not None]
    finally:
        for client in clients:
            client.close()


def list_named(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    """Every stored event of this name, paging through GET /v1/events newest first."""
    events: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"name": name, "limit": 100}
    while True:
        response = client.get("/v1/events", params=params)
        assert response.status_code == 200, response.text
        page: list[dict[str, Any]] = response.json()["data"]
        events += page
        if len(page) < 100:
            return events
        params["cursor"] = page[-1]["internal_id"]


def test_acknowledged_events_survive_kill_9(server_db_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    tag = uuid.uuid4().hex[:10]
    outcome = Outcome()
    stop = threading.Event()

    with running_server(data_dir, db_url=server_db_url) as first:
        senders = [
            threading.Thread(target=sender_loop, args=(first.url, n, tag, stop, outcome))
            for n in range(SENDERS)
        ]
        for thread in senders:
            thread.start()
        try:
            time.sleep(SEND_BEFORE_KILL_S)
            with outcome.lock:
                acknowledged_before_kill = len(outcome.acknowledged)
            first.kill()
            # Let every sender notice the dead server (an error on its in-flight or next request).
            time.sleep(0.3)
        finally:
            stop.set()
            for thread in senders:
                thread.join()
        crash_log = first.log()

    print(  # shown with -s, or with a failure
        f"acknowledged: {acknowledged_before_kill} events before the kill, "
        f"{len(outcome.acknowledged)} in all ({len(outcome.acknowledged_requests)} requests); "
        f"unacknowledged requests: {len(outcome.unacknowledged)}; errors: {dict(outcome.errors)}"
    )
    assert outcome.bad_replies == [], f"replies from a live server that are not acks: {outcome}"
    assert acknowledged_before_kill > MIN_ACKNOWLEDGED, (
        f"only {acknowledged_before_kill} events acknowledged in {SEND_BEFORE_KILL_S}s: too few for "
        f"the test to mean anything\nserver log:\n{crash_log}"
    )
    assert outcome.unacknowledged, "no request failed: the server was not killed while sending"

    with (
        running_server(data_dir, db_url=server_db_url) as second,
        httpx.Client(base_url=second.url, timeout=30, trust_env=False) as client,
    ):
        # 1. Every acknowledged id reads back, with its name, data and (decrypted) user.
        problems = check_acknowledged(second.url, outcome.acknowledged)
        assert problems == [], (
            f"{len(problems)} of {len(outcome.acknowledged)} acknowledged events lost or changed "
            f"after kill -9, e.g.:\n" + "\n".join(problems[:10])
        )

        # 2. Each request is stored whole or not at all, and once: acknowledged ones whole.
        stored: Counter[tuple[int, int]] = Counter()
        stored_ids: set[str] = set()
        for sender in range(SENDERS):
            for event in list_named(client, f"app/crash.{tag}.s{sender}"):
                stored[(event["data"]["sender"], event["data"]["request"])] += 1
                stored_ids.add(event["internal_id"])
        assert set(outcome.acknowledged) <= stored_ids
        torn = {
            (r.sender, r.number): (stored[(r.sender, r.number)], len(r.events))
            for r in outcome.unacknowledged
            if stored[(r.sender, r.number)] not in (0, len(r.events))
        }
        assert torn == {}, f"requests stored in part (stored, sent): {torn}"
        for request in outcome.acknowledged_requests:
            assert stored[(request.sender, request.number)] == len(request.events), request
