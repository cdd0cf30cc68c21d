"""Re-seal every stored `user` with the key ring's active key, in batches, while the server runs."""

from __future__ import annotations

from collections.abc import Callable

from headwater.crypto import KeySource
from headwater.store import Store


async def count_to_reseal(store: Store, keys: KeySource) -> int:
    return await store.count_events_sealed_with_other_keys(keys.ring().primary.id)


async def reseal_all(
    store: Store,
    keys: KeySource,
    *,
    batch_size: int = 500,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Move every row sealed with an older key to the active key; returns how many moved.

    Each batch is one transaction; a row erased or rotated by someone else in the meantime is
    skipped (the store only updates rows still sealed with the key we read).
    """
    ring = keys.ring()
    moved = 0
    after = ""
    while True:
        rows = await store.events_sealed_with_other_keys(ring.primary.id, after, batch_size)
        if not rows:
            return moved
        resealed = [
            (internal_id, ring.reseal(sealed, internal_id), sealed.key_id)
            for internal_id, sealed in rows
        ]
        done = await store.reseal_users(resealed)
        moved += done
        after = rows[-1][0]
        if on_progress is not None:
            on_progress(len(rows))
