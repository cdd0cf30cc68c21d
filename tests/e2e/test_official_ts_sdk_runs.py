"""Functions served over HTTP by the official Inngest TypeScript SDK run on a Headwater dev server.

npm `inngest@4` (latest 4.x) is installed once per session into a temporary folder (the
`inngest_js` fixture of tests/e2e/conftest.py); a plain `node:http` server serving the functions
below through `inngest/node` runs under node with `INNGEST_DEV=<server url>`, as a user's app
would. The server syncs it with `-u <app url>`, and the scenarios of tests/served_apps.py run.

TS SDK v4 checkpoints (POSTs steps to /v1/checkpoint/{runId}/async) whenever the call carries
`ctx.fn_id`; Headwater never sends it (PROTOCOL §3.9), so these runs also prove the plain 206 flow
works with the real package: a step per call, parallel steps planned and run by targeted calls.

Without node, npm or the registry the tests skip locally and fail in CI.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.e2e.official_sdks import InstalledSdk, unavailable
from tests.harness import EVENT_KEY, SIGNING_KEY
from tests.served_apps import ServedApp, ServedAppScenarios, served_app

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

APP_ID = "hw-e2e-ts"

TS_APP = """\
import http from "node:http";
import { appendFileSync, readFileSync } from "node:fs";
import { Inngest, NonRetriableError } from "inngest";
import { serve } from "inngest/node";

const inngest = new Inngest({ id: "hw-e2e-ts" });
const trace = (line) => appendFileSync(process.env.TRACE, line + "\\n");
// Whether a line "<prefix>...:<token>" is in TRACE within 15 s (a parallel sibling started).
const traced = async (prefix, token) => {
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    const lines = readFileSync(process.env.TRACE, "utf8").split("\\n");
    if (lines.some((line) => line.startsWith(prefix) && line.endsWith(`:${token}`))) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
};

const child = inngest.createFunction(
  { id: "child", triggers: [{ event: "app/child" }] },
  async ({ event }) => ({ child_got: event.data.n }),
);

const steps = inngest.createFunction(
  { id: "steps", retries: 2, triggers: [{ event: "app/steps" }] },
  async ({ event, step, attempt }) => {
    const token = event.data.token;
    const a = await step.run("a", () => {
      trace(`steps:a:${attempt}:${token}`);
      return { greeting: "hello " + token };
    });
    await step.sleep("s", "1s");
    const waited = await step.waitForEvent("w", {
      event: "app/approved",
      if: "async.data.token == event.data.token",
      timeout: "1m",
    });
    const sent = await step.sendEvent("e", { name: "app/followup", data: { token } });
    const invoked = await step.invoke("i", { function: child, data: { n: 7 } });
    return { a, w: waited ? waited.data : null, sent: sent.ids, invoked };
  },
);

const flaky = inngest.createFunction(
  { id: "flaky", retries: 1, triggers: [{ event: "app/flaky" }] },
  async ({ event, step, attempt }) => {
    const token = event.data.token;
    const boom = await step.run("boom", () => {
      trace(`flaky:boom:${attempt}:${token}`);
      if (attempt === 0) throw new Error("boom on attempt 0");
      return "recovered";
    });
    return { boom };
  },
);

const fatal = inngest.createFunction(
  { id: "fatal", triggers: [{ event: "app/fatal" }] },
  async ({ event, attempt }) => {
    trace(`fatal:body:${attempt}:${event.data.token}`);
    throw new NonRetriableError("do not retry me");
  },
);

const parallel = inngest.createFunction(
  { id: "parallel", triggers: [{ event: "app/parallel" }] },
  async ({ event, step, attempt }) => {
    const token = event.data.token;
    return Promise.all([
      step.run("p1", () => { trace(`parallel:p1:${attempt}:${token}`); return "one"; }),
      step.run("p2", () => { trace(`parallel:p2:${attempt}:${token}`); return "two"; }),
    ]);
  },
);

const rendezvous = inngest.createFunction(
  { id: "rendezvous", retries: 0, triggers: [{ event: "app/rendezvous" }] },
  async ({ event, step, attempt }) => {
    const token = event.data.token;
    const meet = (me, other) => async () => {
      trace(`rendezvous:${me}:${attempt}:${token}`);
      if (!(await traced(`rendezvous:${other}:`, token))) {
        throw new Error(`step ${other} did not run alongside step ${me}`);
      }
      return me;
    };
    return Promise.all([step.run("r1", meet("r1", "r2")), step.run("r2", meet("r2", "r1"))]);
  },
);

const oneFails = inngest.createFunction(
  { id: "one-fails", retries: 1, triggers: [{ event: "app/one-fails" }] },
  async ({ event, step, attempt }) => {
    const token = event.data.token;
    return Promise.all([
      step.run("boom", async () => {
        trace(`one-fails:boom:${attempt}:${token}`);
        if (attempt === 0) {
          await traced("one-fails:ok:", token);
          throw new Error("boom on attempt 0, once ok has run");
        }
        return "recovered";
      }),
      step.run("ok", () => { trace(`one-fails:ok:${attempt}:${token}`); return "ok"; }),
    ]);
  },
);

const big = inngest.createFunction(
  { id: "big", triggers: [{ event: "app/big" }] },
  async ({ event, step, attempt }) => {
    const token = event.data.token;
    const x = await step.run("x", () => {
      trace(`big:x:${attempt}:${token}`);
      return "x".repeat(event.data.size);
    });
    const y = await step.run("y", () => { trace(`big:y:${attempt}:${token}`); return x.length; });
    return { x: x.length, y, pad: event.data.pad.length };
  },
);

const limited = inngest.createFunction(
  {
    id: "limited",
    concurrency: { limit: 1, key: "event.data.token" },
    triggers: [{ event: "app/limited" }],
  },
  async ({ event, step, attempt }) => {
    const token = event.data.token;
    return step.run("work", async () => {
      trace(`limited:work:${attempt}:${token}`);
      await new Promise((resolve) => setTimeout(resolve, 300));
      return event.data.n;
    });
  },
);

const stepAndSleep = inngest.createFunction(
  { id: "step-and-sleep", triggers: [{ event: "app/step-and-sleep" }] },
  async ({ event, step, attempt }) => {
    const token = event.data.token;
    const [a] = await Promise.all([
      step.run("a", () => { trace(`step-and-sleep:a:${attempt}:${token}`); return "ran"; }),
      step.sleep("s", "1s"),
    ]);
    return { a };
  },
);

const caught = inngest.createFunction(
  { id: "caught", retries: 1, triggers: [{ event: "app/caught" }] },
  async ({ event, step, attempt }) => {
    const token = event.data.token;
    try {
      await step.run("boom", () => {
        trace(`caught:boom:${attempt}:${token}`);
        throw new Error("boom on every attempt");
      });
    } catch (err) {
      return { caught: err.message };
    }
    return { caught: null };
  },
);

const functions = [
  child, steps, flaky, fatal, parallel, rendezvous, oneFails, big, limited, stepAndSleep, caught,
];
const handler = serve({ client: inngest, functions });
http.createServer(handler).listen(Number(process.env.PORT), "127.0.0.1");
"""


@pytest.fixture(scope="module")
def served(
    inngest_js: InstalledSdk,
    module_server_db_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedApp]:
    node = shutil.which("node")
    if node is None:
        unavailable("node is needed to run the TypeScript app")
    (inngest_js.folder / "ts_app.mjs").write_text(TS_APP)
    with served_app(
        data_dir=tmp_path_factory.mktemp("ts-sdk-runs"),
        db_url=module_server_db_url,
        app_id=APP_ID,
        sdk_prefix="js:v4.",
        app_command=[node, "ts_app.mjs"],
        app_cwd=inngest_js.folder,
        app_env={"INNGEST_DEV": "{server}"},
    ) as app:
        yield app


class TestOfficialTypeScriptSdk(ServedAppScenarios):
    """The scenarios of tests/served_apps.py, served by npm `inngest` 4.x under node:http."""


class TestOfficialTypeScriptSdkInProduction(ServedAppScenarios):
    """The same against `headwater start`, the app in production mode (INNGEST_DEV unset,
    INNGEST_SIGNING_KEY and INNGEST_BASE_URL set): every call is signed and verified by the SDK,
    every reply signed by the SDK and verified by the server. SQLite only."""

    @pytest.fixture(scope="class")
    @classmethod
    def served(
        cls, inngest_js: InstalledSdk, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[ServedApp]:
        node = shutil.which("node")
        if node is None:
            unavailable("node is needed to run the TypeScript app")
        (inngest_js.folder / "ts_app.mjs").write_text(TS_APP)
        data_dir = tmp_path_factory.mktemp("ts-sdk-production")
        with served_app(
            data_dir=data_dir,
            db_url=f"sqlite:///{data_dir / 'server.db'}",
            app_id=APP_ID,
            sdk_prefix="js:v4.",
            app_command=[node, "ts_app.mjs"],
            app_cwd=inngest_js.folder,
            app_env={
                "INNGEST_SIGNING_KEY": SIGNING_KEY,
                "INNGEST_BASE_URL": "{server}",
                "INNGEST_EVENT_KEY": EVENT_KEY,
            },
            sync_with_flag=False,
            production=True,
        ) as app:
            yield app
