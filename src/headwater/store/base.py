"""The storage protocol: domain verbs, one transaction each. SQL lives in the dialect modules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from headwater.crypto import SealedUser
from headwater.types import Millis


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One stored event. `data_json`/`meta_json` are the JSON encodings, kept as bytes so the
    ingest path encodes each value once; `user` is sealed (see crypto.py), never plaintext."""

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


class Store(Protocol):
    """What the engine and the server need from a database.

    Every verb is one transaction. A verb that writes returns only after its transaction is
    durable (committed and, for SQLite with synchronous=FULL, fsynced).
    """

    url_for_display: str

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None: ...

    async def append_events(self, events: Sequence[EventRecord]) -> int:
        """Store every event or none. An event whose internal id is already stored is left as it
        is (a retried send with the same id seed); returns how many rows were new."""

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
