"""The JSON Schemas of the OpenAPI document's `components.schemas` (see server/openapi.py).

Each mirrors what a handler really reads or writes: `rest.event_json`, `runs_api.run_json` and
`step_json`, `replay_api.replay_job_json`, `cancellations_api.cancellation_json`, the bodies of `sync_api` and `sdk_api`, and the error
shapes of `responses.py`. A field a handler writes only sometimes is a property but not `required`.
"""

from __future__ import annotations

from typing import Any

from headwater.store.cancellations import CancellationState
from headwater.store.queries import ReplayJobState
from headwater.store.runs import RunStatus

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    """A reference to the component schema `name`."""
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Schema], *required: str, **extra: Any) -> Schema:
    """An object schema; `required` lists the properties that are always present."""
    schema: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def _string(description: str | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def _time(description: str | None = None, *, nullable: bool = False) -> Schema:
    """An RFC 3339 time in UTC with milliseconds, as `responses.rfc3339` writes it."""
    schema = _string(description, format="date-time")
    if nullable:
        schema["type"] = ["string", "null"]
    return schema


_ANY: Schema = {"description": "Any JSON value"}
_RUN_STATUS: Schema = {"type": "string", "enum": [status.value for status in RunStatus]}

_EVENT_IN = _obj(
    {
        "name": _string("Must not start with inngest/", maxLength=256),
        "data": {"type": "object", "default": {}, "description": "data._inngest is removed"},
        "user": {"type": "object", "default": {}, "description": "Encrypted at rest"},
        "id": _string("Idempotency key: only the first event with this id in 24 h triggers runs"),
        "ts": {"type": "integer", "description": "Epoch milliseconds, 1980-2100; default: now"},
        "v": _string(),
    },
    "name",
)
_EVENT = _obj(
    {
        "internal_id": _string("Server-made ULID"),
        "id": _string("The sender's id, or the internal_id when it sent none"),
        "name": _string(),
        "data": {"type": "object"},
        "user": {"type": "object", "description": "Decrypted; {} once erased"},
        "user_erased": {"type": "boolean"},
        "ts": {"type": "integer", "description": "Epoch milliseconds"},
        "v": {"type": ["string", "null"]},
        "meta": {"type": "object", "description": "Present only when the event has any"},
        "received_at": _time(),
    },
    *("internal_id", "id", "name", "data", "user", "user_erased", "ts", "v", "received_at"),
)
_EVENT_WIRE = _obj(
    {
        "name": _string(),
        "data": {"type": "object"},
        "user": {"type": "object"},
        "id": _string(),
        "ts": {"type": "integer"},
        "v": _string("Present only when the event has a version"),
    },
    *("name", "data", "user", "id", "ts"),
    description="An event as functions see it",
)
_INGEST_ACCEPTED = _obj(
    {
        "ids": {"type": "array", "items": _string(), "description": "One id per event, in order"},
        "status": {"type": "integer", "const": 200},
    },
    "ids",
    "status",
)
_INGEST_ERROR = _obj(
    {
        "ids": {"type": "array", "items": _string(), "maxItems": 0},
        "status": {"type": "integer"},
        "error": _string(),
    },
    "status",
    "error",
    description="The Event API's error; `ids` is [] (absent from the 401 of a missing or "
    "unknown key)",
)
_ERROR = _obj(
    {
        "error": _string("What is wrong, naming the field"),
        "status": {"type": "integer", "description": "The HTTP status"},
        "code": _string("Stable code to branch on, e.g. not_found, invalid_id, unauthorized"),
    },
    "error",
    "status",
    "code",
)
_REGISTER_ERROR = _obj(
    {"error": _string(), "data": {"type": "null"}, "status": {"type": "integer"}},
    "error",
    "data",
    "status",
    description="Inngest's register error; both SDKs report `error`",
)
_METADATA = _obj(
    {
        "fetched_at": _time(),
        "cached_until": {"type": "null"},
        "next_cursor": {
            "type": ["string", "null"],
            "description": (
                "GET /v1/events and /v1/cancellations: the cursor of the next page, null on"
                " the last"
            ),
        },
    },
    "fetched_at",
    "cached_until",
)
_RUN = _obj(
    {
        "run_id": _string("ULID"),
        "function_id": _string("The function's slug, <app id>-<function id>"),
        "status": _RUN_STATUS,
        "event_id": {"type": ["string", "null"], "description": "The triggering event"},
        "event_ids": {"type": "array", "items": _string(), "description": "A batch's events"},
        "created_at": _time(),
        "run_started_at": _time(nullable=True),
        "ended_at": _time(nullable=True),
        "output": _ANY | {"description": "The function's return value; null until it ends"},
        "error": _ANY | {"description": "Present when the run failed"},
        "reason": _string("Present when the run was cancelled or skipped: why"),
    },
    *("run_id", "function_id", "status", "event_id", "event_ids", "created_at"),
    *("run_started_at", "ended_at", "output"),
)
_RUN_DETAIL = {
    "allOf": [
        ref("Run"),
        _obj(
            {"replay_of": {"type": ["string", "null"], "description": "The run this replays"}},
            "replay_of",
        ),
    ]
}
_REPLAYED_RUN = {
    "allOf": [
        ref("Run"),
        _obj(
            {
                "replay_of": _string("The run replayed"),
                "from_step": {"type": ["string", "null"]},
            },
            "replay_of",
            "from_step",
        ),
    ]
}
_STEP = _obj(
    {
        "id": _string("The step's hashed id"),
        "name": _string(),
        "op": _string("The opcode that recorded it, e.g. StepRun, Sleep, WaitForEvent"),
        "started_at": _time(),
        "ended_at": _time(),
        "attempts": {"type": "integer", "minimum": 1},
        "output": _ANY | {"description": "The memoized data (absent when the step failed)"},
        "error": _ANY | {"description": "The step's error (present only when it failed)"},
    },
    *("id", "name", "op", "started_at", "ended_at", "attempts"),
)
_CANCELLED_RUN = _obj(
    {"run_id": _string(), "status": {"type": "string", "const": RunStatus.CANCELLED.value}},
    "run_id",
    "status",
)
_CANCELLATION_IN = _obj(
    {
        "app_id": _string(minLength=1),
        "function_id": _string("The function's id within the app", minLength=1),
        "started_after": _time("Default: the beginning of time"),
        "started_before": _time("Not in the future"),
        "if": _string("A CEL expression over `event`, the run's trigger"),
    },
    "app_id",
    "function_id",
    "started_before",
)
_CANCELLATION = _obj(
    {
        "id": _string("ULID"),
        "app_id": _string(),
        "function_id": _string(),
        "started_after": _time(nullable=True),
        "started_before": _time(),
        "if": {"type": ["string", "null"]},
        "state": {"type": "string", "enum": [state.value for state in CancellationState]},
        "cancelled": {"type": "integer", "description": "How many runs it has cancelled so far"},
        "created_at": _time(),
        "updated_at": _time(),
        "ended_at": _time(nullable=True),
        "error": {"type": ["string", "null"], "description": "Why it failed (state Failed)"},
    },
    *("id", "app_id", "function_id", "started_after", "started_before", "if", "state"),
    *("cancelled", "created_at", "updated_at", "ended_at", "error"),
    description=(
        "A bulk cancellation job: it cancels the matching runs in the background, page by page;"
        " `cancelled` and `state` show its progress"
    ),
)
_REPLAY_RUN_IN = _obj(
    {"from_step": _string("Replay from this step: the steps before it are copied", minLength=1)},
)
_BULK_REPLAY_IN = _obj(
    {
        "function_id": _string("The function's slug, e.g. app-fn", minLength=1),
        "from": _time("Runs created at or after"),
        "to": _time("Runs created before"),
        "statuses": {
            "type": "array",
            "items": _RUN_STATUS,
            "minItems": 1,
            "default": [RunStatus.FAILED.value],
            "description": "Final statuses only",
        },
    },
    "function_id",
    "from",
    "to",
)
_REPLAY_JOB = _obj(
    {
        "id": _string("ULID"),
        "function_id": _string(),
        "from": _time(),
        "to": _time(),
        "statuses": {"type": "array", "items": _RUN_STATUS},
        "state": {"type": "string", "enum": [state.value for state in ReplayJobState]},
        "total": {"type": "integer", "description": "Runs matched when the replay started"},
        "replayed": {"type": "integer"},
        "created_at": _time(),
        "updated_at": _time(),
        "ended_at": _time(nullable=True),
        "error": {"type": ["string", "null"]},
    },
    *("id", "function_id", "from", "to", "statuses", "state", "total", "replayed"),
    *("created_at", "updated_at", "ended_at", "error"),
)
_APP_SYNC_IN = _obj({"url": _string("The app's http(s) URL", format="uri")}, "url")
_APP_SYNCED = _obj(
    {
        "url": _string(),
        "status": {"type": "integer", "description": "The app's HTTP status"},
        "reply": _ANY | {"description": "The app's reply (JSON, else its text)"},
    },
    "url",
    "status",
    "reply",
)
_APP = _obj(
    {
        "id": _string("UUID derived from app_id", format="uuid"),
        "app_id": _string(),
        "url": _string(),
        "sdk": _string(),
        "framework": _string(),
        "checksum": _string(),
        "functions": {"type": "array", "items": _string(), "description": "Function slugs"},
    },
    *("id", "app_id", "url", "sdk", "framework", "checksum", "functions"),
)
_REGISTER_IN = _obj(
    {
        "appName": _string("The app's id (also read as appname or app_name)"),
        "url": _string("Where the server calls the app", format="uri"),
        "functions": {"type": "array", "items": {"type": "object"}, "default": []},
        "sdk": _string("e.g. py:v0.5.0, js:v3.0.0"),
        "framework": _string(),
    },
    "url",
    description="An Inngest SDK's register request (PROTOCOL §3.2); other fields are accepted "
    "and count in the sync's checksum",
)
_REGISTERED = _obj(
    {
        "ok": {"type": "boolean", "const": True},
        "modified": {"type": "boolean", "description": "Whether the sync changed the app"},
        "app_id": _string(format="uuid"),
        "sync_id": _string(format="uuid"),
    },
    "ok",
    "modified",
    "app_id",
    "sync_id",
)
_INVOKE_IN = _obj(
    {"data": {"type": ["object", "null"], "default": {}, "description": "The event's data"}},
    description="Optional; other fields are ignored",
)
_INVOKED = _obj(
    {
        "id": _string("The internal id of the inngest/function.invoked event"),
        "status": {"type": "integer", "const": 200},
    },
    "id",
    "status",
)
_DEV_INFO = _obj(
    {
        "version": _string(),
        "authed": {"type": "boolean"},
        "startOpts": _obj({"dev": {"type": "boolean"}, "sdkURLs": {"type": "array"}}),
        "functions": {"type": "array"},
        "handlers": {"type": "array"},
        "isSingleNodeService": {"type": "boolean"},
        "isMissingSigningKey": {"type": "boolean"},
        "isMissingEventKeys": {"type": "boolean"},
        "features": {"type": "object"},
    },
    *("version", "authed", "startOpts", "functions", "handlers", "isSingleNodeService"),
    *("isMissingSigningKey", "isMissingEventKeys", "features"),
    description="What the Inngest TS SDK probes to detect a dev server",
)
_HEALTH = _obj(
    {"status": {"type": "integer", "const": 200}, "message": {"type": "string"}},
    "status",
    "message",
)

SCHEMAS: dict[str, Schema] = {
    "EventIn": _EVENT_IN,
    "Event": _EVENT,
    "EventWire": _EVENT_WIRE,
    "IngestAccepted": _INGEST_ACCEPTED,
    "IngestError": _INGEST_ERROR,
    "Error": _ERROR,
    "RegisterError": _REGISTER_ERROR,
    "Metadata": _METADATA,
    "Run": _RUN,
    "RunDetail": _RUN_DETAIL,
    "ReplayedRun": _REPLAYED_RUN,
    "Step": _STEP,
    "CancelledRun": _CANCELLED_RUN,
    "CancellationIn": _CANCELLATION_IN,
    "Cancellation": _CANCELLATION,
    "ReplayRunIn": _REPLAY_RUN_IN,
    "BulkReplayIn": _BULK_REPLAY_IN,
    "ReplayJob": _REPLAY_JOB,
    "AppSyncIn": _APP_SYNC_IN,
    "AppSynced": _APP_SYNCED,
    "App": _APP,
    "RegisterIn": _REGISTER_IN,
    "Registered": _REGISTERED,
    "InvokeIn": _INVOKE_IN,
    "Invoked": _INVOKED,
    "DevInfo": _DEV_INFO,
    "Health": _HEALTH,
}
