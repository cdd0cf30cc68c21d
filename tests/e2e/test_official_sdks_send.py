"""The official Inngest SDKs (npm `inngest` 4.x, PyPI `inngest`) send events to a Headwater dev server.

Each SDK is installed from its registry once per session into a temporary folder, then driven by a
small script in a child process that finds the server the way a user's app would: `INNGEST_DEV=1`
plus `INNGEST_BASE_URL`, or `INNGEST_DEV=<url>`. Every returned id is read back through
`GET /v1/events/{id}`, so the whole path is covered: SDK → Event API → store → REST.

Without a reachable registry (or without node/npm) the tests skip locally and fail in CI.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.official_sdks import InstalledSdk, tail
from tests.harness import RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SCRIPT_TIMEOUT_S = 60
RESULT_PREFIX = "RESULT "

# Reads {case: payload} on stdin, sends each payload with one `inngest.send()`, prints the outcome.
NODE_SEND_SCRIPT = """\
import { readFileSync } from "node:fs";
import { Inngest } from "inngest";

const cases = JSON.parse(readFileSync(0, "utf8"));
const inngest = new Inngest({ id: "headwater-e2e" });
const results = {};
for (const [name, payload] of Object.entries(cases)) {
  try {
    const { ids } = await inngest.send(payload);
    results[name] = { ids };
  } catch (err) {
    results[name] = { error: String(err && err.message !== undefined ? err.message : err) };
  }
}
process.stdout.write("RESULT " + JSON.stringify(results) + "\\n");
"""

PYTHON_SEND_SCRIPT = """\
import json
import sys

import inngest

cases = json.load(sys.stdin)
client = inngest.Inngest(app_id="headwater-e2e")
results = {}
for name, payload in cases.items():
    if isinstance(payload, list):
        events = [inngest.Event(**event) for event in payload]
    else:
        events = inngest.Event(**payload)
    try:
        results[name] = {"ids": client.send_sync(events)}
    except Exception as exc:
        results[name] = {"error": str(exc), "type": type(exc).__name__}
print("RESULT " + json.dumps(results), flush=True)
"""

# A `data` object with every JSON type, nesting and non-ASCII text, to check it comes back exactly.
RICH_DATA: dict[str, Any] = {
    "accountId": "645e9f6794e10937e9bdc201",
    "billingPlan": "pro",
    "seats": 12,
    "ratio": 2.5,
    "active": True,
    "closed": None,
    "tags": ["a", "ü✓", 3, False, None, {"k": [1.25, -7]}],
    "nested": {"deep": {"deeper": {"text": "naïve café ☕"}}},
}
FIXED_TS = 1_684_274_328_198
FIXED_V = "2024-05-15.1"


# -- running the SDKs ----------------------------------------------------------------------------


def _child_env(inngest_env: Mapping[str, str], sdk: InstalledSdk) -> dict[str, str]:
    """The test's environment without any INNGEST_* of its own, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    env.update(inngest_env)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    if sdk.language == "py":
        env["PYTHONPATH"] = sdk.python_path
    return env


@dataclass(frozen=True)
class SendRun:
    results: dict[str, dict[str, Any]]
    started_ms: int
    finished_ms: int

    def ids(self, case: str) -> list[str]:
        outcome = self.results[case]
        assert "ids" in outcome, f"send {case!r} failed: {outcome}"
        return list(outcome["ids"])

    def error(self, case: str) -> str:
        outcome = self.results[case]
        assert "error" in outcome, f"send {case!r} should have failed but returned {outcome}"
        return str(outcome["error"])


def run_sdk(sdk: InstalledSdk, cases: Mapping[str, Any], inngest_env: Mapping[str, str]) -> SendRun:
    """Send each case's payload with the SDK in a child process; returns ids or error per case."""
    if sdk.language == "ts":
        (sdk.folder / "send.mjs").write_text(NODE_SEND_SCRIPT)
        command = [shutil.which("node") or "node", "send.mjs"]
    else:
        (sdk.folder / "send.py").write_text(PYTHON_SEND_SCRIPT)
        command = [sys.executable, "send.py"]
    started_ms = time.time_ns() // 1_000_000
    done = subprocess.run(
        command,
        cwd=sdk.folder,
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=_child_env(inngest_env, sdk),
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    finished_ms = time.time_ns() // 1_000_000
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    assert done.returncode == 0 and lines, (
        f"{sdk.language} SDK {sdk.version} script failed ({done.returncode}):\n"
        f"stdout:\n{tail(done.stdout)}\nstderr:\n{tail(done.stderr)}"
    )
    return SendRun(json.loads(lines[-1][len(RESULT_PREFIX) :]), started_ms, finished_ms)


# -- the server and what it stored ---------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    url: str
    db_url: str
    data_dir: Path

    def dev_env(self) -> dict[str, str]:
        return {"INNGEST_DEV": "1", "INNGEST_BASE_URL": self.url}

    def get_event(self, internal_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/v1/events/{internal_id}", timeout=10)
        assert response.status_code == 200, f"GET /v1/events/{internal_id}: {response.text}"
        event: dict[str, Any] = response.json()["data"]
        return event

    def events_named(self, name: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.url}/v1/events", params={"name": name, "limit": 100}, timeout=10
        )
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["data"]
        return events

    def event_api_error(self, payload: Any) -> str:
        """The error the Event API gives for this payload when posted directly."""
        response = httpx.post(f"{self.url}/e/NO_EVENT_KEY_SET", json=[payload], timeout=10)
        assert response.status_code == 400, response.text
        return str(response.json()["error"])


@pytest.fixture(scope="module")
def server(module_server_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One dev server per backend, shared by this module's tests (each uses its own event names)."""
    data_dir = tmp_path_factory.mktemp("e2e-server")
    running = RunningServer(data_dir, db_url=module_server_db_url).start()
    try:
        yield Server(running.url, module_server_db_url, data_dir)
    finally:
        running.stop()


def token() -> str:
    return uuid.uuid4().hex[:10]


def assert_stored(
    server: Server,
    ids: list[str],
    sent: list[dict[str, Any]],
    run: SendRun,
    *,
    sdk_sends_user_and_v: bool,
) -> None:
    """Each id reads back as the event sent in that position: name, data, id, ts (and user, v)."""
    assert len(ids) == len(sent), f"{len(sent)} events sent, {len(ids)} ids returned: {ids}"
    assert len(set(ids)) == len(ids), f"duplicate ids returned: {ids}"
    for internal_id, event in zip(ids, sent, strict=True):
        stored = server.get_event(internal_id)
        assert stored["internal_id"] == internal_id
        assert stored["name"] == event["name"]
        assert stored["data"] == event["data"]
        # The sender's id if it gave one, else the internal id (PROTOCOL §1.6).
        assert stored["id"] == event.get("id", internal_id)
        if "ts" in event:
            assert stored["ts"] == event["ts"]
        else:
            # Both SDKs stamp ts with the client's clock at send time.
            assert run.started_ms - 1000 <= stored["ts"] <= run.finished_ms + 1000, stored
        if sdk_sends_user_and_v:
            assert stored["user"] == event.get("user", {})
            assert stored["v"] == event.get("v")


# -- TypeScript SDK ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SdkSends:
    sent: dict[str, Any]
    run: SendRun


@pytest.fixture(scope="module")
def ts_sends(server: Server, inngest_js: InstalledSdk) -> SdkSends:
    """One run of the TS SDK against the server: the success cases and two invalid events."""
    tag = token()
    name = f"app/e2e.ts.{tag}"
    sent: dict[str, Any] = {
        "single": {
            "name": f"{name}.account.created",
            "data": RICH_DATA,
            "user": {"external_id": f"user-{tag}", "email": f"taylor-{tag}@example.com"},
        },
        "array": [
            {"name": f"{name}.invoice.created", "data": {"invoiceId": "645e9e024befa68763f5b500"}},
            {"name": f"{name}.invoice.created", "data": {"invoiceId": "645e9e08f29fb563c972b1f7"}},
        ],
        "id_ts_v": {
            "id": f"cart-checkout-completed-{tag}",
            "name": f"{name}.checkout",
            "data": {"cartId": tag},
            "ts": FIXED_TS,
            "v": FIXED_V,
        },
        "reserved_name": {"name": "inngest/e2e.reserved", "data": {"tag": tag}},
        "string_ts": {"name": f"{name}.bad-ts", "data": {}, "ts": "yesterday"},
    }
    return SdkSends(sent, run_sdk(inngest_js, sent, server.dev_env()))


def test_ts_sends_single_event_with_data_and_user(server: Server, ts_sends: SdkSends) -> None:
    ids = ts_sends.run.ids("single")
    assert_stored(server, ids, [ts_sends.sent["single"]], ts_sends.run, sdk_sends_user_and_v=True)


def test_ts_user_is_not_stored_in_plaintext(server: Server, ts_sends: SdkSends) -> None:
    """`user` is sealed at rest: its text is in no file of the server (database, WAL, keys, log)
    and, on PostgreSQL, in no column of its row."""
    [internal_id] = ts_sends.run.ids("single")
    email = ts_sends.sent["single"]["user"]["email"]
    account = ts_sends.sent["single"]["data"]["accountId"]
    files = [p for p in server.data_dir.rglob("*") if p.is_file()]
    if server.db_url.startswith("sqlite"):
        database = Path(server.db_url.removeprefix("sqlite:///"))
        files += [p for p in database.parent.glob(f"{database.name}*") if p.is_file()]
        # `data` is stored in clear, which shows the search looks in the right files.
        assert any(account.encode() in p.read_bytes() for p in files), [p.name for p in files]
    else:
        import psycopg

        with psycopg.connect(server.db_url) as connection:
            row = connection.execute(
                "SELECT user_ciphertext, events::text FROM events WHERE internal_id = %s",
                (internal_id,),
            ).fetchone()
        assert row is not None
        ciphertext, row_text = row
        assert account in row_text
        assert ciphertext is not None
        assert email.encode() not in bytes(ciphertext)
        assert email not in row_text
    assert [p.name for p in files if email.encode() in p.read_bytes()] == []


def test_ts_sends_array_of_two_events(server: Server, ts_sends: SdkSends) -> None:
    ids = ts_sends.run.ids("array")
    assert_stored(server, ids, ts_sends.sent["array"], ts_sends.run, sdk_sends_user_and_v=True)


def test_ts_sends_event_with_id_ts_and_v(server: Server, ts_sends: SdkSends) -> None:
    ids = ts_sends.run.ids("id_ts_v")
    assert_stored(server, ids, [ts_sends.sent["id_ts_v"]], ts_sends.run, sdk_sends_user_and_v=True)


@pytest.mark.parametrize("case", ["reserved_name", "string_ts"])
def test_ts_invalid_event_throws_the_servers_message(
    server: Server, ts_sends: SdkSends, case: str
) -> None:
    """The TS SDK throws `Inngest API Error: 400 <the server's error>` and nothing is stored."""
    expected = server.event_api_error(ts_sends.sent[case])
    assert ts_sends.run.error(case) == f"Inngest API Error: 400 {expected}"
    if case == "string_ts":
        assert server.events_named(ts_sends.sent[case]["name"]) == []


def test_ts_finds_server_through_inngest_dev_url(server: Server, inngest_js: InstalledSdk) -> None:
    event = {"name": f"app/e2e.ts.dev-url.{token()}", "data": {"via": "INNGEST_DEV"}}
    run = run_sdk(inngest_js, {"dev_url": event}, {"INNGEST_DEV": server.url})
    assert_stored(server, run.ids("dev_url"), [event], run, sdk_sends_user_and_v=True)


# -- Python SDK ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def py_sends(server: Server, inngest_py: InstalledSdk) -> SdkSends:
    """One run of the Python SDK. It has no `user` or `v` fields (0.5.19 drops them), so none sent."""
    tag = token()
    name = f"app/e2e.py.{tag}"
    sent: dict[str, Any] = {
        "single": {"name": f"{name}.account.created", "data": RICH_DATA},
        "array": [
            {"name": f"{name}.invoice.created", "data": {"invoiceId": "645e9e024befa68763f5b500"}},
            {"name": f"{name}.invoice.created", "data": {"invoiceId": "645e9e08f29fb563c972b1f7"}},
        ],
        "id_ts": {
            "id": f"cart-checkout-completed-{tag}",
            "name": f"{name}.checkout",
            "data": {"cartId": tag},
            "ts": FIXED_TS,
        },
        "reserved_name": {"name": "inngest/e2e.reserved", "data": {"tag": tag}},
    }
    return SdkSends(sent, run_sdk(inngest_py, sent, server.dev_env()))


@pytest.mark.parametrize("case", ["single", "array", "id_ts"])
def test_py_sends_round_trip(server: Server, py_sends: SdkSends, case: str) -> None:
    ids = py_sends.run.ids(case)
    payload = py_sends.sent[case]
    sent = payload if isinstance(payload, list) else [payload]
    assert_stored(server, ids, sent, py_sends.run, sdk_sends_user_and_v=False)


def test_py_invalid_event_raises_the_servers_message(server: Server, py_sends: SdkSends) -> None:
    expected = server.event_api_error(py_sends.sent["reserved_name"])
    assert py_sends.run.error("reserved_name") == expected
    assert py_sends.run.results["reserved_name"]["type"] == "SendEventsError"


def test_py_finds_server_through_inngest_dev_url(server: Server, inngest_py: InstalledSdk) -> None:
    event = {"name": f"app/e2e.py.dev-url.{token()}", "data": {"via": "INNGEST_DEV"}}
    run = run_sdk(inngest_py, {"dev_url": event}, {"INNGEST_DEV": server.url})
    assert_stored(server, run.ids("dev_url"), [event], run, sdk_sends_user_and_v=False)


# -- the id seed the SDKs send, so a retried send gets the same ids ------------------------------


def test_retried_send_with_same_seed_gets_same_ids_and_is_stored_once(server: Server) -> None:
    """Both SDKs re-send a failed send with the same `x-inngest-event-id-seed` (PROTOCOL §1.6)."""
    name = f"app/e2e.seed.{token()}"
    body = [{"name": name, "data": {"n": 1}}, {"name": name, "data": {"n": 2}}]
    seed = f"{time.time_ns() // 1_000_000},{base64.b64encode(os.urandom(10)).decode()}"
    url = f"{server.url}/e/NO_EVENT_KEY_SET"
    with httpx.Client(timeout=10) as client:
        first = client.post(url, json=body, headers={"x-inngest-event-id-seed": seed})
        retry = client.post(url, json=body, headers={"x-inngest-event-id-seed": seed})
        assert first.status_code == retry.status_code == 200, (first.text, retry.text)
        ids = first.json()["ids"]
        assert retry.json() == {"ids": ids, "status": 200}
        assert len(set(ids)) == 2
        assert sorted(e["internal_id"] for e in server.events_named(name)) == sorted(ids)

        # Another seed is another send: new ids, stored again.
        other_seed = f"{time.time_ns() // 1_000_000},{base64.b64encode(os.urandom(10)).decode()}"
        other = client.post(url, json=body, headers={"x-inngest-event-id-seed": other_seed})
        assert other.status_code == 200, other.text
        assert set(other.json()["ids"]).isdisjoint(ids)
        assert len(server.events_named(name)) == 4
