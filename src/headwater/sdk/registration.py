"""Telling a server about the app (PROTOCOL §3.2): the register body, and the request that sends it.

On a PUT to the serve URL, `hw.serve()` POSTs `register_body(...)` to `{base_url}/fn/register`
(`register`); the body lists each function as Inngest's FunctionConfig (`function_config`), in the
TS SDK's spellings, which every server reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

import httpx
import orjson

from headwater.protocol.durations import format_duration
from headwater.sdk.functions import FunctionDefinition
from headwater.sdk.signatures import hash_signing_key
from headwater.types import JSON, JSONObject

FRAMEWORK: Final = "asgi"
#: The execution version this SDK speaks (the `X-Inngest-Req-Version` of its requests and replies).
REQUEST_VERSION: Final = "2"


def function_config(definition: FunctionDefinition, serve_url: str) -> JSONObject:
    """One entry of the register body's `functions`: Inngest's FunctionConfig for `definition`."""
    query = urlencode({"fnId": definition.slug, "stepId": "step"}, safe=":")
    separator = "&" if "?" in serve_url else "?"
    step: JSONObject = {
        "id": "step",
        "name": "step",
        "runtime": {"type": "http", "url": f"{serve_url}{separator}{query}"},
        # Inngest reads `attempts` as the number of retries (max attempts = N + 1).
        "retries": {"attempts": definition.retries},
    }
    config: JSONObject = {
        "id": definition.slug,
        "name": definition.name or definition.id,
        "triggers": [dict(trigger.to_wire()) for trigger in definition.triggers],
        "steps": {"step": step},
    }
    if definition.cancel_on:
        cancels: list[JSON] = []
        for rule in definition.cancel_on:
            cancel: JSONObject = {"event": rule.event}
            if rule.expression:
                cancel["if"] = rule.expression
            if rule.timeout is not None:
                cancel["timeout"] = format_duration(rule.timeout)
            cancels.append(cancel)
        config["cancel"] = cancels
    timeouts = definition.timeouts
    if timeouts is not None and (timeouts.start is not None or timeouts.finish is not None):
        limits: JSONObject = {}
        if timeouts.start is not None:
            limits["start"] = format_duration(timeouts.start)
        if timeouts.finish is not None:
            limits["finish"] = format_duration(timeouts.finish)
        config["timeouts"] = limits
    if definition.flow is not None:
        config.update(definition.flow.to_wire())
    return config


def register_body(
    app_id: str, functions: Sequence[FunctionDefinition], serve_url: str, sdk: str
) -> JSONObject:
    """The body POSTed to `/fn/register` (the TS SDK's spellings, which every server reads)."""
    return {
        "url": serve_url,
        "deployType": "ping",
        "appName": app_id,
        "sdk": sdk,
        "v": "0.1",
        "framework": FRAMEWORK,
        "functions": [function_config(definition, serve_url) for definition in functions],
    }


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """What the server said to a register request: the status and message to pass on."""

    status: int
    message: str
    modified: bool


async def register(
    http_client: Callable[[], Awaitable[httpx.AsyncClient]],
    body: JSONObject,
    *,
    base_url: str,
    sdk: str,
    signing_key: str | None,
    env: str | None,
    server_kind: str | None,
    deploy_id: str | None,
) -> SyncOutcome:
    """POST `body` to `{base_url}/fn/register`, signed in with the hashed signing key if any."""
    headers = {
        "content-type": "application/json",
        "user-agent": sdk,
        "x-inngest-sdk": sdk,
        "x-inngest-framework": FRAMEWORK,
        "x-inngest-req-version": REQUEST_VERSION,
    }
    if server_kind:
        headers["x-inngest-expected-server-kind"] = server_kind
    if signing_key:
        headers["authorization"] = f"Bearer {hash_signing_key(signing_key)}"
    if env:
        headers["x-inngest-env"] = env
    params = {"deployId": deploy_id} if deploy_id else {}
    register_url = f"{base_url}/fn/register"
    try:
        client = await http_client()
        response = await client.post(
            register_url, content=orjson.dumps(body), headers=headers, params=params
        )
    except httpx.HTTPError as exc:
        return SyncOutcome(500, f"could not reach {register_url} to sync: {exc!r}", False)
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    if response.is_success:
        return SyncOutcome(200, "Successfully synced.", bool(answer.get("modified")))
    message = answer.get("error") or answer.get("message") or response.text[:500]
    return SyncOutcome(
        response.status_code,
        str(message or f"sync failed with HTTP {response.status_code}"),
        False,
    )


__all__ = [
    "FRAMEWORK",
    "REQUEST_VERSION",
    "SyncOutcome",
    "function_config",
    "register",
    "register_body",
]
