"""Flow control, timeouts and cancellation declared with the official SDKs are read as declared.

Each SDK's app (npm `inngest` 4.x under node:http, PyPI `inngest` under FastAPI, installed once per
session by the fixtures of tests/e2e/conftest.py) declares one function per option and per form
the SDK accepts. A `headwater dev` server syncs it (`-u <app url>`: the SDK POSTs /fn/register);
the tests then load each function's stored registration (`app_functions.config`, the JSON the
SDK sent) and parse it with `function_from_config`, as the server does at sync and at every run
start, and compare the definition's flow options, timeouts and cancel rules with what the app
declared (DECLARED). So a spelling the parser misreads as "no limit" fails here, not in production.

Both apps use the same function ids and, where the SDKs agree, the same expectations; the TS
app alone declares `concurrency: 3` (inngest-py takes only a list), and declares
`concurrency: {limit, key, scope}` where the Python app has a list of one. On both backends (the
configs are stored as JSONB on PostgreSQL). Skips locally and fails in CI without the registries.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pytest

from headwater.engine.apps import function_from_config
from headwater.sdk.flow_options import (
    Batch,
    Concurrency,
    Debounce,
    FlowOptions,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
)
from headwater.sdk.functions import CancelOn, Timeouts
from headwater.store import open_store
from tests.e2e.official_sdks import InstalledSdk, unavailable
from tests.served_apps import served_app

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TS_APP_ID = "hw-opts-ts"
PY_APP_ID = "hw-opts-py"
KEY = "event.data.customer"
SHARED_KEY = '"exports"'
PRIORITY = "event.data.plan == 'pro' ? 120 : -30"
BATCH_IF = "event.data.batchable == true"
CANCEL_IF = "async.data.orderId == event.data.orderId"


@dataclass(frozen=True)
class Declared:
    """What a function's registration must parse to."""

    flow: FlowOptions | None = None
    timeouts: Timeouts | None = None
    cancel_on: tuple[CancelOn, ...] = ()


REQUIRED_ONLY = FlowOptions(
    throttle=Throttle(1, 1.0),
    rate_limit=RateLimit(1, 86_400.0),
    debounce=Debounce(1.0),
    singleton=Singleton("skip"),
)
DECLARED: Mapping[str, Declared] = {
    "concurrency-one": Declared(FlowOptions(concurrency=(Concurrency(2, key=KEY, scope="env"),))),
    "concurrency-two": Declared(
        FlowOptions(
            concurrency=(
                Concurrency(5, key=KEY),
                Concurrency(10, key=SHARED_KEY, scope="account"),
            )
        )
    ),
    # The failure handler of "concurrency-two" has none of its options (inngest-py sends
    # `concurrency: []` and `cancel: []` for it).
    "concurrency-two-failure": Declared(),
    "throttle": Declared(FlowOptions(throttle=Throttle(10, 60.0, burst=3, key=KEY))),
    "rate-limit": Declared(FlowOptions(rate_limit=RateLimit(4, 5_400.0, key=KEY))),
    "debounce": Declared(FlowOptions(debounce=Debounce(5.0, key=KEY, timeout=120.0))),
    "batch": Declared(FlowOptions(batch=Batch(50, 10.0, key=KEY, if_=BATCH_IF))),
    "priority": Declared(FlowOptions(priority=Priority(PRIORITY))),
    "singleton-skip": Declared(FlowOptions(singleton=Singleton("skip", key=KEY))),
    "singleton-cancel": Declared(FlowOptions(singleton=Singleton("cancel"))),
    "idempotency": Declared(FlowOptions(idempotency="event.data.orderId")),
    # Only the required field of each option: the others take their defaults.
    "required-only": Declared(REQUIRED_ONLY),
    "timeouts": Declared(timeouts=Timeouts(start=30.0, finish=7_200.0)),
    "timeout-start": Declared(timeouts=Timeouts(start=90.0)),
    "cancel": Declared(
        cancel_on=(
            CancelOn("app/order.cancelled", if_=CANCEL_IF, timeout=86_400.0),
            CancelOn("app/order.voided", timeout=90.0),
            CancelOn("app/all.stopped"),
        )
    ),
}
TS_DECLARED: Mapping[str, Declared] = {
    **DECLARED,
    "concurrency-number": Declared(FlowOptions(concurrency=(Concurrency(3),))),
    # The TS SDK turns `match: "data.orderId"` into this `if`.
    "cancel": Declared(
        cancel_on=(
            CancelOn("app/order.cancelled", if_=CANCEL_IF, timeout=86_400.0),
            CancelOn(
                "app/order.voided", if_="event.data.orderId == async.data.orderId", timeout=90.0
            ),
            CancelOn("app/all.stopped"),
        )
    ),
}
PY_DECLARED: Mapping[str, Declared] = {
    **DECLARED,
    # inngest.Throttle's `burst` defaults to 1, and the SDK sends it.
    "required-only": Declared(replace(REQUIRED_ONLY, throttle=Throttle(1, 1.0, burst=1))),
}

TS_APP = """\
import http from "node:http";
import { Inngest } from "inngest";
import { serve } from "inngest/node";

const inngest = new Inngest({ id: "hw-opts-ts" });
const fn = (id, options) =>
  inngest.createFunction({ id, triggers: [{ event: `opts/${id}` }], ...options }, async () => id);
const KEY = "event.data.customer";

const functions = [
  fn("concurrency-number", { concurrency: 3 }),
  fn("concurrency-one", { concurrency: { limit: 2, key: KEY, scope: "env" } }),
  fn("concurrency-two", {
    concurrency: [{ limit: 5, key: KEY }, { limit: 10, key: '"exports"', scope: "account" }],
    onFailure: async () => "failed",
  }),
  fn("throttle", { throttle: { limit: 10, period: "1m", burst: 3, key: KEY } }),
  fn("rate-limit", { rateLimit: { limit: 4, period: "1h30m", key: KEY } }),
  fn("debounce", { debounce: { period: "5s", key: KEY, timeout: "2m" } }),
  fn("batch", {
    batchEvents: { maxSize: 50, timeout: "10s", key: KEY, if: "event.data.batchable == true" },
  }),
  fn("priority", { priority: { run: "event.data.plan == 'pro' ? 120 : -30" } }),
  fn("singleton-skip", { singleton: { key: KEY, mode: "skip" } }),
  fn("singleton-cancel", { singleton: { mode: "cancel" } }),
  fn("idempotency", { idempotency: "event.data.orderId" }),
  fn("required-only", {
    throttle: { limit: 1, period: "1s" },
    rateLimit: { limit: 1, period: "24h" },
    debounce: { period: "1s" },
    singleton: { mode: "skip" },
  }),
  fn("timeouts", { timeouts: { start: "30s", finish: "2h" } }),
  fn("timeout-start", { timeouts: { start: "1m30s" } }),
  fn("cancel", {
    cancelOn: [
      { event: "app/order.cancelled", if: "async.data.orderId == event.data.orderId", timeout: "1d" },
      { event: "app/order.voided", match: "data.orderId", timeout: 90000 },
      { event: "app/all.stopped" },
    ],
  }),
];
http.createServer(serve({ client: inngest, functions })).listen(Number(process.env.PORT), "127.0.0.1");
"""

# Durations in each form inngest-py takes: an int of milliseconds or a timedelta.
PY_APP = """\
import datetime

import fastapi
import inngest
import inngest.fast_api

client = inngest.Inngest(app_id="hw-opts-py")
KEY = "event.data.customer"
functions = []


def fn(fn_id, **options):
    @client.create_function(
        fn_id=fn_id, trigger=inngest.TriggerEvent(event=f"opts/{fn_id}"), **options
    )
    async def handler(ctx):
        return fn_id

    functions.append(handler)


async def failed(ctx):
    return "failed"


fn("concurrency-one", concurrency=[inngest.Concurrency(limit=2, key=KEY, scope="env")])
fn(
    "concurrency-two",
    concurrency=[
        inngest.Concurrency(limit=5, key=KEY),
        inngest.Concurrency(limit=10, key='"exports"', scope="account"),
    ],
    on_failure=failed,
)
fn(
    "throttle",
    throttle=inngest.Throttle(limit=10, period=datetime.timedelta(minutes=1), burst=3, key=KEY),
)
fn(
    "rate-limit",
    rate_limit=inngest.RateLimit(limit=4, period=datetime.timedelta(hours=1, minutes=30), key=KEY),
)
fn(
    "debounce",
    debounce=inngest.Debounce(period=5000, key=KEY, timeout=datetime.timedelta(minutes=2)),
)
fn(
    "batch",
    batch_events=inngest.Batch(
        max_size=50, timeout=10_000, key=KEY, if_exp="event.data.batchable == true"
    ),
)
fn("priority", priority=inngest.Priority(run="event.data.plan == 'pro' ? 120 : -30"))
fn("singleton-skip", singleton=inngest.Singleton(key=KEY, mode="skip"))
fn("singleton-cancel", singleton=inngest.Singleton(mode="cancel"))
fn("idempotency", idempotency="event.data.orderId")
fn(
    "required-only",
    throttle=inngest.Throttle(limit=1, period=1000),
    rate_limit=inngest.RateLimit(limit=1, period=datetime.timedelta(hours=24)),
    debounce=inngest.Debounce(period=datetime.timedelta(seconds=1)),
    singleton=inngest.Singleton(mode="skip"),
)
fn(
    "timeouts",
    timeouts=inngest.Timeouts(start=datetime.timedelta(seconds=30), finish=7_200_000),
)
fn("timeout-start", timeouts=inngest.Timeouts(start=90_000))
fn(
    "cancel",
    cancel=[
        inngest.Cancel(
            event="app/order.cancelled",
            if_exp="async.data.orderId == event.data.orderId",
            timeout=datetime.timedelta(days=1),
        ),
        inngest.Cancel(event="app/order.voided", timeout=90_000),
        inngest.Cancel(event="app/all.stopped"),
    ],
)

app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, functions)
"""


def stored_configs(db_url: str, app_id: str) -> dict[str, dict[str, Any]]:
    """Each function's registration as stored: function id -> the config the SDK sent."""

    async def load() -> dict[str, dict[str, Any]]:
        store = open_store(db_url)
        await store.open()
        try:
            functions = await store.app_functions(app_id)
        finally:
            await store.close()
        prefix = f"{app_id}-"
        return {f.slug.removeprefix(prefix): orjson.loads(f.config_json) for f in functions}

    return asyncio.run(load())


@pytest.fixture(scope="module")
def ts_configs(
    inngest_js: InstalledSdk,
    module_server_db_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        unavailable("node is needed to run the TypeScript app")
    (inngest_js.folder / "ts_options_app.mjs").write_text(TS_APP)
    with served_app(
        data_dir=tmp_path_factory.mktemp("ts-sdk-options"),
        db_url=module_server_db_url,
        app_id=TS_APP_ID,
        sdk_prefix="js:v4.",
        app_command=[node, "ts_options_app.mjs"],
        app_cwd=inngest_js.folder,
        app_env={"INNGEST_DEV": "{server}"},
    ):
        return stored_configs(module_server_db_url, TS_APP_ID)


@pytest.fixture(scope="module")
def py_configs(
    inngest_py: InstalledSdk,
    module_server_db_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, Any]]:
    (inngest_py.folder / "py_options_app.py").write_text(PY_APP)
    with served_app(
        data_dir=tmp_path_factory.mktemp("py-sdk-options"),
        db_url=module_server_db_url,
        app_id=PY_APP_ID,
        sdk_prefix="py:v",
        app_command=[sys.executable, "-m", "uvicorn", "py_options_app:app", "--port", "{port}"],
        app_cwd=inngest_py.folder,
        app_env={"INNGEST_DEV": "{server}", "PYTHONPATH": inngest_py.python_path},
    ):
        return stored_configs(module_server_db_url, PY_APP_ID)


def read(app_id: str, config: dict[str, Any]) -> Declared:
    definition = function_from_config(app_id, config)
    return Declared(definition.flow, definition.timeouts, definition.cancel_on)


def test_the_typescript_app_registers_every_function(ts_configs: dict[str, Any]) -> None:
    assert sorted(ts_configs) == sorted(TS_DECLARED)


@pytest.mark.parametrize("fn_id", sorted(TS_DECLARED))
def test_typescript_sdk_options_are_read_as_declared(
    ts_configs: dict[str, dict[str, Any]], fn_id: str
) -> None:
    config = ts_configs[fn_id]
    assert read(TS_APP_ID, config) == TS_DECLARED[fn_id], f"the TS SDK sent {config}"


def test_the_python_app_registers_every_function(py_configs: dict[str, Any]) -> None:
    assert sorted(py_configs) == sorted(PY_DECLARED)


@pytest.mark.parametrize("fn_id", sorted(PY_DECLARED))
def test_python_sdk_options_are_read_as_declared(
    py_configs: dict[str, dict[str, Any]], fn_id: str
) -> None:
    config = py_configs[fn_id]
    assert read(PY_APP_ID, config) == PY_DECLARED[fn_id], f"the Python SDK sent {config}"
