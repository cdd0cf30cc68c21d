"""`hw.serve()`: our SDK over HTTP, against the recorded exchanges of the official Python SDK."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from headwater import Headwater
from headwater.errors import NonRetriableError, RetryAfterError
from headwater.protocol.durations import parse_duration_ms
from headwater.protocol.steps import hash_step_id
from headwater.sdk.context import Context, ContextSync
from headwater.sdk.signatures import hash_signing_key, sign

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "inngest-sdk"
KEY = "signkey-test-8ee2262a15e8d3c42d6a840db7af3de2aab08ef632b32a37a687f24b34dba3ff"
OLD_KEY = "signkey-test-1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef"
RUN_ID = "01M8D280K3BMT64DKDKS31VF2B"
URL = "http://app.test/api/inngest"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("INNGEST_", "HEADWATER_")):
            monkeypatch.delenv(name)


def fixture(name: str) -> Any:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return json.loads(path.read_text())


def exchanges(label_prefix: str) -> list[dict[str, Any]]:
    recorded = fixture("protocol_py.json")["exchanges"]
    return [e for e in recorded if e["label"].split("#")[0] == label_prefix]


def event(name: str = "app/x", **data: Any) -> dict[str, Any]:
    return {"name": name, "data": data, "user": {}, "id": "01EVENT", "ts": 1}


def call_body(
    steps: dict[str, Any] | None = None,
    *,
    attempt: int = 0,
    max_attempts: int = 3,
    disable_immediate_execution: bool = False,
    trigger: dict[str, Any] | None = None,
) -> dict[str, Any]:
    steps = steps or {}
    trigger = trigger or event()
    return {
        "event": trigger,
        "events": [trigger],
        "steps": steps,
        "ctx": {
            "run_id": RUN_ID,
            "attempt": attempt,
            "max_attempts": max_attempts,
            "disable_immediate_execution": disable_immediate_execution,
            "use_api": False,
            "stack": {"stack": list(steps), "current": len(steps)},
        },
        "version": 2,
        "use_api": False,
    }


async def post(
    client: httpx.AsyncClient,
    fn: str,
    body: dict[str, Any],
    *,
    step: str = "step",
    key: str | None = None,
    at: int | None = None,
) -> httpx.Response:
    raw = orjson.dumps(body)
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-inngest-signature"] = sign(raw, key, at if at is not None else int(time.time()))
    return await client.post(
        "/api/inngest", params={"fnId": f"shop-{fn}", "stepId": step}, content=raw, headers=headers
    )


@pytest.fixture
async def hw() -> AsyncIterator[Headwater]:
    client = Headwater(app_id="shop")
    yield client
    await client.aclose()


def serving(hw: Headwater, **options: Any) -> httpx.AsyncClient:
    app = hw.serve(**options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test")


def ops(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 206, response.text
    body = response.json()
    assert isinstance(body, list)
    return body


def assert_sdk_headers(response: httpx.Response) -> None:
    assert response.headers["x-inngest-sdk"].startswith("headwater-py:v")
    assert response.headers["x-inngest-req-version"] == "2"
    assert response.headers["content-type"] == "application/json"


# -- introspection ------------------------------------------------------------------------------


async def test_introspection_in_dev_mode_has_the_python_sdks_shape(hw: Headwater) -> None:
    @hw.function(id="a", trigger=hw.on_event("app/a"))
    async def a(ctx: Context) -> None:
        return None

    async with serving(hw) as client:
        response = await client.get("/api/inngest", headers={"x-inngest-server-kind": "dev"})
    assert response.status_code == 200
    assert_sdk_headers(response)
    recorded = exchanges("inspect")[0]["response"]["body"]
    assert response.json() == {**recorded, "function_count": 1}


async def test_introspection_refuses_a_server_of_the_other_kind(hw: Headwater) -> None:
    async with serving(hw) as client:
        response = await client.get("/api/inngest", headers={"x-inngest-server-kind": "cloud"})
    assert response.status_code == 403 and response.json() == {}


async def test_introspection_in_cloud_mode_shows_more_to_signed_requests(hw: Headwater) -> None:
    async with serving(hw, signing_key=KEY, signing_key_fallback=OLD_KEY) as client:
        anonymous = await client.get("/api/inngest")
        signed = await client.get(
            "/api/inngest", headers={"x-inngest-signature": sign(b"", KEY, int(time.time()))}
        )
        forged = await client.get(
            "/api/inngest", headers={"x-inngest-signature": sign(b"", "signkey-x-00", 1)}
        )
    assert anonymous.json()["authentication_succeeded"] is False
    assert anonymous.json()["mode"] == "cloud" and "signing_key_hash" not in anonymous.json()
    assert forged.json()["authentication_succeeded"] is False
    body = signed.json()
    assert body["authentication_succeeded"] is True
    assert body["signing_key_hash"] == hash_signing_key(KEY)
    assert body["signing_key_fallback_hash"] == hash_signing_key(OLD_KEY)
    assert body["app_id"] == "shop" and body["serve_path"] == "/api/inngest"
    assert body["api_origin"] == "http://127.0.0.1:8288"
    assert body["sdk_language"] == "headwater-py" and body["has_signing_key"] is True


def test_hashed_signing_key_is_the_sdks_bearer_form() -> None:
    raw = KEY.removeprefix("signkey-test-")
    expected = "signkey-test-" + hashlib.sha256(bytes.fromhex(raw)).hexdigest()
    assert hash_signing_key(KEY) == expected


# -- signatures ---------------------------------------------------------------------------------


async def test_calls_are_verified_in_cloud_mode(hw: Headwater) -> None:
    @hw.function(id="f", trigger=hw.on_event("app/x"))
    async def f(ctx: Context) -> str:
        return "ok"

    body = call_body()
    async with serving(hw, signing_key=KEY, signing_key_fallback=OLD_KEY) as client:
        good = await post(client, "f", body, key=KEY)
        rotated = await post(client, "f", body, key=OLD_KEY)
        unsigned = await post(client, "f", body)
        wrong = await post(client, "f", body, key="signkey-test-abcdef")
        expired = await post(client, "f", body, key=KEY, at=int(time.time()) - 301)
        future = await post(client, "f", body, key=KEY, at=int(time.time()) + 301)
        tampered = await client.post(
            "/api/inngest",
            params={"fnId": "shop-f", "stepId": "step"},
            content=orjson.dumps({**body, "steps": {"x": None}}),
            headers={"x-inngest-signature": sign(orjson.dumps(body), KEY, int(time.time()))},
        )
    assert good.status_code == 200 and good.json() == "ok"
    assert rotated.status_code == 200
    # Replies are signed, as the TS SDK signs them in cloud mode.
    assert good.headers["x-inngest-signature"].startswith("t=")
    for rejected in (unsigned, wrong, expired, future, tampered):
        assert rejected.status_code == 401, rejected.text
        assert rejected.json() == {"message": "Unauthorized"}
        assert_sdk_headers(rejected)


async def test_dev_mode_does_not_check_signatures(
    hw: Headwater, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INNGEST_DEV", "1")
    dev = Headwater(app_id="shop")

    @dev.function(id="f", trigger=dev.on_event("app/x"))
    async def f(ctx: Context) -> str:
        return "ok"

    async with serving(dev, signing_key=KEY) as client:
        response = await post(client, "f", call_body())
    assert response.status_code == 200
    await dev.aclose()


def test_cloud_mode_without_a_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from headwater.errors import ConfigurationError

    monkeypatch.setenv("INNGEST_DEV", "0")
    with pytest.raises(ConfigurationError, match="signing key"):
        Headwater(app_id="shop").serve()


# -- calls --------------------------------------------------------------------------------------


async def test_the_first_new_step_runs_and_is_reported(hw: Headwater) -> None:
    calls: list[str] = []

    @hw.function(id="f", trigger=hw.on_event("app/x"))
    async def f(ctx: Context) -> Any:
        a = await ctx.step.run("a", recorded(calls, "a", {"n": 1}))
        b = await ctx.step.run("b", recorded(calls, "b", 2))
        return [a, b]

    async with serving(hw) as client:
        response = await post(client, "f", call_body())
        replay = await post(client, "f", call_body({hash_step_id("a"): {"data": {"n": 1}}}))
        done = await post(
            client,
            "f",
            call_body({hash_step_id("a"): {"data": {"n": 1}}, hash_step_id("b"): {"data": 2}}),
        )
    assert_sdk_headers(response)
    # The id the Python SDK gave the same step (protocol_py.json, account-created#0).
    assert ops(response) == [
        {
            "op": "StepRun",
            "id": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
            "name": "a",
            "displayName": "a",
            "opts": None,
            "data": {"n": 1},
        }
    ]
    assert [op["id"] for op in ops(replay)] == [hash_step_id("b")]
    assert done.status_code == 200 and done.json() == [{"n": 1}, 2]
    assert_sdk_headers(done)
    assert calls == ["a", "b"]


async def test_a_sleep_carries_its_wake_time_in_name_and_opts(hw: Headwater) -> None:
    @hw.function(id="f", trigger=hw.on_event("app/x"))
    async def f(ctx: Context) -> str:
        await ctx.step.sleep("s", timedelta(minutes=5))
        return "awake"

    async with serving(hw) as client:
        before = datetime.now().astimezone()
        response = await post(client, "f", call_body())
        woken = await post(client, "f", call_body({hash_step_id("s"): None}))
    [op] = ops(response)
    assert op["op"] == "Sleep" and op["id"] == "a0f1490a20d0211c997b44bc357e1972deab8ae3"
    assert op["displayName"] == "s"
    assert op["name"] == op["opts"]["until"] and op["name"].endswith("Z")
    wake = datetime.fromisoformat(op["name"])
    assert timedelta(minutes=4) < wake - before < timedelta(minutes=6)
    assert woken.status_code == 200 and woken.json() == "awake"


async def test_step_errors_carry_the_retry_headers(hw: Headwater) -> None:
    @hw.function(id="flaky", trigger=hw.on_event("app/x"))
    async def flaky(ctx: Context) -> None:
        await ctx.step.run("boom", _raise(ValueError("boom")))

    @hw.function(id="final", trigger=hw.on_event("app/x"))
    async def final(ctx: Context) -> None:
        await ctx.step.run("boom", _raise(NonRetriableError("never again")))

    @hw.function(id="later", trigger=hw.on_event("app/x"))
    async def later(ctx: Context) -> None:
        await ctx.step.run("boom", _raise(RetryAfterError("busy", timedelta(seconds=90))))

    async with serving(hw) as client:
        retried = await post(client, "flaky", call_body(attempt=0, max_attempts=2))
        last = await post(client, "flaky", call_body(attempt=1, max_attempts=2))
        no_retry = await post(client, "final", call_body())
        after = await post(client, "later", call_body())
    [op] = ops(retried)
    assert op["op"] == "StepError" and op["id"] == hash_step_id("boom")
    assert op["error"]["name"] == "ValueError" and op["error"]["message"] == "boom"
    assert "Traceback" in op["error"]["stack"]
    assert retried.headers["x-inngest-no-retry"] == "false"
    # The last attempt is final, as the Python SDK reports it (protocol_py.json, fails#1).
    assert ops(last)[0]["op"] == "StepFailed"
    [op] = ops(no_retry)
    assert op["op"] == "StepError" and op["error"]["name"] == "NonRetriableError"
    assert no_retry.headers["x-inngest-no-retry"] == "true"
    assert ops(after)[0]["op"] == "StepError"
    assert after.headers["x-inngest-no-retry"] == "false"
    assert 88 <= int(after.headers["retry-after"]) <= 91


async def test_function_errors(hw: Headwater) -> None:
    @hw.function(id="fatal", trigger=hw.on_event("app/x"))
    async def fatal(ctx: Context) -> None:
        raise NonRetriableError("do not retry me")

    @hw.function(id="crash", trigger=hw.on_event("app/x"))
    async def crash(ctx: Context) -> None:
        raise KeyError("missing")

    @hw.function(id="later", trigger=hw.on_event("app/x"))
    async def later(ctx: Context) -> None:
        raise RetryAfterError("rate limited", timedelta(seconds=30))

    async with serving(hw) as client:
        fatal_reply = await post(client, "fatal", call_body())
        crash_reply = await post(client, "crash", call_body())
        later_reply = await post(client, "later", call_body())
    assert fatal_reply.status_code == 400
    assert fatal_reply.headers["x-inngest-no-retry"] == "true"
    body = fatal_reply.json()
    assert body["name"] == "NonRetriableError" and body["message"] == "do not retry me"
    assert "Traceback" in body["stack"]
    assert_sdk_headers(fatal_reply)
    assert crash_reply.status_code == 500
    assert crash_reply.headers["x-inngest-no-retry"] == "false"
    assert crash_reply.json()["name"] == "KeyError"
    assert later_reply.status_code == 500 and "retry-after" in later_reply.headers
    assert 28 <= int(later_reply.headers["retry-after"]) <= 31


async def test_unknown_functions_and_bad_bodies(hw: Headwater) -> None:
    async with serving(hw) as client:
        unknown = await post(client, "nope", call_body())
        bad = await client.post("/api/inngest?fnId=shop-nope&stepId=step", content=b"{")
    assert unknown.status_code == 500 and unknown.json()["name"] == "FunctionNotFoundError"

    @hw.function(id="f", trigger=hw.on_event("app/x"))
    async def f(ctx: Context) -> None:
        return None

    async with serving(hw) as client:
        bad = await client.post("/api/inngest?fnId=shop-f&stepId=step", content=b"{")
        no_run = await post(client, "f", {"event": event(), "ctx": {}})
    assert bad.status_code == 400 and bad.headers["x-inngest-no-retry"] == "true"
    assert no_run.status_code == 400 and "run_id" in no_run.json()["message"]


# -- planning: parallel steps, targeted calls, immediate execution turned off ------------------


def _parallel_app(hw: Headwater, calls: list[str]) -> None:
    @hw.function(id="parallel", trigger=hw.on_event("app/parallel"))
    async def parallel(ctx: Context) -> list[str]:
        def one() -> str:
            calls.append("one")
            return "one"

        def two() -> str:
            calls.append("two")
            return "two"

        return list(await asyncio.gather(ctx.step.run("p1", one), ctx.step.run("p2", two)))


async def test_parallel_steps_replay_the_python_sdks_exchanges(hw: Headwater) -> None:
    calls: list[str] = []
    _parallel_app(hw, calls)
    async with serving(hw) as client:
        for recorded in exchanges("parallel"):
            request = recorded["request"]
            path = request["url"].replace("acceptance-py-app-", "shop-")
            response = await client.post(path, json=request["body"])
            expected = recorded["response"]
            assert response.status_code == expected["status"], recorded["label"]
            if expected["status"] == 206:
                got = [(op["op"], op["id"], op["displayName"], op["data"]) for op in ops(response)]
                want = [
                    (op["op"], op["id"], op["displayName"], op["data"]) for op in expected["body"]
                ]
                assert got == want, recorded["label"]
            else:
                assert response.json() == expected["body"]
    # Each step ran exactly once, in its own targeted call.
    assert calls == ["one", "two"]


async def test_a_targeted_call_waits_out_other_new_steps(hw: Headwater) -> None:
    calls: list[str] = []
    _parallel_app(hw, calls)
    async with serving(hw) as client:
        response = await post(
            client,
            "parallel",
            call_body(disable_immediate_execution=True),
            step=hash_step_id("p2"),
        )
        await asyncio.sleep(0.01)
    assert [(op["op"], op["data"]) for op in ops(response)] == [("StepRun", "two")]
    assert calls == ["two"]


async def test_a_targeted_call_for_a_recorded_step_runs_nothing_new(hw: Headwater) -> None:
    calls: list[str] = []
    _parallel_app(hw, calls)
    async with serving(hw) as client:
        response = await post(
            client,
            "parallel",
            call_body({hash_step_id("p1"): {"data": "one"}}),
            step=hash_step_id("p1"),
        )
    assert [(op["op"], op["id"]) for op in ops(response)] == [("StepPlanned", hash_step_id("p2"))]
    assert calls == []


async def test_disabled_immediate_execution_plans_a_single_step(hw: Headwater) -> None:
    calls: list[str] = []

    @hw.function(id="f", trigger=hw.on_event("app/x"))
    async def f(ctx: Context) -> int:
        await ctx.step.run("a", recorded(calls, "a", 1))
        await ctx.step.sleep("s", 1)
        return 1

    async with serving(hw) as client:
        planned = await post(client, "f", call_body(disable_immediate_execution=True))
        ran = await post(
            client, "f", call_body(disable_immediate_execution=True), step=hash_step_id("a")
        )
        slept = await post(
            client,
            "f",
            call_body({hash_step_id("a"): {"data": 1}}, disable_immediate_execution=True),
        )
    assert [(op["op"], op["id"], op["opts"]) for op in ops(planned)] == [
        ("StepPlanned", hash_step_id("a"), {"type": "step.run"})
    ]
    assert [op["op"] for op in ops(ran)] == ["StepRun"]
    # A sleep is not a step to run: it is reported as itself even without immediate execution.
    assert [op["op"] for op in ops(slept)] == ["Sleep"]
    assert calls == ["a"]


async def test_sync_functions_follow_the_same_plan(hw: Headwater) -> None:
    calls: list[str] = []

    @hw.function(id="f", trigger=hw.on_event("app/x"))
    def f(ctx: ContextSync) -> Any:
        a = ctx.step.run("a", recorded(calls, "a", 1))
        ctx.step.sleep("s", 1)
        return a

    async with serving(hw) as client:
        first = await post(client, "f", call_body())
        planned = await post(client, "f", call_body(disable_immediate_execution=True))
        targeted = await post(client, "f", call_body(), step=hash_step_id("a"))
        wrong = await post(client, "f", call_body(), step=hash_step_id("zzz"))
        slept = await post(client, "f", call_body({hash_step_id("a"): {"data": 1}}))
        done = await post(
            client, "f", call_body({hash_step_id("a"): {"data": 1}, hash_step_id("s"): None})
        )
    assert [op["op"] for op in ops(first)] == ["StepRun"]
    assert [op["op"] for op in ops(planned)] == ["StepPlanned"]
    assert [op["op"] for op in ops(targeted)] == ["StepRun"]
    assert wrong.status_code == 500 and wrong.json()["name"] == "StepNotFoundError"
    assert [op["op"] for op in ops(slept)] == ["Sleep"]
    assert done.status_code == 200 and done.json() == 1
    assert calls == ["a", "a"]


# -- the Python SDK's whole scenario, exchange by exchange ----------------------------------------


async def test_the_account_scenario_replays_the_python_sdks_exchanges() -> None:
    sent: list[Any] = []

    def api(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/e/NO_EVENT_KEY_SET"
        sent.append(orjson.loads(request.content))
        return httpx.Response(200, json={"ids": ["01M8D281K1XWBYMZRSGM9KEVSK"], "status": 200})

    hw = Headwater(app_id="shop", transport=httpx.MockTransport(api), backoff=lambda _: 0)

    @hw.function(id="child", trigger=hw.on_event("app/child"))
    async def child(ctx: Context) -> dict[str, Any]:
        return {"child_got": ctx.event.data}

    @hw.function(id="account-created", trigger=hw.on_event("app/account.created"), retries=2)
    async def account_created(ctx: Context) -> dict[str, Any]:
        account = ctx.event.data["accountId"]
        a = await ctx.step.run("a", lambda: {"greeting": f"hello {account}", "t": time.time()})
        await ctx.step.sleep("s", 1)
        w = await ctx.step.wait_for_event(
            "w",
            event="app/x",
            if_="async.data.accountId == event.data.accountId",
            timeout=timedelta(minutes=1),
        )
        ids = await ctx.step.send_event(
            "e", {"name": "app/followup", "data": {"accountId": account}}
        )
        invoked = await ctx.step.invoke("i", function=child, data={"accountId": account})
        waited = None if w is None else {"data": w.data, "id": w.id, "name": w.name, "ts": w.ts}
        return {"a": a, "w": waited, "sent": ids, "invoked": invoked}

    async with serving(hw) as client:
        for recorded in exchanges("account-created") + exchanges(
            "account-created>invoke:acceptance-py-app-child"
        ):
            request = recorded["request"]
            path = request["url"].replace("acceptance-py-app-", "shop-")
            response = await client.post(path, json=request["body"])
            expected = recorded["response"]
            label = recorded["label"]
            assert response.status_code == expected["status"], (label, response.text)
            if expected["status"] == 200:
                assert response.json() == expected["body"], label
                continue
            [got] = ops(response)
            [want] = expected["body"]
            assert (got["op"], got["id"], got["displayName"]) == (
                want["op"],
                want["id"],
                want["displayName"],
            ), label
            if want["op"] == "Sleep":
                datetime.fromisoformat(got["name"])
            elif want["op"] == "WaitForEvent":
                assert got["name"] == want["name"]
                assert got["opts"]["if"] == want["opts"]["if"]
                assert parse_duration_ms(got["opts"]["timeout"]) == parse_duration_ms(
                    want["opts"]["timeout"]
                )
            elif want["op"] == "InvokeFunction":
                assert got["opts"]["function_id"] == want["opts"]["function_id"].replace(
                    "acceptance-py-app-", "shop-"
                )
                assert got["opts"]["payload"]["data"] == want["opts"]["payload"]["data"]
            elif label != "account-created#0":  # step a returns the time
                assert got["data"] == want["data"], label
    assert [batch[0]["name"] for batch in sent] == ["app/followup"]
    await hw.aclose()


async def test_the_failing_scenarios_replay_the_python_sdks_exchanges(hw: Headwater) -> None:
    @hw.function(id="fails", trigger=hw.on_event("app/fails"), retries=1)
    async def fails(ctx: Context) -> None:
        await ctx.step.run("boom", _raise(ValueError(f"boom on attempt {ctx.attempt}")))

    @hw.function(id="nonretriable", trigger=hw.on_event("app/nonretriable"))
    async def nonretriable(ctx: Context) -> None:
        raise NonRetriableError("do not retry me")

    async with serving(hw) as client:
        for recorded in exchanges("fails") + exchanges("nonretriable"):
            request = recorded["request"]
            path = request["url"].replace("acceptance-py-app-", "shop-")
            response = await client.post(path, json=request["body"])
            expected = recorded["response"]
            label = recorded["label"]
            if expected["status"] == 206:
                [got], [want] = ops(response), expected["body"]
                assert (got["op"], got["id"]) == (want["op"], want["id"]), label
                assert got["error"]["message"] == want["error"]["message"], label
            else:
                # Python answers 500, TS 400; both mark it final with the header.
                assert response.status_code in (400, 500), label
                assert response.headers["x-inngest-no-retry"] == "true", label
                assert response.json()["name"] == expected["body"]["name"], label
                assert response.json()["message"] == expected["body"]["message"], label


# -- sync ---------------------------------------------------------------------------------------


def _registrar(
    reply: httpx.Response, seen: list[httpx.Request]
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return reply

    return handler


async def test_a_put_syncs_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []
    reply = httpx.Response(200, json={"ok": True, "modified": True})
    hw = Headwater(
        app_id="shop",
        base_url="http://headwater.test:8288",
        transport=httpx.MockTransport(_registrar(reply, seen)),
    )

    @hw.function(id="f", trigger=hw.on_event("app/x", if_="event.data.n > 1"), retries=2)
    async def f(ctx: Context) -> None:
        return None

    async with serving(hw, signing_key=KEY) as client:
        response = await client.put(
            "/api/inngest?deployId=d-123", headers={"x-inngest-server-kind": "cloud"}
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Successfully synced.", "modified": True}
    assert response.headers["x-inngest-sync-kind"] == "out_of_band"
    assert_sdk_headers(response)
    [request] = seen
    assert str(request.url) == "http://headwater.test:8288/fn/register?deployId=d-123"
    assert request.headers["authorization"] == f"Bearer {hash_signing_key(KEY)}"
    assert request.headers["x-inngest-expected-server-kind"] == "cloud"
    assert request.headers["x-inngest-sdk"].startswith("headwater-py:v")
    body = orjson.loads(request.content)
    assert body["url"] == URL and body["appName"] == "shop" and body["deployType"] == "ping"
    assert body["sdk"].startswith("headwater-py:v") and body["v"] == "0.1"
    assert body["functions"] == [
        {
            "id": "shop-f",
            "name": "f",
            "triggers": [{"event": "app/x", "expression": "event.data.n > 1"}],
            "steps": {
                "step": {
                    "id": "step",
                    "name": "step",
                    "runtime": {"type": "http", "url": f"{URL}?fnId=shop-f&stepId=step"},
                    "retries": {"attempts": 2},
                }
            },
        }
    ]
    await hw.aclose()


async def test_a_sync_reports_the_servers_error() -> None:
    seen: list[httpx.Request] = []
    reply = httpx.Response(400, json={"error": "At least one function is invalid"})
    hw = Headwater(app_id="shop", transport=httpx.MockTransport(_registrar(reply, seen)))
    async with serving(hw, serve_origin="https://shop.example.com/") as client:
        response = await client.put("/api/inngest")
        mismatch = await client.put("/api/inngest", headers={"x-inngest-server-kind": "cloud"})
    assert response.status_code == 400
    assert response.json() == {"message": "At least one function is invalid", "modified": False}
    assert "authorization" not in seen[0].headers  # dev mode, no key
    assert orjson.loads(seen[0].content)["url"] == "https://shop.example.com/api/inngest"
    assert mismatch.status_code == 400 and len(seen) == 1
    await hw.aclose()


def test_register_entries_have_the_python_sdks_shape() -> None:
    recorded = fixture("register_py.json")["body"]
    app = recorded["appname"]
    serve_url = recorded["url"]
    hw = Headwater(app_id=app)
    # The fixture app's functions, defined with our SDK.
    for entry in recorded["functions"]:
        fn_id = entry["id"].removeprefix(f"{app}-")
        retries = entry["steps"]["step"].get("retries", {}).get("attempts", 4)

        async def handler(ctx: Context) -> None:
            return None

        hw.function(
            id=fn_id,
            triggers=[hw.on_event(t["event"]) for t in entry["triggers"]],
            name=entry["name"],
            retries=retries,
        )(handler)

    from headwater.sdk.registration import register_body

    ours = register_body(app, hw.functions, serve_url, "headwater-py:v0.1.0")
    assert ours["url"] == recorded["url"] and ours["v"] == recorded["v"]
    assert ours["appName"] == recorded["appname"]
    functions = ours["functions"]
    assert isinstance(functions, list) and len(functions) == len(recorded["functions"])
    for mine, theirs in zip(functions, recorded["functions"], strict=True):
        # We always state the retries; the Python SDK leaves the default (4) out.
        theirs_step = {"retries": {"attempts": 4}, **theirs["steps"]["step"]}
        assert mine == {**theirs, "steps": {"step": theirs_step}}


def test_register_entries_carry_cancellation_and_timeouts() -> None:
    from headwater.sdk.functions import Timeouts
    from headwater.sdk.registration import function_config

    hw = Headwater(app_id="shop")

    @hw.function(
        id="f",
        trigger=hw.on_cron("*/5 * * * *"),
        cancel_on=[hw.cancel_event("app/cancel", match="data.id", timeout=timedelta(hours=1))],
        timeouts=Timeouts(start=30, finish=timedelta(minutes=10)),
    )
    async def f(ctx: Context) -> None:
        return None

    config = function_config(f, URL)
    assert config["triggers"] == [{"cron": "*/5 * * * *"}]
    assert config["cancel"] == [
        {"event": "app/cancel", "if": "event.data.id == async.data.id", "timeout": "3600000ms"}
    ]
    assert config["timeouts"] == {"start": "30000ms", "finish": "600000ms"}


# -- large state through the API ------------------------------------------------------------------


async def test_trimmed_state_is_fetched_from_the_api() -> None:
    memo = {hash_step_id("a"): {"data": 41}}
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.path} {request.headers.get('authorization')}")
        if request.url.path.endswith("/actions"):
            return httpx.Response(200, json=memo)
        return httpx.Response(200, json=[event(n=1)])

    hw = Headwater(app_id="shop", transport=httpx.MockTransport(api))

    @hw.function(id="f", trigger=hw.on_event("app/x"))
    async def f(ctx: Context) -> int:
        a = await ctx.step.run("a", lambda: 0)
        return int(a) + len(ctx.events)

    body = call_body()
    body["use_api"] = True
    body["events"] = []
    async with serving(hw, signing_key=KEY) as client:
        response = await post(client, "f", body, key=KEY)
    assert response.status_code == 200 and response.json() == 42
    bearer = f"Bearer {hash_signing_key(KEY)}"
    assert seen == [
        f"/v0/runs/{RUN_ID}/actions {bearer}",
        f"/v0/runs/{RUN_ID}/batch {bearer}",
    ]
    await hw.aclose()


def recorded(calls: list[str], name: str, value: Any) -> Callable[[], Any]:
    def step() -> Any:
        calls.append(name)
        return value

    return step


def _raise(exc: Exception) -> Callable[[], None]:
    def fail() -> None:
        raise exc

    return fail


async def test_a_targeted_call_that_never_reaches_its_step_fails(
    hw: Headwater, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headwater.sdk import planning

    monkeypatch.setattr(planning, "STEP_NOT_FOUND_SECONDS", 0.05)
    calls: list[str] = []
    _parallel_app(hw, calls)
    async with serving(hw) as client:
        response = await post(client, "parallel", call_body(), step=hash_step_id("elsewhere"))
    assert response.status_code == 500 and response.json()["name"] == "StepNotFoundError"
    assert response.headers["x-inngest-no-retry"] == "false"
    assert calls == []


async def test_mounted_in_starlette(hw: Headwater) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route

    @hw.function(id="f", trigger=hw.on_event("app/x"))
    async def f(ctx: Context) -> str:
        return str(await ctx.step.run("a", lambda: "mounted"))

    methods = ["GET", "PUT", "POST"]
    web = Starlette(
        routes=[
            Route("/api/inngest", hw.serve(), methods=methods),
            Mount("/mounted", hw.serve(serve_path="/mounted/")),
        ]
    )
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
        info = await client.get("/api/inngest")
        first = await post(client, "f", call_body())
        mounted = await client.post(
            "/mounted/?fnId=shop-f&stepId=step", content=orjson.dumps(call_body())
        )
        deleted = await client.delete("/api/inngest")
    assert info.status_code == 200 and info.json()["function_count"] == 1
    assert ops(first)[0]["data"] == "mounted"
    assert ops(mounted)[0]["data"] == "mounted"
    assert deleted.status_code == 405


async def test_run_alone_it_answers_the_lifespan_protocol(hw: Headwater) -> None:
    app = hw.serve()
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    outgoing: list[Any] = []

    async def receive() -> Any:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        outgoing.append(message["type"])

    await app({"type": "lifespan"}, receive, send)
    assert outgoing == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
