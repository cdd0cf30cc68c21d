"""Seeded ids follow Inngest's rule, so a retried send gets the same ids."""

from __future__ import annotations

import base64
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from headwater.protocol import ids
from headwater.protocol.ids import (
    IdSeed,
    encode_ulid,
    is_ulid,
    new_seed,
    new_ulid,
    parse_seed,
    ulid_millis,
)


def test_seed_header_round_trips() -> None:
    seed = new_seed()
    assert parse_seed(seed.header_value()) == seed


def test_seeded_ids_are_deterministic_and_distinct_per_index() -> None:
    seed = parse_seed("1795734866115,EJSZEHCmEJOPhg==")
    assert seed is not None
    first = [seed.ulid(i) for i in range(1, 6)]
    assert first == [seed.ulid(i) for i in range(1, 6)]
    assert len(set(first)) == 5
    assert all(ulid_millis(u) == 1795734866115 for u in first)


def test_entropy_counter_is_the_last_four_bytes_plus_index() -> None:
    entropy = bytes([1, 2, 3, 4, 5, 6, 0, 0, 0, 7])
    raw = ULID.from_str(IdSeed(1000, entropy).ulid(3)).bytes
    assert raw[:6] == (1000).to_bytes(6, "big")
    assert raw[6:12] == bytes([1, 2, 3, 4, 5, 6])
    assert int.from_bytes(raw[12:], "big") == 10


def test_counter_wraps_like_a_uint32() -> None:
    entropy = bytes(6) + b"\xff\xff\xff\xff"
    raw = ULID.from_str(IdSeed(1, entropy).ulid(1)).bytes
    assert raw[12:] == bytes(4)


def test_malformed_headers_mean_random_ids() -> None:
    ten = base64.b64encode(bytes(10)).decode()
    for header in [
        None,
        "",
        "abc",
        f"x,{ten}",
        "1,notbase64!!",
        f"1,{base64.b64encode(bytes(9)).decode()}",
        f"-1,{ten}",
    ]:
        assert parse_seed(header) is None


@given(st.integers(0, (1 << 48) - 1), st.binary(min_size=10, max_size=10), st.integers(1, 5000))
def test_any_seed_gives_valid_ulids(millis: int, entropy: bytes, index: int) -> None:
    value = IdSeed(millis, entropy).ulid(index)
    assert is_ulid(value)
    assert ulid_millis(value) == millis


def test_new_ulid_is_valid() -> None:
    assert is_ulid(new_ulid())
    assert not is_ulid("not-a-ulid")


# -- the ids are python-ulid's, made faster ------------------------------------------------------


def python_ulid_seeded(seed: IdSeed, index: int) -> str:
    """The seeded id as python-ulid builds it (what `IdSeed.ulid` used to return)."""
    counter = (int.from_bytes(seed.entropy[6:], "big") + index) & 0xFFFFFFFF
    raw = seed.millis.to_bytes(6, "big") + seed.entropy[:6] + counter.to_bytes(4, "big")
    return str(ULID.from_bytes(raw))


@given(st.integers(0, (1 << 48) - 1), st.integers(0, (1 << 80) - 1))
def test_encode_ulid_is_python_ulids_encoding(millis: int, randomness: int) -> None:
    raw = millis.to_bytes(6, "big") + randomness.to_bytes(10, "big")
    text = encode_ulid(millis, randomness)
    assert text == str(ULID.from_bytes(raw))
    parsed = ULID.from_str(text)
    assert parsed.milliseconds == millis and parsed.bytes == raw


@given(st.integers(0, (1 << 48) - 1), st.binary(min_size=10, max_size=10), st.integers(1, 5000))
def test_seeded_ids_are_byte_identical_to_python_ulids(
    millis: int, entropy: bytes, index: int
) -> None:
    seed = IdSeed(millis, entropy)
    assert seed.ulid(index) == python_ulid_seeded(seed, index)


def test_encode_ulid_refuses_values_out_of_range() -> None:
    for millis, randomness in [(-1, 0), (1 << 48, 0), (0, -1), (0, 1 << 80)]:
        with pytest.raises(ValueError, match="48 bits of milliseconds"):
            encode_ulid(millis, randomness)


def test_new_ulids_carry_the_current_millisecond_and_increase() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_ulid() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for text in ids:
        parsed = ULID.from_str(text)
        assert str(parsed) == text
        assert before <= parsed.milliseconds <= after


def test_ids_of_one_millisecond_count_up_from_fresh_randomness(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # python-ulid's rule: the first id of a millisecond has fresh random bits, each further id of
    # the same millisecond those bits plus one; a new millisecond draws fresh bits again.
    clock = iter([1_700_000_000_000_000_000] * 3 + [1_700_000_000_001_000_000] * 2)
    monkeypatch.setattr(ids.time, "time_ns", lambda: next(clock))
    made = [ULID.from_str(new_ulid()) for _ in range(5)]
    assert [u.milliseconds for u in made] == [1_700_000_000_000] * 3 + [1_700_000_000_001] * 2
    first = int.from_bytes(made[0].bytes[6:], "big")
    assert [int.from_bytes(u.bytes[6:], "big") for u in made[:3]] == [first, first + 1, first + 2]
    assert made[3].bytes[6:] != (first + 3).to_bytes(10, "big")  # fresh bits, not a count
    assert int.from_bytes(made[4].bytes[6:], "big") == int.from_bytes(made[3].bytes[6:], "big") + 1


def test_an_id_whose_count_carries_into_the_high_random_bits_is_still_encoded_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a generator whose next id of this millisecond carries out of the low 40 random bits
    # (the generator keeps the characters of the high bits from one id to the next)
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_700_000_000_000_000_000)
    generator = ids._UlidGenerator()
    first = ULID.from_str(generator.next())
    generator._randomness |= (1 << 40) - 1
    before_carry = generator._randomness
    # When the next two ids are made
    carried, after = generator.next(), generator.next()
    # Then they are the full encodings of the counted randomness, in order
    assert carried == encode_ulid(1_700_000_000_000, before_carry + 1)
    assert after == encode_ulid(1_700_000_000_000, before_carry + 2)
    assert str(first) < carried < after
    assert ULID.from_str(carried).bytes[6:] == (before_carry + 1).to_bytes(10, "big")


def test_new_ulid_is_safe_across_threads() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(new_ulid() for _ in range(5000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [text for out in made for text in out]
    assert len(set(every)) == len(every)
    assert all(out == sorted(out) for out in made)
