"""The OpenAPI 3.1 document served at `/openapi.json`: every route an API client or SDK calls.

Built by hand from small helpers; the schemas are in server/openapi_schemas.py. A test walks the
app's routes (tests/unit/test_openapi.py), so a route added without documentation fails the suite.
The dashboard's HTML pages are not part of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from headwater.server.middleware import SIGNED_PREFIXES
from headwater.server.openapi_schemas import SCHEMAS, Schema, ref

Operation = dict[str, Any]

_DESCRIPTION: Final = """\
Headwater's HTTP API, wire-compatible with Inngest: the Event API (`POST /e/{key}`), REST v1
(events, runs, cancellations, replays, apps), and the endpoints the Inngest SDKs call
(`/fn/register`, `/v0/runs`, `/invoke`, `/dev`).

Authentication: in production mode (`headwater start`) every path under /v1/, /v0/ and /invoke/
needs `Authorization: Bearer <signing key>` (the key as is, or hashed as the SDKs send it); a
missing or wrong key gets 401 `{error, status, code}`. `POST /fn/register` checks the same key. In
dev mode (`headwater dev`) nothing is checked. The Event API's key is part of its path,
`/e/{key}`, which OpenAPI security schemes cannot express: it is the `key` path parameter
(production: one of the configured event keys; dev: any non-empty key).

Errors: REST v1 and the SDK endpoints answer `{error, status, code}`; the Event API answers
`{ids, status, error}`; `/fn/register` answers Inngest's `{error, data, status}`.

The dashboard's HTML pages (`/`, `/login`, `/events`, `/runs`, `/apps`, `/functions`,
`/replays`, `/cancellations`, `/static`, ...) are for browsers, not API clients, and are not
described here.
"""

_PATH_PARAMETERS: Final = {
    "key": "The event key: any non-empty key in dev mode, a configured event key in production",
    "internal_id": "An event's internal_id (a ULID)",
    "run_id": "A run's id (a ULID)",
    "job_id": "A bulk replay's id (a ULID)",
    "cancellation_id": "A bulk cancellation's id (a ULID)",
    "external_id": "The user.external_id whose data to erase (may contain /)",
    "slug": "A function's slug, <app id>-<function id> (may contain /)",
}
_SIGNED_401: Final = "Missing or wrong signing key (production mode)"


# -- helpers -----------------------------------------------------------------------------------


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _data(schema: Schema, description: str) -> dict[str, Any]:
    """A REST v1 reply: `schema` inside the envelope `{data, metadata}`."""
    envelope = {
        "type": "object",
        "required": ["data", "metadata"],
        "properties": {"data": schema, "metadata": ref("Metadata")},
    }
    return _json(envelope, description)


def _list_of(name: str) -> Schema:
    return {"type": "array", "items": ref(name)}


def _error(description: str) -> dict[str, Any]:
    return _json(ref("Error"), description)


def _body(schema: Schema, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: Schema, description: str | None = None) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "schema": {"type": "string"}, "description": description}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": _PATH_PARAMETERS[name],
        }
        for name in re.findall(r"\{(\w+)\}", path)
    ]


def _operation(
    path: str,
    tag: str,
    summary: str,
    responses: dict[str, Any],
    *,
    parameters: Iterable[dict[str, Any]] = (),
    body: dict[str, Any] | None = None,
    description: str | None = None,
    signed: bool | None = None,
) -> Operation:
    """One operation; its path parameters come from the template. It needs the signing key in
    production when `signed`, by default when its path has a prefix the middleware guards; such an
    operation gets the scheme and a 401."""
    operation: Operation = {"tags": [tag], "summary": summary}
    if description:
        operation["description"] = description
    all_parameters = [*_path_parameters(path), *parameters]
    if all_parameters:
        operation["parameters"] = all_parameters
    if body is not None:
        operation["requestBody"] = body
    if signed is None:
        signed = path.startswith(SIGNED_PREFIXES)
    if signed:
        operation["security"] = [{"signingKey": []}]
        responses = {**responses, "401": responses.get("401", _error(_SIGNED_401))}
    else:
        operation["security"] = []
    operation["responses"] = dict(sorted(responses.items()))
    return operation


# -- the operations ----------------------------------------------------------------------------


def _event_api() -> list[tuple[str, str, Operation]]:
    events = {
        "oneOf": [
            ref("EventIn"),
            {"type": "array", "items": ref("EventIn"), "maxItems": 5000},
        ]
    }
    seed = _header(
        "x-inngest-event-id-seed",
        "<millis>,<base64 of 10 bytes>: a retry with the same seed gets the same ids and stores "
        "nothing twice",
    )
    send = _operation(
        "/e/{key}",
        "Events",
        "Send one event or an array of events",
        {
            "200": _json(ref("IngestAccepted"), "Stored (committed): one id per event, in order"),
            "400": _json(
                ref("IngestError"), "Invalid; nothing stored; the message names the field"
            ),
            "401": _json(ref("IngestError"), "Unknown event key (production mode)"),
            "413": _json(ref("IngestError"), "Too large; nothing stored"),
        },
        parameters=[seed],
        body=_body(events),
    )
    no_key = _operation(
        "/e/",
        "Events",
        "Send events without a key: always refused",
        {"401": _json(ref("IngestError"), "Event key is required")},
    )
    return [("/e/{key}", "post", send), ("/e/", "post", no_key)]


def _event_reads() -> list[tuple[str, str, Operation]]:
    page = [
        _query(
            "limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Page size"
        ),
        _query(
            "cursor",
            {"type": "string"},
            "metadata.next_cursor of the previous page (the internal_id of its last event)",
        ),
        _query("name", {"type": "string"}, "Only events of this name"),
        _query("received_after", {"type": "string", "format": "date-time"}),
        _query("received_before", {"type": "string", "format": "date-time"}),
    ]
    erased = {
        "type": "object",
        "required": ["external_id", "erased"],
        "properties": {"external_id": {"type": "string"}, "erased": {"type": "integer"}},
    }
    return [
        (
            "/v1/events",
            "get",
            _operation(
                "/v1/events",
                "Events",
                "List events, newest first",
                {
                    "200": _data(_list_of("Event"), "A page of events"),
                    "400": _error("A query parameter is invalid (named in error)"),
                },
                parameters=page,
            ),
        ),
        (
            "/v1/events/{internal_id}",
            "get",
            _operation(
                "/v1/events/{internal_id}",
                "Events",
                "One event",
                {
                    "200": _data(ref("Event"), "The event"),
                    "400": _error("The id is not a ULID"),
                    "404": _error("No such event"),
                },
            ),
        ),
        (
            "/v1/events/{internal_id}/runs",
            "get",
            _operation(
                "/v1/events/{internal_id}/runs",
                "Runs",
                "The runs an event started",
                {
                    "200": _data(_list_of("Run"), "Its runs ([] for an unknown event)"),
                    "400": _error("The id is not a ULID"),
                },
            ),
        ),
        (
            "/v1/users/{external_id}",
            "delete",
            _operation(
                "/v1/users/{external_id}",
                "Events",
                "Erase the user object of every event with this user.external_id",
                {"200": _data(erased, "How many events were erased")},
            ),
        ),
    ]


def _runs() -> list[tuple[str, str, Operation]]:
    bad_id = _error("The run id is not a ULID")
    return [
        (
            "/v1/runs/{run_id}",
            "get",
            _operation(
                "/v1/runs/{run_id}",
                "Runs",
                "One run",
                {
                    "200": _data(ref("RunDetail"), "The run"),
                    "400": bad_id,
                    "404": _error("No such run"),
                },
            ),
        ),
        (
            "/v1/runs/{run_id}",
            "delete",
            _operation(
                "/v1/runs/{run_id}",
                "Runs",
                "Cancel a run",
                {
                    "200": _data(ref("CancelledRun"), "Cancelled"),
                    "400": bad_id,
                    "404": _error("No such run"),
                    "409": _error("The run has already ended (code run_ended)"),
                },
            ),
        ),
        (
            "/v1/runs/{run_id}/steps",
            "get",
            _operation(
                "/v1/runs/{run_id}/steps",
                "Runs",
                "A run's recorded steps, in order",
                {
                    "200": _data(_list_of("Step"), "Its steps ([] for an unknown run)"),
                    "400": bad_id,
                },
            ),
        ),
    ]


def _job_page(job: str) -> list[dict[str, Any]]:
    """The query parameters of a list of jobs paged by id (rest.parse_job_page)."""
    return [
        _query(
            "limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Page size"
        ),
        _query(
            "cursor",
            {"type": "string"},
            f"metadata.next_cursor of the previous page (the id of its last {job})",
        ),
    ]


def _cancellations() -> list[tuple[str, str, Operation]]:
    one = "/v1/cancellations/{cancellation_id}"
    bad_id = _error("The cancellation id is not a ULID")
    not_found = _error("No such cancellation")
    return [
        (
            "/v1/cancellations",
            "post",
            _operation(
                "/v1/cancellations",
                "Cancellations",
                "Start cancelling a function's active runs started in a time window",
                {
                    "201": _data(ref("Cancellation"), "Stored; it runs in the background"),
                    "400": _error(
                        "A field is invalid, named in error (code invalid_request or"
                        " invalid_expression)"
                    ),
                },
                body=_body(ref("CancellationIn")),
            ),
        ),
        (
            "/v1/cancellations",
            "get",
            _operation(
                "/v1/cancellations",
                "Cancellations",
                "The bulk cancellations, newest first",
                {
                    "200": _data(_list_of("Cancellation"), "A page of cancellations"),
                    "400": _error("limit or cursor is invalid"),
                },
                parameters=_job_page("cancellation"),
            ),
        ),
        (
            one,
            "get",
            _operation(
                one,
                "Cancellations",
                "One bulk cancellation and its progress",
                {
                    "200": _data(ref("Cancellation"), "The cancellation"),
                    "400": bad_id,
                    "404": not_found,
                },
            ),
        ),
        (
            one,
            "delete",
            _operation(
                one,
                "Cancellations",
                "Stop a bulk cancellation (the runs it cancelled stay cancelled)",
                {
                    "200": _data(ref("Cancellation"), "Stopped"),
                    "400": bad_id,
                    "404": not_found,
                    "409": _error("The cancellation has already ended (code ended)"),
                },
            ),
        ),
    ]


def _replays() -> list[tuple[str, str, Operation]]:
    not_found = _error("No such replay")
    bad_id = _error("The replay id is not a ULID")
    stop = {
        "200": _data(ref("ReplayJob"), "Stopped"),
        "400": bad_id,
        "404": not_found,
        "409": _error("The replay has already ended (code ended)"),
    }
    return [
        (
            "/v1/runs/{run_id}/replay",
            "post",
            _operation(
                "/v1/runs/{run_id}/replay",
                "Replays",
                "Replay an ended run, as a new run",
                {
                    "201": _data(ref("ReplayedRun"), "The new run"),
                    "400": _error("Bad id or body, or from_step is not a step of the run"),
                    "404": _error("No such run"),
                    "409": _error("The run has not ended, or its function is not registered"),
                },
                body=_body(ref("ReplayRunIn"), required=False),
            ),
        ),
        (
            "/v1/replays",
            "post",
            _operation(
                "/v1/replays",
                "Replays",
                "Start a bulk replay of a function's runs in a time window",
                {
                    "202": _data(ref("ReplayJob"), "Started; it runs in the background"),
                    "400": _error("A field is invalid (named in error)"),
                },
                body=_body(ref("BulkReplayIn")),
            ),
        ),
        (
            "/v1/replays",
            "get",
            _operation(
                "/v1/replays",
                "Replays",
                "The bulk replays, newest first",
                {
                    "200": _data(_list_of("ReplayJob"), "A page of bulk replays"),
                    "400": _error("limit or cursor is invalid"),
                },
                parameters=_job_page("replay"),
            ),
        ),
        (
            "/v1/replays/{job_id}",
            "get",
            _operation(
                "/v1/replays/{job_id}",
                "Replays",
                "One bulk replay and its progress",
                {"200": _data(ref("ReplayJob"), "The replay"), "400": bad_id, "404": not_found},
            ),
        ),
        (
            "/v1/replays/{job_id}",
            "delete",
            _operation("/v1/replays/{job_id}", "Replays", "Stop a bulk replay", stop),
        ),
        (
            "/v1/replays/{job_id}/cancel",
            "post",
            _operation(
                "/v1/replays/{job_id}/cancel", "Replays", "Stop a bulk replay (as DELETE)", stop
            ),
        ),
    ]


def _apps() -> list[tuple[str, str, Operation]]:
    register_error = _json(ref("RegisterError"), "Refused")
    return [
        (
            "/v1/apps",
            "get",
            _operation(
                "/v1/apps",
                "Apps",
                "The synced apps and their functions",
                {"200": _data(_list_of("App"), "Every synced app")},
            ),
        ),
        (
            "/v1/apps/sync",
            "put",
            _operation(
                "/v1/apps/sync",
                "Apps",
                "Ask the app at a URL to sync (register) with this server",
                {
                    "200": _data(ref("AppSynced"), "The app registered"),
                    "400": _error("The body is not {url: <http(s) URL>}"),
                    "502": _error(
                        "The app is unreachable or refused (app_unreachable, sync_failed)"
                    ),
                },
                body=_body(ref("AppSyncIn")),
            ),
        ),
        (
            "/fn/register",
            "post",
            _operation(
                "/fn/register",
                "SDK",
                "An SDK registers its app and functions",
                {
                    "200": _json(ref("Registered"), "Stored"),
                    "400": register_error,
                    "401": _json(ref("RegisterError"), "Wrong signing key (production mode)"),
                    "500": _json(ref("RegisterError"), "Storing the app failed"),
                },
                parameters=[
                    _header(
                        "x-inngest-expected-server-kind",
                        "dev or cloud: a mismatch with this server's kind is a 400",
                    ),
                ],
                body=_body(ref("RegisterIn")),
                signed=True,
                description="Checks `Authorization: Bearer <signing key>` itself in production "
                "mode (dev mode takes any, as an unkeyed TS app sends `Bearer undefined`).",
            ),
        ),
    ]


def _sdk() -> list[tuple[str, str, Operation]]:
    run_state = {
        "400": _error("The run id is not a ULID"),
        "404": _error("No such run"),
    }
    steps = {"type": "object", "additionalProperties": {}, "description": "Step id -> memo"}
    return [
        (
            "/v0/runs/{run_id}/batch",
            "get",
            _operation(
                "/v0/runs/{run_id}/batch",
                "SDK",
                "A run's events (fetched by an SDK when a call says use_api)",
                {"200": _json(_list_of("EventWire"), "The events, a bare array"), **run_state},
            ),
        ),
        (
            "/v0/runs/{run_id}/actions",
            "get",
            _operation(
                "/v0/runs/{run_id}/actions",
                "SDK",
                "A run's memoized steps (fetched by an SDK when a call says use_api)",
                {"200": _json(steps, "The memoized steps, a bare object"), **run_state},
            ),
        ),
        (
            "/invoke/{slug}",
            "post",
            _operation(
                "/invoke/{slug}",
                "SDK",
                "Start a run of a function with the body's data; nobody waits for its result",
                {
                    "200": _json(ref("Invoked"), "The run is queued"),
                    "400": _error("The body is not an object, or data is not an object"),
                    "404": _error("No function with this slug (code function_not_found)"),
                    "500": _error("Storing the invocation failed"),
                },
                body=_body(ref("InvokeIn"), required=False),
            ),
        ),
        (
            "/v1/signals",
            "post",
            _operation(
                "/v1/signals",
                "SDK",
                "Resume a run waiting for a signal: not implemented",
                {"501": _error("Always: wait-for-signal is not implemented (not_implemented)")},
            ),
        ),
    ]


def _server() -> list[tuple[str, str, Operation]]:
    return [
        (
            "/health",
            "get",
            _operation("/health", "Server", "Liveness", {"200": _json(ref("Health"), "Up")}),
        ),
        (
            "/dev",
            "get",
            _operation(
                "/dev",
                "Server",
                "Dev-server information, as the Inngest TS SDK probes it",
                {
                    "200": _json(ref("DevInfo"), "Dev mode"),
                    "404": _error("Production mode"),
                },
            ),
        ),
        (
            "/openapi.json",
            "get",
            _operation(
                "/openapi.json",
                "Server",
                "This document",
                {"200": _json({"type": "object"}, "The OpenAPI 3.1 document")},
            ),
        ),
    ]


def _paths() -> dict[str, dict[str, Operation]]:
    paths: dict[str, dict[str, Operation]] = {}
    for group in (
        _event_api,
        _event_reads,
        _runs,
        _cancellations,
        _replays,
        _apps,
        _sdk,
        _server,
    ):
        for path, method, operation in group():
            paths.setdefault(path, {})[method] = operation
    return paths


def openapi_document(version: str) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document of this server's API (`version`: Headwater's)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Headwater", "version": version, "description": _DESCRIPTION},
        "tags": [
            {"name": "Events", "description": "The Event API and REST v1 events"},
            {"name": "Runs", "description": "Function runs, their steps, cancellation"},
            {"name": "Cancellations", "description": "Bulk cancellations, run in the background"},
            {"name": "Replays", "description": "Replaying ended runs"},
            {"name": "Apps", "description": "Apps serving functions over HTTP"},
            {"name": "SDK", "description": "What the Inngest SDKs call"},
            {"name": "Server", "description": "Health and discovery"},
        ],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "signingKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The signing key (signkey-<env>-<hex>), raw or hashed as the "
                    "Inngest SDKs send it; required on /v1/, /v0/ and /invoke/ in production "
                    "mode only",
                }
            },
        },
        "paths": _paths(),
    }
