"""The step protocol as plain data (PROTOCOL §3.3–3.8): opcodes, hashed step ids, memos, and the
request/response types that every driver (in-process or HTTP) exchanges with the engine.

No engine code knows which SDK answered: it sends a `CallRequest` and gets a `CallResponse`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from headwater.types import JSON, JSONObject


class Opcode(StrEnum):
    """What a function reports about a step (PROTOCOL §3.7); names as Inngest spells them."""

    NONE = "None"
    STEP = "Step"
    STEP_RUN = "StepRun"
    STEP_ERROR = "StepError"
    STEP_PLANNED = "StepPlanned"
    SLEEP = "Sleep"
    WAIT_FOR_EVENT = "WaitForEvent"
    INVOKE_FUNCTION = "InvokeFunction"
    RUN_COMPLETE = "RunComplete"
    STEP_FAILED = "StepFailed"

    @classmethod
    def parse(cls, value: str) -> Opcode:
        """Inngest compares opcode names case-insensitively (`AiGateway` = `AIGateway`)."""
        lowered = value.lower()
        for member in cls:
            if member.value.lower() == lowered:
                return member
        raise ValueError(f"unknown opcode {value!r}")


def hash_step_id(step_name: str, repeat: int = 0) -> str:
    """Inngest's step id: sha1 of the user's step id, with `:n` added for its n-th repeat."""
    key = step_name if repeat == 0 else f"{step_name}:{repeat}"
    return hashlib.sha1(key.encode()).hexdigest()


class StepIds:
    """Hands out hashed ids in call order, counting repeats of a name within one execution."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def next(self, step_name: str) -> str:
        repeat = self._seen.get(step_name, 0)
        self._seen[step_name] = repeat + 1
        return hash_step_id(step_name, repeat)


@dataclass(frozen=True, slots=True)
class StepOp:
    """One opcode of a function's reply."""

    op: Opcode
    id: str
    name: str = ""
    display_name: str = ""
    opts: JSONObject | None = None
    data: JSON = None
    error: JSONObject | None = None
    #: When the step's body began (epoch ms): as our SDK's step core saw it, or, for a step an SDK
    #: ran over HTTP, when the call that ran it was made. Not on the wire.
    started_at: int | None = None
    #: When the step's result was known (epoch ms), if earlier than when it is recorded: for a step
    #: an SDK ran over HTTP, when the reply came (its planned siblings may answer later).
    ended_at: int | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "op": self.op.value,
            "id": self.id,
            "name": self.name,
            "displayName": self.display_name or self.name,
            "opts": self.opts,
            "data": self.data,
        }
        if self.error is not None:
            wire["error"] = self.error
        return wire


def data_memo(value: JSON) -> JSONObject:
    """A finished step's stored value, as the SDKs read it back (PROTOCOL §3.4)."""
    return {"data": value}


def error_memo(error: JSONObject) -> JSONObject:
    return {"error": error}


@dataclass(frozen=True, slots=True)
class CallContext:
    run_id: str
    attempt: int
    max_attempts: int
    stack: list[str] = field(default_factory=list)
    disable_immediate_execution: bool = False


@dataclass(frozen=True, slots=True)
class CallRequest:
    """What the engine asks a function to do: run (or resume) with these memoized steps."""

    function_id: str
    event: JSONObject
    events: list[JSONObject]
    steps: dict[str, JSON]
    ctx: CallContext
    #: A planned step to run (its hashed id), or None to run the function from the top.
    target_step: str | None = None


@dataclass(frozen=True, slots=True)
class FunctionError:
    """A function or step failure as the SDKs serialise it: `{name, message, stack}`."""

    name: str
    message: str
    stack: str | None = None

    def to_json(self) -> JSONObject:
        body: JSONObject = {"name": self.name, "message": self.message}
        if self.stack:
            body["stack"] = self.stack
        return body

    @classmethod
    def from_json(cls, body: JSON) -> FunctionError:
        if not isinstance(body, dict):
            return cls("Error", str(body))
        stack = body.get("stack")
        return cls(
            name=str(body.get("name") or "Error"),
            message=str(body.get("message") or ""),
            stack=stack if isinstance(stack, str) else None,
        )


@dataclass(frozen=True, slots=True)
class CallResponse:
    """What came back from one call: ops to act on, the function's output (done), or an error.

    `no_retry` and `retry_at` qualify an error or a StepError op, as the HTTP headers
    `X-Inngest-No-Retry` and `Retry-After` do on the wire.
    """

    ops: list[StepOp] = field(default_factory=list)
    done: bool = False
    output: JSON = None
    error: FunctionError | None = None
    no_retry: bool = False
    #: Epoch ms before which the next attempt must not start, if the function asked for one.
    retry_at: int | None = None
