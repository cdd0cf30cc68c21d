"""Random bytes for values that must be unique and unguessable but are not secret: AES-GCM nonces
(stored in clear beside each ciphertext) and the random part of ULIDs.

They come from the operating system's CSPRNG, as `os.urandom` gives them, only fetched 4 KiB at a
time: a `getrandom` system call per nonce or id cost more than the rest of sealing an event on the
event loop's thread (a system call is where a busy thread is most often preempted, still holding
the GIL). Every byte is handed out once. A forked child drops what its parent fetched, so parent
and child never hand out the same bytes. Keys are not drawn from here: they use `os.urandom`.
"""

from __future__ import annotations

import os
import threading
from typing import Final

_POOL_BYTES: Final = 4096


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._next = 0

    def reset(self) -> None:
        self._pool = b""
        self._next = 0

    def take(self, size: int) -> bytes:
        if size > _POOL_BYTES:
            return os.urandom(size)
        with self._lock:
            start = self._next
            end = start + size
            if end > len(self._pool):
                self._pool = os.urandom(_POOL_BYTES)
                start, end = 0, size
            self._next = end
            return self._pool[start:end]


_pool: Final = _Pool()
os.register_at_fork(after_in_child=_pool.reset)


def random_bytes(size: int) -> bytes:
    """`size` bytes from the OS CSPRNG, never handed out before (in this process or its parent)."""
    return _pool.take(size)
