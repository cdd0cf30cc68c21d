"""How the engine records a resolved `step.wait_for_event` (no database: the store is faked)."""

from __future__ import annotations

from typing import Any, cast

import orjson

from headwater.engine.event_log import StoredEvent
from headwater.engine.waits import WaitMatcher
from headwater.store.runs import RunRecord, RunStatus, StepRecord, WaitKind, WaitRecord

NOW = 1_700_000_000_000


def stored(internal_id: str, name: str, **data: Any) -> StoredEvent:
    return StoredEvent(
        internal_id=internal_id,
        id=f"id-{internal_id}",
        name=name,
        data=data,
        user={},
        user_erased=False,
        ts=NOW,
        v=None,
        meta=None,
        received_at=NOW,
    )


class FakeStore:
    """Just the verbs the matcher uses to resolve a step wait."""

    def __init__(self, wait: WaitRecord, run: RunRecord) -> None:
        self.wait = wait
        self.run = run
        self.steps: list[StepRecord] = []

    async def pending_waits(self, name: str, now: int) -> list[WaitRecord]:
        return [self.wait] if name == self.wait.event_name else []

    async def get_run(self, run_id: str) -> RunRecord | None:
        return self.run if run_id == self.run.run_id else None

    async def resolve_step_wait(self, wait_id: str, step: StepRecord, now: int) -> bool:
        self.steps.append(step)
        return True


class FakeEventLog:
    def __init__(self, *events: StoredEvent) -> None:
        self.events = {e.internal_id: e for e in events}

    async def get(self, internal_id: str) -> StoredEvent | None:
        return self.events.get(internal_id)


async def test_a_resolved_wait_is_stored_as_inngest_stores_it() -> None:
    # Given a run waiting for "app/reply" with the same account as its trigger
    trigger = stored("t1", "app/signup", account="a1")
    reply = stored("r1", "app/reply", account="a1")
    wait = WaitRecord(
        wait_id="run1:s1",
        run_id="run1",
        kind=WaitKind.STEP,
        event_name="app/reply",
        expression="event.data.account == async.data.account",
        created_at=NOW - 10,
        expires_at=NOW + 60_000,
        step_id="s1",
        step_name="wait-reply",
    )
    run = RunRecord("run1", "app-fn", RunStatus.RUNNING, ("t1",), NOW - 20)
    store = FakeStore(wait, run)
    woken: list[bool] = []

    async def cancel(run_id: str, reason: str) -> bool:
        raise AssertionError("a step wait never cancels")

    matcher = WaitMatcher(
        cast(Any, store),
        cast(Any, FakeEventLog(trigger, reply)),
        lambda: woken.append(True),
        cancel,
    )

    # When the reply arrives
    await matcher.on_events(["r1"], ["app/reply"])

    # Then the step's memo is {"data": <event>}, as in protocol_py.json (step aff024fe...)
    (step,) = store.steps
    assert (step.step_id, step.op) == ("s1", "WaitForEvent")
    assert orjson.loads(step.memo_json) == {
        "data": {
            "name": "app/reply",
            "data": {"account": "a1"},
            "user": {},
            "id": "id-r1",
            "ts": NOW,
        }
    }
    assert woken == [True]
