"""The dashboard's view computations (server/dashboard/views.py): pure, no server."""

from __future__ import annotations

import pytest

from headwater.server.dashboard.views import (
    build_timeline,
    format_duration,
    parse_form_time,
)
from headwater.store.runs import RunRecord, RunStatus, StepRecord, WaitKind, WaitRecord

T0 = 1_700_000_000_000


def run(status: RunStatus = RunStatus.COMPLETED, ended: int | None = T0 + 1_000) -> RunRecord:
    return RunRecord("R", "app-fn", status, ("E",), T0, T0 + 10, ended)


def step(
    step_id: str, at: int, end: int | None = None, op: str = "StepRun", memo: bytes = b'{"data":1}'
) -> StepRecord:
    return StepRecord("R", step_id, step_id, op, memo, at, end if end is not None else at, 2)


def test_instant_steps_are_drawn_from_the_end_of_the_step_before() -> None:
    timeline = build_timeline(run(), [step("a", T0 + 100), step("b", T0 + 400)], [], T0 + 2_000)
    a, b = timeline.bars
    assert (a.start, a.end, b.start, b.end) == (T0 + 10, T0 + 100, T0 + 100, T0 + 400)
    assert (a.duration, b.attempts, b.output) == (90, 2, 1)
    assert timeline.end == T0 + 1_000
    assert a.offset_pct == pytest.approx(1.0) and b.width_pct == pytest.approx(30.0)


def test_a_running_sleep_and_a_pending_wait_are_open_bars() -> None:
    active = run(RunStatus.RUNNING, ended=None)
    sleeping = step("nap", T0 + 100, T0 + 10_000, op="Sleep", memo=b"null")
    wait = WaitRecord(
        "W", "R", WaitKind.STEP, "app/ok", None, T0 + 200, T0 + 60_000, "w", "approve"
    )
    timeline = build_timeline(active, [sleeping], [wait], T0 + 500)
    nap, waiting = timeline.bars
    assert nap.kind == "sleep" and nap.end is None and "wakes at" in nap.detail
    assert waiting.kind == "wait" and waiting.end is None and "app/ok" in waiting.detail
    assert timeline.end == T0 + 10_000  # the axis reaches the sleep's wake time


def test_a_failed_step_shows_its_error_and_copied_steps_are_marked() -> None:
    failed = step("b", T0 + 300, memo=b'{"error":{"name":"E","message":"m","stack":"s"}}')
    timeline = build_timeline(run(), [step("a", T0 + 100), failed], [], T0 + 2_000, copied_steps=1)
    copied, broken = timeline.bars
    assert copied.copied and copied.start == T0
    assert broken.kind == "error" and broken.error == {"name": "E", "message": "m", "stack": "s"}
    assert broken.output is None


def test_durations_read_naturally() -> None:
    assert [format_duration(v) for v in (5, 1_500, 125_000, 7_500_000)] == [
        "5 ms",
        "1.50 s",
        "2 min 5 s",
        "2 h 5 min",
    ]


def test_form_times_are_utc_and_bad_ones_name_the_field() -> None:
    assert parse_form_time("2023-11-14T22:13:20", "from") == T0
    assert parse_form_time("2023-11-14T23:13:20+01:00", "from") == T0
    assert parse_form_time("", "from") is None
    with pytest.raises(ValueError, match=r"^to "):
        parse_form_time("yesterday", "to")
