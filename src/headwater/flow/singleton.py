"""Singleton: one active run per key at a time."""

from __future__ import annotations

from enum import Enum

from headwater.flow.rules import SingletonMode


class SingletonDecision(Enum):
    #: No active holder: the new run takes the key.
    TAKE = "take"
    #: An active holder and mode skip: the new run is Skipped.
    SKIP = "skip"
    #: An active holder and mode cancel: the holder is cancelled, the new run takes the key.
    REPLACE = "replace"


def singleton(holder_active: bool, mode: SingletonMode) -> SingletonDecision:
    if not holder_active:
        return SingletonDecision.TAKE
    return SingletonDecision.SKIP if mode is SingletonMode.SKIP else SingletonDecision.REPLACE
