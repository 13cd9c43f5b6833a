"""The import's duplicate-key table agrees with a Python set, through its growth."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mustcheck_gateway.seen_keys import SeenKeys


@given(st.lists(st.integers(min_value=1, max_value=2**64 - 1) | st.integers(1, 50), max_size=300))
def test_seen_keys_is_a_set(keys: list[int]) -> None:
    table, reference = SeenKeys(), set()
    for key in keys:
        assert table.add(key) is (key not in reference)
        reference.add(key)
    assert len(table) == len(reference)


def test_seen_keys_grows() -> None:
    table = SeenKeys()
    keys = [key * 0x9E3779B97F4A7C15 % 2**64 or 1 for key in range(1, 800_001)]
    assert all(table.add(key) for key in keys)
    assert not any(table.add(key) for key in keys[::1000])
    assert len(table) == len(keys)
