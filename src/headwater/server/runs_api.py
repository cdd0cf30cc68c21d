"""REST v1 for runs (PROTOCOL §2.2): read a run, the runs of an event, cancel a run. Bulk
cancellations are in cancellations_api.py."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.engine.outcomes import RunOutcomes
from headwater.protocol.ids import is_ulid
from headwater.server.responses import api_data, api_error, rfc3339
from headwater.store import Store
from headwater.store.runs import RunRecord, RunStatus, StepRecord


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


def runs_routes(store: Store, outcomes: RunOutcomes) -> list[Route]:
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

    return [
        Route("/v1/runs/{run_id}", get_run, methods=["GET"]),
        Route("/v1/runs/{run_id}", cancel_run, methods=["DELETE"]),
        Route("/v1/runs/{run_id}/steps", run_steps, methods=["GET"]),
        Route("/v1/events/{internal_id}/runs", event_runs, methods=["GET"]),
    ]
