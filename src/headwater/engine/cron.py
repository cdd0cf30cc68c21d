"""Cron triggers: at each tick of a function's schedule, one `inngest/scheduled.timer` event and one
run of the function, however many server processes share the database.

**Ticks.** A spec is five cron fields (minute hour day-of-month month day-of-week), read in UTC or
in the zone of a `TZ=<zone> ` prefix. croniter walks *wall-clock* times (naive datetimes, which have
no DST for it to trip on) and this module maps each wall time to instants of the zone:

- a wall time that happens once is that instant;
- a wall time skipped by a spring-forward gap fires when the gap ends (02:30 on the night Paris
  jumps from 02:00 to 03:00 fires at 03:00 CEST), so a daily job is never lost; several skipped
  wall times collapse into that one instant (no burst);
- a wall time repeated by a fall-back overlap fires at its first occurrence only, unless the spec's
  hour field is `*`: a job that runs every hour or more often keeps its cadence through the
  repeated hour (it fires at both occurrences), while a job at fixed hours (a daily 02:30) runs
  once that night. This is cronie's rule; Inngest (robfig/cron) instead skips the gap's wall
  times and runs fixed-hour jobs twice in the overlap.

**One run per tick.** The tick's event gets an internal id derived from (function, tick): a ULID whose
time is the tick and whose entropy is a hash of the function (see `tick_seed`). `append_events`
leaves an already-stored internal id as it is and then creates none of the runs passed with it (the
rule that makes a retried send exactly-once). So every process that sees a tick appends the same
event with its run, in one transaction, and exactly one of them stores anything: no window in which
a crash loses a tick (nothing is claimed before the run exists) and no duplicate event or Skipped
run. `Store.claim_cron_tick` then records the tick: it is the schedule's memory across restarts (see
below). A crash between the append and the claim only makes the tick be tried again after a
restart, which the derived id turns into a no-op. (Claiming first, then appending, would have a
crash between the two lose the tick for every process: the others would see it claimed.)

**Missed ticks.** Whenever a schedule is looked at (at start, at each tick, after a stall such as a
suspended host) only its latest due tick fires, once, and only if it is later than the function's
last recorded tick. Ticks missed while no server ran are not replayed as a storm: at most the latest
one fires, late, on start. A function with no recorded tick (a new one) starts with its next tick;
it does not fire the tick before its deployment.

**Sleeping.** One task sleeps until the earliest next tick of all schedules, in slices of at most a
minute: a wall-clock step (NTP, a resumed laptop) is noticed within a minute, and `stop()` ends any
sleep at once. No polling in between.

**Event.** `{"name": "inngest/scheduled.timer", "data": {"cron", "scheduledAt", "fireAt"}}`, as
Inngest (PROTOCOL §1.9). The times are RFC 3339 UTC strings ("2024-05-01T09:00:00Z"): Inngest's
Go server puts `time.Time` values in the event data, which JSON-encode so, and formats the event
`id` the same way (its cron event id is the tick in RFC 3339, which Headwater copies). Headwater has
no cron jitter, so `fireAt` equals `scheduledAt`; a tick fired late (after downtime) keeps its
scheduled time in both, and its run's start shows when it ran.

**Sub-minute schedules** (`SecondsCronTrigger`) exist for tests only: six fields, seconds first.
`hw.on_cron` keeps to Inngest's five.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from headwater.clock import now_ms
from headwater.engine.flow_planning import plan_flow
from headwater.engine.triggers import event_wire
from headwater.errors import FunctionDefinitionError
from headwater.protocol.events import NormalizedEvent
from headwater.protocol.ids import IdSeed, new_ulid
from headwater.sdk.functions import CronTrigger, FunctionDefinition
from headwater.store import EventRecord, Store
from headwater.store.runs import NewRun
from headwater.types import Millis

if TYPE_CHECKING:
    from headwater.engine.event_log import EventLog
    from headwater.engine.registry import FunctionRegistry

log = logging.getLogger("headwater.cron")

#: The name of the event each tick creates (PROTOCOL §1.9).
CRON_EVENT: Final = "inngest/scheduled.timer"
#: Longest single sleep: a wall-clock step is noticed at least this often.
MAX_SLEEP_S: Final = 60.0
#: Waits before retrying a schedule whose tick failed (the store was unreachable), growing.
RETRY_DELAYS_S: Final = (1.0, 2.0, 5.0, 10.0, 30.0)
#: How long `stop()` lets an in-flight append finish before cancelling it.
STOP_TIMEOUT_S: Final = 10.0

_EPOCH: Final = datetime(1970, 1, 1)
_DAY_MS: Final = 86_400_000
_SECOND: Final = timedelta(seconds=1)
#: Bound on wall times examined for one tick: a handful normally, up to an hour's worth of a
#: per-second spec inside a DST overlap. Reaching it would be a bug, reported, never a hang.
_MAX_STEPS: Final = 100_000


# -- specs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecondsCronTrigger(CronTrigger):
    """An internal trigger with a leading seconds field (`"*/2 * * * * *"`, optionally after
    `TZ=<zone> `), so that tests see ticks every second instead of every minute. Not an Inngest
    feature (its crons are minute-grained) and not offered by `hw.on_cron`."""

    def __post_init__(self) -> None:
        parse_cron(self.cron, seconds=True)


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A trigger's schedule, parsed once."""

    #: The trigger's text as written: what the event's `data.cron` shows.
    source: str
    #: The cron fields alone (no `TZ=` prefix), for croniter.
    expression: str
    zone: tzinfo
    #: Six fields, seconds first (`SecondsCronTrigger`).
    seconds: bool
    #: Whether a wall time repeated by a DST fall-back fires at both occurrences (hour field `*`).
    repeats_in_overlap: bool


def parse_cron(source: str, *, seconds: bool = False) -> CronSpec:
    """Parse `[TZ=<zone> ]<5 fields>` (6, seconds first, with `seconds`). Raises
    FunctionDefinitionError naming the problem."""
    body = source.strip()
    zone: tzinfo = UTC
    if body.startswith("TZ="):
        prefix, _, body = body.partition(" ")
        try:
            zone = ZoneInfo(prefix[3:])
        except Exception:  # ZoneInfoNotFoundError, ValueError for malformed keys, ...
            raise FunctionDefinitionError(
                f"cron {source!r}: unknown time zone {prefix[3:]!r}"
            ) from None
    fields = body.split()
    expected = 6 if seconds else 5
    if len(fields) != expected:
        raise FunctionDefinitionError(f"cron {source!r} must have {expected} fields")
    # croniter's `R` picks a random value per parse: every process would then tick at different
    # times and each start its own run. (No month or weekday name starts with R.)
    if any(part.strip().upper().startswith("R") for f in fields for part in f.split(",")):
        raise FunctionDefinitionError(f"cron {source!r}: random (R) fields are not supported")
    expression = " ".join(fields)
    if not croniter.is_valid(expression, second_at_beginning=seconds):
        raise FunctionDefinitionError(f"cron {source!r} is not a valid cron expression")
    # croniter normalises the fields (`0-23` and `*/1` become `*`); the hour is always at index 1.
    hours = croniter(expression, second_at_beginning=seconds).expanded[1]
    return CronSpec(
        source=source,
        expression=expression,
        zone=zone,
        seconds=seconds,
        repeats_in_overlap=hours == ["*"],
    )


# -- ticks -------------------------------------------------------------------------------------


def next_tick(spec: CronSpec, after: Millis) -> Millis | None:
    """The first tick strictly after `after` (epoch ms), or None if the spec never fires again
    (e.g. February 31st)."""
    return _search(spec, after, forward=True)


def latest_tick(spec: CronSpec, at: Millis) -> Millis | None:
    """The last tick at or before `at` (epoch ms), or None if there is none."""
    return _search(spec, at, forward=False)


def _search(spec: CronSpec, at: Millis, *, forward: bool) -> Millis | None:
    """Walk wall times from near `at`'s wall time and map each to its instants (`_instants`).

    Both mappings (a wall time to its first and to its last instant) never decrease as the wall
    time grows, which is what lets the walk stop: forward, at the first wall time whose first
    instant is after `at` (later ones cannot fire earlier); backward, at the first whose last
    instant is at or before `at`. The walk must start on the right side of every candidate: the
    wall time of an instant is the instant plus the zone's offset then, so the start uses the
    smallest (forward) or largest (backward) offset in force within a day of `at`.
    """
    offsets = [_offset(spec.zone, at + delta) for delta in (-_DAY_MS, 0, _DAY_MS)]
    # One second beyond: croniter returns times strictly after (before) its start.
    start = _wall(at, min(offsets)) - _SECOND if forward else _wall(at, max(offsets)) + _SECOND
    walker = croniter(spec.expression, start, second_at_beginning=spec.seconds)
    best: Millis | None = None
    for _ in range(_MAX_STEPS):
        try:
            wall = walker.get_next(datetime) if forward else walker.get_prev(datetime)
        except CroniterBadDateError:  # no matching date at all (croniter searches for years)
            return best
        first, last = _instants(spec, wall)
        if forward:
            for instant in (first, last):
                if instant > at and (best is None or instant < best):
                    best = instant
            if first > at:
                return best
        else:
            for instant in (first, last):
                if instant <= at and (best is None or instant > best):
                    best = instant
            if last <= at:
                return best
    raise RuntimeError(f"cron {spec.source!r}: no tick found near {at} in {_MAX_STEPS} steps")


def _instants(spec: CronSpec, wall: datetime) -> tuple[Millis, Millis]:
    """The first and last instant at which `wall` (naive, in the spec's zone) fires."""
    zone = spec.zone
    earlier = wall.replace(tzinfo=zone, fold=0).utcoffset()
    later = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert earlier is not None and later is not None  # every zone here has offsets
    if earlier == later:  # the usual case: the wall time happens exactly once
        instant = _ms(wall - earlier)
        return instant, instant
    # PEP 495: fold=0 reads the wall time with the offset in force before the transition.
    first, second = _ms(wall - earlier), _ms(wall - later)
    if first < second:  # an overlap (fall back): the wall time happens twice
        return first, (second if spec.repeats_in_overlap else first)
    # A gap (spring forward): the wall time never happens. Fire when the gap ends, i.e. at the
    # transition, which lies in (second, first]; offsets change only there, so bisect on them.
    low, high = second, first
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(zone, middle) == later:
            high = middle
        else:
            low = middle
    return high, high


def _offset(zone: tzinfo, instant: Millis) -> timedelta:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=instant)
    offset = moment.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _wall(instant: Millis, offset: timedelta) -> datetime:
    return _EPOCH + timedelta(milliseconds=instant) + offset


def _ms(naive_utc: datetime) -> Millis:
    return (naive_utc - _EPOCH) // timedelta(milliseconds=1)


# -- the event ---------------------------------------------------------------------------------


def rfc3339(instant: Millis) -> str:
    """`2024-05-01T09:00:00Z` (milliseconds only when there are some), as Go's RFC 3339 encoding
    of a `time.Time` reads."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=instant)
    text = moment.isoformat(timespec="milliseconds" if instant % 1000 else "seconds")
    return text.replace("+00:00", "Z")


def tick_seed(function_slug: str, tick: Millis) -> IdSeed:
    """The id seed of a tick's event: the same in every process, so the event (and the run stored
    with it) is stored once. Its ULID's time is the tick; its entropy names the function."""
    entropy = hashlib.blake2b(f"headwater-cron:{function_slug}".encode(), digest_size=10).digest()
    return IdSeed(tick, entropy)


def tick_event_id(function_slug: str, tick: Millis) -> str:
    """The internal id of the `inngest/scheduled.timer` event of this function's tick."""
    return tick_seed(function_slug, tick).ulid(1)


def timer_event(spec: CronSpec, tick: Millis, now: Millis) -> NormalizedEvent:
    """The tick's `inngest/scheduled.timer` event (see the module docstring for its fields)."""
    stamp = rfc3339(tick)
    return NormalizedEvent(
        name=CRON_EVENT,
        data={"cron": spec.source, "scheduledAt": stamp, "fireAt": stamp},
        user={},
        id=stamp,
        ts=now,
        v=None,
        meta=None,
    )


# -- the scheduler -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Schedule:
    """One cron trigger of one function, and where its firing stands."""

    function: FunctionDefinition
    spec: CronSpec
    #: Ticks at or before this are done: fired (by any process), or before a new function's start.
    done_until: Millis = 0
    #: When to look at this schedule again: its next tick, or a retry. None: it never fires again.
    check_at: Millis | None = 0
    failures: int = 0


def schedules_of(registry: FunctionRegistry) -> list[_Schedule]:
    """Every cron trigger of the registry's functions, parsed (FunctionDefinitionError if one
    cannot be scheduled: better refused at start than silently never fired)."""
    schedules: list[_Schedule] = []
    for definition in registry:
        for trigger in definition.cron_triggers:
            seconds = isinstance(trigger, SecondsCronTrigger)
            schedules.append(_Schedule(definition, parse_cron(trigger.cron, seconds=seconds)))
    return schedules


class CronScheduler:
    """Fires the cron triggers of a registry's functions while started (see the module docstring).

    `clock` (epoch ms) is replaceable for tests, which then drive `run_due()` themselves.
    """

    def __init__(
        self,
        store: Store,
        event_log: EventLog,
        registry: FunctionRegistry,
        *,
        clock: Callable[[], Millis] = now_ms,
    ) -> None:
        self.store = store
        self.event_log = event_log
        self.registry = registry
        self.clock = clock
        self._schedules: list[_Schedule] = []
        self._loaded = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def prepare(self) -> int:
        """Parse every schedule (raising FunctionDefinitionError for one that cannot be
        scheduled); returns how many there are."""
        self._schedules = schedules_of(self.registry)
        self._loaded = False
        return len(self._schedules)

    async def start(self) -> None:
        """Parse the schedules and start firing them (nothing runs without any)."""
        if not self.prepare():
            return
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="headwater-cron")

    async def stop(self) -> None:
        """Stop firing. A sleep ends at once; an append in flight may finish (bounded)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(task, STOP_TIMEOUT_S)  # cancels the task on timeout
        except TimeoutError:
            log.warning("the cron scheduler did not stop within %ss; cancelled", STOP_TIMEOUT_S)
        except Exception:
            log.exception("the cron scheduler failed")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            wake_at = await self.run_due()
            if wake_at is None:
                return  # no schedule will ever fire again (e.g. only February 31st)
            delay = max(0.0, (wake_at - self.clock()) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), min(delay, MAX_SLEEP_S))

    async def run_due(self) -> Millis | None:
        """Fire the latest tick of every schedule whose time has come (once each); return when to
        look again (None if no schedule will ever fire again). Never raises for a failing
        schedule: it is logged and retried, see `RETRY_DELAYS_S`."""
        now = self.clock()
        if not self._loaded:
            try:
                await self._load(now)
            except Exception:
                log.exception("reading the last cron ticks failed; retrying in 1 s")
                return now + 1000
        for schedule in self._schedules:
            if schedule.check_at is not None and schedule.check_at <= now:
                await self._run_schedule(schedule, now)
        pending = [s.check_at for s in self._schedules if s.check_at is not None]
        return min(pending) if pending else None

    async def _load(self, now: Millis) -> None:
        """Where each schedule stands: after its function's last recorded tick or, for a function
        that never ticked, at this start (its earlier ticks are not "missed")."""
        last: dict[str, Millis | None] = {}
        for schedule in self._schedules:
            slug = schedule.function.slug
            if slug not in last:
                last[slug] = await self.store.last_cron_tick(slug)
            recorded = last[slug]
            schedule.done_until = recorded if recorded is not None else now - 1
            schedule.check_at = now
        self._loaded = True

    async def _run_schedule(self, schedule: _Schedule, now: Millis) -> None:
        try:
            tick = latest_tick(schedule.spec, now)
            if tick is not None and tick > schedule.done_until:
                await self.fire(schedule.function, schedule.spec, tick, now)
                schedule.done_until = tick
            schedule.check_at = next_tick(schedule.spec, now)
            schedule.failures = 0
        except Exception:
            delay = RETRY_DELAYS_S[min(schedule.failures, len(RETRY_DELAYS_S) - 1)]
            schedule.failures += 1
            log.exception(
                "cron %r of %s failed; retrying in %ss (a newer tick then replaces this one)",
                schedule.spec.source,
                schedule.function.slug,
                delay,
            )
            schedule.check_at = now + int(delay * 1000)

    async def fire(
        self, function: FunctionDefinition, spec: CronSpec, tick: Millis, now: Millis
    ) -> bool:
        """Store the tick's event and the function's run in one transaction, then record the tick.
        Returns False when the tick had already been fired (by another process, or before a
        restart): then nothing new was stored."""
        slug = function.slug
        timer = timer_event(spec, tick, now)

        def runs_for(records: Sequence[EventRecord]) -> list[NewRun]:
            # Flow control applies to scheduled runs too (e.g. concurrency 1: ticks never overlap).
            planned = plan_flow(function, event_wire(records[0], timer), now)
            return [
                NewRun(
                    run_id=new_ulid(),
                    function_id=slug,
                    event_ids=(records[0].internal_id,),
                    created_at=now,
                    start_at=now + planned.delay_ms,
                    flow=planned.flow,
                )
            ]

        new = await self.event_log.append_system(
            [timer], runs_for, seed=tick_seed(slug, tick), received_at=now
        )
        # After the append, never before: see "One run per tick" in the module docstring.
        await self.store.claim_cron_tick(slug, tick)
        if new:
            log.info("cron %r started a run of %s for %s", spec.source, slug, rfc3339(tick))
        else:
            log.debug("cron tick %s of %s was already fired", rfc3339(tick), slug)
        return new > 0
