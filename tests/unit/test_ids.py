"""Seeded ids follow Inngest's rule, so a retried send gets the same ids."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from headwater.protocol.ids import IdSeed, is_ulid, new_seed, new_ulid, parse_seed, ulid_millis


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
