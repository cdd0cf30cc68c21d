"""Random bytes for nonces and ids: from the OS CSPRNG, each byte handed out once."""

from __future__ import annotations

import os

from headwater.randomness import random_bytes


def test_sizes_and_no_repeats_across_refills() -> None:
    taken = [random_bytes(12) for _ in range(2_000)]  # several 4 KiB refills
    assert all(len(chunk) == 12 for chunk in taken)
    assert len(set(taken)) == len(taken)
    assert len(random_bytes(10_000)) == 10_000  # more than a pool's worth: straight from the OS
    assert random_bytes(0) == b""


def test_a_forked_child_does_not_repeat_its_parents_bytes() -> None:
    random_bytes(12)  # the pool holds bytes the parent has not handed out yet
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write_end, random_bytes(12))
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 12)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(child) == 12 and child != random_bytes(12)
