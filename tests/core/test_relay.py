"""The relay's hand-over of committed rows: published from memory only where the store has
nothing in between."""

from __future__ import annotations

import collections

from core.relay import _take


def held(*positions: int) -> collections.deque[tuple[int, str]]:
    return collections.deque((p, f"row{p}") for p in positions)


def test_rows_right_after_the_cursor_are_taken_from_memory_up_to_the_limit() -> None:
    rows = held(6, 7, 8)
    assert _take(rows, 5, 2, True) == [(6, "row6"), (7, "row7")]
    assert list(rows) == [(8, "row8")]


def test_rows_published_already_from_the_store_are_dropped() -> None:
    rows = held(4, 5, 6)
    assert _take(rows, 5, 10, True) == [(6, "row6")]


def test_a_gap_sends_the_relay_to_the_store() -> None:
    assert _take(held(8, 9), 5, 10, True) is None  # 6 and 7 exist only in the store


def test_nothing_held_means_nothing_new_only_once_a_read_found_the_end_of_the_store() -> None:
    assert _take(held(), 5, 10, True) == []
    assert _take(held(3, 4), 5, 10, True) == []  # all published already
    assert _take(held(), 5, 10, False) is None  # at start, or after falling far behind
