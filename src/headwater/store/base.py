"""The storage protocol: domain verbs, one transaction each. SQL lives in the dialect modules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from headwater.crypto import SealedUser
from headwater.store.apps import AppFunctionRecord, AppRecord
from headwater.store.cancellations import CancellationVerbs
from headwater.store.queries import QueryVerbs
from headwater.store.retention import Deleted
from headwater.store.runs import NewRun, QueueItem, RunRecord, RunStatus, StepRecord, WaitRecord
from headwater.types import Millis


@dataclass(slots=True)  # not frozen: see below
class EventRecord:
    """One stored event. `data_json`/`meta_json` are the JSON encodings, kept as bytes so the
    ingest path encodes each value once; `user` is sealed (see crypto.py), never plaintext.

    Treated as immutable, but not a frozen dataclass: one is made per ingested event on the event
    loop's thread, and a frozen dataclass's `__init__` (one `object.__setattr__` per field) costs
    4.5 times the instructions of a plain one (callgrind: 15,400 against 2,700).
    """

    internal_id: str
    id: str
    name: str
    data_json: bytes
    user: SealedUser | None
    ts: Millis
    v: str | None
    meta_json: bytes | None
    received_at: Millis
    user_erased: bool = False


@dataclass(frozen=True, slots=True)
class EventQuery:
    """A page of events, newest first (by internal id)."""

    limit: int = 20
    #: Only events whose internal id sorts before this one (the previous page's last id).
    before_id: str | None = None
    name: str | None = None
    received_after: Millis | None = None
    received_before: Millis | None = None
    include_system: bool = False

    def where(self, mark: str) -> tuple[str, list[object]]:
        """The WHERE clause ("" when unfiltered) and its parameters, with the dialect's parameter
        mark (`?` or `%s`): the one definition of the filters both backends apply."""
        clauses: list[str] = []
        params: list[object] = []
        if self.before_id is not None:
            clauses.append(f"internal_id < {mark}")
            params.append(self.before_id)
        if self.name is not None:
            clauses.append(f"name = {mark}")
            params.append(self.name)
        elif not self.include_system:
            clauses.append(f"name NOT LIKE {mark}")
            params.append("inngest/%")
        if self.received_after is not None:
            clauses.append(f"received_at >= {mark}")
            params.append(self.received_after)
        if self.received_before is not None:
            clauses.append(f"received_at < {mark}")
            params.append(self.received_before)
        return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


class Store(QueryVerbs, CancellationVerbs, Protocol):
    """What the engine and the server need from a database.

    The dashboard's reads and replay's writes are in `QueryVerbs` (queries.py), bulk
    cancellations' in `CancellationVerbs` (cancellations.py). Every verb is one
    transaction. A verb that writes returns only after its transaction is
    durable (committed and, for SQLite with synchronous=FULL, fsynced).
    """

    url_for_display: str

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None: ...

    async def append_events(
        self, events: Sequence[EventRecord], runs: Sequence[NewRun] = ()
    ) -> int:
        """Store every event or none. An event whose internal id is already stored is left as it
        is (a retried send with the same id seed); returns how many rows were new.

        `runs` are the runs these events start, created in the same transaction (as
        `create_runs` does) so that an acknowledged event never loses its runs. When a seeded
        retry stores no new event, its runs are not created again either."""

    async def get_event(self, internal_id: str) -> EventRecord | None: ...

    async def list_events(self, query: EventQuery) -> list[EventRecord]: ...

    async def count_events(self) -> int: ...

    async def erase_users(self, blind_index: bytes) -> int:
        """Forget the `user` of every event whose external id has this blind index; returns the
        number of events erased."""

    async def events_sealed_with_other_keys(
        self, key_id: str, after_internal_id: str, limit: int
    ) -> list[tuple[str, SealedUser]]:
        """Events (internal id order, after `after_internal_id`) whose user is sealed with a key
        other than `key_id`: what a key rotation still has to re-seal."""

    async def count_events_sealed_with_other_keys(self, key_id: str) -> int: ...

    async def reseal_users(self, rows: Sequence[tuple[str, SealedUser, str]]) -> int:
        """Replace sealed users: (internal id, new sealed user, the key id it was sealed with).
        A row whose key id changed meanwhile (rotated or erased by someone else) is left alone.
        Returns how many rows were updated."""

    # -- runs ----------------------------------------------------------------------------------
    # A run is created Queued with one queue item; executions claim items with a lease, record
    # steps, then either reschedule the item (sleep, retry) or finish the run (deleting the item).

    async def create_runs(self, runs: Sequence[NewRun]) -> list[RunRecord]:
        """Create every run in one transaction, in order. A run whose idempotency key is held by
        an earlier, unexpired run of the same function is stored as Skipped (reason
        "duplicate event id") with no queue item; the others are Queued with one item due at
        `start_at`. Returns the stored records in input order."""

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs_for_event(self, event_internal_id: str) -> list[RunRecord]:
        """Runs whose triggering events include this one, oldest first."""

    async def list_steps(self, run_id: str) -> list[StepRecord]:
        """The run's memoized steps in the order they were recorded."""

    async def claim_due(
        self, owner: str, now: Millis, lease_ms: int, limit: int
    ) -> list[QueueItem]:
        """Lease up to `limit` items due at `now` (due_at <= now, no live lease), oldest due first.
        A claimed run that was Queued becomes Running (started_at = now)."""

    async def delete_expired(self, cutoff: Millis, limit: int) -> Deleted:
        """Retention: delete up to `limit` each of the runs that ended before `cutoff`, the events
        received before it that no remaining run lists, and the idempotency keys expired before
        it (store/retention.py). Returns how many of each went."""

    async def prune_state(self, before: Millis) -> None:
        """Forget throttle and rate-limit states last used before `before`, singleton keys whose
        run has ended, and cron ticks older than `before` but each function's latest
        (flow_programs.prune)."""

    def watch_queue(self, wake: Callable[[], None]) -> None:
        """Call `wake` (on the event loop) whenever another process may have made queue work
        available: new runs, a freed concurrency slot, a resolved wait (PostgreSQL: LISTEN/NOTIFY).
        A hint for promptness only; the worker's poll finds the work anyway."""

    async def next_due_at(self) -> Millis | None:
        """The earliest due time among unleased items (or expired leases), if any."""

    async def record_step(self, step: StepRecord) -> bool:
        """Store a step's memo; a memo already stored for (run_id, step_id) is kept (a finished
        step's result is recorded exactly once). Returns whether this call stored it."""

    async def reschedule(
        self,
        item_id: str,
        owner: str,
        due_at: Millis,
        attempt: int,
        *,
        deadline: Millis | None = None,
    ) -> bool:
        """Release the lease of an item and make it due again at `due_at` with `attempt`.
        From `deadline` on (its run's finish deadline) it is claimed whatever the flow-control
        limits, marked overdue, so the run is cancelled then rather than when a slot frees up.
        False if `owner` no longer holds the lease (it expired and someone else took it)."""

    async def finish_run(
        self,
        run_id: str,
        item_id: str | None,
        owner: str | None,
        status: RunStatus,
        ended_at: Millis,
        *,
        output_json: bytes | None = None,
        error_json: bytes | None = None,
        reason: str | None = None,
        announce: Sequence[EventRecord] = (),
        announce_runs: Sequence[NewRun] = (),
    ) -> bool:
        """Set a final status and delete the run's queue items, in one transaction. With an
        `item_id`, only if `owner` still holds that item's lease; a run already final is left
        as it is. Returns whether the run was finished by this call.

        When it is, the same transaction appends the events announcing the end (`announce`, kept
        as they are if already stored) and creates the runs they start (`announce_runs`, as
        `append_events` does): a run never ends unannounced, so a waiting `step.invoke` and an
        `on_failure` handler always learn of it."""

    async def extend_lease(self, item_id: str, owner: str, lease_until: Millis) -> bool:
        """Keep a long execution's lease alive; False if `owner` lost it."""

    # -- waits (wait_for_event, cancel_on) -----------------------------------------------------

    async def park_for_wait(
        self, item_id: str, owner: str, wait: WaitRecord, *, deadline: Millis | None = None
    ) -> bool:
        """Store `wait` (kept as it is if already stored) and make the run's item due at the
        wait's expiry, releasing the lease, in one transaction; `deadline` as for `reschedule`.
        False if `owner` lost the lease."""

    async def add_waits(self, waits: Sequence[WaitRecord]) -> None:
        """Store waits (each kept as it is if already stored)."""

    async def pending_waits(self, event_name: str, now: Millis) -> list[WaitRecord]:
        """Unexpired waits for events of this name whose runs are still active."""

    async def waits_of_run(self, run_id: str) -> list[WaitRecord]: ...

    async def resolve_step_wait(self, wait_id: str, step: StepRecord, now: Millis) -> bool:
        """In one transaction: delete the wait, record its step's memo (the matched event, or
        null on timeout) and make the run's unleased items due now. False if the wait was already
        gone (resolved by someone else): then nothing changes."""

    async def delete_wait(self, wait_id: str) -> bool: ...

    async def wait_event_names(self, now: Millis) -> set[str]:
        """The names of events that unexpired waits are waiting for."""

    async def active_runs(
        self, function_id: str, created_after: Millis, created_before: Millis, limit: int
    ) -> list[RunRecord]:
        """Queued or Running runs of a function created in [created_after, created_before),
        oldest first."""

    # -- cron ----------------------------------------------------------------------------------
    # The memory of cron schedules across restarts (engine/cron.py). Exactly-once firing does not
    # rest on these: a tick's event has an id derived from (function, tick), so every process may
    # append it and one transaction stores it with its run (see `append_events`).

    async def claim_cron_tick(self, function_id: str, tick_at: Millis) -> bool:
        """Record that the cron tick at `tick_at` of the function `function_id` (its slug) fired.
        True if this call recorded it, False if it was already recorded (by any process)."""

    async def last_cron_tick(self, function_id: str) -> Millis | None:
        """The latest tick recorded for the function, or None if it never ticked."""

    # -- apps (synced over the Inngest protocol, PROTOCOL §3.2) -------------------------------

    @property
    def apps_shared_between_processes(self) -> bool:
        """Whether other processes may sync apps into this store (PostgreSQL): then engines
        poll `list_apps` to learn of them."""

    async def sync_app(self, app: AppRecord, functions: Sequence[AppFunctionRecord]) -> bool:
        """In one transaction: upsert the app, upsert `functions` (un-archiving any), archive
        the app's other functions. When the stored checksum equals `app.checksum` (the same sync
        again) only the app's `synced_at` moves on (the dashboard's "last sync"; never back), and
        False is returned."""

    async def list_apps(self) -> list[AppRecord]: ...

    async def app_functions(
        self, app_id: str, *, include_archived: bool = False
    ) -> list[AppFunctionRecord]:
        """The functions of an app (only those it still lists, unless `include_archived`)."""
