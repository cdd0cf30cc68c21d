"""Real responses of a real server match the OpenAPI document it serves at /openapi.json.

A server (SQLite) drives our `hw.serve()` app (tests/integration/apps/served.py) in its own
process; each response below is checked against the schema the document gives for its path,
method and status: the status must be documented, the documented required fields present with
their types, and no field left undocumented. (`jsonschema` is not among our dependencies, so
`conforms` checks the subset of JSON Schema the document uses.)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.protocol.ids import new_ulid
from tests.harness import EVENT_KEY, SIGNING_KEY, running_server
from tests.served_apps import ServedApp, served_app

REPO = Path(__file__).resolve().parents[2]
APP_ID = "hw-e2e-ours"
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        schema = node
    return schema


def _has_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in {"integer", "number"}:
        return False
    return isinstance(value, _TYPES[name])


def _properties(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any] | None:
    """The properties an object may have (across allOf), or None when any are allowed."""
    if "additionalProperties" in schema:
        return None
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            known = _properties(document, resolve(document, part))
            if known is None:
                return None
            merged |= known
        return merged
    properties: dict[str, Any] | None = schema.get("properties")
    return properties


def conforms(
    document: dict[str, Any], schema: dict[str, Any], value: Any, at: str, *, whole: bool = True
) -> list[str]:
    """What is wrong with `value` against `schema` (an empty list if nothing). An object must not
    have fields the schema does not name, unless `schema` is only a part (of an allOf)."""
    schema = resolve(document, schema)
    problems: list[str] = []
    for part in schema.get("allOf", []):
        problems += conforms(document, part, value, at, whole=False)
    if "oneOf" in schema:
        matching = [p for p in schema["oneOf"] if not conforms(document, p, value, at)]
        if len(matching) != 1:
            problems.append(f"{at}: matches {len(matching)} of oneOf")
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_has_type(value, name) for name in kinds):
            return [*problems, f"{at}: {value!r} is not {kind}"]
    if "const" in schema and value != schema["const"]:
        problems.append(f"{at}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{at}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{at}: required {name} is missing")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += conforms(document, sub, value[name], f"{at}.{name}")
        known = _properties(document, schema)
        if whole and known is not None:
            undocumented = set(value) - set(known)
            if undocumented:
                problems.append(f"{at}: undocumented fields {sorted(undocumented)}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += conforms(document, schema["items"], item, f"{at}[{index}]")
    return problems


class Documented:
    """Checks responses against the document the server serves."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.document: dict[str, Any] = http.get("/openapi.json").json()

    def check(self, response: httpx.Response, path: str, status: int) -> Any:
        """The response's JSON, once its status is `status` and its body what the document says
        the operation at `path` answers with that status."""
        method = response.request.method.lower()
        assert response.status_code == status, response.text
        responses = self.document["paths"][path][method]["responses"]
        assert str(status) in responses, f"{method} {path}: {status} is not documented"
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        body = response.json()
        problems = conforms(self.document, schema, body, f"{method} {path} {status}")
        assert problems == [], problems
        return body


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    data_dir = tmp_path_factory.mktemp("openapi")
    command = [sys.executable, "-m", "uvicorn", "tests.integration.apps.served:app"]
    with served_app(
        data_dir=data_dir,
        db_url=f"sqlite:///{data_dir / 'server.db'}",
        app_id=APP_ID,
        sdk_prefix="headwater-py:v",
        app_command=[*command, "--port", "{port}", "--log-level", "warning"],
        app_cwd=REPO,
        app_env={"INNGEST_DEV": "{server}"},
    ) as app:
        yield app


@pytest.fixture(scope="module")
def docs(served: ServedApp) -> Documented:
    return Documented(served.http)


@pytest.fixture(scope="module")
def ended_run(served: ServedApp) -> dict[str, Any]:
    """A completed run of app/parallel (two steps)."""
    return served.run_of(served.send("app/parallel", {"token": "openapi"}))


def test_event_api_and_event_reads_match_the_document(served: ServedApp, docs: Documented) -> None:
    http = served.http
    sent = docs.check(http.post("/e/k", json={"name": "app/nothing"}), "/e/{key}", 200)
    docs.check(http.post("/e/k", json={"data": {}}), "/e/{key}", 400)
    docs.check(http.post("/e/", json={"name": "app/nothing"}), "/e/", 401)
    event_id = sent["ids"][0]
    docs.check(http.get("/v1/events", params={"name": "app/nothing"}), "/v1/events", 200)
    docs.check(http.get("/v1/events", params={"limit": 0}), "/v1/events", 400)
    docs.check(http.get(f"/v1/events/{event_id}"), "/v1/events/{internal_id}", 200)
    docs.check(http.get("/v1/events/nope"), "/v1/events/{internal_id}", 400)
    docs.check(http.get(f"/v1/events/{new_ulid()}"), "/v1/events/{internal_id}", 404)
    docs.check(http.delete("/v1/users/nobody"), "/v1/users/{external_id}", 200)
    docs.check(http.get("/health"), "/health", 200)
    docs.check(http.get("/dev"), "/dev", 200)
    docs.check(http.get("/openapi.json"), "/openapi.json", 200)


def test_runs_steps_and_run_state_match_the_document(
    served: ServedApp, docs: Documented, ended_run: dict[str, Any]
) -> None:
    http = served.http
    run_id = ended_run["run_id"]
    run = docs.check(http.get(f"/v1/runs/{run_id}"), "/v1/runs/{run_id}", 200)["data"]
    assert run["status"] == "Completed" and run["output"] == ["one", "two"]
    docs.check(http.get(f"/v1/runs/{new_ulid()}"), "/v1/runs/{run_id}", 404)
    docs.check(http.get("/v1/runs/nope"), "/v1/runs/{run_id}", 400)
    steps = docs.check(http.get(f"/v1/runs/{run_id}/steps"), "/v1/runs/{run_id}/steps", 200)
    assert len(steps["data"]) >= 2
    path = "/v1/events/{internal_id}/runs"
    docs.check(http.get(f"/v1/events/{run['event_id']}/runs"), path, 200)
    docs.check(http.get(f"/v0/runs/{run_id}/batch"), "/v0/runs/{run_id}/batch", 200)
    docs.check(http.get(f"/v0/runs/{run_id}/actions"), "/v0/runs/{run_id}/actions", 200)
    docs.check(http.get("/v0/runs/nope/batch"), "/v0/runs/{run_id}/batch", 400)
    docs.check(http.get(f"/v0/runs/{new_ulid()}/actions"), "/v0/runs/{run_id}/actions", 404)
    docs.check(http.delete(f"/v1/runs/{run_id}"), "/v1/runs/{run_id}", 409)


def test_cancellations_match_the_document(served: ServedApp, docs: Documented) -> None:
    http = served.http
    body = {
        "app_id": APP_ID,
        "function_id": "steps",
        "started_before": rfc3339(datetime.now(UTC)),
        "if": "event.data.token == 'none'",
    }
    started = docs.check(http.post("/v1/cancellations", json=body), "/v1/cancellations", 201)
    job_id = started["data"]["id"]
    docs.check(http.post("/v1/cancellations", json={}), "/v1/cancellations", 400)
    one = "/v1/cancellations/{cancellation_id}"
    deadline = time.monotonic() + 10
    while (shown := docs.check(http.get(f"/v1/cancellations/{job_id}"), one, 200))["data"][
        "state"
    ] == "Running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert shown["data"]["cancelled"] == 0
    listed = docs.check(http.get("/v1/cancellations?limit=1"), "/v1/cancellations", 200)
    assert listed["metadata"]["next_cursor"] == job_id
    docs.check(http.get("/v1/cancellations?limit=0"), "/v1/cancellations", 400)
    docs.check(http.get(f"/v1/cancellations/{new_ulid()}"), one, 404)
    docs.check(http.get("/v1/cancellations/nope"), one, 400)
    docs.check(http.delete(f"/v1/cancellations/{job_id}"), one, 409)
    docs.check(http.delete(f"/v1/cancellations/{new_ulid()}"), one, 404)


def test_replays_match_the_document(
    served: ServedApp, docs: Documented, ended_run: dict[str, Any]
) -> None:
    http = served.http
    run_id = ended_run["run_id"]
    replayed = docs.check(http.post(f"/v1/runs/{run_id}/replay"), "/v1/runs/{run_id}/replay", 201)
    assert replayed["data"]["replay_of"] == run_id
    docs.check(http.post(f"/v1/runs/{new_ulid()}/replay"), "/v1/runs/{run_id}/replay", 404)
    now = datetime.now(UTC)
    bulk = {
        "function_id": f"{APP_ID}-parallel",
        "from": rfc3339(now - timedelta(hours=1)),
        "to": rfc3339(now),
        "statuses": ["Completed"],
    }
    job = docs.check(http.post("/v1/replays", json=bulk), "/v1/replays", 202)["data"]
    docs.check(http.post("/v1/replays", json={"function_id": 1}), "/v1/replays", 400)
    listed = docs.check(http.get("/v1/replays?limit=1"), "/v1/replays", 200)
    assert listed["metadata"]["next_cursor"] == job["id"]
    docs.check(http.get("/v1/replays?cursor=nope"), "/v1/replays", 400)
    docs.check(http.get(f"/v1/replays/{job['id']}"), "/v1/replays/{job_id}", 200)
    docs.check(http.get(f"/v1/replays/{new_ulid()}"), "/v1/replays/{job_id}", 404)
    docs.check(http.get("/v1/replays/nope"), "/v1/replays/{job_id}", 400)
    docs.check(http.delete("/v1/replays/nope"), "/v1/replays/{job_id}", 400)
    deadline = time.monotonic() + 30
    while http.get(f"/v1/replays/{job['id']}").json()["data"]["state"] == "Running":
        assert time.monotonic() < deadline, "the bulk replay did not end"
        time.sleep(0.05)
    docs.check(http.delete(f"/v1/replays/{job['id']}"), "/v1/replays/{job_id}", 409)
    path = "/v1/replays/{job_id}/cancel"
    docs.check(http.post(f"/v1/replays/{new_ulid()}/cancel"), path, 404)
    docs.check(http.post("/v1/replays/nope/cancel"), path, 400)


def test_apps_and_sdk_endpoints_match_the_document(served: ServedApp, docs: Documented) -> None:
    http = served.http
    synced = docs.check(
        http.put("/v1/apps/sync", json={"url": served.app_url}), "/v1/apps/sync", 200
    )
    assert synced["data"]["url"] == served.app_url
    docs.check(http.put("/v1/apps/sync", json={}), "/v1/apps/sync", 400)
    apps = docs.check(http.get("/v1/apps"), "/v1/apps", 200)["data"]
    assert f"{APP_ID}-child" in apps[0]["functions"]
    docs.check(http.post("/fn/register", content=b"not json"), "/fn/register", 400)
    invoked = http.post(f"/invoke/{APP_ID}-child", json={"data": {"n": 3}})
    docs.check(invoked, "/invoke/{slug}", 200)
    docs.check(http.post("/invoke/nobody-here", json={}), "/invoke/{slug}", 404)
    docs.check(http.post("/invoke/x", json=[1]), "/invoke/{slug}", 400)
    docs.check(http.post("/v1/signals", json={}), "/v1/signals", 501)


def test_production_refusals_match_the_document(tmp_path: Path) -> None:
    with (
        running_server(tmp_path, production=True) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        docs = Documented(http)
        docs.check(http.get("/v1/events"), "/v1/events", 401)
        docs.check(http.post("/v1/signals"), "/v1/signals", 401)
        docs.check(http.get(f"/v0/runs/{new_ulid()}/batch"), "/v0/runs/{run_id}/batch", 401)
        signed = {"Authorization": f"Bearer {SIGNING_KEY}"}
        docs.check(http.get("/v1/events", headers=signed), "/v1/events", 200)
        docs.check(http.post("/e/wrong-key", json={"name": "a"}), "/e/{key}", 401)
        docs.check(http.post(f"/e/{EVENT_KEY}", json={"name": "a"}), "/e/{key}", 200)
        docs.check(http.post("/fn/register", json={}), "/fn/register", 401)
        docs.check(http.get("/dev"), "/dev", 404)
