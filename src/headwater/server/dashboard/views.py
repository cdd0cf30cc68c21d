"""What the dashboard's templates show, computed from store records: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from headwater.store.cancellations import CancellationState
from headwater.store.runs import RunRecord, RunStatus, StepRecord, WaitRecord
from headwater.types import JSON, Millis

#: A run's status, or a background job's state (the same words, and Stopped) → the CSS class
#: of its badge.
STATUS_TONE = {
    RunStatus.QUEUED.value: "neutral",
    RunStatus.RUNNING.value: "info",
    RunStatus.COMPLETED.value: "ok",
    RunStatus.FAILED.value: "bad",
    RunStatus.CANCELLED.value: "warn",
    RunStatus.SKIPPED.value: "neutral",
    CancellationState.STOPPED.value: "warn",
}


def format_time(millis: Millis | None) -> str:
    """UTC, to the millisecond: `2026-11-27 07:54:05.288`."""
    if millis is None:
        return "—"
    moment = datetime.fromtimestamp(millis / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{millis % 1000:03d}"


def format_duration(millis: Millis | None) -> str:
    if millis is None:
        return "—"
    if millis < 1_000:
        return f"{millis} ms"
    if millis < 60_000:
        return f"{millis / 1000:.2f} s"
    if millis < 3_600_000:
        return f"{millis // 60_000} min {millis % 60_000 // 1000} s"
    return f"{millis // 3_600_000} h {millis % 3_600_000 // 60_000} min"


def parse_form_time(text: str | None, name: str) -> Millis | None:
    """A time from a filter form: `datetime-local` input (read as UTC) or RFC 3339. ValueError
    naming the field."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} must be a date and time such as 2026-05-01T12:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def form_time(millis: Millis | None) -> str:
    """The value of a `datetime-local` input for a time (UTC)."""
    if millis is None:
        return ""
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def json_of(raw: bytes | None) -> JSON:
    return None if raw is None else orjson.loads(raw)


@dataclass(frozen=True, slots=True)
class Bar:
    """One row of a run's waterfall: a step, a sleep or a wait, placed on the run's time axis."""

    label: str
    kind: str  # "step", "error", "sleep", "wait", "invoke"
    start: Millis
    end: Millis | None  # None: still going
    offset_pct: float
    width_pct: float
    attempts: int = 1
    step_id: str | None = None
    output: JSON = None
    error: dict[str, Any] | None = None
    detail: str = ""
    copied: bool = False

    @property
    def duration(self) -> Millis | None:
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True, slots=True)
class Timeline:
    start: Millis
    end: Millis
    bars: list[Bar] = field(default_factory=list)

    @property
    def span(self) -> Millis:
        return self.end - self.start


_OP_KIND = {"Sleep": "sleep", "WaitForEvent": "wait", "InvokeFunction": "invoke"}


def build_timeline(
    run: RunRecord,
    steps: list[StepRecord],
    waits: list[WaitRecord],
    now: Millis,
    *,
    copied_steps: int = 0,
) -> Timeline:
    """The waterfall of a run. Steps are drawn from their recorded start (when the body began, or
    for an app served over HTTP when the call began); one recorded at a single instant is drawn
    from the end of the step before it, which is when it began in a sequential function. The first `copied_steps` steps were
    copied by a replay: drawn as such, at the run's start."""
    start = run.created_at
    raw: list[tuple[str, str, Millis, Millis | None, StepRecord | None, WaitRecord | None]] = []
    previous_end = run.started_at or start
    for index, recorded in enumerate(steps):
        memo = json_of(recorded.memo_json)
        failed = isinstance(memo, dict) and "error" in memo
        kind = "error" if failed else _OP_KIND.get(recorded.op, "step")
        if index < copied_steps:
            raw.append((recorded.name, kind, start, start, recorded, None))
            continue
        ended = recorded.ended_at
        begin = min(recorded.started_at if recorded.started_at < ended else previous_end, ended)
        pending = ended > now  # a sleep still running
        raw.append((recorded.name, kind, begin, None if pending else ended, recorded, None))
        previous_end = max(previous_end, min(ended, now))
    for waiting in waits:
        if waiting.kind.value == "cancel":
            continue
        label = waiting.step_name or waiting.event_name
        raw.append((label, "wait", waiting.created_at, None, None, waiting))
    end_candidates = [run.ended_at or now, start + 1]
    for _, _, _, finish, step, _ in raw:
        end_candidates.append(finish if finish is not None else now)
        if step is not None and finish is None:
            end_candidates.append(step.ended_at)  # a sleep's wake time
    end = max(end_candidates)
    span = max(end - start, 1)
    bars: list[Bar] = []
    for index, (label, kind, begin, finish, step, wait) in enumerate(raw):
        shown_end = finish if finish is not None else (step.ended_at if step else now)
        memo = json_of(step.memo_json) if step is not None else None
        found = memo.get("error") if isinstance(memo, dict) else None
        error = found if isinstance(found, dict) else None
        output = memo.get("data") if isinstance(memo, dict) else memo
        detail = ""
        if kind == "sleep" and step is not None:
            detail = f"wakes at {format_time(step.ended_at)}" if finish is None else "slept"
        elif wait is not None:
            detail = f"waiting for {wait.event_name} until {format_time(wait.expires_at)}"
            if wait.expression:
                detail += f" if {wait.expression}"
        bars.append(
            Bar(
                label=label,
                kind=kind,
                start=begin,
                end=finish,
                offset_pct=round(100 * (begin - start) / span, 3),
                width_pct=max(round(100 * (shown_end - begin) / span, 3), 0.4),
                attempts=step.attempts if step is not None else 1,
                step_id=step.step_id if step is not None else None,
                output=output if error is None else None,
                error=error,
                detail=detail,
                copied=step is not None and index < copied_steps,
            )
        )
    return Timeline(start, end, bars)
