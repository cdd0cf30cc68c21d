"""The per-call step plan of Inngest's HTTP protocol (PROTOCOL §3.8), as the core's `StepPlanner`.

Over HTTP, a call does not simply run the first new step it reaches:

- a call with `stepId=<hash>` (targeted) runs that step only; other new steps wait (and are
  dropped), and if the target is never reached the call fails with StepNotFound;
- new steps found together (parallel branches) are reported, `step.run`s as StepPlanned ops, and
  none of them runs: the server calls back once per planned step;
- with `ctx.disable_immediate_execution`, a new `step.run` is reported as StepPlanned.

The in-process engine needs none of this (it checkpoints each step and goes on), so the rules live
here, behind the one hook the step core has (`execution.StepPlanner`), not in the core.
"""

from __future__ import annotations

import asyncio
from typing import Final, NoReturn

from headwater.protocol.steps import CallRequest, Opcode, StepOp
from headwater.sdk.execution import Interrupt

#: Event-loop turns without a new step before the steps found so far are decided on (parallel
#: branches reach their steps within a few turns; a branch still doing I/O is found next call).
SETTLE_TURNS: Final = 5
#: How long a call targeting a step waits for the function to reach it (the TS SDK's 10 s).
STEP_NOT_FOUND_SECONDS: Final = 10.0


def planned(op: StepOp) -> StepOp:
    """What a call reports for a `step.run` that it found but did not run."""
    return StepOp(
        Opcode.STEP_PLANNED,
        op.id,
        op.name,
        display_name=op.display_name or op.name,
        opts={"type": "step.run"},
    )


class CallPlan:
    """Decides, for each new step a call reaches, whether it runs now, waits, or is only reported.

    - Targeted call (`stepId=<hash>`): the target runs; other new steps wait until the call ends
      (or, if the target is never reached, until STEP_NOT_FOUND_SECONDS have passed).
    - Otherwise the steps found within SETTLE_TURNS loop turns are decided on together: a single
      `step.run` runs when immediate execution is allowed, a single other op (sleep, wait,
      invoke) reports itself, and anything else is reported as a list (StepPlanned for runs).
    - A function without parallel branches (a sync function: one thread, one step at a time)
      decides on its first new step at once: nothing else can be found beside it.

    Call `close()` once the call has its answer, to release the steps still waiting.
    """

    def __init__(self, target: str | None, *, immediate: bool, parallel: bool = True) -> None:
        self.target = target
        self.immediate = immediate
        self.parallel = parallel
        #: The ops to answer with, when the call ends by reporting the steps found.
        self.reported: list[StepOp] | None = None
        #: True when a targeted call could not reach its step.
        self.not_found = False
        self._found: list[tuple[StepOp, bool]] = []
        self._decision: asyncio.Future[str | None] | None = None
        self._parked: list[asyncio.Future[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._target_reached = False

    @classmethod
    def for_call(cls, call: CallRequest, *, parallel: bool) -> CallPlan:
        """The plan of `call`: immediate execution only for a discovery call that allows it."""
        target = call.target_step
        immediate = target is None and not call.ctx.disable_immediate_execution
        return cls(target, immediate=immediate, parallel=parallel)

    async def reach(self, op: StepOp, *, runnable: bool) -> None:
        """Return when the step may go on: run (`runnable`) or report itself.

        Otherwise raise Interrupt (the call ends by reporting the steps found) or never return:
        the branch waits until the call ends.
        """
        if runnable:
            op = planned(op)
        if not self.parallel:
            self._reach_alone(op, runnable=runnable)
            return
        if self.target is not None:
            if op.id == self.target:
                self._target_reached = True
                return
            await self._park()
        if self._decision is not None and self._decision.done():
            await self._park()  # found after the decision: a later call will find it again
        self._found.append((op, runnable))
        if self._decision is None:
            self._decision = asyncio.get_running_loop().create_future()
            self._tasks.append(asyncio.ensure_future(self._decide(self._decision)))
        chosen = await asyncio.shield(self._decision)
        if chosen == op.id:
            return
        if chosen is None:
            raise Interrupt(op)  # the call answers with `reported`
        await self._park()

    def _reach_alone(self, op: StepOp, *, runnable: bool) -> None:
        if self.target is not None:
            if op.id != self.target:
                self.not_found = True
                raise Interrupt(op)
            return
        if runnable and not self.immediate:
            raise Interrupt(op)

    async def _decide(self, decision: asyncio.Future[str | None]) -> None:
        seen, quiet = -1, 0
        while quiet < SETTLE_TURNS:
            await asyncio.sleep(0)
            if len(self._found) == seen:
                quiet += 1
            else:
                seen, quiet = len(self._found), 0
        found = list(self._found)
        if len(found) == 1 and (self.immediate or not found[0][1]):
            decision.set_result(found[0][0].id)
        else:
            self.reported = [op for op, _ in found]
            decision.set_result(None)

    async def _park(self) -> NoReturn:
        parked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._parked.append(parked)
        if self.target is not None and len(self._parked) == 1:
            self._tasks.append(asyncio.ensure_future(self._watch_target()))
        await parked
        raise AssertionError("a parked step is only ever released by an exception")

    async def _watch_target(self) -> None:
        await asyncio.sleep(STEP_NOT_FOUND_SECONDS)
        if self._target_reached:
            return
        self.not_found = True
        for parked in self._parked:
            if not parked.done():
                parked.set_exception(Interrupt(StepOp(Opcode.NONE, self.target or "")))

    def close(self) -> None:
        """Release everything still waiting once the call has its answer."""
        for task in self._tasks:
            task.cancel()
        if self._decision is not None and not self._decision.done():
            self._decision.cancel()
        for parked in self._parked:
            if not parked.done():
                parked.cancel()


__all__ = ["SETTLE_TURNS", "STEP_NOT_FOUND_SECONDS", "CallPlan", "planned"]
