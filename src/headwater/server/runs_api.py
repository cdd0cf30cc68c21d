"""REST v1 for runs (PROTOCOL §2.2): read a run, the runs of an event, cancel a run."""

from __future__ import annotations

import time
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.engine.event_log import EventLog
from headwater.engine.outcomes import RunOutcomes
from headwater.errors import ExpressionError
from headwater.expr import compile_expression
from headwater.protocol.ids import is_ulid, new_ulid
from headwater.server.responses import api_data, api_error, rfc3339
from headwater.server.rest import parse_rfc3339
from headwater.store import Store
from headwater.store.runs import RunRecord, RunStatus, StepRecord

_CANCEL_PAGE: Final = 500


def step_json(step: StepRecord) -> dict[str, Any]:
    """A recorded step: its memo's `data` as output (or its `error`), and its timing."""
    memo = orjson.loads(step.memo_json)
    body: dict[str, Any] = {
        "id": step.step_id,
        "name": step.name,
        "op": step.op,
        "started_at": rfc3339(step.started_at),
        "ended_at": rfc3339(step.ended_at),
        "attempts": step.attempts,
    }
    if isinstance(memo, dict) and "error" in memo:
        body["error"] = memo["error"]
    else:
        body["output"] = memo.get("data") if isinstance(memo, dict) else memo
    return body


def run_json(run: RunRecord) -> dict[str, Any]:
    body: dict[str, Any] = {
        "run_id": run.run_id,
        "function_id": run.function_id,
        "status": run.status.value,
        "event_id": run.event_ids[0] if run.event_ids else None,
        "event_ids": list(run.event_ids),
        "created_at": rfc3339(run.created_at),
        "run_started_at": rfc3339(run.started_at) if run.started_at else None,
        "ended_at": rfc3339(run.ended_at) if run.ended_at else None,
        "output": orjson.loads(run.output_json) if run.output_json is not None else None,
    }
    if run.error_json is not None:
        body["error"] = orjson.loads(run.error_json)
    if run.reason:
        body["reason"] = run.reason
    return body


async def _json_body(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


class BadRequest(Exception):
    pass


def _time_field(body: dict[str, Any], name: str, *, required: bool) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name} is required (an RFC 3339 time)")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be an RFC 3339 time string")
    try:
        return parse_rfc3339(value, name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def runs_routes(store: Store, event_log: EventLog, outcomes: RunOutcomes) -> list[Route]:
    async def get_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if not is_ulid(run_id):
            return api_error(400, "the run id must be a ULID", "invalid_id")
        run = await store.get_run(run_id.upper())
        if run is None:
            return api_error(404, "Run not found", "not_found")
        link = await store.replay_link(run.run_id)
        body = run_json(run)
        body["replay_of"] = link.replay_of if link is not None else None
        return api_data(body)

    async def run_steps(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if not is_ulid(run_id):
            return api_error(400, "the run id must be a ULID", "invalid_id")
        steps = await store.list_steps(run_id.upper())
        return api_data([step_json(step) for step in steps])

    async def event_runs(request: Request) -> Response:
        internal_id = request.path_params["internal_id"]
        if not is_ulid(internal_id):
            return api_error(400, "the event id must be a ULID", "invalid_id")
        runs = await store.list_runs_for_event(internal_id.upper())
        return api_data([run_json(run) for run in runs])

    async def cancel_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if not is_ulid(run_id):
            return api_error(400, "the run id must be a ULID", "invalid_id")
        run = await store.get_run(run_id.upper())
        if run is None:
            return api_error(404, "Run not found", "not_found")
        cancelled = await outcomes.cancel(run.run_id, "cancelled through the API")
        if not cancelled:
            return api_error(409, f"the run has already ended ({run.status.value})", "run_ended")
        return api_data({"run_id": run.run_id, "status": RunStatus.CANCELLED.value})

    async def bulk_cancel(request: Request) -> Response:
        """Cancel a function's runs created in a time window, optionally only those whose trigger
        event satisfies `if` (Inngest's POST /v1/cancellations; done at once, not in background)."""
        try:
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            app_id, function_id = body.get("app_id"), body.get("function_id")
            if not isinstance(app_id, str) or not app_id:
                raise BadRequest("app_id is required")
            if not isinstance(function_id, str) or not function_id:
                raise BadRequest("function_id is required")
            now = time.time_ns() // 1_000_000
            before = _time_field(body, "started_before", required=True)
            after = _time_field(body, "started_after", required=False) or 0
            assert before is not None
            if before > now + 5_000:
                raise BadRequest("started_before must not be in the future")
            condition = body.get("if")
            if condition is not None and not isinstance(condition, str):
                raise BadRequest("if must be an expression string")
            expression = compile_expression(condition) if condition else None
        except BadRequest as exc:
            return api_error(400, str(exc), "invalid_request")
        except ExpressionError as exc:
            return api_error(400, f"invalid expression: {exc}", "invalid_expression")
        slug = f"{app_id}-{function_id}"
        cancelled = 0
        cursor = after
        while True:
            runs = await store.active_runs(slug, cursor, before, _CANCEL_PAGE)
            for run in runs:
                if expression is not None:
                    trigger = await event_log.get(run.event_ids[0]) if run.event_ids else None
                    wire = trigger.wire() if trigger is not None else {}
                    if not expression.matches({"event": wire}):
                        continue
                if await outcomes.cancel(run.run_id, "bulk cancellation"):
                    cancelled += 1
            if len(runs) < _CANCEL_PAGE:
                break
            cursor = runs[-1].created_at + 1 if runs[-1].created_at >= cursor else cursor
        return api_data(
            {
                "id": new_ulid(),
                "app_id": app_id,
                "function_id": function_id,
                "started_after": rfc3339(after) if after else None,
                "started_before": rfc3339(before),
                "if": condition,
                "created_at": rfc3339(now),
                "cancelled": cancelled,
            }
        )

    return [
        Route("/v1/cancellations", bulk_cancel, methods=["POST"]),
        Route("/v1/runs/{run_id}", get_run, methods=["GET"]),
        Route("/v1/runs/{run_id}", cancel_run, methods=["DELETE"]),
        Route("/v1/runs/{run_id}/steps", run_steps, methods=["GET"]),
        Route("/v1/events/{internal_id}/runs", event_runs, methods=["GET"]),
    ]
