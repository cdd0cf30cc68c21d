"""The event log: accept events (validate, give ids, seal `user`, store durably) and read them back.

This is the one path by which events enter Headwater, whoever sends them (the Event API, the
CLI, later the engine's own system events), so every rule is applied once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from headwater.crypto import KeySource, SealedUser
from headwater.errors import EventValidationError, UnknownKeyError
from headwater.protocol.events import (
    DEFAULT_LIMITS,
    NUL_PROBLEM,
    RESERVED_PREFIX,
    EventLimits,
    NormalizedEvent,
    encoded_has_nul,
    event_map,
    normalize_events,
)
from headwater.protocol.ids import IdSeed, new_ulid
from headwater.store import EventQuery, EventRecord, Store

if TYPE_CHECKING:
    from headwater.engine.triggers import RunPlanner
    from headwater.store.runs import NewRun
from headwater.types import JSONObject, Millis


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the API shows it, `user` opened (only ever handed to authorized callers)."""

    internal_id: str
    id: str
    name: str
    data: JSONObject
    user: JSONObject
    user_erased: bool
    ts: Millis
    v: str | None
    meta: JSONObject | None
    received_at: Millis

    def wire(self) -> JSONObject:
        """The event as functions and expressions see it: `{name, data, user, id, ts, v?}`."""
        return event_map(self.name, self.data, self.user, self.id, self.ts, self.v)


def wire_without_user(record: EventRecord) -> JSONObject:
    """A stored event as functions see it, without its `user`, so without opening it."""
    return event_map(
        record.name, orjson.loads(record.data_json), None, record.id, record.ts, record.v
    )


@dataclass(frozen=True, slots=True)
class PreparedAppend:
    """System events sealed and planned, not yet stored (`EventLog.prepare_system`)."""

    records: list[EventRecord]
    runs: list[NewRun]


class EventLog:
    def __init__(
        self,
        store: Store,
        keys: KeySource,
        limits: EventLimits = DEFAULT_LIMITS,
        *,
        planner: RunPlanner | None = None,
        on_runs: Callable[[], None] | None = None,
        on_stored: Callable[[Sequence[EventRecord]], None] | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.limits = limits
        self.planner = planner
        self.on_runs = on_runs
        self.on_stored = on_stored

    async def append(
        self,
        raw_events: Sequence[object],
        *,
        seed: IdSeed | None = None,
        received_at: Millis | None = None,
    ) -> list[str]:
        """Validate and store a whole send; returns one internal id per event, in order.

        Raises EventValidationError (nothing stored) for the first bad event. Returns only after
        the events are durable. With a seed, a retried send gets the same ids and is stored once.
        """
        now = received_at if received_at is not None else time.time_ns() // 1_000_000
        events = normalize_events(raw_events, now, self.limits)
        records = self.seal(events, seed, now)
        # The runs these events start are stored in the same transaction as the events: an
        # acknowledged event never loses its runs to a crash.
        runs = self.planner.plan(records, events, now) if self.planner is not None else []
        await self.store.append_events(records, runs)
        if runs and self.on_runs is not None:
            self.on_runs()
        if self.on_stored is not None:
            self.on_stored(records)
        return [record.internal_id for record in records]

    async def append_system(
        self,
        events: Sequence[NormalizedEvent],
        runs_for: Callable[[Sequence[EventRecord]], Sequence[NewRun]] | None = None,
        *,
        seed: IdSeed | None = None,
        received_at: Millis | None = None,
    ) -> int:
        """Store Headwater's own events (named `inngest/...`, the names `append` refuses to users),
        already built by the engine, so not validated as a send is.

        In one transaction with them: the runs `runs_for(records)` names (e.g. a cron function's
        run, which needs the event's internal id) and those of functions whose triggers match them.
        With a `seed`, the ids are derived from it: if the events are already stored (another
        process or an earlier attempt stored the same ids), nothing is stored and none of the runs
        is created again. Returns how many events were new. ValueError for an event that is not a
        system event or carries a `user` (system events have none to seal).
        """
        prepared = self.prepare_system(events, runs_for, seed=seed, received_at=received_at)
        new = await self.store.append_events(prepared.records, prepared.runs)
        if new:
            self.stored(prepared)
        return new

    def prepare_system(
        self,
        events: Sequence[NormalizedEvent],
        runs_for: Callable[[Sequence[EventRecord]], Sequence[NewRun]] | None = None,
        *,
        seed: IdSeed | None = None,
        received_at: Millis | None = None,
    ) -> PreparedAppend:
        """What `append_system` stores, for a caller that stores it inside a transaction of its
        own (a run's end and its announcement: `Store.finish_run(announce=...)`); call `stored`
        once it is committed."""
        now = received_at if received_at is not None else time.time_ns() // 1_000_000
        for index, event in enumerate(events):
            if not event.name.startswith(RESERVED_PREFIX) or event.user:
                raise ValueError(
                    f"system event {index} ({event.name!r}) must be named "
                    f"{RESERVED_PREFIX}... and have no user"
                )
        records = self.seal(events, seed, now)
        runs = list(runs_for(records)) if runs_for is not None else []
        if self.planner is not None:
            runs += self.planner.plan(records, events, now)
        return PreparedAppend(records, runs)

    def stored(self, prepared: PreparedAppend) -> None:
        """Tell the engine that prepared events (and their runs) are committed."""
        if prepared.runs and self.on_runs is not None:
            self.on_runs()
        if self.on_stored is not None:
            self.on_stored(prepared.records)

    def seal(
        self, events: Sequence[NormalizedEvent], seed: IdSeed | None, received_at: Millis
    ) -> list[EventRecord]:
        """Give each event its internal id and seal its `user`: what the store will keep."""
        seal_user = self.keys.ring().seal
        records: list[EventRecord] = []
        for index, event in enumerate(events):
            internal_id = seed.ulid(index + 1) if seed is not None else new_ulid()
            data_json = orjson.dumps(event.data)
            # The byte search first, inline: a call less per event in the common case.
            if b"\\u0000" in data_json and encoded_has_nul(data_json, event.data):
                raise EventValidationError(index, "data", NUL_PROBLEM)
            meta = event.meta
            meta_json = None
            if meta is not None:
                meta_json = orjson.dumps(meta)
                if encoded_has_nul(meta_json, meta):
                    raise EventValidationError(index, "meta", NUL_PROBLEM)
            # Positional: a frozen dataclass's keyword call costs more, once per event.
            records.append(
                EventRecord(
                    internal_id,
                    event.id or internal_id,
                    event.name,
                    data_json,
                    seal_user(event.user, internal_id) if event.user else None,
                    event.ts,
                    event.v,
                    meta_json,
                    received_at,
                )
            )
        return records

    async def get(self, internal_id: str) -> StoredEvent | None:
        record = await self.store.get_event(internal_id)
        return None if record is None else self.open(record)

    async def list(self, query: EventQuery) -> list[StoredEvent]:
        return [self.open(record) for record in await self.store.list_events(query)]

    async def erase_user(self, external_id: str) -> int:
        """Erase the `user` of every event whose `user.external_id` is this one."""
        return await self.store.erase_users(self.keys.ring().blind_index(external_id))

    def open(self, record: EventRecord) -> StoredEvent:
        return StoredEvent(
            internal_id=record.internal_id,
            id=record.id,
            name=record.name,
            data=orjson.loads(record.data_json),
            user=self._open_user(record.user, record.internal_id) if record.user else {},
            user_erased=record.user_erased,
            ts=record.ts,
            v=record.v,
            meta=orjson.loads(record.meta_json) if record.meta_json is not None else None,
            received_at=record.received_at,
        )

    def _open_user(self, sealed: SealedUser, internal_id: str) -> JSONObject:
        ring = self.keys.ring()
        try:
            return ring.open(sealed.key_id, sealed.ciphertext, internal_id)
        except UnknownKeyError:
            # Another process may have rotated the key file since we last read it.
            return self.keys.reload().open(sealed.key_id, sealed.ciphertext, internal_id)
